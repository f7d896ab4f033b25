"""dataset/device_loader.py: the device-resident path against the published PIL loader."""
import argparse
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

import dataset
from dataset.contrast import ContrastSampler
from dataset.device_loader import DeviceContrastSampler, DeviceLoader
from helper.errors import UsageError

MEAN, STD = (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)
IMAGE = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)


def published_train_transform():
    return transforms.Compose([transforms.RandomCrop(32, padding=4),
                               transforms.RandomHorizontalFlip(), transforms.ToTensor(),
                               transforms.Normalize(MEAN, STD)])


def candidate_crops(image, padding=4):
    """Every (row offset, column offset, flipped) view of the zero-padded image, by its bytes."""
    padded = np.pad(image, ((padding, padding), (padding, padding), (0, 0)))
    views = {}
    size = image.shape[0]
    for dy in range(2 * padding + 1):
        for dx in range(2 * padding + 1):
            crop = padded[dy:dy + size, dx:dx + size]
            views[crop.tobytes()] = (dy, dx, False)
            views[crop[:, ::-1].tobytes()] = (dy, dx, True)
    return views


def to_uint8(inputs):
    """Undo Normalize and ToTensor: (N, 3, H, W) floats -> (N, H, W, 3) uint8."""
    pixels = inputs * torch.tensor(STD)[:, None, None] + torch.tensor(MEAN)[:, None, None]
    return torch.round(pixels * 255).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def identify(inputs, views):
    """(row offset, column offset, flipped) of each augmented image; fails on any other image."""
    found = [views.get(np.ascontiguousarray(x).tobytes()) for x in to_uint8(inputs)]
    assert None not in found, 'an augmented image is no crop/flip of the zero-padded original'
    return np.array(found, dtype=np.int64)


def chi_square_uniform(values, bins):
    counts = np.bincount(values, minlength=bins)
    expected = len(values) / bins
    return ((counts - expected) ** 2 / expected).sum()


def test_augmentation_matches_published_pil_pipeline(one_thread):
    n = 2000
    transform = published_train_transform()
    torch.manual_seed(0)
    published = torch.stack([transform(Image.fromarray(IMAGE)) for _ in range(n)])
    images = np.broadcast_to(IMAGE.transpose(2, 0, 1), (n, 3, 32, 32))
    loader = DeviceLoader(images, np.zeros(n), 500, MEAN, STD, 255, 'cpu', padding=4,
                          flip=True, seed=1)
    ours = torch.cat([b['input'] for b in loader])
    assert ours.shape == published.shape and ours.dtype == published.dtype
    views = candidate_crops(IMAGE)
    # Both pipelines give only exact crops of the image zero-padded by 4 (in [0, 255] space)...
    for found in (identify(published, views), identify(ours, views)):
        # ...with offsets uniform over 0..8 on each axis (chi-square, 80 dof, p < 1e-3 at 124.8)
        assert chi_square_uniform(found[:, 0] * 9 + found[:, 1], 81) < 125
        assert abs(found[:, 2].mean() - 0.5) < 0.045  # and half of them mirrored
    # Same per-pixel statistics (the padded border is -mean/std in both).
    assert (ours.mean(0) - published.mean(0)).abs().max() < 0.25
    assert (ours.std(0) - published.std(0)).abs().max() < 0.25
    # The same exact pixels as torchvision computes, not just the same uint8 after rounding.
    exact = published[0]
    assert any(torch.equal(exact, x) for x in ours)


def test_test_loader_matches_published_test_transform():
    images = np.random.default_rng(1).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    loader = DeviceLoader(images.transpose(0, 3, 1, 2), np.arange(5), 256, MEAN, STD, 255,
                          'cpu', train=False)
    (batch,) = list(loader)
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    expected = torch.stack([transform(Image.fromarray(x)) for x in images])
    assert torch.equal(batch['input'], expected)
    assert batch['index'].tolist() == batch['target'].tolist() == [0, 1, 2, 3, 4]


def loader_of(n, batch_size, **kw):
    images = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, 3, 4, 4))
    return DeviceLoader(images, np.arange(n) % 3, batch_size, (0.0,) * 3, (1.0,) * 3, 1, 'cpu',
                        **kw)


