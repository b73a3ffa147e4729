"""stops_clean: a stop signal unwinds the command through its finally blocks."""

import os
import signal

import pytest

from local_stack.stopping import stops_clean


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_stop_signal_runs_the_clean_up_and_exits_128_plus_the_signal(sig, capsys):
    cleaned = []

    @stops_clean
    def command() -> int:
        try:
            os.kill(os.getpid(), sig)
            return 0  # not reached: the handler raises in this frame
        finally:
            cleaned.append("stack down")

    assert command() == 128 + sig
    assert cleaned == ["stack down"]
    assert "everything this command started is stopped" in capsys.readouterr().err


def test_a_second_signal_does_not_interrupt_the_clean_up(capsys):
    steps = []

    @stops_clean
    def command() -> int:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        finally:
            os.kill(os.getpid(), signal.SIGINT)  # the impatient second Ctrl-C
            steps.append("consumer stopped")
            steps.append("stack down")
        return 0

    assert command() == 128 + signal.SIGTERM
    assert steps == ["consumer stopped", "stack down"]
    assert "SIGINT: already stopping" in capsys.readouterr().err


def test_the_handlers_before_are_back_afterwards():
    before = signal.getsignal(signal.SIGTERM)
    assert stops_clean(lambda: 7)() == 7
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_signal_inside_a_deferred_block_waits_for_its_end():
    from local_stack.stopping import deferred

    started, stopped = [], []

    @stops_clean
    def command() -> int:
        child = None
        try:
            with deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                child = "consumer"  # started and recorded together
                started.append(child)
            return 0  # not reached: the signal takes effect as the block ends
        finally:
            stopped.append(child)

    assert command() == 128 + signal.SIGTERM
    assert started == stopped == ["consumer"]


def test_deferred_outside_a_command_changes_nothing():
    from local_stack.stopping import deferred

    with deferred():
        value = 1
    assert value == 1
