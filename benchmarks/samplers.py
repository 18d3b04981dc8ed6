"""Samplers side by side: simple regret and sampler time on test functions with known minima.

Every method -- mpitune's registered samplers (``mpitune.samplers.SAMPLERS``) and, when
installed, Optuna's TPESampler and GPSampler (through ask/tell) and Hyperopt's
``tpe.suggest`` -- runs through the same batched, asynchronous schedule as mpitune's
master, without MPI: ``q`` suggestions are asked for first; then, again and again, the
oldest pending trial finishes (first in, first out: deterministic), its value is told and
one new suggestion is asked for, so ``q`` trials stay pending until the budget of
suggestions is spent; the run ends when ``evals`` results are in. ``q = 1`` is the
sequential setting. mpitune samplers see exactly what the master shows them: a
:class:`mpitune.samplers.History` of the finished unit rows and losses, the pending rows
and ``n_total``; the first ask is one ``suggest(q, ...)``, later asks ``suggest(1, ...)``.

Per (method, problem, seed) the simple regret after ``evals`` evaluations (best value found
minus the known minimum; clipped at 0 against float rounding) and the sampler's own time:
the wall time (``time.perf_counter``) spent inside ask and tell -- for mpitune, building the
History, ``suggest`` and mapping the rows to user values; for Optuna ``study.ask`` and
``study.tell``; for Hyperopt ``tpe.suggest``, inserting the new documents and completing
them -- never the objective. It is reported per trial (total / evals). Tables give the
median and quartiles over the seeds; then, per problem, whether mpitune's default sampler
meets the targets: it beats every peer's batched result, stays within 2x of the best peer
run sequentially (``--sequential``), and spends at most a tenth of Optuna GPSampler's
time per trial.

Problems (``benchmarks/_problems.py``): branin, hartmann3, hartmann6, rosenbrock4 (on
[-5, 10]^4), mixed (a log-scaled real, two integers, a real and a categorical whose choice
moves the best learning rate) and levy20 (for the large-scale row).

    python benchmarks/samplers.py --quick                      # smoke run, about a minute
    python benchmarks/samplers.py --sequential --jobs 2        # the full table
    python benchmarks/samplers.py --large --tpe-batch-timing --methods sobol,optuna-tpe

Optuna and Hyperopt are optional dependencies of this benchmark only
(``pip install ".[bench]"``); a peer that is not installed is skipped with a note. Sampler
times only mean something with ``--jobs 1`` on a quiet machine; every thread pool is
limited to ``--threads`` threads (default 1), set before numpy, scipy or torch is imported.
"""

from __future__ import annotations

import os
import sys


def _threads_from_argv(argv: list) -> str | None:
    """The value of ``--threads N`` / ``--threads=N`` on the command line, if any."""
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--threads="):
            return arg.split("=", 1)[1]
    return None


THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")

if __name__ == "__main__":  # before numpy / torch are imported; process-pool workers inherit
    _given = _threads_from_argv(sys.argv)
    for _name in THREAD_VARIABLES:
        if _given is not None:
            os.environ[_name] = _given
        else:
            os.environ.setdefault(_name, "1")

import argparse  # noqa: E402
import datetime  # noqa: E402
import importlib.metadata  # noqa: E402
import importlib.util  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import warnings  # noqa: E402
from collections import OrderedDict  # noqa: E402
from typing import Any, Optional, Protocol, Sequence  # noqa: E402

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import _problems  # noqa: E402

DEFAULT_PROBLEMS = ("branin", "hartmann3", "hartmann6", "rosenbrock4", "mixed")
MPITUNE_DEFAULT_ORDER = ("auto", "gp", "tpe", "cmaes", "sobol", "random")
PEERS = {  # method -> (module it needs, description)
    "optuna-tpe": ("optuna", "optuna TPESampler(seed=s), default settings"),
    "optuna-tpe-cl": ("optuna", "optuna TPESampler(seed=s, constant_liar=True)"),
    "optuna-tpe-nocl": ("optuna", "optuna TPESampler(seed=s, constant_liar=False)"),
    "optuna-gp": ("optuna", "optuna GPSampler(seed=s)"),
    "hyperopt-tpe": ("hyperopt", "hyperopt tpe.suggest (one new trial doc per ask)"),
}
TARGET_SEQUENTIAL_FACTOR = 2.0
TARGET_TIME_FRACTION = 0.1
TARGET_TPE_BATCH_MS = 20.0


