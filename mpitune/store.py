"""Rank 0's persistence: a journal as the source of truth, HDF5 snapshots for readers.

Every change to the trial table goes through :meth:`Store.record`, which appends the event
to the journal and applies it to the in-memory table. :meth:`Store.tick` hands journal lines
to the OS every few milliseconds, fsyncs them every ``flush_interval`` and writes an HDF5
snapshot every ``snapshot_interval``, stretched so that snapshots never take more than
``SNAPSHOT_SHARE`` of rank 0's time however large the file grows. Resume and
:func:`mpitune.load` rebuild the same table by reading the snapshot and replaying the
journal lines it does not contain yet.
"""

from __future__ import annotations

import glob
import os
import socket
import sys
import time
from typing import Callable, Optional

from .errors import SpecError, StorageError
from .journal import JOURNAL_SUFFIX, Journal, read_journal
from .lock import FileLock
from .settings import Settings
from .snapshot import Meta, read_snapshot, write_snapshot
from .space import Space
from .table import TrialTable

SNAPSHOT_SHARE = 0.05
WRITE_INTERVAL = 0.002


def read_state(path: str) -> tuple[Meta, TrialTable]:
    """The latest state of a results file: its snapshot plus the journal's newer lines.

    The journal lies beside the real file, so a symlink to a results file reads the same."""
    journal = os.path.realpath(path) + JOURNAL_SUFFIX
    if not os.path.exists(path):
        if os.path.exists(journal):
            raise StorageError(f"'{journal}' exists but '{path}' does not; restore the "
                               f"results file or remove the journal")
        raise StorageError(f"results file '{path}' does not exist")
    meta, table = read_snapshot(path)
    try:
        for event in read_journal(journal, after=meta.journal_seq):
            if event["q"] != meta.journal_seq + 1:
                raise ValueError(f"line {event['q']} follows line {meta.journal_seq}")
            table.apply(event)
            meta.journal_seq = event["q"]
    except (ValueError, KeyError, IndexError, TypeError) as e:
        raise StorageError(f"journal '{journal}' cannot be replayed ({e}); neither file "
                           f"was touched") from None
    return meta, table


