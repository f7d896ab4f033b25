"""Runs survive kills, preemption, NaNs and bad input.

Bad input: exit code 2, exactly one 'error:' line on stderr, no traceback, nothing written.
Most cases run in-process through helper.engine.run.main (the scripts' entry); one runs as a real script.
"""
import glob
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error

import pytest
import torch

import dataset.cifar
import models
from distiller_zoo import METHODS
from helper.runs import checkpoint as checkpoint_module
from helper.engine.loops import NonFiniteLoss
from helper.engine.options import student_parser, teacher_parser
from helper.engine.run import main, run
from helpers_data import ROOT, failing_save, load_weights_only, student_args, subprocess_env, teacher_args, tree


@pytest.fixture(scope='module')
def finished(tmp_path_factory, data, teacher):
    """A finished 1-epoch kd run: (save_root, its command line)."""
    save_root = str(tmp_path_factory.mktemp('finished'))
    argv = student_args(data, save_root, teacher)
    assert main('student', student_parser(), argv) == 0
    return save_root, argv


def call(kind, argv, capsys):
    parser = teacher_parser() if kind == 'teacher' else student_parser()
    code = main(kind, parser, argv)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *fragments):
    assert code == 2
    assert 'Traceback' not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith('error: ')
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def replace(argv, flag, value):
    argv = list(argv)
    argv[argv.index(flag) + 1] = value
    return argv


def refused(capsys, tmp_path, argv, kind='student', watch=None):
    """Run a bad command; check exit 2, one line, and that nothing was created or changed."""
    watch = watch or str(tmp_path / 'save')
    before = tree(watch)
    code, _, err = call(kind, argv, capsys)
    assert tree(watch) == before
    return code, err


# ---------------------------------------------------------------- bad input: names and numbers

@pytest.mark.parametrize('flag, value, fragment', [
    ('--model_s', 'resnet9', "unknown --model_s 'resnet9'"),
    ('--model_t', 'resnet1100', "unknown --model_t 'resnet1100'"),
    ('--distill', 'crdd', "unknown --distill 'crdd'; did you mean crd"),
    ('--dataset', 'cifar1000', "unknown --dataset 'cifar1000'"),
    ('--epochs', '0', '--epochs must be positive'),
    ('--epochs', '-3', '--epochs must be positive'),
    ('--batch_size', '0', '--batch_size must be positive'),
    ('--batch_size', '-16', '--batch_size must be positive'),
    ('--learning_rate', '0', '--learning_rate must be positive'),
    ('--learning_rate', '-0.05', '--learning_rate must be positive'),
    ('--nce_k', '0', '--nce_k must be positive'),
    ('--nce_k', '-16', '--nce_k must be positive'),
    ('--lr_decay_epochs', '150,1x0', '--lr_decay_epochs must be comma-separated integers'),
    ('--lr_decay_epochs', '180,150', '--lr_decay_epochs must be increasing positive epochs'),
    ('--lr_decay_epochs', '0,150', '--lr_decay_epochs must be increasing positive epochs'),
    ('--epochs', 'ten', "argument --epochs: invalid int value: 'ten'"),
    ('--mc', '2', 'argument --mc: invalid choice'),
])
def test_bad_student_options(capsys, tmp_path, data, teacher, flag, value, fragment):
    argv = student_args(data, str(tmp_path / 'save'), teacher)
    argv = replace(argv, flag, value) if flag in argv else argv + [flag, value]
    assert_one_line_error(*refused(capsys, tmp_path, argv), fragment)


@pytest.mark.parametrize('extra, fragment', [
    (['--model', 'resnet1000'], "unknown --model 'resnet1000'"),
    (['--epochs', '0'], '--epochs must be positive'),
    (['--model', 'myresnet8', '--block_depth', '1,1'], 'myresnet8 needs 3 block counts'),
])
def test_bad_teacher_options(capsys, tmp_path, data, extra, fragment):
    argv = teacher_args(data, str(tmp_path / 'save')) + extra
    assert_one_line_error(*refused(capsys, tmp_path, argv, kind='teacher'), fragment)


@pytest.mark.parametrize('model_s, depth, fragment', [
    ('myresnet8', '1,x,1', "'x' is not a whole number"),
    ('myresnet8', '1,1', 'myresnet8 needs 3 block counts, one per stage'),
    ('myresnet8', '1,1,1,1', 'myresnet8 needs 3 block counts, one per stage'),
    ('myresnet8', '1,0,1', 'every stage needs at least 1 block'),
    ('resnet8', '1,1,1', 'resnet8 has a fixed depth (use myresnet8'),
])
def test_bad_block_depth(capsys, tmp_path, data, teacher, model_s, depth, fragment):
    argv = student_args(data, str(tmp_path / 'save'), teacher, 'kd', model_s, '--block_depth', depth)
    assert_one_line_error(*refused(capsys, tmp_path, argv), '--block_depth', fragment)


