"""Fault injection: kill a search at random moments, resume it, check that nothing was lost.

Three series, each of ``--runs`` kills of a small search (4 ranks = 1 master + 3 workers,
300 trials, an objective that sleeps a few milliseconds around two ``trial.report`` calls;
one uninterrupted run takes about 2 s on 2 cores):

  SIGKILL job      SIGKILL to every process of the job at once (mpiexec, its proxy, all
                   ranks), like a node failure or a hard kill at the time limit
  SIGTERM mpiexec  SIGTERM to mpiexec, which forwards it to every rank (like scancel or
                   Ctrl-C): a graceful stop; the time from the signal to mpiexec's exit and
                   the exit status are measured
  SIGKILL worker   SIGKILL to one worker rank alone; the MPI job then dies as a whole

Every other hit comes at a moment drawn uniformly over 90% of one uninterrupted run (the
fastest of three, measured first; on 2 cores more than half of it is start-up: imports,
MPI set-up, results file created); the others come once a random number of trials (1 to
max_trials-1, as ``mpitune.load`` sees them) is complete, plus 0-20 ms, so they spread
over the search itself.

After each hit the results file is opened with a plain ``h5py.File(path, "r")`` right
away and ``mpitune.load`` records which trials were complete; then the same command runs
again until it exits 0 (at most ``--max-resumes`` times) and the final file is checked:
every trial complete before the hit is still complete with the same value, trial numbers
are 0..n-1, no point of the search was evaluated twice, exactly ``max_trials`` trials
finished, and no lock, journal or temporary file is left behind.

    python benchmarks/faults.py               # the full run: 50 hits per series, ~8 min
    python benchmarks/faults.py --runs 10     # a quicker look (~2 min)

Finding a worker to kill: every rank's environment names its rank (PMI_RANK under MPICH
and Intel MPI, OMPI_COMM_WORLD_RANK under Open MPI), read from /proc/PID/environ, so a
worker can be hit while it is still importing as well as while it runs trials.
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import find_mpiexec, machine, machine_line, save_json, table  # noqa: E402

SPEC = '''\
"""Fault-injection search: fast trials with two learning-curve points each."""
import time

from mpitune import Integer, Real

space = {"x": Real(-1.0, 1.0), "k": Integer(1, 50)}
progress_interval = 0


def objective(params, trial):
    for step in range(2):
        time.sleep(0.004)
        trial.report(step, params["x"] ** 2 + 1.0 / (step + 1))
    return params["x"] ** 2 + 1e-3 * params["k"]
'''

SPAN_SHARE = 0.9  # kill times fall in this share of an uninterrupted run
SERIES = {"kill": "SIGKILL job", "term": "SIGTERM mpiexec", "worker": "SIGKILL worker"}
RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK")


# ---- processes ------------------------------------------------------------------------
def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def descendants(pid: int) -> list[int]:
    """``pid``'s children, grandchildren, ... (from /proc; Linux only)."""
    children, out, todo = _children_map(), [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def rank_of(pid: int) -> Optional[int]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            pairs = f.read().split(b"\0")
    except OSError:
        return None
    for pair in pairs:
        name, _, value = pair.partition(b"=")
        if name.decode(errors="replace") in RANK_VARIABLES:
            return int(value)
    return None


def processes_with(token: str) -> list[int]:
    """Processes whose command line contains ``token`` (a run's unique directory)."""
    me = os.getpid()
    return [int(p) for p in os.listdir("/proc")
            if p.isdigit() and int(p) != me and token in cmdline(int(p))]


def kill_all(pids) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def reap(token: str, pids, timeout: float = 30.0) -> tuple[int, float]:
    """Wait until ``pids`` (the job's processes when it was hit) are gone from /proc,
    zombies included: a rerun must not start while the killed rank 0 still exists (its
    lock would look alive). Then kill whatever of the run is still running. Return
    (processes still running then, seconds waited)."""
    t0 = time.monotonic()
    waiting = set(pids)
    while waiting and time.monotonic() - t0 < timeout:
        waiting = {p for p in waiting if os.path.exists(f"/proc/{p}")}
        time.sleep(0.005)
    found = processes_with(token)
    kill_all(found)
    while processes_with(token) and time.monotonic() - t0 < timeout:
        time.sleep(0.005)
    return len(found), time.monotonic() - t0


class Search:
    """One search directory: spec, results file and the command that runs it."""

    def __init__(self, directory: str, mpiexec: str, ranks: int, max_trials: int,
                 extra: tuple = ()) -> None:
        self.directory = directory
        self.storage = os.path.join(directory, "results.h5")
        spec = os.path.join(directory, "spec.py")
        with open(spec, "w") as f:
            f.write(SPEC)
        self.max_trials = max_trials
        self.cmd = [mpiexec, "-n", str(ranks), sys.executable, "-m", "mpitune", spec,
                    "--storage", self.storage, "--max-trials", str(max_trials), *extra]
        self.env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.log = os.path.join(directory, "output.log")

    def start(self) -> subprocess.Popen:
        with open(self.log, "a") as log:
            log.write(f"$ {shlex.join(self.cmd)}\n")
            log.flush()
            return subprocess.Popen(self.cmd, cwd=self.directory, env=self.env,
                                    stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)

    def wait(self, proc: subprocess.Popen, timeout: float) -> int:
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_all([proc.pid, *descendants(proc.pid)])
            proc.wait()
            return -999

    def run(self, timeout: float) -> tuple[int, float]:
        t0 = time.perf_counter()
        code = self.wait(self.start(), timeout)
        return code, time.perf_counter() - t0


# ---- one kill -------------------------------------------------------------------------
@dataclass
class Outcome:
    series: str
    at: float  # seconds after the launch
    no_file: bool = False  # killed before the results file existed
    unreadable: bool = False  # h5py could not open the file right after the kill
    load_failed: str = ""  # mpitune.load failed right after the kill
    complete_before: int = 0
    lost: int = 0  # complete before the kill, not complete (or another value) at the end
    duplicated: int = 0  # numbers that are not 0..n-1, or a point evaluated twice
    budget_exact: bool = False
    resumes: list = field(default_factory=list)  # exit codes of the reruns
    leftovers: list = field(default_factory=list)  # lock/journal/tmp files after the end
    final_unreadable: bool = False
    exit_code: Optional[int] = None  # of the killed run
    stop_seconds: Optional[float] = None  # SIGTERM: signal -> exit of mpiexec
    stragglers: int = 0  # processes of the killed job still alive afterwards
    reap_seconds: float = 0.0  # until the killed processes were gone (zombies reaped)
    finished_before_kill: bool = False
    note: str = ""

    @property
    def ok(self) -> bool:
        return not (self.unreadable or self.load_failed or self.lost or self.duplicated
                    or not self.budget_exact or self.leftovers or self.final_unreadable)


def complete_trials(path: str) -> dict[int, float]:
    import mpitune

    r = mpitune.load(path)
    done = r["state"] == "complete"
    return dict(zip(r["number"][done].tolist(), r["value"][done].tolist()))


def opens(path: str) -> bool:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            f.attrs["n_trials"]
        return True
    except Exception:  # noqa: BLE001 - any failure to open counts
        return False


def _worker_pid(root: int) -> Optional[int]:
    for pid in descendants(root):
        rank = rank_of(pid)
        if rank is not None and rank > 0 and "mpitune" in cmdline(pid):
            return pid
    return None


def _n_complete(path: str) -> int:
    try:
        return len(complete_trials(path))
    except Exception:  # noqa: BLE001 - not created yet, or replaced while read
        return 0


def inject(search: Search, series: str, at: float, timeout: float,
           min_complete: int = 0) -> Outcome:
    """Start the search, hit it ``at`` seconds after the launch, or (with ``min_complete``)
    ``at`` seconds after that many trials are complete; wait until the job is gone."""
    out = Outcome(series, at)
    proc = search.start()
    t0 = start = time.monotonic()
    while (min_complete and proc.poll() is None and time.monotonic() - t0 < timeout
           and _n_complete(search.storage) < min_complete):
        time.sleep(0.02)
        start = time.monotonic()
    while time.monotonic() - start < at and proc.poll() is None:
        time.sleep(0.002)
    if series == "worker":  # a worker must exist to be killed: wait for one if need be
        victim = _worker_pid(proc.pid)
        while victim is None and proc.poll() is None and time.monotonic() - t0 < timeout:
            time.sleep(0.002)
            victim = _worker_pid(proc.pid)
    job = [proc.pid, *descendants(proc.pid)]
    if proc.poll() is not None:
        out.finished_before_kill = True
    elif series == "kill":
        kill_all(job)
    elif series == "term":
        os.kill(proc.pid, signal.SIGTERM)
    elif series == "worker" and victim is not None:
        os.kill(victim, signal.SIGKILL)
    out.at = time.monotonic() - t0
    out.exit_code = search.wait(proc, timeout)
    if series == "term" and not out.finished_before_kill:
        out.stop_seconds = time.monotonic() - t0 - out.at
    out.stragglers, out.reap_seconds = reap(search.directory, job)
    return out


def one_kill(series: str, at: float, base: str, mpiexec: str, ranks: int, max_trials: int,
             max_resumes: int, timeout: float, min_complete: int = 0) -> Outcome:
    """One hit of ``series`` at ``at`` seconds, the checks right after it, the reruns and
    the checks at the end; the search's directory is removed unless something failed."""
    directory = tempfile.mkdtemp(prefix=f"faults-{series}-", dir=base)
    search = Search(directory, mpiexec, ranks, max_trials)
    out = inject(search, series, at, timeout, min_complete)
    path = search.storage
    before: dict[int, float] = {}
    if not os.path.exists(path):
        out.no_file = True
    else:
        out.unreadable = not opens(path)
        try:
            before = complete_trials(path)
        except Exception as e:  # noqa: BLE001 - recorded and reported
            out.load_failed = f"{type(e).__name__}: {e}"
    out.complete_before = len(before)
    code = out.exit_code
    while code != 0 and len(out.resumes) < max_resumes:
        code, _ = search.run(timeout)
        out.resumes.append(code)
    check_final(search, before, out)
    if out.ok:
        shutil.rmtree(directory, ignore_errors=True)
    else:
        out.note = f"kept {directory}"
    return out


def check_final(search: Search, before: dict[int, float], out: Outcome) -> None:
    import numpy as np

    import mpitune

    path = search.storage
    out.final_unreadable = not opens(path)
    out.leftovers = sorted(os.path.basename(p) for p in os.listdir(search.directory)
                           if p.startswith("results.h5."))
    if out.final_unreadable:
        return
    r = mpitune.load(path)
    state, value = r["state"], r["value"]
    out.lost = sum(1 for n, v in before.items()
                   if n >= len(r) or state[n] != "complete" or value[n] != v)
    n = len(r)
    finished = np.isin(state, ["complete", "failed", "pruned", "timeout"])
    points = np.column_stack([r["x"], r["k"]])
    repeated = len(points) - len(np.unique(points, axis=0))
    out.duplicated = int(not np.array_equal(r["number"], np.arange(n))) + repeated
    out.budget_exact = int(finished.sum()) == search.max_trials == n


# ---- series and report ----------------------------------------------------------------
def baseline(base: str, mpiexec: str, ranks: int, max_trials: int, timeout: float,
             repeats: int = 3) -> float:
    """Seconds of one uninterrupted run: the fastest of ``repeats`` (other work on the
    machine only ever makes a run slower)."""
    times = []
    for _ in range(repeats):
        directory = tempfile.mkdtemp(prefix="faults-baseline-", dir=base)
        search = Search(directory, mpiexec, ranks, max_trials)
        code, seconds = search.run(timeout)
        if code != 0:
            with open(search.log) as f:
                sys.exit(f"faults: the uninterrupted run failed (exit {code}):\n{f.read()}")
        shutil.rmtree(directory, ignore_errors=True)
        times.append(seconds)
    return min(times)


def run_series(series: str, runs: int, span: float, rng: random.Random, base: str,
               mpiexec: str, ranks: int = 4, max_trials: int = 300, max_resumes: int = 3,
               timeout: float = 120.0, verbose: bool = False) -> list[Outcome]:
    """``runs`` hits of ``series``: every other one at a random moment of an uninterrupted
    run (``span`` seconds: mostly start-up on a small machine), the others after a random
    number of complete trials plus up to 20 ms (spread over the search itself)."""
    outcomes = []
    for i in range(runs):
        if i % 2 == 0:
            at, after = rng.uniform(0.0, span), 0
        else:
            at, after = rng.uniform(0.0, 0.02), rng.randint(1, max_trials - 1)
        o = one_kill(series, at, base, mpiexec, ranks, max_trials, max_resumes, timeout,
                     min_complete=after)
        outcomes.append(o)
        if verbose or not o.ok:
            print(f"  {SERIES[series]} #{i + 1}: at {o.at:.3f} s, exit {o.exit_code}, "
                  f"{o.complete_before} complete before, reruns {o.resumes}, "
                  f"{'ok' if o.ok else 'PROBLEM'} {o.note}", flush=True)
    return outcomes


def summary_row(outcomes: list[Outcome], runs: int) -> list:
    def count(pred) -> int:
        return sum(1 for o in outcomes if pred(o))

    completes = [o.complete_before for o in outcomes]
    reruns = Counter(len(o.resumes) for o in outcomes)
    return [SERIES[outcomes[0].series], len(outcomes),
            count(lambda o: o.no_file),
            count(lambda o: o.unreadable) + count(lambda o: o.final_unreadable),
            count(lambda o: bool(o.load_failed)),
            sum(o.lost for o in outcomes), sum(o.duplicated for o in outcomes),
            f"{count(lambda o: o.budget_exact)}/{runs}",
            count(lambda o: bool(o.leftovers)),
            f"{statistics.median(completes):.0f} ({min(completes)}-{max(completes)})",
            " ".join(f"{k}x{v}" for k, v in sorted(reruns.items()))]


HEADERS = ["series", "kills", "no file yet", "unreadable", "load failed", "lost", "duplicated",
           "budget exact", "leftovers", "complete at kill", "reruns needed"]


def term_line(outcomes: list[Outcome], max_trials: int) -> str:
    times = [o.stop_seconds for o in outcomes if o.stop_seconds is not None]
    codes = Counter(o.exit_code for o in outcomes)
    shown = ", ".join(f"{c} x{n}" for c, n in sorted(codes.items()))
    timing = (f"median {statistics.median(times):.3f} s, max {max(times):.3f} s "
              f"over {len(times)} stops" if times else "no stop measured")
    early = Counter(o.exit_code for o in outcomes if o.no_file)
    late = Counter(o.exit_code for o in outcomes
                   if o.complete_before == max_trials and not o.finished_before_kill)
    return (f"SIGTERM to mpiexec -> exit: {timing}; exit codes: {shown}; of these, hits "
            f"before the results file existed: {dict(sorted(early.items()))}, hits after "
            f"the last trial had finished: {dict(sorted(late.items()))}")


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=50, help="hits per series (default 50)")
    p.add_argument("--series", default="kill,term,worker",
                   help="comma-separated: kill, term, worker (default: all three)")
    p.add_argument("--ranks", type=int, default=4, help="MPI ranks (default 4)")
    p.add_argument("--max-trials", type=int, default=300, help="trials per search")
    p.add_argument("--max-resumes", type=int, default=3, help="reruns allowed per kill")
    p.add_argument("--seed", type=int, default=None, help="seed of the kill times")
    p.add_argument("--mpiexec", default=None, help="mpiexec (default: beside this Python)")
    p.add_argument("--dir", default=None, help="where the searches run (default: a tmp dir)")
    p.add_argument("--json", metavar="PATH", default=None, help="also save outcomes as JSON")
    p.add_argument("--verbose", action="store_true", help="one line per kill")
    args = p.parse_args(argv)
    if not sys.platform.startswith("linux"):
        sys.exit("faults: needs Linux (/proc is used to find the job's processes)")
    series = [s.strip() for s in args.series.split(",") if s.strip()]
    unknown = [s for s in series if s not in SERIES]
    if unknown:
        sys.exit(f"faults: unknown series {unknown}; choose from {sorted(SERIES)}")
    mpiexec = find_mpiexec(args.mpiexec)
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    rng = random.Random(seed)
    base = tempfile.mkdtemp(prefix="mpitune-faults-", dir=args.dir)
    m = machine()
    print(f"command: {shlex.join([sys.executable, *sys.argv])} (seed {seed})")
    print(machine_line(m))
    t_start = time.perf_counter()
    span = baseline(base, mpiexec, args.ranks, args.max_trials, 120.0)
    span *= SPAN_SHARE
    print(f"search: {args.ranks} ranks, {args.max_trials} trials, objective ~8 ms with 2 "
          f"reports; uninterrupted run {span / SPAN_SHARE:.2f} s; hits: half at a time "
          f"uniform in [0, {span:.2f}] s, half after a uniform number of complete trials",
          flush=True)
    results: dict[str, list[Outcome]] = {}
    for s in series:
        t0 = time.perf_counter()
        results[s] = run_series(s, args.runs, span, rng, base, mpiexec, args.ranks,
                                args.max_trials, args.max_resumes, verbose=args.verbose)
        print(f"  {SERIES[s]}: {args.runs} kills in {time.perf_counter() - t0:.0f} s",
              flush=True)
    print()
    print(table(HEADERS, [summary_row(results[s], args.runs) for s in series]))
    print("  targets: unreadable 0, load failed 0, lost 0, duplicated 0, budget exact "
          f"{args.runs}/{args.runs}, leftovers 0")
    if "term" in results:
        print("  " + term_line(results["term"], args.max_trials))
    for s in series:
        early = sum(o.finished_before_kill for o in results[s])
        codes = Counter(o.exit_code for o in results[s])
        print(f"  {SERIES[s]}: exit codes of the hit run {dict(sorted(codes.items()))}; "
              f"{early} run(s) had finished before the hit; stragglers killed: "
              f"{sum(o.stragglers for o in results[s])}; waited for the killed processes "
              f"to be reaped: max {max(o.reap_seconds for o in results[s]):.2f} s")
    total = time.perf_counter() - t_start
    print(f"total {total:.0f} s")
    bad = [o for s in series for o in results[s] if not o.ok]
    save_json(args.json, {"machine": m, "seed": seed, "runs": args.runs, "span": span,
                          "outcomes": {s: [vars(o) for o in results[s]] for s in series}})
    if not bad:
        shutil.rmtree(base, ignore_errors=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
