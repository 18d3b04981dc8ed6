"""Unit tests of mpitune.trial: run_trial outcomes, Trial.report, Outcomes."""

from __future__ import annotations

import math
import signal
import time

import numpy as np
import pytest

from mpitune.errors import TrialInterrupted, TrialPruned
from mpitune.trial import COMPLETE, FAILED, INTERRUPTED, PRUNED, Outcomes, Trial, run_trial

WHERE = "rank 3 on node-z"


class Link:
    """What the worker provides to a Trial: collects reports, prunes on request."""

    def __init__(self, prune_after: int | None = None) -> None:
        self.points: list[tuple[int, float, float]] = []
        self.prune_after = prune_after

    def report(self, number, step, value):
        self.points.append((number, step, value))

    def should_stop(self, number):
        return self.prune_after is not None and len(self.points) >= self.prune_after


def make_trial(link=None, number=7, params=None) -> Trial:
    return Trial(number, params if params is not None else {"x": 1.0}, link or Link(), 3,
                 "node-z", "cpu", None)


def run(objective, link=None, **kw):
    outcomes = Outcomes()
    state = run_trial(objective, make_trial(link), outcomes, WHERE, **kw)
    assert outcomes.numbers == [7] and len(outcomes) == 1
    assert outcomes.states == [state]
    assert outcomes.t_start[0] <= outcomes.t_end[0]
    return state, outcomes


def failed_with(objective, *fragments):
    state, out = run(objective)
    assert state == FAILED
    assert math.isnan(out.values[0])
    error = out.errors[7]
    assert error.startswith(f"{WHERE}, trial 7: ")
    for fragment in fragments:
        assert fragment in error, (fragment, error)
    return error


# ---- return values -------------------------------------------------------------------


@pytest.mark.parametrize("ret, expected", [(1.5, 1.5), (-2, -2.0), (np.float32(0.25), 0.25),
                                           (np.int64(3), 3.0), (True, 1.0), (0.0, 0.0)])
def test_number_return_is_complete(ret, expected):
    state, out = run(lambda p, t: ret)
    assert state == COMPLETE
    assert out.values == [expected] and type(out.values[0]) is float
    assert out.errors == {} and out.metrics == {}


def test_objective_gets_params_and_trial():
    seen = {}

    def objective(params, trial):
        seen.update(params=params, trial=trial)
        return 0.0

    trial = make_trial(params={"a": 1, "b": "x"})
    run_trial(objective, trial, Outcomes(), WHERE)
    assert seen["params"] == {"a": 1, "b": "x"} and seen["trial"] is trial
    assert (trial.number, trial.rank, trial.host, trial.device, trial.gpu) == \
        (7, 3, "node-z", "cpu", None)


def test_dict_with_metrics():
    state, out = run(lambda p, t: {"value": 2.0, "acc": 0.9, "n": 3, "loss": np.float64(1.5),
                                   "nan_ok": float("nan")})
    assert state == COMPLETE and out.values == [2.0]
    assert out.metrics["acc"] == ([7], [0.9])
    assert out.metrics["n"] == ([7], [3.0])
    assert out.metrics["loss"] == ([7], [1.5])
    assert math.isnan(out.metrics["nan_ok"][1][0])
    assert "value" not in out.metrics


def test_metrics_accumulate_over_trials():
    outcomes = Outcomes()
    for n in range(3):
        trial = Trial(n, {}, Link(), 1, "h", "cpu", None)
        run_trial(lambda p, t, n=n: {"value": n, "m": 10 * n} if n != 1 else n, trial,
                  outcomes, WHERE)
    assert outcomes.metrics == {"m": ([0, 2], [0.0, 20.0])}
    assert outcomes.values == [0.0, 1.0, 2.0]


def test_dict_without_value():
    error = failed_with(lambda p, t: {"loss": 1.0, "acc": 2.0}, "without a 'value' key",
                        "'acc'", "'loss'")
    assert "\n" not in error


@pytest.mark.parametrize("metrics, fragment", [({"bad name": 1.0}, "metric named"),
                                               ({3: 1.0}, "metric named"),
                                               ({"m": "high"}, "metric 'm'"),
                                               ({"m": None}, "metric 'm'")])
def test_bad_metrics(metrics, fragment):
    failed_with(lambda p, t: {"value": 1.0, **metrics}, fragment)


