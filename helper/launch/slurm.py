"""The slurm backend of the run scheduler, through submitit (imported only with --launcher slurm).

Each run is one job; a driver's batch of runs (a BCS phase) goes out as one job array. A job runs
`python train_student.py ...` as a child process and adds `--resume` itself when the run folder
holds a checkpoint, so a requeued job, or a job resubmitted by a rerun driver, continues the run.

- Preemption: SLURM sends SIGTERM; the run writes its checkpoint and exits, then the job asks
  submitit to requeue it through its checkpointing hook (TrainJob.checkpoint).
- Time limit: submitit's signal (USR2, 120 s before the end) calls the same hook, which stops the
  run (SIGTERM) and waits for its checkpoint before the requeue.
- Several GPUs or nodes: one task per GPU, with the torch.distributed variables torchrun would set.
- A driver records job ids (the caller persists them); rerun, it waits on the jobs still queued or
  running instead of submitting them again.
"""
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time

import submitit

from helper.errors import UsageError
from helper.runs.checkpoint import has_resumable
from helper.runs.run_folder import finished, summary_or_empty
from helper.launch.slurm_flags import slurm_extra, slurm_minutes

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SIGNAL_DELAY_S = 120  # submitit's signal comes this long before the time limit...
GRACE_S = 100  # ...and the run gets this long to write its checkpoint
MAX_TIMEOUTS = 50
HEARTBEAT_S = 300
PREEMPTED_WAIT_S = 1800  # a job still PREEMPTED this long after was not requeued (sacct answers late)
UNKNOWN_WAIT_S = 1800  # a job that sacct has not reported for this long is lost (purged, another cluster)
STOP_CODES = {128 + signal.SIGTERM, 128 + signal.SIGINT, -signal.SIGTERM, -signal.SIGINT}
QUEUED = {'PENDING', 'REQUEUED', 'REQUEUE_HOLD', 'REQUEUE_FED', 'CONFIGURING', 'UNKNOWN', 'READY', 'SUBMITTED'}
ACTIVE = QUEUED | {'RUNNING', 'COMPLETING', 'SUSPENDED', 'RESIZING', 'SIGNALING', 'STAGE_OUT', 'PREEMPTED'}


def usr_signal():
    return getattr(signal, 'SIG' + submitit.JobEnvironment.USR_SIG)


def torch_env():
    """RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT of this task, as torchrun sets them
    (empty for a one-process job)."""
    job = submitit.JobEnvironment()
    if job.num_tasks == 1:
        return {}
    d = submitit.helpers.TorchDistributedEnvironment()
    env = {'MASTER_ADDR': d.master_addr, 'MASTER_PORT': str(d.master_port), 'RANK': str(d.rank),
           'WORLD_SIZE': str(d.world_size), 'LOCAL_RANK': str(d.local_rank),
           'LOCAL_WORLD_SIZE': str(d.local_world_size)}
    visible = os.environ.get('CUDA_VISIBLE_DEVICES', '')
    if visible and ',' not in visible:  # a cluster that binds one GPU per task shows each task its own
        env['LOCAL_RANK'] = '0'
    return env


