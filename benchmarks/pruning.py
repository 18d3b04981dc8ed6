"""Early stopping: what mpitune's pruners save, compared with no pruning and with Optuna.

Two tasks, each run under real ``mpiexec`` with 8 workers (9 ranks) per mpitune pruner
(``none``, ``median``, ``asha``, ``hyperband``, ``bohb``; mpitune's default sampler), and with
Optuna's ``SuccessiveHalvingPruner`` and ``HyperbandPruner`` with its TPE sampler on the
same tasks, the same budget of worker-seconds and the same parallelism: 8 worker processes
served by one ask-and-tell process holding an in-memory study (9 processes, like mpitune's
9 ranks), which samples and answers each report's ``should_prune()`` over a pipe.
``--optuna-storage journal`` runs the 8 processes on a shared ``JournalStorage`` file
instead (slower here: every report locks and appends to the file).

A second group of runs measures **the pruning rules alone** (``--alone-sampler sobol``, the
default; ``''`` skips it): ``none``, ``median``, ``asha`` and ``hyperband`` with mpitune's
``sobol`` sampler, and Optuna's pruners with a sampler that gives Optuna's trial *i*
mpitune's configuration *i*, so that every run of the group tries the same configurations
in the same order and only the early stopping differs (the setting of the ASHA paper,
whose claim the issue's first target restates). Each group's
target is its own no-pruning run. With a model-based sampler the no-pruning run already
converges on the synthetic task, and under ASHA that sampler sees mostly short trials, so
there ASHA does not reach the unpruned run within a third of its worker-seconds: the first
group shows it.

Two tasks:

* ``synthetic``: learning curves with known ground truth. Four hyperparameters set the
  final score ``S`` (a quadratic bowl, maximum exactly 1.0) and the learning speed; the
  reported curve is ``S - 2 exp(-t / tau)`` plus noise (sd 0.01, fixed per configuration,
  so a configuration behaves the same in every run), 81 steps of a fixed 5 ms sleep each;
  the trial's value is ``S`` itself (the ground truth), maximised. Early values are
  informative but not decisive (Spearman correlation with the final value is about 0.7 at
  step 1, 0.95 at step 9): curves cross. A learning rate above 0.3 diverges (nan reports
  from step 4, value -3).
* ``digits``: scikit-learn's MLPClassifier trained epoch by epoch with ``partial_fit`` on
  the digits dataset that ships with scikit-learn (1200 train / 597 validation images);
  the value is the validation log-loss after each epoch (27 epochs), minimised. This one
  is CPU-bound: 8 workers share this machine's cores, identically for every method.

Per run: the sum of trial durations (worker-seconds), and, cut at the budget ``W`` of
worker-seconds (the time when the trials' summed running time reached ``W``): the best
final value of a complete trial; and how many worker-seconds / seconds of wall time each
method needed to first reach the final quality of the run without pruning. mpitune's runs
share one seed, so they see the same Sobol sequence of configurations.

The objective of every mpitune run also times each of its own ``trial.report`` calls
(``time.perf_counter``); a last run makes rank 0 saturated on purpose (a pruner whose
``observe`` sleeps 2 ms per batch, far slower than the batches arrive) to show that a
worker never waits for rank 0 inside ``trial.report``.

    python benchmarks/pruning.py                     # about 15 minutes on 2 cores
    python benchmarks/pruning.py --quick             # a smoke run, about 6 minutes
    python benchmarks/pruning.py --tasks synthetic --no-optuna
    python benchmarks/pruning.py --seeds 1,2,3       # and a summary over the seeds

Optuna is an optional dependency of this benchmark only (``pip install optuna``): without
it the Optuna rows are skipped with a note. The digits task needs scikit-learn.
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")  # one thread per process: 8 workers on few cores

import argparse  # noqa: E402
import math  # noqa: E402
import resource  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
import zlib  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Callable, Optional  # noqa: E402

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
STEP_SECONDS = 0.005
TIMINGS_ENV = "PRUNING_BENCH_TIMINGS"


# ---- the tasks (imported by the spec files on every rank: no side effects) -------------------
def _seed_of(params: dict) -> int:
    return zlib.crc32(repr(sorted(params.items())).encode())


def synthetic_final(p: dict) -> float:
    """The noise-free final score of a configuration (ground truth; the maximum is 1.0)."""
    u1 = (math.log10(p["lr"]) + 2.5) / 1.5
    u2 = (p["momentum"] - 0.85) / 0.5
    u3 = (math.log2(p["width"]) - 7.0) / 3.5
    u4 = (p["dropout"] - 0.25) / 0.5
    return 1.0 - 0.5 * (u1 * u1 + u2 * u2 + u3 * u3 + u4 * u4) + 0.3 * u1 * u3


def synthetic_run(p: dict, report: Callable[[float, float], None]) -> float:
    final = synthetic_final(p)
    u3 = (math.log2(p["width"]) - 7.0) / 3.5
    tau = 3.0 * 10 ** (-0.3 * (math.log10(p["lr"]) + 2.5)) * (1.0 + 0.3 * u3)
    noise = np.random.default_rng(_seed_of(p)).normal(0.0, 0.01, 81)
    value = math.nan
    for step in range(1, 82):
        time.sleep(STEP_SECONDS)
        value = final - 2.0 * math.exp(-step / tau) + noise[step - 1]
        if p["lr"] > 0.3 and step >= 4:
            value = math.nan  # diverged
        report(step, value)
    return final if math.isfinite(value) else -3.0


_DIGITS = None


def _digits():
    global _DIGITS
    if _DIGITS is None:
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
        x = x / 16.0
        order = np.random.default_rng(0).permutation(len(x))
        train, val = order[:1200], order[1200:]
        _DIGITS = (x[train], y[train], x[val], y[val])
    return _DIGITS


def digits_run(p: dict, report: Callable[[float, float], None]) -> float:
    from sklearn.neural_network import MLPClassifier

    xt, yt, xv, yv = _digits()
    clf = MLPClassifier(hidden_layer_sizes=(int(p["hidden"]),), learning_rate_init=p["lr"],
                        alpha=p["alpha"], batch_size=int(p["batch_size"]), random_state=0)
    classes = np.arange(10)
    loss = math.nan
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        for epoch in range(1, 28):
            clf.partial_fit(xt, yt, classes=classes)
            proba = clf.predict_proba(xv)[np.arange(len(yv)), yv]
            loss = float(-np.mean(np.log(np.clip(proba, 1e-15, 1.0))))
            report(epoch, loss)
    return loss if math.isfinite(loss) else 50.0


def mpitune_space(task: str) -> dict:
    from mpitune import Categorical, Integer, Real

    if task == "synthetic":
        return {"lr": Real(1e-4, 1.0, log=True), "momentum": Real(0.0, 0.99),
                "width": Integer(8, 1024, log=True), "dropout": Real(0.0, 0.6)}
    return {"lr": Real(1e-4, 1.0, log=True), "alpha": Real(1e-6, 1e-1, log=True),
            "hidden": Integer(16, 256, log=True), "batch_size": Categorical([32, 64, 128, 256])}


def optuna_params(task: str, t) -> dict:
    if task == "synthetic":
        return {"lr": t.suggest_float("lr", 1e-4, 1.0, log=True),
                "momentum": t.suggest_float("momentum", 0.0, 0.99),
                "width": t.suggest_int("width", 8, 1024, log=True),
                "dropout": t.suggest_float("dropout", 0.0, 0.6)}
    return {"lr": t.suggest_float("lr", 1e-4, 1.0, log=True),
            "alpha": t.suggest_float("alpha", 1e-6, 1e-1, log=True),
            "hidden": t.suggest_int("hidden", 16, 256, log=True),
            "batch_size": t.suggest_categorical("batch_size", [32, 64, 128, 256])}


@dataclass
class Task:
    name: str
    run: Callable
    direction: str
    max_resource: int
    budget: float  # worker-seconds
    optimum: Optional[float] = None


TASKS = {"synthetic": Task("synthetic", synthetic_run, "maximize", 81, 160.0, 1.0),
         "digits": Task("digits", digits_run, "minimize", 27, 240.0)}


def _save_times(times: list) -> None:
    """Append ``microseconds,preempted,step`` triples to this process's timing file."""
    directory = os.environ.get(TIMINGS_ENV)
    if directory and times:
        with open(os.path.join(directory, f"report-{os.getpid()}.txt"), "a") as f:
            f.write(" ".join(f"{t * 1e6:.1f},{n},{s:g}" for t, n, s in times) + "\n")