@pytest.mark.parametrize("ret, fragment", [
    (float("nan"), "nan, not a finite number"),
    (float("inf"), "inf, not a finite number"),
    (-math.inf, "not a finite number"),
    (np.float64("nan"), "not a finite number"),
    ({"value": float("nan")}, "not a finite number"),
    ("1.5", "'1.5', not a number"),
    (b"2", "not a number"),
    (None, "None, not a number"),
    ({"value": None}, "None, not a number"),
    ([1.0], "of type list"),
    (object(), "of type object"),
    (1j, "of type complex"),
])
def test_bad_values_fail_with_a_one_line_error(ret, fragment):
    error = failed_with(lambda p, t: ret, fragment)
    assert "\n" not in error


def test_huge_string_return_keeps_the_error_short():
    huge = "x" * 1_000_000
    error = failed_with(lambda p, t: huge, "characters")
    assert len(error) < 500
    assert "1000002 characters" in error


def test_huge_metric_value_keeps_the_error_short():
    error = failed_with(lambda p, t: {"value": 1.0, "m": ["y"] * 100_000}, "metric 'm'")
    assert len(error) < 500


# ---- exceptions ----------------------------------------------------------------------


def test_exception_stores_traceback_headed_by_where():
    def objective(params, trial):
        helper_that_raises()

    def helper_that_raises():
        raise ValueError("boom 42")

    error = failed_with(objective, "ValueError: boom 42", "Traceback (most recent call last)",
                        "helper_that_raises")
    assert error.splitlines()[0] == f"{WHERE}, trial 7: ValueError: boom 42"


@pytest.mark.parametrize("exc, name", [(SystemExit(3), "SystemExit"),
                                       (KeyboardInterrupt(), "KeyboardInterrupt"),
                                       (ZeroDivisionError("z"), "ZeroDivisionError"),
                                       (MemoryError(), "MemoryError"),
                                       (GeneratorExit(), "GeneratorExit")])
def test_base_exceptions_are_failed_trials(exc, name):
    def objective(params, trial):
        raise exc

    failed_with(objective, f"{name}")


def test_trial_pruned():
    def objective(params, trial):
        raise TrialPruned("stop")

    state, out = run(objective)
    assert state == PRUNED and math.isnan(out.values[0]) and out.errors == {}


def test_trial_interrupted():
    def objective(params, trial):
        raise TrialInterrupted("search stopping")

    state, out = run(objective)
    assert state == INTERRUPTED and out.errors == {}


def test_report_raises_pruned_when_told_and_value_is_kept():
    link = Link(prune_after=2)

    def objective(params, trial):
        try:
            for step in range(10):
                trial.report(step, 10.0 - step)
        except TrialPruned:
            return 8.5
        return 0.0

    state, out = run(objective, link)
    assert state == PRUNED and out.values == [8.5]
    assert link.points == [(7, 0.0, 10.0), (7, 1.0, 9.0)]
    assert out.errors == {}


def test_pruned_trial_with_bad_return_is_pruned_not_failed():
    link = Link(prune_after=1)

    def objective(params, trial):
        try:
            trial.report(1, 1.0)
        except TrialPruned:
            return None

    state, out = run(objective, link)
    assert state == PRUNED and out.errors == {}


def test_uncaught_pruned_from_report():
    def objective(params, trial):
        trial.report(1, 0.5)
        return 1.0

    state, out = run(objective, Link(prune_after=1))
    assert state == PRUNED and out.errors == {}


def test_should_stop_marks_the_trial_pruned():
    link = Link()

    def objective(params, trial):
        trial.report(1, 0.5)
        assert not trial.should_stop()
        link.prune_after = 1  # rank 0 decided meanwhile
        assert trial.should_stop()
        return 1.0

    state, out = run(objective, link)
    assert state == PRUNED and out.values == [1.0]


# ---- time limit ----------------------------------------------------------------------


def test_timeout_stops_a_python_loop_and_restores_the_handler():
    import mpitune.trial as trial_module

    if not hasattr(trial_module, "TIMEOUT"):
        pytest.skip("no trial_timeout in this version")
    before = signal.getsignal(signal.SIGALRM)

    def objective(params, trial):
        while True:
            sum(range(1000))

    t0 = time.monotonic()
    state, out = run(objective, timeout=0.05)
    assert time.monotonic() - t0 < 2.0
    assert state == trial_module.TIMEOUT
    assert "trial_timeout" in out.errors[7] and out.errors[7].startswith(WHERE)
    assert signal.getsignal(signal.SIGALRM) is before
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)



