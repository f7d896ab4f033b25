"""What survives what: one writer per folder, damaged checkpoints, bad data files, write errors,
random kills. Each fault is followed by what docs/faults.md tells the user to do, and the test checks
that nothing beyond one checkpoint interval was lost.
"""
import glob
import json
import os
import pickle
import pickletools
import random
import resource
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.tensorboard import SummaryWriter

import dataset
import search
from dataset import cifar
from dataset.datafiles import STAND_INS, DataFileError, md5_of, read_pickle
from helper.runs import checkpoint as checkpoint_module
from helper.runs import runlock
from helper.runs.checkpoint import WRITE_DELAY_ENV
from helper.engine.options import finalize, student_parser, teacher_parser
from helper.engine.run import WRITE_ERROR_EXIT, main, run_dir_of
from helpers_data import (ROOT, descendants, disk_full_for, failing_save, load_weights_only, student_args,
                          subprocess_env, teacher_args, tree, write_tiny_cifar100)


def call(kind, argv, capsys):
    parser = teacher_parser() if kind == 'teacher' else student_parser()
    code = main(kind, parser, argv)
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err):
    assert 'Traceback' not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith('error: ')
    return lines[0]


def run_dir_of_teacher(save_root):
    (run_dir,) = glob.glob(os.path.join(save_root, 'models', 'resnet8_*'))
    return run_dir


def log_epochs(run_dir):
    with open(os.path.join(run_dir, 'log.csv')) as f:
        return [int(line.split(',')[0]) for line in f.read().splitlines()[1:]]


def weights(path):
    return load_weights_only(path)['model']


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- one process per folder

HOLDER = ('import sys, time\n'
          'from helper.runs.runlock import RunLock\n'
          'RunLock(sys.argv[1], sys.argv[2]).acquire()\n'
          'print("held", flush=True)\n'
          'time.sleep(120)\n')


