"""dataset/: on-disk layouts, batch contents, CRD's contrastive sampling, loader settings.

Every set is written here in its real on-disk layout (CIFAR pickles, tiny-imagenet-200 folders,
ImageFolder), with pixel values that say which sample or class an image is.
"""
import argparse
import os
import pickle
import time
import urllib.error

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DistributedSampler

import dataset
from dataset import cifar, digits
from dataset.contrast import ContrastSampler
from helper.errors import UsageError

CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)
# CRD-EMKD's dataset/cifar10.py normalises CIFAR-10 with the CIFAR-100 mean and std
CIFAR10_MEAN, CIFAR10_STD = CIFAR100_MEAN, CIFAR100_STD


def options(**kw):
    base = dict(dataset='cifar100', data_folder='.', batch_size=16, num_workers=0, distill='kd',
                nce_k=8, mode='exact', data_on_device=False, seed=0, compile=False,
                imagenet_transform='standard', tiny_imagenet_transform='emkd')
    base.update(kw)
    return argparse.Namespace(**base)


def constant_images(values):
    """CIFAR rows (N, 3072): image i is filled with values[i] in every channel."""
    return np.repeat(np.asarray(values, dtype=np.uint8)[:, None], 3072, axis=1)


def write_cifar100(root, train_labels, test_labels):
    folder = os.path.join(root, 'cifar-100-python')
    os.makedirs(folder, exist_ok=True)
    for name, labels in (('train', train_labels), ('test', test_labels)):
        entry = {'data': constant_images(np.arange(len(labels))), 'fine_labels': list(labels),
                 'coarse_labels': [0] * len(labels), 'filenames': [], 'batch_label': name}
        with open(os.path.join(folder, name), 'wb') as f:
            pickle.dump(entry, f)
    with open(os.path.join(folder, 'meta'), 'wb') as f:
        pickle.dump({'fine_label_names': [f'c{i}' for i in range(100)],
                     'coarse_label_names': [f's{i}' for i in range(20)]}, f)


def write_cifar10(root, train_labels, test_labels):
    folder = os.path.join(root, 'cifar-10-batches-py')
    os.makedirs(folder, exist_ok=True)
    parts = np.array_split(np.arange(len(train_labels)), 5)
    batches = [(f'data_batch_{i + 1}', part) for i, part in enumerate(parts)]
    for name, part in batches + [('test_batch', np.arange(len(test_labels)))]:
        labels = test_labels if name == 'test_batch' else train_labels
        entry = {'data': constant_images(part), 'labels': [int(labels[i]) for i in part]}
        with open(os.path.join(folder, name), 'wb') as f:
            pickle.dump(entry, f)
    with open(os.path.join(folder, 'batches.meta'), 'wb') as f:
        pickle.dump({'label_names': [f'c{i}' for i in range(10)]}, f)


def pixel_values(batch, mean, std):
    """The constant each image was filled with, read at the centre (crops never reach it)."""
    centre = batch['input'][:, 0, 16, 16]
    return torch.round((centre * std[0] + mean[0]) * 255).long()


@pytest.fixture
def cifar100_root(tmp_path):
    rng = np.random.default_rng(0)
    train = rng.integers(0, 5, 120)
    test = rng.integers(0, 5, 40)
    write_cifar100(str(tmp_path), train, test)
    return str(tmp_path), train, test


def all_batches(loader):
    return list(iter(loader))


