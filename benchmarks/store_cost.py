"""The cost of persistence for a large search, measured without MPI.

A :class:`mpitune.store.Store` is opened exactly as rank 0 opens it and fed the events that
master.py records for a search of ``--trials`` trials with ``--points`` learning-curve
points each, from ``--workers`` simulated workers in batches of ``--batch`` trials:

* ``A`` (new trials with their unit-cube points) and ``S`` (handed to a worker), as in
  ``Master._send_trials``;
* ``C`` (curve points, ``--report-points`` per REPORTS message), as in ``Master._on_curve``;
* ``D`` (trials finished), as in ``Master._on_results``;

with ``store.tick(time.monotonic())`` after each worker's messages, as the master loop
does after each round of messages. Journal cost is the CPU time of ``record`` and ``tick``
with the snapshots that ``tick`` triggers taken out; those snapshots (the adaptive
interval in store.py: the next one after ``max(snapshot_interval, cost / 0.05)``) are
counted separately, with their share of the elapsed time of the feed. After the feed:
one full HDF5 snapshot timed at 10%, 50% and 100% of the trials (written to a separate
file, outside the feed), ``read_state`` and ``mpitune.load`` while the run is live
(snapshot + journal replay), the final snapshot of ``close``, and a resume.

    python benchmarks/store_cost.py                      # 10,000 x 100 points, ~15 s
    python benchmarks/store_cost.py --trials 100000      # 100,000 x 100 = 10 M points
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np
from _common import (
    Interference,
    interference_line,
    machine,
    machine_line,
    save_json,
    table,
    wait_quiet,
)

import mpitune
from mpitune.journal import JOURNAL_SUFFIX
from mpitune.settings import Settings
from mpitune.snapshot import write_snapshot
from mpitune.space import Real, Space
from mpitune.store import SNAPSHOT_SHARE, Store, read_state
from mpitune.table import COMPLETE, TrialTable

KINDS = ("A", "S", "C", "D")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=10_000,
                   help="trials in the search (default 10000; the full size is 100000)")
    p.add_argument("--points", type=int, default=100,
                   help="curve points per trial (default 100)")
    p.add_argument("--workers", type=int, default=8, help="simulated workers (default 8)")
    p.add_argument("--batch", type=int, default=16,
                   help="trials per TRIALS / RESULTS message (default 16)")
    p.add_argument("--report-points", type=int, default=100,
                   help="curve points per REPORTS message, i.e. per C event (default 100)")
    p.add_argument("--snapshot-interval", type=float, default=Settings.snapshot_interval,
                   help=f"the setting (default {Settings.snapshot_interval:g} s, as mpitune's)")
    p.add_argument("--no-fsync", action="store_true", help="run with fsync=False")
    p.add_argument("--repeat", type=int, default=3,
                   help="repetitions of each separately timed snapshot / read (default 3)")
    p.add_argument("--dir", default=None, help="directory for the temporary files "
                                                "(default: the system's temporary directory)")
    p.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                   help="first wait up to SECONDS for the machine to be idle (default 0)")
    p.add_argument("--json", metavar="PATH", default=None,
                   help="also save every measured number to PATH as JSON")
    args = p.parse_args(argv)
    if min(args.trials, args.workers, args.batch, args.report_points) < 1 or args.points < 0:
        p.error("sizes must be positive")
    return args


class Feed:
    """Generates the master's events and times what the store does with them."""

    def __init__(self, args, store: Store, ndim: int) -> None:
        self.args, self.store, self.ndim = args, store, ndim
        self.rng = np.random.default_rng(1)
        self.cpu = dict.fromkeys(KINDS + ("tick",), 0.0)
        self.wall = dict.fromkeys(KINDS + ("tick",), 0.0)
        self.calls = dict.fromkeys(KINDS + ("tick",), 0)
        self.snapshots: list[dict] = []  # the ones tick triggers
        self.in_snapshot = [0.0, 0.0]  # cpu, wall of those, to take out of the tick time
        self.next_number = 0
        self.finished = 0
        original = store.snapshot

        def timed_snapshot() -> None:
            c0, w0, s0 = time.process_time(), time.perf_counter(), store.snapshot_seconds
            original()
            cpu, wall = time.process_time() - c0, time.perf_counter() - w0
            counted = store.snapshot_seconds - s0  # what the adaptive interval is based on
            self.in_snapshot[0] += cpu
            self.in_snapshot[1] += wall
            self.snapshots.append({"trials": store.table.n, "finished": store.table.n_finished,
                                   "curve_points": store.table.n_curve, "cpu_s": cpu,
                                   "wall_s": wall, "counted_s": counted,
                                   "at_s": time.perf_counter() - self.t0})

        store.snapshot = timed_snapshot  # tick() and close() call it through the instance
        self.t0 = time.perf_counter()

    def record(self, event: dict) -> None:
        kind = event["k"]
        c0, w0 = time.process_time(), time.perf_counter()
        self.store.record(event)
        self.cpu[kind] += time.process_time() - c0
        self.wall[kind] += time.perf_counter() - w0
        self.calls[kind] += 1

    def tick(self) -> None:
        s0 = tuple(self.in_snapshot)
        c0, w0 = time.process_time(), time.perf_counter()
        self.store.tick(time.monotonic())
        c1, w1 = time.process_time(), time.perf_counter()
        self.cpu["tick"] += (c1 - c0) - (self.in_snapshot[0] - s0[0])
        self.wall["tick"] += (w1 - w0) - (self.in_snapshot[1] - s0[1])
        self.calls["tick"] += 1

    def send_trials(self, worker: int, k: int) -> list[int]:
        """``Master._send_trials`` for ``k`` new trials."""
        n0 = self.store.table.n
        self.record({"k": "A", "n0": n0, "u": self.rng.random((k, self.ndim)).tolist()})
        numbers = list(range(n0, n0 + k))
        self.record({"k": "S", "n": numbers, "w": worker, "h": "node001", "g": ""})
        return numbers

    def results(self, numbers: list[int]) -> None:
        """The worker's REPORTS messages (``Master._on_curve``), then its RESULTS
        (``Master._on_results``: its curve part is empty, all points went in REPORTS)."""
        points, per = self.args.points, self.args.report_points
        if points:
            trials = np.repeat(np.asarray(numbers), points)
            steps = np.tile(np.arange(1.0, points + 1.0), len(numbers))
            values = self.rng.random(len(trials))
            times = time.time() + np.arange(len(trials)) * 1e-4
            for i in range(0, len(trials), per):
                s = slice(i, i + per)
                self.record({"k": "C", "n": trials[s].tolist(), "st": steps[s].tolist(),
                             "v": values[s].tolist(), "t": times[s].tolist()})
        now = time.time()
        k = len(numbers)
        self.record({"k": "D", "n": numbers, "s": [COMPLETE] * k,
                     "v": self.rng.random(k).tolist(), "t0": [now - 0.01] * k,
                     "t1": [now] * k, "m": {}, "e": {}})
        self.finished += k

    def run(self) -> float:
        """Feed the whole search; return its elapsed seconds."""
        a = self.args
        outstanding: dict[int, list[int]] = {}
        left = a.trials
        for w in range(1, a.workers + 1):
            if left:
                k = min(a.batch, left)
                outstanding[w] = self.send_trials(w, k)
                left -= k
        self.tick()
        while outstanding:
            for w in list(outstanding):
                self.results(outstanding.pop(w))
                if left:
                    k = min(a.batch, left)
                    outstanding[w] = self.send_trials(w, k)
                    left -= k
                self.tick()
        return time.perf_counter() - self.t0


