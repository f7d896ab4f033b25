"""DKD, DIST and logit standardization against the authors' own code: every case of
tests/fixtures/golden_logit_losses.pt (mdistiller DKD.py, image_classification_sota dist_kd.py,
logit-standardization-KD KD.py/DKD.py) at rtol 1e-4; the options they bring; the recipes."""
import glob
import json
import math
import os
import re

import pytest
import torch

from conftest import FIXTURES, ROOT
from distiller_zoo import METHODS, build_distiller, dist_loss, dkd_loss, standardize
from distiller_zoo.dist import inter_class_relation, intra_class_relation
from distiller_zoo.dkd import warmup_factor
from helper.errors import UsageError
from distiller_zoo.base import DistillKL
from helper.engine.options import finalize, run_name, student_parser
from helpers_data import load_weights_only, parse_student, student_args
import search
from train_student import train_student

GOLDEN = torch.load(os.path.join(FIXTURES, 'golden_logit_losses.pt'), weights_only=True)
SETS = sorted(GOLDEN['inputs'])
CASES = sorted(GOLDEN['cases'])
PATH_T = 'x/resnet110_vanilla/ckpt.pth'


def compute(case, s, t, target):
    """The case's value from our functions, with the hyper-parameters the case records."""
    c = GOLDEN['cases'][case]
    method = c['method']
    if method == 'dkd':
        if c.get('logit_stand'):
            s, t = standardize(s), standardize(t)
        loss = dkd_loss(s, t, target, c['alpha'], c['beta'], c['T'])
        return loss * warmup_factor(c['epoch'], c['warmup']) if 'warmup' in c else loss
    if method == 'dist':
        return dist_loss(s, t, c['beta'], c['gamma'], c['tau'])
    if method in ('dist_inter', 'dist_intra'):
        relation = inter_class_relation if method == 'dist_inter' else intra_class_relation
        return relation(torch.softmax(s / c['tau'], 1), torch.softmax(t / c['tau'], 1))
    if method == 'kd':
        return c.get('kd_weight', 1.0) * DistillKL(c['T'], standardize=bool(c['logit_stand']))(s, t)
    raise KeyError(case)


def test_the_fixture_has_the_published_cases():
    assert len(SETS) * len(CASES) == 66 and SETS == ['b64', 'b64_corr', 'b8']
    assert {c['method'] for c in GOLDEN['cases'].values()} == {'dkd', 'dist', 'dist_inter', 'dist_intra', 'kd'}


@pytest.mark.parametrize('case', CASES)
@pytest.mark.parametrize('which', SETS)
def test_golden_case(which, case):
    inputs = GOLDEN['inputs'][which]
    value = compute(case, inputs['s_logit'], inputs['t_logit'], inputs['target'])
    assert value.dtype == torch.float32 and value.shape == ()
    assert value.item() == pytest.approx(GOLDEN['expected'][which][case], rel=1e-4)


@pytest.mark.parametrize('which', SETS)
def test_golden_cases_in_float64(which):
    inputs = {k: (v.double() if v.is_floating_point() else v) for k, v in GOLDEN['inputs'][which].items()}
    for case in CASES:
        value = compute(case, inputs['s_logit'], inputs['t_logit'], inputs['target'])
        assert value.item() == pytest.approx(GOLDEN['expected_float64'][which][case], rel=1e-5), case