class SignalledLink(Link):
    """A link whose report is hit by a signal half-way, as a timer may hit the worker's
    (mid-send, mid-receive): the rest of its work must still happen."""

    def __init__(self, signum: int, at_report: int = 3) -> None:
        super().__init__()
        self.signum, self.at_report, self.finished = signum, at_report, 0

    def report(self, number, step, value):
        self.points.append((number, step, value))
        if len(self.points) == self.at_report:
            signal.raise_signal(self.signum)  # its handler runs before the next line
        self.finished += 1


def test_a_timeout_inside_report_waits_until_report_is_done():
    """The timeout is raised in the objective when mpitune's code in report() returns,
    never half-way through it (where it would lose or garble messages and curve rows)."""
    import mpitune.trial as trial_module

    link = SignalledLink(signal.SIGALRM)
    seen = []

    def objective(params, trial):
        for step in range(10):
            seen.append(step)
            trial.report(step, 1.0)

    state, out = run(objective, link, timeout=100.0)
    assert state == trial_module.TIMEOUT and "trial_timeout" in out.errors[7]
    assert seen == [0, 1, 2] and link.finished == 3 and len(link.points) == 3
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_an_interrupt_inside_report_or_should_stop_waits_until_they_are_done():
    """The same for a stop delivered through ``Trial._stop`` (the worker's grace timer,
    a second signal): held back while report/should_stop run, raised once they return,
    and raised at once from the objective's own code."""
    class StoppingLink(Link):
        def __init__(self):
            super().__init__()
            self.trial, self.after = None, []

        def report(self, number, step, value):
            self.points.append((number, step, value))
            if len(self.points) == 2:
                self.trial._stop(TrialInterrupted("stop"))
            self.after.append(step)

    link = StoppingLink()
    trial = make_trial(link)
    link.trial = trial
    trial.report(0, 1.0)
    with pytest.raises(TrialInterrupted):
        trial.report(1, 1.0)
    assert link.after == [0, 1]
    trial.report(2, 1.0)  # raised once, not again
    with pytest.raises(TrialInterrupted):
        trial._stop(TrialInterrupted("outside report"))

def test_timeout_not_reached_leaves_no_alarm():
    before = signal.getsignal(signal.SIGALRM)
    state, out = run(lambda p, t: 1.0, timeout=5.0)
    assert state == COMPLETE
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGALRM) is before


# ---- Trial.report --------------------------------------------------------------------


@pytest.mark.parametrize("value", ["abc", None, [1.0], object(), "nan?"])
def test_report_rejects_non_numeric_value(value):
    link = Link()
    with pytest.raises(TypeError, match="value must be a number"):
        make_trial(link).report(1, value)
    assert link.points == []


@pytest.mark.parametrize("step", ["1", None, True, [1]])
def test_report_rejects_non_numeric_step(step):
    with pytest.raises(TypeError, match="step must be a number"):
        make_trial().report(step, 1.0)


@pytest.mark.parametrize("step", [math.inf, -math.inf, math.nan, np.float64("nan")])
def test_report_rejects_non_finite_step(step):
    link = Link()
    with pytest.raises(ValueError, match="step must be finite"):
        make_trial(link).report(step, 1.0)
    assert link.points == []


def test_report_forwards_floats():
    link = Link()
    t = make_trial(link)
    t.report(np.int64(2), np.float32(0.5))
    t.report(3, float("nan"))  # a diverged loss is a legitimate value
    assert link.points[0] == (7, 2.0, 0.5)
    assert all(type(s) is float and type(v) is float for _, s, v in link.points)
    assert math.isnan(link.points[1][2])


# ---- Outcomes ------------------------------------------------------------------------


def test_outcomes_payload_empties_the_buffer():
    out = Outcomes()
    run_trial(lambda p, t: 1.0, make_trial(), out, WHERE)
    out.add_point(7, 1.0, 0.5)
    payload = out.payload()
    numbers, states, values, t0, t1, metrics, errors, curve = payload
    assert numbers == [7] and states == [COMPLETE] and values == [1.0]
    assert curve[0] == [7] and curve[1] == [1.0] and curve[2] == [0.5] and len(curve[3]) == 1
    assert len(out) == 0 and out.payload()[0] == [] and out.curve == ([], [], [], [])


