"""Where a published CRD-EMKD number depends on it, this project behaves as CRD-EMKD's code does.

The published values come from CRD-EMKD's own files (EMKD-code/EMKD-pytorch-master, folder
CRD-EMKD/): its scripts (tests/fixtures/crd_emkd_scripts.json holds every command of
scripts/train.sh and scripts/search.sh), train_student.py's parser (-r 1, --B*_weight 1.0),
helper/pretrain.py (FT's init learning rate) and train_student.py's block_weight (MC weights).
Model shapes and transforms are checked in test_models.py and test_data.py.
"""
import json
import os
import subprocess

import pytest

import models
from distiller_zoo import METHODS
from distiller_zoo.mc import mc_stage_count, mc_weights, stage_weight_flags
from helper.errors import UsageError
from helper.engine.options import finalize, run_name, student_parser
from helpers_data import ROOT
from test_cli import SEED_README, commands_in

FIXTURES = os.path.join(ROOT, 'tests', 'fixtures')
PUBLISHED = json.load(open(os.path.join(FIXTURES, 'crd_emkd_scripts.json')))
TEACHER = './checkpoints/cifar100/resnet110_vanilla/ckpt_epoch_240.pth'

# CRD-EMKD scripts/train.sh: --mc_weight of each method's MC line
PUBLISHED_MC_WEIGHT = {'attention': 1e-4, 'similarity': 1e-5, 'pkt': 1e-6}
# CRD-EMKD helper/pretrain.py: students whose FT paraphraser trains at lr 0.01
FT_INIT_001 = {'resnet8', 'resnet14', 'resnet20', 'resnet32', 'resnet44', 'resnet56', 'resnet110',
               'resnet8x4', 'resnet32x4', 'wrn_16_1', 'wrn_16_2', 'wrn_40_1', 'wrn_40_2'}


def student(argv):
    return finalize(student_parser().parse_args(argv), 'student')


def weights(argv):
    opt = student(['--path_t', TEACHER] + argv)
    return opt.gamma, opt.alpha, opt.beta


# ---- -r/-a/-b ------------------------------------------------------------------------------

def test_gamma_is_one_when_a_or_b_is_given():
    assert weights(['--distill', 'kd', '-a', '0', '-b', '0.8']) == (1.0, 0.0, 0.8)
    assert weights(['--distill', 'kd', '-a', '0.9']) == (1.0, 0.9, 0.0)  # -b: KD's published 0
    assert weights(['--distill', 'crd', '-b', '0.5']) == (1.0, 0.0, 0.5)
    assert weights(['--distill', 'kd', '-r', '0.1', '-a', '0.9', '-b', '0']) == (0.1, 0.9, 0.0)


def test_all_three_omitted_take_the_methods_published_triple():
    assert weights(['--distill', 'kd']) == (0.1, 0.9, 0.0)
    assert weights(['--distill', 'attention']) == (1.0, 0.0, 1000.0)
    assert weights(['--distill', 'kd', '-r', '0.5']) == (0.5, 0.9, 0.0)


def test_seed_readme_commands_train_with_gamma_one(capsys):
    with open(SEED_README) as f:
        found = [argv for script, argv in commands_in(f.read())]
    assert len(found) == 3
    for argv in found:
        opt = finalize(student_parser().parse_args(argv), 'student')
        assert (opt.gamma, opt.alpha, opt.beta) == (1.0, 0.0, 0.8), argv


@pytest.mark.parametrize('line', PUBLISHED['train'] + PUBLISHED['search'], ids=lambda c: c['recipe'])
def test_published_script_lines_resolve_as_published(line):
    argv = line['argv']
    opt = student(argv)
    assert opt.gamma == 1.0  # the published parser default; no line gives -r
    assert (opt.alpha, opt.beta) == (float(argv[argv.index('-a') + 1]), float(argv[argv.index('-b') + 1]))
    assert opt.mc_weight == (float(argv[argv.index('--mc_weight') + 1]) if '--mc_weight' in argv else 0.001)


# ---- scripts/train.sh and scripts/search.sh ----------------------------------------------------

def script_commands(script, *args):
    """The python argv lines a script would run, with `python` replaced by echo."""
    out = subprocess.run(['bash', os.path.join(ROOT, 'scripts', script), *args], capture_output=True,
                         text=True, timeout=60, env=dict(os.environ, PYTHON='echo'))
    assert out.returncode == 0, out.stderr
    return [line.split() for line in out.stdout.splitlines() if not line.startswith('+ ')]


