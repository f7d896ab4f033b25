"""DOT against mdistiller's own optimizer: tests/fixtures/golden_dot.pt (copied unchanged from the
reference) holds 6 steps of a Linear student and a connector used by the distillation term alone;
every parameter after every step must match, straight through and across a checkpoint."""
import io
import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from distiller_zoo.base import DistillKL
from helper.engine.dot import DOT, split_losses
from helper.errors import UsageError


@pytest.fixture(scope='module')
def golden():
    return torch.load('tests/fixtures/golden_dot.pt', weights_only=True)


def build(golden):
    student, connector = nn.Linear(12, 5), nn.Linear(5, 5)
    named = {'student': student, 'connector': connector}
    with torch.no_grad():
        for key, value in golden['init'].items():
            module, attr = key.split('.')
            getattr(named[module], attr).copy_(value)
    s = golden['settings']
    params = list(student.parameters()) + list(connector.parameters())
    opt = DOT(params, lr=s['lr'], momentum=s['momentum'], delta=s['delta'], weight_decay=s['weight_decay'])
    return named, opt


def run_step(named, opt, batch, kd_T):
    logit = named['student'](batch['x'])
    loss_ce = F.cross_entropy(logit, batch['y'])
    loss_kd = DistillKL(kd_T)(logit, batch['t_logit']) + F.mse_loss(named['connector'](logit), batch['t_feat'])
    opt.zero_grad(set_to_none=True)
    loss_kd.backward(retain_graph=True)
    opt.keep_distill_grads()
    opt.zero_grad(set_to_none=True)
    loss_ce.backward()
    opt.step()
    return loss_ce.item(), loss_kd.item()


def check(named, golden, i, losses):
    expected = golden['trajectory'][i]
    assert losses == pytest.approx((expected['loss_ce'], expected['loss_kd']), rel=1e-6)
    for key, value in expected['params'].items():
        module, attr = key.split('.')
        torch.testing.assert_close(getattr(named[module], attr).detach(), value, rtol=1e-6, atol=1e-7,
                                   msg=f'{key} after step {i}')


def test_dot_reproduces_the_published_trajectory(golden):
    named, opt = build(golden)
    assert golden['settings']['momentum_task'] == pytest.approx(0.825)
    assert opt.param_groups[0]['momentum_task'] == pytest.approx(golden['settings']['momentum_task'])
    assert opt.param_groups[0]['momentum_kd'] == pytest.approx(golden['settings']['momentum_kd'])
    for i, batch in enumerate(golden['steps']):
        check(named, golden, i, run_step(named, opt, batch, golden['settings']['kd_T']))