# ---- the methods: one ask/tell interface over every sampler ---------------------------------
class Method(Protocol):
    """What the schedule drives: ``ask(k)`` returns ``k`` (token, params) pairs, params a
    dict name -> user value; ``tell(token, value)`` reports a finished trial."""

    def ask(self, k: int) -> list[tuple[Any, dict]]: ...

    def tell(self, token: Any, value: float) -> None: ...


class MpituneMethod:
    """An mpitune sampler fed like the master feeds it (finished rows, pending rows,
    n_total), from a name in ``mpitune.samplers.SAMPLERS``."""

    def __init__(self, name: str, problem: _problems.Problem, seed: int, budget: int) -> None:
        from mpitune.samplers import SAMPLERS
        from mpitune.space import Space
        from mpitune.table import COMPLETE

        self.space = Space(problem.space)
        self.sampler = SAMPLERS[name]()
        self.sampler.bind(self.space, seed, budget=budget)
        d = self.space.ndim
        self.x = np.empty((budget, d))
        self.loss = np.empty(budget)
        self.state = np.full(budget, COMPLETE, dtype=np.uint8)
        self.m = 0
        self.pending: OrderedDict[int, np.ndarray] = OrderedDict()
        self.n_total = 0

    def ask(self, k: int) -> list[tuple[Any, dict]]:
        from mpitune.samplers import History

        d = self.space.ndim
        pending = (np.array(list(self.pending.values())) if self.pending
                   else np.empty((0, d)))
        history = History(self.space, x=self.x[:self.m], loss=self.loss[:self.m],
                          state=self.state[:self.m], pending=pending, n_total=self.n_total)
        unit = np.asarray(self.sampler.suggest(k, history), dtype=float)
        if unit.shape != (k, d):
            raise RuntimeError(f"{self.sampler!r}.suggest({k}) returned shape {unit.shape}, "
                               f"expected {(k, d)}")
        out = []
        for row, values in zip(unit, self.space.rows(unit)):
            token = self.n_total
            self.n_total += 1
            self.pending[token] = row
            out.append((token, {**self.space.constants, **dict(zip(self.space.names,
                                                                  values))}))
        return out

    def tell(self, token: Any, value: float) -> None:
        self.x[self.m] = self.pending.pop(token)
        self.loss[self.m] = value
        self.m += 1


def optuna_distributions(space) -> dict:
    """Optuna distributions matching an mpitune Space's dimensions."""
    import optuna.distributions as od

    from mpitune.space import Categorical, Integer, Real

    out = {}
    for dim in space.dims:
        if isinstance(dim, Real):
            out[dim.name] = od.FloatDistribution(dim.low, dim.high, log=dim.log)
        elif isinstance(dim, Integer):
            out[dim.name] = od.IntDistribution(dim.low, dim.high, log=dim.log, step=dim.step)
        elif isinstance(dim, Categorical):
            out[dim.name] = od.CategoricalDistribution(dim.choices)
        else:
            raise TypeError(f"no Optuna distribution for {dim!r}")
    return out


def optuna_sampler(method: str, seed: int):
    """The Optuna sampler of a peer method name."""
    import optuna

    if method == "optuna-tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if method == "optuna-tpe-cl":
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    if method == "optuna-tpe-nocl":
        return optuna.samplers.TPESampler(seed=seed, constant_liar=False)
    if method == "optuna-gp":
        return optuna.samplers.GPSampler(seed=seed)
    raise ValueError(method)


def optuna_default_constant_liar() -> Optional[bool]:
    """Whether the installed Optuna's TPESampler uses the constant liar by default (True
    from Optuna 5), or None when Optuna is missing."""
    try:
        import inspect

        import optuna
    except ImportError:
        return None
    parameter = inspect.signature(optuna.samplers.TPESampler).parameters.get("constant_liar")
    return bool(parameter.default) if parameter is not None else False


class OptunaMethod:
    """An Optuna sampler through ``study.ask(fixed_distributions)`` / ``study.tell``."""

    def __init__(self, method: str, problem: _problems.Problem, seed: int) -> None:
        import optuna

        from mpitune.space import Space

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        space = Space(problem.space)
        self.constants = dict(space.constants)
        self.distributions = optuna_distributions(space)
        self.study = optuna.create_study(sampler=optuna_sampler(method, seed),
                                         direction="minimize")

    def ask(self, k: int) -> list[tuple[Any, dict]]:
        out = []
        for _ in range(k):
            trial = self.study.ask(self.distributions)
            out.append((trial, {**self.constants, **trial.params}))
        return out

    def tell(self, token: Any, value: float) -> None:
        self.study.tell(token, value)