# ---------------------------------------------------------------- bad input: the teacher checkpoint

def teacher_copy(tmp_path, teacher, folder, content=None):
    """Put a (possibly damaged) copy of the tiny teacher under tmp_path/<folder>/ckpt_epoch_240.pth."""
    path = tmp_path / folder / 'ckpt_epoch_240.pth'
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(teacher, 'rb') as f:
        real = f.read()
    path.write_bytes(real if content is None else content(real))
    return str(path)


def test_path_t_missing(capsys, tmp_path, data):
    argv = student_args(data, str(tmp_path / 'save'), str(tmp_path / 'resnet8_vanilla' / 'ckpt_epoch_240.pth'))
    assert_one_line_error(*refused(capsys, tmp_path, argv), 'checkpoint not found', 'ckpt_epoch_240.pth')


def test_path_t_missing_where_the_folder_names_no_model(capsys, tmp_path, data):
    argv = student_args(data, str(tmp_path / 'save'), str(tmp_path / 'teachers' / 'best.pth'))
    assert_one_line_error(*refused(capsys, tmp_path, argv), 'teacher checkpoint not found', 'best.pth')


def test_path_t_is_a_folder(capsys, tmp_path, data):
    folder = tmp_path / 'resnet8_vanilla'
    folder.mkdir()
    argv = student_args(data, str(tmp_path / 'save'), str(folder))
    assert_one_line_error(*refused(capsys, tmp_path, argv), str(folder))


@pytest.mark.skipif(os.name != 'posix' or os.geteuid() == 0, reason='root reads files whatever their mode')
def test_path_t_unreadable(capsys, tmp_path, data, teacher):
    path = teacher_copy(tmp_path, teacher, 'resnet8_vanilla')
    os.chmod(path, 0)
    try:
        argv = student_args(data, str(tmp_path / 'save'), path)
        assert_one_line_error(*refused(capsys, tmp_path, argv), 'cannot read checkpoint', 'ermission denied')
    finally:
        os.chmod(path, 0o644)


