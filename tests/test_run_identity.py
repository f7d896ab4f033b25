"""A run's identity: every result-changing option names its own folder; older folders keep working;
a finished run is never rewritten by --resume; --extend continues one on purpose."""
import json
import os

import numpy as np
import pytest

from helper.engine.options import finalize, options_dict, student_parser, teacher_parser
from helper.engine.run import run, run_dir_of
from helpers_data import student_args, teacher_args, tree


def teacher_opt(*argv):
    return finalize(teacher_parser().parse_args(['--model', 'resnet8', '--seed', '0', *argv]), 'teacher')


def student_opt(path_t, *argv):
    return finalize(student_parser().parse_args(['--path_t', path_t, '--model_t', 'resnet8', '--model_s',
                                                 'resnet8', '--seed', '0', *argv]), 'student')


@pytest.mark.parametrize('flag', [['--epochs', '1'], ['--lr_decay_epochs', '100,200'], ['--learning_rate', '0.1'],
                                  ['--batch_size', '32'], ['--tiny_imagenet_transform', 'crop'],
                                  ['--train_per_class', '10'], ['--seed', '1'], ['--weight_decay', '1e-4']])
def test_every_result_changing_option_gets_its_own_folder(flag):
    plain = run_dir_of(teacher_opt(), 'teacher')
    assert run_dir_of(teacher_opt(*flag), 'teacher') != plain
    assert run_dir_of(teacher_opt(), 'teacher') == plain          # and the same options, the same folder
    # the readable part of the name stays as it was
    assert os.path.basename(plain).startswith('resnet8_cifar100_lr_0.05_decay_0.0005_trial_0_id-')


def test_student_identity_has_weights_method_flags_and_the_teacher_by_content(tmp_path):
    a, b = tmp_path / 'a.pth', tmp_path / 'b.pth'
    a.write_bytes(b'one teacher')
    b.write_bytes(b'another teacher')
    base = run_dir_of(student_opt(str(a)), 'student')
    assert run_dir_of(student_opt(str(b)), 'student') != base
    copy = tmp_path / 'copy.pth'
    copy.write_bytes(b'one teacher')
    assert run_dir_of(student_opt(str(copy)), 'student') == base  # the content counts, not the path
    for flag in (['--kd_T', '2'], ['--nce_k', '64'], ['--init_epochs', '5'], ['--epochs', '1']):
        assert run_dir_of(student_opt(str(a), *flag), 'student') != base, flag


def test_a_drawn_seed_is_not_part_of_the_name():
    """--resume without --seed must find the run whose seed was drawn (and recorded)."""
    def drawn():
        return finalize(teacher_parser().parse_args(['--model', 'resnet8']), 'teacher')
    assert run_dir_of(drawn(), 'teacher') == run_dir_of(drawn(), 'teacher')


def write_older_folder(opt, **changes):
    """A folder as the version before the identity hash named it, with its summary.json."""
    path = run_dir_of(opt, 'teacher').rsplit('_id-', 1)[0]
    os.makedirs(path)
    options = dict(options_dict(opt), **changes)
    options.pop('train_per_class')  # that version did not have it
    with open(os.path.join(path, 'summary.json'), 'w') as f:
        json.dump({'status': 'finished', 'options': options, 'epochs': options['epochs']}, f)
    return path


def test_an_older_folder_of_the_same_run_is_still_used(tmp_path):
    opt = teacher_opt('--save_root', str(tmp_path))
    older = write_older_folder(opt)
    assert run_dir_of(opt, 'teacher') == older
    before = tree(str(tmp_path))
    assert run_dir_of(teacher_opt('--save_root', str(tmp_path), '--train_per_class', '5'), 'teacher') != older
    assert tree(str(tmp_path)) == before


def test_an_older_folder_of_another_run_is_left_alone(tmp_path):
    opt = teacher_opt('--save_root', str(tmp_path))
    older = write_older_folder(opt, epochs=1)  # a smoke run made with the same name
    assert run_dir_of(opt, 'teacher') != older and '_id-' in run_dir_of(opt, 'teacher')


