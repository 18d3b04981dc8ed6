"""CPU use of rank 0 and of the workers while they wait: nobody may spin.

Runs ``mpiexec -n 4 python -m mpitune spec.py --max-trials 6`` with an objective that
sleeps 2 s per trial, so that everyone waits most of the time: rank 0 for results, the
workers inside the objective, and (with ``--straggler``) two workers for the end of the
search while the last trial sleeps longer. CPU time is sampled three ways:

* the objective records its rank's ``time.process_time()`` and ``time.time()`` right before
  and after the sleep, returned as metrics (CPU of a worker while its objective waits);
* the spec starts a daemon thread on every rank that samples ``time.process_time()`` every
  ``--sample-interval`` seconds and writes the samples at exit (CPU of every rank over
  any window, e.g. from the first trial's start to the last trial's end; the sampler's
  own cost is a few microseconds per sample);
* rank 0's ``rank0_cpu_seconds`` from the ``runs`` attribute of the results file (the
  whole process, start-up included, up to the final snapshot).

    python benchmarks/idle_cpu.py [--json out.json]       # ~10 s
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile

from _common import (
    Interference,
    add_mpi_options,
    find_mpiexec,
    interference_line,
    last_run,
    launch,
    machine,
    machine_line,
    save_json,
    table,
    wait_quiet,
)

SPEC = '''\
import atexit
import json
import threading
import time

from mpi4py import MPI

from mpitune import Real

SLEEP = {sleep!r}
STRAGGLER = {straggler!r}
LAST = {last!r}
OUT = {out!r}
INTERVAL = {interval!r}

space = {{"x": Real(-1.0, 1.0)}}
_rank = MPI.COMM_WORLD.rank
_samples = [(time.time(), time.process_time())]
_stop = threading.Event()


def _sample():
    while not _stop.wait(INTERVAL):
        _samples.append((time.time(), time.process_time()))


def _save():
    _stop.set()
    _samples.append((time.time(), time.process_time()))
    with open(f"{{OUT}}/rank{{_rank}}.json", "w") as f:
        json.dump({{"rank": _rank, "samples": _samples}}, f)


threading.Thread(target=_sample, daemon=True).start()
atexit.register(_save)


def objective(params, trial):
    w0, c0 = time.time(), time.process_time()
    time.sleep(SLEEP + (STRAGGLER if trial.number == LAST else 0.0))
    w1, c1 = time.time(), time.process_time()
    return {{"value": params["x"] ** 2, "w0": w0, "w1": w1, "c0": c0, "c1": c1}}
'''


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ranks", type=int, default=4, help="ranks (default 4)")
    p.add_argument("--trials", type=int, default=6, help="trials (default 6)")
    p.add_argument("--sleep", type=float, default=2.0, help="seconds per trial (default 2)")
    p.add_argument("--straggler", type=float, default=2.0,
                   help="extra seconds for the last trial, so that the other workers wait "
                        "idle for the end of the search (default 2; 0: none)")
    p.add_argument("--sample-interval", type=float, default=0.05,
                   help="seconds between CPU samples on every rank (default 0.05)")
    p.add_argument("--target", type=float, default=3.0,
                   help="CPU %% above which a waiting rank counts as spinning (default 3)")
    add_mpi_options(p)
    p.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                   help="first wait up to SECONDS for the machine to be idle (default 0)")
    args = p.parse_args(argv)
    if args.ranks < 2:
        p.error("--ranks must be >= 2")
    return args


def window(samples: list, start: float, end: float) -> tuple[float, float]:
    """(wall seconds, CPU seconds) between the first sample at or after ``start`` and the
    last at or before ``end``."""
    inside = [s for s in samples if start <= s[0] <= end]
    if len(inside) < 2:
        return 0.0, 0.0
    return inside[-1][0] - inside[0][0], inside[-1][1] - inside[0][1]


def pct(cpu: float, wall: float) -> str:
    return f"{100 * cpu / wall:.2f}" if wall > 0 else "-"


def main(argv=None) -> int:
    args = parse_args(argv)
    m = machine()
    print("mpitune idle CPU: does anyone spin while waiting?")
    print(machine_line(m))
    with tempfile.TemporaryDirectory(prefix="mpitune-bench-") as workdir:
        spec = os.path.join(workdir, "idle_spec.py")
        with open(spec, "w") as f:
            f.write(SPEC.format(sleep=args.sleep, straggler=args.straggler,
                                last=args.trials - 1, out=workdir,
                                interval=args.sample_interval))
        storage = os.path.join(workdir, "idle.h5")
        options = ["--max-trials", str(args.trials), "--sampler", "random",
                   "--progress-interval", "0", "--seed", "1"]
        print(f"command: mpiexec -n {args.ranks} python -m mpitune idle_spec.py "
              f"--storage <tmp>/idle.h5 {' '.join(options)}")
        print(f"objective sleeps {args.sleep:g} s per trial (trial {args.trials - 1}: "
              f"{args.sleep + args.straggler:g} s); {args.ranks - 1} workers")
        if args.wait_quiet > 0:
            wait_quiet(args.wait_quiet)
        quiet = Interference()
        wall, _ = launch(find_mpiexec(args.mpiexec), args.mpiexec_args, args.ranks, spec,
                         storage, options, workdir)
        run = last_run(storage)
        import mpitune

        r = mpitune.load(storage)
        ranks = {}
        for path in glob.glob(os.path.join(workdir, "rank*.json")):
            with open(path) as f:
                d = json.load(f)
            ranks[d["rank"]] = d["samples"]
    if sorted(ranks) != list(range(args.ranks)):
        sys.exit(f"benchmark: CPU samples came back from ranks {sorted(ranks)} only")

    first, last = float(r["w0"].min()), float(r["w1"].max())
    rows, out = [], {"machine": m, "args": dict(vars(args)), "wall_s": wall,
                     "search_window_s": last - first, "ranks": {}}
    worst = 0.0
    for rank in range(args.ranks):
        s = ranks[rank]
        proc_wall, proc_cpu = s[-1][0] - s[0][0], s[-1][1]
        startup = window(s, 0.0, first)[1] + s[0][1]
        w_wall, w_cpu = window(s, first, last)
        row = {"process_wall_s": proc_wall, "process_cpu_s": proc_cpu, "startup_cpu_s": startup,
               "window_wall_s": w_wall, "window_cpu_s": w_cpu}
        if rank == 0:
            obj, idle = "-", pct(w_cpu, w_wall)
            row["rank0_cpu_seconds"] = run["rank0_cpu_seconds"]
            worst = max(worst, 100 * w_cpu / max(w_wall, 1e-9))
        else:
            mine = r["worker"] == rank
            in_wall = float((r["w1"][mine] - r["w0"][mine]).sum())
            in_cpu = float((r["c1"][mine] - r["c0"][mine]).sum())
            out_wall, out_cpu = max(0.0, w_wall - in_wall), max(0.0, w_cpu - in_cpu)
            obj = pct(in_cpu, in_wall)
            idle = pct(out_cpu, out_wall) if out_wall > 0.2 else "-"
            row.update(trials=int(mine.sum()), objective_wall_s=in_wall,
                       objective_cpu_s=in_cpu, waiting_wall_s=out_wall, waiting_cpu_s=out_cpu)
            worst = max(worst, 100 * in_cpu / max(in_wall, 1e-9))
            if out_wall > 0.2:
                worst = max(worst, 100 * out_cpu / out_wall)
        out["ranks"][rank] = row
        rows.append([rank, "master" if rank == 0 else "worker", row.get("trials", "-"),
                     f"{proc_wall:.2f}", f"{proc_cpu:.3f}", f"{startup:.3f}", f"{w_wall:.2f}",
                     f"{w_cpu * 1000:.1f}", pct(w_cpu, w_wall), obj, idle,
                     f"{row.get('waiting_wall_s', w_wall):.2f}"])
    print(f"whole run {wall:.2f} s (mpiexec launch to exit); search window {last - first:.2f} s "
          f"(first trial start to last trial end)")
    print()
    print(table(["rank", "role", "trials", "process s", "process CPU s", "start-up CPU s",
                 "window s", "window CPU ms", "window CPU %", "CPU % in objective",
                 "CPU % waiting", "waiting s"], rows))
    print("  window: first trial start to last trial end; 'waiting' = window outside the "
          "objective (rank 0: all of it; workers: between trials and after their last)")
    r0 = run["rank0_cpu_seconds"]
    print(f"  rank 0 from 'runs': rank0_cpu_seconds {r0:.3f} s (whole process, start-up "
          f"included) = {100 * r0 / wall:.2f}% of the whole run's {wall:.2f} s")
    out["rank0_cpu_seconds"] = r0
    verdict = "met" if worst <= args.target else "NOT met"
    print(f"target: every waiting rank <= {args.target:g}% CPU; worst {worst:.2f}% -> {verdict}")
    out["worst_waiting_cpu_pct"] = worst
    out["other_cpu_share"] = quiet.share()
    print(interference_line(out["other_cpu_share"]))
    save_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
