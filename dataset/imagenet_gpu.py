"""ImageNet's fast path (--data_on_device with --dataset imagenet): loader workers only read the
JPEG files' bytes; the training device decodes them (nvjpeg through torchvision.io.decode_jpeg on
CUDA, libjpeg-turbo on the CPU) and crops, resizes, flips and normalizes there.

The augmentation family is the published one: RandomResizedCrop(224, scale (0.08, 1), ratio
(3/4, 4/3)) with bilinear antialiased resizing and a horizontal flip for training, Resize(256) +
CenterCrop(224) for evaluation. Crop boxes follow torchvision's rule (10 tries, then a central
crop) but are drawn from the loader's own generator: the same distribution, another random
stream. Files that are not baseline JPEGs (ImageNet has a few CMYK JPEGs and one PNG) are decoded
one by one on the CPU.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.io import ImageReadMode, decode_image, decode_jpeg

from dataset import imagenet
from dataset.common import CollateBatch
from dataset.datafiles import unreadable_image
from dataset.device_loader import derive_seed, loader_set_epoch

TRAIN_SIZE, RESIZE = 224, 256
SCALE, RATIO = (0.08, 1.0), (3 / 4, 4 / 3)
TRIES = 10


def read_bytes(path):
    return torch.from_numpy(np.fromfile(path, dtype=np.uint8))


def load(root):
    """dataset.imagenet's folders (same checks, same class-sorted order), yielding the encoded
    files instead of transformed images."""
    source = imagenet.load(root)
    for folder in (source.train, source.test):
        folder.loader, folder.transform = read_bytes, None
    return source


class CollateBytes(CollateBatch):
    """A batch of encoded files: 'input' is a list of 1-D uint8 tensors."""
    stack = staticmethod(list)


def crop_boxes(heights, widths, generator):
    """RandomResizedCrop boxes (top, left, height, width) for images of the given sizes, all at
    once: torchvision's 10 tries of area in SCALE and log-uniform aspect ratio in RATIO, the
    first that fits; else the central crop of the ratio clamped to RATIO."""
    H = torch.as_tensor(heights, dtype=torch.float64)[:, None]
    W = torch.as_tensor(widths, dtype=torch.float64)[:, None]
    n = H.shape[0]
    u = torch.rand(n, TRIES, 4, generator=generator, dtype=torch.float64)
    area = H * W * (SCALE[0] + (SCALE[1] - SCALE[0]) * u[..., 0])
    log_lo, log_hi = math.log(RATIO[0]), math.log(RATIO[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u[..., 1])
    w = torch.round(torch.sqrt(area * aspect))
    h = torch.round(torch.sqrt(area / aspect))
    fits = (w > 0) & (w <= W) & (h > 0) & (h <= H)
    top = torch.floor(u[..., 2] * (H - h + 1))
    left = torch.floor(u[..., 3] * (W - w + 1))
    first = fits.to(torch.uint8).argmax(1, keepdim=True)  # first try that fits
    pick = lambda t: t.gather(1, first)[:, 0]  # noqa: E731
    top, left, h, w = pick(top), pick(left), pick(h), pick(w)
    # no try fit: torchvision's fallback
    H, W = H[:, 0], W[:, 0]
    in_ratio = W / H
    fw = torch.where(in_ratio < RATIO[0], W, torch.where(in_ratio > RATIO[1], torch.round(H * RATIO[1]), W))
    fh = torch.where(in_ratio < RATIO[0], torch.round(W / RATIO[0]), H)
    fh = torch.where(in_ratio > RATIO[1], H, fh)
    ok = fits.any(1)
    h, w = torch.where(ok, h, fh), torch.where(ok, w, fw)
    top = torch.where(ok, top, torch.div(H - fh, 2, rounding_mode='floor'))
    left = torch.where(ok, left, torch.div(W - fw, 2, rounding_mode='floor'))
    return torch.stack([top, left, h, w], 1).long()


def _resize(image, size):
    """uint8 (C, h, w) -> float (C, *size), bilinear with antialiasing like PIL's resize."""
    x = image[None].float()
    return F.interpolate(x, size=size, mode='bilinear', antialias=True, align_corners=False)[0]


