"""Co-trained BCS candidates: same weights and log.csv as each candidate trained alone, one teacher
forward per batch for all of them, resume after a stop, and search.py using it."""
import os
import threading

import pytest
import torch

from helper import cotrain
from helper.errors import UsageError
from helper.loops import Preempted
from helper.run import run
from helpers_data import load_weights_only, parse_student, student_args, tiny_cifar, tiny_teacher

COMPS = ['2,2,2', '1,2,3', '3,1,1']


def cand(data, save_root, path_t, comp, *extra):
    return parse_student(student_args(data, str(save_root), path_t, 'crd', 'myresnet14', '--block_depth', comp,
                                      '--epochs', '2', '--mc', '1', *extra))


def run_files(run_dir):
    with open(os.path.join(run_dir, 'log.csv')) as f:
        log = f.read()
    return log, load_weights_only(os.path.join(run_dir, 'myresnet14_last.pth'))


def assert_same_run(a_dir, b_dir):
    log_a, ck_a = run_files(a_dir)
    log_b, ck_b = run_files(b_dir)
    assert log_a == log_b
    for part in ('model', 'method'):
        assert ck_a[part].keys() == ck_b[part].keys()
        for k in ck_a[part]:
            assert torch.equal(ck_a[part][k], ck_b[part][k]), (part, k)
    mom_a, mom_b = ck_a['optimizer']['state'], ck_b['optimizer']['state']
    for k in mom_a:
        assert torch.equal(mom_a[k]['momentum_buffer'], mom_b[k]['momentum_buffer'])


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    return tiny_cifar(tmp_path_factory), tiny_teacher(tmp_path_factory, 'wrn_40_1')


@pytest.mark.slow
@pytest.mark.parametrize('teacher_batch', ['1', '4'])
def test_cotrained_candidates_equal_alone(setup, tmp_path, monkeypatch, teacher_batch):
    data, path_t = setup
    torch.use_deterministic_algorithms(True)
    try:
        alone = [run(cand(data, tmp_path / 'alone', path_t, c, '--teacher_batch', teacher_batch), 'student')
                 for c in COMPS]
        forwards = []
        real = cotrain.Baton.__init__

        def spy(self, n):
            real(self, n)
            forwards.append(self.shared)
        monkeypatch.setattr(cotrain.Baton, '__init__', spy)
        together = cotrain.cotrain([cand(data, tmp_path / 'co', path_t, c, '--teacher_batch', teacher_batch)
                                    for c in COMPS])
    finally:
        torch.use_deterministic_algorithms(False)
    for a, b in zip(alone, together):
        assert a['status'] == b['status'] == 'finished'
        assert a['best_acc'] == b['best_acc']
        assert_same_run(a['run_dir'], b['run_dir'])
    shared = forwards[0]
    assert shared.served == 3 * shared.computed  # every teacher forward served all three


def test_incompatible_candidates_are_refused(setup, tmp_path):
    data, path_t = setup
    a = cand(data, tmp_path, path_t, '2,2,2')
    b = cand(data, tmp_path, path_t, '1,2,3', '--seed', '1')
    with pytest.raises(UsageError, match='--seed'):
        cotrain.cotrain([a, b], run_fn=lambda o, k: None)


def test_baton_takes_turns_in_order_and_skips_finished_runs():
    baton, order = cotrain.Baton(3), []
    steps = {0: 3, 1: 1, 2: 2}

    def work(i):
        cotrain._local.baton, cotrain._local.index = baton, i
        baton.wait_turn(i)
        for s in range(steps[i]):
            order.append((i, s))
            cotrain.yield_turn()
        baton.leave(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert order == [(0, 0), (1, 0), (2, 0), (0, 1), (2, 1), (0, 2)]


def test_failure_of_one_run_lets_the_others_finish(setup, tmp_path):
    data, path_t = setup
    done = []

    def fake_run(opt, kind):
        if opt.block_depth == '1,2,3':
            raise Preempted(15)
        cotrain.yield_turn()
        done.append(opt.block_depth)
        return {'ok': True}
    with pytest.raises(Preempted):
        cotrain.cotrain([cand(data, tmp_path, path_t, c) for c in COMPS], run_fn=fake_run)
    assert sorted(done) == ['2,2,2', '3,1,1']


@pytest.mark.slow
def test_stopped_cotraining_resumes(setup, tmp_path, monkeypatch):
    """A stop mid-phase checkpoints every candidate; the rerun with --resume finishes them all
    with the weights of an uninterrupted co-training."""
    data, path_t = setup
    import helper.loops as loops
    real_update = loops.EpochState.update
    calls = {'n': 0}

    def update_then_stop(self, *a, **k):
        real_update(self, *a, **k)
        calls['n'] += 1
        if calls['n'] == 9:  # epoch 1, step 3 of the first candidate's turn
            cotrain._stop['signum'] = 15
    monkeypatch.setattr(loops.EpochState, 'update', update_then_stop)
    torch.use_deterministic_algorithms(True)
    try:
        with pytest.raises(Preempted):
            cotrain.cotrain([cand(data, tmp_path / 'co', path_t, c) for c in COMPS])
        monkeypatch.setattr(loops.EpochState, 'update', real_update)
        resumed = cotrain.cotrain([cand(data, tmp_path / 'co', path_t, c, '--resume') for c in COMPS])
        straight = cotrain.cotrain([cand(data, tmp_path / 'straight', path_t, c) for c in COMPS])
    finally:
        torch.use_deterministic_algorithms(False)
    for a, b in zip(resumed, straight):
        assert a['status'] == 'finished'
        assert_same_run(a['run_dir'], b['run_dir'])
