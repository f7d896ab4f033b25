"""train_teacher.py and train_student.py end to end on a tiny CIFAR-100-layout set.

Every run is a real run through helper.engine.run.run on the CPU: 1 epoch of 100 images, resnet8 models.
"""
import csv
import json
import math
import os
import pickle
import signal

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import models
from distiller_zoo import METHODS
from helper.engine import experiment as experiment_module
from helper.engine import trainer as trainer_module
from helper.engine.loops import NonFiniteLoss, Preempted
from helper.engine.options import finalize, student_parser, teacher_parser
from helpers_data import load_weights_only, parse_student, student_args, tree, write_tiny_cifar100
from train_student import train_student
from train_teacher import train_teacher

CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)
LOG_HEADER = ['epoch', 'train_acc', 'train_loss', 'test_acc', 'test_loss', 'test_acc_top5', 'lr']
NO_MAIN_STAGE_TERM = {'kd', 'fsp', 'abound'}   # published: no loss of their own in the main stage
# -r/-a/-b of RepDistiller's and CRD-EMKD's published scripts (kdsvd has none published: 1, 0, 1);
# dkd: mdistiller's CE weight 1 with DKD's own alpha/beta; dist: dist_cifar.yaml's CE 1, DIST weight 2
PUBLISHED_WEIGHTS = {
    'kd': (0.1, 0.9, 0), 'hint': (1, 0, 100), 'attention': (1, 0, 1000), 'similarity': (1, 0, 3000),
    'correlation': (1, 0, 0.02), 'vid': (1, 0, 1), 'rkd': (1, 0, 1), 'pkt': (1, 0, 30000),
    'abound': (1, 0, 1), 'factor': (1, 0, 200), 'fsp': (1, 0, 50), 'nst': (1, 0, 50), 'crd': (1, 0, 0.8),
    'kdsvd': (1, 0, 1), 'dkd': (1, 0, 1), 'dist': (1, 0, 2), 'reviewkd': (1, 0, 5), 'ofd': (1, 0, 0.001),
}


def published_terms(distill, mc=0):
    """log.csv's loss terms of a published method: CE, KD, its own term, MC with --mc."""
    own = () if distill in NO_MAIN_STAGE_TERM else ('method',)
    return ('ce', 'kd') + own + (('mc',) if mc else ())


def read_log(run_dir, terms):
    with open(os.path.join(run_dir, 'log.csv')) as f:
        rows = list(csv.reader(f))
    assert rows[0] == LOG_HEADER + [f'loss_{t}' for t in terms]
    return [dict(zip(rows[0], map(float, r))) for r in rows[1:]]


def student(data, save_root, teacher, distill='kd', model_s='resnet8', *extra):
    return train_student(parse_student(student_args(data, str(save_root), teacher, distill, model_s, *extra)))


def independent_accuracy(model, data_folder):
    """Top-1 of `model` on the test pickle, read and normalised here without dataset/."""
    with open(os.path.join(data_folder, 'cifar-100-python', 'test'), 'rb') as f:
        entry = pickle.load(f, encoding='latin1')
    x = torch.from_numpy(entry['data'].reshape(-1, 3, 32, 32)).float() / 255
    x = (x - torch.tensor(CIFAR100_MEAN).view(1, 3, 1, 1)) / torch.tensor(CIFAR100_STD).view(1, 3, 1, 1)
    y = torch.tensor(entry['fine_labels'])
    model.eval()
    with torch.no_grad():
        logits = model(x)
    return 100.0 * (logits.argmax(1) == y).float().mean().item(), F.cross_entropy(logits, y).item()


# ---------------------------------------------------------------- train_teacher

