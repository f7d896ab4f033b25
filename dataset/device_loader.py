"""The device-resident data path (--data_on_device): the whole train set is one uint8 tensor on the
training device and every batch is cropped, flipped and normalized there. No worker processes,
no PIL; on the CPU it replaces the per-image PIL work.

The augmentation follows the published RandomCrop(32, padding=4) + RandomHorizontalFlip +
ToTensor + Normalize exactly: the image is zero-padded in [0, 255] space (so a padded pixel
becomes -mean/std after normalizing), a window is cut at an offset drawn uniformly from
0..2*padding on each axis, and half of the windows are mirrored.
"""
import math

import numpy as np
import torch
from torch.utils.data import DistributedSampler
import torch.nn.functional as F


def derive_seed(*keys):
    """A 63-bit seed from a tuple of ints (seed, rank, epoch, ...)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1, np.uint64)[0] >> 1)


class DeviceContrastSampler:
    """CRD contrast indices drawn on the device from a per-class table of negatives.

    A row takes k distinct negatives by keeping the k smallest of uniform random keys over its
    class's table, i.e. a uniform k-subset; a class with fewer than k negatives draws with
    replacement, as published: the distribution of dataset.contrast.ContrastSampler, on the GPU.
    """

    def __init__(self, sampler, device):
        self.k, self.mode = sampler.k, sampler.mode
        negatives = [sampler.negatives(c) for c in range(sampler.num_classes)]
        counts = np.array([len(n) for n in negatives])
        table = np.zeros((len(negatives), counts.max()), dtype=np.int64)
        for c, n in enumerate(negatives):
            table[c, :len(n)] = n
        self.table = torch.from_numpy(table).to(device)
        self.neg_counts = torch.from_numpy(counts).to(device)
        self.fewest = int(counts.min())  # kept on the host: no device sync per batch
        self.columns = torch.arange(table.shape[1], device=device)
        self.class_starts = torch.from_numpy(sampler.starts).to(device)
        self.class_counts = torch.from_numpy(sampler.counts).to(device)
        self.order = None if sampler.order is None else torch.from_numpy(sampler.order).to(device)

    def _uniform_below(self, high, shape, generator):
        # float64 so that every integer below `high` is equally likely to 1e-11
        u = torch.rand(shape, generator=generator, device=high.device, dtype=torch.float64)
        return (u * high).long()

    def sample(self, index, target, generator):
        batch, width = len(target), self.table.shape[1]
        m = self.neg_counts[target]
        if self.k <= width:
            keys = torch.rand(batch, width, generator=generator, device=m.device,
                              dtype=torch.float64)
            keys.masked_fill_(self.columns >= m[:, None], 2.0)  # table padding: never picked
            positions = keys.topk(self.k, dim=1, largest=False, sorted=False).indices
            if self.k > self.fewest:  # some class has fewer than k negatives
                drawn = self._uniform_below(m[:, None], (batch, self.k), generator)
                positions = torch.where((m < self.k)[:, None], drawn, positions)
        else:
            positions = self._uniform_below(m[:, None], (batch, self.k), generator)
        negatives = self.table[target[:, None], positions]
        if self.mode == 'exact':
            positive = index
        else:
            positive = self.class_starts[target] + self._uniform_below(
                self.class_counts[target], (batch,), generator)
            if self.order is not None:
                positive = self.order[positive]
        return torch.cat([positive[:, None], negatives], dim=1)


class DeviceLoader:
    """Iterates batch dicts {'input', 'target', 'index'[, 'contrast_idx']} already on `device`.

    images: uint8 (N, C, H, W); scale: the pixel value ToTensor maps to 1. With train=True the
    order is reshuffled every epoch (torch.randperm on the device, seeded by seed and epoch, the
    same on every DDP rank) and batches are augmented; otherwise the order is fixed. Under DDP each
    rank takes every world_size-th sample; the train order is padded like DistributedSampler so
    all ranks run the same number of steps, the test order is not padded.
    """

    def __init__(self, images, targets, batch_size, mean, std, scale, device, train=True,
                 padding=0, flip=False, contrast=None, drop_last=False, seed=0, rank=0,
                 world_size=1):
        self.device = torch.device(device)
        images = np.asarray(images)
        if not (images.flags.writeable and images.flags.c_contiguous):  # e.g. a broadcast view
            images = images.copy()
        self.images = torch.from_numpy(images).to(self.device)
        self.targets = torch.as_tensor(np.asarray(targets), dtype=torch.long).to(self.device)
        shape = (1, -1, 1, 1)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(shape)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(shape)
        self.scale, self.batch_size, self.train = float(scale), int(batch_size), train
        self.padding, self.flip, self.drop_last = padding, flip, drop_last
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch = 0
        self.generator = torch.Generator(self.device)
        self.generator.manual_seed(derive_seed(seed, rank, 1))
        # On a CPU, dataset.contrast's sampler is the faster of the two.
        self.contrast = contrast
        if contrast is not None and self.device.type != 'cpu':
            self.contrast = DeviceContrastSampler(contrast, self.device)

    def set_epoch(self, epoch):
        # crops, flips and device-drawn negatives depend on (seed, rank, epoch) only: exact resume
        self.epoch = epoch
        self.generator.manual_seed(derive_seed(self.seed, self.rank, 1, epoch))

    def _num_samples(self):
        n = len(self.targets)
        if self.world_size == 1:
            return n
        if self.train:
            return math.ceil(n / self.world_size)
        return len(range(self.rank, n, self.world_size))

    def __len__(self):
        n = self._num_samples()
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _order(self, epoch):
        n = len(self.targets)
        if not self.train:
            return torch.arange(self.rank, n, self.world_size, device=self.device)
        shuffle = torch.Generator(self.device)
        shuffle.manual_seed(derive_seed(self.seed, epoch, 2))
        order = torch.randperm(n, generator=shuffle, device=self.device)
        if self.world_size > 1:
            total = math.ceil(n / self.world_size) * self.world_size
            order = torch.cat([order, order[:total - n]])[self.rank::self.world_size]
        return order

    def _augment(self, x):
        batch, channels, height, width = x.shape
        pad = self.padding
        g, dev = self.generator, self.device
        rows = torch.arange(height, device=dev).expand(batch, height)
        cols = torch.arange(width, device=dev).expand(batch, width)
        if pad:
            x = F.pad(x, (pad, pad, pad, pad))
            offsets = torch.randint(0, 2 * pad + 1, (2, batch, 1), generator=g, device=dev)
            rows, cols = rows + offsets[0], cols + offsets[1]
        if self.flip:
            mirrored = torch.rand(batch, 1, generator=g, device=dev) < 0.5
            cols = torch.where(mirrored, cols.flip(1), cols)
        x = x.gather(2, rows[:, None, :, None].expand(batch, channels, height, x.shape[3]))
        return x.gather(3, cols[:, None, None, :].expand(batch, channels, height, width))

    def _batch(self, index):
        x = self.images[index]
        if self.train and (self.padding or self.flip):
            x = self._augment(x)
        x = x.float().div_(self.scale).sub_(self.mean).div_(self.std)
        target = self.targets[index]
        batch = {'input': x, 'target': target, 'index': index}
        if self.contrast is not None:
            if isinstance(self.contrast, DeviceContrastSampler):
                batch['contrast_idx'] = self.contrast.sample(index, target, self.generator)
            else:
                batch['contrast_idx'] = torch.from_numpy(
                    self.contrast.sample(index.numpy(), target.numpy()))
        return batch

    def __iter__(self):
        order = self._order(self.epoch)
        self.epoch += 1  # a fresh shuffle next time, unless set_epoch says otherwise
        stop = len(order) - len(order) % self.batch_size if self.drop_last else len(order)
        for start in range(0, stop, self.batch_size):
            yield self._batch(order[start:start + self.batch_size])


def loader_set_epoch(loader, epoch):
    """Tell a loader which epoch starts. The epoch's order (and worker seeds) then depend only on
    (seed, epoch), so a resumed run replays exactly the epochs an uninterrupted run would see."""
    if hasattr(loader, 'set_epoch'):
        loader.set_epoch(epoch)
    elif isinstance(getattr(loader, 'sampler', None), DistributedSampler):
        loader.sampler.set_epoch(epoch)
    if getattr(loader, 'generator', None) is not None and hasattr(loader, 'epoch_seed'):
        loader.generator.manual_seed(derive_seed(loader.epoch_seed, epoch))
    contrast = getattr(loader, 'contrast', None) or getattr(getattr(loader, 'collate_fn', None), 'contrast', None)
    if hasattr(contrast, 'set_epoch'):
        contrast.set_epoch(epoch)