def test_epochs_shuffle_and_cover_every_sample():
    loader = loader_of(10, 4, seed=3)
    assert len(loader) == 3
    epochs = []
    for _ in range(3):
        batches = list(loader)
        assert [len(b['index']) for b in batches] == [4, 4, 2]
        order = torch.cat([b['index'] for b in batches])
        assert sorted(order.tolist()) == list(range(10))
        for b in batches:  # input, target and index belong together
            assert b['input'][:, 0, 0, 0].long().tolist() == b['index'].tolist()
            assert (b['target'] == b['index'] % 3).all()
        epochs.append(order.tolist())
    assert epochs[0] != epochs[1] != epochs[2]
    loader.set_epoch(1)
    dataset.loader_set_epoch(loader, 1)
    assert torch.cat([b['index'] for b in loader]).tolist() == epochs[1]
    dropping = loader_of(10, 4, seed=3, drop_last=True)
    assert len(dropping) == 2 and [len(b['index']) for b in dropping] == [4, 4]


def test_distributed_shards():
    ranks = [loader_of(11, 4, seed=5, rank=r, world_size=3) for r in range(3)]
    shards = [torch.cat([b['index'] for b in loader]).tolist() for loader in ranks]
    assert [len(s) for s in shards] == [4, 4, 4] and [len(x) for x in ranks] == [1, 1, 1]
    assert set(sum(shards, [])) == set(range(11))  # padded with one repeat, like DDP's sampler
    tests = [loader_of(11, 4, train=False, rank=r, world_size=3) for r in range(3)]
    test_shards = [torch.cat([b['index'] for b in loader]).tolist() for loader in tests]
    assert sorted(sum(test_shards, [])) == list(range(11))  # no duplicates in evaluation


def sorted_targets(counts):
    return np.repeat(np.arange(len(counts)), counts)


def draw(sampler, targets, rows, seed=0):
    gen = torch.Generator().manual_seed(seed)
    target = torch.as_tensor(targets[rows])
    return DeviceContrastSampler(sampler, 'cpu').sample(torch.as_tensor(rows), target, gen)


def test_device_contrast_sampling_excludes_anchor_class():
    # Unequal classes; class 2 has 12 negatives < k = 15, so it draws with replacement.
    targets = sorted_targets([30, 5, 40, 12])
    sampler = ContrastSampler(targets, k=15, seed=0)
    rows = np.arange(len(targets))
    idx = draw(sampler, targets, rows).numpy()
    assert idx.shape == (87, 16)
    assert (idx[:, 0] == rows).all()
    for row, c in zip(idx, targets):
        assert (targets[row[1:]] != c).all()
        if c != 2:
            assert len(set(row[1:])) == 15
    relax = ContrastSampler(targets, k=15, mode='relax', seed=0)
    idx = draw(relax, targets, rows).numpy()
    assert (targets[idx[:, 0]] == targets).all() and (idx[:, 0] != rows).any()


def test_device_contrast_sampling_is_uniform():
    targets = sorted_targets([4, 4, 4])
    sampler = ContrastSampler(targets, k=5)
    rows = np.zeros(6000, dtype=np.int64)
    idx = draw(sampler, targets, rows, seed=2)[:, 1:].numpy()
    assert idx.min() >= 4
    assert (np.sort(idx, 1)[:, 1:] != np.sort(idx, 1)[:, :-1]).all()  # no repeats
    pairs = np.zeros((12, 12))
    for row in idx:
        pairs[np.ix_(row, row)] += 1
    observed = pairs[4:, 4:][np.triu_indices(8, 1)]
    expected = len(rows) * 5 / 8 * 4 / 7
    assert (((observed - expected) ** 2) / expected).sum() < 60  # 27 dof, p < 1e-3 at 55.5


def test_device_contrast_sampling_respects_percent():
    targets = sorted_targets([20, 20, 20])
    sampler = ContrastSampler(targets, k=6, percent=0.5, seed=1)
    idx = draw(sampler, targets, np.zeros(300, dtype=np.int64))[:, 1:].numpy()
    assert set(idx.ravel()) == set(sampler.negatives(0).tolist())


