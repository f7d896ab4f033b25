"""The slurm backend (--launcher slurm, through submitit) without a cluster: the sbatch script and
job ids with stand-in sbatch/srun/sacct commands, and the whole path end to end with submitit's
local executor (runs preempted and requeued, a driver killed and rerun reattaching to its jobs).
Without submitit only the tests that use it are skipped."""
import csv
import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest

import search
from helper.errors import UsageError
from helper.engine.run import run_dir_of
from helper.launch.scheduler import Run, slurm_minutes
from helpers_data import ROOT, descendants, student_args, subprocess_env

try:
    import submitit
except ImportError:  # an optional dependency: the launcher's own logic is still tested
    submitit = None
needs_submitit = pytest.mark.skipif(submitit is None, reason='needs submitit (pip install submitit)')


@pytest.fixture(scope='module')
def teacher(teachers):
    # a myresnet14 teacher at 2,6,2 bounds a myresnet14 search to two candidates: 2,2,2 and 2,6,1
    return teachers('myresnet14', '2,6,2')


def search_argv(data, save_root, teacher, *extra, epochs=1):
    argv = student_args(data, str(save_root), teacher, 'kd', 'myresnet14', '--block_depth', '2,2,2', *extra)
    argv[argv.index('--epochs') + 1] = str(epochs)
    return argv


