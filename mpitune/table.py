"""The in-memory record of a search on rank 0: one row per trial, one row per curve point.

Columns are growable numpy arrays, so that a batch of results is one vectorised assignment
and a snapshot is a handful of array writes. Trial numbers are row indices.
"""

from __future__ import annotations

import numpy as np

STATES = ("running", "complete", "failed", "pruned", "interrupted", "timeout")
RUNNING, COMPLETE, FAILED, PRUNED, INTERRUPTED, TIMEOUT = range(len(STATES))
FINISHED = (COMPLETE, FAILED, PRUNED, TIMEOUT)
_FINISHED_MASK = np.isin(np.arange(len(STATES)), FINISHED)


def latest_points(trials: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(trial numbers, index of each one's last point) of a curve's ``trial`` column in
    arrival order."""
    numbers, first = np.unique(trials[::-1], return_index=True)
    return numbers, len(trials) - 1 - first


def is_finished(states) -> np.ndarray:
    """Boolean mask of finished states (a table lookup: cheaper than np.isin)."""
    return _FINISHED_MASK[np.asarray(states, dtype=np.intp)]


class Column:
    """A 1-d or 2-d numpy array that grows by doubling; ``.data`` is the filled part."""

    def __init__(self, dtype, fill, width: int | None = None, capacity: int = 1024) -> None:
        shape = (capacity,) if width is None else (capacity, width)
        self._array = np.full(shape, fill, dtype=dtype)
        self._fill = fill
        self.size = 0

    @property
    def data(self) -> np.ndarray:
        return self._array[: self.size]

    def grow_to(self, size: int) -> None:
        if size > len(self._array):
            capacity = max(size, 2 * len(self._array))
            bigger = np.full((capacity,) + self._array.shape[1:], self._fill,
                             dtype=self._array.dtype)
            bigger[: self.size] = self._array[: self.size]
            self._array = bigger
        self.size = max(self.size, size)

    def extend(self, values) -> None:
        values = np.asarray(values)
        start = self.size
        self.grow_to(start + len(values))
        self._array[start: self.size] = values


class TrialTable:
    """Trials and curves as columns. Strings (host, GPU id, error text) live in side tables:
    ``host`` and ``gpu`` columns index :attr:`labels`, errors are a dict by trial number."""

    def __init__(self, ndim: int) -> None:
        self.ndim = ndim
        self.unit = Column(np.float64, np.nan, width=ndim)
        self.state = Column(np.uint8, RUNNING)
        self.value = Column(np.float64, np.nan)
        self.worker = Column(np.int32, -1)
        self.host = Column(np.int32, -1)
        self.gpu = Column(np.int32, -1)
        self.t_start = Column(np.float64, np.nan)
        self.t_end = Column(np.float64, np.nan)
        self.metrics: dict[str, Column] = {}
        self.errors: dict[int, str] = {}
        self.labels: list[str] = []
        self._label_index: dict[str, int] = {}
        self.curve_trial = Column(np.int64, -1)
        self.curve_step = Column(np.float64, np.nan)
        self.curve_value = Column(np.float64, np.nan)
        self.curve_time = Column(np.float64, np.nan)
        # each trial's latest report (arrival order): where a pruned trial stopped
        self.last_step = Column(np.float64, np.nan)
        self.last_value = Column(np.float64, np.nan)
        self.n_finished = 0

    @property
    def n(self) -> int:
        return self.state.size

    @property
    def n_curve(self) -> int:
        return self.curve_trial.size

    def label(self, text: str) -> int:
        """The index of ``text`` in :attr:`labels`, added on first use."""
        index = self._label_index.get(text)
        if index is None:
            index = self._label_index[text] = len(self.labels)
            self.labels.append(text)
        return index

    def _trial_columns(self):
        return (self.unit, self.state, self.value, self.worker, self.host, self.gpu,
                self.t_start, self.t_end, self.last_step, self.last_value,
                *self.metrics.values())

    def add(self, unit: np.ndarray) -> np.ndarray:
        """Append running trials for the rows of ``unit``; return their numbers."""
        start = self.n
        for col in self._trial_columns():
            col.grow_to(start + len(unit))
        self.unit.data[start:] = unit
        return np.arange(start, self.n)

    def assign(self, numbers, worker: int, host: int, gpu: int) -> None:
        self.state.data[numbers] = RUNNING
        self.worker.data[numbers] = worker
        self.host.data[numbers] = host
        self.gpu.data[numbers] = gpu

    def finish(self, numbers, states, values, t_start, t_end) -> None:
        """Record a batch of finished trials (vectorised)."""
        numbers = np.asarray(numbers, dtype=np.int64)
        states = np.asarray(states, dtype=np.uint8)
        was_finished = is_finished(self.state.data[numbers])
        self.n_finished += int(np.count_nonzero(is_finished(states) & ~was_finished))
        self.state.data[numbers] = states
        self.value.data[numbers] = values
        self.t_start.data[numbers] = t_start
        self.t_end.data[numbers] = t_end

    def set_metrics(self, metrics: dict[str, tuple[list, list]]) -> None:
        """``metrics`` maps a name to (trial numbers, values)."""
        for name, (numbers, values) in metrics.items():
            col = self.metrics.get(name)
            if col is None:
                col = self.metrics[name] = Column(np.float64, np.nan)
                col.grow_to(self.n)
            col.data[numbers] = values

    def add_curve(self, trials, steps, values, times) -> None:
        start = self.n_curve
        self.curve_trial.extend(trials)
        self.curve_step.extend(steps)
        self.curve_value.extend(values)
        self.curve_time.extend(times)
        numbers, latest = latest_points(self.curve_trial.data[start:])
        if len(numbers):
            latest += start
            self.last_step.data[numbers] = self.curve_step.data[latest]
            self.last_value.data[numbers] = self.curve_value.data[latest]

    def interrupt_running(self) -> np.ndarray:
        """Mark every running trial interrupted; return their numbers."""
        running = np.flatnonzero(self.state.data == RUNNING)
        self.state.data[running] = INTERRUPTED
        return running

    def counts(self) -> dict[str, int]:
        found = np.bincount(self.state.data, minlength=len(STATES))
        return {name: int(found[i]) for i, name in enumerate(STATES)}

    def best(self, direction: str) -> int | None:
        """The number of the best complete trial, or None."""
        values = np.where(self.state.data == COMPLETE, self.value.data, np.nan)
        if not np.isfinite(values).any():
            return None
        return int(np.nanargmin(values) if direction == "minimize" else np.nanargmax(values))

    def apply(self, event: dict) -> None:
        """Apply one journal event. The master records every change through here, so
        replaying a journal rebuilds exactly the table that the run had in memory."""
        kind = event["k"]
        if kind == "A":  # new trials, numbered from n0, with their unit-cube points
            unit = np.asarray(event["u"], dtype=np.float64).reshape(len(event["u"]),
                                                                    self.ndim)
            if event["n0"] != self.n:
                raise ValueError(f"journal adds trial {event['n0']} but the table has "
                                 f"{self.n} trials")
            self.add(unit)
        elif kind == "S":  # trials handed to a worker
            self.assign(event["n"], event["w"], self.label(event["h"]), self.label(event["g"]))
        elif kind == "D":  # trials finished
            n = event["n"]
            self.finish(n, event["s"], event["v"], event["t0"], event["t1"])
            if event.get("m"):
                self.set_metrics(event["m"])
            for number, text in (event.get("e") or {}).items():
                self.errors[int(number)] = text
        elif kind == "C":  # learning-curve points
            self.add_curve(event["n"], event["st"], event["v"], event["t"])
        elif kind == "I":  # trials interrupted by a stop; they run again on resume
            self.state.data[np.asarray(event["n"], dtype=np.int64)] = INTERRUPTED
        else:
            raise ValueError(f"unknown journal event {kind!r}")