@pytest.mark.parametrize('which', SETS)
def test_standardize_matches_the_published_normalize(which):
    inputs, expected = GOLDEN['inputs'][which], GOLDEN['expected_tensors'][which]
    torch.testing.assert_close(standardize(inputs['s_logit']), expected['ls_normalize_s'], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(standardize(inputs['t_logit']), expected['ls_normalize_t'], rtol=1e-4, atol=1e-6)


def method_opt(distill, *argv):
    return finalize(student_parser().parse_args(['--path_t', PATH_T, '--distill', distill, *argv]), 'student')


def method_value(opt, inputs, epoch=None):
    """The method's own term and its KD term (both unweighted) on a set's logits, through the real classes."""
    method = build_distiller(opt.distill, opt, [], [], 0)
    batch = {'target': inputs['target']}
    terms = method.loss_terms([], inputs['s_logit'], [], inputs['t_logit'], batch, 1 if epoch is None else epoch)
    return terms.get('method', torch.zeros(())), terms['kd']


@pytest.mark.parametrize('argv, case, epoch', [
    ([], 'dkd_a1_b8_T4_epoch5_warmup20', 5),                      # published defaults
    ([], 'dkd_a1_b8_T4', 20),
    (['--dkd_beta', '2'], 'dkd_a1_b2_T4', 21),
    (['--dkd_beta', '6', '--dkd_T', '4', '--kd_T', '1'], 'dkd_a1_b6_T4_epoch5_warmup20', 5),
    (['--logit_stand', '-b', '1'], 'dkd_ls_a1_b8_T2', 40),
])
def test_dkd_unit_reproduces_the_published_forward(argv, case, epoch):
    opt = method_opt('dkd', *argv)
    for which in SETS:
        loss, _ = method_value(opt, GOLDEN['inputs'][which], epoch)
        assert loss.item() == pytest.approx(GOLDEN['expected'][which][case], rel=1e-4), which


def test_dkd_ls_published_defaults_weigh_like_the_authors():
    """--logit_stand with everything omitted: LS's kd weight 9 on DKD(1, 8) at base temperature 2,
    i.e. its DKD(alpha 9, beta 72, T 2), warmed up over 20 epochs."""
    opt = method_opt('dkd', '--logit_stand')
    assert (opt.gamma, opt.alpha, opt.beta, opt.kd_T, opt.dkd_T) == (1, 0, 9, 2, 2)
    for which in SETS:
        loss, _ = method_value(opt, GOLDEN['inputs'][which], 5)
        assert opt.beta * loss.item() == pytest.approx(
            GOLDEN['expected'][which]['dkd_ls_a9_b72_T2_epoch5_warmup20'], rel=1e-4)
    # resnet56 -> resnet20: base temp 3, kd weight 18, BETA 2
    opt = method_opt('dkd', '--logit_stand', '--kd_T', '3', '-b', '18', '--dkd_beta', '2')
    for which in SETS:
        loss, _ = method_value(opt, GOLDEN['inputs'][which], 20)
        assert opt.beta * loss.item() == pytest.approx(GOLDEN['expected'][which]['dkd_ls_a18_b36_T3'], rel=1e-4)


def test_dist_unit_at_the_published_cifar_setting():
    opt = method_opt('dist')
    assert (opt.gamma, opt.alpha, opt.beta, opt.dist_beta, opt.dist_gamma, opt.dist_tau) == (1, 0, 2, 1, 1, 4)
    for which in SETS:
        loss, _ = method_value(opt, GOLDEN['inputs'][which])
        assert opt.beta * loss.item() == pytest.approx(GOLDEN['expected'][which]['dist_b2_g2_tau4'], rel=1e-4)
    opt = method_opt('dist', '--dist_tau', '1')
    loss, _ = method_value(opt, GOLDEN['inputs']['b8'])
    assert loss.item() == pytest.approx(GOLDEN['expected']['b8']['dist_b1_g1_tau1'], rel=1e-4)


def test_kd_logit_stand_through_the_step():
    opt = method_opt('kd', '--logit_stand')
    assert (opt.gamma, opt.alpha, opt.beta, opt.kd_T) == (0.1, 9, 0, 2)
    for which in SETS:
        _, kd = method_value(opt, GOLDEN['inputs'][which])
        assert opt.alpha * kd.item() == pytest.approx(GOLDEN['expected'][which]['kd_ls_T2_w9'], rel=1e-4)
    plain = method_opt('kd', '--kd_T', '2')
    assert (plain.alpha, plain.kd_T) == (0.9, 2)
    _, kd = method_value(plain, GOLDEN['inputs']['b8'])
    assert kd.item() == pytest.approx(GOLDEN['expected']['b8']['kd_T2'], rel=1e-4)


def test_warmup_counts_epochs_from_one():
    assert [warmup_factor(e, 20) for e in (1, 5, 20, 21)] == [0.05, 0.25, 1.0, 1.0]
    method = build_distiller('dkd', method_opt('dkd', '--dkd_warmup', '4'), [], [], 0)
    assert method.warmup_scale(1) == 0.25   # epoch 1
    assert method.warmup_scale(torch.tensor(3.0)).item() == 0.75   # the trainer's tensor epoch
    assert 'warmup_scale' not in method.state_dict()   # set from the epoch, also on --resume


def test_dkd_and_dist_gradients_reach_the_student_only():
    torch.manual_seed(0)
    s = torch.randn(6, 10, requires_grad=True)
    t = torch.randn(6, 10, requires_grad=True)
    target = torch.randint(0, 10, (6,))
    for distill in ('dkd', 'dist'):
        method = build_distiller(distill, method_opt(distill), [], [], 0)
        s.grad = t.grad = None
        method.loss_terms([], s, [], t, {'target': target})['method'].backward()
        assert s.grad.abs().sum() > 0 and t.grad is None


@pytest.mark.parametrize('argv, message', [
    (['--distill', 'crd', '--logit_stand'], '--logit_stand works with --distill kd or dkd'),
    (['--distill', 'kd', '--dkd_beta', '2'], '--dkd_beta is a flag of --distill dkd, not kd'),
    (['--distill', 'dkd', '--dist_tau', '2'], '--dist_tau is a flag of --distill dist, not dkd'),
    (['--distill', 'dkd', '--dkd_warmup', '0'], '--dkd_warmup must be positive'),
    (['--distill', 'dist', '--dist_tau', '-1'], '--dist_tau must be positive'),
])
def test_unsupported_combinations_are_one_line_errors(argv, message):
    with pytest.raises(UsageError, match=re.escape(message)) as err:
        finalize(student_parser().parse_args(['--path_t', PATH_T, *argv]), 'student')
    assert '\n' not in str(err.value)


def test_given_weights_and_flags_are_kept():
    opt = method_opt('dkd', '-r', '0.5', '-a', '0.1', '-b', '3', '--dkd_alpha', '2', '--dkd_T', '3')
    assert (opt.gamma, opt.alpha, opt.beta, opt.dkd_alpha, opt.dkd_beta, opt.dkd_T, opt.kd_T) == (0.5, 0.1, 3, 2, 8, 3, 4)
    assert method_opt('crd').kd_T == 4 and method_opt('crd').dkd_beta is None


def test_run_folders_tell_the_settings_apart():
    names = {run_name(method_opt(*argv), 'student') for argv in (
        ['kd'], ['kd', '--logit_stand'], ['dkd'], ['dkd', '--dkd_beta', '2'], ['dkd', '--logit_stand'],
        ['dist'], ['dist', '--dist_tau', '1'])}
    assert len(names) == 7 and all(':' not in n for n in names)
    assert '_dkd-a1-b8-T4-w20_' in run_name(method_opt('dkd'), 'student')
    assert '_kd-ls_' in run_name(method_opt('kd', '--logit_stand'), 'student')


def recipe_lines(name):
    """The train_student.py command lines of one scripts/train.sh case entry."""
    with open(os.path.join(ROOT, 'scripts', 'train.sh')) as f:
        text = f.read()
    body = re.search(rf'^{name}\)(.*?);;', text, re.S | re.M).group(1)
    return [line.split('train_student.py', 1)[1].split() for line in body.splitlines() if 'train_student.py' in line]


def flag(argv, name, default=None):
    return float(argv[argv.index(name) + 1]) if name in argv else default


def test_recipes_carry_the_authors_per_pair_values():
    """Every pair in logit_methods.json with a published setting has its line, with its numbers."""
    with open(os.path.join(FIXTURES, 'logit_methods.json')) as f:
        pairs = json.load(f)['pairs']

    def lines_for(recipe):
        out = {}
        for argv in recipe_lines(recipe):
            path_t = argv[argv.index('--path_t') + 1]
            teacher = re.search(r'cifar100/(.+)_vanilla', path_t.replace('$CK/', 'cifar100/')).group(1)
            out[(teacher, argv[argv.index('--model_s') + 1])] = argv
        return out

    recipes = {r: lines_for(r) for r in ('dkd', 'dist', 'kd_ls', 'dkd_ls')}
    for p in pairs:
        key = (p['teacher'], p['student'])
        dkd, ls_kd, ls_dkd, dist = p['dkd'], p['ls_kd'], p['ls_dkd'], p['dist']
        assert (key in recipes['dkd']) == dkd['reported'], key
        if dkd['reported']:
            argv = recipes['dkd'][key]
            assert flag(argv, '--dkd_beta', 8) == dkd['beta']['value'], key
            assert flag(argv, '--dkd_alpha', 1) == dkd['alpha']['value']
            assert flag(argv, '-b', 1) == 1 and flag(argv, '-r', 1) == dkd['ce_weight']['value']
        assert (key in recipes['kd_ls']) == ls_kd['reported'], key
        if ls_kd['reported']:
            argv, eff = recipes['kd_ls'][key], ls_kd['effective']
            assert '--logit_stand' in argv
            assert (flag(argv, '--kd_T', 2), flag(argv, '-a', 9), flag(argv, '-r', 0.1)) == \
                (eff['T'], eff['kd_loss_weight'], eff['ce_weight']), key
        assert (key in recipes['dkd_ls']) == ls_dkd['reported'], key
        if ls_dkd['reported']:
            argv, eff = recipes['dkd_ls'][key], ls_dkd['effective']
            weight = flag(argv, '-b', 9)
            assert '--logit_stand' in argv and flag(argv, '--kd_T', 2) == eff['T'], key
            assert (weight * flag(argv, '--dkd_alpha', 1), weight * flag(argv, '--dkd_beta', 8)) == \
                (eff['alpha'], eff['beta']), key
        assert key in recipes['dist']   # one published CIFAR config for every pair
        argv = recipes['dist'][key]
        assert (flag(argv, '-b', 2), flag(argv, '--dist_tau', 4)) == \
            (dist['kd_loss_weight']['value'], dist['tau']['value'])
    for recipe in recipes.values():
        for argv in recipe.values():   # every line parses to the values it names
            finalize(student_parser().parse_args(argv), 'student')


# ---------------------------------------------------------------- end to end (tiny CIFAR-layout data)

@pytest.mark.slow
@pytest.mark.parametrize('distill', ['kd', 'dkd'])
def test_logit_stand_trains_with_mc(data, teacher, tmp_path, distill):
    argv = student_args(data, str(tmp_path), teacher, distill, 'myresnet8', '--mc', '1', '--logit_stand')
    summary = train_student(parse_student(argv))
    opt = summary['options']
    assert summary['status'] == 'finished' and opt['logit_stand'] is True and summary['mc'] == 1
    assert opt['kd_T'] == 2 and summary['run_dir'].rsplit('_id-', 1)[0].endswith('-ls_mc-0.001_r-' + (
        '0.1_a-9_b-0_1' if distill == 'kd' else '1_a-0_b-9_1'))
    row = load_weights_only(os.path.join(summary['run_dir'], 'myresnet8_last.pth'))['history'][0]
    r, a, b = opt['gamma'], opt['alpha'], opt['beta']
    # kd has no term of its own: its log has no loss_method column
    assert {k for k in row if k.startswith('loss_')} == {'loss_ce', 'loss_kd', 'loss_mc'} | \
        ({'loss_method'} if distill == 'dkd' else set())
    total = r * row['loss_ce'] + a * row['loss_kd'] + b * (row.get('loss_method', 0.0) + 0.001 * row['loss_mc'])
    assert row['train_loss'] == pytest.approx(total, rel=1e-5)
    assert row['loss_mc'] > 0 and (row.get('loss_method', 0.0) > 0) == (distill == 'dkd')


@pytest.mark.slow
def test_the_loop_tells_dkd_each_epoch(data, teacher, tmp_path, monkeypatch):
    from distiller_zoo.dkd import DKDMethod
    seen = []
    original = DKDMethod.method_terms

    def record(self, *args):
        epoch = int(args[-1])
        if epoch not in seen:
            seen.append(epoch)
        return original(self, *args)
    monkeypatch.setattr(DKDMethod, 'method_terms', record)
    argv = student_args(data, str(tmp_path), teacher, 'dkd', 'resnet8', '--epochs', '3', '--dkd_warmup', '2')
    assert train_student(parse_student(argv))['status'] == 'finished'
    assert seen == [1, 2, 3]


@pytest.mark.slow
@pytest.mark.parametrize('argv', [['dkd', '--logit_stand', '--mc', '1', '--epochs', '2'], ['dist', '--mc', '1']],
                         ids=['dkd-ls-mc-2epochs', 'dist-mc'])
def test_new_methods_under_fast(data, teacher, tmp_path, argv):
    """--fast --compile compiles the whole step on the CPU too: DKD's warm-up changes between epochs,
    and --logit_stand runs in the step's KD term as well as in DKD."""
    distill, *extra = argv
    model_s = 'myresnet8' if '--mc' in extra else 'resnet8'
    summary = train_student(parse_student(student_args(data, str(tmp_path), teacher, distill, model_s,
                                                       '--fast', '--compile', *extra)))
    assert summary['status'] == 'finished' and summary['options']['fast'] is True
    history = load_weights_only(os.path.join(summary['run_dir'], f'{model_s}_last.pth'))['history']
    assert len(history) == summary['epochs'] and all(math.isfinite(v) for row in history for v in row.values())


@pytest.mark.slow
def test_search_runs_bcs_with_dkd_and_mc(data, teachers, tmp_path):
    deep_teacher = teachers('wrn_40_1')
    argv = student_args(data, str(tmp_path), deep_teacher, 'dkd', 'myresnet14', '--block_depth', '2,2,2',
                        '--mc', '1')
    assert search.main(argv) == 0
    with open(glob.glob(os.path.join(str(tmp_path), 'search', 'BCS_*', 'search.json'))[0]) as f:
        result = json.load(f)
    assert len(result['candidates']) == 3 and result['status'] == 'finished'
    for c in result['candidates']:
        with open(os.path.join(c['run_dir'], 'summary.json')) as f:
            summary = json.load(f)
        assert (summary['distill'], summary['mc'], summary['options']['dkd_beta']) == ('dkd', 1, 8)
