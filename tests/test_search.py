"""search.py end to end: a tiny real BCS on generated CIFAR-layout data (1 epoch per candidate),
its outputs, resuming by skipping finished candidates, --search_epochs, and the --gpus path."""
import csv
import functools
import glob
import json
import os
import re
import sys

import pytest

import models
import search
from helper.errors import UsageError
from helper.engine.options import differing_option, finalize, options_dict, student_parser
from helper.engine.run import run_dir_of
from helper.launch.scheduler import run_parallel
from helpers_data import student_args

pytestmark = pytest.mark.slow  # trains epochs or starts processes


@pytest.fixture(scope='module')
def deep_teacher(teachers):
    # wrn_40_1 has 6 blocks per stage: myresnet14 (2,2,2) may move to (2,6,1), then (6,*,*)
    return teachers('wrn_40_1')


def search_argv(data, save_root, teacher, *extra, distill='kd'):
    return student_args(data, str(save_root), teacher, distill, 'myresnet14', '--block_depth', '2,2,2',
                        *extra)


def n_params(depth):
    model = models.build_model('myresnet14', num_classes=100, block_depth=list(depth))
    return sum(p.numel() for p in model.parameters())


def only_search_dir(save_root):
    found = glob.glob(os.path.join(str(save_root), 'search', 'BCS_*'))
    assert len(found) == 1, found
    return found[0]


def file_times(run_dirs):
    out = {}
    for run_dir in run_dirs:
        for name in os.listdir(run_dir):
            if name.endswith('.pth') or name == 'summary.json':
                out[os.path.join(run_dir, name)] = os.stat(os.path.join(run_dir, name)).st_mtime_ns
    return out


def test_tiny_search_writes_results_and_rerun_skips_finished(data, deep_teacher, tmp_path, capsys):
    argv = search_argv(data, tmp_path, deep_teacher, '--mc', '1', distill='crd')
    assert search.main(argv) == 0
    out = capsys.readouterr().out
    folder = only_search_dir(tmp_path)
    with open(os.path.join(folder, 'search.json')) as f:
        result = json.load(f)

    cands = result['candidates']
    depths = [tuple(c['block_depth']) for c in cands]
    assert depths[:2] == [(2, 2, 2), (2, 6, 1)]
    # phase 2 moves stage 2 -> stage 1 (1 for 4) from the phase-1 winner; ties keep the earlier
    phase1_best = depths[0] if cands[0]['best_acc'] >= cands[1]['best_acc'] else depths[1]
    assert depths[2:] == [(phase1_best[0] + 4, phase1_best[1] - 1, phase1_best[2])]
    assert [c['phase'] for c in cands] == [1, 1, 2]
    for c in cands:
        assert c['params'] == n_params(c['block_depth'])
        assert c['best_acc'] >= c['last_acc'] >= 0
        with open(os.path.join(c['run_dir'], 'summary.json')) as f:
            summary = json.load(f)
        assert summary['status'] == 'finished' and summary['block_depth'] == c['block_depth']
        assert summary['mc'] == 1 and summary['epochs'] == 1
    best = max(c['best_acc'] for c in cands)
    assert result['winner']['block_depth'] == next(c for c in cands if c['best_acc'] == best)['block_depth']
    assert result['status'] == 'finished' and result['final'] is None
    assert result['device_hours'] == pytest.approx(sum(c['device_hours'] for c in cands))
    assert result['device_hours'] > 0

    with open(os.path.join(folder, 'search-result.txt')) as f:
        lines = f.read().splitlines()
    assert len(lines) == 4
    for line, c in zip(lines, cands):
        assert f"block_depth {','.join(map(str, c['block_depth']))} params {c['params']}" in line
    assert lines[3].startswith(f"winner: block_depth {','.join(map(str, result['winner']['block_depth']))} ")
    assert '[BCS candidate 1 of ~3] phase 1: block_depth 2,2,2' in out
    assert '[BCS candidate 3 of ~3] phase 2' in out

    # The same command again trains nothing: every candidate is read back from its summary.json.
    before = file_times(c['run_dir'] for c in cands)
    assert search.main(argv) == 0
    out = capsys.readouterr().out
    assert out.count('already finished, skipped') == 3
    assert '[BCS candidate' not in out
    assert file_times(c['run_dir'] for c in cands) == before
    with open(os.path.join(folder, 'search-result.txt')) as f:
        assert f.read().splitlines() == lines
    with open(os.path.join(folder, 'search.json')) as f:
        again = json.load(f)
    assert again['winner'] == result['winner'] and again['candidates'] == cands


