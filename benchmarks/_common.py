"""Helpers shared by the benchmark scripts (not a benchmark itself).

Launching ``mpiexec -n N python -m mpitune SPEC ...`` as a subprocess, reading the ``runs``
attribute of a results file, summarising repeats, printing plain-text tables and saving
the numbers as JSON.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from typing import Optional, Sequence


class Interference:
    """CPU time that processes other than this benchmark used since ``start()``.

    All CPU time the machine spent (``/proc/stat``: everything but idle and iowait) minus
    this process's and its waited-for descendants' (``getrusage``); mpiexec and every rank
    count as descendants once they have exited. Linux only; elsewhere it reports None.
    A busy machine makes timings of a benchmark meaningless, so the scripts print this.
    """

    def __init__(self) -> None:
        self.start()

    @staticmethod
    def _machine_busy() -> Optional[float]:
        try:
            with open("/proc/stat") as f:
                fields = [int(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        busy = sum(fields[:8]) - idle  # user nice system idle iowait irq softirq steal
        return busy / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _mine() -> float:
        me = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

    def start(self) -> None:
        self._t0, self._busy0, self._mine0 = time.perf_counter(), self._machine_busy(), \
            self._mine()

    def other_cpu_seconds(self) -> Optional[float]:
        busy = self._machine_busy()
        if busy is None or self._busy0 is None:
            return None
        return max(0.0, (busy - self._busy0) - (self._mine() - self._mine0))

    def share(self) -> Optional[float]:
        """Other processes' CPU as a fraction of the whole machine since ``start()``."""
        other = self.other_cpu_seconds()
        elapsed = time.perf_counter() - self._t0
        if other is None or elapsed <= 0:
            return None
        return other / (elapsed * (os.cpu_count() or 1))


def wait_quiet(limit: float, idle: float = 0.97, probe: float = 1.0) -> Optional[float]:
    """Wait up to ``limit`` seconds for a ``probe``-second spell with the machine at least
    ``idle`` idle; return the seconds waited, or None if it never was (or no /proc/stat)."""
    t0 = time.perf_counter()
    while True:
        q = Interference()
        time.sleep(probe)
        share = q.share()
        if share is None:
            return None
        if share <= 1.0 - idle:
            return time.perf_counter() - t0
        if time.perf_counter() - t0 >= limit:
            return None


def add_quiet_options(parser) -> None:
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="before each run, wait up to SECONDS for the machine to be idle "
                             "(for shared machines; default 0: do not wait)")
    parser.add_argument("--retry-noisy", type=int, default=0, metavar="N",
                        help="run again, up to N times, a run during which other processes "
                             "used > 5%% of the machine; the quietest is kept (default 0)")


NOISY = 0.05


def interference_line(share: Optional[float]) -> str:
    if share is None:
        return "other processes' CPU use: unknown (no /proc/stat)"
    text = f"other processes used {share:.1%} of the machine's CPU meanwhile"
    if share > NOISY:
        text += " -- WARNING: the machine was not quiet; timings are not trustworthy"
    return text


def find_mpiexec(given: Optional[str] = None) -> str:
    """``given``, else $MPIEXEC, else the mpiexec beside this Python, else the one on PATH."""
    if given:
        return given
    if os.environ.get("MPIEXEC"):
        return os.environ["MPIEXEC"]
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which("mpiexec")
    if not found:
        sys.exit("benchmark: no mpiexec found; pass --mpiexec PATH")
    return found


def add_mpi_options(parser) -> None:
    parser.add_argument("--mpiexec", default=None,
                        help="mpiexec to launch with (default: beside this Python, or PATH)")
    parser.add_argument("--mpiexec-args", default="",
                        help="extra mpiexec arguments, e.g. '--oversubscribe' for Open MPI")
    parser.add_argument("--json", metavar="PATH", default=None,
                        help="also save every measured number to PATH as JSON")


def launch(mpiexec: str, mpiexec_args: str, n: int, spec: str, storage: str,
           options: Sequence[str], cwd: str, timeout: float = 900.0,
           env: Optional[dict] = None) -> tuple[float, subprocess.CompletedProcess]:
    """Run one search; return (whole-process wall seconds, the finished process).

    The wall time spans the launch of mpiexec to its exit: MPI start-up, imports, the
    search, the final snapshot and MPI shutdown are all included.
    """
    cmd = [mpiexec, *shlex.split(mpiexec_args), "-n", str(n), sys.executable, "-m",
           "mpitune", spec, "--storage", storage, *options]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(f"benchmark: command failed with exit status {proc.returncode}:\n"
                         f"  {shlex.join(cmd)}\n{proc.stdout}{proc.stderr}")
        sys.exit(1)
    return wall, proc


def last_run(path: str) -> dict:
    """The last entry of the ``runs`` attribute, plus ``n_trials``, ``complete`` and the
    file size in bytes."""
    import h5py

    with h5py.File(path, "r") as f:
        run = json.loads(f.attrs["runs"])[-1]
        run["n_trials"] = int(f.attrs["n_trials"])
        run["file_complete"] = bool(f.attrs["complete"])
        t = f["trials"]
        durations = t["t_end"][...] - t["t_start"][...]
        run["mean_trial_seconds"] = float(durations.mean()) if len(durations) else 0.0
    run["file_bytes"] = os.path.getsize(path)
    return run


def stats(values: Sequence[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "values": list(values)}


def spread(s: dict, fmt: str) -> str:
    """``median (min-max)`` of a :func:`stats` dict."""
    return f"{s['median']:{fmt}} ({s['min']:{fmt}}-{s['max']:{fmt}})"


def table(headers: Sequence[str], rows: Sequence[Sequence], indent: str = "  ") -> str:
    """A plain-text table, columns right-aligned except the first."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def fmt(r):
        return indent + "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                  for i, (c, w) in enumerate(zip(r, widths)))

    rule = indent + "  ".join("-" * w for w in widths)
    return "\n".join([fmt(cells[0]), rule] + [fmt(r) for r in cells[1:]])


def machine() -> dict:
    import h5py
    import mpi4py
    import numpy

    import mpitune

    try:
        mpi4py.rc.initialize = False  # the library version needs no MPI_Init in the driver
        from mpi4py import MPI

        library = " ".join(MPI.Get_library_version().splitlines()[0].split())
    except Exception:  # noqa: BLE001 - only for the header
        library = "?"
    return {"commit": _commit(os.path.dirname(os.path.abspath(mpitune.__file__))),
            "host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "mpitune": mpitune.__version__, "numpy": numpy.__version__,
            "h5py": h5py.__version__, "hdf5": h5py.version.hdf5_version,
            "mpi4py": mpi4py.__version__, "mpi": library, "platform": platform.platform()}


def _commit(directory: str) -> str:
    """The git commit of the mpitune checkout, with '+changes' if it has uncommitted ones."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=directory,
                              capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "."],
                               cwd=directory, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "?"
    if head.returncode != 0:
        return "?"
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def machine_line(m: dict) -> str:
    return (f"{m['host']}: {m['cpus']} CPUs, Python {m['python']}, mpitune {m['mpitune']} "
            f"({m.get('commit', '?')}), "
            f"numpy {m['numpy']}, h5py {m['h5py']} (HDF5 {m['hdf5']}), mpi4py {m['mpi4py']}, "
            f"{m['mpi']}")


def save_json(path: Optional[str], data: dict) -> None:
    if path:
        with open(path, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        print(f"numbers saved to {path}")
