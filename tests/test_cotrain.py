"""Co-trained BCS candidates: same weights and log.csv as each candidate trained alone, one teacher
forward per batch for all of them, resume after a stop, and search.py using it."""
import math
import os
import signal
import threading

import pytest
import torch

from helper.engine.context import RunContext
from helper.engine.trainer import Trainer
from helper.launch import cotrain
from helper.errors import UsageError
from helper.engine.loops import Preempted
from helper.engine.run import run
from helpers_data import N_CLASSES, TRAIN_PER_CLASS, load_weights_only, parse_student, student_args

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
        assert mom_a[k].keys() == mom_b[k].keys()
        for buf in mom_a[k]:   # SGD's momentum; DOT's task and distillation momenta
            assert torch.equal(mom_a[k][buf], mom_b[k][buf])


@pytest.fixture(scope='module')
def setup(data, teachers):
    return data, teachers('wrn_40_1')


@pytest.mark.slow
@pytest.mark.parametrize('teacher_batch', ['1', '4'])
def test_cotrained_candidates_equal_alone(setup, tmp_path, monkeypatch, teacher_batch, one_thread_everywhere):
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
    assert {f'cotrain-{i}' for i in range(3)} <= set(one_thread_everywhere)  # each run's thread set one thread


@pytest.mark.slow
def test_cotrained_dot_candidates_equal_alone(setup, tmp_path):
    data, path_t = setup
    torch.use_deterministic_algorithms(True)
    try:
        alone = [run(cand(data, tmp_path / 'alone', path_t, c, '--optimizer', 'dot'), 'student') for c in COMPS[:2]]
        together = cotrain.cotrain([cand(data, tmp_path / 'co', path_t, c, '--optimizer', 'dot') for c in COMPS[:2]])
    finally:
        torch.use_deterministic_algorithms(False)
    for a, b in zip(alone, together):
        assert a['status'] == b['status'] == 'finished'
        assert_same_run(a['run_dir'], b['run_dir'])
        state = load_weights_only(os.path.join(b['run_dir'], 'myresnet14_last.pth'))['optimizer']['state']
        assert any('momentum_kd_buffer' in s for s in state.values())


@pytest.mark.slow
def test_cotrained_init_stage_candidates_equal_alone(setup, tmp_path, monkeypatch, one_thread_everywhere):
    """A method with an init stage (AB): its init epochs take turns and share the teacher through
    the same loop, and each candidate still ends as it does alone."""
    data, path_t = setup
    extra = ('--distill', 'abound', '--init_epochs', '2', '--mc', '0')
    shared, real = [], cotrain.Baton.__init__
    monkeypatch.setattr(cotrain.Baton, '__init__', lambda self, n: real(self, n) or shared.append(self.shared))
    torch.use_deterministic_algorithms(True)
    try:
        alone = [run(cand(data, tmp_path / 'alone', path_t, c, *extra), 'student') for c in COMPS[:2]]
        together = cotrain.cotrain([cand(data, tmp_path / 'co', path_t, c, *extra) for c in COMPS[:2]])
    finally:
        torch.use_deterministic_algorithms(False)
    for a, b in zip(alone, together):
        assert a['status'] == b['status'] == 'finished'
        assert_same_run(a['run_dir'], b['run_dir'])
    steps = math.ceil(N_CLASSES * TRAIN_PER_CLASS / 16)  # --batch_size 16
    assert shared[0].computed == (2 + 2) * steps  # init epochs and main epochs alike, once for both runs
    assert shared[0].served == 2 * shared[0].computed


def test_incompatible_candidates_are_refused(setup, tmp_path):
    data, path_t = setup
    a = cand(data, tmp_path, path_t, '2,2,2')
    b = cand(data, tmp_path, path_t, '1,2,3', '--seed', '1')
    with pytest.raises(UsageError, match='--seed'):
        cotrain.cotrain([a, b], run_fn=lambda o, k, c: None)