def test_rerun_with_other_result_options_is_refused(data, deep_teacher, tmp_path, capsys):
    # A finished candidate trained with other options must not be taken as this search's result.
    argv = search_argv(data, tmp_path, deep_teacher)
    from train_student import train_student
    train_student(student_parser().parse_args(argv))  # the (2,2,2) candidate's own folder...
    summary_path = glob.glob(os.path.join(str(tmp_path), 'student_model', '*', 'summary.json'))[0]
    with open(summary_path) as f:
        summary = json.load(f)
    summary['options']['kd_T'] = 8.0  # ...but recorded with another temperature
    with open(summary_path, 'w') as f:
        json.dump(summary, f)
    assert search.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and '--kd_T' in err and len(err.strip().splitlines()) == 1


def test_search_epochs_shortens_candidates_then_retrains_winner(data, teachers, tmp_path, capsys):
    # resnet32 has 5 blocks per stage: no move fits, the search is the start composition only.
    teacher = teachers('resnet32')
    argv = search_argv(data, tmp_path, teacher, '--search_epochs', '2')
    argv[argv.index('--epochs') + 1] = '3'
    argv += ['--lr_decay_epochs', '2']
    assert search.main(argv) == 0
    out = capsys.readouterr().out
    # the plan says why only the start is visited, and that the winner is retrained on --epochs
    assert ("1 candidate, the start composition alone: no block can move (4 more in stage 2 would pass "
            "the teacher's 5 there; 4 more in stage 1 would pass the teacher's 5 there)") in out
    assert 'each scored on 2 epochs; then the winner is retrained on the full --epochs 3' in out
    assert re.search(r'_bcs2_id-[0-9a-f]{8}$', only_search_dir(tmp_path))  # its own record, apart from a full search
    with open(os.path.join(only_search_dir(tmp_path), 'search.json')) as f:
        result = json.load(f)
    assert [c['block_depth'] for c in result['candidates']] == [[2, 2, 2]]
    cand, final = result['candidates'][0], result['final']
    with open(os.path.join(cand['run_dir'], 'summary.json')) as f:
        short = json.load(f)
    with open(os.path.join(final['run_dir'], 'summary.json')) as f:
        full = json.load(f)
    # milestone 2 of 3 epochs scales to 1 of 2
    assert (short['epochs'], short['options']['lr_decay_epochs']) == (2, [1])
    assert short['trial'] == '1-bcs2'
    with open(os.path.join(cand['run_dir'], 'log.csv'), newline='') as f:
        lrs = [float(row['lr']) for row in csv.DictReader(f)]
    assert lrs == pytest.approx([0.05, 0.005])
    assert (full['epochs'], full['options']['lr_decay_epochs'], full['trial']) == (3, [2], '1')
    assert final['block_depth'] == [2, 2, 2] and final['run_dir'] != cand['run_dir']
    assert final['best_acc'] == full['best_acc']
    assert result['device_hours'] == pytest.approx(cand['device_hours'] + final['device_hours'])
    # where the winner is named, the retrained figures come first, labelled, beside the search score
    scores = (f"retrained on 3 epochs: best_acc {full['best_acc']:.2f} last_acc {full['last_acc']:.2f}; "
              f"search score on 2 epochs: best_acc {short['best_acc']:.2f} last_acc {short['last_acc']:.2f}")
    with open(os.path.join(only_search_dir(tmp_path), 'search-result.txt')) as f:
        assert f.read().splitlines()[-1] == f"winner: block_depth 2,2,2 params {cand['params']} {scores}"
    assert f'[BCS] winner [2, 2, 2]: {scores};' in out


