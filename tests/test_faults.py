"""What survives what: one writer per folder, damaged checkpoints, bad data files, write errors,
random kills. Each fault is followed by what the README tells the user to do, and the test checks
that nothing beyond one checkpoint interval was lost.
"""
import glob
import json
import os
import pickle
import random
import resource
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

import dataset
import search
from dataset import cifar
from dataset.datafiles import DataFileError, md5_of
from helper import checkpoint as checkpoint_module
from helper import runlock
from helper.checkpoint import WRITE_DELAY_ENV
from helper.options import student_parser, teacher_parser
from helper.run import WRITE_ERROR_EXIT, main
from helpers_data import (ROOT, failing_save, load_weights_only, student_args, subprocess_env, teacher_args, tree,
                          write_tiny_cifar100)


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
          'from helper.runlock import RunLock\n'
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


WORKER_HOLDER = ('import os, sys, time\n'
                 'from helper.runlock import RunLock\n'
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
def test_random_sigkills_then_resume_end_with_the_uninterrupted_weights(tmp_path, data, capsys):
    """12 SIGKILLs, half of them while a checkpoint is being written, each followed by --resume."""
    epochs = 16

    def args(save_root):
        return teacher_args(data, save_root, 'resnet8', '--epochs', str(epochs), '--print_freq', '1')

    reference = str(tmp_path / 'uninterrupted')
    assert call('teacher', args(reference), capsys)[0] == 0
    expected = weights(os.path.join(run_dir_of_teacher(reference), 'resnet8_last.pth'))

    save_root = str(tmp_path / 'killed')
    env = dict(subprocess_env(), **{WRITE_DELAY_ENV: '0.4'})  # a checkpoint write takes >= 0.8 s
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
