"""BCS candidate order (stubbed scorer) and the parallel scheduler (stub workers)."""
import sys

import pytest

from helper import bcs
from helper.errors import UsageError
from helper.scheduler import run_parallel, slots_for


def run_with_scores(start, model_s, model_t, scores):
    rates = bcs.exchange_rates(model_s)
    limits = bcs.teacher_limits(model_t, len(start))
    calls = []

    def score_phase(comps, phase):
        calls.append((phase, list(comps)))
        return [scores.get(c, 0.0) for c in comps]

    visited, best = bcs.search(start, rates, limits, score_phase)
    return [v[0] for v in visited], best, calls, rates


def test_published_resnet110_to_myresnet20_sequence():
    order, best, calls, rates = run_with_scores(
        (3, 3, 3), 'myresnet20', 'resnet110', {(3, 7, 2): 72.0, (3, 3, 3): 70.0, (3, 11, 1): 71.0})
    assert rates == [4, 4]
    assert order == [(3, 3, 3), (3, 7, 2), (3, 11, 1), (7, 6, 2), (11, 5, 2), (15, 4, 2)]
    assert best == (3, 7, 2)
    assert [(phase, len(c)) for phase, c in calls] == [(1, 3), (2, 3)]  # the start trains with phase 1


def test_phase_two_starts_from_phase_one_winner():
    order, best, _, _ = run_with_scores((3, 3, 3), 'myresnet20', 'resnet110',
                                        {(3, 11, 1): 75.0, (15, 10, 1): 80.0})
    assert order[:3] == [(3, 3, 3), (3, 7, 2), (3, 11, 1)]
    # from (3,11,1): y-1, x+4 while x <= 18
    assert order[3:] == [(7, 10, 1), (11, 9, 1), (15, 8, 1)]
    assert best == (3, 11, 1)


def test_teacher_depth_bounds_the_destination_stage():
    # resnet56 has 9 blocks per stage: y <= 9 stops phase 1 after one move
    order, _, _, _ = run_with_scores((3, 3, 3), 'myresnet20', 'resnet56', {})
    assert order == [(3, 3, 3), (3, 7, 2), (7, 2, 3)]


def test_four_stage_student_searches_stage_pairs_with_own_rates():
    order, best, calls, rates = run_with_scores((2, 2, 2, 2), 'myResNet18', 'ResNet152',
                                                {(2, 2, 6, 1): 1.0})
    assert rates == [4, 4, 4]
    # phase 1: stage 4 -> 3; phase 2 from the winner: stage 3 -> 2, bounded by ResNet152's 8;
    # phase 3: stage 2 -> 1 is bounded by the teacher's 3 blocks in stage 1, so nothing is left
    assert order == [(2, 2, 2, 2), (2, 2, 6, 1), (2, 6, 5, 1)]
    assert [(p, len(c)) for p, c in calls] == [(1, 2), (2, 1), (3, 0)]
    assert best == (2, 2, 6, 1)


def test_exchange_rate_keeps_parameter_count_close():
    import models
    base = models.build_model('myresnet20', block_depth=[3, 3, 3])
    moved = models.build_model('myresnet20', block_depth=[3, 7, 2])
    n = lambda m: sum(p.numel() for p in m.parameters())
    assert abs(n(moved) - n(base)) / n(base) < 0.01


def test_slots_group_gpus_and_pack_runs():
    assert slots_for('0,1,2,3') == ['0', '1', '2', '3']
    assert slots_for('0,1', runs_per_gpu=2) == ['0', '0', '1', '1']
    assert slots_for('0,1,2,3', nproc_per_node=2) == ['0,1', '2,3']
    with pytest.raises(UsageError):
        slots_for('a,b')


def test_run_parallel_uses_every_slot_and_reports_failures(tmp_path):
    log = tmp_path / 'log.txt'
    script = ('import sys, time, os; time.sleep(0.3); '
              'open(sys.argv[1], "a").write(os.environ["CUDA_VISIBLE_DEVICES"] + " " + sys.argv[2] + "\\n"); '
              'sys.exit(int(sys.argv[2]) == 3)')
    started = []

    def command(job, slot):
        started.append((job, slot))
        return [sys.executable, '-c', script, str(log), str(job)], {'CUDA_VISIBLE_DEVICES': slot}

    failed = run_parallel([0, 1, 2, 3, 4], ['0', '1'], command, poll_s=0.05)
    assert failed == {3: 1}
    assert sorted(j for j, _ in started) == [0, 1, 2, 3, 4]
    assert {s for _, s in started} == {'0', '1'}
    assert started[:2] == [(0, '0'), (1, '1')]  # both slots start at once
    assert len(log.read_text().splitlines()) == 5