def hyperopt_space(space) -> tuple[dict, dict]:
    """A Hyperopt space for an mpitune Space and, per label, a function decoding a raw
    ``misc.vals`` entry to the user value."""
    from hyperopt import hp

    from mpitune.space import Categorical, Integer, Real

    hspace: dict = {}
    decode: dict = {}
    for dim in space.dims:
        name = dim.name
        if isinstance(dim, Real):
            hspace[name] = (hp.loguniform(name, math.log(dim.low), math.log(dim.high))
                            if dim.log else hp.uniform(name, dim.low, dim.high))
            decode[name] = lambda v, lo=dim.low, hi=dim.high: float(min(max(v, lo), hi))
        elif isinstance(dim, Integer):
            if dim.log:
                hspace[name] = hp.qloguniform(name, math.log(dim.low - 0.5),
                                              math.log(dim.high + 0.5), 1)
                decode[name] = lambda v, lo=dim.low, hi=dim.high: int(min(max(round(v), lo),
                                                                          hi))
            else:  # the index of the value on its grid
                hspace[name] = hp.quniform(name, -0.5, dim.size - 0.5, 1)
                decode[name] = lambda v, d=dim: int(d.low + d.step * min(max(round(v), 0),
                                                                         d.size - 1))
        elif isinstance(dim, Categorical):
            hspace[name] = hp.choice(name, list(range(dim.size)))
            decode[name] = lambda v, cs=tuple(dim.choices): cs[int(v)]
        else:
            raise TypeError(f"no Hyperopt expression for {dim!r}")
    return hspace, decode


def _never_called(params: dict) -> float:
    raise AssertionError("the benchmark evaluates the objective itself")


class HyperoptMethod:
    """Hyperopt's ``tpe.suggest`` with a ``Trials`` object, ask/tell style.

    Each ask creates one new trial id and asks ``tpe.suggest`` for its document (after the
    startup trials, TPE returns one document per call whatever the number of ids), inserts
    it as running, so the next suggestion sees it as pending (Hyperopt gives pending trials
    an infinite loss); a tell sets the result and state JOB_STATE_DONE and refreshes.
    """

    def __init__(self, problem: _problems.Problem, seed: int) -> None:
        from hyperopt import Domain, Trials

        from mpitune.space import Space

        space = Space(problem.space)
        self.constants = dict(space.constants)
        self.hspace, self.decode = hyperopt_space(space)
        self.domain = Domain(_never_called, self.hspace)
        self.trials = Trials()
        self.rng = np.random.default_rng(seed)

    def ask(self, k: int) -> list[tuple[Any, dict]]:
        from hyperopt import JOB_STATE_RUNNING, tpe

        out = []
        for _ in range(k):
            ids = self.trials.new_trial_ids(1)
            self.trials.refresh()
            docs = tpe.suggest(ids, self.domain, self.trials,
                               int(self.rng.integers(2 ** 31 - 1)), verbose=False)
            self.trials.insert_trial_docs(docs)
            doc = self.trials._dynamic_trials[-1]  # the inserted (SONified) copy
            doc["state"] = JOB_STATE_RUNNING
            self.trials.refresh()
            vals = doc["misc"]["vals"]
            params = {name: self.decode[name](vals[name][0]) for name in self.decode}
            out.append((doc, {**self.constants, **params}))
        return out

    def tell(self, token: Any, value: float) -> None:
        from hyperopt import JOB_STATE_DONE, STATUS_OK

        token["result"] = {"loss": float(value), "status": STATUS_OK}
        token["state"] = JOB_STATE_DONE
        self.trials.refresh()


def make_method(method: str, problem: _problems.Problem, seed: int, budget: int) -> Method:
    """A fresh method object for one run."""
    if method.startswith("optuna-"):
        return OptunaMethod(method, problem, seed)
    if method == "hyperopt-tpe":
        return HyperoptMethod(problem, seed)
    return MpituneMethod(method, problem, seed, budget)


# ---- the schedule ---------------------------------------------------------------------------
def schedule(method: Method, problem: _problems.Problem, evals: int, pending: int) -> dict:
    """Run one search with ``pending`` trials outstanding at all times (FIFO completion)
    until ``evals`` results are in; return the values in the order they finished and the
    seconds spent inside ask and tell."""
    from collections import deque

    queue: deque = deque()
    seconds = 0.0
    asked = 0

    def ask(k: int) -> None:
        nonlocal seconds, asked
        t0 = time.perf_counter()
        got = method.ask(k)
        seconds += time.perf_counter() - t0
        if len(got) != k:
            raise RuntimeError(f"asked for {k} suggestions, got {len(got)}")
        queue.extend(got)
        asked += k

    values = []
    ask(min(pending, evals))
    while len(values) < evals:
        token, params = queue.popleft()
        value = float(problem(params))
        values.append(value)
        t0 = time.perf_counter()
        method.tell(token, value)
        seconds += time.perf_counter() - t0
        if asked < evals:
            ask(1)
    return {"values": values, "sampler_seconds": seconds}