class Store:
    """The results file of one run, owned by rank 0 for the run's duration."""

    def __init__(self, path: str, meta: Meta, table: TrialTable, settings: Settings,
                 lock: FileLock, name: str = "") -> None:
        self.path = path  # absolute, symlinks resolved: see Store.open
        self.name = name or path  # as the user gave it, for messages
        self.meta = meta
        self.table = table
        self.settings = settings
        self.lock = lock
        self.journal: Optional[Journal] = None
        now = time.monotonic()
        self._next_sync = now + settings.flush_interval
        self._next_snapshot = now + settings.snapshot_interval
        self.snapshot_seconds = 0.0
        self.snapshots = 0

    @classmethod
    def open(cls, settings: Settings, space: Space, n_ranks: int,
             plan: Optional[Callable[[Meta, TrialTable], dict]] = None) -> Store:
        """Create or resume the results file named by ``settings.storage``.

        ``plan(meta, table)``, called with the seed settled and the trials read (running
        ones marked interrupted) before anything is written, returns what this run's entry
        in ``runs`` adds (its budget), so that the first snapshot holds it, also for a run
        that dies soon after.

        Nothing is written before every check passed, and an existing file is only ever
        replaced by a complete snapshot of the same trials plus new ones. The path is
        resolved once, here: an objective that changes directory (serial mode) cannot move
        the results, and a symlink keeps pointing at the file, whose journal, lock and
        snapshots live beside it whichever name the run was given.
        """
        name = settings.storage
        path = os.path.realpath(name)
        directory = os.path.dirname(path)
        if not os.path.isdir(directory):
            raise StorageError(f"storage directory '{directory}' does not exist (for "
                               f"--storage {name}); create it first")
        if os.path.isdir(path):
            raise StorageError(f"storage '{name}' is a directory; give a file name")
        lock = FileLock(path, name)
        lock.acquire()
        try:
            return cls._open_locked(path, settings, space, n_ranks, lock, plan)
        except BaseException:
            lock.release()
            raise

    @classmethod
    def _open_locked(cls, path: str, settings: Settings, space: Space, n_ranks: int,
                     lock: FileLock, plan: Optional[Callable[[Meta, TrialTable], dict]]
                     ) -> Store:
        name = settings.storage
        for leftover in glob.glob(glob.escape(path) + ".tmp-*"):
            os.unlink(leftover)  # a snapshot a killed run did not finish
        resumed = os.path.exists(path) or os.path.exists(path + JOURNAL_SUFFIX)
        if resumed:
            meta, table = read_state(path)
            old = Space.from_json(meta.space_json)
            difference = old.diff(space)
            if difference:
                raise SpecError(f"the space differs from the one in '{name}': {difference}; "
                                f"use another --storage for a new search")
            if meta.direction != settings.direction:
                raise SpecError(f"'{name}' was a search to {meta.direction}, but direction "
                                f"is now {settings.direction!r}")
            if settings.seed is not None:
                meta.seed = settings.seed
            table.interrupt_running()
        else:
            seed = settings.seed
            if seed is None:
                seed = int.from_bytes(os.urandom(4), "little")
            meta = Meta(space_json=space.to_json(), settings_json="", seed=seed,
                        direction=settings.direction)
            table = TrialTable(space.ndim)
        meta.settings_json = settings.to_json()
        meta.complete = False
        meta.runs.append({"start": time.time(), "ranks": n_ranks,
                          "host": socket.gethostname(), "argv": sys.argv,
                          "resumed_trials": table.n, "end": None, "status": None})
        if plan is not None:
            meta.runs[-1].update(plan(meta, table))
        store = cls(path, meta, table, settings, lock, name)
        try:
            write_snapshot(path, meta, table)
        except OSError as e:
            raise StorageError(f"cannot write results file '{name}': {e.strerror or e}"
                               ) from None
        if os.path.exists(path + JOURNAL_SUFFIX):
            os.unlink(path + JOURNAL_SUFFIX)
        store.journal = Journal(path + JOURNAL_SUFFIX, meta.journal_seq, settings.fsync)
        return store

    @property
    def checkpoint_root(self) -> str:
        """``<results file>.checkpoints``: where ``trial.checkpoint_dir`` directories go
        (absolute, so workers started elsewhere find it; beside the real file, so every
        name of the file finds the same checkpoints)."""
        return self.path + ".checkpoints"

    def record(self, event: dict) -> None:
        """Apply one event to the table, then journal it (an event that cannot be applied
        never reaches the journal, so a replay cannot fail on it)."""
        self.table.apply(event)
        self.journal.log(event)

    def tick(self, now: float) -> None:
        """Do whatever I/O is due; cheap when nothing is."""
        journal = self.journal
        try:
            if journal.pending and now - journal.last_write >= WRITE_INTERVAL:
                journal.write()
            if now >= self._next_sync:
                journal.sync()
                self.lock.heartbeat()
                self._next_sync = now + self.settings.flush_interval
        except OSError as e:
            raise StorageError(f"cannot write journal '{journal.path}': {e.strerror or e}; "
                               f"what was written before is kept and a rerun resumes from "
                               f"it") from None
        if now >= self._next_snapshot:
            self.snapshot()

    def snapshot(self) -> None:
        """Write the whole table as a new HDF5 file and truncate the journal."""
        try:
            self.journal.write()
            self.meta.journal_seq = self.journal.seq
            seconds = write_snapshot(self.path, self.meta, self.table)
        except OSError as e:
            raise StorageError(f"cannot write snapshot of '{self.name}': "
                               f"{e.strerror or e}; the journal still holds every trial"
                               ) from None
        self.journal.truncate()
        self.snapshot_seconds += seconds
        self.snapshots += 1
        self._next_snapshot = time.monotonic() + max(self.settings.snapshot_interval,
                                                     seconds / SNAPSHOT_SHARE)

    def close(self, status: str) -> None:
        """Final snapshot; the journal is removed once the snapshot holds everything."""
        run = self.meta.runs[-1]
        run["end"], run["status"] = time.time(), status
        run["rank0_cpu_seconds"] = time.process_time()
        run["snapshots"], run["snapshot_seconds"] = self.snapshots, self.snapshot_seconds
        self.meta.complete = status == "complete"
        self.snapshot()
        self.journal.close(remove=True)
        self.lock.release()

    def abandon(self) -> None:
        """After a fatal error: push the journal out, keep it for the next run's replay."""
        try:
            if self.journal is not None:
                self.journal.close()
        except OSError:
            pass  # the disk may be full: what reached the journal earlier is still there
        finally:
            self.lock.release()
