"""Shared helpers for the test suite: launching mpitune under mpiexec, writing spec files.

Every MPI run happens in a subprocess with a timeout, so a deadlock fails a test instead of
hanging the suite. MPICH's hydra puts each proxy and each rank in its own session, so a
signal to the process group of ``mpiexec`` does not reach the ranks directly (the proxy
tears them down once mpiexec is gone); to kill a whole job at once the helpers walk the
process tree (``/proc``) and signal every process of it by its id.

Helpers (plain functions, importable with ``from conftest import ...``):

* ``run_mpi(n, args, env=None, timeout=60, cwd=None, module=True)`` ->
  ``(returncode, stdout, stderr)`` (a :class:`RunResult`, with ``.elapsed`` and
  ``.describe()``); ``n=None`` runs ``python -m mpitune ARGS`` serially, without mpiexec;
  ``module=False`` runs ``python SCRIPT ARGS`` instead; ``env`` values of None unset a name.
* ``start_mpi(...)`` -> a :class:`Job` running in the background (for signals and kills).
* ``write_spec(tmp_path, text, name="spec.py")`` -> the path of a dedented spec file.
* ``PYTHON`` (``sys.executable``), ``MPIEXEC`` (the mpiexec beside it, else on PATH).

Fixtures: ``run`` (alias ``run_mpi``): ``run_mpi`` with the test's tmp_path as working
directory; ``start``: ``start_mpi`` likewise, every job killed after the test; ``spec``:
``write_spec`` into tmp_path.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence

import pytest

BENCHMARKS = str(Path(__file__).resolve().parent.parent / "benchmarks")
sys.path.insert(0, BENCHMARKS)  # the fault-injection helpers live in benchmarks/faults.py
import faults  # noqa: E402

PYTHON = sys.executable


def _find_mpiexec() -> Optional[str]:
    beside = Path(sys.executable).parent / "mpiexec"
    if beside.exists() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("mpiexec")


MPIEXEC = _find_mpiexec()
HAVE_NVIDIA = os.path.isdir("/proc/driver/nvidia/gpus") and bool(
    os.listdir("/proc/driver/nvidia/gpus"))

# a run that has not finished in this many seconds is a deadlock, not a slow machine
DEFAULT_TIMEOUT = 60.0


class RunResult(tuple):
    """``(returncode, stdout, stderr)``, plus ``elapsed`` seconds and the ``command``."""

    def __new__(cls, returncode: int, stdout: str, stderr: str, elapsed: float,
                command: Sequence[str]):
        obj = super().__new__(cls, (returncode, stdout, stderr))
        obj.elapsed = elapsed
        obj.command = list(command)
        return obj

    returncode = property(lambda self: self[0])
    stdout = property(lambda self: self[1])
    stderr = property(lambda self: self[2])

    def describe(self) -> str:
        return (f"command: {' '.join(self.command)}\nexit: {self.returncode} after "
                f"{self.elapsed:.1f} s\n--- stdout ---\n{self.stdout}\n--- stderr ---\n"
                f"{self.stderr}")


def mpi_command(n: Optional[int], args: Sequence[str], module: bool = True) -> list[str]:
    """``mpiexec -n N python -m mpitune ARGS`` (or ``python SCRIPT ARGS`` with
    ``module=False``); ``n=None`` leaves mpiexec out."""
    python = [PYTHON, "-m", "mpitune"] if module else [PYTHON]
    if n is None:
        return python + [str(a) for a in args]
    if MPIEXEC is None:
        pytest.skip("no mpiexec found beside the Python interpreter or on PATH")
    return [MPIEXEC, "-n", str(n)] + python + [str(a) for a in args]


def make_env(env: Optional[Mapping[str, Optional[str]]] = None) -> dict:
    """The environment of a run: ours, updated by ``env``; a value None removes a name."""
    out = dict(os.environ)
    out.setdefault("PYTHONUNBUFFERED", "1")
    for key, value in (env or {}).items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = str(value)
    return out


# ---- process trees -------------------------------------------------------------------
def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants, parents before children (``/proc``, Linux only)."""
    return [pid, *faults.descendants(pid)]


def signal_tree(pids: Iterable[int], sig: int) -> None:
    """Send ``sig`` to each of ``pids`` (children first), ignoring ones already gone."""
    for p in reversed(list(pids)):
        try:
            os.kill(p, sig)
        except (ProcessLookupError, PermissionError):
            pass


def exists(pid: int) -> bool:
    """True while ``pid`` is in the process table, zombies included."""
    return os.path.exists(f"/proc/{pid}")


