"""scripts/reproduce.sh (helper/tools/reproduce.py): planning, dry run, and a killed-then-resumed table."""
import csv
import glob
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from helper.tools import reproduce
from helpers_data import tree


def dry_run(argv, capsys):
    assert reproduce.main(argv + ['--dry_run']) == 0
    return capsys.readouterr().out.splitlines()


def test_dry_run_lists_every_run_and_the_device_hours(capsys, tmp_path):
    lines = dry_run(['repdistiller_same', 'resnet32x4:resnet8x4', 'resnet110:resnet20', '--seeds', '2',
                     '--epoch_s', '15', '--save_root', str(tmp_path)], capsys)
    # the interpreter that will really run them
    commands = [l for l in lines if l.startswith(sys.executable + ' ')]
    # per pair: 13 methods and CRD+KD, 2 seeds; the two students from scratch, 2 seeds
    assert len(commands) == 2 * (2 * 14 + 2)
    assert lines[0].startswith('repdistiller_same: 2 pairs, 60 runs (2 seeds), 0 finished')
    # abound, factor and fsp (both pairs, 2 seeds) add their 30 init epochs
    with_init = [c for c in commands if any(f'--distill {m} ' in c for m in ('abound', 'factor', 'fsp'))]
    assert len(with_init) == 12
    assert f'{(60 * 240 + 12 * 30) * 15 / 3600:.2f} device-hours' in lines[0]
    crd_kd = [c for c in commands if '--distill crd -a 1 -b 0.8' in c and '--model_s resnet20' in c]
    assert len(crd_kd) == 2 and all('--model_t resnet110' in c for c in crd_kd)
    assert '--seed 0' in crd_kd[0] and '--seed 1' in crd_kd[1]
    scratch = [c for c in commands if ' train_teacher.py --model resnet8x4 ' in c]
    assert len(scratch) == 2
    assert any('fetch_pretrained_teachers.sh resnet32x4' in l for l in lines)


