"""The run context's stop signal: the one handler of the trainer, co-training and the SLURM driver."""
import signal

import pytest

from helper.engine.context import RunContext, StopSignal


def test_first_signal_asks_to_stop_a_second_ctrl_c_stops_at_once():
    before = signal.getsignal(signal.SIGINT)
    with StopSignal() as stop:
        assert not stop.requested()
        signal.raise_signal(signal.SIGINT)
        assert stop.requested() and stop.signum == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before


def test_a_run_alone_catches_signals_a_run_in_a_group_leaves_them_to_the_group():
    before = signal.getsignal(signal.SIGTERM)
    group = StopSignal()
    member = RunContext(label='2,2,2', stop=group, alone=False)
    with member.catching_signals():
        assert signal.getsignal(signal.SIGTERM) is before
    alone = RunContext()
    with alone.catching_signals():
        signal.raise_signal(signal.SIGTERM)
    assert alone.stop.signum == signal.SIGTERM and alone.stop.requested()
    assert group.signum is None and signal.getsignal(signal.SIGTERM) is before