def wait_gone(pids: Iterable[int], timeout: float = 15.0) -> bool:
    """Wait until every one of ``pids`` has left the process table; False on timeout.

    Zombies count as present: ``kill(pid, 0)`` (how mpitune's lock tells whether its owner
    lives) succeeds on them. Ranks whose parent proxy was killed too are reparented to
    PID 1, which may take a moment to reap them (about a second in some containers).
    """
    pids = list(pids)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(exists(p) for p in pids):
            return True
        time.sleep(0.02)
    return not any(exists(p) for p in pids)


class Job:
    """A launched command (usually mpiexec) running in the background in its own session.

    Output goes to files (no pipe can fill up and block the job).
    """

    def __init__(self, command: Sequence[str], env: dict, cwd: str) -> None:
        self.command = list(command)
        self._out = tempfile.TemporaryFile(mode="w+")
        self._err = tempfile.TemporaryFile(mode="w+")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.command, env=env, cwd=cwd, stdout=self._out,
                                     stderr=self._err, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        self.pid = self.proc.pid

    def tree(self) -> list[int]:
        return process_tree(self.pid)

    def send(self, sig: int) -> None:
        """Signal the launcher only (as a batch system does with mpiexec)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill_all(self, sig: int = signal.SIGKILL) -> list[int]:
        """Signal every process of the job at once (ranks first); return their ids."""
        pids = self.tree()
        signal_tree(pids, sig)
        return pids

    def wait(self, timeout: float = DEFAULT_TIMEOUT) -> RunResult:
        """Wait for the launcher to exit; on timeout kill the whole job and fail."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pids = self.kill_all(signal.SIGKILL)
            self.proc.wait()
            wait_gone(pids, 5.0)
            result = self._result()
            pytest.fail(f"timed out after {timeout} s (deadlock?); job killed\n"
                        f"{result.describe()}", pytrace=False)
        return self._result()

    def _result(self) -> RunResult:
        texts = []
        for f in (self._out, self._err):
            f.flush()
            f.seek(0)
            texts.append(f.read())
        return RunResult(self.proc.returncode, texts[0], texts[1],
                         time.monotonic() - self.started, self.command)

    def running(self) -> bool:
        return self.proc.poll() is None

    def cleanup(self) -> None:
        """Make sure nothing of the job outlives the test."""
        if self.proc.poll() is None:
            pids = self.kill_all(signal.SIGKILL)
            self.proc.wait()
            wait_gone(pids, 5.0)
        self._out.close()
        self._err.close()


def start_mpi(n: Optional[int], args: Sequence[str],
              env: Optional[Mapping[str, Optional[str]]] = None, cwd=None,
              module: bool = True) -> Job:
    """Start ``mpiexec -n N python -m mpitune ARGS`` in the background."""
    return Job(mpi_command(n, args, module), make_env(env), str(cwd or os.getcwd()))


def run_mpi(n: Optional[int], args: Sequence[str],
            env: Optional[Mapping[str, Optional[str]]] = None,
            timeout: float = DEFAULT_TIMEOUT, cwd=None, module: bool = True) -> RunResult:
    """Run ``mpiexec -n N python -m mpitune ARGS`` (serially when ``n`` is None) and return
    ``(returncode, stdout, stderr)``; a run past ``timeout`` is killed and fails the test."""
    job = start_mpi(n, args, env=env, cwd=cwd, module=module)
    try:
        return job.wait(timeout)
    finally:
        job.cleanup()


def write_spec(tmp_path, text: str, name: str = "spec.py") -> str:
    """Write a dedented spec file into ``tmp_path`` and return its path."""
    path = Path(tmp_path) / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return str(path)


def error_lines(stderr: str) -> list[str]:
    """The ``mpitune: error: ...`` lines of a run's stderr."""
    return [line for line in stderr.splitlines() if line.startswith("mpitune: error:")]


# ---- fixtures ---------------------------------------------------------------------------
@pytest.fixture
def run(tmp_path):
    """``run(n, args, env=None, timeout=60)`` with the test's tmp_path as working dir."""
    def _run(n, args, env=None, timeout=DEFAULT_TIMEOUT, cwd=None, module=True):
        return run_mpi(n, args, env=env, timeout=timeout, cwd=cwd or tmp_path, module=module)

    return _run


@pytest.fixture(name="run_mpi")
def run_mpi_fixture(run):
    return run


@pytest.fixture
def start(tmp_path):
    """``start(n, args, env=None)``: a background :class:`Job`, killed after the test."""
    jobs: list[Job] = []

    def _start(n, args, env=None, cwd=None, module=True):
        job = start_mpi(n, args, env=env, cwd=cwd or tmp_path, module=module)
        jobs.append(job)
        return job

    yield _start
    for job in jobs:
        job.cleanup()


@pytest.fixture
def spec(tmp_path):
    """``spec(text, name="spec.py")``: write a spec file into tmp_path."""
    return lambda text, name="spec.py": write_spec(tmp_path, text, name)