def test_teacher_run_writes_published_outputs(data, teacher):
    run_dir = os.path.dirname(teacher)
    assert os.path.basename(run_dir).startswith('resnet8_cifar100_')
    files = set(os.listdir(run_dir))
    assert {'ckpt_epoch_1.pth', 'resnet8_best.pth', 'resnet8_last.pth', 'log.csv', 'summary.json', 'tb'} <= files
    assert any(name.startswith('events.out.tfevents') for name in os.listdir(os.path.join(run_dir, 'tb')))

    ckpt = load_weights_only(teacher)
    assert {'epoch', 'model', 'accuracy', 'optimizer'} <= set(ckpt)
    assert ckpt['epoch'] == 1
    assert load_weights_only(os.path.join(run_dir, 'resnet8_best.pth'))['best_acc'] == ckpt['accuracy']
    # the stored accuracy is the model's real accuracy on the test set
    model = models.build_model('resnet8')
    model.load_state_dict(ckpt['model'])
    acc, loss = independent_accuracy(model, data)
    assert ckpt['accuracy'] == pytest.approx(acc)

    rows = read_log(run_dir, ('ce',))
    assert [r['epoch'] for r in rows] == [1]
    assert rows[0]['test_acc'] == pytest.approx(acc, abs=1e-4)
    assert rows[0]['test_loss'] == pytest.approx(loss, rel=1e-4)
    assert rows[0]['lr'] == pytest.approx(0.05)

    with open(os.path.join(run_dir, 'summary.json')) as f:
        summary = json.load(f)
    assert summary['status'] == 'finished' and summary['epochs_done'] == 1
    assert summary['params'] == sum(p.numel() for p in models.build_model('resnet8').parameters())
    assert summary['best_acc'] == pytest.approx(acc) and summary['block_depth'] is None
    assert summary['wall_time_s'] > 0 and summary['options']['model'] == 'resnet8'
    # the learning rate as resolved, and as given (omitted)
    assert summary['options']['learning_rate'] == 0.05 and summary['requested_options']['learning_rate'] is None
    with open(os.path.join(os.path.dirname(os.path.dirname(run_dir)), 'result.txt')) as f:
        lines = f.read().splitlines()
    # the session's shared save root also collects other tests' runs: this run appears exactly once
    assert [line.split('\t')[0] for line in lines].count(os.path.basename(run_dir)) == 1


def test_teacher_checkpoint_loads_as_path_t(teacher):
    assert models.name_from_path(teacher) == 'resnet8'
    weights = load_weights_only(teacher)['model']
    for name in ('resnet8', None):  # --model_t given, and inferred from the folder name
        model, meta = models.load_model(teacher, name)
        assert meta['epoch'] == 1
        assert all(torch.equal(model.state_dict()[k], v) for k, v in weights.items())
    opt = finalize(student_parser().parse_args(['--path_t', teacher, '--dry_run']), 'student')
    assert opt.model_t == 'resnet8'


def test_teacher_with_block_depth_names_its_folder(data, tmp_path, capsys):
    summary = train_teacher(teacher_parser().parse_args(
        ['--model', 'myresnet8', '--block_depth', '2,1,1', '--data_folder', data, '--save_root', str(tmp_path),
         '--epochs', '1', '--batch_size', '50', '--num_workers', '0', '--seed', '0', '--print_freq', '1000']))
    assert os.path.basename(summary['run_dir']).startswith('myresnet8-2-1-1_cifar100_')
    out = capsys.readouterr().out
    assert f"teacher myresnet8 (2,1,1): {summary['params']:,} parameters" in out and 'student' not in out
    assert summary['block_depth'] == [2, 1, 1]
    assert summary['params'] == sum(p.numel() for p in models.build_model('myresnet8', 100, [2, 1, 1]).parameters())
    state = load_weights_only(os.path.join(summary['run_dir'], 'ckpt_epoch_1.pth'))['model']
    models.build_model('myresnet8', 100, [2, 1, 1]).load_state_dict(state)  # strict


# ---------------------------------------------------------------- train_student: every method

