"""What a run shares with the runs trained beside it, passed in instead of read from globals.

A run alone gets the default RunContext. Co-training (helper/launch/cotrain.py) gives each of its
runs one that carries the group's teacher outputs, its turn-taking and its stop signal.
"""
import contextlib
import signal
import threading
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from helper import dist


class StopSignal:
    """SIGTERM/SIGINT set signum; the loop finishes its step, checkpoints and stops. Entered as a
    context manager in the main thread, it is the process's handler; a second Ctrl-C stops at once."""

    def __init__(self):
        self.signum = None
        self._previous = {}

    def __enter__(self):
        if hasattr(signal, 'SIGTERM') and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def requested(self, sync_point=True):
        if dist.active():  # ranks agree on where to stop, at --print_freq boundaries only
            if not sync_point:
                return False
            flag = dist.all_reduce_sum(torch.tensor([1.0 if self.signum else 0.0]).to(_dist_device()))
            stop = flag.item() > 0
            if stop and self.signum is None:
                self.signum = signal.SIGTERM
            # the reduced flag decides, not signum read again: a signal that lands during the
            # all-reduce would stop this rank alone; the next sync point counts it on every rank
            return stop
        return self.signum is not None

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}


def _dist_device():
    return torch.device('cuda', torch.cuda.current_device()) if torch.cuda.is_available() and \
        torch.distributed.get_backend() == 'nccl' else torch.device('cpu')


@dataclass
class RunContext:
    """label: names the run in its lines ('3,7,2'), '' alone. shared_teacher: the group's
    SharedTeacher (one teacher forward per batch for all), or None. take_turn: called where the
    run asks for the teacher, to let the next run of the group have a step. stop: the stop signal
    the run checks. alone: a run alone installs its own signal handler, resets the compiler when
    it ends and records its costs; a group's runs share the time, and the group resets once."""
    label: str = ''
    shared_teacher: Optional[object] = None
    take_turn: Callable[[], None] = lambda: None
    stop: StopSignal = field(default_factory=StopSignal)
    alone: bool = True

    def log(self, msg):
        if dist.is_main():
            print(f'[{self.label}] {msg}' if self.label else msg, flush=True)

    def describe(self, desc):
        """A progress bar's description: the run's lines interleave with the group's."""
        return f'{self.label} {desc}' if self.label else desc

    def catching_signals(self):
        """The scope in which this run's own handler catches SIGTERM/SIGINT; a group's runs check
        the signal that the group's process catches."""
        return self.stop if self.alone else contextlib.nullcontext()