def test_baton_takes_turns_in_order_and_skips_finished_runs():
    baton, order = cotrain.Baton(3), []
    steps = {0: 3, 1: 1, 2: 2}

    def work(i):
        baton.wait_turn(i)
        for s in range(steps[i]):
            order.append((i, s))
            baton.take_turn(i)
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

    def fake_run(opt, kind, context):
        if opt.block_depth == '1,2,3':
            raise Preempted(15)
        context.take_turn()
        done.append(opt.block_depth)
        return {'ok': True}
    with pytest.raises(Preempted):
        cotrain.cotrain([cand(data, tmp_path, path_t, c) for c in COMPS], run_fn=fake_run)
    assert sorted(done) == ['2,2,2', '3,1,1']


def test_cotrained_runs_name_their_composition_in_their_lines(setup, tmp_path, capsys):
    """Co-trained runs print in turns: each epoch line and progress bar says which candidate it is,
    from the context the run was given; the runs of a group share its teacher outputs and stop signal."""
    from types import SimpleNamespace
    data, path_t = setup
    descs, seen = [], {}

    def fake_run(opt, kind, context):
        trainer = SimpleNamespace(opt=opt, context=context)
        Trainer.log(trainer, 'epoch 1/2: train acc 1.00')
        context.take_turn()
        descs.append(Trainer.progress(trainer, 7, 'epoch 1/2').desc)
        seen[opt.block_depth] = context
        return {}
    cotrain.cotrain([cand(data, tmp_path, path_t, c) for c in COMPS], run_fn=fake_run)
    assert sorted(capsys.readouterr().out.splitlines()) == sorted(f'[{c}] epoch 1/2: train acc 1.00' for c in COMPS)
    assert sorted(descs) == sorted(f'{c} epoch 1/2' for c in COMPS)
    assert {c: ctx.label for c, ctx in seen.items()} == {c: c for c in COMPS}
    contexts = list(seen.values())
    assert not any(ctx.alone for ctx in contexts)
    assert contexts[0].shared_teacher is not None
    assert all(ctx.shared_teacher is contexts[0].shared_teacher and ctx.stop is contexts[0].stop for ctx in contexts)
    alone = SimpleNamespace(opt=None, context=RunContext())
    Trainer.log(alone, 'alone')  # a run outside co-training prints as it always did
    assert capsys.readouterr().out == 'alone\n'
    assert RunContext().shared_teacher is None and RunContext().alone


def test_a_signal_to_the_cotraining_process_reaches_every_run(setup, tmp_path):
    """SIGTERM to the process, caught once by co-training, is the stop signal every run checks
    through its context; the handler that was there before comes back afterwards."""
    data, path_t = setup
    before = signal.getsignal(signal.SIGTERM)
    stopped = {}

    def fake_run(opt, kind, context):
        for turn in range(100000):
            if context.stop.requested():
                stopped[context.label] = (turn, context.stop.signum)
                return {}
            if context.label == COMPS[0] and turn == 3:
                os.kill(os.getpid(), signal.SIGTERM)
            context.take_turn()
        return {}
    cotrain.cotrain([cand(data, tmp_path, path_t, c) for c in COMPS], run_fn=fake_run)
    assert sorted(stopped) == sorted(COMPS)
    assert all(signum == signal.SIGTERM and turn >= 3 for turn, signum in stopped.values())
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_run_alone_resets_the_compiler_and_a_group_resets_once(setup, tmp_path, monkeypatch):
    """A run alone frees its compiled graphs when it ends; a co-trained run leaves that to its
    group, which resets once after all its runs ended."""
    data, path_t = setup
    resets = []
    monkeypatch.setattr(torch.compiler, 'reset', lambda: resets.append(1))
    nothing = cand(data, tmp_path, path_t, '2,2,2', '--resume')  # nothing to resume: a usage error
    with pytest.raises(UsageError):
        run(nothing, 'student')
    assert len(resets) == 1
    with pytest.raises(UsageError):
        run(nothing, 'student', RunContext(alone=False))
    assert len(resets) == 1
    with pytest.raises(UsageError):
        cotrain.cotrain([cand(data, tmp_path, path_t, c, '--resume') for c in COMPS])
    assert len(resets) == 2


