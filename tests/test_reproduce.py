"""scripts/reproduce.sh (helper/reproduce.py): planning, dry run, and a killed-then-resumed table."""
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from helper import reproduce


def dry_run(argv, capsys):
    assert reproduce.main(argv + ['--dry_run']) == 0
    return capsys.readouterr().out.splitlines()


def test_dry_run_lists_every_run_and_the_device_hours(capsys, tmp_path):
    lines = dry_run(['repdistiller_same', 'resnet32x4:resnet8x4', 'resnet110:resnet20', '--seeds', '2',
                     '--epoch_s', '15', '--save_root', str(tmp_path)], capsys)
    commands = [l for l in lines if l.startswith('python ')]
    # per pair: 13 methods and CRD+KD, 2 seeds; the two students from scratch, 2 seeds
    assert len(commands) == 2 * (2 * 14 + 2)
    assert lines[0].startswith('repdistiller_same: 2 pairs, 60 runs (2 seeds), 0 finished')
    assert f'{60 * 240 * 15 / 3600:.2f} device-hours' in lines[0]
    crd_kd = [c for c in commands if '--distill crd -a 1 -b 0.8' in c and '--model_s resnet20' in c]
    assert len(crd_kd) == 2 and all('--model_t resnet110' in c for c in crd_kd)
    assert '--seed 0' in crd_kd[0] and '--seed 1' in crd_kd[1]
    scratch = [c for c in commands if c.startswith('python train_teacher.py --model resnet8x4 ')]
    assert len(scratch) == 2
    assert any('fetch_pretrained_teachers.sh resnet32x4' in l for l in lines)


def test_newer_methods_are_planned_even_before_this_build_has_them(capsys, tmp_path):
    lines = dry_run(['dkd_same', 'resnet56:resnet20', '--seeds', '1', '--save_root', str(tmp_path)], capsys)
    assert any('--distill dkd' in l for l in lines)
    assert reproduce.main(['dkd_same', 'resnet56:resnet20', '--seeds', '1', '--save_root', str(tmp_path)]) in (1, 2)


def test_usage_errors(capsys):
    assert reproduce.main(['no_such_table']) == 2
    assert 'repdistiller_same' in capsys.readouterr().err
    assert reproduce.main(['repdistiller_same', 'vgg13:resnet20']) == 2
    assert 'not a pair of repdistiller_same' in capsys.readouterr().err
    assert reproduce.main(['repdistiller_same', '--seeds', '0']) == 2
    assert reproduce.main(['repdistiller_same', '--gpus', 'a,b']) == 2


def test_runs_go_through_the_search_scheduler(monkeypatch, tmp_path, capsys):
    """One scheduler: reproduce hands its runs to helper.scheduler.run_parallel over slots_for(--gpus)."""
    seen = {}

    def fake_run_parallel(jobs, slots, command, poll_s=0.5, popen=None):
        seen['slots'] = slots
        seen['envs'] = [command(job, slot)[1]['CUDA_VISIBLE_DEVICES'] for job, slot in zip(jobs, slots)]
        return {}

    monkeypatch.setattr(reproduce, 'run_parallel', fake_run_parallel)
    monkeypatch.setattr(reproduce, 'report_at_end', lambda args, out: 0)
    teacher_dir = tmp_path / 'teachers' / 'resnet56_vanilla'
    teacher_dir.mkdir(parents=True)
    (teacher_dir / 'ckpt_epoch_240.pth').write_bytes(b'')
    assert reproduce.main(['repdistiller_same', 'resnet56:resnet20', '--seeds', '1', '--gpus', '2,5',
                           '--save_root', str(tmp_path), '--teacher_dir', str(tmp_path / 'teachers')]) == 0
    assert seen['slots'] == ['2', '5'] and seen['envs'] == ['2', '5']


def tiny_table(tmp_path, teacher_ckpt):
    published = tmp_path / 'published.csv'
    published.write_text(
        'table,teacher,student,method,top1,std,n,protocol,source_repo,source_file,source_commit,note\n'
        'tiny,resnet8,resnet8,teacher,3.0,,,last,test,here,,\n'
        'tiny,resnet8,resnet8,scratch,2.0,,,last,test,here,,\n'
        'tiny,resnet8,resnet8,kd,50.0,,,best,test,here,,\n')
    folder = tmp_path / 'teachers' / 'resnet8_vanilla'
    folder.mkdir(parents=True)
    shutil.copy(teacher_ckpt, folder / 'ckpt_epoch_240.pth')
    return str(published), str(tmp_path / 'teachers')