@pytest.mark.slow
def test_train_sh_all_is_crd_emkds_train_sh_line_for_line():
    got = script_commands('train.sh', 'all')
    want = [[line['script']] + line['argv'] for line in PUBLISHED['train']]
    assert got == want
    assert len(want) == 26  # 13 methods, alone on resnet20 and with MC on myresnet20 3,7,2


@pytest.mark.slow
@pytest.mark.parametrize('script', ['train', 'search'])
def test_every_published_recipe_runs_by_name(script):
    for line in PUBLISHED[script]:
        assert script_commands(f'{script}.sh', line['recipe']) == [[line['script']] + line['argv']]


@pytest.mark.slow
def test_extra_recipes_and_bad_names():
    (kd,) = script_commands('train.sh', 'kd_repdistiller')
    assert kd[kd.index('-r') + 1:kd.index('-r') + 6] == ['0.1', '-a', '0.9', '-b', '0']
    out = subprocess.run(['bash', os.path.join(ROOT, 'scripts', 'train.sh'), 'attention_mcc'],
                         capture_output=True, text=True, timeout=60, env=dict(os.environ, PYTHON='echo'))
    assert out.returncode == 2 and 'attention_mc' in out.stderr and out.stdout == ''


def test_published_mc_weights_per_method():
    for line in PUBLISHED['train']:
        argv = line['argv']
        if '--mc' not in argv:
            continue
        method = argv[argv.index('--distill') + 1]
        assert float(argv[argv.index('--mc_weight') + 1]) == PUBLISHED_MC_WEIGHT.get(method, 1e-3)
        assert argv[argv.index('--model_s') + 1] == 'myresnet20'
        assert argv[argv.index('--block_depth') + 1] == '3,7,2'
        assert float(argv[argv.index('-b') + 1]) != 0  # MC sits inside -b


# ---- FT init learning rate ----------------------------------------------------------------------

@pytest.mark.parametrize('model_s', sorted(models.model_dict))
def test_ft_init_lr(model_s):
    import argparse
    opt = argparse.Namespace(model_s=model_s, learning_rate=0.05)
    assert METHODS['factor'].init_lr(None, opt) == (0.01 if model_s in FT_INIT_001 else 0.05)


# ---- MC stage weights ---------------------------------------------------------------------------

def test_b_weights_set_fixed_depth_students():
    opt = student(['--path_t', TEACHER, '--model_s', 'resnet20', '--distill', 'crd', '--mc', '1',
                   '--B1_weight', '2', '--B3_weight', '0.5'])
    assert mc_weights(opt.model_s, opt.block_depth, 3, stage_weight_flags(opt)) == [2.0, 1.0, 0.5]
    assert '_B-2-1-0.5-1_' in run_name(opt, 'student')
    opt = student(['--path_t', TEACHER, '--model_s', 'ResNet18', '--mc', '1', '--B4_weight', '3'])
    n = mc_stage_count(opt.model_s)
    assert n == 4 and mc_weights(opt.model_s, None, n, stage_weight_flags(opt)) == [1.0, 1.0, 1.0, 3.0]
    default = student(['--path_t', TEACHER, '--model_s', 'resnet20', '--mc', '1'])
    assert [default.B1_weight, default.B2_weight, default.B3_weight, default.B4_weight] == [1.0] * 4
    assert '_B-' not in run_name(default, 'student')


def test_variable_depth_students_take_weights_from_block_depth():
    opt = student(['--path_t', TEACHER, '--model_s', 'myresnet20', '--block_depth', '3,7,2', '--mc', '1'])
    assert mc_weights(opt.model_s, opt.block_depth, 3, stage_weight_flags(opt)) == \
        pytest.approx([3 / 3, 3 / 7, 3 / 2])
    opt = student(['--path_t', TEACHER, '--model_s', 'myResNet18', '--block_depth', '2,2,6,1', '--mc', '1'])
    assert mc_weights(opt.model_s, opt.block_depth, 4, stage_weight_flags(opt)) == \
        pytest.approx([1, 1, 2 / 6, 2])
    with pytest.raises(UsageError, match='--B2_weight: myresnet20 takes its MC stage weights from --block_depth'):
        student(['--path_t', TEACHER, '--model_s', 'myresnet20', '--mc', '1', '--B2_weight', '2'])