def test_train_per_class_draws_the_same_balanced_subset():
    from dataset import class_subset
    targets = np.repeat(np.arange(4), [5, 7, 6, 9])
    picked = class_subset(targets, 3)
    assert list(np.bincount(targets[picked])) == [3, 3, 3, 3]
    assert list(picked) == sorted(picked) and len(set(picked)) == 12
    assert list(class_subset(targets, 3)) == list(picked)        # the same images in every run
    from helper.errors import UsageError
    with pytest.raises(UsageError, match='class 0 has only 5'):
        class_subset(targets, 6)


@pytest.mark.slow
def test_resume_of_a_finished_run_writes_nothing_and_extend_continues_it(tmp_path, data, capsys):
    save = str(tmp_path / 'save')
    argv = teacher_args(data, save, 'resnet8', '--epochs', '2', '--lr_decay_epochs', '1')
    first = run(teacher_parser().parse_args(argv), 'teacher')
    before = tree(first['run_dir'])
    again = run(teacher_parser().parse_args(argv + ['--resume']), 'teacher')
    assert 'already finished; nothing to resume' in capsys.readouterr().out
    assert again['status'] == 'finished' and tree(first['run_dir']) == before

    extended = run(teacher_parser().parse_args(argv + ['--extend', '3']), 'teacher')
    assert extended['run_dir'] == first['run_dir']
    assert (extended['status'], extended['epochs_done'], extended['epochs']) == ('finished', 3, 3)
    with open(os.path.join(first['run_dir'], 'summary.json')) as f:
        summary = json.load(f)
    assert summary['identity']['epochs'] == 2 and summary['identity']['extended_to'] == 3
    with open(os.path.join(first['run_dir'], 'log.csv')) as f:
        assert [line.split(',')[0] for line in f.read().splitlines()[1:]] == ['1', '2', '3']
    from helper.errors import UsageError
    with pytest.raises(UsageError, match='--extend 2 must be more than --epochs 2'):
        run(teacher_parser().parse_args(argv + ['--extend', '2']), 'teacher')


@pytest.mark.slow
def test_a_student_on_a_labelled_subset_trains_on_it(tmp_path, data, teacher):
    argv = student_args(data, str(tmp_path), teacher, 'kd', 'resnet8', '--train_per_class', '1')
    summary = run(student_parser().parse_args(argv), 'student')
    assert summary['options']['train_per_class'] == 1
    assert summary['identity']['train_per_class'] == 1


def test_a_student_on_other_inputs_than_its_teacher_is_warned(tmp_path):
    from helper.engine.experiment import warn_teacher_inputs
    folder = tmp_path / 'teacher'
    folder.mkdir()
    (folder / 'summary.json').write_text(json.dumps({'options': {'dataset': 'tiny_imagenet',
                                                                 'tiny_imagenet_transform': 'emkd'}}))
    said = []
    opt = student_opt(str(folder / 'ckpt_epoch_1.pth'), '--dataset', 'tiny_imagenet',
                      '--tiny_imagenet_transform', 'crop')
    warn_teacher_inputs(opt, said.append)
    assert len(said) == 1 and '--tiny_imagenet_transform emkd, this student uses crop' in said[0]
    said.clear()
    warn_teacher_inputs(student_opt(str(folder / 'ckpt_epoch_1.pth'), '--dataset', 'tiny_imagenet'), said.append)
    assert said == []


def test_runs_on_other_inputs_never_share_a_report_cell(tmp_path):
    from helper.tools import report
    from test_report import write_run
    root = str(tmp_path / 'save')
    for i, transform in enumerate(['emkd', 'crop']):
        write_run(root, 'models', f'teacher_{transform}', kind='teacher', model_s='resnet8', model_t=None,
                  distill=None, dataset='tiny_imagenet', last_acc=30.0 + i,
                  options={'tiny_imagenet_transform': transform})
    _, _, text = report.report([root], compare_with='none')
    assert '| resnet8 | 30.00 (1) |' in text and '| resnet8 (crop) | 31.00 (1) |' in text
