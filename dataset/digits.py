"""The offline demo set: scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes).

Each image (values 0..16) is upscaled 4x by pixel repetition to 32x32 and copied to 3 channels,
so every CIFAR model runs on it unchanged. A fixed-seed permutation splits it 80/20; inputs are
normalized with the train split's own mean and std. The csv that ships inside scikit-learn is
read directly: importing sklearn would take longer than the whole load.
"""
import importlib.util
import os

import numpy as np
from torchvision import transforms

from dataset.common import ArrayDataset, DataSource, DeviceArrays, sort_by_class
from helper.errors import UsageError

SPLIT_SEED = 0
TRAIN_FRACTION = 0.8
SCALE = 16  # the largest pixel value
# Shifts of up to 2 px (half an original pixel) only: digits are not mirror-symmetric (a flipped
# 2 or 7 is no longer that digit), so no flip.
PADDING = 2


def _csv_path():
    spec = importlib.util.find_spec('sklearn')
    if spec is None:
        raise UsageError('the digits set ships inside scikit-learn: pip install scikit-learn')
    return os.path.join(spec.submodule_search_locations[0], 'datasets', 'data', 'digits.csv.gz')


def arrays():
    """(train images, train targets, test images, test targets): uint8 NCHW, class-sorted train."""
    table = np.loadtxt(_csv_path(), delimiter=',', dtype=np.int64)
    images = table[:, :-1].reshape(-1, 8, 8).astype(np.uint8)
    targets = table[:, -1]
    images = images.repeat(4, axis=1).repeat(4, axis=2)[:, None].repeat(3, axis=1)
    order = np.random.RandomState(SPLIT_SEED).permutation(len(targets))
    n_train = int(round(TRAIN_FRACTION * len(targets)))
    train, test = order[:n_train], order[n_train:]
    train = train[sort_by_class(targets[train])]
    return images[train], targets[train], images[test], targets[test]


def load(root=None):
    train_x, train_y, test_x, test_y = arrays()
    pixels = train_x[:, 0].astype(np.float64) / SCALE
    mean, std = (float(pixels.mean()),) * 3, (float(pixels.std()),) * 3
    normalize = transforms.Normalize(mean, std)
    # ArrayDataset scales to [0, 1] first, so the crop pads with 0 before normalizing, as on CIFAR.
    train = ArrayDataset(train_x, train_y, SCALE, transforms.Compose([
        transforms.RandomCrop(32, padding=PADDING), normalize]))
    test = ArrayDataset(test_x, test_y, SCALE, normalize)
    return DataSource(train, test, train_y, 10, 32, mean, std, lambda: DeviceArrays(
        train_x, train_y, test_x, test_y, SCALE, PADDING, flip=False))