_WARM: set = set()


def warm_up(method: str) -> None:
    """Once per process and method, an untimed short run (25 evaluations of Branin, 2
    pending), so that lazy imports and first-call set-up (scipy.stats, torch, Optuna's
    storage) are not charged to the first timed run."""
    if method in _WARM:
        return
    _WARM.add(method)
    problem = _problems.get("branin")
    try:
        schedule(make_method(method, problem, 0, 25), problem, 25, 2)
    except Exception:  # noqa: BLE001 - the timed run reports it
        pass


def run_task(task: dict) -> dict:
    """One (method, problem, seed, pending) run; errors are returned, not raised."""
    problem = _problems.get(task["problem"])
    warm_up(task["method"])
    t0 = time.perf_counter()
    try:
        method = make_method(task["method"], problem, task["seed"], task["evals"])
        out = schedule(method, problem, task["evals"], task["pending"])
    except Exception as e:  # noqa: BLE001 - one failing sampler must not end the benchmark
        return {**task, "error": f"{type(e).__name__}: {e}",
                "traceback": traceback.format_exc(limit=6)}
    best = np.minimum.accumulate(np.asarray(out["values"]))
    regret = np.maximum(best - problem.fmin, 0.0)
    return {**task, "regret": float(regret[-1]), "trace": regret.tolist(),
            "sampler_seconds": out["sampler_seconds"],
            "ms_per_trial": 1e3 * out["sampler_seconds"] / task["evals"],
            "wall_seconds": time.perf_counter() - t0}


def run_tasks(tasks: Sequence[dict], jobs: int = 1, progress: bool = False) -> list[dict]:
    """Run the tasks, in a pool of ``jobs`` processes when ``jobs > 1`` (slow methods
    first, so the pool stays busy); results in the order of ``tasks``."""
    if jobs <= 1:
        results = []
        for i, task in enumerate(tasks):
            results.append(run_task(task))
            if progress:
                _progress(i + 1, len(tasks), results[-1])
        return results
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    order = sorted(range(len(tasks)), key=lambda i: -_cost(tasks[i]))
    results: list = [None] * len(tasks)
    context = multiprocessing.get_context("spawn")  # no forked torch/BLAS state
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = {pool.submit(run_task, tasks[i]): i for i in order}
        for done, future in enumerate(as_completed(futures), 1):
            results[futures[future]] = future.result()
            if progress:
                _progress(done, len(tasks), results[futures[future]])
    return results


def _cost(task: dict) -> float:
    """A rough relative cost, to start the slow runs first."""
    weight = {"optuna-gp": 50.0, "gp": 20.0, "auto": 20.0}.get(task["method"], 1.0)
    return weight * task["evals"] ** 2 / max(task["pending"], 1) ** 0.25


def _progress(done: int, total: int, result: dict) -> None:
    what = result.get("error") or f"regret {result['regret']:.3g}"
    print(f"  [{done}/{total}] {result['method']} q={result['pending']} {result['problem']} "
          f"seed {result['seed']}: {what}", file=sys.stderr, flush=True)


def make_tasks(methods: Sequence[str], problems: Sequence[str], seeds: Sequence[int],
               evals: int, pending: int) -> list[dict]:
    return [{"method": m, "problem": p, "seed": s, "evals": evals, "pending": pending}
            for m in methods for p in problems for s in seeds]


def run_benchmark(methods: Sequence[str], problems: Sequence[str], seeds: int = 10,
                  evals: int = 100, pending: int = 8, jobs: int = 1,
                  sequential: Sequence[str] = (), progress: bool = False) -> list[dict]:
    """The core of the script: every method on every problem with seeds 0..seeds-1 at
    ``pending`` trials outstanding, plus the ``sequential`` methods at one trial outstanding;
    one result dict per run (see :func:`run_task`)."""
    seed_list = list(range(seeds))
    tasks = make_tasks(methods, problems, seed_list, evals, pending)
    if pending != 1:
        tasks += make_tasks(sequential, problems, seed_list, evals, 1)
    return run_tasks(tasks, jobs, progress)


# ---- summaries ------------------------------------------------------------------------------
def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    q1, med, q3 = np.percentile(np.asarray(values, dtype=float), [25, 50, 75])
    return float(q1), float(med), float(q3)


