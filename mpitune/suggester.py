"""The batched suggester: asks the sampler for many configurations at once.

It keeps a short queue of proposed unit-cube points, refilled ``batch_size`` at a time (or
more when a worker needs a big chunk of cheap trials). The sampler is shown the finished
trials and, as pending, every trial still running plus the points already queued, so a batch
spreads away from work in flight. Trials interrupted by an earlier run are handed out again
first, with their numbers and parameters. Explicit configurations (the ``configs`` setting)
that the results file does not hold yet come next (in a new search: trials 0, 1, ...), so
configurations added to the list on resume run too and none runs twice; the sampler takes
over after them. A sampler with an end (a grid) gets a budget of what it can still add:
the search has the trials already in the file, the explicit configurations still to run,
and the sampler's points that neither holds (:meth:`Sampler.remaining`), so a grid runs
each of its configurations once whatever ran before. In a space with
conditional parameters, inactive coordinates are set to nan before a point is queued.

Rank 0 must never hold the workers up. A model-based sampler (one that is not
``cost_free``) proposes at most ``batch_size`` points per call, and is asked only when its
last call took at most half a trial (the workers keep running their current trials
meanwhile) and at least as long has passed since (so it uses at most half of rank 0's
time); the other points, such as the big chunks that workers of millisecond trials take,
are stand-ins that cost next to nothing (:mod:`mpitune.samplers._standin`: Sobol' points
and Gaussian steps from the best trials so far). With trials of seconds this never
happens. The master keeps :attr:`Suggester.trial_seconds` up to date.
"""

from __future__ import annotations

import time
from collections import Counter, deque

import numpy as np

from .errors import SpecError
from .progress import log
from .samplers import History, Sampler
from .samplers._standin import StandInSampler
from .space import Space
from .table import COMPLETE, INTERRUPTED, PRUNED, RUNNING, TrialTable, is_finished

MODEL_SHARE_OF_RANK0 = 0.5  # at most this share of rank 0's time goes to a slow sampler


