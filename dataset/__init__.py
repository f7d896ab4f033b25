"""Datasets and loaders: `get_loaders(opt, device) -> (train_loader, test_loader, info)`.

Train batches are dicts {'input', 'target', 'index'} plus, with contrast=True, 'contrast_idx'
(batch, nce_k + 1): the positive first, then the negatives. Test batches: {'input', 'target',
'index'}. Ordinary loaders yield CPU tensors (pinned on CUDA); --data_on_device loaders yield
tensors already on the device. Call `loader_set_epoch(loader, epoch)` before each epoch: it
reshuffles DDP shards and works for both kinds of loader.
"""
import functools
import dataclasses
import os

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from dataset import cifar, digits, imagenet, tiny_imagenet
from dataset.common import CollateBatch, Indexed, worker_leaves_signals_to_main
from dataset.contrast import ContrastSampler
from dataset.device_loader import DeviceLoader, derive_seed, loader_set_epoch
from helper.errors import UsageError

DATASETS = ('cifar100', 'cifar10', 'tiny_imagenet', 'imagenet', 'digits')
DEVICE_DATASETS = ('cifar100', 'cifar10', 'digits')  # small enough for --data_on_device
JPEG_DATASETS = ('imagenet',)  # --data_on_device: decoded and augmented on the device
_LOADERS = {
    'cifar100': lambda root, opt: cifar.load('cifar100', root, download=not getattr(opt, 'dry_run', False)),
    'cifar10': lambda root, opt: cifar.load('cifar10', root, download=not getattr(opt, 'dry_run', False)),
    'tiny_imagenet': lambda root, opt: tiny_imagenet.load(
        root, opt.tiny_imagenet_transform),
    'imagenet': lambda root, opt: imagenet.load(root, opt.imagenet_transform),
    'digits': lambda root, opt: digits.load(root),
}