def test_cifar100_batches_carry_labels_and_indices(cifar100_root):
    root, train_labels, test_labels = cifar100_root
    train, test, info = dataset.get_loaders(options(data_folder=root), 'cpu')
    assert info['n_data'] == 120 and info['num_classes'] == 100 and info['image_size'] == 32
    assert info['mean'] == CIFAR100_MEAN and info['std'] == CIFAR100_STD
    batches = all_batches(train)
    assert set(batches[0]) == {'input', 'target', 'index'}
    assert batches[0]['input'].shape == (16, 3, 32, 32)
    assert batches[0]['input'].dtype == torch.float32
    index = torch.cat([b['index'] for b in batches])
    assert sorted(index.tolist()) == list(range(120))  # every sample once per epoch
    # The train set is stored class-sorted: index i is the i-th sample in that order.
    file_position = np.argsort(train_labels, kind='stable')
    for b in batches:
        assert b['target'].tolist() == train_labels[file_position[b['index']]].tolist()
        assert pixel_values(b, CIFAR100_MEAN, CIFAR100_STD).tolist() == \
            file_position[b['index']].tolist()
    test_batches = all_batches(test)
    assert len(test_batches) == 1 and test_batches[0]['input'].shape[0] == 40
    assert test_batches[0]['index'].tolist() == list(range(40))
    assert test_batches[0]['target'].tolist() == test_labels.tolist()
    assert pixel_values(test_batches[0], CIFAR100_MEAN, CIFAR100_STD).tolist() == list(range(40))


def test_cifar100_test_set_is_not_augmented(cifar100_root):
    root, _, _ = cifar100_root
    write_cifar100(root, np.array([0, 1, 0, 1]), np.array([0, 1]))
    # A test image with structure: any crop or flip would change it.
    image = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    source = cifar.load('cifar100', root)
    source.test.data[0] = image
    mean = torch.tensor(CIFAR100_MEAN)[:, None, None]
    std = torch.tensor(CIFAR100_STD)[:, None, None]
    expected = (torch.from_numpy(image).permute(2, 0, 1).float() / 255 - mean) / std
    for _ in range(3):
        assert torch.allclose(source.test[0][0], expected, atol=1e-6)


def test_cifar10_layout_and_published_normalization(tmp_path):
    rng = np.random.default_rng(2)
    train, test = rng.integers(0, 10, 50), rng.integers(0, 10, 20)
    write_cifar10(str(tmp_path), train, test)
    train_loader, test_loader, info = dataset.get_loaders(
        options(dataset='cifar10', data_folder=str(tmp_path)), 'cpu')
    assert info['n_data'] == 50 and info['num_classes'] == 10
    assert info['mean'] == CIFAR10_MEAN and info['std'] == CIFAR10_STD
    file_position = np.argsort(train, kind='stable')
    for b in all_batches(train_loader):
        assert pixel_values(b, CIFAR10_MEAN, CIFAR10_STD).tolist() == \
            file_position[b['index']].tolist()
        assert b['target'].tolist() == train[file_position[b['index']]].tolist()
    (b,) = all_batches(test_loader)
    assert b['target'].tolist() == test.tolist()


def test_crd_batches_exact_mode(cifar100_root):
    root, train_labels, _ = cifar100_root
    opt = options(data_folder=root, distill='crd', nce_k=20, mode='exact')
    train, test, info = dataset.get_loaders(opt, 'cpu', contrast=True)
    targets = np.sort(train_labels)  # class-sorted train set
    for b in all_batches(train):
        idx = b['contrast_idx']
        assert idx.shape == (len(b['index']), 21) and idx.dtype == torch.long
        assert torch.equal(idx[:, 0], b['index'])  # the sample itself comes first
        for row, c in zip(idx[:, 1:].numpy(), b['target'].numpy()):
            assert (targets[row] != c).all()
            assert len(set(row)) == len(row)  # enough negatives: no repeats
    assert 'contrast_idx' not in next(iter(test))


def test_crd_relax_mode_positive_is_same_class():
    targets = np.repeat(np.arange(4), 25)
    sampler = ContrastSampler(targets, k=10, mode='relax', seed=0)
    index = np.arange(100)
    rows = sampler.sample(index, targets)
    assert (targets[rows[:, 0]] == targets).all()
    assert (rows[:, 0] != index).mean() > 0.8  # a random member of the class, not the anchor


