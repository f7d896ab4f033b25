"""--fast compiles only where compilation pays for itself within the run (helper.engine.compile_policy)."""
import json
import os
from types import SimpleNamespace

import pytest
import torch

from helper.engine import compile_policy as cp
from helper.engine.experiment import resolve_speed_flags
from helper.engine.options import RESULT_OPTIONS, finalize, teacher_parser
from helper.engine.run import run

CPU = torch.device('cpu')


def options(*flags, epochs=1, root='save'):
    argv = ['--model', 'resnet8', '--dataset', 'digits', '--epochs', str(epochs), '--num_workers', '0',
            '--save_root', str(root), '--seed', '0', '--print_freq', '1000', '--device', 'cpu', *flags]
    opt, _ = resolve_speed_flags(finalize(teacher_parser().parse_args(argv), 'teacher'), CPU)
    return opt


def experiment(steps_per_epoch, init_stage=False):
    return SimpleNamespace(train_loader=range(steps_per_epoch),
                           method=SimpleNamespace(core=SimpleNamespace(has_init_stage=init_stage)))


def write_entry(opt, **entry):
    path = cp.cache_path()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        json.dump({cp.device_key(CPU): {cp.run_key(opt): entry}}, f)


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))


def test_decide_compiles_only_when_the_steps_repay_the_compilation():
    short, line = cp.decide(20, 13.0, 0.05, 'measured on this CPU')
    assert short is False
    assert line == '--fast: not compiling: 20 steps × ~0.05 s saved < ~13 s to compile (measured on this CPU)'
    long_run, line = cp.decide(1000, 13.0, 0.05, 'estimated for a CPU')
    assert long_run is True and line.startswith('--fast: compiling: 1000 steps') and '> ~13 s' in line
    assert cp.decide(260, 13.0, 0.05, 'x')[0] is False and cp.decide(261, 13.0, 0.05, 'x')[0] is True
    assert cp.decide(10 ** 9, 13.0, -0.01, 'x')[0] is False  # measured slower when compiled: never


def test_costs_from_the_estimate_then_from_measurements():
    compile_s, saving, source = cp.costs(CPU, {})
    est_compile, ratio, step = cp.ESTIMATES['cpu']
    assert (compile_s, source) == (est_compile, 'estimated for a CPU')
    assert saving == pytest.approx(step * (1 - 1 / ratio))
    # only the eager step measured: the estimated ratio applied to it
    assert cp.costs(CPU, {'eager_step_s': 0.4})[1] == pytest.approx(0.4 * (1 - 1 / ratio))
    measured = cp.costs(CPU, {'compile_s': 9.0, 'eager_step_s': 0.3, 'compiled_step_s': 0.1})
    assert measured == (9.0, pytest.approx(0.2), 'measured on this CPU')
    assert cp.costs(torch.device('mps'), {})[1] == 0  # no assumed gain where none was measured


def test_planned_steps_count_init_epochs_and_what_a_resume_has_left():
    opt = SimpleNamespace(epochs=10, init_epochs=30)
    assert cp.planned_steps(opt, experiment(7)) == 70
    assert cp.planned_steps(opt, experiment(7, init_stage=True)) == 7 * 40
    assert cp.planned_steps(opt, experiment(7, init_stage=True), {'epoch': 4, 'init_done': True}) == 42
    assert cp.planned_steps(opt, experiment(7, init_stage=True),
                            {'epoch': 0, 'init_done': False, 'init_epochs_done': 10}) == 7 * 30


def test_fast_without_a_measurement_decides_by_the_estimate_and_says_so(capsys):
    opt = options('--fast')
    assert opt.compile is True  # what --fast asks for; choose() decides it
    short = cp.choose(opt, experiment(20), CPU)
    line = capsys.readouterr().out.strip()
    assert short.compile is False and short.compile_decision == line
    assert line.startswith('--fast: not compiling: 20 steps') and line.endswith('(estimated for a CPU)')
    long_run = cp.choose(opt, experiment(100_000), CPU)
    assert long_run.compile is True and long_run.compile_decision.startswith('--fast: compiling: 100000 steps')


def test_a_measurement_overrides_the_estimate(capsys):
    opt = options('--fast')
    write_entry(opt, compile_s=1.0, eager_step_s=0.5, compiled_step_s=0.1)
    cheap = cp.choose(opt, experiment(20), CPU)
    assert cheap.compile is True and cheap.compile_decision.endswith('(measured on this CPU)')
    write_entry(opt, compile_s=100.0, eager_step_s=0.5, compiled_step_s=0.49)
    assert cp.choose(opt, experiment(5000), CPU).compile is False


def test_an_explicit_compile_always_compiles(capsys):
    write_entry(options('--fast'), compile_s=1e6, eager_step_s=0.1, compiled_step_s=0.1)
    for flags in (['--compile'], ['--fast', '--compile']):
        opt = cp.choose(options(*flags), experiment(1), CPU)
        assert opt.compile is True and not hasattr(opt, 'compile_decision')
    assert capsys.readouterr().out == ''
    assert cp.choose(options(), experiment(10 ** 6), CPU).compile is False  # no flag: nothing decided