class Suggester:
    def __init__(self, sampler: Sampler, space: Space, table: TrialTable, batch_size: int,
                 direction: str, configs: np.ndarray | None = None, fidelity=None) -> None:
        self.sampler = sampler
        self.space = space
        self.table = table
        self.batch_size = batch_size
        self.sign = 1.0 if direction == "minimize" else -1.0
        self.queue = np.empty((0, space.ndim))
        self.rerun: deque[int] = deque(np.flatnonzero(table.state.data == INTERRUPTED))
        # explicit configurations as unit rows, checked by configs_to_unit
        self.configs = np.empty((0, space.ndim)) if configs is None else configs
        self.configs_todo = configs_not_run(self.configs, table.unit.data[:table.n], space)
        self.fidelity = fidelity  # a pruner that says which losses the sampler models (BOHB)
        self.trial_seconds: float | None = None  # mean trial duration, from the master
        self.n_fallback = 0  # points that came from the stand-in
        self._fallback: StandInSampler | None = None
        self._calls = 0
        self._call_seconds = 0.0  # how long the sampler's last call took
        self._call_end = 0.0
        # a sampler with an end (a grid): how many points it can add to what the file and
        # the explicit configurations hold, and so how many trials the search can have
        self.sampler_left = sampler.remaining(self._start_history())
        self.end = (None if self.sampler_left is None
                    else table.n + len(self.configs_todo) + self.sampler_left)

    def _start_history(self) -> History:
        """Every trial in the file (finished, or pending: interrupted ones run again with
        their own configuration) and, pending too, the explicit configurations to run."""
        t, todo = self.table, self.configs_todo

        def load() -> tuple:  # only a sampler that looks (the grid) pays for the copies
            state = t.state.data
            done = is_finished(state)
            return (t.unit.data[done], self.sign * t.value.data[done], state[done],
                    np.concatenate([t.unit.data[~done], todo]))

        return History(self.space, n_total=t.n + len(todo), load=load)

    def budget(self, max_trials: int) -> int:
        """The number of trials the search will have: ``max_trials``, or fewer if the
        sampler runs out of points (a grid: the trials in the file, the explicit
        configurations still to run, and the grid's configurations that neither holds)."""
        return max_trials if self.end is None else min(max_trials, self.end)

    def plan(self, max_trials: int) -> str:
        """How the budget of a sampler with an end adds up, in words for the start-up
        line (``" (all the sampler has: 8 in the file + 6 of the grid's 12 configurations
        not among them)"``); empty for a sampler without an end."""
        if self.end is None:
            return ""
        size, noun = self.sampler.capacity(), self.noun
        n, todo = self.table.n, len(self.configs_todo)
        parts = [f"{n} in the file"] if n else []
        if todo:
            parts.append(f"{todo} explicit configuration{'s' if todo != 1 else ''}")
        parts.append(f"{self.sampler_left} of the {noun}'s {size} configurations not among "
                     f"them" if parts else f"the {noun}'s {size} configurations")
        head = ("all the sampler has" if self.budget(max_trials) == self.end
                else f"of the {self.end} the sampler has")
        return f" ({head}: {' + '.join(parts)})"

    @property
    def noun(self) -> str:
        """What the sampler is called in messages: "grid" for a grid (auto's too)."""
        name = getattr(getattr(self.sampler, "choice", None), "name", self.sampler.name)
        return "grid" if name == "grid" else "sampler"

    def record(self, max_trials: int) -> dict:
        """What the run's entry in the results file's ``runs`` keeps of the budget, so
        that ``mpitune status`` can say how far the search is (see :func:`left_to_run`)."""
        out: dict = {"budget": int(self.budget(max_trials))}
        if self.end is not None:
            out["sampler_end"] = {"trials": int(self.end), "of": self.noun,
                                  "configurations": int(self.sampler.capacity()),
                                  "left": int(self.sampler_left)}
        return out

    def history(self) -> History:
        """The history as the sampler sees it; its arrays are built only if it reads them."""
        t, queue = self.table, self.queue

        def load() -> tuple:
            state = t.state.data
            done = is_finished(state)
            # interrupted trials run again (``rerun``): pending too, else a model that sees
            # the history they were proposed from proposes their points once more
            waiting = (state == RUNNING) | (state == INTERRUPTED)
            pending = np.concatenate([t.unit.data[waiting], queue])
            if self.fidelity is not None:
                loss = self.fidelity.sampler_losses(t, self.space.ndim)[done]
            else:
                loss = self.sign * t.value.data[done]
            pruned = state[done] == PRUNED
            stop_step = np.where(pruned, t.last_step.data[done], np.nan)
            stop_loss = np.where(pruned, self.sign * t.last_value.data[done], np.nan)
            return t.unit.data[done], loss, state[done], pending, stop_step, stop_loss

        return History(self.space, n_total=t.n + len(queue), load=load)

    def standin_history(self, ahead: int = 0) -> History:
        """Every trial (running ones without a loss), with final losses whatever the pruner:
        what :class:`StandInSampler` ranks, without the copies :meth:`history` makes (it
        runs once per chunk of very short trials). ``ahead`` points are about to be queued."""
        t = self.table

        def load() -> tuple:
            state = t.state.data
            pruned = state == PRUNED
            loss = np.where(state == COMPLETE, self.sign * t.value.data, np.nan)
            stop_step = np.where(pruned, t.last_step.data, np.nan)
            stop_loss = np.where(pruned, self.sign * t.last_value.data, np.nan)
            return t.unit.data, loss, state, None, stop_step, stop_loss

        return History(self.space, n_total=t.n + len(self.queue) + ahead, load=load)

    def take(self, k: int) -> tuple[list[int], np.ndarray | None]:
        """Up to ``k`` trials: (numbers of interrupted trials to re-run, new points)."""
        rerun = [int(self.rerun.popleft()) for _ in range(min(k, len(self.rerun)))]
        k -= len(rerun)
        if k <= 0:
            return rerun, None
        if len(self.queue) < k and len(self.configs_todo):
            m = k - len(self.queue)
            fixed, self.configs_todo = self.configs_todo[:m], self.configs_todo[m:]
            self.queue = np.concatenate([self.queue, fixed])
        if len(self.queue) < k:
            n = max(self.batch_size, k - len(self.queue))
            if self.end is not None:  # the sampler's points still to come, see __init__
                n = min(n, self.end - self.table.n - len(self.queue) - len(self.configs_todo))
            if n > 0:
                self.queue = np.concatenate([self.queue, self._ask(n)])
        new, self.queue = self.queue[:k], self.queue[k:]
        return rerun, new

    def _ask(self, n: int) -> np.ndarray:
        m = n
        if not self.sampler.cost_free:  # a model: big chunks are for cheap trials, see above
            m = min(n, self.batch_size) if self._sampler_may_run() else 0
        parts = []
        if m:
            t0 = time.perf_counter()
            points = np.asarray(self.sampler.suggest(m, self.history()), dtype=np.float64)
            self._call_end = time.perf_counter()
            self._calls += 1
            self._call_seconds = self._call_end - t0 if self._calls > 1 else 0.0  # imports
            if points.shape != (m, self.space.ndim):
                raise RuntimeError(f"sampler {self.sampler!r} returned shape {points.shape}, "
                                   f"expected {(m, self.space.ndim)}")
            parts.append(points)
        if m < n:
            if self._fallback is None:
                self._fallback = StandInSampler(self.sampler.seed)
            filler = self.standin_history(ahead=m)
            parts.append(self._fallback.suggest(n - m, filler))
            self.n_fallback += n - m
        points = np.vstack(parts)
        return self.space.mask(np.clip(points, 0.0, np.nextafter(1.0, 0.0)))

    def _sampler_may_run(self) -> bool:
        """See the module docstring: a slow sampler must not keep the workers waiting."""
        spent = self._call_seconds
        if self.trial_seconds is None:
            return True
        if spent <= MODEL_SHARE_OF_RANK0 * self.trial_seconds and \
                time.perf_counter() - self._call_end >= spent:
            return True
        if not self.n_fallback and spent > MODEL_SHARE_OF_RANK0 * self.trial_seconds:
            log(f"the sampler took {1e3 * spent:.3g} ms for its last batch and trials take "
                f"{1e3 * self.trial_seconds:.3g} ms: batches come from stand-in points while "
                f"it would keep workers waiting")
        return False

    @property
    def n_rerun(self) -> int:
        return len(self.rerun)