def test_negatives_avoid_anchor_class_with_unequal_classes():
    # Class sizes 1, 3, 60 and 6: the published sampler's np.asarray of ragged lists fails here.
    targets = np.repeat(np.arange(4), [1, 3, 60, 6])
    targets = np.random.default_rng(0).permutation(targets)  # not sorted: the general path
    sampler = ContrastSampler(targets, k=12, seed=1)
    index = np.arange(len(targets))
    rows = sampler.sample(index, targets)
    for i, c in enumerate(targets):
        negatives = rows[i, 1:]
        assert (targets[negatives] != c).all()
        if len(targets) - (targets == c).sum() >= 12:
            assert len(set(negatives)) == 12
    # Class 2 has only 10 negatives (< k): drawn with replacement, as published.
    row = rows[np.flatnonzero(targets == 2)[0], 1:]
    assert len(row) == 12 and len(set(row)) <= 10


def pair_chi_square(rows, population):
    """Chi-square of how often each pair of `population` is drawn together, against a uniform
    k-subset: catches samplers that are uniform per item but not over subsets."""
    one_hot = np.zeros((len(rows), population.max() + 1))
    np.put_along_axis(one_hot, rows, 1, axis=1)
    together = (one_hot.T @ one_hot)[np.ix_(population, population)]
    m, k = len(population), rows.shape[1]
    expected = len(rows) * k * (k - 1) / (m * (m - 1))
    observed = together[np.triu_indices(m, 1)]
    return ((observed - expected) ** 2 / expected).sum(), len(observed) - 1


@pytest.mark.parametrize('class_size, k, dense', [(4, 5, False), (30, 30, True)])
def test_negatives_are_uniform_over_other_classes(class_size, k, dense):
    # 3 classes; anchors of class 0. Both ways of drawing (a partial Fisher-Yates, and the dense
    # keep-and-trim one used when k is a large share of the set) must give uniform k-subsets.
    targets = np.repeat(np.arange(3), class_size)
    sampler = ContrastSampler(targets, k=k, seed=3)
    assert bool(sampler.thresholds[0]) == dense
    draws = 6000
    rows = sampler.sample(np.zeros(draws, int), np.zeros(draws, int))[:, 1:]
    negatives = np.arange(class_size, 3 * class_size)
    assert rows.min() >= class_size
    assert (np.diff(np.sort(rows, 1), axis=1) > 0).all()  # no repeats
    counts = np.bincount(rows.ravel(), minlength=3 * class_size)[class_size:]
    expected = draws * k / len(negatives)
    assert ((counts - expected) ** 2 / expected).sum() < len(negatives) + 4 * np.sqrt(
        2 * len(negatives))
    chi2, dof = pair_chi_square(rows, negatives)
    assert chi2 < dof + 4.5 * np.sqrt(2 * dof)  # p < 1e-3 for these degrees of freedom


def test_dense_draw_continues_numpys_sfc64_stream():
    # The compiled draw steps numpy's SFC64 itself, so a sampler's seed, epoch and worker
    # streams mean what they mean for the numpy draws.
    import numba
    from dataset.dense_negatives import below, sfc64_next

    @numba.njit
    def words(state, count):
        return [sfc64_next(state) for _ in range(count)]

    @numba.njit
    def draws(state, bound, count):
        return [below(state, bound) for _ in range(count)]

    bit_generator = np.random.SFC64(7)
    state = bit_generator.state['state']['state'].copy()
    assert np.array_equal(np.array(words(state, 1000), dtype=np.uint64),
                          bit_generator.random_raw(1000))
    small = np.array(draws(state, 3, 30000))
    assert set(small.tolist()) == {0, 1, 2}
    assert ((np.bincount(small) - 10000) ** 2 / 10000).sum() < 13.8  # chi-square, p = 1e-3
    big = np.array(draws(state, 3 << 30, 1000))
    assert big.min() >= 0 and big.max() < 3 << 30


def test_dense_draw_is_reproducible_per_seed_and_epoch():
    targets = np.repeat(np.arange(4), 50)
    index = np.arange(0, 200, 7)

    def draw(epoch, batches=1):
        sampler = ContrastSampler(targets, k=60, seed=5)
        assert sampler.thresholds.all()
        sampler.set_epoch(epoch)
        return [sampler.sample(index, targets[index]) for _ in range(batches)]

    first, second = draw(0, batches=2)
    assert np.array_equal(first, draw(0)[0])
    assert not np.array_equal(first, second)
    assert not np.array_equal(first, draw(1)[0])