def test_compile_is_not_a_result_option():
    assert 'compile' not in RESULT_OPTIONS and 'compile_decision' not in RESULT_OPTIONS and 'amp' in RESULT_OPTIONS


def test_measurements_from_epoch_times():
    assert cp.measurements([20.0, 5.0, 7.0, 5.0], 10, compiled=True) == {'compile_s': 15.0,
                                                                         'compiled_step_s': 0.5}
    assert cp.measurements([18.0, 5.0], 10, compiled=True, startup_s=2.0) == {'compile_s': 15.0,
                                                                              'compiled_step_s': 0.5}
    assert cp.measurements([6.0, 4.0, 4.0], 10, compiled=False) == {'eager_step_s': 0.4}
    assert cp.measurements([6.0, 4.0, 4.0], 10, compiled=False, startup_s=30.0) == {'eager_step_s': 0.4}
    assert cp.measurements([6.0], 10, compiled=False) == {'eager_step_s': 0.6}
    assert cp.measurements([20.0], 10, compiled=True) == {}  # no steady epoch to subtract


def test_record_writes_and_merges_then_choose_reads_it():
    opt = options('--fast')
    assert cp.record(opt, CPU, [6.0, 4.0], 20, compiled=False)
    assert cp.record(opt, CPU, [30.0, 2.0], 20, compiled=True)
    with open(cp.cache_path()) as f:
        entry = json.load(f)[cp.device_key(CPU)][cp.run_key(opt)]
    assert entry == {'eager_step_s': 0.2, 'compile_s': 28.0, 'compiled_step_s': 0.1}
    assert cp.costs(CPU, entry) == (28.0, pytest.approx(0.1), 'measured on this CPU')
    assert not cp.record(options(), CPU, [6.0, 4.0], 20, compiled=False)  # not the fast path: not comparable


def test_an_unwritable_cache_never_fails(tmp_path, monkeypatch):
    blocker = tmp_path / 'not_a_dir'
    blocker.write_text('a file where the cache dir would go')
    monkeypatch.setenv('XDG_CACHE_HOME', str(blocker))
    opt = options('--fast')
    assert cp.record(opt, CPU, [6.0, 4.0], 20, compiled=False) is False
    assert cp.choose(opt, experiment(20), CPU).compile is False
    assert blocker.read_text() == 'a file where the cache dir would go'


def test_a_corrupt_cache_reads_as_empty():
    path = cp.cache_path()
    os.makedirs(os.path.dirname(path))
    with open(path, 'w') as f:
        f.write('{"truncated": ')
    assert cp.read_cache() == {}
    assert cp.costs(CPU, {})[2] == 'estimated for a CPU'
    opt = options('--fast')
    for data in ({cp.device_key(CPU): ['not', 'a', 'dict']}, {cp.device_key(CPU): {cp.run_key(opt): 3}},
                 {cp.device_key(CPU): {cp.run_key(opt): {'compile_s': 'x', 'eager_step_s': None,
                                                         'compiled_step_s': float('nan')}}}):
        with open(path, 'w') as f:
            json.dump(data, f)
        assert cp.cached_entry(cp.read_cache(), CPU, opt) == {}
        assert cp.choose(opt, experiment(20), CPU).compile_decision.endswith('(estimated for a CPU)')
    assert cp.cached_entry({cp.device_key(CPU): {cp.run_key(opt): {'compile_s': 9, 'x': True}}}, CPU, opt) == \
        {'compile_s': 9.0}


@pytest.mark.slow  # trains an epoch
def test_a_short_fast_run_does_not_compile_and_records_why(tmp_path, monkeypatch):
    calls, record = [], cp.record
    monkeypatch.setattr(cp, 'record', lambda *a, **k: calls.append(a) or record(*a, **k))
    summary = run(options('--fast', '--trial', 'short', '--epochs', '2', root=tmp_path), 'teacher')
    assert summary['status'] == 'finished'
    ((_, _, epoch_s, steps_per_epoch, compiled, startup_s),) = calls  # start-up apart from the epochs
    assert len(epoch_s) == 2 and steps_per_epoch > 1 and compiled is False and startup_s > 0
    with open(os.path.join(summary['run_dir'], 'summary.json')) as f:
        saved = json.load(f)['options']
    assert saved['compile'] is False and saved['fast'] is True
    assert saved['compile_decision'].startswith('--fast: not compiling:')
    with open(cp.cache_path()) as f:
        assert 'eager_step_s' in json.load(f)[cp.device_key(CPU)][cp.run_key(options('--fast'))]
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'summary.json.d' / 'x'))
    (tmp_path / 'summary.json.d').write_text('')  # a file where the cache dir's parent would be
    again = run(options('--fast', '--trial', 'unwritable', root=tmp_path), 'teacher')
    assert again['status'] == 'finished' and again['options']['compile'] is False


def test_search_candidates_share_measurements_across_compositions():
    argv = ['--model', 'myresnet14', '--dataset', 'digits', '--fast', '--device', 'cpu', '--block_depth']
    a, b = (finalize(teacher_parser().parse_args(argv + [d]), 'teacher') for d in ('1,1,1', '1,2,1'))
    assert cp.run_key(a) == cp.run_key(b)
    assert cp.run_key(a) != cp.run_key(a.replace(batch_size=128)) != cp.run_key(a.replace(amp=True))
