"""--dry_run checks what the real command would check before training (teacher file, data, MC
stage shapes by one forward, the run folder and its lock, a finished run), prints the plan, writes
nothing, and exits 2 where the real command would."""
import os

import pytest

import search
from helper.runs import runlock
from helper.engine.options import student_parser
from helper.engine.run import main, run
from helpers_data import parse_student, student_args, tree


def dry(argv, capsys, kind='student'):
    """(exit code, stdout, stderr) of a dry run of train_student.py (or search.py) argv."""
    if kind == 'search':
        code = search.main(argv + ['--dry_run'])
    else:
        code = main('student', student_parser(), argv + ['--dry_run'])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_dry_run_prints_the_plan_and_writes_nothing(data, teacher, tmp_path, capsys):
    save = tmp_path / 'save'
    argv = student_args(data, str(save), teacher, 'crd', 'myresnet20', '--block_depth', '3,7,2', '--mc', '1')
    before = tree(data)
    code, out, err = dry(argv, capsys)
    assert code == 0, err
    assert not save.exists() and tree(data) == before
    lines = out.splitlines()
    assert lines[0] == 'dry run: S-myresnet20-3-7-2_T-resnet8_cifar100_crd_mc-0.001_r-1_a-0_b-0.8_1'
    assert 'this command would start a new run' in lines[1]
    assert 'cifar100 in ' in out and '100 training images' in out
    assert 'myresnet20 (3,7,2): 278,580 parameters' in out
    # one forward of the whole loss on a dummy batch: every weighted term has a value
    loss = next(line for line in lines if line.startswith('  loss: crd + MC'))
    assert all(f' {term} ' in loss for term in ('ce', 'method', 'mc'))
    assert '1 epochs, 7 steps of 16 per epoch' in out
    assert lines[-1] == 'dry run OK: nothing was written'


def test_missing_teacher_exits_2_and_points_to_the_fetch_script(data, tmp_path, capsys):
    argv = student_args(data, str(tmp_path), str(tmp_path / 'resnet8_vanilla' / 'ckpt_epoch_240.pth'))
    code, out, err = dry(argv, capsys)
    assert code == 2 and err.startswith('error: teacher checkpoint not found: ')
    assert 'scripts/fetch_pretrained_teachers.sh' in err and len(err.splitlines()) == 1
    assert os.listdir(tmp_path) == []


def test_missing_data_exits_2_where_the_run_cannot_fetch_it(teacher, tmp_path, capsys):
    argv = student_args(str(tmp_path / 'data'), str(tmp_path / 'save'), teacher) + ['--dataset', 'tiny_imagenet']
    code, _, err = dry(argv, capsys)
    assert code == 2 and err.startswith('error: tiny_imagenet not found')
    # CIFAR the run downloads: the dry run says so, downloads nothing, and still checks the models
    argv = student_args(str(tmp_path / 'data'), str(tmp_path / 'save'), teacher, 'kd', 'resnet8', '--mc', '1')
    code, out, err = dry(argv, capsys)
    assert code == 0, err
    assert 'the run downloads it' in out and 'loss: kd + MC' in out
    assert os.listdir(tmp_path) == []


def test_mc_stage_shape_mismatch_exits_2(data, teacher, tmp_path, capsys):
    # wrn_16_2's stages are twice as wide as resnet8's: milestone checking cannot compare them
    code, _, err = dry(student_args(data, str(tmp_path), teacher, 'kd', 'wrn_16_2', '--mc', '1'), capsys)
    assert code == 2 and 'milestone checking needs equal stage shapes' in err
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_a_finished_run_or_a_held_folder_exits_2_as_the_run_would(data, teacher, tmp_path, capsys):
    argv = student_args(data, str(tmp_path), teacher)
    summary = run(parse_student(argv), 'student')
    before = tree(str(tmp_path))
    code, _, err = dry(argv, capsys)
    # the same refusal as the real command's, from the same check
    assert code == main('student', student_parser(), argv) == 2
    assert err == capsys.readouterr().err and 'already holds a finished run' in err
    assert tree(str(tmp_path)) == before
    # a live process holds the folder: refused before anything else
    lock = runlock.RunLock(summary['run_dir'], log=lambda msg: None).acquire()
    try:
        code, _, err = dry(argv + ['--resume'], capsys)
    finally:
        lock.release()
    assert code == 2 and f"{summary['run_dir']} is in use by" in err


def test_search_dry_run_lists_candidates_and_schedule(data, teachers, tmp_path, capsys):
    # wrn_40_1 holds 6 blocks per stage: myresnet14 2,2,2 may move 1 block of stage 3 for 4 in stage 2
    argv = student_args(data, str(tmp_path), teachers('wrn_40_1'), 'crd', 'myresnet14', '--block_depth', '2,2,2',
                        '--mc', '1', '--search_epochs', '1')
    code, out, err = dry(argv, capsys, 'search')
    assert code == 0, err
    assert 'about 3 candidates' in out and 'each scored on 1 epochs' in out
    assert 'then the winner is retrained on the full --epochs 1' in out
    assert '  phase 1 (stage 3 -> 2, from the start): 2,2,2 (new); 2,6,1 (new)' in out
    assert '  phase 2 (stage 2 -> 1, from the best so far, here the start): 6,1,2 (new)' in out
    assert 'first candidate to train, 2,2,2:' in out and out.rstrip().endswith('dry run OK: nothing was written')
    assert os.listdir(tmp_path) == []
    # a missing teacher stops the search's dry run as it stops the search
    argv[argv.index('--path_t') + 1] = str(tmp_path / 'wrn_40_1_vanilla' / 'ckpt_epoch_240.pth')
    code, _, err = dry(argv, capsys, 'search')
    assert code == 2 and 'teacher checkpoint not found' in err