def _switches() -> int:
    """Involuntary context switches of this thread so far (the OS preempting it)."""
    return resource.getrusage(resource.RUSAGE_THREAD).ru_nivcsw


def mpitune_objective(task: str) -> Callable:
    run = TASKS[task].run

    def objective(params, trial):
        times: list = []

        def report(step, value):
            n0 = _switches()
            t0 = time.perf_counter()
            try:
                trial.report(step, value)
            finally:
                times.append((time.perf_counter() - t0, _switches() - n0, step))

        try:
            return run(params, report)
        finally:
            _save_times(times)

    return objective


def busy_pruner(max_resource: float, seconds: float):
    """ASHA whose every observe() call first sleeps: rank 0 saturated on purpose."""
    from mpitune.pruners import ASHAPruner

    class BusyASHA(ASHAPruner):
        def observe(self, numbers, steps, values):
            time.sleep(seconds)
            return super().observe(numbers, steps, values)

    return BusyASHA(1, 3, max_resource)


SPEC = """\
import sys
sys.path.insert(0, {here!r})
import pruning as _bench

space = _bench.mpitune_space({task!r})
objective = _bench.mpitune_objective({task!r})
"""


# ---- running and measuring ---------------------------------------------------------------------
@dataclass
class Run:
    task: str
    method: str
    states: np.ndarray  # strings: complete, pruned, failed, ...
    values: np.ndarray
    t_start: np.ndarray
    t_end: np.ndarray
    wall: float  # launch to exit, start-up included
    # rows of (us, preempted, step); step is nan where not recorded (Optuna)
    report_us: np.ndarray = field(default_factory=lambda: np.empty((0, 3)))
    rungs: tuple = ()  # steps at which the pruner makes the worker wait for its verdict
    note: str = ""


