"""Whether --fast compiles a run: only where compilation pays for itself within the run.

Compiling costs seconds up front (on a 2-core CPU about 13 s for a resnet56 teacher and a resnet20
student, even with a warm inductor cache) and saves a little on every optimizer step afterwards. So
--fast compiles when  steps x saving per step > compile cost,  from what runs on this device
measured before (a small JSON in the user's cache dir, keyed by device and torch version, then by
teacher/student pair, method, batch size and precision) or, without a measurement, a conservative
estimate per device type. An explicit --compile always compiles. The cache is an optimisation:
failing to read or write it never fails a run.
"""
import json
import os
import platform
import statistics
import tempfile

import torch

from helper import dist

# per device type: (compile seconds, eager step / compiled step, eager fast-path step seconds),
# rounded towards not compiling. CPU: a 2-core AVX512-BF16 EPYC, resnet56 -> resnet20 KD, batch 64
# (13 s; the frozen teacher 70 -> 53 ms and the student at most 1.15x of a 0.15 s step). CUDA: an
# H200's first epoch costs about 18 s more than the next ones; the eager step is assumed at twice
# the 5 ms compiled one, halved again to stay on the safe side. Elsewhere no gain is assumed.
ESTIMATES = {'cpu': (15.0, 1.15, 0.15), 'cuda': (30.0, 1.6, 0.01)}
NO_GAIN = (60.0, 1.0, 0.0)
CACHE_FILE = 'compile_costs.json'


def cache_path():
    root = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
    return os.path.join(root, 'crd-emkd', CACHE_FILE)


def device_name(device):
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    if device.type == 'cpu':
        try:
            with open('/proc/cpuinfo') as f:
                for line in f:
                    if line.startswith('model name'):
                        return f'{line.split(":", 1)[1].strip()} ({os.cpu_count()} cores)'
        except OSError:
            pass
        return f'{platform.processor() or platform.machine()} ({os.cpu_count()} cores)'
    return device.type


def device_key(device):
    return f'{device_name(device)} | torch {torch.__version__}'


def run_key(opt):
    """What a step's cost mostly depends on besides the device. Not --block_depth: BCS candidates
    (each composition trained once) share what the ones before them measured."""
    pair = f'{opt.model_t}>{opt.model_s}' if getattr(opt, 'model_t', None) else opt.model
    method = getattr(opt, 'distill', 'ce')
    return f'{pair} {method} b{opt.batch_size}{" amp" if opt.amp else ""}'


def read_cache(path=None):
    try:
        with open(path or cache_path()) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def cached_entry(data, device, opt):
    """This run's measured figures in the cache data; anything malformed counts as unmeasured."""
    runs = data.get(device_key(device))
    entry = runs.get(run_key(opt)) if isinstance(runs, dict) else None
    if not isinstance(entry, dict):
        return {}
    return {k: float(v) for k, v in entry.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < float('inf')}


def costs(device, entry):
    """(compile seconds, seconds saved per step, where the figures come from) for one run key."""
    compile_s, ratio, step_s = ESTIMATES.get(device.type, NO_GAIN)
    eager, compiled = entry.get('eager_step_s'), entry.get('compiled_step_s')
    measured = [k for k in ('compile_s', 'eager_step_s', 'compiled_step_s') if k in entry]
    compile_s = entry.get('compile_s', compile_s)
    if eager is not None and compiled is not None:
        saving = eager - compiled
    else:
        base = eager if eager is not None else (compiled * ratio if compiled is not None else step_s)
        saving = base * (1 - 1 / ratio)
    label = device.type.upper() if device.type in ('cpu', 'mps') else device.type
    source = (f'measured on this {label}' if len(measured) == 3 else
              f'partly measured on this {label}' if measured else f'estimated for a {label}')
    return compile_s, saving, source


def decide(steps, compile_s, saving_s, source):
    """(compile or not, the one line that says why)."""
    pays = steps * saving_s > compile_s
    verb, sign = ('compiling', '>') if pays else ('not compiling', '<')
    return pays, (f'--fast: {verb}: {steps} steps × ~{saving_s:.3g} s saved {sign} ~{compile_s:.0f} s '
                  f'to compile ({source})')


def planned_steps(opt, exp, ckpt=None):
    """Optimizer steps this run still takes: its epochs left and its init stage, if any."""
    per_epoch = len(exp.train_loader)
    done = ckpt['epoch'] if ckpt else 0
    init = 0
    if getattr(exp.method.core, 'has_init_stage', False) and not (ckpt and ckpt.get('init_done')):
        init = max(0, opt.init_epochs - (ckpt.get('init_epochs_done', 0) if ckpt else 0))
    return per_epoch * (max(0, opt.epochs - done) + init)


def choose(opt, exp, device, ckpt=None):
    """opt with --fast's implicit compile decided for this run, and the reason in compile_decision
    (a resolved option: it changes how the work is done, not the results)."""
    if not opt.compile or not opt.fast or opt.requested.get('compile'):
        return opt
    steps = planned_steps(opt, exp, ckpt)
    verdict = None
    if dist.is_main():
        entry = cached_entry(read_cache(), device, opt)
        verdict = decide(steps, *costs(device, entry))
        print(verdict[1], flush=True)
    compile_on, reason = dist.broadcast_object(verdict)
    return opt.replace(compile=compile_on, compile_decision=reason)


def measurements(epoch_s, steps_per_epoch, compiled, startup_s=0.0):
    """What a finished run's times say: compiled runs give the compile cost (start-up, where the
    teacher is first called, and the first epoch, less a steady epoch) and their step; eager runs
    their step (start-up left out: it is paid once, not per step)."""
    if steps_per_epoch < 1 or not epoch_s or (compiled and len(epoch_s) < 2):
        return {}
    steady = statistics.median(epoch_s[1:] or epoch_s)
    if compiled:
        return {'compile_s': round(max(0.0, startup_s + epoch_s[0] - steady), 3),
                'compiled_step_s': round(steady / steps_per_epoch, 5)}
    return {'eager_step_s': round(steady / steps_per_epoch, 5)}


def record(opt, device, epoch_s, steps_per_epoch, compiled, startup_s=0.0, path=None):
    """Merge a --fast run's measurements into the cache; never raises (an optimisation only)."""
    found = measurements(epoch_s, steps_per_epoch, compiled, startup_s)
    if not opt.fast or not found:
        return False
    path = path or cache_path()
    try:
        data = read_cache(path)
        data.setdefault(device_key(device), {}).setdefault(run_key(opt), {}).update(found)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix='.compile_costs.')
        try:
            with os.fdopen(fd, 'w') as f:
                json.dump(data, f, indent=1, sort_keys=True)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return True
    except (OSError, TypeError, ValueError, AttributeError):
        return False