def summarise(results: Sequence[dict]) -> dict:
    """(method, pending, problem) -> {'regret': [...], 'ms': [...], 'errors': [...]}."""
    out: dict = {}
    for r in results:
        cell = out.setdefault((r["method"], r["pending"], r["problem"]),
                              {"regret": [], "ms": [], "seconds": [], "errors": []})
        if "error" in r:
            cell["errors"].append(r["error"])
        else:
            cell["regret"].append(r["regret"])
            cell["ms"].append(r["ms_per_trial"])
            cell["seconds"].append(r["sampler_seconds"])
    return out


def median_of(cell: Optional[dict], key: str = "regret") -> Optional[float]:
    if not cell or not cell[key]:
        return None
    return float(np.median(cell[key]))


def fmt_cell(cell: Optional[dict], key: str = "regret") -> str:
    """``median [q1, q3]`` in %.3g, or 'error' / '-'."""
    if cell is None:
        return "-"
    if not cell[key]:
        return "error" if cell["errors"] else "-"
    q1, med, q3 = quartiles(cell[key])
    text = f"{med:.3g} [{q1:.3g}, {q3:.3g}]"
    return text + (f" ({len(cell['errors'])} failed)" if cell["errors"] else "")


def markdown(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table, columns padded to their widths."""
    cells = [list(map(str, headers))] + [list(map(str, r)) for r in rows]
    widths = [max(3, *(len(r[i]) for r in cells)) for i in range(len(headers))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    rule = "| " + " | ".join("-" * w for w in widths) + " |"
    return "\n".join([line(cells[0]), rule] + [line(r) for r in cells[1:]])


def is_peer(method: str) -> bool:
    return method in PEERS


def default_candidates(methods: Sequence[str]) -> tuple[Optional[str], list[str]]:
    """mpitune's default sampler for the target checks: ``auto`` if run, else None and the
    mpitune samplers run (the best of them is taken per problem)."""
    ours = [m for m in methods if not is_peer(m)]
    if "auto" in ours:
        return "auto", ["auto"]
    return None, ours


def target_rows(summary: dict, methods: Sequence[str], problems: Sequence[str], q: int,
                sequential: Sequence[str]) -> list[list[str]]:
    """Per problem: mpitune's default vs the best batched peer, the best sequential peer and
    Optuna GPSampler's time per trial."""
    fixed, candidates = default_candidates(methods)
    peers = [m for m in methods if is_peer(m)]
    seq_peers = [m for m in sequential if is_peer(m)]
    rows = []
    for prob in problems:
        scored = [(median_of(summary.get((m, q, prob))), m) for m in candidates]
        scored = [(v, m) for v, m in scored if v is not None]
        if not scored:
            continue
        ours, name = min(scored)
        label = name if fixed else f"{name} (best mpitune)"
        batched = [(median_of(summary.get((m, q, prob))), m) for m in peers]
        batched = [(v, m) for v, m in batched if v is not None]
        row = [prob, f"{label}: {ours:.3g}"]
        if batched:
            best, who = min(batched)
            row += [f"{who}: {best:.3g}", _yes(ours < best)]
        else:
            row += ["-", "-"]
        seq = [(median_of(summary.get((m, 1, prob))), m) for m in seq_peers]
        seq = [(v, m) for v, m in seq if v is not None]
        if seq:
            best, who = min(seq)
            ratio = ours / best if best > 0 else (1.0 if ours == 0 else math.inf)
            row += [f"{who}: {best:.3g}", f"{ratio:.2g}",
                    _yes(ratio <= TARGET_SEQUENTIAL_FACTOR)]
        else:
            row += ["-", "-", "-"]
        ours_ms = median_of(summary.get((name, q, prob)), "ms")
        gp_ms = median_of(summary.get(("optuna-gp", q, prob)), "ms")
        if ours_ms is not None and gp_ms:
            row += [f"{ours_ms:.3g} / {gp_ms:.3g}",
                    _yes(ours_ms <= TARGET_TIME_FRACTION * gp_ms)]
        else:
            row += ["-", "-"]
        rows.append(row)
    return rows


def _yes(ok: bool) -> str:
    return "yes" if ok else "**no**"


# ---- TPE batch timing, large-scale row ------------------------------------------------------
def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def tpe_batch_timing(n_finished: int = 5000, batch: int = 16, repeats: int = 5,
                     methods: Sequence[str] = ("tpe", "optuna-tpe", "hyperopt-tpe")) -> list:
    """Time TPE suggestions with ``n_finished`` finished random trials on Hartmann-6: one
    batch of ``batch`` for mpitune's ``tpe``, one suggestion for Optuna's and Hyperopt's;
    rows (method, what, median ms over ``repeats``)."""
    from mpitune.samplers import SAMPLERS, History
    from mpitune.space import Space
    from mpitune.table import COMPLETE

    problem = _problems.get("hartmann6")
    space = Space(problem.space)
    rng = np.random.default_rng(0)
    unit = rng.random((n_finished, space.ndim))
    params = [dict(zip(space.names, row)) for row in space.rows(unit)]
    loss = np.array([problem(p) for p in params])
    rows = []
    if "tpe" in methods and "tpe" in SAMPLERS:
        sampler = SAMPLERS["tpe"]()
        sampler.bind(space, 1, budget=n_finished + batch)
        history = History(space, x=unit, loss=loss,
                          state=np.full(n_finished, COMPLETE, dtype=np.uint8),
                          pending=np.empty((0, space.ndim)), n_total=n_finished)
        sampler.suggest(batch, history)  # warm-up (imports, caches)
        ms = 1e3 * _median_time(lambda: sampler.suggest(batch, history), repeats)
        rows.append(("tpe", f"batch of {batch}", ms))
    if "optuna-tpe" in methods and importlib.util.find_spec("optuna"):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        dists = optuna_distributions(space)
        study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=1))
        study.add_trials([optuna.trial.create_trial(params=p, distributions=dists, value=v)
                          for p, v in zip(params, loss)])

        def one() -> None:
            trial = study.ask(dists)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)  # not seen by later asks

        one()
        rows.append(("optuna-tpe", "1 suggestion", 1e3 * _median_time(one, repeats)))
    if "hyperopt-tpe" in methods and importlib.util.find_spec("hyperopt"):
        from hyperopt import JOB_STATE_DONE, STATUS_OK, Domain, Trials, rand, tpe

        hspace, _ = hyperopt_space(space)
        domain = Domain(_never_called, hspace)
        trials = Trials()
        docs = rand.suggest(trials.new_trial_ids(n_finished), domain, trials, 0)
        for doc, v in zip(docs, loss):  # random points of Hyperopt's own (same law)
            doc["result"] = {"loss": float(v), "status": STATUS_OK}
            doc["state"] = JOB_STATE_DONE
        trials.insert_trial_docs(docs)
        trials.refresh()
        new_id = trials.new_trial_ids(1)
        seeds = iter(range(10 ** 6))
        ms = 1e3 * _median_time(lambda: tpe.suggest(new_id, domain, trials, next(seeds),
                                                    verbose=False), repeats)
        rows.append(("hyperopt-tpe", "1 suggestion", ms))
    return rows


