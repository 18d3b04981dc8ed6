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

from . import stopsignals
from .errors import TrialInterrupted, TrialPruned, TrialTimedOut, safe_text, short_repr

# State codes, as in mpitune.table (kept here too so that workers need not import numpy).
RUNNING, COMPLETE, FAILED, PRUNED, INTERRUPTED, TIMEOUT = range(6)


def _read_only(name: str, doc: str) -> property:
    """A property that reads ``_<name>`` and refuses assignment: the worker records the
    outcome under the number it handed out, whatever the objective does to its trial."""
    def get(self: Trial) -> Any:
        return getattr(self, "_" + name)

    def refuse(self: Trial, value: Any) -> None:
        raise AttributeError(f"trial.{name} is read-only")

    return property(get, refuse, refuse, doc)


class Trial:
    """One evaluation of the objective.

    Attributes (read-only): ``number`` (unique in the results file), ``params`` (the dict
    passed to the objective), ``rank`` and ``host`` of the worker, ``device`` (``"cuda:0"``
    when a GPU was bound to this worker, else ``"cpu"``), ``gpu`` (the bound GPU's id as
    the node names it, or None) and ``checkpoint_dir`` (a directory of this trial's own).
    """

    __slots__ = ("_number", "_params", "_rank", "_host", "_device", "_gpu", "_link",
                 "_pruned", "_thread", "_running", "_shielded", "_deferred")

    number = _read_only("number", "the trial's number, unique in the results file (its row)")
    params = _read_only("params", "the dict passed to the objective")
    rank = _read_only("rank", "the MPI rank of the worker running the trial")
    host = _read_only("host", "the host name of the worker running the trial")
    device = _read_only("device", '"cuda:0" when a GPU was bound to this worker, else "cpu"')
    gpu = _read_only("gpu", "the bound GPU's id as the node names it, or None")

    def __init__(self, number: int, params: dict, link: Any, rank: int, host: str,
                 device: str, gpu: str | None) -> None:
        self._number, self._params, self._link = number, params, link
        self._rank, self._host, self._device, self._gpu = rank, host, device, gpu
        self._pruned = False
        self._thread: int | None = threading.get_ident()  # may report; None once ended
        self._running = False  # True while run_trial runs the objective: it may be stopped
        self._shielded = False  # True while mpitune's own code runs inside report()
        self._deferred: BaseException | None = None  # a stop that arrived meanwhile

    def _check_caller(self, method: str) -> None:
        """Only the thread that runs the objective may talk to rank 0, and only while the
        trial runs: MPI calls from two threads at once garble messages, and a trial that
        has ended has nobody left to hear it."""
        if self._thread is None:
            raise RuntimeError(f"trial.{method}: trial {self._number} has ended")
        if threading.get_ident() != self._thread:
            raise RuntimeError(f"trial.{method} must be called from the thread that runs "
                               f"the objective, not from {threading.current_thread().name}")

    def report(self, step: float, value: float) -> None:
        """Record one learning-curve point (e.g. epoch, validation loss).

        Returns at once: the point travels to rank 0 in the background. Raises
        :class:`mpitune.TrialPruned` when rank 0 has decided to stop this trial, and
        RuntimeError when called from another thread than the objective's (report from
        there, e.g. after joining a training thread) or after the trial has ended.
        """
        self._check_caller("report")
        if not isinstance(step, numbers.Real) or isinstance(step, bool):
            raise TypeError(f"trial.report: step must be a number, got {short_repr(step)}")
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"trial.report: value must be a number, got {short_repr(value)}"
                            ) from None
        step = float(step)
        if not math.isfinite(step):
            raise ValueError(f"trial.report: step must be finite, got {step!r}")
        with self._shield():
            self._link.report(self._number, step, value)
            stop = self._link.should_stop(self._number)
        if stop:
            self._pruned = True
            raise TrialPruned(f"trial {self._number} pruned at step {step:g}")

    def should_stop(self) -> bool:
        """True when rank 0 has decided to stop this trial (for objectives that prefer to
        check rather than catch :class:`mpitune.TrialPruned`). Like :meth:`report`, only
        from the objective's thread while the trial runs (else RuntimeError)."""
        self._check_caller("should_stop")
        with self._shield():
            stop = self._link.should_stop(self._number)
        self._pruned = self._pruned or stop
        return stop

    @contextlib.contextmanager
    def _shield(self):
        """Hold back a timeout or interrupt (see :meth:`_stop`) while mpitune's own code
        runs on the objective's behalf, and raise it when that code is done: raised in
        the middle, it would cut a message in half (a request dropped while its send is in
        flight, a message received and lost), or a curve row between its columns."""
        self._shielded = True
        try:
            yield
        finally:
            self._shielded = False
            deferred, self._deferred = self._deferred, None
            if deferred is not None:
                raise deferred

    def _stop(self, exc: BaseException) -> None:
        """Raise ``exc`` (a timeout, an interrupt) in the objective: from a signal handler,
        at once, unless mpitune's code is running inside :meth:`report` (then when it
        returns, see :meth:`_shield`)."""
        if not self._shielded:
            raise exc
        if self._deferred is None:
            self._deferred = exc

    @property
    def checkpoint_dir(self) -> str:
        """This trial's own directory, ``<results file>.checkpoints/trial-<number>``,
        created on first use. A trial that was running when a job died runs again with the
        same number, so an objective that saves its state here can resume its training
        instead of starting over. mpitune never deletes it."""
        return self._link.checkpoint_dir(self._number)

    def __repr__(self) -> str:
        return f"Trial(number={self._number}, params={short_repr(self._params)}, " \
               f"device={self._device!r})"


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
    """Error text safe to store: valid UTF-8 (lone surrogates escaped), no NUL (HDF5's
    variable-length strings cannot hold one: written as ``\\x00``) and bounded."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
    if len(text) > limit:
        half = limit // 2
        text = f"{text[:half]}\n... ({len(text) - limit} characters cut) ...\n{text[-half:]}"
    return text


def _reason(e: BaseException, limit: int = 200) -> str:
    """``Type: message`` of an exception on one bounded line."""
    text = " ".join(f"{type(e).__name__}: {safe_text(e)}".split())
    return text if len(text) <= limit else text[:limit] + "..."


def _describe(e: BaseException) -> str:
    """``Type: message`` and the traceback, whatever the exception's ``__str__`` does."""
    try:
        trace = "".join(traceback.format_exception(type(e), e, e.__traceback__))
    except BaseException as f:  # noqa: BLE001 - formatting must not lose the trial
        trace = f"(no traceback: formatting it raised {type(f).__name__})\n"
    return f"{type(e).__name__}: {safe_text(e)}\n{trace}"