def used_at(run: Run, t: float) -> float:
    """Worker-seconds spent in trials up to time ``t``."""
    return float(np.clip(np.minimum(run.t_end, t) - run.t_start, 0.0, None).sum())


def cut_time(run: Run, budget: float) -> float:
    """The time at which the trials' summed running time reached ``budget``."""
    ends = np.sort(run.t_end)
    lo, hi = 0, len(ends) - 1
    if used_at(run, ends[-1]) <= budget:
        return float(ends[-1])
    while lo < hi:  # the first trial end past the budget
        mid = (lo + hi) // 2
        if used_at(run, ends[mid]) > budget:
            hi = mid
        else:
            lo = mid + 1
    lo_t = float(ends[lo - 1]) if lo else float(run.t_start.min())
    hi_t = float(ends[lo])
    for _ in range(40):  # bisect the time inside that interval
        mid = 0.5 * (lo_t + hi_t)
        if used_at(run, mid) > budget:
            hi_t = mid
        else:
            lo_t = mid
    return lo_t


def better(a: float, b: float, direction: str) -> bool:
    return a <= b if direction == "minimize" else a >= b


def summarise(run: Run, task: Task, target: Optional[float]) -> dict:
    d = task.direction
    total = float((run.t_end - run.t_start).sum())
    t_cut = cut_time(run, task.budget)
    ok = (run.states == "complete") & (run.t_end <= t_cut) & np.isfinite(run.values)
    best = (float(np.min(run.values[ok]) if d == "minimize" else np.max(run.values[ok]))
            if ok.any() else math.nan)
    out = {"trials": len(run.states), "complete": int((run.states == "complete").sum()),
           "pruned": int((run.states == "pruned").sum()), "worker_s": total,
           "short": total < task.budget * 0.98, "best": best, "t_cut": t_cut}
    out["target"] = target if target is not None else best
    hit = np.flatnonzero((run.states == "complete") & np.isfinite(run.values)
                         & np.array([better(v, out["target"], d) for v in run.values],
                                    dtype=bool))
    if len(hit) and math.isfinite(out["target"]):
        t_hit = float(run.t_end[hit].min())
        out["ws_to_target"] = used_at(run, t_hit)
        out["wall_to_target"] = t_hit - float(run.t_start.min())
    else:
        out["ws_to_target"] = out["wall_to_target"] = math.nan
    return out


def mpitune_method(pruner: str, sampler: Optional[str]) -> str:
    """How the tables name an mpitune run: ``mpitune asha [sobol]``, or without the sampler
    when it is the default."""
    return f"mpitune {pruner}" + (f" [{sampler}]" if sampler else "")


