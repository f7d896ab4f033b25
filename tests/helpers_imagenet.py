"""A tiny ImageNet in its real on-disk layout: <root>/imagenet/{train,val}/<wnid>/<name>.JPEG,
JPEGs of assorted sizes whose colour says their class; one is CMYK, as a few ImageNet files are."""
import os

import numpy as np
from PIL import Image

COLOURS = [(250, 10, 10), (10, 250, 10), (10, 10, 250)]
WNIDS = ['n01440764', 'n01443537', 'n01484850']


def write_imagenet(root, train_per_class=3, val_per_class=1, seed=0, odd_files=True,
                   sizes=(40, 90)):
    """Returns root (the --data_folder)."""
    rng = np.random.default_rng(seed)
    for split, per_class in (('train', train_per_class), ('val', val_per_class)):
        for c, wnid in enumerate(WNIDS):
            folder = os.path.join(root, 'imagenet', split, wnid)
            os.makedirs(folder, exist_ok=True)
            for i in range(per_class):
                h, w = (int(v) for v in rng.integers(*sizes, size=2))
                pixels = np.array(COLOURS[c])[None, None] + rng.integers(-20, 20, (h, w, 3))
                image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
                if odd_files and split == 'train' and i == 0 and c == 2:
                    image = image.convert('CMYK')
                image.save(os.path.join(folder, f'{wnid}_{i}.JPEG'), quality=90)
    return root


def colour_class(inputs, mean, std):
    """Which of COLOURS each normalized image shows (its brightest channel on average)."""
    import torch
    pixels = inputs * torch.tensor(std).view(1, 3, 1, 1) + torch.tensor(mean).view(1, 3, 1, 1)
    return pixels.mean((2, 3)).argmax(1)