@pytest.mark.slow
@pytest.mark.parametrize('mc', [0, 1])
@pytest.mark.parametrize('distill', sorted(METHODS))
def test_every_method_trains_one_epoch(data, teacher, tmp_path, capsys, distill, mc):
    model_s = 'myresnet8' if mc else 'resnet8'  # a my* student has resnet8's stage shapes
    summary = student(data, tmp_path, teacher, distill, model_s, *(['--mc', '1'] if mc else []))
    run_dir = summary['run_dir']
    assert ':' not in os.path.relpath(run_dir, tmp_path)
    assert summary['status'] == 'finished' and summary['epochs_done'] == 1 and summary['mc'] == mc
    assert (summary['model_s'], summary['model_t'], summary['distill']) == (model_s, 'resnet8', distill)
    with open(os.path.join(run_dir, 'summary.json')) as f:
        assert json.load(f) == json.loads(json.dumps(summary))

    files = set(os.listdir(run_dir))
    assert {f'{model_s}_best.pth', f'{model_s}_last.pth', 'ckpt_epoch_1.pth', 'log.csv', 'summary.json',
            'tb'} <= files
    assert os.listdir(os.path.join(run_dir, 'tb'))
    best = load_weights_only(os.path.join(run_dir, f'{model_s}_best.pth'))
    assert {'epoch', 'model', 'best_acc'} <= set(best) and best['epoch'] == 1
    last = load_weights_only(os.path.join(run_dir, f'{model_s}_last.pth'))
    assert {'epoch', 'model', 'optimizer', 'method', 'rng', 'opt', 'history', 'best_acc'} <= set(last)
    assert last['opt']['distill'] == distill and last['epoch'] == 1
    assert all(torch.equal(best['model'][k], v) for k, v in last['model'].items())
    models.build_model(model_s).load_state_dict(best['model'])  # strict

    # the logged total is the published weighted sum of the logged terms
    row = last['history'][0]
    r, a, b = PUBLISHED_WEIGHTS[distill]
    terms = published_terms(distill, mc)
    assert {k for k in row if k.startswith('loss_')} == {f'loss_{t}' for t in terms}
    own = (b,) if 'method' in terms else ()
    assert summary['term_weights'] == pytest.approx(dict(zip(terms, (r, a) + own + (b * 0.001,) * mc)))
    method, mc_loss = row.get('loss_method', 0.0), row.get('loss_mc', 0.0)   # a term it lacks adds 0
    expected = r * row['loss_ce'] + a * row['loss_kd'] + b * (method + 0.001 * mc_loss)
    assert row['train_loss'] == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert (mc_loss > 0) == bool(mc)
    assert all(math.isfinite(v) for v in read_log(run_dir, published_terms(distill, mc))[0].values())
    if METHODS[distill].has_init_stage:
        assert 'init epoch 1' in capsys.readouterr().out
    with open(os.path.join(str(tmp_path), 'result.txt')) as f:
        assert f.read().split('\t')[0] == os.path.basename(run_dir)


def test_kdsvd_survives_dead_channels(tmp_path, teacher, monkeypatch):
    svd = torch.linalg.svd
    smallest = []  # per SVD: the smallest singular value over the largest

    def recording_svd(x, *args, **kwargs):
        out = svd(x, *args, **kwargs)
        smallest.append((out[1].min() / out[1].max().clamp_min(1e-30)).item())
        return out
    monkeypatch.setattr(torch.linalg, 'svd', recording_svd)
    two_per_class = write_tiny_cifar100(str(tmp_path / 'data'), train_per_class=2)
    summary = student(two_per_class, tmp_path / 'save', teacher, 'kdsvd')
    assert summary['status'] == 'finished' and summary['epochs_done'] == 1
    # dead channels (all zero after the ReLU) make a zero singular value: the case this test is about
    assert smallest and min(smallest) < 1e-6
    rows = read_log(summary['run_dir'], published_terms('kdsvd'))
    assert len(rows) == 1
    for name in LOG_HEADER[1:]:
        assert math.isfinite(rows[0][name]), name
    assert rows[0]['loss_method'] > 0  # the SVD loss itself was computed, not skipped


