"""Co-training: the candidates of one BCS phase train in one process, sharing the teacher.

With the same --seed, every candidate of a phase sees the same batches (the loaders draw from
generators seeded by seed and epoch), so one teacher forward per batch serves all of them. Each
candidate is still its own run(): its own student, auxiliary modules, optimizer, CRD memory,
checkpoints and run folder, resumable alone.

The runs live in threads that take turns (a baton): one runs at a time, switching where it asks
for the teacher's outputs. A switch saves and restores the global RNG states, so every run draws
exactly what it would draw alone; with deterministic algorithms on the CPU a co-trained candidate
ends with the same weights and log.csv as the candidate trained alone.
"""
import contextlib
import random
import signal
import sys
import threading

import numpy as np
import torch

from helper.errors import UsageError

_local = threading.local()
_stop = {'signum': None}

# Options that may differ between co-trained candidates: nothing that changes the data stream or
# the teacher (the shared outputs are keyed by position in the stream).
MAY_DIFFER = ('block_depth', 'model_s', 'trial', 'resume', 'epochs', 'lr_decay_epochs', 'save_root')


def in_cotrain():
    return getattr(_local, 'baton', None) is not None


def run_label():
    """'3,7,2 ' (its composition) for a co-trained run, whose lines interleave with the others'; else ''."""
    return getattr(_local, 'label', '')


def stop_signal():
    """The signal the co-training process received (its runs check it like their own), or None."""
    return _stop['signum']


def shared_teacher():
    """The SharedTeacher of this thread's co-training group, or None when training alone."""
    baton = getattr(_local, 'baton', None)
    return baton.shared if baton is not None else None


def yield_turn():
    """Called by a co-trained run where it asks for the teacher: let the next run have a step."""
    baton = getattr(_local, 'baton', None)
    if baton is not None:
        baton.pass_on(_local.index)
        baton.wait_turn(_local.index)


def _rng_get():
    state = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    return state + ((torch.cuda.get_rng_state_all(),) if torch.cuda.is_available() else ())


def _rng_set(state):
    random.setstate(state[0])
    np.random.set_state(state[1])
    torch.set_rng_state(state[2])
    if len(state) > 3:
        torch.cuda.set_rng_state_all(state[3])


class Baton:
    """One run at a time, in a fixed round-robin order over the runs still going."""

    def __init__(self, n):
        self.cond = threading.Condition()
        self.active = list(range(n))
        self.turn = 0
        self.rng = {}
        from helper.engine.teacher_batch import SharedTeacher
        self.shared = SharedTeacher()

    def wait_turn(self, i):
        with self.cond:
            while self.turn != i:
                self.cond.wait()
        if i in self.rng:
            _rng_set(self.rng.pop(i))

    def _advance(self, i):
        later = [j for j in self.active if j > i]
        self.turn = (later or self.active or [None])[0]
        self.cond.notify_all()

    def pass_on(self, i):
        self.rng[i] = _rng_get()
        with self.cond:
            self._advance(i)

    def leave(self, i):
        with self.cond:
            self.active.remove(i)
            self._advance(i)


def check_compatible(opts):
    """Raise UsageError unless the candidates see the same data stream and teacher."""
    from helper.engine.options import options_dict
    first = options_dict(opts[0])
    for o in opts[1:]:
        d = options_dict(o)
        for key in sorted(set(first) | set(d)):
            if key not in MAY_DIFFER and first.get(key) != d.get(key):
                raise UsageError(f'co-training needs candidates that differ only in their composition; '
                                 f'--{key} differs ({first.get(key)!r} vs {d.get(key)!r})')


def cotrain(opts, kind='student', run_fn=None):
    """Train the runs described by opts together; returns their summaries in order.

    Every run goes to its end; then the first failure (Preempted, NonFiniteLoss, UsageError, ...)
    is raised. run_fn defaults to helper.engine.run.run.
    """
    from helper.engine.run import run
    run_fn = run_fn or run
    if len(opts) == 1:
        return [run_fn(opts[0], kind)]
    check_compatible(opts)
    baton = Baton(len(opts))
    results, errors = [None] * len(opts), [None] * len(opts)

    def work(i):
        _local.baton, _local.index = baton, i
        depth = getattr(opts[i], 'block_depth', None)
        if depth is not None and not isinstance(depth, str):
            depth = ','.join(map(str, depth))
        _local.label = f'{depth or f"run {i + 1}"} '
        # on CUDA a stream per run: one run's small kernels can overlap another's on the GPU
        stream = torch.cuda.stream(torch.cuda.Stream()) if torch.cuda.is_available() else contextlib.nullcontext()
        baton.wait_turn(i)
        try:
            with stream:
                results[i] = run_fn(opts[i], kind)
        except BaseException as e:  # reported by the caller after the others finished
            errors[i] = e
        finally:
            baton.leave(i)
            _local.baton, _local.label = None, ''

    _stop['signum'] = None
    previous = {}
    if threading.current_thread() is threading.main_thread():
        def handle(signum, frame):
            if _stop['signum'] is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt
            _stop['signum'] = signum
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, handle)
    threads = [threading.Thread(target=work, args=(i,), name=f'cotrain-{i}', daemon=True)
               for i in range(len(opts))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.2)  # wakes up for signals
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)
        torch.compiler.reset()
    for e in errors:
        if e is not None:
            raise e
    return results


def split_groups(argv):
    """The command lines of a co-training call: argv split at each '--next'."""
    groups, cur = [], []
    for a in argv:
        if a == '--next':
            groups.append(cur)
            cur = []
        else:
            cur.append(a)
    groups.append(cur)
    return groups


def main(argv=None):
    """Co-train train_student.py command lines separated by '--next' (one process per GPU slot);
    exit codes as train_student.py's."""
    from helper.runs.checkpoint import WriteError
    from helper.engine.loops import NonFiniteLoss, Preempted
    from helper.engine.options import student_parser
    from helper.engine.run import exit_code
    groups = split_groups(sys.argv[1:] if argv is None else argv)
    try:
        cotrain([student_parser().parse_args(g) for g in groups])
    except (UsageError, NonFiniteLoss, WriteError) as e:
        print(f'error: {e}', file=sys.stderr)
        return exit_code(e)
    except Preempted as e:
        return exit_code(e)
    return 0


if __name__ == '__main__':
    sys.exit(main())