def run_mpitune(args, task: Task, pruner: str, workdir: str, busy: float = 0.0,
                sampler: Optional[str] = None) -> Run:
    """One mpitune search under mpiexec with ``pruner`` and ``sampler`` (None: the spec's
    default, ``auto``)."""
    spec = os.path.join(workdir, f"spec_{task.name}.py")
    text = SPEC.format(here=HERE, task=task.name)
    if busy:
        spec = os.path.join(workdir, f"spec_{task.name}_busy.py")
        text += f"pruner = _bench.busy_pruner({task.max_resource}, {busy})\n"
    with open(spec, "w") as f:
        f.write(text)
    label = (f"{task.name}-{pruner}{'-busy' if busy else ''}"
             f"{'-' + sampler if sampler else ''}-seed{args.seed}")
    storage = os.path.join(workdir, f"{label}.h5")
    timings = os.path.join(workdir, f"timings-{label}")
    for old in (storage, timings, storage + ".checkpoints"):  # a fresh search, never a resume
        if os.path.isdir(old):
            shutil.rmtree(old)
        elif os.path.exists(old):
            os.remove(old)
    os.makedirs(timings)
    budget = task.budget if not busy else args.busy_budget
    max_time = budget / args.workers * 1.1 + 1.0
    cmd = [args.mpiexec, *shlex.split(args.mpiexec_args), "-n", str(args.workers + 1),
           sys.executable, "-m", "mpitune", spec, "--storage", storage,
           "--direction", task.direction, "--max-trials", "100000000", "--max-time",
           f"{max_time:g}", "--seed", str(args.seed), "--progress-interval", "0",
           "--min-resource", "1", "--max-resource", str(task.max_resource),
           "--reduction-factor", "3"]
    if not busy:
        cmd += ["--pruner", pruner]
    if sampler:
        cmd += ["--sampler", sampler]
    env = dict(os.environ, **{TIMINGS_ENV: timings})
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env,
                          timeout=max_time + 180)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 75):  # 75: stopped by --max-time, as intended
        sys.exit(f"benchmark: {shlex.join(cmd)} failed ({proc.returncode}):\n"
                 f"{proc.stdout}{proc.stderr}")
    import mpitune

    r = mpitune.load(storage)
    report_us = []
    for name in os.listdir(timings):
        with open(os.path.join(timings, name)) as f:
            report_us.extend([float(y) for y in x.split(",")] for x in f.read().split())
    from mpitune.pruners import PRUNERS

    waits = PRUNERS[pruner if not busy else "asha"](1, 3, task.max_resource) \
        if (busy or pruner in ("asha", "hyperband", "bohb")) else None
    # the trials that --max-time interrupted (at most one per worker, at the end) have no
    # times: the file keeps them to run again on resume
    timed = np.isfinite(r["t_start"]) & np.isfinite(r["t_end"])
    method = mpitune_method(pruner, sampler) + (" (rank 0 saturated)" if busy else "")
    return Run(task.name, method,
               r["state"][timed], r["value"][timed], r["t_start"][timed], r["t_end"][timed],
               wall,
               np.asarray(report_us).reshape(-1, 3),
               rungs=tuple(waits.decision_steps()) if waits is not None else ())


def _optuna_pruner(task: Task, pruner_name: str):
    import optuna

    if pruner_name == "sha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=task.max_resource,
                                          reduction_factor=3)


class _Pruned(Exception):
    pass


def _asktell_worker(conn, task_name: str) -> None:
    """One Optuna worker process: ask the server for a trial, run it, report every step
    (a blocking round trip: Optuna's should_prune() answers synchronously), tell."""
    run = TASKS[task_name].run
    while True:
        conn.send(("ask",))
        job = conn.recv()
        if job is None:
            break
        number, params = job
        t0, state, value = time.time(), "complete", math.nan
        times: list = []

        def report(step, v, number=number, times=times):
            n0 = _switches()
            start = time.perf_counter()
            conn.send(("report", number, step, v))
            prune = conn.recv()
            times.append((time.perf_counter() - start, _switches() - n0))
            if prune:
                raise _Pruned

        try:
            value = run(params, report)
        except _Pruned:
            state = "pruned"
        except Exception:  # noqa: BLE001 - a failed trial, as in mpitune
            state = "failed"
        conn.send(("tell", number, state, value, t0, time.time(), times))
    conn.close()


SAMPLER_LABELS = {"same": "mpitune's Sobol' configurations"}


def mpitune_configurations(task: str, seed: int, n: int) -> list:
    """The first ``n`` configurations of mpitune's ``sobol`` sampler with ``seed`` on the
    task's space, in trial order: what ``--sampler sobol --seed S`` runs."""
    from mpitune.samplers import History
    from mpitune.samplers._qmc import SobolSampler
    from mpitune.space import Space

    space = Space(mpitune_space(task))
    start = History(space, n_total=0)  # the sequence's start; sobol reads nothing else
    return space.params(space.mask(SobolSampler(seed).suggest(n, start)))


def _optuna_sampler(name: str, seed: int, task: str = "synthetic"):
    import optuna

    if name == "qmc":
        return optuna.samplers.QMCSampler(qmc_type="sobol", seed=seed)
    if name == "same":
        return _same_configurations(mpitune_configurations(task, seed, 1 << 15))
    return optuna.samplers.TPESampler(seed=seed)


def _same_configurations(configs: list):
    """An Optuna sampler that gives trial ``i`` mpitune's ``sobol`` configuration ``i``:
    Optuna's pruners then see the configurations mpitune's do, in the same order, and the
    comparison is of the pruning rules alone. Past the list it wraps around."""
    import optuna

    class SameConfigurations(optuna.samplers.BaseSampler):
        def infer_relative_search_space(self, study, trial):
            return {}

        def sample_relative(self, study, trial, search_space):
            return {}

        def sample_independent(self, study, trial, name, distribution):
            return configs[trial.number % len(configs)][name]

    return SameConfigurations()


