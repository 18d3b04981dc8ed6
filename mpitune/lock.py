"""One writer per results file: a lock file created with O_EXCL beside it.

``O_CREAT | O_EXCL`` is atomic on local file systems, Lustre, GPFS and NFSv3+. The lock
holds the owner's host, pid and start time, and its mtime is a heartbeat that the owner
refreshes at every journal fsync. A lock is stale, and is taken over, when its owner ran on
this host and that pid is gone, or when its heartbeat is older than ``STALE_AFTER`` seconds
(the owner's node died, or its pid was reused after a reboot), or when it says no owner at
all (empty or unreadable: its creator died, or met a full disk, between creating and
writing it) and is older than ``UNWRITTEN_AFTER`` seconds. A lock naming this very process
is stale unless this process holds it (see ``_HELD``): in a container, a rerun often gets
the pid its killed predecessor had. Otherwise the second job refuses to start.
"""

from __future__ import annotations

import json
import os
import socket
import time

from .errors import StorageError

LOCK_SUFFIX = ".lock"
STALE_AFTER = 120.0
UNWRITTEN_AFTER = 5.0  # a live owner writes its lock within microseconds of creating it

# the lock files this process holds (real paths): two searches in one process on one file
# still exclude each other, while a lock left by a dead process with our pid is stale
_HELD: set[str] = set()


def _pid_alive(pid: int) -> bool:
    """True if ``pid`` runs on this host (a zombie, killed but not yet reaped, is dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True


class FileLock:
    """The lock of ``results_path``; messages call the file ``name`` (default: the path).

    Give the real path (``os.path.realpath``): two names of one file must share a lock."""

    def __init__(self, results_path: str, name: str = "") -> None:
        self.path = results_path + LOCK_SUFFIX
        self.name = name or results_path
        self.held = False

    def acquire(self) -> None:
        """Take the lock or raise :class:`StorageError` saying who holds it."""
        info = json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                           "since": time.time()})
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                if self._stale():
                    try:
                        os.unlink(self.path)
                    except FileNotFoundError:
                        pass
                    continue
                raise StorageError(self._busy_message()) from None
            except OSError as e:
                raise StorageError(f"cannot write beside '{self.name}': "
                                   f"{e.strerror} ({self.path})") from None
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(info)
            except OSError as e:
                os.unlink(self.path)
                raise StorageError(f"cannot write beside '{self.name}': "
                                   f"{e.strerror} ({self.path})") from None
            self.held = True
            _HELD.add(os.path.realpath(self.path))
            return
        raise StorageError(self._busy_message())

    def _owner(self) -> dict:
        try:
            with open(self.path) as f:
                owner = json.load(f)
        except (OSError, ValueError):
            return {}
        return owner if isinstance(owner, dict) else {}

    def _stale(self) -> bool:
        owner = self._owner()
        try:
            age = time.time() - os.stat(self.path).st_mtime
        except FileNotFoundError:
            return True
        if owner.get("host") == socket.gethostname() and isinstance(owner.get("pid"), int):
            if owner["pid"] == os.getpid():
                return os.path.realpath(self.path) not in _HELD
            if not _pid_alive(owner["pid"]):
                return True
        if not owner:
            return age > UNWRITTEN_AFTER
        return age > STALE_AFTER  # the owner's node died, or its pid now names another process

    def _busy_message(self) -> str:
        owner = self._owner()
        who = (f"pid {owner.get('pid')} on {owner.get('host')}" if owner
               else "another process")
        return (f"results file '{self.name}' is in use by another mpitune run ({who}); "
                f"if that run is dead, delete '{self.path}' (a lock is also taken over "
                f"automatically once its heartbeat is {STALE_AFTER:.0f} s old)")

    def heartbeat(self) -> None:
        if self.held:
            try:
                os.utime(self.path)
            except OSError:
                pass

    def release(self) -> None:
        if self.held:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            self.held = False
            _HELD.discard(os.path.realpath(self.path))