def eval_image(image):
    """Resize(256) (the shorter side) then CenterCrop(224), on a uint8 (C, H, W) image."""
    h, w = image.shape[-2:]
    if h <= w:
        size = (RESIZE, int(RESIZE * w / h))
    else:
        size = (int(RESIZE * h / w), RESIZE)
    x = _resize(image, size)
    top = int(round((size[0] - TRAIN_SIZE) / 2.0))
    left = int(round((size[1] - TRAIN_SIZE) / 2.0))
    return x[:, top:top + TRAIN_SIZE, left:left + TRAIN_SIZE]


class JpegDeviceLoader:
    """Wraps a DataLoader of encoded batches (CollateBytes); yields batch dicts on `device` with
    'input' decoded, augmented (train) or resized and cropped (eval), and normalized."""

    def __init__(self, loader, device, train, mean, std, seed=0, rank=0):
        self.loader, self.device, self.train = loader, torch.device(device), train
        # nvjpeg on CUDA; elsewhere (CPU, MPS) libjpeg-turbo on the host
        self.decode_device = self.device if self.device.type == 'cuda' else torch.device('cpu')
        shape = (1, -1, 1, 1)
        self.mean = torch.tensor(mean, device=self.device).view(shape) * 255
        self.std = torch.tensor(std, device=self.device).view(shape) * 255
        self.seed, self.rank = seed, rank
        self.crops = torch.Generator()  # crop boxes and flips are drawn on the host: no sync
        self.set_epoch(0)

    def set_epoch(self, epoch):
        loader_set_epoch(self.loader, epoch)
        self.crops.manual_seed(derive_seed(self.seed, self.rank, 5, epoch))

    def __len__(self):
        return len(self.loader)

    @property
    def dataset(self):
        return self.loader.dataset

    def decode(self, data, index=None):
        """Encoded files -> list of uint8 (3, H, W) on the device; one batched decode call.
        index: the files' dataset indices, which name a file that cannot be decoded."""
        try:
            images = decode_jpeg(data, mode=ImageReadMode.RGB, device=self.decode_device)
        except RuntimeError:  # a CMYK, non-JPEG or damaged file somewhere in the batch
            index = range(len(data)) if index is None else index
            images = [self._decode_one(d, i) for d, i in zip(data, index)]
        return [(im if im.shape[0] == 3 else im.expand(3, -1, -1)).to(self.device) for im in images]

    def _decode_one(self, data, i):
        try:
            return decode_jpeg(data, mode=ImageReadMode.RGB, device=self.decode_device)
        except RuntimeError:
            pass
        try:
            return decode_image(data, mode=ImageReadMode.RGB)
        except RuntimeError as err:  # truncated, or not an image
            raise unreadable_image(self._path(i), err) from None

    def _path(self, i):
        samples = getattr(getattr(getattr(self.loader, 'dataset', None), 'base', None), 'samples', None)
        return samples[i][0] if samples is not None else f'number {i} of its batch'

    def transform(self, images):
        if not self.train:
            x = torch.stack([eval_image(im) for im in images])
        else:
            boxes = crop_boxes([im.shape[1] for im in images], [im.shape[2] for im in images],
                               self.crops).tolist()
            flips = (torch.rand(len(images), generator=self.crops) < 0.5).tolist()
            out = []
            for im, (top, left, h, w), flip in zip(images, boxes, flips):
                x = _resize(im[:, top:top + h, left:left + w], (TRAIN_SIZE, TRAIN_SIZE))
                out.append(x.flip(-1) if flip else x)
            x = torch.stack(out)
        return x.sub_(self.mean).div_(self.std)

    def __iter__(self):
        for batch in self.loader:
            out = {k: v.to(self.device, non_blocking=True) for k, v in batch.items() if k != 'input'}
            out['input'] = self.transform(self.decode(batch['input'], batch['index'].tolist()))
            yield out