def _asktell_server(task: Task, pruner_name: str, conns: list, seed: int,
                    seconds: float, sampler: str) -> list:
    """Optuna's ask-and-tell in one process with in-memory storage: samples, answers every
    report with should_prune(), and stops handing out trials once the trials' summed
    running time reaches 1.1 budgets (as mpitune's runs do), or after ``seconds``."""
    from multiprocessing.connection import wait

    import optuna

    study = optuna.create_study(direction=task.direction,
                                sampler=_optuna_sampler(sampler, seed, task.name),
                                pruner=_optuna_pruner(task, pruner_name))
    deadline = time.time() + seconds
    live: dict = {}
    started: dict = {}
    spent = 0.0
    records = []
    active = list(conns)
    while active:
        for conn in wait(active):
            try:
                msg = conn.recv()
            except EOFError:
                active.remove(conn)
                continue
            kind = msg[0]
            if kind == "report":
                t = live[msg[1]]
                t.report(msg[3], msg[2])
                conn.send(t.should_prune())
            elif kind == "ask":
                now = time.time()
                running = sum(now - x for x in started.values())
                if now >= deadline or spent + running >= 1.1 * task.budget:
                    conn.send(None)
                    active.remove(conn)
                    continue
                t = study.ask()
                live[t.number] = t
                started[t.number] = now
                conn.send((t.number, optuna_params(task.name, t)))
            else:  # tell
                _, number, state, value, t0, t1, times = msg
                t = live.pop(number)
                started.pop(number, None)
                spent += t1 - t0
                if state == "complete":
                    study.tell(t, value)
                else:
                    study.tell(t, state=(optuna.trial.TrialState.PRUNED if state == "pruned"
                                         else optuna.trial.TrialState.FAIL))
                records.append((state, value, t0, t1, times))
    return records


def _journal_worker(task_name: str, pruner_name: str, storage_path: str, seed: int,
                    seconds: float, sampler: str) -> None:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    task = TASKS[task_name]
    study = optuna.load_study(study_name="bench",
                              sampler=_optuna_sampler(sampler, seed, task_name),
                              pruner=_optuna_pruner(task, pruner_name),
                              storage=JournalStorage(JournalFileBackend(storage_path)))

    def objective(t):
        params = optuna_params(task_name, t)

        def report(step, value):
            t.report(value, step)
            if t.should_prune():
                raise optuna.TrialPruned()

        return task.run(params, report)

    study.optimize(objective, timeout=seconds)