def default_method(registered: Sequence[str]) -> Optional[str]:
    """mpitune's default for the large-scale row: auto, else tpe, else sobol, if present."""
    for name in ("auto", "tpe", "sobol", "random"):
        if name in registered:
            return name
    return None


# ---- the command line -----------------------------------------------------------------------
def available_methods(requested: Sequence[str], registered: Sequence[str],
                      notes: list) -> list[str]:
    """The requested methods that can run here; a note for each one skipped."""
    out = []
    for m in requested:
        if m in PEERS:
            module = PEERS[m][0]
            if importlib.util.find_spec(module) is None:
                notes.append(f"{m}: {module} is not installed (pip install {module}; an "
                             f"optional benchmark dependency): skipped")
                continue
        elif m not in registered:
            notes.append(f"{m}: not in mpitune.samplers.SAMPLERS (registered: "
                         f"{', '.join(registered)}): skipped")
            continue
        out.append(m)
    return out


def default_methods(registered: Sequence[str]) -> list[str]:
    ours = [m for m in MPITUNE_DEFAULT_ORDER if m in registered]
    tpe_variant = "optuna-tpe-nocl" if optuna_default_constant_liar() else "optuna-tpe-cl"
    return ours + ["optuna-tpe", tpe_variant, "optuna-gp", "hyperopt-tpe"]


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def header(args, jobs: int) -> list[str]:
    from _common import _commit

    import mpitune

    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), "?")
    except OSError:
        pass
    versions = ", ".join(f"{d} {_version(d)}" for d in ("numpy", "scipy", "optuna",
                                                          "hyperopt", "torch"))
    threads = ", ".join(f"{v}={os.environ.get(v, 'unset')}" for v in THREAD_VARIABLES[:3])
    lines = [
        f"# mpitune sampler benchmark, {datetime.datetime.now().isoformat(timespec='seconds')}",
        "",
        f"- machine: {platform.node()}, {os.cpu_count()} CPUs ({cpu}), {platform.platform()}",
        f"- Python {platform.python_version()}, mpitune {mpitune.__version__} "
        f"({_commit(os.path.dirname(os.path.abspath(mpitune.__file__)))}), {versions}",
        f"- threads: {threads}; jobs: {jobs}"
        + ("" if jobs == 1 else " -- runs share the cores: sampler times are NOT trustworthy "
                                "(use --jobs 1 for timings)"),
        f"- schedule: {args.pending} pending (FIFO completion), {args.evals} evaluations, "
        f"seeds 0..{args.seeds - 1}",
    ]
    return lines


