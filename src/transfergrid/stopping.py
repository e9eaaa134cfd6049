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


# hold_signals: a stop signal waits in "pending" until release_signals; "stopping": the signal already raised
_holding = {"on": False, "pending": None, "stopping": None}


def _raise_stopped(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
    if _holding["stopping"]:  # a second signal (e.g. SIGTERM twice) must not cut short ending the runs
        return
    if _holding["on"]:
        _holding["pending"] = _holding["pending"] or signum
        return
    _holding["stopping"] = signum
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
        if previous[signal.SIGTERM] is not _raise_stopped:  # the outermost one: the next body starts afresh
            _holding.update(on=False, pending=None, stopping=None)


def hold_signals() -> bool:
    """Hold the stop signals back until `release_signals` (around a step that must not be split: claiming a
    job and recording who runs it); returns whether they were held already (pass it to `release_signals`)."""
    was, _holding["on"] = _holding["on"], True
    return was


def release_signals(was_held: bool = False) -> None:
    """End `hold_signals`: a stop signal that came meanwhile raises `Stopped` here."""
    _holding["on"] = was_held
    if not was_held and (signum := _holding["pending"]):
        _holding["pending"], _holding["stopping"] = None, signum
        raise Stopped(signum)


def die_with_parent():
    """A `preexec_fn` for a child process: Linux sends the child SIGTERM when its parent dies, even by SIGKILL.

    None where `prctl` does not exist (not Linux): the parent stops its children itself when it can. The
    function is looked up here, in the parent: the child, forked from a process with threads, only calls it.
    """
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True
