"""CIFAR-100 and CIFAR-10 in torchvision's python-pickle layout, with the published augmentation.

Files already in `<data_folder>/cifar-100-python/` (or `cifar-10-batches-py/`) are read as data
(dataset/datafiles.py: no code in a file runs) and checked for the layout; a file with the
official name and number of images must also have the official md5. A user's own smaller copy,
or the small sets the tests write, load without one. Missing files are downloaded with
torchvision's downloader, and the md5 sums are checked right after that download.
"""
import os

import numpy as np
from torchvision import datasets, transforms
from torchvision.datasets.utils import check_integrity, download_and_extract_archive
from torchvision.datasets.vision import VisionDataset

from dataset.common import DataSource, DeviceArrays, sort_by_class
from dataset.datafiles import DataFileError, check_md5, read_pickle
from helper.errors import UsageError

# CRD-EMKD normalises CIFAR-10 with CIFAR-100's mean and std (dataset/cifar10.py there)
MEAN = {'cifar100': (0.5071, 0.4867, 0.4408), 'cifar10': (0.5071, 0.4867, 0.4408)}
STD = {'cifar100': (0.2675, 0.2565, 0.2761), 'cifar10': (0.2675, 0.2565, 0.2761)}


class _PresentFiles:
    """torchvision's CIFAR reading present files (`ensure_files` fetched missing ones) as data."""

    def __init__(self, root, train=True, transform=None, target_transform=None):
        VisionDataset.__init__(self, root, transform=transform, target_transform=target_transform)
        self.train = train
        data, self.targets = [], []
        for name, md5 in self.train_list if train else self.test_list:
            images, labels = self._read_batch(name, md5)
            data.append(images)
            self.targets.extend(int(t) for t in labels)
        self.data = np.vstack(data).reshape(-1, 3, 32, 32).transpose((0, 2, 3, 1))
        self._load_meta()

    def _remedy(self):
        return (f'copy that file from the extracted {self.filename} again, or delete '
                f'{os.path.join(self.root, self.base_folder)} to have it downloaded')

    def _read_batch(self, name, md5):
        path = os.path.join(self.root, self.base_folder, name)
        entry = read_pickle(path, self._remedy())
        entry = entry if isinstance(entry, dict) else {}
        images, labels = entry.get('data'), entry.get(self.label_key)
        # a flat list of class numbers (nested or ragged lists are not labels)
        n = len(labels) if isinstance(labels, list) and labels and all(
            isinstance(t, (int, np.integer)) and not isinstance(t, bool) and 0 <= t < self.n_classes
            for t in labels) else -1
        if not (isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.shape == (n, 3072)):
            raise DataFileError(f'{path} is not a {self.base_folder} batch (a dict with uint8 "data" of '
                                f'N x 3072 and N "{self.label_key}" below {self.n_classes}); {self._remedy()}')
        if n == self.official_images[name]:  # an official-sized file must be the official file
            check_md5(path, md5, self._remedy())
        return images, labels

    def _check_integrity(self):
        return all(os.path.isfile(path) for path, _ in _files(type(self), self.root))

    def _load_meta(self):
        path = os.path.join(self.root, self.base_folder, self.meta['filename'])
        meta = read_pickle(path, self._remedy())
        classes = meta.get(self.meta['key']) if isinstance(meta, dict) else None
        if not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)):
            raise DataFileError(f'{path} is not a {self.base_folder} meta file (no list of '
                                f'"{self.meta["key"]}"); {self._remedy()}')
        self.classes = classes
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}


class CIFAR100(_PresentFiles, datasets.CIFAR100):
    label_key, n_classes = 'fine_labels', 100
    official_images = {'train': 50000, 'test': 10000}


class CIFAR10(_PresentFiles, datasets.CIFAR10):
    label_key, n_classes = 'labels', 10
    official_images = {name: 10000 for name, _ in datasets.CIFAR10.train_list + datasets.CIFAR10.test_list}


CLASSES = {'cifar100': CIFAR100, 'cifar10': CIFAR10}


def _files(cls, root):
    """(path, md5) of every file the layout needs."""
    names = cls.train_list + cls.test_list + [[cls.meta['filename'], cls.meta['md5']]]
    return [(os.path.join(root, cls.base_folder, name), md5) for name, md5 in names]


class DownloadNeeded(UsageError):
    """The files are missing and downloading was not allowed (a dry run). info: the set's shape
    (as get_loaders gives it), so a dry run can check the models without the files."""

    def __init__(self, message, info):
        super().__init__(message)
        self.info = info


def _new_folders(path):
    """path and those of its parents that do not exist yet, deepest first (what a download creates)."""
    out = []
    while path and not os.path.exists(path):
        out.append(path)
        path = os.path.dirname(path.rstrip(os.sep))
    return out


def ensure_files(name, root, download=True):
    cls = CLASSES[name]
    files = _files(cls, root)
    if all(os.path.isfile(path) for path, _ in files):
        return
    folder = os.path.join(root, cls.base_folder)
    if not download:
        raise DownloadNeeded(f'{name} is not in {folder}: the run downloads it ({cls.url})',
                             dict(n_data=50000, num_classes=100 if name == 'cifar100' else 10, image_size=32,
                                  mean=MEAN[name], std=STD[name]))
    created = _new_folders(os.path.abspath(root))
    archive = os.path.join(root, cls.filename)
    had_archive = os.path.exists(archive)
    try:
        download_and_extract_archive(cls.url, root, filename=cls.filename, md5=cls.tgz_md5)
    except Exception as err:  # offline, proxy, refused, truncated: all end the same way
        # leave no partial archive and no empty folder behind: the next try starts clean
        if os.path.isfile(archive) and not had_archive:
            os.remove(archive)
        for path in created:
            if os.path.isdir(path) and not os.listdir(path):
                os.rmdir(path)
        reason = ' '.join(str(err).split()) or type(err).__name__
        listed = ', '.join(os.path.basename(path) for path, _ in files)
        raise UsageError(f'{name} is not in {folder} and could not be downloaded ({reason}); '
                         f'put {listed} there (the extracted {cls.filename})') from err
    corrupt = [os.path.basename(path) for path, md5 in files if not check_integrity(path, md5)]
    if corrupt:
        raise UsageError(f"{name}: md5 check failed for the downloaded {', '.join(corrupt)} in "
                         f'{folder}; delete the folder and try again')


def load(name, root, download=True):
    ensure_files(name, root, download)
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