def run_optuna(args, task: Task, pruner_name: str, workdir: str, sampler: str = "tpe") -> Run:
    """Optuna with ``args.workers`` worker processes: ask-and-tell with a central in-memory
    study (default), or every process on a shared JournalStorage file."""
    import multiprocessing

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if task.name == "digits":
        _digits()  # load once before forking
    seconds = task.budget / args.workers * 1.1 + 1.0
    ctx = multiprocessing.get_context("fork")
    label = {"sha": "SuccessiveHalving", "hyperband": "Hyperband"}[pruner_name]
    label = f"{SAMPLER_LABELS.get(sampler, sampler.upper())} + {label}"
    t0 = time.perf_counter()
    if args.optuna_storage == "asktell":
        pipes = [ctx.Pipe() for _ in range(args.workers)]
        procs = [ctx.Process(target=_asktell_worker, args=(child, task.name))
                 for _, child in pipes]
        for p in procs:
            p.start()
        records = _asktell_server(task, pruner_name, [parent for parent, _ in pipes],
                                  args.seed, 4 * seconds, sampler)
        for p in procs:
            p.join(60)
        states = np.array([r[0] for r in records])
        values = np.array([r[1] for r in records], dtype=float)
        t_start = np.array([r[2] for r in records])
        t_end = np.array([r[3] for r in records])
        report_us = np.array([(x * 1e6, n, math.nan) for r in records
                              for x, n in r[4]]).reshape(-1, 3)
        method = f"optuna {label} (ask/tell)"
    else:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        path = os.path.join(workdir,
                            f"optuna-{task.name}-{sampler}-{pruner_name}-seed{args.seed}.log")
        if os.path.exists(path):
            os.remove(path)
        optuna.create_study(study_name="bench", storage=JournalStorage(JournalFileBackend(path)),
                            direction=task.direction)
        procs = [ctx.Process(target=_journal_worker,
                             args=(task.name, pruner_name, path,
                                   args.seed + (i if sampler != "same" else 0), seconds,
                                   sampler))
                 for i in range(args.workers)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(seconds + 180)
            if p.is_alive():
                p.kill()
                sys.exit("benchmark: an Optuna worker did not finish")
        study = optuna.load_study(study_name="bench",
                                  storage=JournalStorage(JournalFileBackend(path)))
        names = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed"}
        trials = [t for t in study.get_trials(deepcopy=False)
                  if t.datetime_start is not None and t.datetime_complete is not None]
        states = np.array([names.get(t.state.name, t.state.name.lower()) for t in trials])
        values = np.array([t.value if t.value is not None else math.nan for t in trials],
                          dtype=float)
        t_start = np.array([t.datetime_start.timestamp() for t in trials])
        t_end = np.array([t.datetime_complete.timestamp() for t in trials])
        report_us = np.empty((0, 3))
        method = f"optuna {label} (journal)"
    wall = time.perf_counter() - t0
    return Run(task.name, method, states, values, t_start, t_end, wall, report_us)


# ---- the report ----------------------------------------------------------------------------------
def fmt(x: float, spec: str = ".4f") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


@dataclass
class Group:
    """Runs compared with each other: mpitune's pruners with one sampler (None: the default,
    ``auto``) and Optuna's pruners with its samplers; the target of the group is the best
    final value of its own no-pruning run."""
    title: str
    sampler: Optional[str]
    pruners: list
    optuna_samplers: list

    def base(self) -> str:
        return mpitune_method("none", self.sampler)


def groups_of(args, pruners: list, have_optuna: bool) -> list:
    """The default group (mpitune's default sampler or ``--sampler``, Optuna's TPE), and
    unless ``--alone-sampler ''``, the pruning rules alone: every run on the same
    configurations (mpitune's sobol sampler's, which Optuna's runs are given too), as in
    the ASHA paper."""
    optuna = [x for x in args.optuna_samplers.split(",") if x] if have_optuna else []
    out = [Group(f"sampler {args.sampler or 'auto (the default)'}; Optuna with "
                 f"{', '.join(x.upper() for x in optuna) or '-'}", args.sampler, pruners,
                 optuna)]
    if args.alone_sampler and args.alone_sampler != args.sampler:
        alone = [x for x in args.alone_pruners.split(",") if x]
        same = have_optuna and args.alone_sampler == "sobol"
        out.append(Group(f"the pruning rules alone: mpitune's {args.alone_sampler} sampler"
                         + ("; Optuna trial i runs mpitune's configuration i" if same
                            else ""), args.alone_sampler, alone, ["same"] if same else []))
    return out


def target_lines(task: Task, group: Group, numbers: list) -> list:
    """The issue's two targets, in words, for one group's runs."""
    out = []
    asha = next((x for x in numbers
                 if x["method"] == mpitune_method("asha", group.sampler)), None)
    if asha is not None:
        ratio = asha["ws_to_target"] / task.budget
        out.append(f"ASHA reached the no-pruning final quality with {fmt(ratio, '.2f')} of "
                   f"its worker-seconds (goal <= 0.33): "
                   f"{'met' if ratio <= 1 / 3 else 'NOT met'}")
    ours = [x for x in numbers if x["method"].startswith("mpitune ")
            and x["method"] != group.base()]
    theirs = [x for x in numbers if x["method"].startswith("optuna")]
    if ours and theirs:
        worst = math.inf if task.direction == "minimize" else -math.inf
        pick = min if task.direction == "minimize" else max
        a = pick(ours, key=lambda x: x["best"] if math.isfinite(x["best"]) else worst)
        b = pick(theirs, key=lambda x: x["best"] if math.isfinite(x["best"]) else worst)
        ok = better(a["best"], b["best"], task.direction)
        out.append(f"at W worker-seconds: best mpitune pruner ({a['method']}) "
                   f"{fmt(a['best'])} vs best Optuna ({b['method']}) {fmt(b['best'])}: "
                   f"mpitune {'at least as good' if ok else 'WORSE'}")
    return out


def one_seed(args, tasks: list, groups: list, workdir: str, m: dict,
             table: Callable, Interference, interference_line) -> dict:
    """Run every method of every group on every task with ``args.seed``; print its
    tables; return numbers."""
    watch = Interference() if Interference else None
    runs: dict = {}
    for task in tasks:
        print(f"\n{task.name}: budget {task.budget:g} worker-seconds per run "
              f"({task.direction}, {task.max_resource} steps per full trial)", flush=True)
        for g, group in enumerate(groups):
            runs[task.name, g] = []
            for pruner in group.pruners:
                r = run_mpitune(args, task, pruner, workdir, sampler=group.sampler)
                runs[task.name, g].append(r)
                print(f"  {r.method}: {len(r.states)} trials in {r.wall:.0f} s", flush=True)
            for sampler in group.optuna_samplers:
                for name in ("sha", "hyperband"):
                    r = run_optuna(args, task, name, workdir, sampler)
                    runs[task.name, g].append(r)
                    print(f"  {r.method}: {len(r.states)} trials in {r.wall:.0f} s",
                          flush=True)
    busy = None
    if args.busy_budget > 0 and tasks:
        task = TASKS["synthetic"]
        busy = run_mpitune(args, task, "asha", workdir, busy=0.002)
        print(f"  {busy.method}: {len(busy.states)} trials in {busy.wall:.0f} s", flush=True)
    share = watch.share() if watch else None

    # ---- tables
    data: dict = {"machine": m, "workers": args.workers, "seed": args.seed, "tasks": {}}
    for task in tasks:
        data["tasks"][task.name] = {"budget": task.budget, "runs": [], "targets": {}}
        for g, group in enumerate(groups):
            rs = runs[task.name, g]
            base = next((r for r in rs if r.method == group.base()), None)
            target = summarise(base, task, None)["best"] if base is not None else None
            rows, numbers = [], []
            for r in rs:
                s = summarise(r, task, target)
                numbers.append({"method": r.method, "group": group.title, **s})
                ratio = s["ws_to_target"] / task.budget
                rows.append([r.method, s["trials"], s["complete"], s["pruned"],
                             fmt(s["worker_s"], ".0f") + (" (short)" if s["short"] else ""),
                             fmt(s["best"], ".4f"),
                             fmt(abs(task.optimum - s["best"]), ".4f") if task.optimum
                             else "-",
                             fmt(s["ws_to_target"], ".1f"), fmt(ratio, ".2f"),
                             fmt(s["wall_to_target"], ".1f")])
            print(f"\n{task.name}, {group.title} ({task.direction}; budget W = "
                  f"{task.budget:g} worker-seconds; target = best final value of "
                  f"'{group.base()}' within W = {fmt(target)}"
                  + (f"; known optimum {task.optimum:g}" if task.optimum else "") + ")")
            print(table(["method", "trials", "complete", "pruned", "worker-s", "best @W",
                         "regret", "ws->target", "/W", "wall->target s"], rows))
            for line in target_lines(task, group, numbers):
                print("  " + line)
            data["tasks"][task.name]["runs"] += numbers
            data["tasks"][task.name]["targets"][group.title] = target
    rows = []
    lat = {}
    for r in [x for rs in runs.values() for x in rs] + ([busy] if busy else []):
        if not len(r.report_us):
            continue
        at_rung = np.isin(r.report_us[:, 2], r.rungs)
        parts = [("", ~at_rung)] if not at_rung.any() else \
            [(" (between rungs)", ~at_rung), (" (at a rung: waits)", at_rung)]
        for suffix, rows_of in parts:
            us, preempted = r.report_us[rows_of, 0], r.report_us[rows_of, 1] > 0
            calm = us[~preempted]
            one = {"calls": len(us), "median_us": float(np.median(us)),
                   "p99_us": float(np.percentile(us, 99)), "max_us": float(us.max()),
                   "preempted": int(preempted.sum()),
                   "p99_not_preempted_us": float(np.percentile(calm, 99)) if len(calm)
                   else math.nan}
            lat[f"{r.task} {r.method}{suffix}"] = one
            rows.append([f"{r.task}: {r.method}{suffix}", one["calls"],
                         fmt(one["median_us"], ".1f"), fmt(one["p99_us"], ".1f"),
                         fmt(one["max_us"], ".0f"), one["preempted"],
                         fmt(one["p99_not_preempted_us"], ".1f")])
    if rows:
        print("\ntime inside trial.report on the workers, microseconds (goal for mpitune: "
              "median and p99 < 1000 between rungs; at a rung of asha/hyperband/bohb the "
              "worker waits for the verdict, one round trip to rank 0; for Optuna: every "
              "report + should_prune is a round trip to the ask/tell process); 'preempted': "
              "calls during which the OS took the CPU away from the worker (getrusage "
              "nivcsw), with the p99 of the others")
        print(table(["run", "calls", "median", "p99", "max", "preempted",
                     "p99 not preempted"], rows))
    data["report_latency"] = lat
    if share is not None:
        print("\n" + interference_line(share))
        data["other_cpu_share"] = share
    return data


def summary(per_seed: list, tasks: list, table: Callable) -> dict:
    """Across seeds, per task and method: the median best final value within W, the median
    share of W to reach the no-pruning run's quality (of the same seed; not reached counts
    as more than W), and in how many seeds it got there within W / 3 and W."""
    out: dict = {}
    for task in tasks:
        methods: dict = {}
        for data in per_seed:
            for x in data["tasks"][task.name]["runs"]:
                methods.setdefault(x["method"], []).append(x)
        rows, out[task.name] = [], {}
        for method, xs in methods.items():
            best = np.array([x["best"] for x in xs], dtype=float)
            share = np.array([x["ws_to_target"] / task.budget for x in xs], dtype=float)
            share = np.where(np.isnan(share), np.inf, share)
            one = {"best_median": float(np.nanmedian(best)) if np.isfinite(best).any()
                   else math.nan, "share_median": float(np.median(share)),
                   "within_third": int((share <= 1 / 3).sum()),
                   "within_w": int((share <= 1).sum()), "seeds": len(xs)}
            out[task.name][method] = one
            rows.append([method, fmt(one["best_median"]),
                         fmt(one["share_median"], ".2f") if np.isfinite(one["share_median"])
                         else "> 1", f"{one['within_third']}/{len(xs)}",
                         f"{one['within_w']}/{len(xs)}"])
        print(f"\n{task.name} over {len(per_seed)} seeds ({task.direction}; W = "
              f"{task.budget:g} worker-seconds; target per seed = best of the group's "
              f"'mpitune none')")
        print(table(["method", "median best @W", "median ws->target /W", "<= W/3", "<= W"],
                    rows))
    return out


def main() -> int:
    sys.path.insert(0, HERE)
    from _common import find_mpiexec, machine, machine_line, save_json, table

    try:
        from _common import Interference, interference_line
    except ImportError:  # an older _common
        Interference = interference_line = None

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", default="synthetic,digits")
    p.add_argument("--pruners", default="none,median,asha,hyperband,bohb")
    p.add_argument("--workers", type=int, default=8, help="worker ranks / Optuna processes")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--seeds", default=None, metavar="S1,S2,...",
                   help="run everything once per seed, then a summary over the seeds")
    p.add_argument("--budget-synthetic", type=float, default=None,
                   help=f"worker-seconds per run (default {TASKS['synthetic'].budget:g})")
    p.add_argument("--budget-digits", type=float, default=None,
                   help=f"worker-seconds per run (default {TASKS['digits'].budget:g})")
    p.add_argument("--busy-budget", type=float, default=64.0,
                   help="worker-seconds of the saturated-rank-0 run (0: skip it)")
    p.add_argument("--sampler", default=None,
                   help="mpitune's sampler for every run (default: the spec's, i.e. auto)")
    p.add_argument("--alone-sampler", default="sobol",
                   help="also run --alone-pruners with this sampler and, for sobol, "
                        "Optuna's pruners on the same configurations: the pruning rules "
                        "alone ('' to skip)")
    p.add_argument("--alone-pruners", default="none,median,asha,hyperband")
    p.add_argument("--no-optuna", action="store_true", help="skip the Optuna rows")
    p.add_argument("--optuna-samplers", default="tpe",
                   help="Optuna samplers to pair with its pruners beside mpitune's default "
                        "sampler: tpe and/or qmc")
    p.add_argument("--optuna-storage", choices=("asktell", "journal"), default="asktell",
                   help="Optuna's parallelism: one ask/tell process with in-memory storage "
                        "serving the workers over pipes (default), or every worker on a "
                        "shared JournalStorage file")
    p.add_argument("--quick", action="store_true", help="budgets / 3: a smoke run")
    p.add_argument("--workdir", default=None, help="keep the results files here")
    p.add_argument("--mpiexec", default=None)
    p.add_argument("--mpiexec-args", default="")
    p.add_argument("--json", metavar="PATH", default=None)
    args = p.parse_args()
    args.mpiexec = find_mpiexec(args.mpiexec)
    for name in ("synthetic", "digits"):
        given = getattr(args, f"budget_{name}")
        if given:
            TASKS[name].budget = given
        if args.quick:
            TASKS[name].budget /= 3
    if args.quick:
        args.busy_budget /= 2
    tasks = [TASKS[t] for t in args.tasks.split(",") if t]
    pruners = [x for x in args.pruners.split(",") if x]
    have_optuna = not args.no_optuna
    if have_optuna:
        try:
            import optuna  # noqa: F401
        except ImportError:
            have_optuna = False
            print("note: optuna is not installed (pip install optuna; an optional dependency "
                  "of this benchmark only): the Optuna rows are skipped")
    if any(t.name == "digits" for t in tasks):
        try:
            import sklearn  # noqa: F401
        except ImportError:
            sys.exit("benchmark: the digits task needs scikit-learn (pip install scikit-learn)"
                     "; or pass --tasks synthetic")
    groups = groups_of(args, pruners, have_optuna)
    m = machine()
    print(machine_line(m))
    workdir = args.workdir or tempfile.mkdtemp(prefix="mpitune-pruning-")
    os.makedirs(workdir, exist_ok=True)
    print(f"{args.workers} workers per run; results files in {workdir}")
    seeds = [int(x) for x in args.seeds.split(",")] if args.seeds else [args.seed]
    per_seed = []
    for seed in seeds:
        args.seed = seed
        if len(seeds) > 1:
            print(f"\n==== seed {seed}", flush=True)
        per_seed.append(one_seed(args, tasks, groups, workdir, m, table,
                                 Interference, interference_line))
    data = per_seed[0] if len(seeds) == 1 else {"seeds": seeds, "per_seed": per_seed,
                                                "summary": summary(per_seed, tasks, table)}
    save_json(args.json, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
