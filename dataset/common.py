"""Pieces shared by the datasets: what a dataset module returns and how batches are built."""
import os
import signal
import threading
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
from torch.utils.data import Dataset


@dataclass
class DeviceArrays:
    """A dataset small enough to live on the training device (dataset/device_loader.py)."""
    train_images: np.ndarray   # uint8 (N, C, H, W), class-sorted like the train set
    train_targets: np.ndarray
    test_images: np.ndarray
    test_targets: np.ndarray
    scale: float               # pixel value that ToTensor maps to 1.0 (255; 16 for digits)
    padding: int               # random-crop zero padding
    flip: bool                 # random horizontal flip


@dataclass
class DataSource:
    """What each dataset module builds: transformed train/test sets and their facts."""
    train: Dataset             # yields (input tensor, target) with the train augmentation
    test: Dataset              # yields (input tensor, target), not augmented
    train_targets: np.ndarray  # sorted by class (CRD negatives become index arithmetic)
    num_classes: int
    image_size: int
    mean: tuple
    std: tuple
    device_arrays: Optional[Callable[[], DeviceArrays]] = None  # built only when asked for


class ArrayDataset(Dataset):
    """uint8 images (N, C, H, W) in memory, converted like ToTensor, then `transform`."""

    def __init__(self, images, targets, scale, transform=None):
        self.images, self.targets = images, [int(t) for t in targets]
        self.scale, self.transform = scale, transform

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        image = torch.from_numpy(self.images[i]).float().div_(self.scale)
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[i]


class Indexed(Dataset):
    """Adds each sample's index, which CRD's memory bank is keyed by."""

    def __init__(self, base):
        self.base = base

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        image, target = self.base[i]
        return image, target, i


class CollateBatch:
    """Stacks (image, target, index) samples into the batch dict; under CRD also draws the
    batch's contrast indices at once (in the worker, like the published per-sample draw)."""

    stack = staticmethod(torch.stack)  # the ImageNet fast path keeps encoded files as a list

    def __init__(self, contrast=None):
        self.contrast = contrast

    def __call__(self, samples):
        images, targets, indices = zip(*samples)
        batch = {'input': self.stack(images),
                 'target': torch.tensor(targets, dtype=torch.long),
                 'index': torch.tensor(indices, dtype=torch.long)}
        if self.contrast is not None:
            batch['contrast_idx'] = torch.from_numpy(
                self.contrast.sample(batch['index'].numpy(), batch['target'].numpy()))
        return batch


def sort_by_class(targets):
    """Stable order that groups the samples by class."""
    return np.argsort(np.asarray(targets), kind='stable')


def worker_leaves_signals_to_main(worker_id, main_pid=None):
    """A loader worker's worker_init_fn (main_pid: the process that iterates the loader). A job
    system stops a job by signalling every process of it; the main process then finishes its step
    and checkpoints, but a worker killed by the same signal would crash the run first. So a worker
    ignores SIGINT, and SIGTERM unless the main process (or its parent) sends it: that is
    multiprocessing's terminate() when the loader or the main process ends."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not hasattr(signal, 'sigwaitinfo'):  # not Linux: the workers keep torch's handlers
        return
    # blocked in this thread and in every thread it starts; one thread takes the signals in turn
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    senders = {os.getppid(), main_pid or os.getppid()}
    threading.Thread(target=_exit_on_sigterm_from, args=(senders,), name='loader-worker-signals',
                     daemon=True).start()


def _exit_on_sigterm_from(senders):
    while True:
        if signal.sigwaitinfo({signal.SIGTERM}).si_pid in senders:
            os._exit(0)
