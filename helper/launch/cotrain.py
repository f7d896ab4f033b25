"""Co-training: the candidates of one BCS phase train in one process, sharing the teacher.

With the same --seed, every candidate of a phase sees the same batches (the loaders draw from
generators seeded by seed and epoch), so one teacher forward per batch serves all of them. Each
candidate is still its own run(): its own student, auxiliary modules, optimizer, CRD memory,
checkpoints and run folder, resumable alone.

The runs live in threads that take turns (a baton): one runs at a time, switching where it asks
for the teacher's outputs. What a run shares with the group (the teacher's outputs, its turns, the
stop signal caught here) reaches it through its RunContext (helper/engine/context.py). A switch
saves and restores the global RNG states, so every run draws exactly what it would draw alone;
with deterministic algorithms on the CPU a co-trained candidate ends with the same weights and
log.csv as the candidate trained alone.
"""
import contextlib
import functools
import sys
import threading

import torch

from helper.engine.context import RunContext, StopSignal
from helper.engine.loops import NonFiniteLoss, Preempted
from helper.engine.options import options_dict, student_parser
from helper.engine.run import exit_code, run
from helper.engine.teacher_batch import SharedTeacher
from helper.engine.util import rng_state, set_rng_state
from helper.errors import UsageError
from helper.runs.checkpoint import WriteError

# Options that may differ between co-trained candidates: nothing that changes the data stream or
# the teacher (the shared outputs are keyed by position in the stream).
MAY_DIFFER = ('block_depth', 'model_s', 'trial', 'resume', 'epochs', 'lr_decay_epochs', 'save_root')


class Baton:
    """One run at a time, in a fixed round-robin order over the runs still going."""

    def __init__(self, n):
        self.cond = threading.Condition()
        self.active = list(range(n))
        self.turn = 0
        self.rng = {}
        self.shared = SharedTeacher()

    def wait_turn(self, i):
        with self.cond:
            while self.turn != i:
                self.cond.wait()
        if i in self.rng:
            set_rng_state(self.rng.pop(i))

    def _advance(self, i):
        later = [j for j in self.active if j > i]
        self.turn = (later or self.active or [None])[0]
        self.cond.notify_all()

    def take_turn(self, i):
        """Run i lets the next run have a step, and waits for its own turn again."""
        self.rng[i] = rng_state(plain=False)
        with self.cond:
            self._advance(i)
        self.wait_turn(i)

    def leave(self, i):
        with self.cond:
            self.active.remove(i)
            self._advance(i)


def contexts(opts, baton, stop):
    """One RunContext per run of the group: named by its composition, sharing the group's teacher
    outputs, turns and stop signal."""
    out = []
    for i, o in enumerate(opts):
        depth = getattr(o, 'block_depth', None)
        if depth is not None and not isinstance(depth, str):
            depth = ','.join(map(str, depth))
        out.append(RunContext(label=depth or f'run {i + 1}', shared_teacher=baton.shared,
                              take_turn=functools.partial(baton.take_turn, i), stop=stop, alone=False))
    return out


def check_compatible(opts):
    """Raise UsageError unless the candidates see the same data stream and teacher."""
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
    is raised. run_fn(opt, kind, context) defaults to helper.engine.run.run.
    """
    run_fn = run_fn or run
    if len(opts) == 1:
        return [run_fn(opts[0], kind, RunContext())]
    check_compatible(opts)
    baton, stop = Baton(len(opts)), StopSignal()  # SIGTERM/SIGINT, caught here, stop every run
    runs = contexts(opts, baton, stop)
    results, errors = [None] * len(opts), [None] * len(opts)

    def work(i):
        # on CUDA a stream per run: one run's small kernels can overlap another's on the GPU
        stream = torch.cuda.stream(torch.cuda.Stream()) if torch.cuda.is_available() else contextlib.nullcontext()
        baton.wait_turn(i)
        try:
            with stream:
                results[i] = run_fn(opts[i], kind, runs[i])
        except BaseException as e:  # reported by the caller after the others finished
            errors[i] = e
        finally:
            baton.leave(i)

    threads = [threading.Thread(target=work, args=(i,), name=f'cotrain-{i}', daemon=True)
               for i in range(len(opts))]
    try:
        with stop:
            for t in threads:
                t.start()
            for t in threads:
                while t.is_alive():
                    t.join(0.2)  # wakes up for signals
    finally:
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
