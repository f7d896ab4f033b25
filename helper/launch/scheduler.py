"""Where a driver's runs train: parallel processes over this machine's GPU slots (--gpus,
--runs_per_gpu), or SLURM jobs through submitit (--launcher slurm, helper/launch/slurm.py)."""
import argparse
import os
import subprocess
import sys
import time

from helper.runs.checkpoint import has_resumable
from helper.errors import UsageError
from helper.runs.run_folder import finished
from helper.launch.slurm_flags import slurm_extra, slurm_minutes  # noqa: F401 (slurm_minutes: part of this API)


def slots_for(gpus, runs_per_gpu=1, nproc_per_node=1):
    """CUDA_VISIBLE_DEVICES values, one per concurrent candidate.

    GPUs are grouped nproc_per_node at a time; each group hosts runs_per_gpu candidates.
    """
    ids = [g.strip() for g in str(gpus).split(',') if g.strip()]
    if not ids or not all(g.isdigit() for g in ids):
        raise UsageError(f'--gpus must be comma-separated GPU ids, got {gpus!r}')
    if len(ids) < nproc_per_node:
        raise UsageError(f'--nproc_per_node {nproc_per_node} needs at least that many --gpus, got {len(ids)}')
    groups = [','.join(ids[i:i + nproc_per_node]) for i in range(0, len(ids) - nproc_per_node + 1, nproc_per_node)]
    return [g for g in groups for _ in range(runs_per_gpu)]


def run_parallel(jobs, slots, command, poll_s=0.5, popen=subprocess.Popen):
    """Start jobs on free slots until all ended. command(job, slot) -> (argv, env).

    Returns {job index: exit code} for the jobs that failed.
    """
    pending = list(range(len(jobs)))
    running = {}  # slot index -> (job index, process)
    failed = {}
    while pending or running:
        for s in range(len(slots)):
            if s not in running and pending:
                j = pending.pop(0)
                argv, env = command(jobs[j], slots[s])
                running[s] = (j, popen(argv, env=env))
        for s, (j, proc) in list(running.items()):
            code = proc.poll()
            if code is not None:
                del running[s]
                if code != 0:
                    failed[j] = code
        if running:
            time.sleep(poll_s)
    return failed


# ---- backends: how a driver's runs get trained (--launcher local|slurm) ----

class Run:
    """One run a driver hands to a backend: argv follows `python` (script path first), run_dir is
    its folder, resume_from the checkpoint whose presence means `--resume`, name a label."""

    def __init__(self, name, argv, run_dir, resume_from):
        self.name, self.argv, self.run_dir, self.resume_from = name, list(argv), run_dir, resume_from


def add_launcher_args(parser):
    g = parser.add_argument_group('launcher (where the runs train)')
    g.add_argument('--launcher', choices=('local', 'slurm'), default='local',
                   help='local: on this machine (--gpus); slurm: each run a SLURM job, through submitit')
    g.add_argument('--slurm_partition', default=None)
    g.add_argument('--slurm_time', default='4:00:00',
                   help='time limit of one job (minutes, H:MM:SS or D-HH:MM:SS); a run that needs '
                        'longer is checkpointed and requeued')
    g.add_argument('--slurm_gpus_per_job', type=int, default=1, help='GPUs of one run, over all its nodes')
    g.add_argument('--slurm_nodes', type=int, default=1, help='nodes of one run (DDP over nodes x GPUs)')
    g.add_argument('--slurm_cpus_per_task', type=int, default=None, help='CPUs of each process')
    g.add_argument('--slurm_account', default=None)
    g.add_argument('--slurm_qos', default=None)
    g.add_argument('--slurm_extra', action='append', default=[], metavar='KEY=VALUE',
                   help='any other sbatch option, e.g. --slurm_extra mem=64G (repeatable)')
    g.add_argument('--slurm_folder', default=None, help='job scripts and logs (default SAVE_ROOT/slurm)')
    g.add_argument('--slurm_executor', choices=('slurm', 'local'), default='slurm',
                   help='local: submitit runs the jobs on this machine (try the slurm path without a cluster)')
    g.add_argument('--slurm_poll', type=float, default=30.0, help='seconds between job-state checks')
    return g


LAUNCHER_FLAGS = {'--launcher', '--slurm_partition', '--slurm_time', '--slurm_gpus_per_job', '--slurm_nodes',
                  '--slurm_cpus_per_task', '--slurm_account', '--slurm_qos', '--slurm_extra', '--slurm_folder',
                  '--slurm_executor', '--slurm_poll'}


def check_launcher_args(opt):
    """Reject launcher flags that cannot work, before anything is submitted."""
    if opt.launcher == 'local':
        defaults = argparse.ArgumentParser()
        add_launcher_args(defaults)
        given = [f for f in sorted(LAUNCHER_FLAGS) if getattr(opt, f[2:]) != defaults.get_default(f[2:])]
        if given:
            raise UsageError(f'{given[0]} is for SLURM jobs; add --launcher slurm')
        return
    slurm_minutes(opt.slurm_time)
    slurm_extra(opt.slurm_extra)
    if getattr(opt, 'gpus', None):
        raise UsageError('--gpus picks GPUs of this machine; with --launcher slurm use --slurm_gpus_per_job')
    if opt.slurm_nodes < 1 or opt.slurm_gpus_per_job < 0:
        raise UsageError('--slurm_nodes must be >= 1 and --slurm_gpus_per_job >= 0')
    if opt.slurm_gpus_per_job % opt.slurm_nodes:
        raise UsageError(f'--slurm_gpus_per_job {opt.slurm_gpus_per_job} must split evenly over '
                         f'--slurm_nodes {opt.slurm_nodes}')
    if opt.slurm_executor == 'local' and opt.slurm_nodes > 1:
        raise UsageError('--slurm_executor local runs on this machine only; drop --slurm_nodes')
    if opt.slurm_poll <= 0:
        raise UsageError(f'--slurm_poll must be positive, got {opt.slurm_poll}')


def slurm_backend(opt, jobs, save):
    """The slurm backend (submitit is imported here, and only here)."""
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise UsageError('--launcher slurm needs submitit: pip install submitit') from None
    from helper.launch.slurm import SlurmBackend
    return SlurmBackend(opt, jobs, save)


def train_runs(runs, opt, state_path, slots=(None,), job_name='crd'):
    """Train a driver's runs (a list of Run) with opt.launcher; returns {run index: why it failed}.

    local: one process per slot (a CUDA_VISIBLE_DEVICES value from slots_for; None keeps this
    process's GPUs), `--resume` added where the checkpoint exists. slurm: one job array; the job
    ids go under 'jobs' in the JSON file state_path, so a rerun driver reattaches to them."""
    if opt.launcher == 'slurm':
        from helper.runs.checkpoint import read_json, write_json

        def load():
            try:
                return read_json(state_path)
            except (OSError, ValueError):
                return {}
        jobs = load().get('jobs', {})

        def save():
            state = load()
            state['jobs'] = jobs
            write_json(state, state_path)
        return slurm_backend(opt, jobs, save).run(runs, job_name)

    def command(i, slot):
        env = dict(os.environ) if slot is None else dict(os.environ, CUDA_VISIBLE_DEVICES=slot)
        resume = ['--resume'] if has_resumable(runs[i].resume_from) else []
        return [sys.executable, *runs[i].argv, *resume], env
    todo = [i for i, r in enumerate(runs) if not finished(r.run_dir)]
    failed = run_parallel(todo, list(slots), command)
    return {todo[j]: f'exit code {code}' for j, code in failed.items()}