def left_to_run(end: dict, n_trials: int) -> int:
    """How many of a sampler's points (a grid's configurations) a search has not run yet,
    from the ``sampler_end`` that :meth:`Suggester.record` kept and the number of trials in
    the file now: explicit configurations run first, then the sampler's points, and trials
    are never removed, so ``end["trials"] - n_trials`` trials are still to come, the
    sampler's last."""
    return max(0, min(int(end["left"]), int(end["trials"]) - n_trials))


def configs_not_run(configs: np.ndarray, unit: np.ndarray, space: Space | None = None
                    ) -> np.ndarray:
    """The rows of ``configs`` that the trials ``unit`` (the results file's) do not hold
    yet, in their order; a configuration listed twice runs twice, less the times it ran.
    With ``space``, rows are compared as configurations (:meth:`Space.canonical`): a
    configuration ``x = 0.3`` added on resume is held by a grid's trial of ``0.3``,
    whose unit value is some ulps away."""
    if not len(configs) or not len(unit):
        return configs

    def keys(rows: np.ndarray) -> list[bytes]:
        if space is not None:
            rows = space.canonical(rows)
        rows = np.where(np.isnan(rows), np.nan, rows + 0.0)  # one nan, no -0.0
        return [row.tobytes() for row in rows]

    held = Counter(keys(unit))
    keep = []
    for i, key in enumerate(keys(configs)):
        if held[key]:
            held[key] -= 1
        else:
            keep.append(i)
    return configs[keep]


def configs_to_unit(space: Space, configs: list) -> np.ndarray:
    """Check explicit configurations against the space and map them to unit points.

    Each must be a dict naming every parameter that is active for it (constants may be
    repeated with their own value); raises :class:`SpecError` naming the configuration,
    the parameter and the value."""
    if not isinstance(configs, list):
        raise SpecError(f"setting 'configs' must be a list of dicts, got {configs!r}")
    out = np.empty((len(configs), space.ndim))
    for i, config in enumerate(configs):
        where = f"setting 'configs', entry {i}"
        if not isinstance(config, dict):
            raise SpecError(f"{where}: {config!r} is not a dict of parameter -> value")
        for name in config:
            if name not in space.names and name not in space.constants:
                raise SpecError(f"{where}: unknown parameter {name!r} (parameters: "
                                f"{', '.join(space.names)})")
            if name in space.constants and config[name] != space.constants[name]:
                raise SpecError(f"{where}: '{name}' is the constant "
                                f"{space.constants[name]!r}, got {config[name]!r}")
        row = np.full(space.ndim, np.nan)
        for j, dim in enumerate(space.dims):
            if not space.active(row[None, :])[0, j]:  # its parents are set already
                if dim.name in config:
                    raise SpecError(f"{where}: '{dim.name}' is inactive for these values "
                                    f"(it needs {dim.when}); leave it out")
                continue
            if dim.name not in config:
                raise SpecError(f"{where}: parameter '{dim.name}' is missing")
            dim.check_value(config[dim.name], where)
            row[j] = dim.to_unit([config[dim.name]])[0]
        out[i] = row
    return out