# ---------------------------------------------------------------- resume

def stop_in_epoch(monkeypatch, epoch_to_stop, mid_epoch, signum):
    """A signal to ourselves at the start (mid_epoch) or the end of an epoch of the next run."""
    original = trainer_module.Trainer.train_epoch

    def train_epoch(self, epoch, state):
        if epoch == epoch_to_stop and mid_epoch:
            signal.raise_signal(signum)  # the loop finishes one step, then stops
        done = original(self, epoch, state)
        if epoch == epoch_to_stop and not mid_epoch:
            signal.raise_signal(signum)
        return done

    monkeypatch.setattr(trainer_module.Trainer, 'train_epoch', train_epoch)


@pytest.mark.slow
@pytest.mark.parametrize('distill, mid_epoch, flags', [
    ('kd', False, ()), ('vid', True, ()),
    ('crd', True, ()), ('kd', False, ('--data_on_device',)), ('crd', True, ('--data_on_device',)),
    ('reviewkd', True, ()), ('ofd', False, ()), ('kd', True, ('--optimizer', 'dot')),
    ('reviewkd', False, ('--optimizer', 'dot', '--mc', '1')),
])
def test_resume_ends_where_an_uninterrupted_run_ends(data, teacher, tmp_path, monkeypatch, capsys,
                                                       distill, mid_epoch, flags, one_thread_everywhere):
    schedule = ('--epochs', '2', '--lr_decay_epochs', '1', *flags)  # epoch 2 runs at the decayed rate
    whole = student(data, tmp_path / 'a', teacher, distill, 'resnet8', *schedule)

    with monkeypatch.context() as patch:
        stop_in_epoch(patch, 2 if mid_epoch else 1, mid_epoch, signal.SIGTERM if mid_epoch else signal.SIGINT)
        with pytest.raises(Preempted):
            student(data, tmp_path / 'b', teacher, distill, 'resnet8', *schedule)
    out = capsys.readouterr().out
    assert ('in epoch 2 after iteration 1' if mid_epoch else 'after epoch 1') in out
    assert '--resume' in out
    run_dir = os.path.join(str(tmp_path / 'b'), os.path.relpath(whole['run_dir'], str(tmp_path / 'a')))
    stopped = load_weights_only(os.path.join(run_dir, 'resnet8_last.pth'))
    assert stopped['epoch'] == 1
    if mid_epoch:  # one step of epoch 2 was done: the checkpoint carries it
        assert (stopped['partial']['epoch'], stopped['partial']['step']) == (2, 1)
    else:
        assert not stopped['partial']
    with open(os.path.join(run_dir, 'summary.json')) as f:
        assert json.load(f)['status'] == 'stopped'

    resumed = student(data, tmp_path / 'b', teacher, distill, 'resnet8', *schedule, '--resume')
    assert resumed['status'] == 'finished' and resumed['epochs_done'] == 2
    with open(os.path.join(whole['run_dir'], 'log.csv')) as f1, open(os.path.join(run_dir, 'log.csv')) as f2:
        assert f1.read() == f2.read()
    rows = read_log(run_dir, published_terms(distill, '--mc' in flags))
    assert [row['lr'] for row in rows] == pytest.approx([0.05, 0.005])  # step schedule
    a = load_weights_only(os.path.join(whole['run_dir'], 'resnet8_last.pth'))
    b = load_weights_only(os.path.join(run_dir, 'resnet8_last.pth'))
    assert a['model'].keys() == b['model'].keys()
    assert all(torch.equal(a['model'][k], b['model'][k]) for k in a['model'])
    assert all(torch.equal(a['method'][k], b['method'][k]) for k in a['method'])
    assert (resumed['best_acc'], resumed['best_epoch'], resumed['last_acc']) == \
        (whole['best_acc'], whole['best_epoch'], whole['last_acc'])
    with open(os.path.join(str(tmp_path / 'b'), 'result.txt')) as f:
        assert len(f.read().splitlines()) == 1