class BadReturn(Exception):
    """The objective returned something that is not a value."""


def _key_list(d: dict, limit: int = 20) -> str:
    """The keys of ``d`` for a message: sorted as text (keys of mixed types do not compare),
    at most ``limit`` of them."""
    keys = sorted(short_repr(k, 50) for k in d)
    more = f", ... ({len(keys)} keys)" if len(keys) > limit else ""
    return f"[{', '.join(keys[:limit])}{more}]"


def _number(x: Any, what: str) -> float:
    """``float(x)``; whatever that raises (OverflowError for a huge int, RuntimeError for a
    tensor of many elements, ...) becomes a :class:`BadReturn` saying what and why."""
    try:
        return float(x)
    except Exception as e:  # noqa: BLE001 - user types may raise anything
        raise BadReturn(f"objective returned {what}{short_repr(x)} of type {type(x).__name__}, "
                        f"which is not a number ({_reason(e)})") from None


def _read_value(out: Any) -> tuple[float, dict[str, float]]:
    if isinstance(out, dict):
        if "value" not in out:
            raise BadReturn(f"objective returned a dict without a 'value' key: "
                            f"{_key_list(out)}")
        metrics = {}
        for name, x in out.items():
            if name == "value":
                continue
            if not isinstance(name, str) or not name.isidentifier():
                raise BadReturn(f"objective returned a metric named {short_repr(name)}; "
                                f"metric names must be identifier-like strings")
            metrics[name] = _number(x, f"metric '{name}' = ")
        out = out["value"]
    else:
        metrics = {}
    if isinstance(out, (str, bytes)) or out is None:
        raise BadReturn(f"objective returned {short_repr(out)}, not a number")
    value = _number(out, "")
    if not math.isfinite(value):
        raise BadReturn(f"objective returned {value}, not a finite number")
    return value, metrics


def _as_value(out: Any) -> tuple[float, dict[str, float]]:
    """Split an objective's return value into the objective value and extra metrics;
    :class:`BadReturn` for anything else, also when reading the value raises."""
    try:
        return _read_value(out)
    except BadReturn:
        raise
    except Exception as e:  # noqa: BLE001 - e.g. a dict subclass whose items() raises
        raise BadReturn(f"objective returned {short_repr(out)} of type {type(out).__name__}, "
                        f"which could not be read ({_reason(e)})") from None


@contextlib.contextmanager
def time_limit(seconds: float | None, trial: Trial):
    """Raise :class:`TrialTimedOut` in the body after ``seconds`` (SIGALRM) through
    ``trial._stop``: Python code stops at once, a long call into C when it returns to
    Python, mpitune's code inside ``trial.report`` when it is done. The handler only
    raises while the body runs, so a late signal cannot hit the caller."""
    if not seconds or not stopsignals.in_main_thread():
        yield
        return
    armed = True

    def expire(signum, frame):
        if armed:
            trial._stop(TrialTimedOut(f"trial ran past trial_timeout = {seconds:g} s"))

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
    state code. Every exception of the objective, or of reading what it returned, becomes
    a failed trial with its error text (headed by ``where``: rank and host);
    :class:`TrialInterrupted` gives state ``interrupted``, and running past ``timeout``
    seconds (if given) state ``timeout``. ``trial._running`` is True exactly while a stop
    may raise in here (see Worker.in_trial); the trial ends with this call."""
    t0 = time.time()
    number = trial.number
    value, metrics, error = math.nan, {}, None
    try:
        try:
            trial._thread, trial._running = threading.get_ident(), True
            with time_limit(timeout, trial):
                result = _as_value(objective(trial.params, trial))
        finally:
            trial._thread, trial._running = None, False
    except BadReturn as e:
        state = PRUNED if trial._pruned else FAILED
        if state == FAILED:
            error = f"{where}, trial {number}: {e}"
    except TrialPruned:
        state = PRUNED
    except TrialInterrupted:
        state = INTERRUPTED
    except TrialTimedOut as e:
        state = TIMEOUT
        error = f"{where}, trial {number}: {e}"
    except BaseException as e:  # noqa: BLE001 - SystemExit/KeyboardInterrupt from user code
        state = FAILED
        error = f"{where}, trial {number}: {_describe(e)}"
    else:
        value, metrics = result
        state = PRUNED if trial._pruned else COMPLETE
    outcomes.numbers.append(number)
    outcomes.states.append(state)
    outcomes.values.append(value)
    outcomes.t_start.append(t0)
    outcomes.t_end.append(time.time())
    for name, x in metrics.items():
        column = outcomes.metrics.get(name)
        if column is None:
            column = outcomes.metrics[name] = ([], [])
        column[0].append(number)
        column[1].append(x)
    if error is not None:
        outcomes.errors[number] = clean_text(error)
    return state