def fake_slurm(tmp_path, monkeypatch, sacct=''):
    """sbatch/srun/sacct stand-ins on PATH: sbatch counts its calls and answers job 4242 (then 4243, ...)."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    count = tmp_path / 'sbatch_calls'
    scripts = {
        'sbatch': f'#!/bin/sh\necho "$1" >> {count}\necho "Submitted batch job $((4241 + $(wc -l < {count})))"\n',
        'srun': '#!/bin/sh\nexit 0\n',
        'sacct': f'#!/bin/sh\nprintf "JobID|State|NodeList\\n{sacct}"\n',
        'scontrol': '#!/bin/sh\nexit 0\n',
    }
    for name, text in scripts.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv('PATH', f'{bin_dir}{os.pathsep}{os.environ["PATH"]}')
    submitit.SlurmJob.watcher.clear()
    return count


def parse(argv, final=False):
    from helper.engine.options import finalize
    opt = search.search_parser().parse_args(argv)
    return finalize(opt, 'student') if final else opt


def backend_for(opt, jobs, saved):
    from helper.launch.slurm import SlurmBackend
    return SlurmBackend(opt, jobs, lambda: saved.append(dict(jobs)), log=lambda msg: saved.append(msg))


def runs_in(tmp_path, n=2):
    return [Run(f'run{i}', ['train_student.py', '--trial', str(i)], str(tmp_path / f'run{i}'),
                str(tmp_path / f'run{i}' / 'last.pth')) for i in range(n)]


def test_slurm_time_forms():
    assert [slurm_minutes(t) for t in ('90', '10:30', '4:00:00', '1-00', '2-12:30', '1-0:0:1')] == \
        [90, 11, 240, 1440, 3630, 1441]
    for bad in ('', '4h', '0', '1:2:3:4'):
        with pytest.raises(UsageError, match='--slurm_time'):
            slurm_minutes(bad)


@needs_submitit
def test_sbatch_script_carries_the_requested_resources(data, tmp_path, monkeypatch):
    calls = fake_slurm(tmp_path, monkeypatch)
    argv = search_argv(data, tmp_path, 'teacher.pth', '--launcher', 'slurm', '--slurm_partition', 'gpu',
                       '--slurm_time', '4:00:00', '--slurm_gpus_per_job', '1', '--slurm_cpus_per_task', '6',
                       '--slurm_account', 'lab', '--slurm_qos', 'high', '--slurm_extra', 'mem=64G',
                       '--slurm_extra=--constraint=a100')
    jobs, saved = {}, []
    submitted = backend_for(parse(argv), jobs, saved).submit(runs_in(tmp_path), 'BCS_x')
    assert [j.job_id for j in submitted] == ['4242_0', '4242_1']
    assert {r: j['job_id'] for r, j in jobs.items()} == {str(tmp_path / 'run0'): '4242_0',
                                                        str(tmp_path / 'run1'): '4242_1'}
    assert saved[0] == jobs  # recorded as soon as submitted
    with open(calls) as f:
        assert len(f.read().splitlines()) == 1  # one array, one sbatch
    text = (tmp_path / 'slurm' / '4242_submission.sh').read_text()
    for line in ('--partition=gpu', '--time=240', '--gpus-per-node=1', '--array=0-1%2', '--nodes=1',
                 '--ntasks-per-node=1', '--cpus-per-task=6', '--account=lab', '--qos=high', '--mem=64G',
                 '--constraint=a100', '--job-name=BCS_x', '--signal=USR2@120'):
        assert f'#SBATCH {line}\n' in text, line
    assert f'env PYTHONPATH={ROOT}' in text  # the job finds the repository wherever the driver ran

    # one run over 2 nodes x 8 GPUs: a task per GPU
    argv = search_argv(data, tmp_path, 'teacher.pth', '--launcher', 'slurm', '--slurm_nodes', '2',
                       '--slurm_gpus_per_job', '16', '--slurm_folder', str(tmp_path / 'multi'))
    (job,) = backend_for(parse(argv), {}, []).submit(runs_in(tmp_path, 1))
    assert job.job_id == '4243'
    text = (tmp_path / 'multi' / '4243_submission.sh').read_text()
    for line in ('--nodes=2', '--ntasks-per-node=8', '--gpus-per-node=8'):
        assert f'#SBATCH {line}\n' in text, line
    assert '--array' not in text


@needs_submitit
def test_rerun_reattaches_to_running_jobs_and_resubmits_ended_ones(data, tmp_path, monkeypatch):
    calls = fake_slurm(tmp_path, monkeypatch, sacct='4242_0|RUNNING|n1\\n4242_1|FAILED|n2\\n4242_2|RUNNING|n3\\n')
    runs = runs_in(tmp_path, 3)

    def finish(r):
        os.makedirs(r.run_dir, exist_ok=True)
        with open(os.path.join(r.run_dir, 'summary.json'), 'w') as f:
            json.dump({'status': 'finished'}, f)
    finish(runs[2])  # finished already: neither waited on nor submitted
    folder = str(tmp_path / 'slurm')
    jobs = {r.run_dir: {'job_id': f'4242_{i}', 'executor': 'slurm', 'folder': folder} for i, r in enumerate(runs)}
    argv = search_argv(data, tmp_path, 'teacher.pth', '--launcher', 'slurm', '--slurm_poll', '0.01')
    log = []

    def record(msg):
        log.append(msg)
        if msg.startswith('[slurm] submitted'):  # the runs end once everything is out
            for r in runs[:2]:
                finish(r)
    from helper.launch.slurm import SlurmBackend
    assert SlurmBackend(parse(argv), jobs, lambda: None, log=record).run(runs) == {}
    assert '[slurm] reattached to job 4242_0 (RUNNING): run0' in log
    assert not any('4242_2' in line for line in log)
    with open(calls) as f:
        assert len(f.read().splitlines()) == 1  # only the failed one went out again
    assert [jobs[r.run_dir]['job_id'] for r in runs] == ['4242_0', '4242', '4242_2']


class FakeBackend:
    """Stands in for the cluster: each job is its run's summary.json, written at once with the
    accuracy the test chose, from train_student's own parse of the job's command line."""

    def __init__(self, opt, jobs, save, scores, batches):
        self.jobs, self.save, self.scores, self.batches = jobs, save, scores, batches

    def run(self, runs, job_name):
        from helper.engine.options import finalize, student_parser
        batch = []
        for i, r in enumerate(runs):
            assert r.argv[0] == search.TRAIN_STUDENT and '--resume' not in r.argv  # the job decides that
            opt = finalize(student_parser().parse_args(r.argv[1:]), 'student')
            assert run_dir_of(opt, 'student') == r.run_dir
            batch.append((tuple(opt.block_depth), opt.epochs, opt.trial))
            self.jobs[r.run_dir] = {'job_id': f'{len(self.batches) + 1}_{i}', 'executor': 'slurm', 'folder': 'f'}
            os.makedirs(r.run_dir)
            with open(os.path.join(r.run_dir, 'summary.json'), 'w') as f:
                json.dump({'status': 'finished', 'params': 1, 'best_acc': self.scores[tuple(opt.block_depth)],
                           'last_acc': 1.0, 'run_dir': r.run_dir, 'wall_time_s': 360.0,
                           'options': {}}, f)
        self.save()
        self.batches.append(batch)
        return {}


def test_search_sends_each_phase_as_one_batch_and_the_final_run_as_a_job(data, teacher, tmp_path,
                                                                         monkeypatch):
    batches = []
    monkeypatch.setattr(search, 'slurm_backend',
                        lambda opt, jobs, save: FakeBackend(opt, jobs, save, {(2, 2, 2): 50.0, (2, 6, 1): 60.0},
                                                            batches))
    argv = search_argv(data, tmp_path, teacher, '--launcher', 'slurm', '--slurm_gpus_per_job', '2',
                       '--search_epochs', '1', epochs=2)
    assert search.main(argv) == 0
    assert batches == [[((2, 2, 2), 1, '1-bcs1'), ((2, 6, 1), 1, '1-bcs1')], [((2, 6, 1), 2, '1')]]
    with open(glob.glob(os.path.join(str(tmp_path), 'search', 'BCS_*', 'search.json'))[0]) as f:
        result = json.load(f)
    assert [c['job_id'] for c in result['candidates']] == ['1_0', '1_1']
    assert result['final']['job_id'] == '2_0' and result['winner']['block_depth'] == [2, 6, 1]
    assert result['final']['device_hours'] == pytest.approx(0.2)  # 360 s on 2 GPUs
    assert len(result['jobs']) == 3


@needs_submitit
def test_a_job_left_preempted_ends_the_wait_with_its_id(data, tmp_path, monkeypatch):
    import helper.launch.slurm
    fake_slurm(tmp_path, monkeypatch, sacct='4242_0|PREEMPTED|n1\\n')
    monkeypatch.setattr(helper.launch.slurm, 'PREEMPTED_WAIT_S', 0.3)
    (run,) = runs_in(tmp_path, 1)
    jobs = {run.run_dir: {'job_id': '4242_0', 'executor': 'slurm', 'folder': str(tmp_path / 'slurm')}}
    argv = search_argv(data, tmp_path, 'teacher.pth', '--launcher', 'slurm', '--slurm_poll', '0.05')
    log = []
    failed = backend_for(parse(argv), jobs, log).run([run])
    assert '[slurm] reattached to job 4242_0 (PREEMPTED): run0' in log  # SLURM may still requeue it
    assert failed[0].startswith('job 4242_0 ended (PREEMPTED, not requeued); its errors are in ')
    assert failed[0].endswith('4242_0_0_log.err, its output in ' + str(tmp_path / 'slurm' / '4242_0_0_log.out'))


def test_a_job_sacct_never_reports_ends_the_wait_with_one_line(data, tmp_path, monkeypatch):
    import helper.launch.slurm
    fake_slurm(tmp_path, monkeypatch, sacct='')  # purged from the accounting, or on another cluster
    monkeypatch.setattr(helper.launch.slurm, 'UNKNOWN_WAIT_S', 0.3)
    (run,) = runs_in(tmp_path, 1)
    jobs = {run.run_dir: {'job_id': '4242_0', 'executor': 'slurm', 'folder': str(tmp_path / 'slurm')}}
    argv = search_argv(data, tmp_path, 'teacher.pth', '--launcher', 'slurm', '--slurm_poll', '0.05')
    log = []
    failed = backend_for(parse(argv), jobs, log).run([run])
    assert '[slurm] reattached to job 4242_0 (UNKNOWN): run0' in log
    assert list(failed) == [0] and '\n' not in failed[0]
    assert failed[0].startswith('job 4242_0 ended (UNKNOWN, sacct has not reported it for 0.3 s); its errors are in ')


def test_launcher_flags_are_checked_before_anything_is_written(data, teacher, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv('PATH', str(tmp_path / 'no_slurm_here'))
    bad = [(['--gpus', '0,1'], '--slurm_gpus_per_job'),
           (['--nproc_per_node', '2'], '--slurm_gpus_per_job'),
           (['--slurm_time', '4h'], '--slurm_time'),
           (['--slurm_extra', 'mem'], 'KEY=VALUE'),
           (['--slurm_nodes', '2', '--slurm_gpus_per_job', '3'], 'split evenly'),
           (['--slurm_executor', 'local', '--slurm_nodes', '2', '--slurm_gpus_per_job', '2'], 'this machine')]
    for extra, message in bad:
        assert search.main(search_argv(data, tmp_path, teacher, '--launcher', 'slurm', *extra)) == 2, extra
        err = capsys.readouterr().err
        assert err.startswith('error: ') and message in err and err.count('\n') == 1, (extra, err)
    assert not os.path.exists(os.path.join(str(tmp_path), 'search'))
    assert search.main(search_argv(data, tmp_path, teacher, '--slurm_partition', 'gpu')) == 2
    assert capsys.readouterr().err == 'error: --slurm_partition is for SLURM jobs; add --launcher slurm\n'


def one_line_error(argv, capsys):
    assert search.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and err.count('\n') == 1, err
    return err


@needs_submitit
def test_slurm_launcher_without_sbatch_says_so(data, teacher, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv('PATH', str(tmp_path / 'no_slurm_here'))
    assert 'no sbatch/srun' in one_line_error(search_argv(data, tmp_path, teacher, '--launcher', 'slurm'), capsys)
    assert not os.path.exists(os.path.join(str(tmp_path), 'search'))


def test_slurm_launcher_without_submitit_says_how_to_install_it(data, teacher, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, 'submitit', None)  # import submitit fails, as where it is not installed
    err = one_line_error(search_argv(data, tmp_path, teacher, '--launcher', 'slurm'), capsys)
    assert err == 'error: --launcher slurm needs submitit: pip install submitit\n'


@pytest.mark.slow
def test_submitit_is_imported_only_for_the_slurm_launcher():
    code = ('import sys, search, train_student; from helper.launch import scheduler; '
            'search.search_parser().parse_args(["--path_t", "x.pth", "--model_s", "myresnet14"]); '
            'assert "submitit" not in sys.modules')
    subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=subprocess_env(), check=True, timeout=120)


@needs_submitit
def test_torch_distributed_variables_of_a_multi_node_task(monkeypatch):
    from helper.launch.slurm import torch_env
    monkeypatch.setenv('SUBMITIT_EXECUTOR', 'slurm')
    for key, value in {'SLURM_JOB_ID': '77', 'SLURM_NTASKS': '16', 'SLURM_JOB_NUM_NODES': '2',
                       'SLURM_NODEID': '1', 'SLURM_PROCID': '11', 'SLURM_LOCALID': '3',
                       'SLURM_JOB_NODELIST': 'gpu[07-08]', 'CUDA_VISIBLE_DEVICES': '0,1,2,3,4,5,6,7'}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv('MASTER_PORT', raising=False)
    env = torch_env()
    assert {k: env[k] for k in ('MASTER_ADDR', 'RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'LOCAL_WORLD_SIZE')} == \
        {'MASTER_ADDR': 'gpu07', 'RANK': '11', 'WORLD_SIZE': '16', 'LOCAL_RANK': '3', 'LOCAL_WORLD_SIZE': '8'}
    assert 20000 <= int(env['MASTER_PORT']) <= 60000
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '3')  # the cluster bound one GPU to this task
    assert torch_env()['LOCAL_RANK'] == '0'
    monkeypatch.setenv('SLURM_NTASKS', '1')
    assert torch_env() == {}


# ---- end to end with submitit's local executor ----

def wait_for(condition, timeout=240, what=''):
    end = time.time() + timeout
    while time.time() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f'timed out waiting for {what}')


def summary_of(run_dir):
    try:
        with open(os.path.join(run_dir, 'summary.json')) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def worker_pid(controller_pid):
    """The submitit worker a local job's controller started."""
    def child():
        try:
            with open(f'/proc/{controller_pid}/task/{controller_pid}/children') as f:
                return f.read().split()
        except OSError:
            return None
    return int(wait_for(child, what='the job worker')[0])


