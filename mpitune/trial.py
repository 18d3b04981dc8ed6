"""What the objective sees (:class:`Trial`) and how one trial is run and its outcome recorded.

Lean on purpose: workers import this module, never numpy or h5py.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import signal
import threading
import time
import traceback
from typing import Any, Callable

from .errors import TrialInterrupted, TrialPruned, TrialTimedOut

# State codes, as in mpitune.table (kept here too so that workers need not import numpy).
RUNNING, COMPLETE, FAILED, PRUNED, INTERRUPTED, TIMEOUT = range(6)


class Trial:
    """One evaluation of the objective.

    Attributes: ``number`` (unique in the results file), ``params`` (the dict passed to the
    objective), ``rank`` and ``host`` of the worker, ``device`` (``"cuda:0"`` when a GPU was
    bound to this worker, else ``"cpu"``), ``gpu`` (the bound GPU's id as the node names
    it, or None) and ``checkpoint_dir`` (a directory of this trial's own).
    """

    __slots__ = ("number", "params", "rank", "host", "device", "gpu", "_link", "_pruned")

    def __init__(self, number: int, params: dict, link: Any, rank: int, host: str,
                 device: str, gpu: str | None) -> None:
        self.number, self.params, self._link = number, params, link
        self.rank, self.host, self.device, self.gpu = rank, host, device, gpu
        self._pruned = False

    def report(self, step: float, value: float) -> None:
        """Record one learning-curve point (e.g. epoch, validation loss).

        Returns at once: the point travels to rank 0 in the background. Raises
        :class:`mpitune.TrialPruned` when rank 0 has decided to stop this trial.
        """
        if not isinstance(step, numbers.Real) or isinstance(step, bool):
            raise TypeError(f"trial.report: step must be a number, got {step!r}")
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"trial.report: value must be a number, got {value!r}") from None
        step = float(step)
        if not math.isfinite(step):
            raise ValueError(f"trial.report: step must be finite, got {step!r}")
        self._link.report(self.number, step, value)
        if self._link.should_stop(self.number):
            self._pruned = True
            raise TrialPruned(f"trial {self.number} pruned at step {step:g}")

    def should_stop(self) -> bool:
        """True when rank 0 has decided to stop this trial (for objectives that prefer to
        check rather than catch :class:`mpitune.TrialPruned`)."""
        stop = self._link.should_stop(self.number)
        self._pruned = self._pruned or stop
        return stop

    @property
    def checkpoint_dir(self) -> str:
        """This trial's own directory, ``<results file>.checkpoints/trial-<number>``,
        created on first use. A trial that was running when a job died runs again with the
        same number, so an objective that saves its state here can resume its training
        instead of starting over. mpitune never deletes it."""
        return self._link.checkpoint_dir(self.number)

    def __repr__(self) -> str:
        return f"Trial(number={self.number}, params={self.params!r}, device={self.device!r})"


class Outcomes:
    """Results of finished trials, kept as columns until they are sent to rank 0."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.numbers: list[int] = []
        self.states: list[int] = []
        self.values: list[float] = []
        self.t_start: list[float] = []
        self.t_end: list[float] = []
        self.metrics: dict[str, tuple[list, list]] = {}
        self.errors: dict[int, str] = {}
        self.curve: tuple[list, list, list, list] = ([], [], [], [])

    def __len__(self) -> int:
        return len(self.numbers)

    def add_point(self, number: int, step: float, value: float) -> None:
        n, s, v, t = self.curve
        n.append(number)
        s.append(step)
        v.append(value)
        t.append(time.time())

    def take_curve(self) -> tuple:
        curve = self.curve
        self.curve = ([], [], [], [])
        return curve

    def payload(self) -> tuple:
        """The RESULTS message for everything buffered; empties the buffer."""
        out = (self.numbers, self.states, self.values, self.t_start, self.t_end,
               self.metrics, self.errors, self.curve)
        self.clear()
        return out


MAX_ERROR_CHARS = 20_000


def clean_text(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """Error text safe to store: valid UTF-8 (lone surrogates escaped) and bounded."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) > limit:
        half = limit // 2
        text = f"{text[:half]}\n... ({len(text) - limit} characters cut) ...\n{text[-half:]}"
    return text


def _short(x: Any, limit: int = 200) -> str:
    text = repr(x)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


class BadReturn(Exception):
    """The objective returned something that is not a value."""


def _as_value(out: Any) -> tuple[float, dict[str, float]]:
    """Split an objective's return value into the objective value and extra metrics."""
    if isinstance(out, dict):
        if "value" not in out:
            raise BadReturn(f"objective returned a dict without a 'value' key: "
                            f"{sorted(out)!r}")
        metrics = {}
        for name, x in out.items():
            if name == "value":
                continue
            if not isinstance(name, str) or not name.isidentifier():
                raise BadReturn(f"objective returned a metric named {_short(name)}; metric names "
                                f"must be identifier-like strings")
            try:
                metrics[name] = float(x)
            except (TypeError, ValueError):
                raise BadReturn(f"objective returned metric '{name}' = {_short(x)}, which is not "
                                f"a number") from None
        out = out["value"]
    else:
        metrics = {}
    if isinstance(out, (str, bytes)) or out is None:
        raise BadReturn(f"objective returned {_short(out)}, not a number")
    try:
        value = float(out)
    except (TypeError, ValueError):
        raise BadReturn(f"objective returned {_short(out)} of type {type(out).__name__}, not a "
                        f"number") from None
    if not math.isfinite(value):
        raise BadReturn(f"objective returned {value}, not a finite number")
    return value, metrics


@contextlib.contextmanager
def time_limit(seconds: float | None):
    """Raise :class:`TrialTimedOut` in the body after ``seconds`` (SIGALRM): Python code
    stops at once, a long call into C stops when it returns to Python. The handler only
    raises while the body runs, so a late signal cannot hit the caller."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return
    armed = True

    def expire(signum, frame):
        if armed:
            raise TrialTimedOut(f"trial ran past trial_timeout = {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        armed = False
        signal.signal(signal.SIGALRM, previous)


def run_trial(objective: Callable, trial: Trial, outcomes: Outcomes, where: str,
              timeout: float | None = None) -> int:
    """Call the objective for ``trial`` and add its outcome to ``outcomes``; return the
    state code. Every exception of the objective becomes a failed trial with its traceback
    (headed by ``where``: rank and host); :class:`TrialInterrupted` gives state
    ``interrupted``, and running past ``timeout`` seconds (if given) state ``timeout``."""
    t0 = time.time()
    value, metrics, error = math.nan, {}, None
    try:
        with time_limit(timeout):
            out = objective(trial.params, trial)
    except TrialPruned:
        state = PRUNED
    except TrialInterrupted:
        state = INTERRUPTED
    except TrialTimedOut as e:
        state = TIMEOUT
        error = f"{where}, trial {trial.number}: {e}"
    except BaseException as e:  # noqa: BLE001 - SystemExit/KeyboardInterrupt from user code
        state = FAILED
        error = (f"{where}, trial {trial.number}: {type(e).__name__}: {e}\n"
                 + "".join(traceback.format_exception(type(e), e, e.__traceback__)))
    else:
        try:
            value, metrics = _as_value(out)
            state = PRUNED if trial._pruned else COMPLETE
        except BadReturn as e:
            state = PRUNED if trial._pruned else FAILED
            if state == FAILED:
                error = f"{where}, trial {trial.number}: {e}"
    outcomes.numbers.append(trial.number)
    outcomes.states.append(state)
    outcomes.values.append(value)
    outcomes.t_start.append(t0)
    outcomes.t_end.append(time.time())
    for name, x in metrics.items():
        column = outcomes.metrics.get(name)
        if column is None:
            column = outcomes.metrics[name] = ([], [])
        column[0].append(trial.number)
        column[1].append(x)
    if error is not None:
        outcomes.errors[trial.number] = clean_text(error)
    return state