@pytest.mark.parametrize('damage', ['random bytes', 'truncated', 'empty'])
def test_path_t_not_a_checkpoint(capsys, tmp_path, data, teacher, damage):
    content = {'random bytes': lambda real: os.urandom(len(real)),
               'truncated': lambda real: real[:len(real) // 2],
               'empty': lambda real: b''}[damage]
    path = teacher_copy(tmp_path, teacher, 'resnet8_vanilla', content)
    argv = student_args(data, str(tmp_path / 'save'), path)
    assert_one_line_error(*refused(capsys, tmp_path, argv), f'cannot read checkpoint {path}',
                          'not a PyTorch checkpoint, or the file is truncated or corrupted')


def test_path_t_for_another_architecture_by_folder(capsys, tmp_path, data, teacher):
    path = teacher_copy(tmp_path, teacher, 'resnet20_vanilla')  # resnet8 weights in a resnet20 folder
    argv = student_args(data, str(tmp_path / 'save'), path)
    assert_one_line_error(*refused(capsys, tmp_path, argv), 'does not fit resnet20', 'the weights match resnet8')


def test_path_t_for_another_architecture_by_flag(capsys, tmp_path, data, teacher):
    argv = student_args(data, str(tmp_path / 'save'), teacher, 'kd', 'resnet8', '--model_t', 'wrn_16_2')
    assert_one_line_error(*refused(capsys, tmp_path, argv), 'does not fit wrn_16_2', 'the weights match resnet8')


def test_mc_with_different_stage_shapes(capsys, tmp_path, data):
    path = tmp_path / 'resnet32x4_vanilla' / 'ckpt_epoch_240.pth'
    path.parent.mkdir()
    torch.save({'model': models.build_model('resnet32x4').state_dict(), 'epoch': 240}, str(path))
    argv = student_args(data, str(tmp_path / 'save'), str(path), 'kd', 'myresnet8', '--mc', '1')
    line = assert_one_line_error(*refused(capsys, tmp_path, argv), 'milestone checking needs equal stage shapes')
    assert '16x32x32' in line and '64x32x32' in line  # both shapes of stage 1


# ---------------------------------------------------------------- bad input: data, device, resume

def test_dataset_missing_and_not_downloadable(capsys, tmp_path, teacher, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError('[Errno -2] Name or service not known')

    monkeypatch.setattr(dataset.cifar, 'download_and_extract_archive', offline)
    empty = tmp_path / 'data'
    empty.mkdir()
    argv = student_args(str(empty), str(tmp_path / 'save'), teacher)
    assert_one_line_error(*refused(capsys, tmp_path, argv), 'cifar100 is not in', 'could not be downloaded',
                          'cifar-100-python', 'put train, test, meta there')
    assert tree(str(empty)) == {}


@pytest.mark.skipif(torch.cuda.is_available(), reason='a CUDA device is present')
def test_cuda_requested_but_absent(capsys, tmp_path, data, teacher):
    argv = replace(student_args(data, str(tmp_path / 'save'), teacher), '--device', 'cuda')
    assert_one_line_error(*refused(capsys, tmp_path, argv), '--device cuda was requested but no CUDA device')


def test_resume_without_a_checkpoint(capsys, tmp_path, data, teacher):
    argv = student_args(data, str(tmp_path / 'save'), teacher) + ['--resume']
    assert_one_line_error(*refused(capsys, tmp_path, argv), '--resume: no checkpoint at', 'start without --resume')


def test_resume_with_different_options(capsys, tmp_path, finished):
    save_root, argv = finished
    bad = replace(argv, '--nce_k', '32') + ['--resume']
    line = assert_one_line_error(*refused(capsys, tmp_path, bad, watch=save_root), '--resume')
    assert '--nce_k 16' in line and '32' in line


def test_resume_with_a_damaged_checkpoint(capsys, tmp_path, data, teacher):
    save_root = str(tmp_path / 'save')
    argv = student_args(data, save_root, teacher)
    assert call('student', argv, capsys)[0] == 0
    last = glob.glob(os.path.join(save_root, 'student_model', '*', 'resnet8_last.pth'))[0]
    with open(last, 'r+b') as f:
        f.truncate(1000)
    assert_one_line_error(*refused(capsys, tmp_path, argv + ['--resume']), '--resume: cannot read')


def test_finished_run_is_never_overwritten(capsys, tmp_path, finished):
    save_root, argv = finished
    line = assert_one_line_error(*refused(capsys, tmp_path, argv, watch=save_root), 'already holds a finished run')
    assert '--extend EPOCHS continues it' in line and 'another --trial' in line and '--resume' not in line


@pytest.mark.slow
def test_bad_input_in_a_real_script_process(tmp_path):
    proc = subprocess.run([sys.executable, 'train_student.py', '--path_t', 'x/resnet110_vanilla/ckpt.pth',
                           '--model_s', 'resnet200', '--save_root', str(tmp_path / 'save')],
                          cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith("error: unknown --model_s 'resnet200'")
    assert proc.stdout == ''
    assert not (tmp_path / 'save').exists()


# ---------------------------------------------------------------- kills and preemption

def start_script(name, args, log_path):
    """Start a script with stderr piped (the progress lines) and stdout to a file."""
    out = open(log_path, 'w')
    proc = subprocess.Popen([sys.executable, name, *args], cwd=ROOT, env=subprocess_env(), stdout=out,
                            stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(240, proc.kill)  # never hang the suite
    watchdog.start()
    return proc, out, watchdog


def wait_for_line(proc, prefix):
    """Read progress lines until one starts with prefix; returns what was read."""
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.startswith(prefix):
            return seen
    raise AssertionError(f'the run ended before {prefix!r}: {"".join(seen[-20:])}')


def log_epochs(run_dir):
    with open(os.path.join(run_dir, 'log.csv')) as f:
        return [int(line.split(',')[0]) for line in f.read().splitlines()[1:]]


def all_files_readable(run_dir):
    for path in glob.glob(os.path.join(run_dir, '*.pth')):
        load_weights_only(path)
    with open(os.path.join(run_dir, 'summary.json')) as f:
        return json.load(f)


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume(tmp_path, data, capsys):
    save_root = str(tmp_path / 'save')
    args = teacher_args(data, save_root, 'resnet8', '--epochs', '2', '--print_freq', '1')
    proc, out, watchdog = start_script('train_teacher.py', args, tmp_path / 'stdout.txt')
    try:
        wait_for_line(proc, '[epoch 2/2] 2/')
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(60) == -signal.SIGKILL
    finally:
        watchdog.cancel()
        out.close()
        proc.stderr.close()
    run_dir = glob.glob(os.path.join(save_root, 'models', 'resnet8_*'))[0]
    assert log_epochs(run_dir) == [1]  # killed inside epoch 2
    assert all_files_readable(run_dir)['epochs_done'] == 1

    code, _, err = call('teacher', args, capsys)  # not resumed by accident
    assert_one_line_error(code, err, 'add --resume')
    stale = os.path.join(run_dir, '.resnet8_last.pth.x1y2z3.tmp')  # what a kill inside a write leaves
    with open(stale, 'wb') as f:
        f.write(b'PK\x03\x04')
    assert call('teacher', args + ['--resume'], capsys)[0] == 0
    assert not os.path.exists(stale)
    assert log_epochs(run_dir) == [1, 2]
    summary = all_files_readable(run_dir)
    assert summary['status'] == 'finished' and summary['epochs_done'] == 2
    assert load_weights_only(os.path.join(run_dir, 'ckpt_epoch_2.pth'))['epoch'] == 2
    with open(os.path.join(save_root, 'result.txt')) as f:
        assert len(f.read().splitlines()) == 1


@pytest.mark.slow
def test_sigterm_writes_a_resumable_checkpoint_and_resumes_mid_epoch(tmp_path, data, teacher, capsys):
    save_root = str(tmp_path / 'save')
    args = student_args(data, save_root, teacher, 'kd', 'resnet8', '--epochs', '2', '--print_freq', '1')
    proc, out, watchdog = start_script('train_student.py', args, tmp_path / 'stdout.txt')
    try:
        wait_for_line(proc, '[epoch 2/2] 2/')
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
        proc.stderr.read()
    finally:
        watchdog.cancel()
        out.close()
        proc.stderr.close()
    assert code == 128 + signal.SIGTERM
    stdout = (tmp_path / 'stdout.txt').read_text()
    assert 'stopped by signal in epoch 2 after iteration' in stdout and 'with --resume' in stdout
    run_dir = glob.glob(os.path.join(save_root, 'student_model', '*'))[0]
    summary = all_files_readable(run_dir)
    assert summary['status'] == 'stopped' and summary['epochs_done'] == 1
    last = load_weights_only(os.path.join(run_dir, 'resnet8_last.pth'))
    assert last['epoch'] == 1 and last['partial']['epoch'] == 2
    done_steps = last['partial']['step']
    assert 2 <= done_steps < 7

    code, _, err = call('student', args + ['--resume'], capsys)
    assert code == 0
    assert f'[epoch 2/2] 1/{7 - done_steps} ' in err  # the finished steps of epoch 2 are not redone
    assert log_epochs(run_dir) == [1, 2]
    assert all_files_readable(run_dir)['status'] == 'finished'


# ---------------------------------------------------------------- crash-safe writes

def test_checkpoint_writer_dying_mid_write_keeps_the_previous_one(tmp_path, monkeypatch):
    path = str(tmp_path / 'ckpt.pth')
    checkpoint_module.save_checkpoint({'epoch': 1, 'model': {'w': torch.ones(3)}}, path)
    monkeypatch.setattr(torch, 'save', failing_save(torch.save, lambda obj: True))
    with pytest.raises(OSError, match='No space left'):
        checkpoint_module.save_checkpoint({'epoch': 2, 'model': {'w': torch.zeros(3)}}, path)
    assert os.listdir(str(tmp_path)) == ['ckpt.pth']  # no temporary file left behind
    kept = load_weights_only(path)
    assert kept['epoch'] == 1 and torch.equal(kept['model']['w'], torch.ones(3))


def test_json_and_text_writes_are_atomic(tmp_path, monkeypatch):
    path = str(tmp_path / 'summary.json')
    checkpoint_module.write_json({'status': 'running'}, path)
    def broken_disk(fd):
        raise OSError(5, 'Input/output error')

    monkeypatch.setattr(os, 'fsync', broken_disk)
    with pytest.raises(OSError):
        checkpoint_module.write_json({'status': 'finished'}, path)
    assert os.listdir(str(tmp_path)) == ['summary.json']
    assert checkpoint_module.read_json(path) == {'status': 'running'}


def test_append_line_writes_whole_lines(tmp_path):
    path = str(tmp_path / 'result.txt')
    for i in range(3):
        checkpoint_module.append_line(path, f'run {i}\tbest {i}.00')
    checkpoint_module.append_line(path, 'with newline\n')
    with open(path) as f:
        assert f.read() == 'run 0\tbest 0.00\nrun 1\tbest 1.00\nrun 2\tbest 2.00\nwith newline\n'


def test_training_run_survives_a_dying_checkpoint_writer(tmp_path, data, monkeypatch, capsys):
    save_root = str(tmp_path / 'save')
    args = teacher_args(data, save_root, 'resnet8', '--epochs', '2')
    with monkeypatch.context() as patch:
        patch.setattr(torch, 'save', failing_save(torch.save, lambda obj: isinstance(obj, dict)
                                                  and obj.get('epoch') == 2))
        with pytest.raises(OSError, match='No space left'):
            run(teacher_parser().parse_args(args), 'teacher')
    run_dir = glob.glob(os.path.join(save_root, 'models', 'resnet8_*'))[0]
    assert not [name for name in os.listdir(run_dir) if name.endswith('.tmp')]
    assert load_weights_only(os.path.join(run_dir, 'resnet8_last.pth'))['epoch'] == 1
    assert all_files_readable(run_dir)['epochs_done'] == 1
    assert log_epochs(run_dir) == [1]
    assert call('teacher', args + ['--resume'], capsys)[0] == 0
    assert log_epochs(run_dir) == [1, 2]


# ---------------------------------------------------------------- non-finite loss

def test_nan_loss_stops_the_run_naming_epoch_iteration_and_term(tmp_path, data, teacher, monkeypatch, capsys):
    method = METHODS['attention']
    original = method.method_loss
    calls = []

    def poisoned(self, *args):
        calls.append(1)
        loss = original(self, *args)
        return loss * float('nan') if len(calls) == 7 + 3 else loss  # epoch 2 (7 steps each), iteration 3

    monkeypatch.setattr(method, 'method_loss', poisoned)
    save_root = str(tmp_path / 'save')
    args = student_args(data, save_root, teacher, 'attention', 'resnet8', '--epochs', '3')
    code, _, err = call('student', args, capsys)
    assert code == 3
    lines = err.splitlines()
    assert len(lines) == 1 and 'Traceback' not in err
    assert lines[0].startswith('error: loss went non-finite at epoch 2, iteration 3 (term: method)')

    run_dir = glob.glob(os.path.join(save_root, 'student_model', '*'))[0]
    summary = all_files_readable(run_dir)
    assert summary['status'] == 'failed' and summary['epochs_done'] == 1
    last = load_weights_only(os.path.join(run_dir, 'resnet8_last.pth'))
    assert last['epoch'] == 1
    assert all(torch.isfinite(v).all() for v in last['model'].values() if v.is_floating_point())
    assert log_epochs(run_dir) == [1]
    assert not os.path.exists(os.path.join(save_root, 'result.txt'))


def test_nan_loss_is_reported_in_process_too(tmp_path, data, teacher, monkeypatch):
    monkeypatch.setattr(METHODS['hint'], 'method_loss', lambda self, *args: torch.tensor(float('inf')))
    with pytest.raises(NonFiniteLoss, match=r'epoch 1, iteration 1 \(term: method\)'):
        run(student_parser().parse_args(student_args(data, str(tmp_path), teacher, 'hint')), 'student')


class NanGradient(torch.autograd.Function):
    """A finite (zero) loss whose gradient is NaN: what an SVD backward gives on repeated singular values."""

    @staticmethod
    def forward(ctx, x):
        ctx.shape = x.shape
        return x.sum() * 0

    @staticmethod
    def backward(ctx, grad):
        return torch.full(ctx.shape, float('nan'))


@pytest.mark.parametrize('poison, message', [
    ('gradient', 'error: the weights went non-finite before epoch 1, iteration 4 (a gradient was non-finite'),
    ('loss', 'error: loss went non-finite at epoch 1, iteration 3 (term: method)'),
])
def test_a_step_failing_on_non_finite_weights_is_reported_not_a_traceback(tmp_path, data, teacher, monkeypatch,
                                                                          capsys, poison, message):
    calls = []

    def method_loss(self, s_feats, s_logit, t_feats, t_logit, batch):
        calls.append(1)
        if not torch.isfinite(s_feats[-1]).all():  # like torch.linalg.svd on NaN input
            raise RuntimeError('linalg.svd: The algorithm failed to converge because the input matrix contained '
                               'non-finite values.')
        if len(calls) == 3:
            return NanGradient.apply(s_feats[-1]) if poison == 'gradient' else s_feats[-1].sum() * float('nan')
        return s_feats[-1].sum() * 0

    monkeypatch.setattr(METHODS['hint'], 'method_loss', method_loss)
    save_root = str(tmp_path / 'save')
    code, _, err = call('student', student_args(data, save_root, teacher, 'hint'), capsys)
    assert code == 3
    assert err.splitlines() == [err.strip()] and 'Traceback' not in err
    assert err.startswith(message)
    run_dir = glob.glob(os.path.join(save_root, 'student_model', '*'))[0]
    assert all_files_readable(run_dir)['status'] == 'failed'