def epochs_of(run_dir):
    with open(os.path.join(run_dir, 'log.csv'), newline='') as f:
        return [int(row['epoch']) for row in csv.DictReader(f)]


@needs_submitit
@pytest.mark.slow
@pytest.mark.parametrize('how', ['preempted', 'time_limit', 'preempted_2_processes', 'preempted_every_process'])
def test_requeued_job_continues_its_run_with_resume(data, teacher, tmp_path, monkeypatch, how):
    """Preempted: SIGTERM to the job. Time limit: submitit's USR2 to it. Either way the run writes its
    checkpoint, submitit's checkpointing hook requeues the job and the run continues with --resume.
    With 2 processes (2 "GPUs", gloo on the CPU) the job is one DDP run, as under torchrun. Every
    process: SIGTERM to each process of the job at once (its loader workers too), as SLURM sends it."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv('OMP_NUM_THREADS', '1')
    epochs = 6
    gpus = '2' if how.endswith('2_processes') else '1'
    argv = search_argv(data, tmp_path, teacher, '--launcher', 'slurm', '--slurm_executor', 'local',
                       '--slurm_poll', '0.2', '--slurm_gpus_per_job', gpus, epochs=epochs)
    if how == 'preempted_every_process':
        argv[argv.index('--num_workers') + 1] = '2'
    opt = parse(argv, final=True)
    c = search.candidate_options(opt, (2, 2, 2), short=False)
    run_dir = run_dir_of(c, 'student')
    run = Run('2,2,2', [search.TRAIN_STUDENT] + search.candidate_argv(c), run_dir,
              os.path.join(run_dir, 'myresnet14_last.pth'))
    jobs, log = {}, []
    backend = backend_for(opt, jobs, log)
    (job,) = backend.submit([run])
    wait_for(lambda: summary_of(run_dir).get('epochs_done', 0) >= 1, what='epoch 1')
    if how == 'preempted_every_process':
        pids = [int(job.job_id)] + descendants(int(job.job_id))
        assert len(pids) >= 5  # controller, task, run, its loader workers
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
    elif how.startswith('preempted'):
        os.kill(int(job.job_id), signal.SIGTERM)  # the controller passes it on, as SLURM signals the job
    else:
        os.kill(worker_pid(job.job_id), signal.SIGUSR2)
    assert backend._wait([run], {0: job}) == {}

    summary = summary_of(run_dir)
    assert summary['status'] == 'finished' and summary['epochs_done'] == epochs
    assert epochs_of(run_dir) == list(range(1, epochs + 1))  # every epoch once: continued, not restarted
    out = job.paths.stdout.read_text()
    err = job.paths.stderr.read_text()
    assert 'stopped by signal' in out and 'Requeued job' in out + err
    commands = [line for line in out.splitlines() if line.startswith('running: ')]
    assert len(commands) == 2 and not commands[0].endswith('--resume') and commands[1].endswith('--resume')
    if gpus == '2':
        assert out.count('world size 2') == 2  # rank 0 prints, once per start
        rank1 = job.paths.stdout.with_name(job.paths.stdout.name.replace('_0_', '_1_')).read_text()
        assert rank1.count('running: ') == 2 and 'epoch ' not in rank1


def start_driver(argv, out_path):
    out = open(out_path, 'w')
    return subprocess.Popen([sys.executable, 'search.py', *argv], cwd=ROOT, env=subprocess_env(), stdout=out,
                            stderr=subprocess.STDOUT, text=True), out


@needs_submitit
@pytest.mark.slow
def test_search_on_slurm_killed_driver_reattaches_and_preempted_job_resumes(data, teacher, tmp_path):
    argv = search_argv(data, tmp_path, teacher, '--launcher', 'slurm', '--slurm_executor', 'local',
                       '--slurm_poll', '0.2', epochs=6)
    search_dir = None

    def recorded_jobs():
        nonlocal search_dir
        found = glob.glob(os.path.join(str(tmp_path), 'search', 'BCS_*', 'search.json'))
        if found:
            search_dir = os.path.dirname(found[0])
            try:
                with open(found[0]) as f:
                    jobs = json.load(f).get('jobs', {})
            except ValueError:
                return None
            return jobs if len(jobs) == 2 else None

    first, out1 = start_driver(argv, tmp_path / 'driver1.txt')
    jobs = wait_for(recorded_jobs, what='the job ids in search.json')
    first.send_signal(signal.SIGTERM)  # the driver goes; its jobs stay
    assert first.wait(timeout=60) == 143
    out1.close()
    text1 = (tmp_path / 'driver1.txt').read_text()
    assert '[slurm] submitted 2 job(s)' in text1 and 'keep running' in text1

    second, out2 = start_driver(argv, tmp_path / 'driver2.txt')
    wait_for(lambda: (tmp_path / 'driver2.txt').read_text().count('reattached to job') == 2, what='reattach')
    run_a, job_a = next((r, j['job_id']) for r, j in jobs.items() if '-2-2-2_' in r)
    wait_for(lambda: summary_of(run_a).get('epochs_done', 0) >= 1, what='epoch 1 of 2,2,2')
    os.kill(int(job_a), signal.SIGTERM)  # preempt one job while the second driver waits on it
    assert second.wait(timeout=300) == 0
    out2.close()
    text2 = (tmp_path / 'driver2.txt').read_text()
    assert '[slurm] submitted' not in text2
    assert len(glob.glob(os.path.join(str(tmp_path), 'slurm', '*_submitted.pkl'))) == 2  # never twice

    with open(os.path.join(search_dir, 'search.json')) as f:
        result = json.load(f)
    assert result['status'] == 'finished' and result['jobs'] == jobs
    assert {tuple(c['block_depth']): c['job_id'] for c in result['candidates']} == \
        {(2, 2, 2): job_a, (2, 6, 1): next(j['job_id'] for r, j in jobs.items() if r != run_a)}
    for c in result['candidates']:
        assert epochs_of(c['run_dir']) == list(range(1, 7))
    log_a = (tmp_path / 'slurm' / f'{job_a}_0_log.out').read_text()
    assert 'stopped by signal' in log_a and log_a.rstrip().count('--resume') >= 1


DRIVER = '''
import json, sys
from helper.engine.options import Parser
from helper.launch.scheduler import Run, add_launcher_args, train_runs
p = Parser()
add_launcher_args(p)
p.add_argument('--save_root')
opt = p.parse_args(sys.argv[3:])
with open(sys.argv[1]) as f:
    runs = [Run(**r) for r in json.load(f)]
print('failed:', train_runs(runs, opt, sys.argv[2], job_name='table'), flush=True)
'''


@needs_submitit
@pytest.mark.slow
def test_generic_driver_runs_killed_and_rerun(data, teacher, tmp_path):
    """What a table-reproduction driver does: hand over runs, keep job ids in its state file."""
    from helper.engine.options import finalize, student_parser
    runs = []
    for trial in ('1', '2'):
        argv = student_args(data, str(tmp_path), teacher, 'kd', 'myresnet14', '--trial', trial)
        argv[argv.index('--epochs') + 1] = '6'
        run_dir = run_dir_of(finalize(student_parser().parse_args(argv), 'student'), 'student')
        runs.append({'name': f'trial {trial}', 'argv': [search.TRAIN_STUDENT, *argv], 'run_dir': run_dir,
                     'resume_from': os.path.join(run_dir, 'myresnet14_last.pth')})
    (tmp_path / 'runs.json').write_text(json.dumps(runs))
    (tmp_path / 'driver.py').write_text(DRIVER)
    state = tmp_path / 'state.json'
    state.write_text(json.dumps({'table': 'kept'}))
    cmd = [sys.executable, str(tmp_path / 'driver.py'), str(tmp_path / 'runs.json'), str(state),
           '--launcher', 'slurm', '--slurm_executor', 'local', '--slurm_poll', '0.2', '--save_root', str(tmp_path)]

    def jobs_recorded():
        jobs = json.loads(state.read_text()).get('jobs', {})
        return jobs if len(jobs) == 2 else None
    first = subprocess.Popen(cmd, cwd=ROOT, env=subprocess_env(), stdout=subprocess.DEVNULL)
    jobs = wait_for(jobs_recorded, what='job ids in the state file')
    first.kill()  # SIGKILL: no goodbye
    first.wait()
    job_1 = jobs[runs[0]['run_dir']]['job_id']
    wait_for(lambda: summary_of(runs[0]['run_dir']).get('epochs_done', 0) >= 1, what='epoch 1 of trial 1')
    os.kill(int(job_1), signal.SIGTERM)  # preempted while no driver watches

    second = subprocess.run(cmd, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    assert 'failed: {}' in second.stdout and '[slurm] submitted' not in second.stdout
    assert second.stdout.count('[slurm] reattached to job') == 2
    saved = json.loads(state.read_text())
    assert saved['table'] == 'kept' and saved['jobs'] == jobs
    for r in runs:
        assert summary_of(r['run_dir'])['status'] == 'finished'
        assert epochs_of(r['run_dir']) == list(range(1, 7))
    assert '--resume' in (tmp_path / 'slurm' / f'{job_1}_0_log.out').read_text()


def test_train_runs_local_launcher_skips_finished_runs_and_reports_failures(tmp_path):
    from helper.launch.scheduler import train_runs
    marker = tmp_path / 'ran'
    code = 'import sys; open(sys.argv[1], "a").write(sys.argv[2] + " ".join(sys.argv[3:]) + "\\n"); sys.exit(int(sys.argv[2]))'
    runs = [Run(f'r{i}', ['-c', code, str(marker), str(exit_code)], str(tmp_path / f'r{i}'), str(tmp_path / f'r{i}.pth'))
            for i, exit_code in enumerate((0, 3, 0))]
    os.makedirs(runs[2].run_dir)
    with open(os.path.join(runs[2].run_dir, 'summary.json'), 'w') as f:
        json.dump({'status': 'finished'}, f)
    (tmp_path / 'r1.pth').write_text('')  # its checkpoint exists: it resumes
    opt = search.search_parser().parse_args(['--path_t', 'x.pth'])
    assert train_runs(runs, opt, str(tmp_path / 'state.json'), slots=('0', '1')) == {1: 'exit code 3'}
    assert sorted(marker.read_text().splitlines()) == ['0', '3--resume']
    assert not (tmp_path / 'state.json').exists()  # the local launcher keeps no job ids


@needs_submitit
@pytest.mark.slow
def test_a_failed_run_is_reported_with_its_job_and_log(tmp_path):
    argv = ['--path_t', 'x.pth', '--launcher', 'slurm', '--slurm_executor', 'local', '--slurm_poll', '0.2',
            '--save_root', str(tmp_path)]
    run = Run('broken', [search.TRAIN_STUDENT, '--path_t', str(tmp_path / 'missing.pth')], str(tmp_path / 'r'),
              str(tmp_path / 'r' / 'last.pth'))
    jobs, log = {}, []
    failed = backend_for(parse(argv), jobs, log).run([run])
    job_id = jobs[run.run_dir]['job_id']
    assert list(failed) == [0] and failed[0].startswith(f'job {job_id} ended (ENDED); its errors are in ')
    err_path, out_path = failed[0].split('its errors are in ')[1].split(', its output in ')
    err, out = open(err_path).read(), open(out_path).read()
    assert err_path.endswith('_log.err') and out_path.endswith('_log.out')
    assert 'teacher checkpoint not found' in err and 'exited with code 2' in out + err