def init_loss_lines(out):
    return [line for line in out.splitlines() if line.startswith('init epoch ')]


@pytest.mark.slow
@pytest.mark.parametrize('distill, mid_epoch', [('fsp', True), ('abound', False), ('factor', True)])
def test_init_stage_resumes_where_it_stopped(data, teacher, tmp_path, monkeypatch, capsys, distill, mid_epoch,
                                             one_thread_everywhere):
    """A stop in (or after) the first of two init epochs checkpoints the init stage so far; the
    resume goes on from there and ends with the weights and lines of an uninterrupted run."""
    schedule = ('--init_epochs', '2', '--epochs', '1', '--batch_size', '32')
    whole = student(data, tmp_path / 'a', teacher, distill, 'resnet8', *schedule)
    whole_lines = init_loss_lines(capsys.readouterr().out)
    assert len(whole_lines) == 2
    original = trainer_module.init_epoch

    def init_epoch(ctx, stage, epoch, partial=None):
        if epoch == 1 and mid_epoch:
            signal.raise_signal(signal.SIGTERM)  # the loop finishes one step, then stops
        done = original(ctx, stage, epoch, partial)
        if epoch == 1 and not mid_epoch:
            signal.raise_signal(signal.SIGINT)
        return done
    with monkeypatch.context() as patch:
        patch.setattr(trainer_module, 'init_epoch', init_epoch)
        with pytest.raises(Preempted):
            student(data, tmp_path / 'b', teacher, distill, 'resnet8', *schedule)
    out = capsys.readouterr().out
    assert ('in init epoch 1 after iteration 1' if mid_epoch else 'after init epoch 1') in out
    run_dir = os.path.join(str(tmp_path / 'b'), os.path.relpath(whole['run_dir'], str(tmp_path / 'a')))
    stopped = load_weights_only(os.path.join(run_dir, 'resnet8_last.pth'))
    assert (stopped['epoch'], stopped['init_done'], stopped['init_epochs_done']) == (0, False, 0 if mid_epoch else 1)
    assert stopped['init_optimizer']['state']  # the init stage's momentum goes on where it was
    if mid_epoch:
        assert (stopped['partial']['stage'], stopped['partial']['epoch'], stopped['partial']['step']) == ('init', 1, 1)
    else:
        assert not stopped['partial'] and init_loss_lines(out) == whole_lines[:1]
    with open(os.path.join(run_dir, 'summary.json')) as f:
        assert json.load(f)['status'] == 'stopped'

    resumed = student(data, tmp_path / 'b', teacher, distill, 'resnet8', *schedule, '--resume')
    assert resumed['status'] == 'finished'
    assert init_loss_lines(capsys.readouterr().out) == whole_lines[0 if mid_epoch else 1:]
    with open(os.path.join(whole['run_dir'], 'log.csv')) as f1, open(os.path.join(run_dir, 'log.csv')) as f2:
        assert f1.read() == f2.read()
    a = load_weights_only(os.path.join(whole['run_dir'], 'resnet8_last.pth'))
    b = load_weights_only(os.path.join(run_dir, 'resnet8_last.pth'))
    for part in ('model', 'method'):
        assert a[part].keys() == b[part].keys()
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part