def unfinished_with_checkpoint(save):
    for last in glob.glob(os.path.join(save, '*', '*', 'resnet8_last.pth')):
        with open(os.path.join(os.path.dirname(last), 'summary.json')) as f:
            if json.load(f).get('status') != 'finished':
                return last
    return None


@pytest.mark.slow
def test_tiny_table_killed_then_resumed_ends_with_the_comparison(tmp_path, data, teacher):
    published, teachers = tiny_table(tmp_path, teacher)
    save = str(tmp_path / 'save')
    argv = [sys.executable, '-m', 'helper.reproduce', 'tiny', '--seeds', '2', '--published', published,
            '--teacher_dir', teachers, '--save_root', save, '--',
            '--dataset', 'cifar100', '--data_folder', data, '--epochs', '4', '--batch_size', '16',
            '--num_workers', '0', '--device', 'cpu', '--print_freq', '1000']
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')
    first_log = tmp_path / 'first.log'
    with open(first_log, 'w') as log:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        deadline = time.time() + 600
        while time.time() < deadline and proc.poll() is None:
            if '1/4 runs done' in first_log.read_text() and unfinished_with_checkpoint(save):
                break
            time.sleep(0.1)
        assert proc.poll() is None, first_log.read_text()
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its training run die at once
        proc.wait()
    first = first_log.read_text()
    assert 'tiny: 1 pairs, 4 runs (2 seeds), 0 finished, 0 to resume, 4 to start' in first
    interrupted = unfinished_with_checkpoint(save)
    assert interrupted

    second = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    out = second.stdout
    assert second.returncode == 0, out[-3000:] + second.stderr[-3000:]
    assert 'tiny: 1 pairs, 4 runs (2 seeds), 1 finished, 1 to resume, 2 to start' in out
    assert sum(l.startswith('start ') for l in out.splitlines()) == 3
    assert out.count(' (resume)') == 1
    assert '4/4 runs done' in out and 'left' in out
    with open(os.path.join(os.path.dirname(interrupted), 'summary.json')) as f:
        resumed = json.load(f)
    assert resumed['status'] == 'finished' and resumed['epochs_done'] == 4

    summaries = []
    for path in glob.glob(os.path.join(save, '*', '*', 'summary.json')):
        with open(path) as f:
            summaries.append(json.load(f))
    assert sorted((s['kind'], s['options']['seed']) for s in summaries) == \
        [('student', 0), ('student', 1), ('teacher', 0), ('teacher', 1)]
    assert all(s['status'] == 'finished' for s in summaries)
    # the comparison: published values, our cells, verdicts under each published protocol
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if line.startswith('| tiny |'):
            rows[cells[2]] = cells
    assert set(rows) == {'teacher', 'scratch', 'kd'}, out[-3000:]
    kd = [s['best_acc'] for s in summaries if s['kind'] == 'student']
    assert rows['kd'][3] == 'best' and rows['kd'][6] == '50.00'
    import report
    assert rows['kd'][8] == report.verdict(kd, 50.0)[4]
    scratch = [s['last_acc'] for s in summaries if s['kind'] == 'teacher']
    assert rows['scratch'][4] == report.cell(scratch) and rows['scratch'][8] == report.verdict(scratch, 2.0)[4]
    with open(os.path.join(save, 'results.csv')) as f:
        assert 'verdict' in f.readline()

    third = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert third.returncode == 0 and '4 finished, 0 to resume, 0 to start' in third.stdout
    assert 'start ' not in third.stdout


def test_per_pair_recipes_follow_the_authors_settings():
    """DKD's beta and LS's temperature and weight differ per pair: reproduce takes each pair's
    train.sh line, whose values are the authors' (tests/fixtures/logit_methods.json)."""
    import json
    from helper.reproduce import pair_recipe
    fixtures = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures', 'logit_methods.json')
    checked = 0
    for pair in json.load(open(fixtures))['pairs']:
        t, s = pair['teacher'], pair['student']
        if pair['dkd']['reported']:
            flags = pair_recipe('dkd', t, s)
            assert flags[flags.index('--dkd_beta') + 1] == f"{pair['dkd']['beta']['value']:g}", (t, s)
            checked += 1
        if pair['ls_kd']['reported']:
            flags = pair_recipe('kd+ls', t, s)
            assert '--logit_stand' in flags
            assert float(flags[flags.index('--kd_T') + 1]) == pair['ls_kd']['effective']['T'], (t, s)
            assert float(flags[flags.index('-a') + 1]) == pair['ls_kd']['effective']['kd_loss_weight'], (t, s)
            checked += 1
    assert checked >= 15
    assert pair_recipe('crd', 'resnet56', 'resnet20') == ['--distill', 'crd', '-a', '0', '-b', '0.8']