def _may_requeue(job):
    """False when SLURM already requeued the job itself, or a user cancelled it (scancel)."""
    if job.cluster != 'slurm':
        return True
    try:
        out = subprocess.run(['scontrol', 'show', 'job', '-o', job.raw_job_id], capture_output=True,
                             text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return True
    state = next((w.split('=', 1)[1] for w in out.split() if w.startswith('JobState=')), 'RUNNING')
    return state not in ('CANCELLED', 'PENDING', 'REQUEUED', 'REQUEUE_HOLD', 'REQUEUE_FED')


class TrainJob(submitit.helpers.Checkpointable):
    """One run as a submitit job: `python argv...` in cwd, `--resume` when resume_from exists."""

    def __init__(self, argv, resume_from, cwd):
        self.argv, self.resume_from, self.cwd = list(argv), resume_from, cwd
        self._proc = self._code = None

    def __getstate__(self):
        return {'argv': self.argv, 'resume_from': self.resume_from, 'cwd': self.cwd}

    def __setstate__(self, state):
        self.__dict__.update(state, _proc=None, _code=None)

    def command(self):
        return [sys.executable, *self.argv] + (['--resume'] if has_resumable(self.resume_from) else [])

    def _reap(self):
        self._code = self._proc.wait()  # on a thread: the main one stays free for signal handlers

    def _forward(self, signum, frame):
        if self._proc is not None and self._code is None:
            self._proc.send_signal(signum)

    def __call__(self):
        job = submitit.JobEnvironment()
        cmd = self.command()
        print(f'running: {shlex.join(cmd)}', flush=True)
        sig = usr_signal()
        # SLURM signals every process of the job; submitit's signal is meant for this one, not the run
        self._proc = subprocess.Popen(cmd, cwd=self.cwd, env=dict(os.environ, **torch_env()),
                                      preexec_fn=lambda: signal.signal(sig, signal.SIG_IGN))
        threading.Thread(target=self._reap, daemon=True).start()
        previous = signal.signal(signal.SIGTERM, self._forward)  # submitit would ignore it
        try:
            while self._code is None:
                time.sleep(0.2)
        finally:
            signal.signal(signal.SIGTERM, previous)
        code = self._code
        if code == 0:
            return {'exit_code': 0}
        if code in STOP_CODES:
            print(f'run stopped by a signal (exit code {code})', flush=True)
            if job.global_rank == 0 and _may_requeue(job):
                try:  # submitit's handler calls checkpoint(), requeues the job and exits this process
                    signal.raise_signal(sig)
                except subprocess.CalledProcessError as e:
                    print(f'requeue refused ({e}); rerun the driver to continue the run', flush=True)
            return {'exit_code': code, 'stopped': True}
        raise RuntimeError(f'{shlex.join(cmd)} exited with code {code}')

    def checkpoint(self, *args, **kwargs):
        """submitit's hook, called on its signal: stop the run, give it time to write its checkpoint,
        and hand back the same job for the requeue (it resumes from that checkpoint)."""
        if self._proc is not None and self._code is None:
            self._proc.send_signal(signal.SIGTERM)
            deadline = time.time() + GRACE_S
            while self._code is None and time.time() < deadline:
                time.sleep(0.2)
        return submitit.helpers.DelayedSubmission(TrainJob(self.argv, self.resume_from, self.cwd))


def _local_alive(job_id):
    """A local-executor job (its controller's pid) still running, seen from another process."""
    try:
        with open(f'/proc/{int(job_id)}/cmdline', 'rb') as f:
            return b'submitit.local._local' in f.read()
    except (OSError, ValueError):
        return False


class SlurmBackend:
    """Submit, reattach to and wait on the jobs of a driver's runs.

    jobs: {run_dir: {'job_id', 'executor', 'folder'}}, kept by the driver; save() persists it."""

    def __init__(self, opt, jobs, save, log=None):
        self.opt, self.jobs, self.save = opt, jobs, save
        self.log = log or (lambda msg: print(msg, flush=True))
        self.cluster = opt.slurm_executor
        self.folder = os.path.abspath(opt.slurm_folder or os.path.join(opt.save_root, 'slurm'))
        if self.cluster == 'slurm' and not (shutil.which('sbatch') and shutil.which('srun')):
            raise UsageError('--launcher slurm: no sbatch/srun on this machine; run on a SLURM login node '
                             '(or try the path here with --slurm_executor local)')

    def executor(self, job_name):
        o = self.opt
        # the job imports this module: the repository goes on its PYTHONPATH, wherever the driver ran
        path = ROOT + (os.pathsep + os.environ['PYTHONPATH'] if os.environ.get('PYTHONPATH') else '')
        python = f'env PYTHONPATH={shlex.quote(path)} {shlex.quote(sys.executable)}'
        ex = submitit.AutoExecutor(folder=self.folder, cluster=self.cluster, slurm_python=python,
                                   local_python=python, slurm_max_num_timeout=MAX_TIMEOUTS,
                                   local_max_num_timeout=MAX_TIMEOUTS)
        per_node = o.slurm_gpus_per_job // o.slurm_nodes
        params = {'name': job_name, 'timeout_min': slurm_minutes(o.slurm_time), 'nodes': o.slurm_nodes,
                  'tasks_per_node': max(1, per_node), 'cpus_per_task': o.slurm_cpus_per_task,
                  'gpus_per_node': per_node or None}
        if self.cluster == 'slurm':
            params.update(slurm_partition=o.slurm_partition, slurm_account=o.slurm_account,
                          slurm_qos=o.slurm_qos, slurm_signal_delay_s=SIGNAL_DELAY_S,
                          slurm_additional_parameters=slurm_extra(o.slurm_extra) or None)
        ex.update_parameters(**params)
        return ex

    def _job(self, rec):
        if rec['executor'] == 'local':
            return submitit.LocalJob(rec['folder'], rec['job_id'])
        return submitit.SlurmJob(rec['folder'], rec['job_id'])

    def state(self, job):
        if isinstance(job, submitit.LocalJob):
            state = job.get_info().get('jobState', '')
            if state.startswith('NO PROCESS'):  # a job a previous driver started: by its pid
                return 'RUNNING' if _local_alive(job.job_id) else 'ENDED'
            return 'RUNNING' if state == 'RUNNING' else 'ENDED'
        return (job.state or 'UNKNOWN').split()[0].upper()

    def run(self, runs, job_name='crd'):
        """Train runs (helper.launch.scheduler.Run) as jobs; returns {run index: why it failed}."""
        if not runs:
            return {}
        attached, todo = {}, []
        for i, r in enumerate(runs):
            if finished(r.run_dir):
                continue
            rec = self.jobs.get(r.run_dir)
            if rec:
                job = self._job(rec)
                state = self.state(job)
                if state in ACTIVE:
                    self.log(f'[slurm] reattached to job {job.job_id} ({state}): {r.name}')
                    attached[i] = job
                    continue
            todo.append(i)
        if todo:
            attached.update(zip(todo, self.submit([runs[i] for i in todo], job_name)))
        return self._wait(runs, attached) if attached else {}

    def submit(self, runs, job_name='crd'):
        """Submit runs as one job array and record their job ids; returns the submitit jobs."""
        ex = self.executor(job_name)
        with submitit.helpers.clean_env():  # a driver inside a SLURM allocation must not pass it on
            jobs = ex.submit_array([TrainJob(r.argv, r.resume_from, os.getcwd()) for r in runs])
        for r, job in zip(runs, jobs):
            self.jobs[r.run_dir] = {'job_id': job.job_id, 'executor': self.cluster, 'folder': self.folder}
        self.save()
        ids = ', '.join(f'{job.job_id} {r.name}' for r, job in zip(runs, jobs))
        self.log(f'[slurm] submitted {len(jobs)} job(s): {ids}; logs in {self.folder}')
        return jobs

    def _wait(self, runs, jobs):
        from helper.engine.loops import Preempted
        from helper.engine.context import StopSignal
        shown, shown_at, failed, stalled = None, 0.0, {}, {}
        with StopSignal() as stop:
            while True:
                states, notes = {}, {}
                for i, job in jobs.items():
                    s = summary_or_empty(runs[i].run_dir)
                    if s.get('status') == 'finished':
                        states[i] = 'DONE'
                    else:
                        states[i] = self.state(job)
                        if s.get('epochs_done') is not None and states[i] == 'RUNNING':
                            notes[i] = f' epoch {s["epochs_done"]}/{s.get("epochs", "?")}'
                    states[i] = _bounded(states[i], stalled.setdefault(i, {}))
                done = sum(s == 'DONE' for s in states.values())
                running = sum(s in ACTIVE - QUEUED for s in states.values())
                queued = sum(s in QUEUED for s in states.values())
                # a line when a job changes state, and every few minutes with the epochs reached
                if states != shown or time.time() - shown_at > HEARTBEAT_S:
                    self.log(f'[slurm] {done} done, {running} running, {queued} queued | ' +
                             ' | '.join(f'{jobs[i].job_id} {states[i]}{notes.get(i, "")} {runs[i].name}'
                                        for i in sorted(jobs)))
                    shown, shown_at = states, time.time()
                if not any(s in ACTIVE for s in states.values()):
                    break
                deadline = time.time() + self.opt.slurm_poll
                while time.time() < deadline and stop.signum is None:
                    time.sleep(min(0.2, self.opt.slurm_poll))
                if stop.signum is not None:
                    left = ', '.join(jobs[i].job_id for i in sorted(jobs) if states[i] in ACTIVE)
                    self.log(f'[slurm] driver stopped; job(s) {left} keep running. Rerun the same command '
                             f'to reattach')
                    raise Preempted(stop.signum)
        for i, state in states.items():
            if state != 'DONE':
                failed[i] = (f'job {jobs[i].job_id} ended ({state}); its errors are in {jobs[i].paths.stderr}, '
                             f'its output in {jobs[i].paths.stdout}')
        return failed


def _bounded(state, since):
    """state, or a final state when the job has stayed PREEMPTED (never requeued) or UNKNOWN (never
    reported by sacct) too long; since: when each such state was first seen, kept by the caller."""
    limits = {'PREEMPTED': (PREEMPTED_WAIT_S, 'not requeued'),
              'UNKNOWN': (UNKNOWN_WAIT_S, f'sacct has not reported it for {UNKNOWN_WAIT_S:g} s')}
    if state not in limits:
        since.clear()
        return state
    limit, note = limits[state]
    if time.time() - since.setdefault(state, time.time()) > limit:
        return f'{state}, {note}'
    return state