@pytest.mark.slow
def test_an_init_stage_checkpoint_of_an_older_version_still_resumes(data, teacher, tmp_path, monkeypatch, capsys):
    """Older versions saved only the init epochs done (no init optimizer): the resume goes on from there."""
    schedule = ('--init_epochs', '2', '--epochs', '1', '--batch_size', '32')
    original = trainer_module.init_epoch

    def init_epoch(ctx, stage, epoch, partial=None):
        done = original(ctx, stage, epoch, partial)
        if epoch == 1:
            signal.raise_signal(signal.SIGTERM)
        return done
    with monkeypatch.context() as patch:
        patch.setattr(trainer_module, 'init_epoch', init_epoch)
        with pytest.raises(Preempted):
            student(data, tmp_path, teacher, 'fsp', 'resnet8', *schedule)
    (name,) = os.listdir(os.path.join(str(tmp_path), 'student_model'))
    path = os.path.join(str(tmp_path), 'student_model', name, 'resnet8_last.pth')
    ckpt = load_weights_only(path)
    del ckpt['init_optimizer']
    torch.save(ckpt, path)
    capsys.readouterr()
    resumed = student(data, tmp_path, teacher, 'fsp', 'resnet8', *schedule, '--resume')
    assert resumed['status'] == 'finished' and resumed['epochs_done'] == 1
    assert [line.split(':')[0] for line in init_loss_lines(capsys.readouterr().out)] == ['init epoch 2']


@pytest.mark.slow
def test_a_run_stopped_before_the_log_followed_the_terms_resumes_with_its_columns(data, teacher, tmp_path,
                                                                                 monkeypatch, capsys):
    """A kd run stopped in epoch 2 by the code that logged loss_method and loss_mc always (0 for kd
    without --mc) and saved the epoch's sums unnamed in that layout resumes to the same end."""
    schedule = ('--epochs', '2', '--lr_decay_epochs', '1')
    whole = student(data, tmp_path / 'a', teacher, 'kd', 'resnet8', *schedule)
    with monkeypatch.context() as patch:
        stop_in_epoch(patch, 2, True, signal.SIGTERM)
        with pytest.raises(Preempted):
            student(data, tmp_path / 'b', teacher, 'kd', 'resnet8', *schedule)
    run_dir = os.path.join(str(tmp_path / 'b'), os.path.relpath(whole['run_dir'], str(tmp_path / 'a')))
    last = os.path.join(run_dir, 'resnet8_last.pth')
    ckpt = load_weights_only(last)
    assert ckpt['partial']['names'] == ['loss', 'ce', 'kd']
    old = dict(ckpt, history=[dict(row, loss_method=0.0, loss_mc=0.0) for row in ckpt['history']])
    loss, ce, kd, correct = ckpt['partial']['sums'].tolist()
    old['partial'] = {k: v for k, v in ckpt['partial'].items() if k != 'names'}
    old['partial']['sums'] = torch.tensor([loss, ce, kd, 0.0, 0.0, correct], dtype=torch.float64)
    os.remove(last)
    torch.save(old, last)

    resumed = student(data, tmp_path / 'b', teacher, 'kd', 'resnet8', *schedule, '--resume')
    assert resumed['status'] == 'finished'
    rows = read_log(run_dir, ('ce', 'kd', 'method', 'mc'))   # the older columns stay
    assert [r['loss_method'] for r in rows] == [0.0, 0.0] and [r['loss_mc'] for r in rows] == [0.0, 0.0]
    for got, want in zip(rows, read_log(whole['run_dir'], ('ce', 'kd'))):
        assert {k: got[k] for k in want} == want


def test_resume_of_a_finished_run_changes_nothing(data, teacher, tmp_path):
    first = student(data, tmp_path, teacher)
    weights = load_weights_only(os.path.join(first['run_dir'], 'resnet8_last.pth'))['model']
    again = student(data, tmp_path, teacher, 'kd', 'resnet8', '--resume')
    assert again['status'] == 'finished' and again['best_acc'] == first['best_acc']
    after = load_weights_only(os.path.join(first['run_dir'], 'resnet8_last.pth'))['model']
    assert all(torch.equal(weights[k], after[k]) for k in weights)
    with open(os.path.join(str(tmp_path), 'result.txt')) as f:
        assert len(f.read().splitlines()) == 1


# ---------------------------------------------------------------- seed, test mode, weights