def test_percent_keeps_a_fixed_fraction_of_negatives():
    targets = np.repeat(np.arange(5), 20)
    sampler = ContrastSampler(targets, k=10, percent=0.25, seed=0)
    kept = sampler.negatives(0)
    assert len(kept) == 20 and (targets[kept] != 0).all()
    rows = sampler.sample(np.zeros(200, int), np.zeros(200, int))
    assert set(rows[:, 1:].ravel()) <= set(kept.tolist())
    assert all(len(set(r)) == 10 for r in rows[:, 1:])
    again = ContrastSampler(targets, k=10, percent=0.25, seed=0)
    assert (again.negatives(3) == sampler.negatives(3)).all()


def test_bad_contrast_options_are_usage_errors():
    targets = np.repeat(np.arange(2), 5)
    for kw in (dict(mode='loose'), dict(k=0), dict(percent=1.5)):
        args = dict(targets=targets, k=4)
        args.update(kw)
        with pytest.raises(UsageError):
            ContrastSampler(**args)


def test_missing_cifar_offline_is_one_line_error(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError('[Errno -3] Temporary failure\nin name resolution')
    monkeypatch.setattr(cifar, 'download_and_extract_archive', offline)
    for name, folder, a_file in (('cifar100', 'cifar-100-python', 'train'),
                                 ('cifar10', 'cifar-10-batches-py', 'data_batch_1')):
        with pytest.raises(UsageError) as err:
            dataset.get_loaders(options(dataset=name, data_folder=str(tmp_path)), 'cpu')
        message = str(err.value)
        assert '\n' not in message
        assert os.path.join(str(tmp_path), folder) in message and a_file in message


def test_failed_cifar_download_leaves_no_empty_folder_nor_partial_archive(tmp_path, monkeypatch):
    def cut_off(url, root, filename, md5):  # as torchvision's: the folder, part of the archive, then an error
        os.makedirs(root, exist_ok=True)
        if not os.path.exists(os.path.join(root, filename)):
            with open(os.path.join(root, filename), 'wb') as f:
                f.write(b'\x1f\x8b partial')
        raise urllib.error.URLError('connection reset')
    monkeypatch.setattr(cifar, 'download_and_extract_archive', cut_off)
    data = tmp_path / 'new' / 'data'
    with pytest.raises(UsageError, match='could not be downloaded'):
        dataset.get_loaders(options(data_folder=str(data)), 'cpu')
    assert os.listdir(tmp_path) == []  # both folders it made are gone
    # a folder that was there, with the user's own archive in it, stays as it was
    mine = tmp_path / 'mine'
    mine.mkdir()
    (mine / cifar.CIFAR100.filename).write_bytes(b'the user\'s copy')
    with pytest.raises(UsageError, match='could not be downloaded'):
        dataset.get_loaders(options(data_folder=str(mine)), 'cpu')
    assert (mine / cifar.CIFAR100.filename).read_bytes() == b'the user\'s copy'


def test_downloaded_cifar_is_md5_checked(tmp_path, monkeypatch):
    calls = []

    def fake_download(url, root, filename, md5):  # "extracts" files with the wrong contents
        calls.append((url, md5))
        write_cifar100(root, np.arange(4) % 2, np.arange(2))
    monkeypatch.setattr(cifar, 'download_and_extract_archive', fake_download)
    with pytest.raises(UsageError, match='md5'):
        dataset.get_loaders(options(data_folder=str(tmp_path)), 'cpu')
    assert calls and calls[0][1] == cifar.CIFAR100.tgz_md5
    # Now present: loads without md5 and without downloading.
    calls.clear()
    dataset.get_loaders(options(data_folder=str(tmp_path)), 'cpu')
    assert not calls


def write_jpeg(path, size, colour):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new('RGB', (size, size), colour).save(path, quality=95)


COLOURS = [(250, 10, 10), (10, 250, 10), (10, 10, 250)]


def colour_class(batch, mean, std):
    """Which of COLOURS each image shows (its brightest channel at the centre)."""
    size = batch['input'].shape[-1]
    centre = batch['input'][:, :, size // 2, size // 2] * torch.tensor(std) + torch.tensor(mean)
    return centre.argmax(1)


def test_tiny_imagenet_layout(tmp_path):
    base = tmp_path / 'tiny-imagenet-200'
    wnids = ['n03', 'n01', 'n02']  # listed unsorted: classes follow sorted wnids
    os.makedirs(base)
    (base / 'wnids.txt').write_text('\n'.join(wnids) + '\n')
    annotations = []
    for wnid in wnids:
        colour = COLOURS[sorted(wnids).index(wnid)]
        for i in range(3):
            write_jpeg(str(base / 'train' / wnid / 'images' / f'{wnid}_{i}.JPEG'), 64, colour)
        name = f'val_{wnid}.JPEG'
        write_jpeg(str(base / 'val' / 'images' / name), 64, colour)
        annotations.append(f'{name}\t{wnid}\t0\t0\t63\t63')
    (base / 'val' / 'val_annotations.txt').write_text('\n'.join(annotations) + '\n')
    opt = options(dataset='tiny_imagenet', data_folder=str(tmp_path), batch_size=4,
                  distill='crd', nce_k=5)
    train, test, info = dataset.get_loaders(opt, 'cpu', contrast=True)
    assert info == dict(n_data=9, num_classes=3, image_size=64, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    targets = []
    for b in all_batches(train):
        assert b['input'].shape[1:] == (3, 64, 64)
        assert b['contrast_idx'].shape == (len(b['target']), 6)
        assert torch.equal(colour_class(b, info['mean'], info['std']), b['target'])
        targets += b['target'].tolist()
    assert sorted(targets) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    (b,) = all_batches(test)
    assert b['target'].tolist() == [2, 0, 1]  # annotation order: n03, n01, n02
    assert torch.equal(colour_class(b, info['mean'], info['std']), b['target'])


def test_imagenet_imagefolder_layout(tmp_path):
    for split, n in (('train', 3), ('val', 1)):
        for c, name in enumerate(['goldfish', 'tench']):
            for i in range(n):
                write_jpeg(str(tmp_path / 'imagenet' / split / name / f'{i}.JPEG'), 40, COLOURS[c])
    train, test, info = dataset.get_loaders(
        options(dataset='imagenet', data_folder=str(tmp_path), batch_size=3, distill='crd',
                nce_k=2), 'cpu', contrast=True)
    assert info['n_data'] == 6 and info['num_classes'] == 2 and info['image_size'] == 224
    for b in all_batches(train):
        assert b['input'].shape[1:] == (3, 224, 224)
        assert torch.equal(colour_class(b, info['mean'], info['std']), b['target'])
        assert b['contrast_idx'].shape == (len(b['target']), 3)
    (b,) = all_batches(test)
    assert b['target'].tolist() == [0, 1] and b['input'].shape == (2, 3, 224, 224)


@pytest.mark.parametrize('name, message', [('tiny_imagenet', 'tiny-imagenet-200'),
                                           ('imagenet', 'train/ and val/')])
def test_missing_image_folders_are_one_line_errors(tmp_path, name, message):
    with pytest.raises(UsageError) as err:
        dataset.get_loaders(options(dataset=name, data_folder=str(tmp_path)), 'cpu')
    assert message in str(err.value) and '\n' not in str(err.value)


def test_digits_split_is_deterministic_and_normalized():
    np.random.seed(123)  # the split must not depend on global random state
    first = digits.arrays()
    np.random.seed(7)
    second = digits.arrays()
    for a, b in zip(first, second):
        assert np.array_equal(a, b)
    train_x, train_y, test_x, test_y = first
    assert train_x.shape == (1438, 3, 32, 32) and test_x.shape == (359, 3, 32, 32)
    assert train_x.dtype == np.uint8 and train_x.max() == 16
    assert (np.diff(train_y) >= 0).all()  # class-sorted
    labels = np.concatenate([train_y, test_y])
    assert np.bincount(labels).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    # Each 8x8 pixel became a 4x4 block, identical in the 3 channels.
    assert (train_x[:, :, ::4, ::4].repeat(4, 2).repeat(4, 3) == train_x).all()
    assert (train_x[:, 0] == train_x[:, 2]).all()
    source = digits.load()
    test_inputs = torch.stack([source.test[i][0] for i in range(len(source.test))])
    train_inputs = torch.stack([torch.from_numpy(x).float() / 16 for x in train_x])
    normalized = (train_inputs - source.mean[0]) / source.std[0]
    assert abs(normalized.mean()) < 1e-5 and abs(normalized.std() - 1) < 1e-3
    assert test_inputs.shape == (359, 3, 32, 32)


def test_digits_loaders(tmp_path):
    train, test, info = dataset.get_loaders(
        options(dataset='digits', batch_size=64, distill='crd', nce_k=100), 'cpu', contrast=True)
    assert info['n_data'] == 1438 and info['num_classes'] == 10 and info['image_size'] == 32
    b = next(iter(train))
    assert b['input'].shape == (64, 3, 32, 32) and b['contrast_idx'].shape == (64, 101)
    assert sum(len(b['target']) for b in test) == 359


def test_default_workers_count_the_cpus_of_the_allocation_not_of_the_node(monkeypatch):
    monkeypatch.delenv('SLURM_CPUS_PER_TASK', raising=False)
    monkeypatch.setattr(os, 'cpu_count', lambda: 64)  # the node
    monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: {0, 1, 2}, raising=False)  # bound to 3 of them
    assert dataset.default_num_workers() == 3
    monkeypatch.setenv('SLURM_CPUS_PER_TASK', '2')
    assert dataset.default_num_workers() == 2
    monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: set(range(32)), raising=False)
    monkeypatch.setenv('SLURM_CPUS_PER_TASK', '16')
    assert dataset.default_num_workers() == 8  # the published 8 at most


@pytest.mark.slow
def test_loader_workers_outlive_a_sigterm_from_elsewhere_and_end_with_the_loader(cifar100_root):
    """A job system's SIGTERM reaches the workers too: they leave it to this process, yet end when
    the loader does (multiprocessing's terminate() at the end is a SIGTERM from this process)."""
    import gc
    import signal
    import subprocess
    from helpers_data import descendants
    root, _, _ = cifar100_root
    train, _, _ = dataset.get_loaders(options(data_folder=root, num_workers=2), 'cpu')
    batches = iter(train)
    next(batches)
    workers = descendants(os.getpid())
    assert len(workers) == 2
    subprocess.run(['kill', '-TERM', *map(str, workers)], check=True)  # not their parent
    subprocess.run(['kill', '-INT', *map(str, workers)], check=True)
    assert sum(1 for _ in batches) == len(train) - 1  # every batch still comes
    assert all(os.path.exists(f'/proc/{pid}') for pid in workers)
    del batches, train
    gc.collect()
    deadline = time.time() + 30
    while any(os.path.exists(f'/proc/{pid}') and open(f'/proc/{pid}/stat').read().split()[2] != 'Z'
              for pid in workers):
        assert time.time() < deadline
        time.sleep(0.1)


def test_loader_settings(cifar100_root, monkeypatch):
    root, _, _ = cifar100_root
    monkeypatch.delenv('SLURM_CPUS_PER_TASK', raising=False)
    assert dataset.default_num_workers() == min(8, os.cpu_count())
    train, test, _ = dataset.get_loaders(options(data_folder=root, num_workers=1), 'cpu')
    assert train.num_workers == 1 and train.persistent_workers and not train.pin_memory
    assert test.batch_size == 256 and train.batch_size == 16
    train, test, _ = dataset.get_loaders(options(data_folder=root, num_workers=None,
                                                 batch_size=128), 'cpu')
    assert train.num_workers == dataset.default_num_workers()
    assert test.batch_size == 512
    train, _, _ = dataset.get_loaders(options(data_folder=root, num_workers=0), 'cpu')
    assert not train.persistent_workers
    with pytest.raises(UsageError, match='cifar100'):
        dataset.get_loaders(options(dataset='mnist'), 'cpu')


def test_distributed_samplers(cifar100_root, monkeypatch):
    root, _, _ = cifar100_root
    monkeypatch.setattr(dataset, '_distributed', lambda: (1, 3))
    train, test, info = dataset.get_loaders(options(data_folder=root, seed=None), 'cpu')
    assert info['n_data'] == 120  # CRD's memory spans the whole set on every rank
    assert isinstance(train.sampler, DistributedSampler)
    assert train.sampler.seed == 0  # ranks agree on the shuffle
    dataset.loader_set_epoch(train, 5)
    assert train.sampler.epoch == 5
    assert list(test.sampler) == list(range(1, 40, 3))  # no padding duplicates
    dataset.loader_set_epoch(test, 5)  # harmless on a loader without a shuffle


def test_workers_draw_different_negatives(cifar100_root):
    root, _, _ = cifar100_root
    train, _, _ = dataset.get_loaders(
        options(data_folder=root, num_workers=2, distill='crd', nce_k=40, batch_size=60), 'cpu', contrast=True)
    first, second = all_batches(train)  # one batch from each worker
    # Workers sharing one random stream would give row r nearly the same negatives in both.
    same = (first['contrast_idx'][:, 1:] == second['contrast_idx'][:, 1:]).float().mean()
    assert same < 0.2


def _steps(compose):
    return list(compose.transforms)


def test_tiny_imagenet_transforms_are_crd_emkds():
    from torchvision import transforms as T
    from dataset import tiny_imagenet
    augment, mean, std = tiny_imagenet.train_transform('emkd')
    assert isinstance(augment, T.RandomApply) and augment.p == 0.8
    flip, rotation, crop = augment.transforms
    assert isinstance(flip, T.RandomHorizontalFlip) and flip.p == 0.5
    assert isinstance(rotation, T.RandomRotation) and list(rotation.degrees) == [-10, 10]
    assert isinstance(crop, T.RandomResizedCrop) and list(crop.size) == [64, 64]
    assert crop.scale == (0.08, 1.0)  # torchvision's default, as published
    assert mean == std == (0.5, 0.5, 0.5)
    augment, mean, std = tiny_imagenet.train_transform('crop')
    crop, flip = _steps(augment)
    assert list(crop.size) == [64, 64] and crop.padding == 8 and isinstance(flip, T.RandomHorizontalFlip)
    assert mean == (0.485, 0.456, 0.406) and std == (0.229, 0.224, 0.225)


def test_imagenet_transforms():
    from torchvision import transforms as T
    from dataset import imagenet
    train, test, size = imagenet.pipelines('emkd')
    assert size == 64
    assert isinstance(train[0], T.RandomCrop) and list(train[0].size) == [64, 64] and train[0].padding == 4
    assert isinstance(train[1], T.RandomHorizontalFlip)
    assert isinstance(test[0], T.Resize) and test[0].size == 256
    assert isinstance(test[1], T.CenterCrop) and list(test[1].size) == [128, 128]
    train, test, size = imagenet.pipelines('standard')
    assert size == 224 and isinstance(train[0], T.RandomResizedCrop) and list(train[0].size) == [224, 224]
    assert test[0].size == 256 and list(test[1].size) == [224, 224]


def test_imagenet_emkd_sizes_on_disk(tmp_path):
    for split, n in (('train', 2), ('val', 1)):
        for c, name in enumerate(['goldfish', 'tench']):
            for i in range(n):
                write_jpeg(str(tmp_path / 'imagenet' / split / name / f'{i}.JPEG'), 300, COLOURS[c])
    train, test, info = dataset.get_loaders(
        options(dataset='imagenet', data_folder=str(tmp_path), batch_size=4, imagenet_transform='emkd'), 'cpu')
    assert info['image_size'] == 64
    (b,) = all_batches(train)
    assert b['input'].shape == (4, 3, 64, 64)
    (b,) = all_batches(test)
    assert b['input'].shape == (2, 3, 128, 128)
    assert torch.equal(colour_class(b, info['mean'], info['std']), b['target'])