def digits_options(**kw):
    base = dict(dataset='digits', data_folder='.', batch_size=64, num_workers=0, distill='kd',
                nce_k=16, mode='exact', data_on_device=True, seed=0, compile=False,
                imagenet_transform='standard', tiny_imagenet_transform='emkd')
    base.update(kw)
    return argparse.Namespace(**base)


def test_get_loaders_on_device_with_crd():
    train, test, info = dataset.get_loaders(digits_options(distill='crd', nce_k=50), 'cpu', contrast=True)
    assert isinstance(train, DeviceLoader) and len(train) == 23 and len(test) == 2
    batch = next(iter(train))
    assert set(batch) == {'input', 'target', 'index', 'contrast_idx'}
    assert batch['contrast_idx'].shape == (64, 51)
    assert torch.equal(batch['contrast_idx'][:, 0], batch['index'])
    labels = train.targets
    assert (labels[batch['contrast_idx'][:, 1:]] != batch['target'][:, None]).all()
    assert 'contrast_idx' not in next(iter(test))
    assert sum(len(b['index']) for b in test) == 359
    with pytest.raises(UsageError, match='data_on_device'):
        dataset.get_loaders(digits_options(dataset='tiny_imagenet'), 'cpu')


def write_cifar10(root, labels):
    folder = os.path.join(root, 'cifar-10-batches-py')
    os.makedirs(folder)
    images = np.random.default_rng(3).integers(0, 256, (len(labels), 3072), dtype=np.uint8)
    names = [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']
    for name, part in zip(names, np.array_split(np.arange(len(labels)), 6)):
        with open(os.path.join(folder, name), 'wb') as f:
            pickle.dump({'data': images[part], 'labels': [labels[i] for i in part]}, f)
    with open(os.path.join(folder, 'batches.meta'), 'wb') as f:
        pickle.dump({'label_names': [str(i) for i in range(10)]}, f)


def test_cifar_on_device_equals_the_published_test_inputs(tmp_path):
    write_cifar10(str(tmp_path), [i % 10 for i in range(60)])
    opt = digits_options(dataset='cifar10', data_folder=str(tmp_path), data_on_device=False)
    _, published_test, _ = dataset.get_loaders(opt, 'cpu')
    opt.data_on_device = True
    train, test, _ = dataset.get_loaders(opt, 'cpu')
    (ours,), (theirs,) = list(test), list(published_test)
    assert torch.allclose(ours['input'], theirs['input'], atol=1e-6)
    assert torch.equal(ours['target'], theirs['target'])
    assert train.padding == 4 and train.flip and train.images.dtype == torch.uint8


def test_digits_teach_a_small_convnet(one_thread):
    torch.manual_seed(0)
    train, test, _ = dataset.get_loaders(digits_options(batch_size=32), 'cpu')
    # Pooling by 4 first undoes the upscaling: an 8x8 net, cheap enough for a unit test.
    model = torch.nn.Sequential(
        torch.nn.AvgPool2d(4), torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(32, 32, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(32 * 16, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(3):
        for batch in train:
            loss = torch.nn.functional.cross_entropy(model(batch['input']), batch['target'])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        correct = sum((model(b['input']).argmax(1) == b['target']).sum().item() for b in test)
    assert correct / 359 >= 0.9


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_cuda_batches_stay_on_the_device():
    train, test, _ = dataset.get_loaders(digits_options(distill='crd', nce_k=200), 'cuda', contrast=True)
    batch = next(iter(train))
    for key in ('input', 'target', 'index', 'contrast_idx'):
        assert batch[key].is_cuda
    idx = batch['contrast_idx']
    assert (train.targets[idx[:, 1:]] != batch['target'][:, None]).all()
    assert all(len(set(row.tolist())) == 200 for row in idx[:, 1:])
    n = 1000
    images = np.broadcast_to(IMAGE.transpose(2, 0, 1), (n, 3, 32, 32))
    loader = DeviceLoader(images, np.zeros(n), 500, MEAN, STD, 255, 'cuda', padding=4,
                          flip=True, seed=1)
    found = identify(torch.cat([b['input'].cpu() for b in loader]), candidate_crops(IMAGE))
    assert chi_square_uniform(found[:, 0] * 9 + found[:, 1], 81) < 125