def test_take_curve():
    out = Outcomes()
    out.add_point(1, 2.0, 3.0)
    curve = out.take_curve()
    assert curve[:3] == ([1], [2.0], [3.0])
    assert out.take_curve() == ([], [], [], [])


# ---- return values and errors that break when read -----------------------------------


class FloatRaises:
    """Like a torch tensor with many elements: float() raises RuntimeError."""

    def __float__(self):
        raise RuntimeError("a Tensor with 4 elements cannot be converted to Scalar")


class ReprRaises:
    def __repr__(self):
        raise RuntimeError("repr fails")

    __str__ = __repr__


class ItemsRaise(dict):
    def items(self):
        raise RuntimeError("items fails")


@pytest.mark.parametrize("ret, fragments", [
    (10**400, ["of type int", "OverflowError"]),
    (10**5000, ["of type int", "OverflowError"]),  # its repr() raises ValueError too
    ({"value": 1.0, "m": 10**400}, ["metric 'm'", "OverflowError"]),
    (FloatRaises(), ["of type FloatRaises", "RuntimeError: a Tensor with 4 elements"]),
    ({"value": 1.0, "m": FloatRaises()}, ["metric 'm'", "RuntimeError"]),
    ({1: 2.0, "a": 3.0}, ["without a 'value' key", "1", "'a'"]),
    (ReprRaises(), ["of type ReprRaises", "repr() raised RuntimeError"]),
    ({"value": ReprRaises()}, ["of type ReprRaises"]),
    (ItemsRaise(value=1.0, m=2.0), ["of type ItemsRaise", "RuntimeError: items fails"]),
], ids=["bigint", "hugeint", "bigmetric", "floatraises", "metricfloatraises", "mixedkeys",
        "badrepr", "badreprvalue", "itemsraise"])
def test_return_values_that_raise_when_read_fail_the_trial(ret, fragments):
    error = failed_with(lambda p, t: ret, *fragments)
    assert "\n" not in error and len(error) < 1000


def test_many_keys_without_value_keep_the_error_short():
    error = failed_with(lambda p, t: {f"m{i}": 1.0 for i in range(5000)}, "5000 keys")
    assert len(error) < 1000


def test_exception_whose_str_raises_fails_the_trial():
    class BadStr(Exception):
        def __str__(self):
            raise RuntimeError("str fails")

    def objective(params, trial):
        raise BadStr()

    error = failed_with(objective, "BadStr", "str() raised RuntimeError", "Traceback")
    assert error.splitlines()[0].startswith(f"{WHERE}, trial 7: BadStr: ")


# ---- the trial's identity is read-only; reports only from the objective's thread ---------


@pytest.mark.parametrize("name", ["number", "params", "rank", "host", "device", "gpu"])
def test_identity_attributes_are_read_only(name):
    trial = make_trial()
    with pytest.raises(AttributeError, match=f"trial.{name} is read-only"):
        setattr(trial, name, 10**6)
    assert (trial.number, trial.rank, trial.host) == (7, 3, "node-z")


def test_outcome_is_recorded_under_the_number_handed_out():
    def objective(params, trial):
        trial.number = -1

    error = failed_with(objective, "AttributeError", "trial.number is read-only")
    assert "trial 7" in error


def test_report_from_another_thread_raises_and_sends_nothing():
    import threading

    link = Link()
    raised: list[BaseException] = []

    def objective(params, trial):
        def in_thread():
            for call in (lambda: trial.report(1, 0.5), trial.should_stop):
                try:
                    call()
                except BaseException as e:  # noqa: BLE001 - what the thread got
                    raised.append(e)

        thread = threading.Thread(target=in_thread)
        thread.start()
        thread.join()
        trial.report(2, 0.25)  # the objective's own thread still may
        return 1.0

    state, out = run(objective, link)
    assert state == COMPLETE
    assert [type(e) for e in raised] == [RuntimeError, RuntimeError]
    assert all("thread that runs the objective" in str(e) for e in raised)
    assert link.points == [(7, 2.0, 0.25)]


def test_report_after_the_trial_ended_raises():
    link = Link()
    trial = make_trial(link)
    run_trial(lambda p, t: 1.0, trial, Outcomes(), WHERE)
    with pytest.raises(RuntimeError, match="trial 7 has ended"):
        trial.report(1, 0.5)
    with pytest.raises(RuntimeError, match="trial 7 has ended"):
        trial.should_stop()
    assert link.points == []
