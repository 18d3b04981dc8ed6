"""Search settings: one dataclass, validated in one place, shared by spec, CLI and ``run``.

Each field's metadata holds its help text; the command line is generated from it, so every
setting that a spec file can define can also be overridden as ``--field-name``.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import numbers
import os
from typing import Any, Optional, Union

from .errors import SpecError, short_repr

MAX_BATCH_SIZE = 100_000  # a larger batch would only allocate huge proposal arrays
SEED_LIMIT = 2**63  # the results file stores the seed as an int64 attribute
MAX_TIMEOUT = 1e9  # seconds: setitimer refuses values not far above
MAX_RUNGS = 64  # of a pruner's ladder between min_resource and max_resource


def _field(default: Any, help: str, **kw: Any) -> Any:
    return dataclasses.field(default=default, metadata={"help": help, **kw})


def plain_number(value: Any) -> Any:
    """A numpy (or other) number as a plain int or float (settings are stored as JSON, and
    a range's float16/float32 bounds would round its values unlike the stored float64
    ones); anything else unchanged, for validation to judge."""
    if isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return value


def plain_value(value: Any) -> Any:
    """``value`` with numpy scalars as plain Python ones (``.item()``), inside lists,
    tuples and dicts too: explicit configurations built with numpy are stored as JSON."""
    if isinstance(value, (list, tuple)):
        return type(value)(plain_value(v) for v in value)
    if isinstance(value, dict):
        return {k: plain_value(v) for k, v in value.items()}
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        return value.item()  # a numpy scalar or 0-d array (numpy is not imported here)
    return value


@dataclasses.dataclass
class Settings:
    """All knobs of a search. Defaults suit a cluster job; see ``--help``."""

    direction: str = _field("minimize", "minimize or maximize the objective",
                            choices=("minimize", "maximize"))
    max_trials: int = _field(100, "trials in the whole search, counting those already in "
                                  "the results file (resume extends the search up to it)")
    max_time: Optional[float] = _field(None, "seconds after which this run starts no new "
                                             "trial (running ones finish)")
    sampler: Any = _field("auto", "search algorithm: auto, tpe, gp, cmaes, sobol, lhs, random "
                                  "or grid (or a Sampler object in the spec); auto picks "
                                  "from the space and the budget and says why")
    configs: Optional[list] = _field(None, "explicit configurations (dicts of parameter -> "
                                           "value) run first, those not yet in the results "
                                           "file; a JSON list on the command line")
    batch_size: Optional[int] = _field(None, "configurations the sampler proposes per call, "
                                             "at most 100000 (default: number of workers)")
    seed: Optional[int] = _field(None, "random seed, 0 .. 2**63-1 (default: drawn once and "
                                       "stored, so a resumed search continues the same "
                                       "stream)")
    storage: str = _field("results.h5", "results file (HDF5); an existing one is resumed")
    flush_interval: float = _field(1.0, "seconds between fsyncs of the journal (what a node "
                                        "crash can lose at most)")
    snapshot_interval: float = _field(10.0, "seconds between HDF5 snapshots (stretched so "
                                            "snapshots take <= 5%% of rank 0's time)")
    progress_interval: float = _field(10.0, "seconds between progress lines (0: none)")
    grace_period: float = _field(5.0, "seconds running trials get to finish after SIGTERM, "
                                      "SIGINT or SIGUSR1 before they are interrupted")
    trial_timeout: Optional[float] = _field(None, "seconds after which a trial is stopped "
                                                  "and stored as timeout (Python code is "
                                                  "interrupted; a long C call finishes first)")
    queue_ahead: float = _field(0.01, "seconds of work kept queued on each worker when "
                                      "trials are short (throughput for cheap objectives)")
    bind_gpus: bool = _field(True, "give each worker one GPU of its node via "
                                   "CUDA_VISIBLE_DEVICES")
    fsync: bool = _field(True, "fsync the journal every flush_interval (off: a node crash may "
                                "lose recent trials; a killed job still loses nothing)")
    pruner: Any = _field("none", "stop unpromising trials early from their trial.report() "
                                 "curves: none, median, asha, hyperband or bohb (hyperband "
                                 "whose sampler models the best-supported rung; or a Pruner "
                                 "object in the spec); non-finite reported values count as "
                                 "the worst")
    min_resource: float = _field(1.0, "asha/hyperband/bohb: step of the first rung, where "
                                      "trials are first compared")
    max_resource: Optional[float] = _field(None, "asha/hyperband/bohb: the last step a full "
                                                 "trial reports (hyperband and bohb need it; "
                                                 "default: "
                                                 "unknown, rungs without end)")
    reduction_factor: int = _field(3, "asha/hyperband/bohb: rungs at min_resource * "
                                      "reduction_factor**k; the best 1/reduction_factor of "
                                      "each rung go on (2..1000)")
    warmup_steps: float = _field(0.0, "median: no trial is stopped at a step below this")

    def validate(self) -> Settings:
        """Check types and ranges; raise :class:`SpecError` naming setting and value.

        numpy numbers are accepted and become plain int or float here, and a
        ``pathlib.Path`` (any os.PathLike) storage becomes a str."""
        for name in FIELD_NAMES:
            setattr(self, name, plain_number(getattr(self, name)))

        def bad(name: str, rule: str) -> SpecError:
            return SpecError(f"setting '{name}' is {short_repr(getattr(self, name))}, but "
                             f"{rule}")

        def is_int(x: Any) -> bool:
            return isinstance(x, numbers.Integral) and not isinstance(x, bool)

        def is_num(x: Any) -> bool:
            return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)

        if self.direction not in ("minimize", "maximize"):
            raise bad("direction", "must be 'minimize' or 'maximize'")
        if not is_int(self.max_trials) or self.max_trials < 0:
            raise bad("max_trials", "must be an integer >= 0")
        if self.max_time is not None and (not is_num(self.max_time) or self.max_time <= 0):
            raise bad("max_time", "must be a number of seconds > 0")
        if self.trial_timeout is not None and (not is_num(self.trial_timeout)
                                               or self.trial_timeout <= 0):
            raise bad("trial_timeout", "must be a number of seconds > 0")
        if self.trial_timeout is not None and self.trial_timeout > MAX_TIMEOUT:
            raise bad("trial_timeout", f"must be at most {MAX_TIMEOUT:.0e} seconds (the "
                                       f"timer's range); leave it unset for no limit")
        if self.batch_size is not None and (not is_int(self.batch_size)
                                            or not 1 <= self.batch_size <= MAX_BATCH_SIZE):
            raise bad("batch_size", f"must be an integer in 1..{MAX_BATCH_SIZE}")
        if self.seed is not None and (not is_int(self.seed) or not 0 <= self.seed < SEED_LIMIT):
            raise bad("seed", "must be an integer in 0..2**63-1 (the results file stores it "
                              "as int64)")
        if isinstance(self.storage, os.PathLike):
            self.storage = os.fsdecode(self.storage)  # pathlib.Path: stored as JSON text
        if not isinstance(self.storage, str) or not self.storage:
            raise bad("storage", "must be a file path (str or os.PathLike)")
        for name in ("flush_interval", "snapshot_interval", "progress_interval",
                     "grace_period", "queue_ahead"):
            value = getattr(self, name)
            if not is_num(value) or value < 0:
                raise bad(name, "must be a number of seconds >= 0")
        for name in ("bind_gpus", "fsync"):
            if not isinstance(getattr(self, name), bool):
                raise bad(name, "must be True or False")
        if self.configs is not None and (not isinstance(self.configs, list) or not all(
                isinstance(c, dict) for c in self.configs)):
            raise bad("configs", "must be a list of dicts of parameter -> value")
        if self.configs is not None:
            self.configs = [plain_value(c) for c in self.configs]
        from .samplers import check_sampler

        check_sampler(self.sampler)
        self._validate_pruner(bad, is_int, is_num)
        return self

    def _validate_pruner(self, bad, is_int, is_num) -> None:
        from .pruners import check_pruner

        check_pruner(self.pruner)
        if not is_num(self.min_resource) or self.min_resource <= 0:
            raise bad("min_resource", "must be a number > 0")
        if self.max_resource is not None and (not is_num(self.max_resource)
                                              or self.max_resource < self.min_resource):
            raise bad("max_resource", f"must be None (unknown) or a number >= min_resource "
                                      f"({self.min_resource:g})")
        if self.pruner in ("hyperband", "bohb") and self.max_resource is None:
            raise bad("max_resource", f"pruner '{self.pruner}' needs it: set it to the last "
                                      f"step a full trial reports")
        if not is_int(self.reduction_factor) or not 2 <= self.reduction_factor <= 1000:
            raise bad("reduction_factor", "must be an integer in 2..1000")
        if self.max_resource is not None:
            ratio = self.max_resource / self.min_resource
            if not math.isfinite(ratio) or math.log(ratio) > MAX_RUNGS * math.log(
                    self.reduction_factor):
                raise bad("max_resource", f"over min_resource ({self.min_resource:g}) gives "
                                          f"more than {MAX_RUNGS} rungs at reduction_factor "
                                          f"{self.reduction_factor}")
        if not is_num(self.warmup_steps) or self.warmup_steps < 0:
            raise bad("warmup_steps", "must be a number >= 0")

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied; unknown names are an error."""
        unknown = [k for k in changes if k not in FIELD_NAMES]
        if unknown:
            raise SpecError(f"unknown setting '{unknown[0]}'{_did_you_mean(unknown[0])}")
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        if not isinstance(self.sampler, str):
            data["sampler"] = repr(self.sampler)
        if not isinstance(self.pruner, str):
            data["pruner"] = repr(self.pruner)
        return json.dumps(data, sort_keys=True)


FIELD_NAMES = tuple(f.name for f in dataclasses.fields(Settings))


def _did_you_mean(name: str) -> str:
    close = difflib.get_close_matches(name, FIELD_NAMES, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def near_misses(names: list[str]) -> list[str]:
    """Names in a spec module that look like misspelt settings, with a hint each."""
    hints = []
    for name in names:
        if name not in FIELD_NAMES and not name.startswith("_"):
            close = difflib.get_close_matches(name, FIELD_NAMES, n=1, cutoff=0.8)
            if close:
                hints.append(f"'{name}' is not a setting; did you mean '{close[0]}'?")
    return hints


def field_type(field: dataclasses.Field) -> type:
    """The plain type a command-line value of ``field`` converts to."""
    hint = field.type if not isinstance(field.type, str) else eval(  # noqa: S307
        field.type, {"Optional": Optional, "Union": Union, "Any": Any})
    args = [a for a in getattr(hint, "__args__", ()) if a is not type(None)]
    base = args[0] if args else hint
    return str if base is Any else base