class FakeProcess:
    """Stands in for a train_student.py process: parses its argv with train_student's own parser
    and writes the summary.json a real run would, with an accuracy chosen by the test."""

    def __init__(self, argv, env, scores, seen, expected_dirs, fail=()):
        script = argv.index(search.TRAIN_STUDENT)
        opt = finalize(student_parser().parse_args(argv[script + 1:]), 'student')
        depth = tuple(opt.block_depth)
        seen.append((depth, env['CUDA_VISIBLE_DEVICES'], argv[:script]))
        expected = expected_dirs[depth]
        assert run_dir_of(opt, 'student') == run_dir_of(expected, 'student')
        assert differing_option(options_dict(opt), options_dict(expected)) is None
        self.code = 1 if depth in fail else 0
        if not self.code:
            os.makedirs(run_dir_of(opt, 'student'))
            summary = {'status': 'finished', 'params': n_params(depth), 'best_acc': scores[depth],
                       'last_acc': scores[depth] - 1, 'run_dir': run_dir_of(opt, 'student'),
                       'wall_time_s': 36.0, 'options': options_dict(opt)}
            with open(os.path.join(summary['run_dir'], 'summary.json'), 'w') as f:
                json.dump(summary, f)

    def poll(self):
        return self.code


def fake_scheduler(monkeypatch, scores, fail=()):
    """Route search.py's --gpus path through the real scheduler with FakeProcess workers.

    Records every candidate's options as search.py built them (the in-process truth), so each
    FakeProcess can check that its command line parses to the same run."""
    seen, expected = [], {}
    original = search.candidate_argv

    def recording_argv(c):
        expected[tuple(c.block_depth)] = c
        return original(c)

    def popen(argv, env):
        return FakeProcess(argv, env, scores, seen, expected, fail)

    monkeypatch.setattr(search, 'candidate_argv', recording_argv)
    monkeypatch.setattr(search, 'run_parallel', functools.partial(run_parallel, popen=popen, poll_s=0))
    return seen


def test_gpus_path_candidate_command_lines_parse_to_the_same_runs(data, deep_teacher, tmp_path,
                                                                   monkeypatch, capsys):
    scores = {(2, 2, 2): 50.0, (2, 6, 1): 60.0, (6, 5, 1): 55.0}
    seen = fake_scheduler(monkeypatch, scores)
    argv = search_argv(data, tmp_path, deep_teacher, '--gpus', '0,1', '--runs_per_gpu', '2',
                       '--trial', '7', '--mc', '1')
    assert search.main(argv) == 0
    assert [d for d, _, _ in seen] == [(2, 2, 2), (2, 6, 1), (6, 5, 1)]
    assert all(prefix == [sys.executable] for _, _, prefix in seen)
    assert {slot for _, slot, _ in seen} <= {'0', '1'}
    with open(os.path.join(only_search_dir(tmp_path), 'search.json')) as f:
        result = json.load(f)
    assert result['winner']['block_depth'] == [2, 6, 1] and result['winner']['best_acc'] == 60.0
    assert [c['device_hours'] for c in result['candidates']] == pytest.approx([0.01] * 3)
    assert all(re.search(r'_7_id-[0-9a-f]{8}$', c['run_dir']) for c in result['candidates'])
    assert '[BCS candidate 3 of ~3] phase 2: block_depth 6,5,1' in capsys.readouterr().out


def test_gpus_path_torchrun_command_and_failed_candidate(data, deep_teacher, tmp_path, monkeypatch, capsys):
    # phase 1 (the start and its moves) is one batch: 2,6,1 trains although 2,2,2 failed
    seen = fake_scheduler(monkeypatch, {(2, 2, 2): 50.0, (2, 6, 1): 60.0}, fail={(2, 2, 2)})
    argv = search_argv(data, tmp_path, deep_teacher, '--gpus', '2,3', '--nproc_per_node', '2')
    assert search.main(argv) == 2
    assert seen[0][1] == '2,3'
    assert seen[0][2][1:] == ['-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2']
    err = capsys.readouterr().err
    assert 'candidate [2, 2, 2] failed (exit code 1)' in err and 'rerun this command' in err


