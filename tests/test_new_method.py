"""A new method is one file: added to a copy of distiller_zoo/ with nothing else edited, it shows in
--help, trains, resumes, gets milestone checking at -b times --mc_weight, and its own option is part
of the run's identity. The method names its term 'pull', not 'method'."""
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from distiller_zoo import METHODS, Option, method_options
from helper.errors import UsageError
from helper.engine.options import RESULT_OPTIONS, differing_option, student_parser
from helpers_data import ROOT

METHOD_FILE = '''
"""A feature method of one file: the student's pooled vector, through a trainable linear map,
pulled towards the teacher's, scaled by --mymethod_p."""
import torch.nn.functional as F
from torch import nn

from distiller_zoo.base import Distiller, Option


class MyMethod(Distiller):
    name = 'mymethod'
    paper = 'Nobody et al., 2026, A Method in One File'
    gamma, alpha, beta = 1.0, 0.0, 2.0
    terms = {'pull': 1.0}
    options = (Option('mymethod_p', published=0.5, check='positive', help='scale of the pull (default 0.5)'),)

    def __init__(self, opt, s_shapes, t_shapes, n_data):
        super().__init__(opt, s_shapes, t_shapes, n_data)
        self.p = opt.mymethod_p
        self.trainable['proj'] = nn.Linear(s_shapes[-1][1], t_shapes[-1][1])

    def method_terms(self, s_feats, s_logit, t_feats, t_logit, batch, epoch):
        return {'pull': self.p * F.mse_loss(self.trainable['proj'](s_feats[-1]), t_feats[-1])}
'''

# Runs in the copied tree: everything it imports is the repository's, but distiller_zoo is the copy.
DRIVER = '''
import json, signal, sys
sys.path.insert(1, 'tests')
import distiller_zoo
from helper.engine import trainer
from helper.engine.loops import Preempted
from helper.engine.options import student_parser
from helper.engine.run import main, run
from helpers_data import student_args

data, save, teacher, deep_teacher = sys.argv[1:5]
out = {'zoo': distiller_zoo.__file__, 'help': student_parser().format_help()}
argv = student_args(data, save, teacher, 'mymethod', 'resnet8', '--mc', '1', '--mymethod_p', '0.25',
                    '--epochs', '2', '--lr_decay_epochs', '1')
original = trainer.Trainer.train_epoch


def stop_after_epoch_1(self, epoch, state):
    done = original(self, epoch, state)
    if epoch == 1:
        signal.raise_signal(signal.SIGINT)
    return done


trainer.Trainer.train_epoch = stop_after_epoch_1
try:
    run(student_parser().parse_args(argv), 'student')
    out['stopped'] = False
except Preempted:
    out['stopped'] = True
trainer.Trainer.train_epoch = original
out['resumed'] = run(student_parser().parse_args(argv + ['--resume']), 'student')
changed = [a if a != '0.25' else '0.5' for a in argv]
out['changed_exit'] = main('student', student_parser(), changed + ['--resume'])
other = student_args(data, save, teacher, 'kd', 'resnet8', '--mymethod_p', '1')
out['other_exit'] = main('student', student_parser(), other)
out['bad_exit'] = main('student', student_parser(), argv[:-4] + ['--mymethod_p', '-1'])
import search   # BCS with it: myresnet14 (2,2,2) under a 6-blocks-per-stage teacher
out['search_exit'] = search.main(student_args(data, save + '_bcs', deep_teacher, 'mymethod', 'myresnet14',
                                              '--block_depth', '2,2,2', '--mc', '1', '--mymethod_p', '0.25'))
print(json.dumps(out))
'''


def copied_tree(tmp_path):
    """tmp_path/repo: links to every entry of the repository but distiller_zoo/, which is copied
    there with the new method's file added."""
    tree = tmp_path / 'repo'
    tree.mkdir()
    for entry in os.listdir(ROOT):
        if entry in ('distiller_zoo', '.git', '.venv', 'save', 'data') or entry.startswith('.'):
            continue
        os.symlink(os.path.join(ROOT, entry), tree / entry)
    shutil.copytree(os.path.join(ROOT, 'distiller_zoo'), tree / 'distiller_zoo',
                    ignore=shutil.ignore_patterns('__pycache__'))
    (tree / 'distiller_zoo' / 'mymethod.py').write_text(textwrap.dedent(METHOD_FILE))
    (tree / 'driver.py').write_text(DRIVER)
    return tree


