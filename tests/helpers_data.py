"""Tiny CIFAR-100-layout data and a tiny teacher for the training tests.

The CIFAR files are torchvision's python-pickle layout (cifar-100-python/train, test, meta), with
1 train image and 1 test image per class by default (7 steps of 16 per epoch keep the tests fast).
The teacher is a real 1-epoch train_teacher run. conftest.py builds both once per test session
(fixtures data, teacher, teachers); the tests only read them.
"""
import os
import pickle

import numpy as np
import torch

from helper.engine.options import student_parser, teacher_parser
from helper.engine.run import run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_CLASSES = 100
TRAIN_PER_CLASS = 1
TEST_PER_CLASS = 1


def write_tiny_cifar100(root, train_per_class=TRAIN_PER_CLASS, test_per_class=TEST_PER_CLASS, seed=0):
    """Write <root>/cifar-100-python/{train,test,meta}; returns root (the --data_folder).

    Each class gets its own mean colour plus noise, so a model can learn something in an epoch.
    """
    rng = np.random.default_rng(seed)
    colours = rng.integers(30, 225, size=(N_CLASSES, 3))
    folder = os.path.join(root, 'cifar-100-python')
    os.makedirs(folder, exist_ok=True)
    for split, per_class in (('train', train_per_class), ('test', test_per_class)):
        labels = np.repeat(np.arange(N_CLASSES), per_class)
        rng.shuffle(labels)  # the real files are not class-sorted
        images = colours[labels][:, :, None] + rng.integers(-30, 30, size=(len(labels), 3, 1024))
        entry = {'data': np.clip(images, 0, 255).astype(np.uint8).reshape(len(labels), 3072),
                 'fine_labels': labels.tolist(), 'coarse_labels': (labels // 5).tolist(),
                 'filenames': [f'{split}_{i}.png' for i in range(len(labels))],
                 'batch_label': f'{split} batch'}
        with open(os.path.join(folder, split), 'wb') as f:
            pickle.dump(entry, f, protocol=2)
    with open(os.path.join(folder, 'meta'), 'wb') as f:
        pickle.dump({'fine_label_names': [f'class{i}' for i in range(N_CLASSES)],
                     'coarse_label_names': [f'super{i}' for i in range(20)]}, f, protocol=2)
    return root


def teacher_args(data_folder, save_root, model='resnet8', *extra):
    return ['--model', model, '--dataset', 'cifar100', '--data_folder', data_folder,
            '--save_root', save_root, '--epochs', '1', '--batch_size', '16', '--num_workers', '0',
            '--seed', '0', '--device', 'cpu', '--print_freq', '1000', *extra]


def train_tiny_teacher(data_folder, save_root, model='resnet8', block_depth=None):
    """Path of ckpt_epoch_1.pth of a 1-epoch train_teacher run of `model`, at --block_depth
    block_depth when given (variable-depth models)."""
    extra = ['--block_depth', block_depth] if block_depth else []
    summary = run(teacher_parser().parse_args(teacher_args(data_folder, save_root, model, *extra)), 'teacher')
    return os.path.join(summary['run_dir'], 'ckpt_epoch_1.pth')


def student_args(data_folder, save_root, path_t, distill='kd', model_s='resnet8', *extra):
    return ['--path_t', path_t, '--distill', distill, '--model_s', model_s, '--dataset', 'cifar100',
            '--data_folder', data_folder, '--save_root', save_root, '--epochs', '1', '--init_epochs', '1',
            '--batch_size', '16', '--nce_k', '16', '--num_workers', '0', '--seed', '0',
            '--device', 'cpu', '--print_freq', '1000', *extra]


def parse_student(argv):
    return student_parser().parse_args(argv)


def tree(root):
    """{relative path: (size, mtime_ns)} of every file and folder under root (for 'nothing written')."""
    out = {}
    if not os.path.exists(root):
        return out
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            st = os.stat(path)
            out[os.path.relpath(path, root)] = (st.st_size, st.st_mtime_ns)
    return out


def load_weights_only(path):
    return torch.load(path, map_location='cpu', weights_only=True)


def subprocess_env():
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1', PYTHONUNBUFFERED='1',
               CUDA_VISIBLE_DEVICES='')
    env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
    return env


def failing_save(real_save, fail_when):
    """torch.save that writes some bytes and dies (disk full) when fail_when(obj) is true."""
    def save(obj, f, *args, **kwargs):
        if fail_when(obj):
            f.write(b'PK\x03\x04 half a checkpoint')
            raise OSError(28, 'No space left on device')
        return real_save(obj, f, *args, **kwargs)
    return save


def descendants(pid):
    """The pids of every process below pid (loader workers, a job's tasks and their runs)."""
    parents = {}
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open(f'/proc/{entry}/stat') as f:
                    parents.setdefault(int(f.read().rsplit(')', 1)[1].split()[1]), []).append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class _FullFile:
    """A file on a full disk: every write fails with ENOSPC."""

    def __init__(self, f):
        self._f = f

    def write(self, data):
        raise OSError(28, 'No space left on device')

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def disk_full_for(patch, fragment):
    """Writes to the files whose name contains fragment fail with ENOSPC, as on a full disk: through
    open() and io.open(), os.fdopen(), os.write() and os.pwrite() (patch: a monkeypatch). Linux."""
    import builtins
    import io

    def hit_path(path):
        return isinstance(path, (str, bytes, os.PathLike)) and fragment in os.path.basename(os.fsdecode(path))

    def hit_fd(fd):
        try:
            return hit_path(os.readlink(f'/proc/self/fd/{fd}'))
        except OSError:
            return False

    def full():
        return OSError(28, 'No space left on device')

    real_open, real_fdopen, real_write, real_pwrite = builtins.open, os.fdopen, os.write, os.pwrite

    def open_(file, mode='r', *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        return _FullFile(f) if any(c in mode for c in 'wax+') and hit_path(file) else f

    def fdopen(fd, mode='r', *args, **kwargs):
        f = real_fdopen(fd, mode, *args, **kwargs)
        return _FullFile(f) if any(c in mode for c in 'wax+') and hit_fd(fd) else f

    def write(fd, data):
        if hit_fd(fd):
            raise full()
        return real_write(fd, data)

    def pwrite(fd, data, offset):
        if hit_fd(fd):
            raise full()
        return real_pwrite(fd, data, offset)
    patch.setattr(builtins, 'open', open_)
    patch.setattr(io, 'open', open_)
    patch.setattr(os, 'fdopen', fdopen)
    patch.setattr(os, 'write', write)
    patch.setattr(os, 'pwrite', pwrite)