def test_candidate_argv_drops_search_flags_and_sets_the_candidate(data, deep_teacher, tmp_path):
    # abbreviations argparse accepts (--gpu, --runs) must not reach train_student.py either
    argv = search_argv(data, tmp_path, deep_teacher, '--search_epochs', '1', '--gpu=0,1',
                       '--runs', '2', '--resume', '--trial', '3')
    at = argv.index('--block_depth')
    argv[at:at + 2] = ['--block_depth=2,2,2']
    opt = finalize(search.search_parser().parse_args(argv), 'student')
    c = search.candidate_options(opt, (2, 6, 1), short=True)
    out = search.candidate_argv(c)
    assert not {'--search_epochs', '--gpu=0,1', '--runs', '2', '--resume'} & set(out)
    assert opt.gpus == '0,1' and opt.runs_per_gpu == 2
    parsed = finalize(student_parser().parse_args(out), 'student')
    assert parsed.block_depth == [2, 6, 1] and parsed.trial == '3-bcs1' and not parsed.resume
    assert parsed.epochs == 1 and parsed.lr_decay_epochs == []  # 150,180,210 scaled past epoch 1
    assert run_dir_of(parsed, 'student') == run_dir_of(c, 'student')
    assert differing_option(options_dict(parsed), options_dict(c)) is None


def test_my_teacher_keeps_its_own_block_depth(data, teachers, tmp_path):
    """A my* teacher trained at another depth loads at that depth (from its checkpoint) as
    --path_t, and its blocks per stage bound the search."""
    teacher = teachers('myresnet14')  # base 2,2,2
    path = teachers('myresnet14', '1,4,1')
    assert '-1-4-1_' in path and models.name_from_path(path) == 'myresnet14'
    model, _ = models.load_model(path)
    assert [len(stage) for stage in (model.layer1, model.layer2, model.layer3)] == [1, 4, 1]
    assert models.load_model(teacher)[0].layer2.__len__() == 2
    best = os.path.join(os.path.dirname(path), 'myresnet14_best.pth')
    assert len(models.load_model(best)[0].layer2) == 4
    argv = search_argv(data, tmp_path, path, '--dry_run')
    opt = finalize(search.search_parser().parse_args(argv), 'student')
    assert search.Search(opt).limits == [1, 4, 1]
    assert search.Search(finalize(search.search_parser().parse_args(
        search_argv(data, tmp_path, teacher)), 'student')).limits == [2, 2, 2]


def test_search_needs_a_variable_depth_student(data, deep_teacher, tmp_path, capsys):
    argv = student_args(data, str(tmp_path), deep_teacher, 'kd', 'resnet14')
    assert search.main(argv) == 2
    assert 'variable-depth' in capsys.readouterr().err
    argv = search_argv(data, tmp_path, deep_teacher, '--search_epochs', '0')
    with pytest.raises(UsageError, match='--search_epochs must be positive'):
        search.run_search(search.search_parser().parse_args(argv))
    for flag in ('--runs_per_gpu', '--nproc_per_node'):  # without --gpus they would do nothing
        argv = search_argv(data, tmp_path, deep_teacher, flag, '2')
        assert search.main(argv) == 2
        err = capsys.readouterr().err
        assert err.count('\n') == 1 and 'add --gpus' in err
    assert not os.path.exists(os.path.join(str(tmp_path), 'search'))


@pytest.mark.parametrize('distill, extra', [('reviewkd', ()), ('ofd', ()), ('kd', ('--optimizer', 'dot'))])
def test_short_search_with_mdistiller_methods_and_dot(data, deep_teacher, tmp_path, distill, extra):
    argv = search_argv(data, tmp_path, deep_teacher, '--mc', '1', *extra, distill=distill)
    assert search.main(argv) == 0
    with open(os.path.join(only_search_dir(tmp_path), 'search.json')) as f:
        result = json.load(f)
    cands = result['candidates']
    assert len(cands) == 3 and result['status'] == 'finished'
    for c in cands:
        with open(os.path.join(c['run_dir'], 'summary.json')) as f:
            summary = json.load(f)
        assert summary['status'] == 'finished' and summary['distill'] == distill and summary['mc'] == 1
        assert summary['options']['optimizer'] == ('dot' if extra else 'sgd')
        with open(os.path.join(c['run_dir'], 'log.csv')) as f:
            rows = list(csv.DictReader(f))
        assert float(rows[0]['loss_mc']) > 0
        assert float(rows[0]['loss_method' if distill != 'kd' else 'loss_kd']) > 0
