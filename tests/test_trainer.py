"""The trainer, its module and the run folder, a few steps at a time (the fast tier's smoke test
of every method; tests/test_train.py trains whole epochs)."""
import itertools
import json
import os

import pytest
import torch

from distiller_zoo import METHODS, Vanilla
from distiller_zoo.base import Distiller
from helper.engine.experiment import build_experiment, resolve_speed_flags
from helper.engine.loops import term_names
from helper.engine.options import finalize, student_parser
from helper.runs.run_folder import LOG_COLUMNS, RESUME_KEYS, RunFolder, log_columns
from helper.engine.trainer import Trainer
from helpers_data import student_args

STEPS = 2


def few_step_trainer(data, teacher, tmp_path, distill, model_s, *extra):
    opt = finalize(student_parser().parse_args(
        student_args(data, str(tmp_path), teacher, distill, model_s, '--init_epochs', '1', *extra)), 'student')
    device = torch.device('cpu')
    opt, amp_dtype = resolve_speed_flags(opt, device)
    exp = build_experiment(opt, 'student', device)
    exp.train_loader = list(itertools.islice(exp.train_loader, STEPS))
    return Trainer(opt, 'student', exp, RunFolder(str(tmp_path / 'run'), model_s), device, amp_dtype)


class Recorder:
    def __init__(self, names):
        self.names, self.rows, self.step = names, [], 0
        self.first_bad = torch.full((), -1)

    def update(self, terms, logit, target, step):
        self.rows.append(dict(zip(self.names, terms.tolist())))

    def check_finite(self, epoch):
        pass

    def averages(self):
        return {'loss': 0.0, 'acc': 0.0}


@pytest.mark.parametrize('mc', [0, 1])
@pytest.mark.parametrize('distill', sorted(METHODS))
def test_every_method_takes_a_few_steps(data, teacher, tmp_path, distill, mc):
    model_s = 'myresnet8' if mc else 'resnet8'  # a my* student has resnet8's stage shapes
    trainer = few_step_trainer(data, teacher, tmp_path, distill, model_s, '--mc', str(mc))
    before = {k: v.clone() for k, v in trainer.student.state_dict().items()}
    if trainer.method.core.has_init_stage:
        trainer.run_init_stage()
    state = Recorder(trainer.module.names)
    assert trainer.train_epoch(1, state)
    assert len(state.rows) == STEPS
    r, a, b = (trainer.opt.gamma, trainer.opt.alpha, trainer.opt.beta)
    own = METHODS[distill].terms   # the method's terms, as multiples of -b
    for row in state.rows:  # the published weighted sum of the terms
        assert set(row) == {'loss', 'ce', 'kd'} | set(own) | ({'mc'} if mc else set())
        assert all(torch.isfinite(torch.tensor(v)) for v in row.values())
        method = sum(factor * row[t] for t, factor in own.items())
        expected = r * row['ce'] + a * row['kd'] + b * (method + trainer.opt.mc_weight * row.get('mc', 0.0))
        assert row['loss'] == pytest.approx(expected, rel=1e-5, abs=1e-6)
        assert (row.get('mc', 0.0) > 0) == bool(mc)
    after = trainer.student.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if before[k].is_floating_point())


class TwoTermMethod(Distiller):
    """A method with two terms of its own, as a new method file would define it."""
    name = 'two_terms'
    terms = {'near': 0.5, 'far': 2.0}

    def method_terms(self, s_feats, s_logit, t_feats, t_logit, batch, epoch):
        return {'near': s_logit.pow(2).mean() * epoch, 'far': s_logit.abs().mean()}


def test_a_method_with_its_own_terms_gets_its_own_meters_and_columns():
    opt = type('Opt', (), dict(gamma=1.0, alpha=0.5, beta=1.0, kd_T=4.0, logit_stand=False))()
    method = TwoTermMethod(opt, None, None, 10)
    names = term_names(method)
    assert names == ('loss', 'ce', 'kd', 'near', 'far')
    assert log_columns(names) == LOG_COLUMNS + ('loss_ce', 'loss_kd', 'loss_near', 'loss_far')
    s_logit, t_logit = torch.randn(4, 5), torch.randn(4, 5)
    weighted = method([], s_logit, [], t_logit, {'target': torch.arange(4)}, epoch=3)
    assert set(weighted) == {'ce', 'kd', 'near', 'far'}
    assert torch.allclose(weighted['near'], 0.5 * 3 * s_logit.pow(2).mean())
    assert term_names(Vanilla()) == ('loss', 'ce')


def test_run_folder_verdicts(tmp_path):
    folder = RunFolder(str(tmp_path / 'run'), 'resnet8')
    assert folder.verdict() == ('empty', None)
    folder.prepare()
    folder.write_summary({'status': 'running', 'epochs_done': 0, 'epochs': 3})
    assert folder.verdict()[0] == 'empty'   # killed before its first epoch: nothing to keep
    state = dict.fromkeys(RESUME_KEYS, {}) | {'epoch': 1, 'history': []}   # what a resumable checkpoint holds
    folder.save_last(state)
    assert folder.verdict() == ('resumable', 'a resumable checkpoint')
    assert folder.load_resume() == state
    folder.write_summary({'status': 'stopped', 'epochs_done': 1, 'epochs': 3})
    assert folder.verdict() == ('resumable', 'a stopped run, 1/3 epochs')
    folder.write_summary({'status': 'finished', 'epochs_done': 3, 'epochs': 3})
    assert folder.verdict() == ('finished', 'a finished run, 3/3 epochs')
    with open(folder.summary_path, 'w') as f:
        f.write('{')
    assert folder.verdict()[0] == 'resumable'


def test_run_folder_log_has_one_row_per_epoch_and_zero_for_missing_terms(tmp_path):
    folder = RunFolder(str(tmp_path), 'resnet8')
    columns = log_columns(('loss', 'ce', 'kd'))
    folder.write_log([{'epoch': 1, 'train_acc': 50.0, 'loss_ce': 1.5}], columns)
    rows = folder.read_log()
    assert list(rows[0]) == list(columns) and rows[0]['loss_ce'] == '1.5' and rows[0]['loss_kd'] == '0'
    assert json.loads(json.dumps(rows))   # plain strings
    assert not os.path.exists(folder.summary_path)


def test_summary_records_the_weight_of_every_term(data, teacher, tmp_path):
    """log.csv's loss_* columns are unweighted: the plots weigh them with these."""
    trainer = few_step_trainer(data, teacher, tmp_path, 'crd', 'myresnet8', '--mc', '1')
    weights = trainer.summary('running', 0)['term_weights']
    opt = trainer.opt
    assert weights == pytest.approx({'ce': opt.gamma, 'kd': opt.alpha, 'method': opt.beta,
                                     'mc': opt.beta * opt.mc_weight})
    assert json.loads(json.dumps(weights)) == weights
