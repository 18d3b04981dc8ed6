"""Transports for the protocol: ``post(dest, tag, payload)`` and ``fetch()``.

The master and the worker only talk through a channel, so the same loops run over MPI
(:class:`MPIChannel`) and inside one process (:class:`LocalChannel`, used for the serial
mode ``python -m mpitune spec.py`` and for tests of the loops without MPI). Sends never
block: a rank busy in an objective or a snapshot does not stall its peer.
"""

from __future__ import annotations

from collections import deque
from typing import Any


class MPIChannel:
    def __init__(self, comm) -> None:
        from mpi4py import MPI

        self._MPI = MPI
        self.comm = comm
        self.rank = comm.rank
        self._requests: list = []
        self._status = MPI.Status()

    def post(self, dest: int, tag: int, payload: Any) -> None:
        self._requests.append(self.comm.isend(payload, dest, tag))
        if len(self._requests) >= 32:
            self._requests = [r for r in self._requests if not r.Test()]

    def fetch(self, source: int | None = None, limit: int = 64) -> list[tuple[int, int, Any]]:
        """Up to ``limit`` messages that have arrived, in arrival order; never waits."""
        MPI, comm, status = self._MPI, self.comm, self._status
        src = MPI.ANY_SOURCE if source is None else source
        out = []
        # MPICH often reports a message that has just arrived only on the second probe
        # (the first one drives progress): probe twice before concluding there is none.
        while len(out) < limit and (comm.iprobe(src, MPI.ANY_TAG, status)
                                    or comm.iprobe(src, MPI.ANY_TAG, status)):
            s, t = status.Get_source(), status.Get_tag()
            out.append((s, t, comm.recv(source=s, tag=t)))
        return out

    @property
    def sending(self) -> bool:
        self._requests = [r for r in self._requests if not r.Test()]
        return bool(self._requests)


class LocalChannel:
    """One end of an in-process pair of queues."""

    def __init__(self, rank: int) -> None:
        self.rank = rank
        self.inbox: deque = deque()
        self.peer: LocalChannel | None = None
        self.pump = None  # called before each fetch: lets the peer answer in the meantime

    @classmethod
    def pair(cls, rank_a: int = 0, rank_b: int = 1) -> tuple[LocalChannel, LocalChannel]:
        a, b = cls(rank_a), cls(rank_b)
        a.peer, b.peer = b, a
        return a, b

    def post(self, dest: int, tag: int, payload: Any) -> None:
        self.peer.inbox.append((self.rank, tag, payload))

    def fetch(self, source: int | None = None, limit: int = 64) -> list[tuple[int, int, Any]]:
        if self.pump is not None:
            self.pump()
        out = []
        while self.inbox and len(out) < limit:
            out.append(self.inbox.popleft())
        return out

    sending = False