def main(argv: Optional[Sequence[str]] = None) -> int:
    from _common import Interference, interference_line, save_json

    from mpitune.samplers import SAMPLERS

    registered = list(SAMPLERS)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--problems", default=",".join(DEFAULT_PROBLEMS),
                   help=f"comma-separated, of {', '.join(_problems.problems())} "
                        f"(default: %(default)s)")
    p.add_argument("--methods", "--samplers", dest="methods", default=None,
                   help="comma-separated mpitune sampler names and peers "
                        f"({', '.join(PEERS)}); default: those of "
                        f"{', '.join(MPITUNE_DEFAULT_ORDER)} that are registered, plus "
                        "optuna-tpe, the other constant-liar setting of Optuna's TPE, "
                        "optuna-gp and hyperopt-tpe")
    p.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 (default 10)")
    p.add_argument("--evals", type=int, default=100, help="evaluations per run (default 100)")
    p.add_argument("--pending", type=int, default=8,
                   help="trials pending at all times (default 8)")
    p.add_argument("--sequential", action="store_true",
                   help="also run every method with 1 pending trial (the sequential setting)")
    p.add_argument("--large", action="store_true",
                   help="add the large-scale row: --large-evals evaluations with "
                        "--large-pending pending on hartmann6 and levy20, mpitune's default "
                        "and optuna-tpe")
    p.add_argument("--large-evals", type=int, default=2000)
    p.add_argument("--large-pending", type=int, default=64)
    p.add_argument("--large-seeds", type=int, default=3, help="seeds of the large row")
    p.add_argument("--large-problems", default="hartmann6,levy20")
    p.add_argument("--large-methods", default=None,
                   help="default: auto (else tpe, else sobol) and optuna-tpe")
    p.add_argument("--tpe-batch-timing", action="store_true",
                   help="time TPE with 5,000 finished trials on hartmann6: a batch of 16 for "
                        "mpitune's tpe, one suggestion for Optuna and Hyperopt")
    p.add_argument("--jobs", type=int, default=1,
                   help="run the tasks in N processes (default 1; timings are only "
                        "trustworthy with 1)")
    p.add_argument("--threads", type=int, default=None,
                   help="threads of numpy/scipy/torch pools (sets OMP_NUM_THREADS etc. before "
                        "they are imported; default: those variables, else 1)")
    p.add_argument("--quick", action="store_true",
                   help="3 seeds, 30 evaluations (and 300 / 16 for --large): a smoke run")
    p.add_argument("--progress", action="store_true", help="a line per finished run (stderr)")
    p.add_argument("--json", metavar="PATH", default=None,
                   help="also save every run (regret trace, times) to PATH as JSON")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.evals = 3, 30
        args.large_evals, args.large_pending, args.large_seeds = 300, 16, 2
    notes: list = []
    requested = (args.methods.split(",") if args.methods else default_methods(registered))
    requested = [m.strip() for m in requested if m.strip()]
    unknown = [m for m in requested if m not in PEERS and m not in registered
               and m not in MPITUNE_DEFAULT_ORDER]
    if unknown:
        p.error(f"unknown method(s) {', '.join(unknown)}; mpitune samplers: "
                f"{', '.join(registered)}; peers: {', '.join(PEERS)}")
    methods = available_methods(requested, registered, notes)
    problems = [x.strip() for x in args.problems.split(",") if x.strip()]
    for prob in problems + args.large_problems.split(","):
        if prob not in _problems.problems():
            p.error(f"unknown problem {prob!r}; known: {', '.join(_problems.problems())}")

    print("\n".join(header(args, args.jobs)))
    for m in methods:
        if m in PEERS:
            print(f"- {m}: {PEERS[m][1]}")
    if optuna_default_constant_liar():
        print("- note: this Optuna's TPESampler uses constant_liar=True by default, so "
              "optuna-tpe is already its batch mode (optuna-tpe-cl would be the same run)")
    for note in notes:
        print(f"- note: {note}")
    print()
    sequential = methods if args.sequential else []
    quiet = Interference()
    t0 = time.perf_counter()
    results = run_benchmark(methods, problems, args.seeds, args.evals, args.pending,
                            args.jobs, sequential, args.progress)
    q = args.pending
    summary = summarise(results)
    print(f"## Simple regret after {args.evals} evaluations, {q} pending: "
          f"median [q1, q3] over {args.seeds} seeds")
    print()
    print(markdown(["problem"] + list(methods),
                   [[prob] + [fmt_cell(summary.get((m, q, prob))) for m in methods]
                    for prob in problems]))
    if sequential and q != 1:
        print()
        print(f"## Simple regret after {args.evals} evaluations, sequential (1 pending)")
        print()
        print(markdown(["problem"] + list(sequential),
                       [[prob] + [fmt_cell(summary.get((m, 1, prob))) for m in sequential]
                        for prob in problems]))
    print()
    print(f"## Sampler time, ms per trial (median [q1, q3]), {q} pending"
          + ("" if args.jobs == 1 else f" -- {args.jobs} jobs: NOT trustworthy"))
    print()
    print(markdown(["problem"] + list(methods),
                   [[prob] + [fmt_cell(summary.get((m, q, prob)), "ms") for m in methods]
                    for prob in problems]))
    if sequential and q != 1:
        print()
        print("## Sampler time, ms per trial, sequential (1 pending)")
        print()
        print(markdown(["problem"] + list(sequential),
                       [[prob] + [fmt_cell(summary.get((m, 1, prob)), "ms")
                                  for m in sequential] for prob in problems]))
    rows = target_rows(summary, methods, problems, q, sequential)
    if rows:
        print()
        print(f"## Targets (medians): mpitune's default vs the peers, {q} pending")
        print()
        print(markdown(["problem", "mpitune default", "best batched peer", "beats all peers",
                        "best sequential peer", "ratio", f"<= {TARGET_SEQUENTIAL_FACTOR:g}x",
                        "ms/trial vs optuna-gp", f"<= {TARGET_TIME_FRACTION:g}x"], rows))
        if default_candidates(methods)[0] is None:
            print("\n('auto' is not registered or not run: the best mpitune sampler of each "
                  "problem stands in for the default.)")
        if not args.sequential:
            print("\n(the sequential columns need --sequential)")
    errors = [r for r in results if "error" in r]
    if errors:
        print()
        print(f"## Failed runs ({len(errors)})")
        seen = set()
        for r in errors:
            key = (r["method"], r["error"])
            if key not in seen:
                seen.add(key)
                print(f"- {r['method']} on {r['problem']} (q={r['pending']}, seed "
                      f"{r['seed']}): {r['error']}")
    data: dict = {"args": vars(args), "results": results}

    if args.large:
        large_methods = (args.large_methods.split(",") if args.large_methods else
                         [m for m in (default_method(registered), "optuna-tpe") if m])
        large_methods = available_methods(large_methods, registered, notes)
        large_problems = [x for x in args.large_problems.split(",") if x]
        large = run_tasks(make_tasks(large_methods, large_problems,
                                     list(range(args.large_seeds)), args.large_evals,
                                     args.large_pending), args.jobs, args.progress)
        ls = summarise(large)
        print()
        print(f"## Large scale: {args.large_evals} evaluations, {args.large_pending} pending, "
              f"{args.large_seeds} seeds: final regret / total sampler seconds (median "
              "[q1, q3])")
        print()
        print(markdown(["problem"] + [f"{m} {what}" for m in large_methods
                                      for what in ("regret", "sampler s")],
                       [[prob] + [fmt_cell(ls.get((m, args.large_pending, prob)), key)
                                  for m in large_methods for key in ("regret", "seconds")]
                        for prob in large_problems]))
        data["large"] = large
    if args.tpe_batch_timing:
        timing = tpe_batch_timing()
        print()
        print("## TPE with 5,000 finished trials (hartmann6), median of 5")
        print()
        if "tpe" not in registered:
            print("(mpitune's tpe is not registered: its row is missing)\n")
        print(markdown(["method", "what", "ms", "target"],
                       [[m, what, f"{ms:.3g}",
                         (_yes(ms < TARGET_TPE_BATCH_MS) + f" (< {TARGET_TPE_BATCH_MS:g} ms)")
                         if m == "tpe" else ""] for m, what, ms in timing]))
        data["tpe_batch_timing"] = [{"method": m, "what": w, "ms": ms} for m, w, ms in timing]
    print()
    print(f"total {time.perf_counter() - t0:.0f} s; {interference_line(quiet.share())}"
          + (f" (with {args.jobs} jobs the benchmark itself loads the machine)"
             if args.jobs > 1 else ""))
    save_json(args.json, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