@pytest.mark.slow
def test_seed_gives_identical_first_epoch(data, teacher, tmp_path):
    runs = [student(data, tmp_path, teacher, 'crd', 'resnet8', '--seed', seed, '--trial', trial)
            for seed, trial in (('7', 'a'), ('7', 'b'), ('8', 'c'))]
    logs = [read_log(r['run_dir'], published_terms('crd'))[0] for r in runs]
    assert logs[0] == logs[1]
    assert logs[0]['train_loss'] != logs[2]['train_loss']
    w = [load_weights_only(os.path.join(r['run_dir'], 'resnet8_last.pth'))['model'] for r in runs]
    assert all(torch.equal(w[0][k], w[1][k]) for k in w[0])


def test_test_mode_evaluates_only(data, teacher, tmp_path, capsys):
    trained = student(data, tmp_path, teacher)
    before = tree(str(tmp_path))
    capsys.readouterr()
    out = student(data, tmp_path, teacher, 'kd', 'resnet8', '--test', '1')
    assert out['status'] == 'test'
    assert out['student']['acc'] == pytest.approx(trained['best_acc'])
    assert out['teacher']['acc'] == pytest.approx(trained['teacher_acc'])
    assert tree(str(tmp_path)) == before
    printed = capsys.readouterr().out
    assert 'test acc' in printed
    # which weights it evaluated, and from which epoch
    best = os.path.join(trained['run_dir'], 'resnet8_best.pth')
    assert f'--test 1: evaluated {best} (the best weights, epoch {trained["best_epoch"]})' in printed
    # a dry run of it checks that the weights are there, and evaluates nothing
    assert student(data, tmp_path, teacher, 'kd', 'resnet8', '--test', '1', '--dry_run')['status'] == 'dry_run'
    assert 'evaluate its best checkpoint' in capsys.readouterr().out


def test_test_mode_without_a_trained_model_is_a_usage_error(data, teacher, tmp_path):
    from helper.errors import UsageError
    with pytest.raises(UsageError, match='--test 1: no trained model'):
        student(data, tmp_path, teacher, 'kd', 'resnet8', '--test', '1')
    with pytest.raises(UsageError, match='--test 1: no trained model'):
        student(data, tmp_path, teacher, 'kd', 'resnet8', '--test', '1', '--dry_run')
    assert tree(str(tmp_path)) == {}


@pytest.mark.parametrize('distill', sorted(METHODS))
def test_published_weights_when_omitted(distill):
    opt = finalize(student_parser().parse_args(['--path_t', 'x/resnet110_vanilla/ckpt.pth', '--distill', distill]),
                   'student')
    assert (opt.gamma, opt.alpha, opt.beta) == pytest.approx(PUBLISHED_WEIGHTS[distill])
    given = finalize(student_parser().parse_args(['--path_t', 'x/resnet110_vanilla/ckpt.pth', '--distill', distill,
                                                  '-r', '0.5', '-a', '0.25', '-b', '2']), 'student')
    assert (given.gamma, given.alpha, given.beta) == (0.5, 0.25, 2.0)


def test_run_folder_names_carry_the_experiment_without_colons():
    from helper.engine.options import run_name
    opt = finalize(student_parser().parse_args(
        ['--model_t', 'resnet110', '--path_t', './checkpoints/cifar100/resnet110_vanilla/ckpt_epoch_240.pth',
         '--distill', 'crd', '--mc', '1', '--mc_weight', '0.001', '--model_s', 'myresnet20', '--block_depth',
         '3,7,2', '-a', '0', '-b', '0.8', '--trial', '1']), 'student')
    name = run_name(opt, 'student')
    assert ':' not in name
    for part in ('myresnet20', '3-7-2', 'resnet110', 'crd', 'mc', '0.001', 'a-0', 'b-0.8', '_1'):
        assert part in name