@pytest.mark.slow
def test_tiny_table_on_slurm_driver_killed_then_reattached(tmp_path, data, teacher):
    """--launcher slurm through submitit's local executor: the runs go out as jobs whose ids the
    driver keeps; a driver killed mid-table is rerun, reattaches instead of submitting again, and
    ends with the comparison."""
    from helpers_data import subprocess_env
    published, teachers = tiny_table(tmp_path, teacher)
    save = tmp_path / 'save'
    argv = [sys.executable, '-m', 'helper.reproduce', 'tiny', '--seeds', '2', '--published', published,
            '--teacher_dir', teachers, '--save_root', str(save), '--launcher', 'slurm',
            '--slurm_executor', 'local', '--slurm_poll', '0.2', '--',
            '--dataset', 'cifar100', '--data_folder', data, '--epochs', '3', '--batch_size', '16',
            '--num_workers', '0', '--device', 'cpu', '--print_freq', '1000']
    state = save / 'reproduce_tiny.json'

    def jobs_recorded():
        try:
            return len(json.loads(state.read_text()).get('jobs', {})) == 4
        except (OSError, ValueError):
            return False
    first = subprocess.Popen(argv, cwd=ROOT, env=subprocess_env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not jobs_recorded():
        time.sleep(0.2)
    assert jobs_recorded()
    first.kill()  # the driver only: its jobs go on
    first.wait()
    second = subprocess.run(argv, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    out = second.stdout
    assert second.returncode == 0, out[-3000:] + second.stderr[-3000:]
    assert '[slurm] submitted' not in out
    assert 1 <= out.count('[slurm] reattached to job') <= 4
    summaries = [json.load(open(p)) for p in glob.glob(os.path.join(save, '*', '*', 'summary.json'))]
    assert sorted((s['kind'], s['status'], s['epochs_done']) for s in summaries) == \
        [('student', 'finished', 3)] * 2 + [('teacher', 'finished', 3)] * 2
    assert sum(line.startswith('| tiny |') for line in out.splitlines()) == 3  # teacher, scratch, kd


def test_mdistiller_tables_plan_reviewkd_ofd_and_kd_dot(capsys, tmp_path):
    from distiller_zoo.reviewkd import PAIR_WEIGHTS
    from helper.reproduce import pair_recipe
    lines = dry_run(['dot', 'resnet32x4:ShuffleV2', '--seeds', '1', '--save_root', str(tmp_path)], capsys)
    commands = [l for l in lines if l.startswith('python train_student.py')]
    assert any('--distill kd -r 0.1 -a 0.9 -b 0 --optimizer dot --dot_delta 0.075' in c for c in commands)
    assert any('--distill kd -r 0.1 -a 0.9 -b 0 ' in c and '--optimizer' not in c for c in commands)
    lines = dry_run(['reviewkd_ofd_same', 'resnet56:resnet20', '--seeds', '1', '--save_root', str(tmp_path)], capsys)
    assert any('--distill reviewkd -b 0.6' in l for l in lines) and any('--distill ofd' in l for l in lines)
    # the train.sh lines carry the authors' per-pair weights, which are also the --distill defaults
    for (t, s), weight in PAIR_WEIGHTS.items():
        flags = pair_recipe('reviewkd', t, s)
        assert float(flags[flags.index('-b') + 1]) == weight, (t, s)
    assert pair_recipe('reviewkd', 'wrn_40_2', 'wrn_16_2')[-2:] == ['-b', '5']


def test_dot_runs_compare_as_their_own_row():
    import report
    run = {'row': 'kd', 'options': {'optimizer': 'dot'}}
    assert report.comparison_label(run) == 'kd+dot'
    assert report.comparison_label({'row': 'kd', 'options': {'optimizer': 'sgd'}}) == 'kd'
