"""The append-only journal beside the results file: the source of truth between snapshots.

One JSON object per line, each with a sequence number ``q``. Lines reach the operating
system within milliseconds of the event (a killed job loses nothing that reached rank 0) and
are fsynced every ``flush_interval`` (a crashed node loses at most that much). After each
HDF5 snapshot the journal is truncated; the snapshot stores the last sequence number it
contains, so lines that survive a crash between the two steps are skipped on replay.
A torn last line (a kill mid-write) is ignored.
"""

from __future__ import annotations

import json
import os
import time
from typing import Iterator

JOURNAL_SUFFIX = ".journal"


class Journal:
    """Buffered appender. ``log`` is cheap; ``write`` and ``sync`` do the system calls."""

    def __init__(self, path: str, seq: int, fsync: bool = True) -> None:
        self.path = path
        self.seq = seq
        self.fsync = fsync
        self._buffer: list[str] = []
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._dirty = False
        self.last_write = time.monotonic()

    def log(self, event: dict) -> int:
        """Queue one event; return its sequence number."""
        self.seq += 1
        event["q"] = self.seq
        self._buffer.append(json.dumps(event, separators=(",", ":")))
        return self.seq

    @property
    def pending(self) -> bool:
        return bool(self._buffer)

    def write(self) -> None:
        """Hand the queued lines to the operating system (survives a kill of this process)."""
        if self._buffer:
            data = ("\n".join(self._buffer) + "\n").encode()
            self._buffer.clear()
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
            self._dirty = True
        self.last_write = time.monotonic()

    def sync(self) -> None:
        """Write and, if enabled, fsync (survives a crash of the node)."""
        self.write()
        if self.fsync and self._dirty:
            os.fsync(self._fd)
        self._dirty = False

    def truncate(self) -> None:
        """Drop every line: called right after a snapshot made them redundant."""
        self.write()
        os.ftruncate(self._fd, 0)
        self._dirty = False

    def close(self, remove: bool = False) -> None:
        """Sync and close; ``remove`` deletes the file (once a snapshot holds every line),
        and a journal someone already deleted is no error: there is nothing left to lose."""
        if self._fd >= 0:
            try:
                self.sync()
            finally:
                os.close(self._fd)
                self._fd = -1
        if remove:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


def read_journal(path: str, after: int = 0) -> Iterator[dict]:
    """Yield the events of a journal with sequence number > ``after``, oldest first.

    A line that does not parse ends the replay if it is the last one (a torn write);
    anywhere else it means the journal was damaged, which is an error.
    """
    try:
        with open(path, "rb") as f:
            lines = f.read().split(b"\n")
    except FileNotFoundError:
        return
    last = len(lines) - 1
    while last >= 0 and not lines[last].strip():
        last -= 1
    for i, line in enumerate(lines[: last + 1]):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except ValueError:
            if i == last:
                return
            raise ValueError(f"journal '{path}' is damaged at line {i + 1}") from None
        if event.get("q", 0) > after:
            yield event
