"""Tiny-ImageNet: the standard `tiny-imagenet-200/` folder (200 classes of 64x64 images).

Layout: wnids.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG and val/val_annotations.txt
(file name, wnid, box). Classes are numbered in sorted wnid order, as ImageFolder on train/ would.
Transforms (--tiny_imagenet_transform):
- `emkd` (default, CRD-EMKD's dataset/tinyimagenet.py): with probability 0.8 one RandomApply of
  flip, RandomRotation(10) and RandomResizedCrop(64), else the image as it is; mean/std 0.5.
- `crop`: CIFAR's recipe scaled to 64 px (random crop with 8 px zero padding, flip) and
  ImageNet's mean/std.
Test images are only normalised.
"""
import os

from torch.utils.data import Dataset
from torchvision import transforms
from dataset.common import DataSource
from dataset.datafiles import DataFileError, first_missing, read_image
from helper.errors import UsageError

FOLDER = 'tiny-imagenet-200'
TRANSFORMS = ('emkd', 'crop')
EMKD_MEAN = EMKD_STD = (0.5, 0.5, 0.5)
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
IMAGE_SUFFIXES = ('.jpeg', '.jpg', '.png')


class ImageList(Dataset):
    """(path, target) pairs read with PIL (grayscale files become RGB); a bad file is a DataFileError."""

    def __init__(self, samples, transform):
        self.samples, self.transform = samples, transform
        self.targets = [target for _, target in samples]

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        path, target = self.samples[i]
        return self.transform(read_image(path)), target


def _images(folder):
    return sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_SUFFIXES))


def find_samples(root):
    base = os.path.join(root, FOLDER)
    needed = [os.path.join(base, p) for p in ('wnids.txt', 'train', 'val/val_annotations.txt')]
    if not all(os.path.exists(p) for p in needed):
        raise UsageError(f'tiny_imagenet not found: put the extracted {FOLDER}/ (wnids.txt, '
                         f'train/<wnid>/images/, val/images/, val/val_annotations.txt) in {root}')
    with open(needed[0]) as f:
        wnids = sorted(line.strip() for line in f if line.strip())
    class_index = {wnid: i for i, wnid in enumerate(wnids)}
    train = []
    for wnid in wnids:  # class by class: the train set is class-sorted
        folder = os.path.join(base, 'train', wnid, 'images')
        if not os.path.isdir(folder):
            raise UsageError(f'tiny_imagenet: {folder} is missing (wnids.txt lists {wnid})')
        train += [(os.path.join(folder, name), class_index[wnid]) for name in _images(folder)]
    val = []
    with open(needed[2]) as f:
        for line in f:
            fields = line.split('\t')
            if len(fields) < 2:
                continue
            if fields[1] not in class_index:
                raise UsageError(f'tiny_imagenet: val_annotations.txt names {fields[1]}, '
                                 'which wnids.txt does not list')
            val.append((os.path.join(base, 'val', 'images', fields[0]), class_index[fields[1]]))
    missing = first_missing(path for path, _ in val)
    if missing:
        raise DataFileError(f'tiny_imagenet: {missing} is missing (val_annotations.txt lists it); '
                            f'copy it from the extracted {FOLDER}/ again')
    return train, val, len(wnids)


def train_transform(name):
    """(train augmentation before ToTensor, mean, std) of a --tiny_imagenet_transform."""
    if name == 'emkd':
        return transforms.RandomApply([transforms.RandomHorizontalFlip(), transforms.RandomRotation(10),
                                       transforms.RandomResizedCrop(64)], p=0.8), EMKD_MEAN, EMKD_STD
    if name == 'crop':
        return transforms.Compose([transforms.RandomCrop(64, padding=8),
                                   transforms.RandomHorizontalFlip()]), MEAN, STD
    raise UsageError(f"unknown --tiny_imagenet_transform {name!r}; choose {', '.join(TRANSFORMS)}")


def load(root, transform='emkd'):
    augment, mean, std = train_transform(transform)
    train, val, num_classes = find_samples(root)
    normalize = transforms.Normalize(mean, std)
    train_set = ImageList(train, transforms.Compose([augment, transforms.ToTensor(), normalize]))
    test_set = ImageList(val, transforms.Compose([transforms.ToTensor(), normalize]))
    return DataSource(train_set, test_set, train_set.targets, num_classes, 64, mean, std)