def test_dkd_table_is_planned_and_a_missing_teacher_stops_it_with_the_fetch_command(capsys, tmp_path):
    lines = dry_run(['dkd_same', 'resnet56:resnet20', '--seeds', '1', '--save_root', str(tmp_path)], capsys)
    assert any('--distill dkd' in l for l in lines)
    save_root = tmp_path / 'save'
    assert reproduce.main(['dkd_same', 'resnet56:resnet20', '--seeds', '1', '--save_root', str(save_root),
                           '--teacher_dir', str(tmp_path / 'no_teachers')]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ['error: teacher checkpoint missing for resnet56: run bash scripts/fetch_pretrained_teachers.sh '
                   'resnet56 (or pass --teacher_dir)']
    assert not save_root.exists() or not any(save_root.iterdir())  # no run started


def test_usage_errors(capsys):
    assert reproduce.main(['no_such_table']) == 2
    assert 'repdistiller_same' in capsys.readouterr().err
    assert reproduce.main(['repdistiller_same', 'vgg13:resnet20']) == 2
    assert 'not a pair of repdistiller_same' in capsys.readouterr().err
    assert reproduce.main(['repdistiller_same', '--seeds', '0']) == 2
    assert reproduce.main(['repdistiller_same', '--gpus', 'a,b']) == 2


def test_runs_go_through_the_search_scheduler(monkeypatch, tmp_path, capsys):
    """One scheduler: reproduce hands its runs to helper.launch.scheduler.run_parallel over slots_for(--gpus)."""
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


def test_a_log_folder_that_cannot_be_made_is_exit_4_with_one_line(monkeypatch, tmp_path, capsys):
    def fake_run_parallel(jobs, slots, command, poll_s=0.5, popen=None):
        command(jobs[0], slots[0])
        return {}

    monkeypatch.setattr(reproduce, 'run_parallel', fake_run_parallel)
    teacher_dir = tmp_path / 'teachers' / 'resnet56_vanilla'
    teacher_dir.mkdir(parents=True)
    (teacher_dir / 'ckpt_epoch_240.pth').write_bytes(b'')
    (tmp_path / 'reproduce_logs').write_text('a file where the log folder goes')
    code = reproduce.main(['repdistiller_same', 'resnet56:resnet20', '--seeds', '1', '--save_root', str(tmp_path),
                           '--teacher_dir', str(tmp_path / 'teachers')])
    err = capsys.readouterr().err
    assert code == 4 and len(err.splitlines()) == 1 and 'Traceback' not in err
    assert err.startswith(f"error: cannot write {tmp_path / 'reproduce_logs'}: [Errno 17] File exists")


def tiny_table(tmp_path, teacher_ckpt, recipe=''):
    """A one-pair table; recipe: the flags its rows' published command adds (the test's schedule)."""
    published = tmp_path / 'published.csv'
    published.write_text(
        'table,teacher,student,method,top1,std,n,protocol,source_repo,source_file,source_commit,note,recipe\n'
        f'tiny,resnet8,resnet8,teacher,3.0,,,last,test,here,,,{recipe}\n'
        f'tiny,resnet8,resnet8,scratch,2.0,,,last,test,here,,,{recipe}\n'
        f'tiny,resnet8,resnet8,kd,50.0,,,best,test,here,,,{recipe}\n')
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
    """The table's recipe is 4 epochs at batch 16. A 1-epoch smoke run of the table's own KD
    command is neither one of the table's runs nor given a verdict."""
    published, teachers = tiny_table(tmp_path, teacher, recipe='--epochs 4 --batch_size 16')
    save = str(tmp_path / 'save')
    argv = [sys.executable, '-m', 'helper.tools.reproduce', 'tiny', '--seeds', '2', '--published', published,
            '--teacher_dir', teachers, '--save_root', save, '--',
            '--dataset', 'cifar100', '--data_folder', data,
            '--num_workers', '0', '--device', 'cpu', '--print_freq', '1000']
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')
    cut = argv.index('--')
    planned = subprocess.run(argv[:cut] + ['--dry_run'] + argv[cut:], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    kd_seed0 = [l for l in planned.stdout.splitlines() if ' train_student.py ' in l and '--seed 0' in l]
    assert planned.returncode == 0 and len(kd_seed0) == 1, planned.stdout + planned.stderr
    smoke = subprocess.run(shlex.split(kd_seed0[0]) + ['--epochs', '1'], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=300)
    assert smoke.returncode == 0, smoke.stdout[-2000:] + smoke.stderr[-2000:]
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
    assert f'other runs under {save}: 1, left alone (differ in epochs 1 ≠ 4: 1)' in first
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

    assert_the_comparison(save, out)

    third = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert third.returncode == 0 and '4 finished, 0 to resume, 0 to start' in third.stdout
    assert 'start ' not in third.stdout


def assert_the_comparison(save, out):
    """The table's four runs finished; published values, our cells and verdicts under each
    published protocol; the smoke run shown as not comparable."""
    summaries = []
    for path in glob.glob(os.path.join(save, '*', '*', 'summary.json')):
        with open(path) as f:
            summary = json.load(f)
        if summary['epochs'] == 1:  # the smoke run
            continue
        summaries.append(summary)
    assert sorted((s['kind'], s['options']['seed']) for s in summaries) == \
        [('student', 0), ('student', 1), ('teacher', 0), ('teacher', 1)]
    assert all(s['status'] == 'finished' for s in summaries)
    # the comparison: published values, our cells, verdicts under each published protocol
    rows, smoke_rows = {}, []
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if line.startswith('| tiny |') and cells[8].startswith('not comparable'):
            smoke_rows.append(cells)
        elif line.startswith('| tiny |'):
            rows[cells[2]] = cells
    assert set(rows) == {'teacher', 'scratch', 'kd'}, out[-3000:]
    assert [(r[2], r[4], r[7], r[8]) for r in smoke_rows] == [
        ('kd', report_cell_of_smoke(save), '', 'not comparable: epochs 1 ≠ 4')]
    kd = [s['best_acc'] for s in summaries if s['kind'] == 'student']
    assert rows['kd'][3] == 'best' and rows['kd'][6] == '50.00'
    from helper.tools import report
    assert rows['kd'][8] == report.verdict(kd, 50.0)[4]
    scratch = [s['last_acc'] for s in summaries if s['kind'] == 'teacher']
    assert rows['scratch'][4] == report.cell(scratch) and rows['scratch'][8] == report.verdict(scratch, 2.0)[4]
    with open(os.path.join(save, 'results.csv')) as f:
        assert 'verdict' in f.readline()

    with open(os.path.join(save, 'results.csv')) as f:
        verdicts = {r['verdict'] for r in csv.DictReader(f) if r['distill'] == 'kd'}
    assert 'not comparable: epochs 1 ≠ 4' in verdicts and len(verdicts) == 2


def report_cell_of_smoke(save):
    from helper.tools import report
    for path in glob.glob(os.path.join(save, 'student_model', '*', 'summary.json')):
        with open(path) as f:
            summary = json.load(f)
        if summary['epochs'] == 1:
            return report.cell([summary['last_acc']])
    return None


def test_per_pair_recipes_follow_the_authors_settings():
    """DKD's beta and LS's temperature and weight differ per pair: reproduce takes each pair's
    train.sh line, whose values are the authors' (tests/fixtures/logit_methods.json)."""
    import json
    from helper.tools.reproduce import pair_recipe
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
    published, teachers = tiny_table(tmp_path, teacher, recipe='--epochs 3 --batch_size 16')
    save = tmp_path / 'save'
    argv = [sys.executable, '-m', 'helper.tools.reproduce', 'tiny', '--seeds', '2', '--published', published,
            '--teacher_dir', teachers, '--save_root', str(save), '--launcher', 'slurm',
            '--slurm_executor', 'local', '--slurm_poll', '0.2', '--',
            '--dataset', 'cifar100', '--data_folder', data,
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


def test_methods_selects_rows_within_a_pair(capsys, tmp_path):
    lines = dry_run(['repdistiller_same', 'resnet56:resnet20', '--seeds', '1', '--methods', 'kd,crd',
                     '--save_root', str(tmp_path)], capsys)
    commands = [l for l in lines if l.startswith(sys.executable + ' ')]
    assert len(commands) == 2 and lines[0].startswith('repdistiller_same: 1 pairs, 2 runs (1 seeds)')
    assert '--distill kd -r 0.1 -a 0.9 -b 0' in commands[0] and '--distill crd -a 0 -b 0.8' in commands[1]
    lines = dry_run(['repdistiller_same', 'resnet56:resnet20', '--seeds', '1', '--methods', 'scratch',
                     '--save_root', str(tmp_path)], capsys)
    assert [l.split()[1] for l in lines if l.startswith(sys.executable + ' ')] == ['train_teacher.py']
    assert reproduce.main(['repdistiller_same', '--methods', 'kd,nope', '--dry_run']) == 2
    assert 'nope is not a method of repdistiller_same' in capsys.readouterr().err


def test_the_teachers_table_says_how_to_check_the_teachers(capsys):
    assert reproduce.main(['teachers', '--dry_run']) == 2
    err = capsys.readouterr().err
    assert 'fetched, not trained' in err and 'fetch_pretrained_teachers.sh --eval' in err


def test_relative_paths_are_taken_from_where_the_script_runs(tmp_path):
    """As fetch_pretrained_teachers.sh takes them: relative to the caller's folder, not the repository."""
    work = tmp_path / 'work'
    (work / 'teach' / 'resnet56_vanilla').mkdir(parents=True)
    (work / 'teach' / 'resnet56_vanilla' / 'ckpt_epoch_240.pth').write_bytes(b'x')
    proc = subprocess.run(['bash', os.path.join(ROOT, 'scripts', 'reproduce.sh'), 'repdistiller_same',
                           'resnet56:resnet20', '--seeds', '1', '--methods', 'kd', '--save_root', 'mine',
                           '--teacher_dir', 'teach', '--dry_run'], cwd=str(work), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    command = [l for l in proc.stdout.splitlines() if 'train_student.py ' in l][0]
    assert command.startswith(os.path.join(ROOT, '.venv', 'bin', 'python') + ' ' + os.path.join(ROOT, 'train_'))
    assert f"--save_root {work / 'mine'}" in command
    assert f"--path_t {work / 'teach' / 'resnet56_vanilla' / 'ckpt_epoch_240.pth'}" in command
    assert 'not fetched' not in proc.stdout
    assert not os.path.exists(os.path.join(ROOT, 'mine')) and not (work / 'mine').exists()


def test_a_smoke_run_is_not_the_tables_run_and_odd_folders_are_left_alone(capsys, tmp_path):
    save = tmp_path / 'save'
    args = ['repdistiller_same', 'resnet56:resnet20', '--seeds', '1', '--methods', 'kd',
            '--save_root', str(save)]
    lines = dry_run(args, capsys)
    command = shlex.split([l for l in lines if ' train_student.py ' in l][0])[2:]
    smoke = reproduce.inspect(reproduce.Job('student', 'resnet20', command + ['--epochs', '1'],
                                            teacher='resnet56', method='kd'))
    os.makedirs(smoke.run_dir)
    with open(os.path.join(smoke.run_dir, 'summary.json'), 'w') as f:
        json.dump({'status': 'finished', 'kind': 'student', 'model_s': 'resnet20', 'model_t': 'resnet56',
                   'options': smoke.options, 'epochs': 1, 'epochs_done': 1}, f)
    (save / 'student_model' / 'half').mkdir()
    (save / 'student_model' / 'half' / 'summary.json').write_text('{"status": "runn')
    (save / 'models' / 'stuff').mkdir(parents=True)
    before = tree(str(save))
    lines = dry_run(args, capsys)
    assert lines[0].startswith('repdistiller_same: 1 pairs, 1 runs (1 seeds), 0 finished, 0 to resume, 1 to start')
    assert f'other runs under {save}: 1, left alone (differ in epochs 1 ≠ 240: 1)' in lines
    assert any(l.startswith(f'incomplete or foreign folders under {save}: 2, left alone') and 'student_model/half'
               in l and 'models/stuff' in l for l in lines), lines
    assert tree(str(save)) == before


def test_flags_that_change_the_recipe_are_named(capsys, tmp_path):
    args = ['repdistiller_same', 'resnet56:resnet20', '--seeds', '1', '--methods', 'kd', '--save_root', str(tmp_path)]
    assert not any(l.startswith('note:') for l in dry_run(args, capsys))
    assert reproduce.main(args + ['--dry_run', '--', '--epochs', '1', '--num_workers', '0']) == 0
    lines = capsys.readouterr().out.splitlines()
    assert 'note: the flags after -- change the published recipe (epochs 1 ≠ 240): report.py will show these ' \
           'runs as not comparable' in lines


@pytest.mark.parametrize('table', ['repdistiller_same', 'repdistiller_different', 'dkd_same', 'dkd_different',
                                   'dist', 'ls_same', 'ls_different', 'dot', 'reviewkd_ofd_same',
                                   'reviewkd_ofd_different'])
def test_every_planned_run_is_one_the_report_compares(table, tmp_path):
    """reproduce.sh's commands and report.py's recipes agree: each run a table plans, made as planned,
    gets a verdict (is comparable with its published row)."""
    from helper.tools import report
    args = reproduce.parse_args([table, '--seeds', '2', '--save_root', str(tmp_path)])
    jobs, _ = reproduce.plan(args)
    assert jobs
    for job in jobs:
        reproduce.inspect(job)
        assert job.problem is None, (job.name, job.problem)
        run = {'options': job.options}
        assert report.not_comparable(run, job.row) is None, job.name
        assert report.not_comparable({'options': dict(job.options, epochs=1)}, job.row) == 'epochs 1 ≠ 240'


def test_mdistiller_tables_plan_reviewkd_ofd_and_kd_dot(capsys, tmp_path):
    from distiller_zoo.reviewkd import PAIR_WEIGHTS
    from helper.tools.reproduce import pair_recipe
    lines = dry_run(['dot', 'resnet32x4:ShuffleV2', '--seeds', '1', '--save_root', str(tmp_path)], capsys)
    commands = [l for l in lines if l.startswith(sys.executable + ' ') and ' train_student.py ' in l]
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
    from helper.tools import report
    run = {'row': 'kd', 'options': {'optimizer': 'dot'}}
    assert report.comparison_label(run) == 'kd+dot'
    assert report.comparison_label({'row': 'kd', 'options': {'optimizer': 'sgd'}}) == 'kd'
