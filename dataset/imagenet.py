"""ImageNet as two ImageFolders, `<data_folder>/imagenet/train/<class>/` and `.../val/<class>/`.

Transforms (--imagenet_transform):
- `standard` (default): RandomResizedCrop(224) and flip for training, Resize(256) and
  CenterCrop(224) for evaluation.
- `emkd`: CRD-EMKD's dataset/imagenet.py: RandomCrop(64, padding 4) and flip for training,
  Resize(256) and CenterCrop(128) for evaluation (its get_test_loader); train and test sizes differ.
"""
import os

from torchvision import datasets, transforms

from dataset.common import DataSource
from dataset.datafiles import read_image
from helper.errors import UsageError

FOLDER = 'imagenet'
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
TRANSFORMS = ('standard', 'emkd')


def pipelines(name):
    """(train transforms, test transforms, train image size) before ToTensor/normalize."""
    if name == 'standard':
        return ([transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip()],
                [transforms.Resize(256), transforms.CenterCrop(224)], 224)
    if name == 'emkd':
        return ([transforms.RandomCrop(64, padding=4), transforms.RandomHorizontalFlip()],
                [transforms.Resize(256), transforms.CenterCrop(128)], 64)
    raise UsageError(f"unknown --imagenet_transform {name!r}; choose {', '.join(TRANSFORMS)}")


def load(root, transform='standard'):
    train_steps, test_steps, size = pipelines(transform)
    base = os.path.join(root, FOLDER)
    train_dir, val_dir = os.path.join(base, 'train'), os.path.join(base, 'val')
    if not (os.path.isdir(train_dir) and os.path.isdir(val_dir)):
        raise UsageError(f'imagenet not found: put train/ and val/ (one folder of images per '
                         f'class, as torchvision ImageFolder reads) in {base}')
    normalize = transforms.Normalize(MEAN, STD)
    # ImageFolder lists classes in sorted order and files class by class: class-sorted.
    try:
        train = datasets.ImageFolder(train_dir, transforms.Compose(
            train_steps + [transforms.ToTensor(), normalize]), loader=read_image)
        val = datasets.ImageFolder(val_dir, transforms.Compose(test_steps + [transforms.ToTensor(), normalize]),
                                   loader=read_image)
    except FileNotFoundError as err:  # no class folders, or a class folder without images
        raise UsageError(f"imagenet: {' '.join(str(err).split())}") from err
    if val.classes != train.classes:
        extra = sorted(set(val.classes) ^ set(train.classes))[:3]
        raise UsageError(f'imagenet: train/ and val/ must hold the same class folders '
                         f"(differ in {', '.join(extra)})")
    return DataSource(train, val, train.targets, len(train.classes), size, MEAN, STD)
