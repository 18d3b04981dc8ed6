"""Read a results file for analysis: :func:`load` returns numpy columns.

Works during a run too: it reads the last HDF5 snapshot and replays the journal lines
written since, without taking the lock or writing anything.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np

from .errors import StorageError
from .snapshot import Meta, param_columns
from .space import RESERVED_NAMES, Categorical, Space
from .store import read_state
from .table import STATES, TrialTable


@dataclass
class Results:
    """Trials and curves of a search as numpy columns.

    ``path`` is the name given to :func:`load`; from :func:`mpitune.run`, the file's
    absolute name (a serial objective may have changed the working directory).

    ``trials`` holds ``number``, ``state`` (strings: complete, failed, pruned, running,
    interrupted), ``value``, one column per parameter (user values; categorical columns
    hold the choices), one per metric (named ``metric.NAME`` if NAME is taken), ``worker``,
    ``host``, ``gpu``, ``t_start``, ``t_end``, ``duration`` and ``error``. ``curves`` holds
    ``trial``, ``step``, ``value`` and ``time``, one row per reported point. ``active``
    (trials x parameters, bool) says which parameters each trial had: from the NaNs of the
    stored unit cube, so that a text choice ``""`` is told from an inactive parameter.
    ``runs`` is the file's ``runs`` attribute: one dict per run (start, end, status, the
    budget it had, ...).
    """

    path: str
    space: Space
    settings: dict
    direction: str
    seed: int
    complete: bool
    trials: dict
    curves: dict
    active: np.ndarray
    status: str = ""
    runs: list = field(default_factory=list)

    def __getitem__(self, column: str) -> np.ndarray:
        return self.trials[column]

    def __len__(self) -> int:
        return len(self.trials["number"])

    @property
    def best(self) -> dict | None:
        """``{"number", "value", "params"}`` of the best complete trial, or None."""
        ok = self.trials["state"] == "complete"
        if not ok.any():
            return None
        values = np.where(ok, self.trials["value"], np.nan)
        i = int(np.nanargmin(values) if self.direction == "minimize"
                else np.nanargmax(values))
        return {"number": i, "value": float(self.trials["value"][i]), "params": self.params(i)}

    def params(self, number: int) -> dict:
        """The parameters trial ``number`` ran with, as its objective received them
        (inactive conditional parameters left out, constants included)."""
        out = {dim.name: received_value(dim, self.trials[dim.name][number])
               for dim, active in zip(self.space.dims, self.active[number]) if active}
        out.update(self.space.constants)
        return out

    def curve(self, number: int) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) reported by one trial, in the order they arrived."""
        mask = self.curves["trial"] == number
        return self.curves["step"][mask], self.curves["value"][mask]

    def __repr__(self) -> str:
        counts = {s: int((self.trials["state"] == s).sum()) for s in STATES}
        shown = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
        return f"Results('{self.path}': {len(self)} trials ({shown or 'none'}))"


def received_value(dim, x):
    """A column value as the objective received it (JSON-encoded choices decoded; the
    float64 column of a conditional integer or boolean parameter back to its type)."""
    kind = dim.column_kind if isinstance(dim, Categorical) else dim.kind
    if kind == "json":
        return json.loads(str(x))
    x = x.item() if isinstance(x, np.generic) else x
    if dim.when and kind in ("integer", "int"):
        return int(x)
    if dim.when and kind == "bool":
        return bool(x)
    return x


def results_from_table(path: str, meta: Meta, table: TrialTable) -> Results:
    space = Space.from_json(meta.space_json)
    n = table.n
    labels = np.array(table.labels + [""], dtype=object)  # index -1 -> ""
    trials: dict = {
        "number": np.arange(n, dtype=np.int64),
        "state": np.array(STATES)[table.state.data],
        "value": table.value.data.copy(),
    }
    trials.update(param_columns(space, table.unit.data))
    conditional = np.array([bool(dim.when) for dim in space.dims], dtype=bool)
    active = ~(np.isnan(table.unit.data.reshape(n, space.ndim)) & conditional)
    for name, col in table.metrics.items():
        key = name if name not in trials and name not in RESERVED_NAMES else f"metric.{name}"
        trials[key] = col.data.copy()
    trials["worker"] = table.worker.data.copy()
    trials["host"] = labels[table.host.data]
    trials["gpu"] = labels[table.gpu.data]
    trials["t_start"] = table.t_start.data.copy()
    trials["t_end"] = table.t_end.data.copy()
    trials["duration"] = trials["t_end"] - trials["t_start"]
    errors = np.full(n, "", dtype=object)
    for number, text in table.errors.items():
        errors[number] = text
    trials["error"] = errors  # object: one long traceback must not widen every row
    curves = {"trial": table.curve_trial.data.copy(), "step": table.curve_step.data.copy(),
              "value": table.curve_value.data.copy(), "time": table.curve_time.data.copy()}
    return Results(path=path, space=space, settings=json.loads(meta.settings_json or "{}"),
                   direction=meta.direction, seed=meta.seed, complete=meta.complete,
                   trials=trials, curves=curves, active=active,
                   runs=json.loads(json.dumps(meta.runs)))


def load(path: str) -> Results:
    """Load a results file (also while a search is writing it)."""
    last_error = None
    for _ in range(20):  # a snapshot may replace the file while we read; then read again
        before = _identity(path)
        try:
            meta, table = read_state(path)
        except StorageError as e:
            last_error = e
            if "cannot be replayed" not in str(e):
                raise
            continue
        if _identity(path) == before:
            return results_from_table(path, meta, table)
    raise last_error or StorageError(f"'{path}' kept changing while it was read; try again")


def _identity(path: str) -> tuple:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return ()
    return st.st_ino, st.st_mtime_ns, st.st_size
