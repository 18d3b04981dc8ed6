"""The signals that stop a search: SIGTERM (scancel, time limit), SIGINT (Ctrl-C) and
SIGUSR1 (Slurm's ``--signal=USR1@N`` warning). mpiexec and srun deliver them to every rank.

:func:`record_early` is installed first thing on every rank, before MPI and the spec are
loaded, so a signal during start-up is neither fatal nor lost: workers keep ignoring them
(rank 0 decides), and rank 0's master takes over the list when its loop starts.
"""

from __future__ import annotations

import signal
import threading
from typing import Callable

NAMES = ("SIGTERM", "SIGINT", "SIGUSR1")
received: list[str] = []


def _record(signum, frame) -> None:
    received.append(signal.Signals(signum).name)


def install(handler: Callable = _record) -> dict:
    """Route the stop signals to ``handler``; return the previous handlers."""
    previous = {}
    for name in NAMES:
        sig = getattr(signal, name, None)
        if sig is not None:
            previous[sig] = signal.signal(sig, handler)
    return previous


def restore(previous: dict) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def in_main_thread() -> bool:
    """Whether this is the main thread: the only one where Python sets signal handlers
    (and so the only one a search can stop, interrupt or time out by signal)."""
    return threading.current_thread() is threading.main_thread()


def record_early() -> None:
    """Record stop signals from now on (main thread only; elsewhere this is a no-op)."""
    if in_main_thread():
        install(_record)