def hold_lock(folder, what='run'):
    """Another process holding folder's lock (as a training run would)."""
    proc = subprocess.Popen([sys.executable, '-c', HOLDER, folder, what], cwd=ROOT, env=subprocess_env(),
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == 'held'
    return proc


def kill(proc):
    proc.kill()
    proc.wait(30)
    if proc.stdout:
        proc.stdout.close()


@pytest.mark.slow
def test_lock_refuses_a_live_holder_with_and_without_resume(tmp_path, data, capsys):
    save_root = str(tmp_path / 'save')
    args = teacher_args(data, save_root, 'resnet8', '--epochs', '2')
    assert call('teacher', args, capsys)[0] == 0  # a finished two-epoch run
    run_dir = run_dir_of_teacher(save_root)
    last = os.path.join(run_dir, 'resnet8_last.pth')
    before = weights(last)
    holder = hold_lock(run_dir)
    try:
        for extra in ([], ['--resume']):
            state = tree(save_root)
            code, _, err = call('teacher', args + extra, capsys)
            assert code == 2
            line = one_line(err)
            assert f'pid {holder.pid} on {socket.gethostname()}' in line and run_dir in line
            assert tree(save_root) == state  # the refused process wrote nothing
    finally:
        kill(holder)  # kill -9: its lock file stays behind, naming a dead pid
    assert json.load(open(os.path.join(run_dir, runlock.LOCK_NAME)))['pid'] == holder.pid
    # damage the newest checkpoint too: the takeover resumes from the previous one
    with open(last, 'r+b') as f:
        f.truncate(500)
    code, out, err = call('teacher', args + ['--resume'], capsys)
    assert code == 0, err
    assert f'taking over the stale lock of pid {holder.pid}' in out
    assert 'continuing from the previous checkpoint' in out and '(epoch 1)' in out
    assert not os.path.exists(os.path.join(run_dir, runlock.LOCK_NAME))  # released at the end
    assert os.path.getsize(last + '.damaged') == 500  # set aside, never rotated into .prev
    assert load_weights_only(checkpoint_module.previous_path(last))['epoch'] == 1
    assert log_epochs(run_dir) == [1, 2]
    assert same_weights(weights(last), before)  # epoch 2 redone: the same weights, nothing lost


@pytest.mark.slow
@pytest.mark.parametrize('heartbeat_age, taken_over', [(5, False), (10 * runlock.STALE_S, True)])
def test_lock_of_another_host_counts_until_its_heartbeat_is_old(tmp_path, data, capsys, heartbeat_age,
                                                                 taken_over):
    save_root = str(tmp_path / 'save')
    args = teacher_args(data, save_root, 'resnet8')
    assert call('teacher', args, capsys)[0] == 0
    run_dir = run_dir_of_teacher(save_root)
    now = time.time()
    with open(os.path.join(run_dir, runlock.LOCK_NAME), 'w') as f:  # no flock: a process elsewhere
        json.dump({'pid': 1, 'host': 'node-elsewhere', 'started': now - 3600,
                   'heartbeat': now - heartbeat_age}, f)
    # --extend: the finished run goes on (a plain --resume of a finished run writes nothing)
    code, out, err = call('teacher', args + ['--extend', '2'], capsys)
    if taken_over:
        assert code == 0, err
        assert 'taking over the stale lock of pid 1 on node-elsewhere' in out
    else:
        assert code == 2
        assert 'pid 1 on node-elsewhere' in one_line(err)


def test_lock_heartbeat_is_refreshed(tmp_path, monkeypatch):
    monkeypatch.setattr(runlock, 'HEARTBEAT_S', 0.05)
    lock = runlock.RunLock(str(tmp_path), log=lambda msg: None).acquire()
    try:
        path = os.path.join(str(tmp_path), runlock.LOCK_NAME)
        first = json.load(open(path))
        time.sleep(0.3)
        later = json.load(open(path))
        assert later['heartbeat'] > first['heartbeat'] and later['started'] == first['started']
        assert later['pid'] == os.getpid() and later['host'] == socket.gethostname()
        with pytest.raises(runlock.FolderBusy):  # a second lock in this process: another open file
            runlock.RunLock(str(tmp_path)).acquire()
    finally:
        lock.release()
    assert os.listdir(str(tmp_path)) == []


def test_lock_file_that_is_a_symbolic_link_is_refused_and_its_target_kept(tmp_path, data, capsys):
    save_root = str(tmp_path / 'save')
    args = teacher_args(data, save_root, 'resnet8')
    run_dir = run_dir_of(finalize(teacher_parser().parse_args(args), 'teacher'), 'teacher')
    os.makedirs(run_dir)
    victim = tmp_path / 'precious.txt'
    victim.write_text('keep me')
    os.symlink(str(victim), os.path.join(run_dir, runlock.LOCK_NAME))
    code, _, err = call('teacher', args, capsys)
    assert code == 2
    assert 'is a symbolic link' in one_line(err)
    assert victim.read_text() == 'keep me'
    with pytest.raises(runlock.UsageError, match='is a symbolic link'):
        runlock.RunLock(run_dir).acquire()  # the writer itself never follows it either
    assert victim.read_text() == 'keep me'


@pytest.mark.parametrize('fields', [
    {'pid': 'x', 'host': socket.gethostname(), 'started': 0, 'heartbeat': 0},
    {'pid': 1, 'host': ['node'], 'started': 'yesterday', 'heartbeat': None},
    [1, 2, 3],
])
def test_lock_with_wrong_typed_fields_names_no_holder_and_is_taken_over(tmp_path, fields):
    folder = str(tmp_path)
    with open(os.path.join(folder, runlock.LOCK_NAME), 'w') as f:
        json.dump(fields, f)
    runlock.check_free(folder)  # no holder: nothing refuses
    messages = []
    lock = runlock.RunLock(folder, log=messages.append).acquire()
    lock.release()
    assert messages == [f'taking over {os.path.join(folder, runlock.LOCK_NAME)}, which names no valid holder '
                        f'(wrong or missing fields)']


@pytest.mark.parametrize('file_age, taken_over', [(5, False), (10 * runlock.STALE_S, True)])
def test_lock_of_another_host_with_a_heartbeat_in_the_future_is_judged_by_the_file_age(tmp_path, file_age,
                                                                                        taken_over):
    folder = str(tmp_path)
    path = os.path.join(folder, runlock.LOCK_NAME)
    now = time.time()
    with open(path, 'w') as f:  # a clock an hour ahead, or a made-up value
        json.dump({'pid': 1, 'host': 'node-elsewhere', 'started': now, 'heartbeat': now + 3600}, f)
    os.utime(path, (now - file_age, now - file_age))
    messages = []
    if taken_over:
        runlock.RunLock(folder, log=messages.append).acquire().release()
        assert len(messages) == 1 and messages[0].startswith('taking over the stale lock of pid 1 on node-elsewhere')
    else:
        with pytest.raises(runlock.FolderBusy, match="heartbeat 3600 s ahead of this host's clock"):
            runlock.check_free(folder)


WORKER_HOLDER = ('import os, sys, time\n'
                 'from helper.runs.runlock import RunLock\n'
                 'RunLock(sys.argv[1]).acquire()\n'
                 'if os.fork() == 0:\n'  # a loader worker: inherits the locked file
                 '    time.sleep(1.5)\n'
                 '    os._exit(0)\n'
                 'print("held", flush=True)\n'
                 'time.sleep(120)\n')


@pytest.mark.slow
def test_lock_of_a_killed_run_whose_forked_worker_still_lives_is_taken_over_once_the_worker_exits(tmp_path):
    folder = str(tmp_path)
    proc = subprocess.Popen([sys.executable, '-c', WORKER_HOLDER, folder], cwd=ROOT, env=subprocess_env(),
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == 'held'
    kill(proc)
    messages = []
    lock = runlock.RunLock(folder, log=messages.append).acquire()
    lock.release()
    assert len(messages) == 1 and messages[0].startswith(f'taking over the stale lock of pid {proc.pid} on ')


@pytest.mark.slow
def test_second_search_on_a_running_search_folder_starts_no_candidate(tmp_path, data, teachers, capsys):
    teacher = teachers('wrn_40_1')
    argv = student_args(data, str(tmp_path), teacher, 'kd', 'myresnet14', '--block_depth', '2,2,2')
    opt = search.finalize(search.search_parser().parse_args(argv), 'student')
    folder = search.Search(opt).dir
    holder = hold_lock(folder, 'search')
    try:
        assert search.main(argv) == 2
        line = one_line(capsys.readouterr().err)
        assert f'pid {holder.pid}' in line and 'this search again' in line
        assert not os.path.exists(os.path.join(str(tmp_path), 'student_model'))  # no candidate started
    finally:
        kill(holder)


# ---------------------------------------------------------------- damaged checkpoints

@pytest.mark.slow
def test_only_unreadable_checkpoints_refuse_naming_every_file(tmp_path, data, capsys):
    save_root = str(tmp_path / 'save')
    args = teacher_args(data, save_root, 'resnet8', '--epochs', '2')
    assert call('teacher', args, capsys)[0] == 0
    run_dir = run_dir_of_teacher(save_root)
    paths = checkpoint_module.resumable_paths(os.path.join(run_dir, 'resnet8_last.pth'))
    for path in paths:
        with open(path, 'r+b') as f:
            f.truncate(700)
    state = tree(save_root)
    code, _, err = call('teacher', args + ['--resume'], capsys)
    assert code == 2
    line = one_line(err)
    assert all(path in line for path in paths) and 'start a new --trial' in line
    assert tree(save_root) == state


@pytest.mark.slow
@pytest.mark.parametrize('field, value', [('epoch', 'x'), ('history', {'1': 2}), ('best_acc', 'high'),
                                          ('partial', [1])])
def test_checkpoint_with_a_wrong_typed_field_takes_the_fallback(tmp_path, data, capsys, field, value):
    save_root = str(tmp_path / 'save')
    args = teacher_args(data, save_root, 'resnet8', '--epochs', '2')
    assert call('teacher', args, capsys)[0] == 0
    run_dir = run_dir_of_teacher(save_root)
    last = os.path.join(run_dir, 'resnet8_last.pth')
    torch.save(dict(load_weights_only(last), **{field: value}), last)
    code, out, err = call('teacher', args + ['--resume'], capsys)
    assert code == 0, err
    assert f'not a resumable checkpoint: its {field} is a {type(value).__name__}' in out
    assert 'continuing from the previous checkpoint' in out and '(epoch 1)' in out
    assert log_epochs(run_dir) == [1, 2]


@pytest.mark.parametrize('trial', ['../../x', 'a/b', '..\\x'])
def test_trial_with_a_path_separator_is_refused_before_anything_is_written(tmp_path, data, capsys, trial):
    save_root = str(tmp_path / 'save' / 'deeper')
    code, _, err = call('teacher', teacher_args(data, save_root, 'resnet8', '--trial', trial), capsys)
    assert code == 2
    assert f"--trial {trial!r}: no path separators" in one_line(err)
    assert os.listdir(str(tmp_path)) == []


@pytest.mark.slow
@pytest.mark.parametrize('mask', [0o002, 0o027])
def test_outputs_follow_the_umask(tmp_path, data, capsys, mask):
    save_root = str(tmp_path / 'save')
    previous = os.umask(mask)
    try:
        assert call('teacher', teacher_args(data, save_root, 'resnet8'), capsys)[0] == 0
    finally:
        os.umask(previous)
    run_dir = run_dir_of_teacher(save_root)
    for name in ('summary.json', 'log.csv', 'resnet8_last.pth', 'resnet8_best.pth', 'ckpt_epoch_1.pth',
                 os.path.join('..', '..', 'result.txt')):
        assert os.stat(os.path.join(run_dir, name)).st_mode & 0o777 == 0o666 & ~mask, name


def test_rotation_keeps_the_previous_checkpoint(tmp_path):
    path = str(tmp_path / 'm_last.pth')
    for epoch in (1, 2, 3):
        checkpoint_module.save_resumable({'epoch': epoch}, path)
    assert load_weights_only(path)['epoch'] == 3
    assert load_weights_only(checkpoint_module.previous_path(path))['epoch'] == 2
    assert set(os.listdir(str(tmp_path))) == {'m_last.pth', 'm_last.prev.pth'}


# ---------------------------------------------------------------- data files are data

class RunsCode:
    """What a crafted data file holds: unpickling it calls os.system."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}',)


def unicode_op(text):
    data = text.encode()
    return b'X' + struct.pack('<I', len(data)) + data


# numpy.dtype('O8') with its flags (the state's last field) cleared: numpy stops treating the items
# as object references, so raw bytes from the file become object pointers. Written opcode by
# opcode: these streams are never given to the plain pickle module.
FORGED_OBJECT_DTYPE = (b'cnumpy\ndtype\n(' + unicode_op('O8') + b'\x89\x88tR(K\x03' + unicode_op('|') +
                       b'NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb')
FORGED = {  # the value of 'data': through scalar(dtype, raw), or _reconstruct then BUILD with raw bytes
    'forged dtype via scalar': (b'cnumpy._core.multiarray\nscalar\n' + FORGED_OBJECT_DTYPE + b'C\x08' + b'A' * 8 +
                                b'\x86R'),
    'forged dtype via _reconstruct': (b'cnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85C\x01b\x87R'
                                      b'(K\x01K\x01\x85' + FORGED_OBJECT_DTYPE + b'\x89C\x08' + b'A' * 8 + b'tb'),
}


def forged_batch(damage):
    """A cifar-100-python batch whose 'data' is FORGED[damage], at pickle protocol 3."""
    return (b'\x80\x03}(' + unicode_op('data') + FORGED[damage] + unicode_op('fine_labels') + b']K\x00a' +
            b'u.')


def test_forged_dtype_pickles_use_only_allowed_globals():
    """They pass the allow-list of globals: only the rebuilt arrays keep numpy from their state."""
    for damage in FORGED:
        ops = [(op.name, arg) for op, arg, _ in pickletools.genops(forged_batch(damage))]
        names = [tuple(arg.split(' ')) for name, arg in ops if name == 'GLOBAL']
        assert len(names) >= 2 and all(n in STAND_INS for n in names)
        assert ('BUILD', None) in ops


def damaged_cifar(tmp_path, damage):
    root = write_tiny_cifar100(str(tmp_path / 'data'))
    path = os.path.join(root, 'cifar-100-python', 'train')
    with open(path, 'rb') as f:
        real = f.read()
    marker = str(tmp_path / 'code_ran')
    content = {
        'truncated': lambda: real[:len(real) // 3],
        'random bytes': lambda: np.random.default_rng(0).bytes(2000),
        'empty': lambda: b'',
        'crafted': lambda: pickle.dumps({'data': RunsCode(marker), 'fine_labels': [0]}),
        'foreign': lambda: pickle.dumps({'weights': [1.0, 2.0]}),
        'wrong shape': lambda: pickle.dumps({'data': np.zeros((2, 100), np.uint8), 'fine_labels': [0, 1]}),
        'labels out of range': lambda: pickle.dumps({'data': np.zeros((1, 3072), np.uint8),
                                                     'fine_labels': [100]}),
        'nested labels': lambda: pickle.dumps({'data': np.zeros((2, 3072), np.uint8), 'fine_labels': [[0], [1]]}),
        'ragged labels': lambda: pickle.dumps({'data': np.zeros((2, 3072), np.uint8),
                                               'fine_labels': [[0], [1, 2]]}),
        'float data': lambda: pickle.dumps({'data': np.zeros((1, 3072), np.float32), 'fine_labels': [0]}),
        'object array': lambda: pickle.dumps({'data': np.array([None, 1], dtype=object), 'fine_labels': [0]}),
        **{name: lambda name=name: forged_batch(name) for name in FORGED},
    }[damage]()
    with open(path, 'wb') as f:
        f.write(content)
    return root, path, marker


@pytest.mark.parametrize('damage, fragment', [
    ('truncated', 'is truncated or corrupt'),
    ('random bytes', 'is truncated or corrupt'),
    ('empty', 'is truncated or corrupt'),
    ('crafted', 'is not a data file (it refers to posix.system'),
    ('foreign', 'is not a cifar-100-python batch'),
    ('wrong shape', 'is not a cifar-100-python batch'),
    ('labels out of range', 'is not a cifar-100-python batch'),
    ('nested labels', 'is not a cifar-100-python batch'),
    ('ragged labels', 'is not a cifar-100-python batch'),
    ('float data', 'is not a cifar-100-python batch'),
    ('object array', "is not a data file (it holds a numpy dtype 'O8'"),
    ('forged dtype via scalar', "is not a data file (it holds a numpy dtype 'O8'"),
    ('forged dtype via _reconstruct', "is not a data file (it holds a numpy dtype 'O8'"),
])
def test_damaged_cifar_file_is_a_one_line_error_and_nothing_is_written(tmp_path, capsys, damage, fragment):
    root, path, marker = damaged_cifar(tmp_path, damage)
    save_root = str(tmp_path / 'save')
    code, out, err = call('teacher', teacher_args(root, save_root), capsys)
    assert code == 2
    line = one_line(err)
    assert f'error: {path} ' in line and fragment in line and 'cifar-100-python.tar.gz' in line
    assert not os.path.exists(save_root)
    assert not os.path.exists(marker)  # the crafted file ran no code


# an ndarray as Python 2 wrote it (protocol 2, the raw bytes as a str): uint8 [1, 2, 255]
PYTHON2_ARRAY = (b'\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b\x87R(K\x01K\x03\x85'
                 b'cnumpy\ndtype\nU\x02u1K\x00K\x01\x87R(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb'
                 b'\x89U\x03\x01\x02\xfftb.')


@pytest.mark.parametrize('protocol', [2, 3, 4, 5])
def test_data_pickles_rebuild_every_numeric_array_exactly(tmp_path, protocol):
    arrays = {name: (np.arange(24) % 7).astype(name).reshape(2, 3, 4) for name in
              ('bool', 'int8', '>i2', '<i4', 'int64', 'uint8', '>u2', 'uint32', 'uint64', 'float16', '>f4', 'float64')}
    arrays['fortran'] = np.asfortranarray(np.arange(6.0).reshape(2, 3))
    arrays['empty'] = np.zeros((0, 3), np.int16)
    content = dict(arrays, scalar=np.float32(1.5), labels=[1, np.int64(2)], raw=b'xyz', nothing=b'', text='t')
    path = tmp_path / 'batch'
    path.write_bytes(pickle.dumps(content, protocol=protocol))
    loaded = read_pickle(str(path), 'remedy')
    assert loaded.keys() == content.keys()
    for name, array in arrays.items():
        got = loaded[name]
        assert isinstance(got, np.ndarray) and got.dtype == array.dtype and got.shape == array.shape
        assert np.array_equal(got, array) and got.flags.writeable
    assert loaded['fortran'].flags.f_contiguous
    assert loaded['scalar'] == np.float32(1.5) and loaded['scalar'].dtype == np.float32
    assert loaded['labels'] == [1, 2] and (loaded['raw'], loaded['nothing'], loaded['text']) == (b'xyz', b'', 't')
    path.write_bytes(PYTHON2_ARRAY)
    python2 = read_pickle(str(path), 'remedy')
    assert python2.dtype == np.uint8 and python2.tolist() == [1, 2, 255]


def test_official_sized_cifar_file_must_have_the_official_md5(tmp_path, monkeypatch):
    root = write_tiny_cifar100(str(tmp_path / 'data'))
    path = os.path.join(root, 'cifar-100-python', 'train')
    # the tiny file stands in for the official one: 100 images is "the official size" here
    monkeypatch.setitem(cifar.CIFAR100.official_images, 'train', 100)
    with pytest.raises(DataFileError, match='has the official name and size but not the official md5'):
        cifar.load('cifar100', root)
    monkeypatch.setattr(cifar.CIFAR100, 'train_list', [['train', md5_of(path)]])
    assert len(cifar.load('cifar100', root).train) == 100
    monkeypatch.setitem(cifar.CIFAR100.official_images, 'train', 50000)  # other sizes: no md5 needed
    monkeypatch.setattr(cifar.CIFAR100, 'train_list', [['train', '0' * 32]])
    assert len(cifar.load('cifar100', root).train) == 100


COLOURS = [(200, 30, 30), (30, 200, 30)]


def tiny_imagenet(root, n_train=2):
    base = os.path.join(root, 'tiny-imagenet-200')
    wnids = ['n01', 'n02']
    os.makedirs(os.path.join(base, 'val', 'images'))
    with open(os.path.join(base, 'wnids.txt'), 'w') as f:
        f.write('\n'.join(wnids) + '\n')
    lines = []
    for c, wnid in enumerate(wnids):
        os.makedirs(os.path.join(base, 'train', wnid, 'images'))
        for i in range(n_train):
            Image.new('RGB', (64, 64), COLOURS[c]).save(os.path.join(base, 'train', wnid, 'images', f'{i}.JPEG'))
        Image.new('RGB', (64, 64), COLOURS[c]).save(os.path.join(base, 'val', 'images', f'v{c}.JPEG'))
        lines.append(f'v{c}.JPEG\t{wnid}\t0\t0\t63\t63')
    with open(os.path.join(base, 'val', 'val_annotations.txt'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return base


def loader_options(name, root, workers):
    import argparse
    return argparse.Namespace(dataset=name, data_folder=root, batch_size=2, num_workers=workers, distill='kd',
                              nce_k=4, mode='exact', data_on_device=False, seed=0, compile=False,
                              imagenet_transform='standard', tiny_imagenet_transform='emkd')


@pytest.mark.parametrize('workers', [0, 1])
def test_unreadable_tiny_imagenet_image_names_the_file_even_from_a_worker(tmp_path, workers):
    base = tiny_imagenet(str(tmp_path))
    bad = os.path.join(base, 'train', 'n02', 'images', '1.JPEG')
    with open(bad, 'r+b') as f:
        f.truncate(100)
    train, _, _ = dataset.get_loaders(loader_options('tiny_imagenet', str(tmp_path), workers), 'cpu')
    with pytest.raises(DataFileError) as err:
        for _ in train:
            pass
    message = str(err.value)
    assert message.startswith(f'cannot read image {bad} (') and '\n' not in message and 'Traceback' not in message


@pytest.mark.slow
def test_image_going_bad_mid_run_stops_with_one_line_then_resume_continues(tmp_path, capsys):
    base = tiny_imagenet(str(tmp_path), n_train=4)
    save_root = str(tmp_path / 'save')
    args = teacher_args(str(tmp_path), save_root, 'resnet8', '--epochs', '2', '--batch_size', '2')
    args = args[:args.index('--dataset') + 1] + ['tiny_imagenet'] + args[args.index('--dataset') + 2:]
    args[args.index('--num_workers') + 1] = '1'
    bad = os.path.join(base, 'train', 'n01', 'images', '2.JPEG')
    good = open(bad, 'rb').read()
    with open(bad, 'wb') as f:
        f.write(b'\xff\xd8 not really a jpeg')
    code, _, err = call('teacher', args, capsys)
    assert code == 2
    line = one_line(err)
    assert line.startswith(f'error: cannot read image {bad} (') and 'replace it' in line
    (run_dir,) = glob.glob(os.path.join(save_root, 'models', 'resnet8_*'))
    summary = json.load(open(os.path.join(run_dir, 'summary.json')))  # never left 'running'
    assert summary['status'] == 'failed' and summary['error'] == line[len('error: '):]
    with open(bad, 'wb') as f:
        f.write(good)
    assert call('teacher', args, capsys)[0] == 0  # it failed in epoch 1: no checkpoint, a plain rerun
    (run_dir,) = glob.glob(os.path.join(save_root, 'models', 'resnet8_*'))
    assert log_epochs(run_dir) == [1, 2]


def test_missing_tiny_imagenet_val_image_is_named_before_training(tmp_path):
    base = tiny_imagenet(str(tmp_path))
    missing = os.path.join(base, 'val', 'images', 'v1.JPEG')
    os.unlink(missing)
    with pytest.raises(DataFileError, match=f'tiny_imagenet: {missing} is missing'):
        dataset.get_loaders(loader_options('tiny_imagenet', str(tmp_path), 0), 'cpu')


def test_unreadable_imagenet_image_names_the_file(tmp_path):
    for split in ('train', 'val'):
        for c, name in enumerate(['goldfish', 'tench']):
            folder = tmp_path / 'imagenet' / split / name
            folder.mkdir(parents=True)
            Image.new('RGB', (40, 40), COLOURS[c]).save(str(folder / '0.JPEG'))
    bad = tmp_path / 'imagenet' / 'val' / 'tench' / '0.JPEG'
    bad.write_bytes(b'not a jpeg at all')
    _, test, _ = dataset.get_loaders(loader_options('imagenet', str(tmp_path), 1), 'cpu')
    with pytest.raises(DataFileError, match=f'cannot read image {bad} '):
        list(test)


# ---------------------------------------------------------------- write errors (disk full)

@pytest.mark.slow
def test_disk_full_while_checkpointing_stops_with_its_own_exit_code(tmp_path, data, monkeypatch, capsys):
    save_root = str(tmp_path / 'save')
    args = teacher_args(data, save_root, 'resnet8', '--epochs', '3')
    with monkeypatch.context() as patch:
        patch.setattr(torch, 'save', failing_save(torch.save, lambda obj: isinstance(obj, dict)
                                                  and 'optimizer' in obj and obj.get('epoch') == 2))
        code, _, err = call('teacher', args, capsys)
    assert code == WRITE_ERROR_EXIT == 4
    run_dir = run_dir_of_teacher(save_root)
    line = one_line(err)
    assert f"cannot write {os.path.join(run_dir, 'resnet8_last.pth')}: [Errno 28] No space left" in line
    assert 'with --resume' in line
    assert load_weights_only(os.path.join(run_dir, 'resnet8_last.pth'))['epoch'] == 1
    assert log_epochs(run_dir) == [1]
    assert not [n for n in os.listdir(run_dir) if n.endswith('.tmp')]
    assert not os.path.exists(os.path.join(run_dir, runlock.LOCK_NAME))
    assert call('teacher', args + ['--resume'], capsys)[0] == 0  # space is back
    assert log_epochs(run_dir) == [1, 2, 3]


WRITERS = ['run.lock', 'summary.json', 'log.csv', 'tfevents', 'resnet8_best.pth', 'ckpt_epoch_2', 'result.txt']


@pytest.mark.slow
@pytest.mark.parametrize('writer', WRITERS)
def test_disk_full_at_each_writer_is_exit_4_with_one_line_then_a_rerun_finishes(tmp_path, data, monkeypatch,
                                                                                  capsys, writer):
    save_root = str(tmp_path / 'save')
    args = teacher_args(data, save_root, 'resnet8', '--epochs', '2')
    with monkeypatch.context() as patch:
        disk_full_for(patch, writer)
        code, _, err = call('teacher', args, capsys)
    assert code == WRITE_ERROR_EXIT
    line = one_line(err)
    named = 'tb' if writer == 'tfevents' else writer  # TensorBoard's error names its folder
    assert 'cannot write ' in line and named in line and '[Errno 28] No space left on device' in line
    if writer == 'run.lock':
        assert not os.path.exists(save_root)  # no folder, no empty lock left behind
        assert call('teacher', args, capsys)[0] == 0
        return
    run_dir = run_dir_of_teacher(save_root)
    assert not [n for n in os.listdir(run_dir) if n.endswith('.tmp') or n == runlock.LOCK_NAME]
    if writer != 'summary.json':
        summary = json.load(open(os.path.join(run_dir, 'summary.json')))
        assert summary['status'] == 'failed' and summary['error'] == line[len('error: '):line.index('; free space')]
    resumable = checkpoint_module.has_resumable(os.path.join(run_dir, 'resnet8_last.pth'))
    code, _, err = call('teacher', args + (['--resume'] if resumable else []), capsys)  # space is back
    assert code == 0, err
    assert log_epochs(run_dir) == [1, 2]
    assert json.load(open(os.path.join(run_dir, 'summary.json')))['status'] == 'finished'
    with open(os.path.join(save_root, 'result.txt')) as f:
        assert len(f.read().splitlines()) == 1


def full_disk_close(self):
    raise OSError(28, 'No space left on device')


@pytest.mark.slow
@pytest.mark.parametrize('writer', ['search.json', 'run.lock'])
def test_disk_full_for_the_search_records_is_exit_4_with_one_line(tmp_path, data, teachers, monkeypatch, capsys,
                                                                  writer):
    argv = student_args(data, str(tmp_path), teachers('myresnet14', '2,6,2'), 'kd', 'myresnet14', '--block_depth',
                        '2,2,2', '--no_cotrain')
    folder = search.Search(search.finalize(search.search_parser().parse_args(argv), 'student')).dir
    with monkeypatch.context() as patch:
        disk_full_for(patch, writer)
        code = search.main(argv)
    assert code == WRITE_ERROR_EXIT
    line = one_line(capsys.readouterr().err)
    assert f'cannot write {os.path.join(folder, writer)}: [Errno 28]' in line
    assert not os.path.exists(os.path.join(folder, runlock.LOCK_NAME))
    assert search.main(argv) == 0  # space is back: the search continues


@pytest.mark.slow
def test_a_failing_close_of_tensorboard_does_not_hide_the_first_error(tmp_path, data, monkeypatch, capsys):
    save_root = str(tmp_path / 'save')
    args = teacher_args(data, save_root, 'resnet8', '--epochs', '2')
    with monkeypatch.context() as patch:
        patch.setattr(SummaryWriter, 'close', full_disk_close)
        patch.setattr(torch, 'save', failing_save(torch.save, lambda obj: isinstance(obj, dict)
                                                  and 'history' in obj and obj.get('epoch') == 2))
        code, _, err = call('teacher', args, capsys)
    assert code == WRITE_ERROR_EXIT
    line = one_line(err)
    assert f"cannot write {os.path.join(run_dir_of_teacher(save_root), 'resnet8_last.pth')}" in line, line


@pytest.mark.slow
@pytest.mark.parametrize('writer', ['log.csv', 'tfevents'])
def test_disk_full_in_a_training_process_is_exit_4_with_one_line(tmp_path, data, writer):
    """The same through a real process (TensorBoard's writer thread prints no traceback)."""
    save_root = str(tmp_path / 'save')
    args = teacher_args(data, save_root, 'resnet8')
    code = ('import sys, pytest\n'
            'from helpers_data import disk_full_for\n'
            'from helper.engine.run import main\n'
            'from helper.engine.options import teacher_parser\n'
            'patch = pytest.MonkeyPatch()\n'
            f'disk_full_for(patch, "{writer}")\n'
            'sys.exit(main("teacher", teacher_parser(), sys.argv[1:]))\n')
    env = dict(subprocess_env(), PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, 'tests')]))
    proc = subprocess.run([sys.executable, '-c', code, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == WRITE_ERROR_EXIT, proc.stderr
    line = one_line(proc.stderr)
    assert ('log.csv' if writer == 'log.csv' else os.sep + 'tb:') in line and 'No space left' in line
    run_dir = run_dir_of_teacher(save_root)
    assert json.load(open(os.path.join(run_dir, 'summary.json')))['status'] == 'failed'
    assert not os.path.exists(os.path.join(run_dir, runlock.LOCK_NAME))


# ---------------------------------------------------------------- real processes

def start(script, args, env=None):
    proc = subprocess.Popen([sys.executable, script, *args], cwd=ROOT, env=env or subprocess_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(300, proc.kill)
    watchdog.start()
    return proc, watchdog


def wait_for(proc, prefix):
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.startswith(prefix):
            return seen
    raise AssertionError(f'ended before {prefix!r}: {"".join(seen[-20:])}')


@pytest.mark.slow
def test_second_training_process_is_refused_while_the_first_trains(tmp_path, data, capsys):
    save_root = str(tmp_path / 'save')
    args = teacher_args(data, save_root, 'resnet8', '--epochs', '3', '--print_freq', '1')
    proc, watchdog = start('train_teacher.py', args)
    try:
        wait_for(proc, '[epoch 2/3] 2/')  # epoch 1 is checkpointed: --resume would have something
        for extra in ([], ['--resume']):
            code, _, err = call('teacher', args + extra, capsys)
            assert code == 2
            assert f'is in use by pid {proc.pid} on {socket.gethostname()}' in one_line(err)
        proc.stderr.read()
        assert proc.wait(120) == 0
    finally:
        watchdog.cancel()
        proc.stderr.close()
    assert log_epochs(run_dir_of_teacher(save_root)) == [1, 2, 3]


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(resource, 'prlimit'), reason='needs prlimit (Linux)')
def test_file_size_limit_mid_run_is_a_write_error_then_resume(tmp_path, data, capsys):
    """`ulimit -f` applied to the running process after epoch 1: every later write fails."""
    save_root = str(tmp_path / 'save')
    args = teacher_args(data, save_root, 'resnet8', '--epochs', '3', '--print_freq', '1')
    proc, watchdog = start('train_teacher.py', args)
    try:
        wait_for(proc, '[epoch 2/3] 2/')
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (4096, 4096))
        err = proc.stderr.read()
        code = proc.wait(120)
    finally:
        watchdog.cancel()
        proc.stderr.close()
    assert code == WRITE_ERROR_EXIT, err
    errors = [line for line in err.splitlines() if line.startswith('error: ')]
    assert len(errors) == 1 and 'Traceback' not in err
    assert 'cannot write' in errors[0] and 'File too large' in errors[0]
    run_dir = run_dir_of_teacher(save_root)
    assert load_weights_only(os.path.join(run_dir, 'resnet8_last.pth'))['epoch'] == 1
    assert log_epochs(run_dir) == [1]
    assert call('teacher', args + ['--resume'], capsys)[0] == 0
    assert log_epochs(run_dir) == [1, 2, 3]


def wait_for_write(run_dir, proc):
    """Until the next write of the resumable checkpoint is under way (its temporary file exists)."""
    pattern = os.path.join(run_dir, '.resnet8_last*.tmp')
    deadline = time.time() + 60
    while glob.glob(pattern) and proc.poll() is None:  # the write already under way
        time.sleep(0.01)
    while not glob.glob(pattern) and proc.poll() is None:
        assert time.time() < deadline
        time.sleep(0.01)


@pytest.mark.slow
def test_random_sigkills_then_resume_end_with_the_uninterrupted_weights(tmp_path, data, capsys, one_thread_everywhere):
    """12 SIGKILLs, half of them while a checkpoint is being written, each followed by --resume."""
    epochs = 16

    def args(save_root):
        return teacher_args(data, save_root, 'resnet8', '--epochs', str(epochs), '--print_freq', '1')

    reference = str(tmp_path / 'uninterrupted')
    assert call('teacher', args(reference), capsys)[0] == 0
    expected = weights(os.path.join(run_dir_of_teacher(reference), 'resnet8_last.pth'))

    save_root = str(tmp_path / 'killed')
    env = dict(subprocess_env(), **{WRITE_DELAY_ENV: '0.4'})  # a checkpoint write takes >= 0.8 s
    assert env['OMP_NUM_THREADS'] == env['MKL_NUM_THREADS'] == '1'  # as the in-process reference
    rng = random.Random(0)
    kills, in_write, resumes, launches, progress = 0, 0, 0, 0, []
    while kills < 12 and launches < 40:
        launches += 1
        run_dirs = glob.glob(os.path.join(save_root, 'models', 'resnet8_*'))
        resuming = bool(run_dirs) and any(os.path.exists(p) for p in checkpoint_module.resumable_paths(
            os.path.join(run_dirs[0], 'resnet8_last.pth')))
        proc, watchdog = start('train_teacher.py', args(save_root) + (['--resume'] if resuming else []), env)
        resumes += resuming
        try:
            wait_for(proc, '[epoch ')  # training has started
            run_dir = run_dir_of_teacher(save_root)
            if kills % 2:  # inside the 1st or 2nd checkpoint write of this process
                for _ in range(rng.choice([1, 2])):
                    wait_for_write(run_dir, proc)
                time.sleep(rng.uniform(0, 0.7))
                in_write += proc.poll() is None
            else:
                time.sleep(rng.uniform(0.3, 4.0))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.wait(60)
        finally:
            watchdog.cancel()
            proc.stderr.close()
        # what a kill leaves: the newest checkpoint readable, and at least as far as log.csv
        ckpt, _, failed = checkpoint_module.load_resumable(os.path.join(run_dir, 'resnet8_last.pth'))
        logged = log_epochs(run_dir) if os.path.exists(os.path.join(run_dir, 'log.csv')) else []
        assert not failed
        assert logged == list(range(1, len(logged) + 1))
        assert (ckpt['epoch'] if ckpt else 0) in (len(logged), len(logged) + 1)
        progress.append(ckpt['epoch'] if ckpt else 0)
    with capsys.disabled():
        print(f'{kills} SIGKILLs ({in_write} inside a checkpoint write), {resumes} resumes, {launches} launches; '
              f'checkpointed epoch after each kill: {progress}')
    assert kills == 12 and in_write >= 5 and resumes >= 10
    code, out, err = call('teacher', args(save_root) + ['--resume'], capsys)
    assert code == 0, err
    run_dir = run_dir_of_teacher(save_root)
    assert log_epochs(run_dir) == list(range(1, epochs + 1))  # every epoch logged once
    assert json.load(open(os.path.join(run_dir, 'summary.json')))['status'] == 'finished'
    assert same_weights(weights(os.path.join(run_dir, 'resnet8_last.pth')), expected)
    assert not [n for n in os.listdir(run_dir) if n.endswith('.tmp') or n == runlock.LOCK_NAME]


# ---------------------------------------------------------------- preemption as clusters deliver it

def start_session(script, args, out_path):
    """script as the leader of a session of its own: os.killpg reaches it and all it started."""
    out = open(out_path, 'w')
    proc = subprocess.Popen([sys.executable, script, *args], cwd=ROOT, env=subprocess_env(), stdout=out,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    watchdog = threading.Timer(300, lambda: os.killpg(proc.pid, signal.SIGKILL))
    watchdog.start()
    return proc, out, watchdog


def signal_group_mid_epoch(proc, out, watchdog, prefix, signum=signal.SIGTERM):
    """signum to the whole process group once prefix shows, loader workers running; (exit code, stderr)."""
    try:
        seen = ''.join(wait_for(proc, prefix))
        assert len(descendants(proc.pid)) >= 2  # the loader workers get the signal too
        os.killpg(proc.pid, signum)
        err = seen + proc.stderr.read()
        code = proc.wait(120)
    finally:
        watchdog.cancel()
        out.close()
        proc.stderr.close()
    return code, err


@pytest.mark.slow
@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT])  # a job system's stop; Ctrl-C in a terminal
def test_signal_to_the_process_group_with_loader_workers_stops_with_a_checkpoint(tmp_path, data, teacher,
                                                                                   capsys, signum):
    save_root = str(tmp_path / 'save')
    args = student_args(data, save_root, teacher, 'kd', 'resnet8', '--epochs', '2', '--print_freq', '1')
    args[args.index('--num_workers') + 1] = '2'
    proc, out, watchdog = start_session('train_student.py', args, tmp_path / 'stdout.txt')
    code, err = signal_group_mid_epoch(proc, out, watchdog, '[epoch 2/2] 2/', signum)
    assert code == 128 + signum, err
    assert 'Traceback' not in err and 'error' not in err
    assert 'stopped by signal in epoch 2 after iteration' in (tmp_path / 'stdout.txt').read_text()
    (run_dir,) = glob.glob(os.path.join(save_root, 'student_model', '*'))
    assert json.load(open(os.path.join(run_dir, 'summary.json')))['status'] == 'stopped'
    last = load_weights_only(os.path.join(run_dir, 'resnet8_last.pth'))
    assert last['epoch'] == 1 and last['partial']['epoch'] == 2
    assert not os.path.exists(os.path.join(run_dir, runlock.LOCK_NAME))
    code, _, err = call('student', args + ['--resume'], capsys)
    assert code == 0, err
    assert log_epochs(run_dir) == [1, 2]


