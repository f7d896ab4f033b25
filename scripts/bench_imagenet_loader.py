"""ImageNet loader throughput: the published pipeline against the device-decode fast path.

    python scripts/bench_imagenet_loader.py                       # generated JPEGs, this device
    python scripts/bench_imagenet_loader.py --data_folder ./data  # a real <data_folder>/imagenet
    python scripts/bench_imagenet_loader.py --images 8192 --workers 16 --json out.json

Published: ImageFolder with PIL decode, RandomResizedCrop(224), flip, ToTensor and Normalize in
DataLoader workers, then the copy to the device. Fast (--data_on_device): the workers only read
the files' bytes; the device decodes (nvjpeg on CUDA) and crops, resizes, flips and normalizes.
Both yield the same train batches (float32, 224x224, normalized, on the device); the figure is
train images per second over whole epochs after a warm-up epoch (worker start-up, decoder set-up).
The generated JPEGs have ImageNet's typical size (about 500x375) and photo-like smoothness.
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dataset import get_loaders, loader_set_epoch  # noqa: E402
from helper.errors import UsageError  # noqa: E402
from helper.engine.util import pick_device  # noqa: E402


def write_jpegs(root, n_images, n_classes=10, seed=0):
    """n_images JPEGs in <root>/imagenet/train/<class>/ (and a few in val/)."""
    rng = np.random.default_rng(seed)
    for split, count in (('train', n_images), ('val', n_classes)):
        for i in range(count):
            folder = os.path.join(root, 'imagenet', split, f'n{i % n_classes:08d}')
            os.makedirs(folder, exist_ok=True)
            width, height = int(rng.integers(350, 501)), int(rng.integers(280, 501))
            coarse = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
            image = Image.fromarray(coarse).resize((width, height), Image.BICUBIC)
            pixels = np.asarray(image, dtype=np.int16) + rng.integers(-12, 13, (height, width, 3))
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
                os.path.join(folder, f'{i}.JPEG'), quality=90)
    return root


def throughput(data_folder, device, fast, batch_size, workers, epochs):
    opt = argparse.Namespace(dataset='imagenet', data_folder=data_folder, batch_size=batch_size,
                             num_workers=workers, distill='kd', data_on_device=fast, seed=0,
                             imagenet_transform='standard', compile=True)  # compile: full batches only
    train, _, _ = get_loaders(opt, device)
    if len(train) == 0:
        raise UsageError(f'{len(train.dataset)} train images in {data_folder}/imagenet/train: fewer than one '
                         f'batch of {batch_size}; lower --batch_size or use more images')
    rates = []
    for epoch in range(epochs + 1):  # epoch 0 warms up
        loader_set_epoch(train, epoch)
        started, n = time.perf_counter(), 0
        for batch in train:
            x = batch['input'].to(device, non_blocking=True)
            n += x.shape[0]
        if device.type == 'cuda':
            torch.cuda.synchronize()
        if epoch:
            rates.append(n / (time.perf_counter() - started))
    del train
    return float(np.median(rates))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--data_folder', default=None, help='default: generate JPEGs in a temporary folder')
    p.add_argument('--images', type=int, default=2048, help='JPEGs to generate')
    p.add_argument('--batch_size', type=int, default=128)
    p.add_argument('--workers', type=int, default=min(16, os.cpu_count() or 1))
    p.add_argument('--epochs', type=int, default=2, help='timed epochs (the median is reported)')
    p.add_argument('--device', default='auto', choices=['auto', 'cuda', 'cpu'])
    p.add_argument('--json', default=None, help='also write the figures here')
    args = p.parse_args(argv)
    try:
        return measure(args)
    except UsageError as e:
        print(f'error: {e}', file=sys.stderr)
        raise SystemExit(2) from None


def measure(args):
    device = pick_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.data_folder
        if folder is None:
            print(f'writing {args.images} JPEGs ...', flush=True)
            folder = write_jpegs(tmp, args.images)
        result = {'device': torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu',
                  'cpu_count': os.cpu_count(), 'workers': args.workers, 'batch_size': args.batch_size}
        for name, fast in (('published', False), ('fast', True)):
            result[name] = throughput(folder, device, fast, args.batch_size, args.workers, args.epochs)
            print(f'{name:9s}: {result[name]:8.1f} train images/s', flush=True)
    result['speedup'] = result['fast'] / result['published']
    print(f"fast / published: {result['speedup']:.2f}x on {result['device']} "
          f"({args.workers} loader workers, {result['cpu_count']} CPUs, batch {args.batch_size})")
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == '__main__':
    main()