def prefix_table(full: TrialTable, n: int) -> TrialTable:
    """The first ``n`` trials of ``full`` and their curve points, as a new table."""
    t = TrialTable(full.ndim)
    t.add(full.unit.data[:n])
    numbers = np.arange(n)
    t.assign(numbers, 1, t.label("node001"), t.label(""))
    t.finish(numbers, full.state.data[:n], full.value.data[:n], full.t_start.data[:n],
             full.t_end.data[:n])
    m = int(np.searchsorted(full.curve_trial.data, n)) if full.n_curve else 0
    t.add_curve(full.curve_trial.data[:m], full.curve_step.data[:m],
                full.curve_value.data[:m], full.curve_time.data[:m])
    return t


def timed(fn, repeat: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def mb(n: float) -> str:
    return f"{n / 1e6:,.1f}"


def main(argv=None) -> int:
    args = parse_args(argv)
    m = machine()
    n, p = args.trials, args.points
    print(f"mpitune store cost: {n:,} trials x {p} curve points = {n * p:,} points, "
          f"{args.workers} workers, {args.batch} trials per message, {args.report_points} "
          f"points per C event, snapshot_interval {args.snapshot_interval:g} s, "
          f"fsync {'off' if args.no_fsync else 'on'}")
    print(machine_line(m))
    out: dict = {"machine": m, "args": dict(vars(args))}
    with tempfile.TemporaryDirectory(prefix="mpitune-bench-", dir=args.dir) as workdir:
        path = os.path.join(workdir, "store.h5")
        space = Space({"x": Real(-1.0, 1.0), "y": Real(-1.0, 1.0)})
        settings = Settings(storage=path, max_trials=n, sampler="random", seed=1,
                            snapshot_interval=args.snapshot_interval,
                            fsync=not args.no_fsync).validate()
        if args.wait_quiet > 0:
            wait_quiet(args.wait_quiet)
        quiet = Interference()
        t0 = time.perf_counter()
        store = Store.open(settings, space, 1)
        open_s = time.perf_counter() - t0
        feed = Feed(args, store, space.ndim)
        cpu0 = time.process_time()
        elapsed = feed.run()
        feed_cpu = time.process_time() - cpu0
        assert store.table.n_finished == n and store.table.n_curve == n * p

        # live reads: the last snapshot plus the journal written since (as load() mid-run)
        store.journal.write()
        journal_bytes = os.path.getsize(path + JOURNAL_SUFFIX)
        last_seq = store.journal.seq
        meta, _ = read_state(path)
        replayed = last_seq - store.meta.journal_seq
        assert meta.journal_seq == last_seq
        live_read, _ = timed(lambda: read_state(path), args.repeat)
        live_load, _ = timed(lambda: mpitune.load(path), 1)

        # one full snapshot at 10%, 50%, 100% of the trials, outside the feed
        checkpoints = []
        for frac in (0.1, 0.5, 1.0):
            k = max(1, int(round(n * frac)))
            sub = prefix_table(store.table, k)
            target = os.path.join(workdir, f"snap{k}.h5")
            median, times = timed(lambda sub=sub, target=target:
                                  write_snapshot(target, store.meta, sub), args.repeat)
            checkpoints.append({"trials": k, "curve_points": sub.n_curve, "median_s": median,
                                "runs_s": times, "file_bytes": os.path.getsize(target)})
            os.unlink(target)

        # close: the final snapshot; then reads of the finished file and a resume
        feed_snapshots = list(feed.snapshots)
        t0 = time.perf_counter()
        store.close("complete")
        close_s = time.perf_counter() - t0
        final = feed.snapshots[-1]
        size = os.path.getsize(path)
        done_read, _ = timed(lambda: read_state(path), args.repeat)
        done_load, _ = timed(lambda: mpitune.load(path), args.repeat)
        t0 = time.perf_counter()
        again = Store.open(settings, space, 1)
        resume_s = time.perf_counter() - t0
        again.abandon()

    journal_cpu = sum(feed.cpu.values())
    per_trial = 1e6 * (feed.cpu["A"] + feed.cpu["S"] + feed.cpu["D"]) / n
    per_point = 1e6 * feed.cpu["C"] / (n * p) if p else 0.0
    snap_wall = sum(s["wall_s"] for s in feed_snapshots)
    out.update(open_s=open_s, feed_elapsed_s=elapsed, feed_cpu_s=feed_cpu,
               journal_cpu_s=dict(feed.cpu), journal_wall_s=dict(feed.wall),
               calls=dict(feed.calls), journal_us_per_trial=per_trial,
               journal_us_per_point=per_point, feed_snapshots=feed_snapshots,
               checkpoints=checkpoints, final_snapshot=final, close_s=close_s,
               file_bytes=size, live={"journal_lines": replayed, "journal_bytes": journal_bytes,
                                      "read_state_s": live_read, "load_s": live_load},
               finished={"read_state_s": done_read, "load_s": done_load},
               resume_open_s=resume_s)

    print()
    print("journal and table (record + tick, snapshots taken out), CPU:")
    rows = []
    for kind, label, unit, count in (
            ("A", "A  new trials", "trial", n), ("S", "S  assigned", "trial", n),
            ("D", "D  finished", "trial", n), ("C", "C  curve points", "point", n * p),
            ("tick", "tick (write, fsync, heartbeat)", "trial", n)):
        if not count:
            continue
        rows.append([label, feed.calls[kind], f"{feed.cpu[kind]:.3f}", f"{feed.wall[kind]:.3f}",
                     f"{1e6 * feed.cpu[kind] / count:.3f} per {unit}"])
    rows.append(["all journal work", sum(feed.calls.values()), f"{journal_cpu:.3f}",
                 f"{sum(feed.wall.values()):.3f}", f"{1e6 * journal_cpu / n:.2f} per trial"])
    print(table(["event", "calls", "CPU s", "wall s", "CPU us"], rows))
    print(f"  => {per_trial:.2f} us per trial (A+S+D) + {per_point:.3f} us per curve point "
          f"(C); with {p} points a trial costs {1e6 * journal_cpu / n:.1f} us in all")
    print()

    print("one full HDF5 snapshot (write_snapshot to a new file: write, fsync, rename), "
          f"median of {args.repeat}:")
    print(table(["trials", "curve points", "seconds", "file MB", "MB/s"],
                [[f"{c['trials']:,}", f"{c['curve_points']:,}", f"{c['median_s']:.3f}",
                  mb(c["file_bytes"]), f"{c['file_bytes'] / 1e6 / c['median_s']:,.0f}"]
                 for c in checkpoints]))
    print()

    print("snapshots during the feed (adaptive: next after max(snapshot_interval, cost/0.05)):")
    print(table(["#", "at s", "trials", "curve points", "seconds", "CPU s",
                 "write_snapshot s", "next one after s"],
                [[i + 1, f"{s['at_s']:.2f}", f"{s['trials']:,}", f"{s['curve_points']:,}",
                  f"{s['wall_s']:.3f}", f"{s['cpu_s']:.3f}", f"{s['counted_s']:.3f}",
                  f"{max(args.snapshot_interval, s['counted_s'] / SNAPSHOT_SHARE):.2f}"]
                 for i, s in enumerate(feed_snapshots)] or [["-"] * 8]))
    print("  seconds: all of Store.snapshot (journal write, write_snapshot, journal truncate); "
          "write_snapshot s: the part the store times and stretches the interval by")
    share = snap_wall / elapsed if elapsed else 0.0
    total = elapsed + final["wall_s"]
    share_all = (snap_wall + final["wall_s"]) / total
    print(f"  feed: {elapsed:.2f} s elapsed ({feed_cpu:.2f} s CPU, of which "
          f"{journal_cpu:.2f} s journal + table, the rest generating events and snapshots)")
    print(f"  {len(feed_snapshots)} snapshots in {snap_wall:.3f} s = {share:.1%} of the feed's "
          f"elapsed time (target <= ~5%)")
    print(f"  with the final snapshot of close() ({final['wall_s']:.3f} s): "
          f"{len(feed_snapshots) + 1} snapshots, {snap_wall + final['wall_s']:.3f} s = "
          f"{share_all:.1%} of {total:.2f} s")
    print()

    print("reading back:")
    print(table(["what", "seconds"], [
        ["Store.open, new file (lock, first snapshot, journal)", f"{open_s:.3f}"],
        [f"read_state during the run: snapshot + {replayed:,} journal lines "
         f"({mb(journal_bytes)} MB)", f"{live_read:.3f}"],
        ["mpitune.load during the run", f"{live_load:.3f}"],
        [f"close('complete'): final snapshot, {mb(size)} MB file", f"{close_s:.3f}"],
        ["read_state of the finished file (snapshot, empty journal)", f"{done_read:.3f}"],
        ["mpitune.load of the finished file", f"{done_load:.3f}"],
        ["resume: Store.open of the finished file (read + rewrite snapshot)",
         f"{resume_s:.3f}"]]))
    out["other_cpu_share"] = quiet.share()
    print(interference_line(out["other_cpu_share"]))
    save_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