@pytest.mark.slow
def test_a_method_with_its_own_option_is_one_file(tmp_path, data, teacher, teachers):
    tree = copied_tree(tmp_path)
    save = tmp_path / 'save'
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS='1', MKL_NUM_THREADS='1',
               CUDA_VISIBLE_DEVICES='', PYTHONDONTWRITEBYTECODE='1')
    proc = subprocess.run([sys.executable, 'driver.py', data, str(save), teacher, teachers('wrn_40_1')],
                          cwd=tree, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out['zoo'] == str(tree / 'distiller_zoo' / '__init__.py')   # the copy, not the repository's

    # --help: the method among --distill's choices with its paper, its option in its own group
    assert 'mymethod (Nobody et al., 2026)' in out['help']
    assert '--distill mymethod (My):' in out['help'] and '--mymethod_p MYMETHOD_P' in out['help']

    # trained, stopped after epoch 1, resumed to the end
    assert out['stopped']
    summary = out['resumed']
    assert summary['status'] == 'finished' and summary['epochs_done'] == 2
    assert summary['options']['mymethod_p'] == 0.25 and summary['mc'] == 1

    # its term keeps its name; MC weighs -b * --mc_weight (published) although no term is 'method'
    assert summary['term_weights'] == pytest.approx({'ce': 1.0, 'kd': 0.0, 'pull': 2.0, 'mc': 2.0 * 0.001})
    run_dir = summary['run_dir']
    with open(os.path.join(run_dir, 'log.csv')) as f:
        header, *rows = [line.split(',') for line in f.read().splitlines()]
    assert header[-4:] == ['loss_ce', 'loss_kd', 'loss_pull', 'loss_mc'] and len(rows) == 2
    for row in rows:
        row = dict(zip(header, map(float, row)))
        assert row['loss_mc'] > 0 and row['loss_pull'] > 0
        total = sum(w * row[f'loss_{t}'] for t, w in summary['term_weights'].items())
        assert row['train_loss'] == pytest.approx(total, rel=1e-5)
    # the method's projection is counted apart from the student
    assert summary['extra_params'] == 64 * 64 + 64

    # its option is part of the run's identity: a changed value does not resume the run
    assert out['changed_exit'] == 2
    assert '--resume: no run with these options' in proc.stderr
    assert 'was made with --mymethod_p 0.25 but this command has 0.5' in proc.stderr
    # and it belongs to its method, with its check
    assert out['other_exit'] == 2 and '--mymethod_p is a flag of --distill mymethod, not kd' in proc.stderr
    assert out['bad_exit'] == 2 and '--mymethod_p must be positive, got -1.0' in proc.stderr

    # and the block composition search runs it, with MC, for every candidate
    assert out['search_exit'] == 0
    [search_dir] = [os.path.join(root, d) for root, dirs, _ in os.walk(f'{save}_bcs') for d in dirs
                    if d.startswith('BCS_')]
    with open(os.path.join(search_dir, 'search.json')) as f:
        result = json.load(f)
    assert result['status'] == 'finished' and len(result['candidates']) >= 2
    for cand in result['candidates']:
        with open(os.path.join(cand['run_dir'], 'summary.json')) as f:
            cand_summary = json.load(f)
        assert cand_summary['distill'] == 'mymethod' and cand_summary['term_weights']['mc'] > 0
    assert not os.path.exists(os.path.join(ROOT, 'distiller_zoo', 'mymethod.py'))


# Before methods declared their options: what resume compared. Checkpoints saved then still resume
# against the same keys.
EARLIER_RESULT_OPTIONS = (
    'model', 'model_s', 'model_t', 'block_depth', 'distill', 'mc', 'mc_weight', 'gamma', 'alpha', 'beta', 'kd_T',
    'feat_dim', 'mode', 'nce_k', 'nce_t', 'nce_m', 'hint_layer', 'dataset', 'batch_size', 'epochs', 'init_epochs',
    'learning_rate', 'lr_decay_epochs', 'lr_decay_rate', 'weight_decay', 'momentum', 'amp', 'seed', 'B1_weight',
    'B2_weight', 'B3_weight', 'B4_weight', 'imagenet_transform', 'tiny_imagenet_transform', 'dkd_alpha', 'dkd_beta',
    'dkd_T', 'dkd_warmup', 'dist_beta', 'dist_gamma', 'dist_tau', 'logit_stand')


def test_result_options_are_the_general_ones_and_every_methods_own():
    assert set(EARLIER_RESULT_OPTIONS) <= set(RESULT_OPTIONS) and len(set(RESULT_OPTIONS)) == len(RESULT_OPTIONS)
    assert {o.name for _, o in method_options() if o.changes_result} <= set(RESULT_OPTIONS)


def test_result_options_drive_resume():
    saved = {'nce_k': 16, 'dkd_beta': 8.0, 'hint_layer': 2}
    for key, value in (('nce_k', 32), ('dkd_beta', 2.0), ('hint_layer', 1)):
        assert differing_option(saved, dict(saved, **{key: value})) == key


@pytest.mark.parametrize('name', list(METHODS))
def test_help_lists_the_method_with_its_paper_and_its_options_in_its_group(name):
    cls = METHODS[name]
    text = student_parser().format_help()
    authors, year = cls.paper.split(', ')[:2]
    assert f'{name} ({authors}, {year})' in ' '.join(text.split())
    groups = {g.title: [a.dest for a in g._group_actions] for g in student_parser()._action_groups}
    if cls.options:
        assert groups[f'--distill {name} ({cls.label})'] == [o.name for o in cls.options]
    for option in cls.options:
        assert option.help == '' or ' '.join(option.help.split()) in ' '.join(text.split())


def test_an_option_checks_its_value_with_its_own_rule():
    odd = Option('my_k', type=int, default=3, check=lambda v: None if v % 2 else f'must be odd, got {v}')
    odd.validate(5)
    with pytest.raises(UsageError, match='^--my_k must be odd, got 4$'):
        odd.validate(4)
    with pytest.raises(UsageError, match='^--my_p must be positive, got 0$'):
        Option('my_p', check='positive').validate(0)


@pytest.mark.slow
def test_two_methods_of_one_name_are_refused_at_import(tmp_path):
    tree = copied_tree(tmp_path)
    (tree / 'distiller_zoo' / 'mymethod.py').write_text(textwrap.dedent(METHOD_FILE).replace(
        "name = 'mymethod'", "name = 'kd'"))
    env = dict(os.environ, PYTHONPATH=str(tree), PYTHONDONTWRITEBYTECODE='1', CUDA_VISIBLE_DEVICES='')
    proc = subprocess.run([sys.executable, '-c', 'import distiller_zoo'], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "two methods are named 'kd': distiller_zoo.kd and distiller_zoo.mymethod" in proc.stderr
