"""Run a BCS phase's candidates as parallel processes over GPU slots (--gpus, --runs_per_gpu)."""
import subprocess
import time

from helper.errors import UsageError


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
