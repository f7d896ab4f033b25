"""scripts/demo.sh's scheduling, with a stand-in interpreter (PYTHON=...): runs go DEMO_LANES at a
time, one thread each, the distilled runs only after the teacher; a failed run stops the demo with
its log's end; a stop signal reaches every run. Seconds, not minutes: nothing is trained."""
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT

# Stands in for python: records when each run starts and ends, makes the teacher's checkpoint
# where the demo looks for it, and fails the run whose arguments contain FAKE_FAIL.
FAKE = r'''#!/usr/bin/env python3
import os, signal, sys, time
script, args = sys.argv[1], ' '.join(sys.argv[2:])
if script == '-':
    sys.stdin.read()
    print('the results table')
    sys.exit(0)
if script == 'report.py':
    sys.exit(0)
log = os.environ['FAKE_LOG']

def note(what):
    with open(log, 'a') as f:
        f.write(f"{what}|{script} {args}|{os.environ.get('OMP_NUM_THREADS')}|{time.time()}\n")

def stopped(signum, frame):
    note('stopped')
    sys.exit(128 + signum)

signal.signal(signal.SIGTERM, stopped)
note('start')
time.sleep(float(os.environ.get('FAKE_SECONDS', '0.4')))
if os.environ.get('FAKE_FAIL') and os.environ['FAKE_FAIL'] in args:
    print('something went wrong in this run')
    note('failed')
    sys.exit(3)
argv = sys.argv[2:]
if script == 'train_teacher.py' and argv[argv.index('--model') + 1] == 'wrn_40_1':
    folder = os.path.join(argv[argv.index('--save_root') + 1], 'models', 'wrn_40_1_fake')
    os.makedirs(folder)
    open(os.path.join(folder, 'ckpt_epoch_5.pth'), 'w').close()
print('best accuracy 50.00 (epoch 1), last 50.00; summary: elsewhere')
note('end')
'''


def start_demo(tmp_path, **env):
    fake = tmp_path / 'fake-python'
    fake.write_text(FAKE)
    fake.chmod(0o755)
    env = dict(os.environ, PYTHON=str(fake), FAKE_LOG=str(tmp_path / 'runs.log'),
               DEMO_SAVE_ROOT=str(tmp_path / 'demo'), **env)
    return subprocess.Popen(['bash', os.path.join(ROOT, 'scripts', 'demo.sh')], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def events(tmp_path):
    out = []
    for line in (tmp_path / 'runs.log').read_text().splitlines():
        what, run, threads, when = line.split('|')
        out.append((what, run, threads, float(when)))
    return out


def most_at_once(evs):
    going = peak = 0
    for what, *_ in sorted(evs, key=lambda e: e[3]):
        going += 1 if what == 'start' else -1
        peak = max(peak, going)
    return peak


@pytest.mark.slow  # starts ten processes
@pytest.mark.parametrize('lanes', [1, 3])
def test_runs_go_lanes_at_a_time_one_thread_each_distilled_after_the_teacher(tmp_path, lanes):
    proc = start_demo(tmp_path, DEMO_LANES=str(lanes))
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    evs = events(tmp_path)
    starts = [e for e in evs if e[0] == 'start']
    assert len(starts) == 10 and len([e for e in evs if e[0] == 'end']) == 10  # teacher, 9 students/search
    assert {e[2] for e in starts} == {'1'}
    assert most_at_once(evs) == lanes
    teacher_end = next(e[3] for e in evs if e[0] == 'end' and '--model wrn_40_1' in e[1])
    later = [e for e in starts if '--path_t' in e[1]]
    assert len(later) == 6 and all(e[3] >= teacher_end for e in later)  # search, CRD+MC x2, KD x3
    assert out.count('] done: ') == 10 and 'best accuracy 50.00 (epoch 1), last 50.00\n' in out
    assert 'summary: elsewhere' not in out and 'the results table' in out


@pytest.mark.slow
def test_a_failed_run_stops_the_demo_with_the_end_of_its_log(tmp_path):
    proc = start_demo(tmp_path, DEMO_LANES='2', FAKE_FAIL='--seed 1 --trial demo-seed1', FAKE_SECONDS='1')
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 3, out
    assert 'FAILED (exit 3): from scratch, seed 1; the end of ' in out
    assert 'something went wrong in this run' in out
    assert 'results and plots' not in out
    evs = events(tmp_path)
    # the run going beside it was stopped, not left behind
    assert [e[0] for e in evs].count('start') == len([e for e in evs if e[0] in ('end', 'failed', 'stopped')])


@pytest.mark.slow
def test_a_stop_signal_to_the_demo_reaches_every_run(tmp_path):
    proc = start_demo(tmp_path, DEMO_LANES='2', FAKE_SECONDS='30')
    deadline = time.time() + 60
    while time.time() < deadline:
        if (tmp_path / 'runs.log').exists() and len(events(tmp_path)) >= 2:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)  # the demo alone, as `kill PID` sends it
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130, out
    evs = events(tmp_path)
    assert sorted(e[0] for e in evs) == ['start', 'start', 'stopped', 'stopped']


def test_a_bad_lane_count_is_refused_before_anything_is_touched(tmp_path):
    (tmp_path / 'demo').mkdir()
    (tmp_path / 'demo' / 'results.md').write_text('an earlier table')
    proc = start_demo(tmp_path, DEMO_LANES='two')
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert out.strip().splitlines()[-1] == "error: DEMO_LANES must be a whole number from 1 up, not 'two'"
    assert (tmp_path / 'demo' / 'results.md').read_text() == 'an earlier table'
    assert not (tmp_path / 'runs.log').exists()