@pytest.mark.slow
def test_a_loader_worker_killed_by_the_stop_signal_is_a_stop_not_a_crash(tmp_path, data, teacher, monkeypatch,
                                                                        capsys):
    """Workers that do not leave the signal to the main process (one forked before the handler was
    set, say) die of it; the run still stops like a preempted one."""
    import helper.engine.loops as loops
    monkeypatch.setattr(dataset, 'worker_leaves_signals_to_main', lambda worker_id, main_pid=None: None)
    real_update, calls = loops.EpochState.update, {'n': 0}

    def update_then_preempt(self, *args, **kwargs):
        real_update(self, *args, **kwargs)
        calls['n'] += 1
        if calls['n'] == 9:  # epoch 2, step 2
            os.kill(os.getpid(), signal.SIGTERM)  # the job's signal, to this process...
            workers = descendants(os.getpid())
            subprocess.run(['kill', '-TERM', *map(str, workers)])  # ...and to its loader workers
            deadline = time.time() + 30
            while time.time() < deadline:  # the loader notices the dead workers here
                time.sleep(0.05)
    monkeypatch.setattr(loops.EpochState, 'update', update_then_preempt)
    save_root = str(tmp_path / 'save')
    args = student_args(data, save_root, teacher, 'kd', 'resnet8', '--epochs', '2')
    args[args.index('--num_workers') + 1] = '2'
    code, out, err = call('student', args, capsys)
    assert code == 128 + signal.SIGTERM, err
    assert 'Traceback' not in err and 'a loader worker ended with it' in out
    (run_dir,) = glob.glob(os.path.join(save_root, 'student_model', '*'))
    summary = json.load(open(os.path.join(run_dir, 'summary.json')))
    assert summary['status'] == 'stopped' and summary['epochs_done'] == 1
    monkeypatch.setattr(loops.EpochState, 'update', real_update)
    assert call('student', args + ['--resume'], capsys)[0] == 0
    assert log_epochs(run_dir) == [1, 2]