@pytest.mark.slow
def test_stopped_cotraining_resumes(setup, tmp_path, monkeypatch, one_thread_everywhere):
    """A stop mid-phase checkpoints every candidate; the rerun with --resume finishes them all
    with the weights of an uninterrupted co-training."""
    data, path_t = setup
    import helper.engine.loops as loops
    real_update = loops.EpochState.update
    calls = {'n': 0}

    def update_then_stop(self, *a, **k):
        real_update(self, *a, **k)
        calls['n'] += 1
        if calls['n'] == 9:  # epoch 1, step 3 of the first candidate's turn
            os.kill(os.getpid(), signal.SIGTERM)  # to the process: co-training catches it for every run
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
    assert one_thread_everywhere.count('cotrain-0') == 3  # stopped, resumed, straight: one thread each time


def test_gpus_split_a_phase_into_cotrained_groups(setup, tmp_path, monkeypatch, capsys):
    """--gpus with fewer slots than candidates: one co-training process per slot, whose command
    line parses to exactly the candidates search.py built."""
    import json
    import search
    from helper.engine.options import differing_option, finalize, options_dict, student_parser
    from helper.engine.run import run_dir_of
    data, path_t = setup
    argv = student_args(data, str(tmp_path), path_t, 'kd', 'myresnet14', '--block_depth', '2,2,2', '--gpus', '0,1')
    opt = finalize(search.search_parser().parse_args(argv), 'student')
    s = search.Search(opt)
    todo = [search.candidate_options(opt, comp, False) for comp in ((2, 2, 2), (2, 3, 1), (2, 4, 1))]
    seen = []

    class Fake:
        def __init__(self, cmd, env):
            assert cmd[1:3] == ['-m', 'helper.launch.cotrain']
            groups = cotrain.split_groups(cmd[3:])
            for g in groups:
                o = finalize(student_parser().parse_args(g), 'student')
                match = [c for c in todo if list(c.block_depth) == list(o.block_depth)][0]
                assert run_dir_of(o, 'student') == run_dir_of(match, 'student')
                assert differing_option(options_dict(o), options_dict(match)) is None
                os.makedirs(run_dir_of(o, 'student'))
                with open(os.path.join(run_dir_of(o, 'student'), 'summary.json'), 'w') as f:
                    json.dump({'status': 'finished', 'params': 1, 'best_acc': 1.0, 'last_acc': 1.0,
                               'run_dir': run_dir_of(o, 'student'), 'wall_time_s': 1.0}, f)
            seen.append((env['CUDA_VISIBLE_DEVICES'], [tuple(finalize(student_parser().parse_args(g),
                                                                     'student').block_depth) for g in groups]))

        def poll(self):
            return 0
    import functools
    from helper.launch.scheduler import run_parallel
    monkeypatch.setattr(search, 'run_parallel', functools.partial(run_parallel, popen=Fake, poll_s=0))
    os.makedirs(s.dir, exist_ok=True)
    s._train_parallel(todo, 1)
    assert sorted(seen) == [('0', [(2, 2, 2), (2, 4, 1)]), ('1', [(2, 3, 1)])]
    assert [r['block_depth'] for r in s.records] == [[2, 2, 2], [2, 3, 1], [2, 4, 1]]
    # the two candidates of slot 0 shared its time: each is charged half
    assert [r['device_hours'] * 3600 for r in s.records] == pytest.approx([0.5, 1.0, 0.5])


def test_no_cotrain_flag_trains_separately(setup, tmp_path, monkeypatch):
    import search
    data, path_t = setup
    argv = student_args(data, str(tmp_path), path_t, 'kd', 'myresnet14', '--block_depth', '2,2,2', '--no_cotrain')
    called = []
    monkeypatch.setattr(cotrain, 'cotrain', lambda opts: called.append(opts))
    monkeypatch.setattr(search, 'train_student', lambda c: {
        'status': 'finished', 'params': 1, 'best_acc': float(sum(c.block_depth)), 'last_acc': 0.0,
        'run_dir': 'x', 'wall_time_s': 1.0})
    assert search.main(argv) == 0
    assert called == []
    monkeypatch.setattr(cotrain, 'cotrain', lambda opts: called.append(len(opts)) or [
        {'status': 'finished', 'params': 1, 'best_acc': float(sum(c.block_depth)), 'last_acc': 0.0,
         'run_dir': 'x', 'wall_time_s': 1.0} for c in opts])
    assert search.main(argv[:-1] + ['--trial', 'co']) == 0
    assert called and all(n > 1 for n in called)


