"""Stop signals: SIGTERM (`docker stop`, `timeout`, systemd, `scancel`), SIGINT (Ctrl-C) and SIGUSR1 (Slurm's
warning before a time limit) all end the open runs KILLED with the signal as the reason, and a worker gives
its job back at once.

A signal raises `Stopped`, a `KeyboardInterrupt`: code that ends runs KILLED on Ctrl-C does the same on
SIGTERM, and `except Exception` blocks never swallow it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Iterator

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


class Stopped(KeyboardInterrupt):
    """Raised in the main thread by a stop signal; its message names the signal."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by signal {signum} ({signal.Signals(signum).name})")
        self.signum = signum


def _raise_stopped(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
    raise Stopped(signum)


def reason(error: BaseException) -> str:
    """A run's `failure_reason` for `error`: the signal for a stop, never the empty `KeyboardInterrupt: `."""
    if isinstance(error, Stopped):
        return str(error)
    if isinstance(error, KeyboardInterrupt):
        return f"interrupted (KeyboardInterrupt){': ' + str(error) if str(error) else ''}"
    return f"{type(error).__name__}: {error}"


def exit_status(error: BaseException) -> int:
    """The shell's convention: 128 + the signal number (130 for Ctrl-C)."""
    return 128 + getattr(error, "signum", signal.SIGINT)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """While the body runs, each stop signal raises `Stopped` (main thread only; handlers restored after)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _raise_stopped) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def hold_signals() -> set:
    """Hold the stop signals back (they stay pending) until `release_signals`; returns the previous mask.

    Around a step that must not be split (claiming a job and recording its first heartbeat).
    """
    if threading.current_thread() is not threading.main_thread():
        return set()
    return signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


def release_signals(previous: set) -> None:
    """Deliver the stop signals held back by `hold_signals` (a pending one raises `Stopped` right here)."""
    if threading.current_thread() is threading.main_thread():
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def die_with_parent() -> None:
    """`preexec_fn` of a child process: Linux sends it SIGTERM when its parent dies (even by SIGKILL)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the parent stops its workers itself when it can
        pass


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True
