"""SLURM's option forms (--slurm_time, --slurm_extra), read without submitit: the launcher checks
them before anything is submitted."""
import re

from helper.errors import UsageError


def slurm_minutes(text):
    """SLURM's --time forms (M, M:S, H:M:S, D-H, D-H:M, D-H:M:S) as whole minutes."""
    m = re.fullmatch(r'(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?', str(text).strip())
    if not m:
        raise UsageError(f'--slurm_time must be minutes, H:MM:SS or D-HH:MM:SS, got {text!r}')
    days, a, b, c = (int(x) if x else None for x in m.groups())
    if days is not None:  # D-H, D-H:M, D-H:M:S
        seconds = days * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
    elif c is not None:
        seconds = a * 3600 + b * 60 + c
    elif b is not None:
        seconds = a * 60 + b
    else:
        seconds = a * 60
    if seconds <= 0:
        raise UsageError(f'--slurm_time must be positive, got {text!r}')
    return -(-seconds // 60)


def slurm_extra(items):
    out = {}
    for item in items:
        key, eq, value = item.partition('=')
        if not eq or not key.strip():
            raise UsageError(f'--slurm_extra takes KEY=VALUE (an sbatch option without its dashes), got {item!r}')
        out[key.strip().lstrip('-')] = value
    return out
