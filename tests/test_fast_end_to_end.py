"""The promises users rely on most, each in one small end-to-end run, so that the fast tier
(-m "not slow") catches a regression in them: a real SIGTERM to the process group and a kill -9,
each followed by --resume, ending with the weights of an uninterrupted run; every method trains
to the end; two DDP ranks take the steps one process takes. The slow tier checks each at length."""
import json
import math
import os
import signal
import subprocess
import sys
import threading

import pytest
import torch
import torch.multiprocessing as mp

from distiller_zoo import METHODS
from helper.engine.options import student_parser, teacher_parser
from helper.engine.run import main
from helpers_data import ROOT, load_weights_only, student_args, subprocess_env, teacher_args

EPOCHS = 4


def args(data, save_root):
    return teacher_args(data, str(save_root), 'resnet8', '--epochs', str(EPOCHS), '--print_freq', '1')


def run_dir_of(save_root):
    (name,) = os.listdir(os.path.join(str(save_root), 'models'))
    return os.path.join(str(save_root), 'models', name)


def last_weights(save_root):
    return load_weights_only(os.path.join(run_dir_of(save_root), 'resnet8_last.pth'))['model']


@pytest.fixture(scope='module')
def uninterrupted(data, tmp_path_factory):
    save_root = tmp_path_factory.mktemp('uninterrupted')
    torch.set_num_threads(1)
    assert main('teacher', teacher_parser(), args(data, save_root)) == 0
    return last_weights(save_root)


def interrupt_in_epoch_2(data, save_root, send):
    """train_teacher.py in its own process group; once epoch 2 trains, send(process); its exit code."""
    proc = subprocess.Popen([sys.executable, 'train_teacher.py', *args(data, save_root)], cwd=ROOT,
                            env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    watchdog = threading.Timer(120, proc.kill)
    watchdog.start()
    try:
        for line in proc.stderr:
            if line.startswith('[epoch 2/'):
                send(proc)
                break
        return proc.wait(60)
    finally:
        watchdog.cancel()
        proc.stderr.close()


def resume_and_compare(data, save_root, uninterrupted, capsys):
    with open(os.path.join(run_dir_of(save_root), 'summary.json')) as f:
        assert json.load(f)['status'] != 'finished'  # the stop came before the end
    capsys.readouterr()
    assert main('teacher', teacher_parser(), args(data, save_root) + ['--resume']) == 0
    run_dir = run_dir_of(save_root)
    with open(os.path.join(run_dir, 'summary.json')) as f:
        assert json.load(f)['status'] == 'finished'
    with open(os.path.join(run_dir, 'log.csv')) as f:
        assert [int(line.split(',')[0]) for line in f.read().splitlines()[1:]] == list(range(1, EPOCHS + 1))
    ended = last_weights(save_root)
    assert ended.keys() == uninterrupted.keys()
    for k in ended:
        assert torch.equal(ended[k], uninterrupted[k]), k


def test_sigterm_to_the_process_group_then_resume(data, tmp_path, uninterrupted, capsys, one_thread_everywhere):
    code = interrupt_in_epoch_2(data, tmp_path, lambda p: os.killpg(p.pid, signal.SIGTERM))
    assert code == 128 + signal.SIGTERM
    resume_and_compare(data, tmp_path, uninterrupted, capsys)


def test_kill_9_then_resume(data, tmp_path, uninterrupted, capsys, one_thread_everywhere):
    code = interrupt_in_epoch_2(data, tmp_path, lambda p: os.killpg(p.pid, signal.SIGKILL))
    assert code == -signal.SIGKILL
    resume_and_compare(data, tmp_path, uninterrupted, capsys)


@pytest.mark.parametrize('distill', sorted(METHODS))
def test_every_method_trains_to_the_end(data, teacher, tmp_path, capsys, distill):
    argv = student_args(data, str(tmp_path), teacher, distill, 'resnet8', '--batch_size', '50')
    assert main('student', student_parser(), argv) == 0
    (name,) = os.listdir(os.path.join(str(tmp_path), 'student_model'))
    run_dir = os.path.join(str(tmp_path), 'student_model', name)
    with open(os.path.join(run_dir, 'summary.json')) as f:
        summary = json.load(f)
    assert summary['status'] == 'finished' and summary['distill'] == distill
    last = load_weights_only(os.path.join(run_dir, 'resnet8_last.pth'))
    row = last['history'][0]
    assert row['epoch'] == 1 and all(math.isfinite(v) for v in row.values() if isinstance(v, float))
    if METHODS[distill].has_init_stage:  # its term trains the connectors before the main stage
        assert 'init epoch 1: loss ' in capsys.readouterr().out
    else:  # the method's own term was computed (plain KD has only the KL term)
        assert row['loss_kd' if distill == 'kd' else 'loss_method'] > 0


# ---- DDP: two ranks on the halves of a batch, one process on the whole batch ----

def _ddp_worker(rank, store, out_dir):
    import torch.distributed as tdist
    from test_ddp import WORLD, fixed_batch, rank_part, two_steps
    torch.set_num_threads(1)
    tdist.init_process_group('gloo', init_method=f'file://{store}', rank=rank, world_size=WORLD)
    try:
        torch.save(two_steps('crd', rank_part(fixed_batch(), rank), dtype=torch.float64),
                   os.path.join(out_dir, f'rank{rank}.pt'))
    finally:
        tdist.destroy_process_group()


def test_two_ddp_ranks_take_the_steps_of_one_process(tmp_path, monkeypatch):
    from test_ddp import WORLD, assert_same, fixed_batch, two_steps
    monkeypatch.setenv('OMP_NUM_THREADS', '1')
    mp.start_processes(_ddp_worker, args=(str(tmp_path / 'store'), str(tmp_path)), nprocs=WORLD,
                       start_method='spawn')
    ranks = [torch.load(tmp_path / f'rank{r}.pt', weights_only=False) for r in range(WORLD)]
    one = two_steps('crd', fixed_batch(), dtype=torch.float64)
    torch.testing.assert_close((ranks[0]['losses'] + ranks[1]['losses']) / WORLD, one['losses'],
                               rtol=1e-5, atol=1e-6)
    for r in ranks:  # CRD's memory bank too: each rank holds every row of the global batch
        assert_same(r['student'], one['student'], rtol=1e-4, atol=1e-6)
        assert_same(r['method'], one['method'], rtol=1e-4, atol=1e-6)