@pytest.mark.slow
def test_sigterm_to_the_process_group_of_a_cotrained_search_phase_stops_every_candidate(tmp_path, data, teachers):
    teacher = teachers('myresnet14', '2,6,2')  # two candidates in the first phase: co-trained
    save_root = str(tmp_path / 'save')
    argv = student_args(data, save_root, teacher, 'kd', 'myresnet14', '--block_depth', '2,2,2', '--epochs', '2',
                        '--print_freq', '1')
    argv[argv.index('--num_workers') + 1] = '2'
    proc, out, watchdog = start_session('search.py', argv, tmp_path / 'stdout.txt')
    code, err = signal_group_mid_epoch(proc, out, watchdog, '[2,2,2 epoch 2/2] 2/')
    assert code == 128 + signal.SIGTERM, err
    assert 'Traceback' not in err and 'failed' not in err
    assert 'co-training 2 candidates' in (tmp_path / 'stdout.txt').read_text()
    run_dirs = glob.glob(os.path.join(save_root, 'student_model', '*'))
    assert len(run_dirs) == 2
    for run_dir in run_dirs:
        assert json.load(open(os.path.join(run_dir, 'summary.json')))['status'] == 'stopped'
        (last,) = glob.glob(os.path.join(run_dir, '*_last.pth'))
        assert load_weights_only(last)['epoch'] == 1
        assert not os.path.exists(os.path.join(run_dir, runlock.LOCK_NAME))
    assert search.main(argv) == 0  # the rerun continues the phase
    assert all(log_epochs(run_dir) == [1, 2] for run_dir in run_dirs)
