"""CIFAR-100 and CIFAR-10 in torchvision's python-pickle layout, with the published augmentation.

Files already in `<data_folder>/cifar-100-python/` (or `cifar-10-batches-py/`) load without an md5
check: a user's own copy, or the small sets the tests write. Missing files are downloaded with
torchvision's downloader, and the md5 sums are checked right after that download.
"""
import os
import pickle

import numpy as np
from torchvision import datasets, transforms
from torchvision.datasets.utils import check_integrity, download_and_extract_archive

from dataset.common import DataSource, DeviceArrays, sort_by_class
from helper.errors import UsageError

# CRD-EMKD normalises CIFAR-10 with CIFAR-100's mean and std (dataset/cifar10.py there)
MEAN = {'cifar100': (0.5071, 0.4867, 0.4408), 'cifar10': (0.5071, 0.4867, 0.4408)}
STD = {'cifar100': (0.2675, 0.2565, 0.2761), 'cifar10': (0.2675, 0.2565, 0.2761)}


class _PresentFiles:
    """torchvision's CIFAR, trusting files that are present (checked by `ensure_files`)."""

    def _check_integrity(self):
        return all(os.path.isfile(path) for path, _ in _files(type(self), self.root))

    def _load_meta(self):
        path = os.path.join(self.root, self.base_folder, self.meta['filename'])
        with open(path, 'rb') as f:
            self.classes = pickle.load(f, encoding='latin1')[self.meta['key']]
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}


class CIFAR100(_PresentFiles, datasets.CIFAR100):
    pass


class CIFAR10(_PresentFiles, datasets.CIFAR10):
    pass


CLASSES = {'cifar100': CIFAR100, 'cifar10': CIFAR10}


def _files(cls, root):
    """(path, md5) of every file the layout needs."""
    names = cls.train_list + cls.test_list + [[cls.meta['filename'], cls.meta['md5']]]
    return [(os.path.join(root, cls.base_folder, name), md5) for name, md5 in names]


def ensure_files(name, root):
    cls = CLASSES[name]
    files = _files(cls, root)
    if all(os.path.isfile(path) for path, _ in files):
        return
    folder = os.path.join(root, cls.base_folder)
    try:
        download_and_extract_archive(cls.url, root, filename=cls.filename, md5=cls.tgz_md5)
    except Exception as err:  # offline, proxy, refused, truncated: all end the same way
        reason = ' '.join(str(err).split()) or type(err).__name__
        listed = ', '.join(os.path.basename(path) for path, _ in files)
        raise UsageError(f'{name} is not in {folder} and could not be downloaded ({reason}); '
                         f'put {listed} there (the extracted {cls.filename})') from err
    corrupt = [os.path.basename(path) for path, md5 in files if not check_integrity(path, md5)]
    if corrupt:
        raise UsageError(f"{name}: md5 check failed for the downloaded {', '.join(corrupt)} in "
                         f'{folder}; delete the folder and try again')


def load(name, root):
    ensure_files(name, root)
    cls = CLASSES[name]
    normalize = transforms.Normalize(MEAN[name], STD[name])
    train = cls(root, train=True, transform=transforms.Compose([
        transforms.RandomCrop(32, padding=4),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        normalize,
    ]))
    test = cls(root, train=False, transform=transforms.Compose([transforms.ToTensor(), normalize]))
    # Stored class-sorted: CRD's negatives become index arithmetic (dataset/contrast.py). The
    # loader shuffles, so nothing else sees the order.
    order = sort_by_class(train.targets)
    train.data = train.data[order]
    train.targets = [int(t) for t in np.asarray(train.targets)[order]]

    def device_arrays():
        return DeviceArrays(np.ascontiguousarray(train.data.transpose(0, 3, 1, 2)),
                            np.asarray(train.targets),
                            np.ascontiguousarray(test.data.transpose(0, 3, 1, 2)),
                            np.asarray(test.targets), scale=255, padding=4, flip=True)

    num_classes = max(len(train.classes), max(train.targets) + 1)
    return DataSource(train, test, np.asarray(train.targets), num_classes, 32,
                      MEAN[name], STD[name], device_arrays)