def test_learning_rate_defaults_as_published():
    for model_s, lr in (('resnet8', 0.05), ('MobileNetV2', 0.01), ('ShuffleV1', 0.01), ('ShuffleV2', 0.01)):
        opt = finalize(student_parser().parse_args(['--path_t', 'x/resnet110_vanilla/c.pth', '--model_s', model_s]),
                       'student')
        assert opt.learning_rate == lr


def test_teacher_stays_frozen(data, teacher, tmp_path, monkeypatch):
    """The teacher is never optimised and stays in eval mode (its BN statistics never move)."""
    seen = {}
    original = experiment_module.load_teacher

    def load_teacher(opt, num_classes):
        model, meta = original(opt, num_classes)
        seen['model'] = model
        return model, meta

    monkeypatch.setattr(experiment_module, 'load_teacher', load_teacher)
    student(data, tmp_path, teacher, 'hint')
    weights = load_weights_only(teacher)['model']
    state = seen['model'].state_dict()
    assert all(torch.equal(state[k].cpu(), v) for k, v in weights.items())
    assert not seen['model'].training
    assert not any(p.requires_grad for p in seen['model'].parameters())


def test_generated_set_has_the_cifar100_layout(data):
    """The generated set itself: CIFAR-100 layout, every class present in train and test."""
    for split in ('train', 'test'):
        with open(os.path.join(data, 'cifar-100-python', split), 'rb') as f:
            entry = pickle.load(f, encoding='latin1')
        assert entry['data'].dtype == np.uint8 and entry['data'].shape[1] == 3072
        assert sorted(set(entry['fine_labels'])) == list(range(100))


def test_a_first_epoch_at_zero_accuracy_still_writes_best(data, teacher, tmp_path, monkeypatch):
    """100 classes and one epoch can mean 0% test accuracy: --test 1 must still find a model."""
    original = trainer_module.validate

    def hopeless(*args, **kwargs):
        return dict(original(*args, **kwargs), acc=0.0)

    monkeypatch.setattr(trainer_module, 'validate', hopeless)
    summary = student(data, tmp_path, teacher)
    assert (summary['best_acc'], summary['best_epoch']) == (0.0, 1)
    best = load_weights_only(os.path.join(summary['run_dir'], 'resnet8_best.pth'))
    assert best['epoch'] == 1 and best['best_acc'] == 0.0
    assert student(data, tmp_path, teacher, 'kd', 'resnet8', '--test', '1')['status'] == 'test'


def test_tensorboard_writes_each_iterations_own_scalars_every_tb_freq(data, teacher, tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from helper.engine.trainer import Trainer
    losses, lrs = [], []
    real_step = Trainer.step

    def recording_step(self, *args, **kwargs):
        logit, terms = real_step(self, *args, **kwargs)
        losses.append(float(terms[0].detach()))
        lrs.append(self.optimizer.param_groups[0]['lr'])
        return logit, terms
    monkeypatch.setattr(Trainer, 'step', recording_step)
    # 7 iterations per epoch, printed only at the epoch's end; --tb_freq 2 does not divide 7
    summary = student(data, tmp_path, teacher, 'crd', 'resnet8', '--epochs', '2', '--lr_decay_epochs', '1',
                      '--tb_freq', '2')
    events = EventAccumulator(os.path.join(summary['run_dir'], 'tb', 'iterations'))
    events.Reload()
    points = events.Scalars('train_iter/loss')
    # every 2nd iteration, counted over the run: the step does not restart with epoch 2
    assert [p.step for p in points] == [2, 4, 6, 8, 10, 12, 14]
    # each point is that iteration's own loss (not the epoch's running average)
    assert [p.value for p in points] == pytest.approx([losses[s - 1] for s in (2, 4, 6, 8, 10, 12, 14)], rel=1e-6)
    assert [p.value for p in events.Scalars('train_iter/lr')] == pytest.approx([lrs[s - 1] for s in (2, 4, 6, 8, 10, 12, 14)])
    assert {'train_iter/acc', 'train_iter/loss_ce', 'train_iter/loss_method'} <= set(events.Tags()['scalars'])