def default_num_workers():
    """8 loader workers as published, but no more than the CPUs this process may use: those it is
    bound to (a job's allocation), and under SLURM no more than SLURM_CPUS_PER_TASK."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1
    allocated = os.environ.get('SLURM_CPUS_PER_TASK', '')
    if allocated.isdigit() and int(allocated) > 0:
        cpus = min(cpus, int(allocated))
    return min(8, cpus)


def test_batch_size(train_batch_size):
    # Evaluation holds no gradients: a big batch is cheaper and changes no result.
    return max(256, 4 * train_batch_size)


class ShardSampler(Sampler):
    """Every world_size-th sample from `rank`, in order, without the padding duplicates that
    DistributedSampler adds (they would be counted twice in the test accuracy)."""

    def __init__(self, n, rank, world_size):
        self.indices = range(rank, n, world_size)

    def __iter__(self):
        return iter(self.indices)

    def __len__(self):
        return len(self.indices)


def _distributed():
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _source(opt):
    """(the dataset's source, its collate class, whether JPEGs are decoded on the device)."""
    name = opt.dataset
    if name not in DATASETS:
        raise UsageError(f"unknown --dataset {name!r}; choose one of {', '.join(DATASETS)}")
    on_device = bool(opt.data_on_device)
    jpeg_on_device = on_device and name in JPEG_DATASETS
    if on_device and not jpeg_on_device and name not in DEVICE_DATASETS:
        raise UsageError(f"--data_on_device supports {', '.join(DEVICE_DATASETS + JPEG_DATASETS)}, "
                         f"not {name}")
    if not jpeg_on_device:
        return _LOADERS[name](opt.data_folder, opt), CollateBatch, False
    if opt.imagenet_transform != 'standard':
        raise UsageError('--data_on_device on imagenet decodes and augments with the standard '
                         'pipeline only; drop --data_on_device or use --imagenet_transform standard')
    from dataset import imagenet_gpu
    return imagenet_gpu.load(opt.data_folder), imagenet_gpu.CollateBytes, True


SUBSET_SEED = 0  # one subset for every run: methods and seeds differ, the labelled images do not


def class_subset(targets, per_class, seed=SUBSET_SEED):
    """Sorted indices of per_class samples of each class, drawn at random with a fixed seed."""
    targets = np.asarray(targets)
    rng = np.random.RandomState(seed)
    picked = []
    for label in np.unique(targets):
        members = np.flatnonzero(targets == label)
        if len(members) < per_class:
            raise UsageError(f'--train_per_class {per_class}: class {label} has only {len(members)} '
                             f'training images')
        picked.append(rng.choice(members, per_class, replace=False))
    return np.sort(np.concatenate(picked))


def labelled_subset(source, per_class):
    """The source with only the class_subset of its training set (test set unchanged)."""
    keep = class_subset(source.train_targets, per_class)
    arrays = source.device_arrays

    def device_arrays():
        a = arrays()
        return dataclasses.replace(a, train_images=a.train_images[keep], train_targets=a.train_targets[keep])

    return dataclasses.replace(source, train=torch.utils.data.Subset(source.train, keep.tolist()),
                               train_targets=np.asarray(source.train_targets)[keep],
                               device_arrays=device_arrays if arrays is not None else None)


def get_loaders(opt, device, contrast=False):
    """contrast: train batches carry CRD's 'contrast_idx' (opt.nce_k negatives, opt.mode)."""
    source, collate, jpeg_on_device = _source(opt)
    if getattr(opt, 'train_per_class', None):
        source = labelled_subset(source, opt.train_per_class)
    on_device = bool(opt.data_on_device)
    device = torch.device(device)
    rank, world_size = _distributed()
    seed = opt.seed
    if seed is None:  # DDP ranks must agree on the shuffle: DistributedSampler's default, 0
        seed = 0 if world_size > 1 else int(torch.randint(2 ** 62, ()).item())
    batch_size = int(opt.batch_size)
    # Static batch shapes for torch.compile: --compile (and --fast, whether or not it then
    # compiles, so that its results do not depend on that choice) drops the last partial batch.
    drop_last = bool(opt.compile)

    if contrast:
        contrast = ContrastSampler(source.train_targets, opt.nce_k, opt.mode, seed=derive_seed(seed, 3),
                                   stream=rank)
    else:
        contrast = None
    info = dict(n_data=len(source.train), num_classes=source.num_classes,
                image_size=source.image_size, mean=tuple(source.mean), std=tuple(source.std))

    if on_device and not jpeg_on_device:
        arrays = source.device_arrays()
        common = dict(mean=source.mean, std=source.std, scale=arrays.scale, device=device,
                      seed=seed, rank=rank, world_size=world_size)
        train_loader = DeviceLoader(arrays.train_images, arrays.train_targets, batch_size,
                                    train=True, padding=arrays.padding, flip=arrays.flip,
                                    contrast=contrast, drop_last=drop_last, **common)
        test_loader = DeviceLoader(arrays.test_images, arrays.test_targets,
                                   test_batch_size(batch_size), train=False, **common)
        return train_loader, test_loader, info

    workers = default_num_workers() if opt.num_workers is None else int(opt.num_workers)
    if contrast is not None:
        # Before the workers fork. The device path compiles at first use on a CPU, never on a GPU.
        contrast.compile()
    train_set, test_set = Indexed(source.train), Indexed(source.test)
    train_sampler = test_sampler = None
    if world_size > 1:
        train_sampler = DistributedSampler(train_set, world_size, rank, shuffle=True, seed=seed,
                                           drop_last=drop_last)
        test_sampler = ShardSampler(len(test_set), rank, world_size)
    generator = torch.Generator()
    generator.manual_seed(derive_seed(seed, rank, 4))
    common = dict(num_workers=workers, pin_memory=device.type == 'cuda', persistent_workers=workers > 0,
                  worker_init_fn=functools.partial(worker_leaves_signals_to_main, main_pid=os.getpid())
                  if workers > 0 else None)
    train_loader = DataLoader(train_set, batch_size, shuffle=train_sampler is None,
                              sampler=train_sampler, drop_last=drop_last,
                              collate_fn=collate(contrast), generator=generator, **common)
    train_loader.epoch_seed = derive_seed(seed, rank, 4)
    test_loader = DataLoader(test_set, test_batch_size(batch_size), shuffle=False,
                             sampler=test_sampler, collate_fn=collate(), **common)
    if jpeg_on_device:
        from dataset import imagenet_gpu
        common = dict(device=device, mean=source.mean, std=source.std, seed=seed, rank=rank)
        train_loader = imagenet_gpu.JpegDeviceLoader(train_loader, train=True, **common)
        test_loader = imagenet_gpu.JpegDeviceLoader(test_loader, train=False, **common)
    return train_loader, test_loader, info


__all__ = ['DATASETS', 'DEVICE_DATASETS', 'get_loaders', 'loader_set_epoch', 'default_num_workers',
           'test_batch_size', 'ContrastSampler', 'DeviceLoader']
