"""Helpers shared by the benchmark scripts (not a benchmark itself).

Launching ``mpiexec -n N python -m mpitune SPEC ...`` as a subprocess, reading the ``runs``
attribute of a results file, summarising repeats, printing plain-text tables and saving
the numbers as JSON.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from typing import Optional, Sequence


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
    return {"host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "mpitune": mpitune.__version__, "numpy": numpy.__version__,
            "h5py": h5py.__version__, "hdf5": h5py.version.hdf5_version,
            "mpi4py": mpi4py.__version__, "mpi": library, "platform": platform.platform()}


def machine_line(m: dict) -> str:
    return (f"{m['host']}: {m['cpus']} CPUs, Python {m['python']}, mpitune {m['mpitune']}, "
            f"numpy {m['numpy']}, h5py {m['h5py']} (HDF5 {m['hdf5']}), mpi4py {m['mpi4py']}, "
            f"{m['mpi']}")


def save_json(path: Optional[str], data: dict) -> None:
    if path:
        with open(path, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        print(f"numbers saved to {path}")