def test_cotrain_entry_point_parses_groups_and_exits_like_train_student(setup, tmp_path, monkeypatch, capsys):
    data, path_t = setup
    seen = []
    monkeypatch.setattr(cotrain, 'cotrain', lambda opts: seen.append([o.block_depth for o in opts]))
    argv = [student_args(data, str(tmp_path), path_t, 'kd', 'myresnet14', '--block_depth', c) for c in COMPS]
    assert cotrain.main(argv[0] + ['--next'] + argv[1] + ['--next'] + argv[2]) == 0
    assert seen == [COMPS]

    def refuse(opts):
        raise UsageError('co-training needs candidates that differ only in their composition; --seed differs')
    monkeypatch.setattr(cotrain, 'cotrain', refuse)
    assert cotrain.main(argv[0] + ['--next'] + argv[1]) == 2
    assert capsys.readouterr().err.startswith('error: co-training needs')
    monkeypatch.setattr(cotrain, 'cotrain', lambda opts: (_ for _ in ()).throw(Preempted(15)))
    assert cotrain.main(argv[0]) == 128 + 15


@pytest.mark.slow
def test_cotrained_fast_path_equals_alone(data, teacher, tmp_path, one_thread_everywhere):
    """--fast --compile (compiled modules in each run's thread, data on the device, batched teacher):
    still the same log.csv as alone."""
    path_t = teacher

    def fast(root, comp):
        return parse_student(student_args(data, str(tmp_path / root), path_t, 'crd', 'myresnet14', '--block_depth',
                                          comp, '--fast', '--compile', '--teacher_batch', '2'))
    together = cotrain.cotrain([fast('co', c) for c in ('1,1,1', '1,2,1')])
    alone = [run(fast('alone', c), 'student') for c in ('1,1,1', '1,2,1')]
    for a, b in zip(alone, together):
        assert run_files(a['run_dir'])[0] == run_files(b['run_dir'])[0]
    assert {'cotrain-0', 'cotrain-1'} <= set(one_thread_everywhere)


@pytest.mark.slow
def test_a_group_sets_its_teacher_up_once(setup, tmp_path, monkeypatch):
    """The candidates share the teacher checkpoint: the group's first run prepares, compiles and
    measures it; the others train against that same module."""
    from helper.engine import trainer as trainer_module
    data, path_t = setup
    compiled, measured, used = [], [], []
    monkeypatch.setattr(trainer_module, 'compile_modules', lambda *a, **k: None)
    monkeypatch.setattr(trainer_module, 'compile_teacher', lambda device, teacher, graphs=True: compiled.append(teacher))
    real_validate, real_init = trainer_module.validate, Trainer.__init__

    def validate(model, *a, **k):
        result = real_validate(model, *a, **k)
        if any(model is t for t in used):
            measured.append(model)
        return result

    def init(self, *a, **k):
        real_init(self, *a, **k)
        used.append(self.teacher)
    monkeypatch.setattr(trainer_module, 'validate', validate)
    monkeypatch.setattr(Trainer, '__init__', init)
    summaries = cotrain.cotrain([cand(data, tmp_path, path_t, c, '--epochs', '1', '--compile') for c in COMPS])
    assert len(used) == 3 and all(t is used[0] for t in used)  # one module for the whole group
    assert compiled == [used[0]] and measured == [used[0]]  # compiled once, its accuracy measured once
    assert len({s['teacher_acc'] for s in summaries}) == 1 and summaries[0]['teacher_acc'] is not None
    assert all(s['status'] == 'finished' for s in summaries)