def test_dot_resumes_both_momenta_from_a_checkpoint(golden):
    named, opt = build(golden)
    for i in range(3):
        run_step(named, opt, golden['steps'][i], golden['settings']['kd_T'])
    buf = io.BytesIO()
    torch.save({'model': {k: m.state_dict() for k, m in named.items()}, 'optimizer': opt.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    state = ckpt['optimizer']['state']
    assert all({'momentum_buffer', 'momentum_kd_buffer'} <= set(state[i]) for i in (0, 1))  # student: both
    assert all(set(state[i]) == {'momentum_kd_buffer'} for i in (2, 3))                    # connector
    fresh, opt2 = build(golden)
    for k, m in fresh.items():
        m.load_state_dict(ckpt['model'][k])
    opt2.load_state_dict(ckpt['optimizer'])
    for i in range(3, 6):
        check(fresh, golden, i, run_step(fresh, opt2, golden['steps'][i], golden['settings']['kd_T']))


def test_dot_task_only_parameter_uses_the_mean_momentum():
    p = nn.Parameter(torch.zeros(1))
    opt = DOT([p], lr=1.0, momentum=0.9, delta=0.1, weight_decay=0.0)
    for _ in range(2):
        p.grad = None
        opt.keep_distill_grads()   # no distillation gradient
        p.grad = torch.ones(1)
        opt.step()
    # buffer 1, then 0.9 * 1 + 1 (the mean of 0.8 and 1.0)
    assert p.item() == pytest.approx(-(1 + 1.9))


def test_split_losses_keeps_ce_alone_and_drops_zero_weights():
    names = ('loss', 'ce', 'kd', 'method', 'mc')
    terms = torch.tensor([0.0, 2.0, 3.0, 5.0, 7.0])
    task, distill = split_losses(terms, names, {'ce': 0.5, 'kd': 0.0, 'method': 2.0, 'mc': 0.1})
    assert task.item() == 1.0 and distill.item() == pytest.approx(10.7)
    assert split_losses(terms, names, {'ce': 1.0, 'kd': 0.0})[1] is None


def test_dot_delta_beyond_momentum_is_refused():
    with pytest.raises(UsageError, match='--dot_delta must be between 0 and --momentum'):
        DOT([nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.05, delta=0.075)


# ---------------------------------------------------------------- in training runs

def test_dot_without_a_distillation_term_is_a_one_line_error(data, teacher, tmp_path, capsys):
    from helper.engine.options import teacher_parser
    from helper.engine.run import main
    from helpers_data import student_args, teacher_args, tree
    argv = teacher_args(data, str(tmp_path), 'resnet8', '--optimizer', 'dot')
    assert main('teacher', teacher_parser(), argv) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'a teacher trains CE alone: there is no distillation term' in err
    from helper.engine.options import student_parser
    argv = student_args(data, str(tmp_path), teacher, 'kd', 'resnet8', '--optimizer', 'dot', '-a', '0', '-b', '0')
    assert main('student', student_parser(), argv) == 2
    assert '-a and -b are 0 for kd: there is no distillation term' in capsys.readouterr().err
    argv = student_args(data, str(tmp_path), teacher, 'kd', 'resnet8', '--optimizer', 'dot', '--dot_delta', '0.95')
    assert main('student', student_parser(), argv) == 2
    assert '--dot_delta must be between 0 and --momentum (0.9), got 0.95' in capsys.readouterr().err
    argv = student_args(data, str(tmp_path), teacher, 'kd', 'resnet8', '--dot_delta', '0.1')
    assert main('student', student_parser(), argv) == 2
    assert capsys.readouterr().err == 'error: --dot_delta is a flag of --optimizer dot\n'
    assert tree(str(tmp_path)) == {}


@pytest.mark.slow
def test_dot_run_keeps_both_momenta_and_differs_from_sgd(data, teacher, tmp_path):
    from helpers_data import load_weights_only, parse_student, student_args
    from train_student import train_student
    runs = {}
    for name, extra in (('sgd', ()), ('dot', ('--optimizer', 'dot'))):
        argv = student_args(data, str(tmp_path), teacher, 'kd', 'myresnet8', '--block_depth', '1,1,1', '--mc', '1',
                            *extra)
        summary = train_student(parse_student(argv))
        assert summary['status'] == 'finished'
        runs[name] = load_weights_only(os.path.join(summary['run_dir'], 'myresnet8_last.pth'))
    assert '_dot-0.075_' in os.path.basename(summary['run_dir'])
    state = runs['dot']['optimizer']['state']
    # student parameters get both gradients (CE; KD and MC): both buffers
    assert state and all({'momentum_buffer', 'momentum_kd_buffer'} <= set(s) for s in state.values())
    assert runs['dot']['optimizer']['param_groups'][0]['momentum_task'] == pytest.approx(0.825)
    assert not any('momentum_kd_buffer' in s for s in runs['sgd']['optimizer']['state'].values())
    assert not all(torch.equal(runs['sgd']['model'][k], v) for k, v in runs['dot']['model'].items())


@pytest.mark.slow
@pytest.mark.parametrize('distill, extra', [('kd', ('--optimizer', 'dot')), ('reviewkd', ()), ('ofd', ())])
def test_fast_path_runs_dot_reviewkd_and_ofd(data, teacher, tmp_path, capsys, distill, extra):
    """--fast --compile (compiled, device-side data, channels-last; a run this short would not compile with
    --fast alone) trains them; DOT compiles without CUDA graphs (two backward passes per forward) and
    refuses --step_graph in one line."""
    from helper.engine.options import student_parser
    from helper.engine.run import main
    from helpers_data import parse_student, student_args
    from train_student import train_student
    summary = train_student(parse_student(student_args(data, str(tmp_path), teacher, distill, 'resnet8', '--fast',
                                                       '--compile', *extra)))
    assert summary['status'] == 'finished' and summary['options']['compile'] is True
    assert 0 <= summary['last_acc'] <= 100
    if extra:
        argv = student_args(data, str(tmp_path / 'g'), teacher, distill, 'resnet8', '--step_graph', *extra)
        assert main('student', student_parser(), argv) == 2
        assert '--optimizer dot takes two backward passes per step, which --step_graph cannot capture' in \
            capsys.readouterr().err


def test_train_sh_dot_recipes_are_mdistillers():
    """KD + DOT as mdistiller's configs set it: delta 0.075 on CIFAR-100 (KD CE 0.1, KD 0.9, T 4),
    0.09 on ImageNet (its KD recipe: CE 0.5, KD 0.5, T 1)."""
    from helper.engine.options import finalize, student_parser
    from test_cli import commands_in
    with open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'scripts', 'train.sh')) as f:
        found = [finalize(student_parser().parse_args(argv), 'student') for script, argv in commands_in(f.read())
                 if script == 'train_student' and '--optimizer' in argv]
    cifar = {(o.model_t, o.model_s) for o in found if o.dataset == 'cifar100' and not o.mc}
    assert cifar == {('resnet32x4', 'resnet8x4'), ('vgg13', 'vgg8'), ('resnet32x4', 'ShuffleV2')}
    for o in found:
        assert o.optimizer == 'dot' and o.distill == 'kd' and o.momentum == 0.9
        if o.dataset == 'imagenet':
            assert (o.dot_delta, o.gamma, o.alpha, o.kd_T) == (0.09, 0.5, 0.5, 1.0)
        else:
            assert (o.dot_delta, o.gamma, o.alpha, o.kd_T) == (0.075, 0.1, 0.9, 4.0)
            assert o.learning_rate == (0.01 if o.model_s == 'ShuffleV2' else 0.05)
    assert len([o for o in found if o.dataset == 'imagenet']) == 2


def test_dot_refuses_fp16_scaling_and_step_graph():
    import argparse
    from helper.engine.dot import check_dot_speed_flags
    plain = argparse.Namespace(step_graph=False)
    check_dot_speed_flags(plain, torch.amp.GradScaler('cpu', enabled=False))
    with pytest.raises(UsageError, match=r'^--optimizer dot needs bf16 or fp32: .*drop --amp \(--fast turns it on\)$'):
        check_dot_speed_flags(plain, torch.amp.GradScaler('cpu', enabled=True))
    with pytest.raises(UsageError, match='cannot capture; drop --step_graph$'):
        check_dot_speed_flags(argparse.Namespace(step_graph=True), torch.amp.GradScaler('cpu', enabled=False))
