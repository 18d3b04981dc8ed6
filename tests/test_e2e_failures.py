"""End to end: objectives that fail. Each failure is stored as a failed trial with its error
text (headed with the rank and host that ran it); the search goes on and exits 0."""

from __future__ import annotations

import socket

import h5py
import numpy as np
import pytest
from conftest import write_spec

import mpitune

SPEC = '''
import math
import sys
from mpitune import Real

space = {"x": Real(0.0, 1.0)}
MODES = ["raise", "nan", "string", "none", "exit", "inf", "nokey", "badmetric", "keyboard",
         "ok", "ok_dict"]


def objective(params, trial):
    mode = MODES[trial.number % len(MODES)]
    if mode == "raise":
        raise ValueError(f"boom in trial {trial.number}")
    if mode == "nan":
        return float("nan")
    if mode == "string":
        return "not a number"
    if mode == "none":
        return None
    if mode == "exit":
        sys.exit(3)
    if mode == "inf":
        return math.inf
    if mode == "nokey":
        return {"loss": 1.0}
    if mode == "badmetric":
        return {"value": 1.0, "acc": "high"}
    if mode == "keyboard":
        raise KeyboardInterrupt("ctrl-c inside the objective")
    if mode == "ok":
        return params["x"]
    return {"value": params["x"], "acc": 1 - params["x"]}
'''

MODES = ["raise", "nan", "string", "none", "exit", "inf", "nokey", "badmetric", "keyboard",
         "ok", "ok_dict"]
# what the error text must say for each failing mode
EXPECTED = {
    "raise": "ValueError: boom in trial",
    "nan": "nan",
    "string": "'not a number'",
    "none": "None",
    "exit": "SystemExit",
    "inf": "inf",
    "nokey": "'value'",
    "badmetric": "acc",
    "keyboard": "KeyboardInterrupt",
}


@pytest.mark.parametrize("ranks", [None, 4])
def test_failed_trials_are_recorded_and_search_goes_on(tmp_path, run, ranks):
    spec = write_spec(tmp_path, SPEC)
    path = str(tmp_path / "fail.h5")
    n = 2 * len(MODES)
    res = run(ranks, [spec, "--max-trials", n, "--storage", path, "--progress-interval", 0])
    assert res.returncode == 0, res.describe()
    assert "failed" in res.stdout  # the first failures are logged on rank 0
    host = socket.gethostname()

    with h5py.File(path, "r") as f:
        assert bool(f.attrs["complete"])
        t = f["trials"]
        np.testing.assert_array_equal(t["number"][...], np.arange(n))
        states = [s.decode() for s in t["state"][...].tolist()]
        errors = t["error"].asstr()[...]
        values = t["value"][...]
        workers = t["worker"][...]
        x = t["params/x"][...]
        acc = t["metrics/acc"][...]

    for i in range(n):
        mode = MODES[i % len(MODES)]
        if mode.startswith("ok"):
            assert states[i] == "complete", (i, mode, errors[i])
            assert errors[i] == ""
            assert values[i] == x[i]
            if mode == "ok_dict":
                assert acc[i] == pytest.approx(1 - x[i])
            else:
                assert np.isnan(acc[i])
            continue
        assert states[i] == "failed", (i, mode, states[i])
        assert np.isnan(values[i]), (i, mode)
        assert np.isnan(acc[i]), (i, mode)
        text = errors[i]
        assert EXPECTED[mode] in text, (i, mode, text)
        assert f"trial {i}" in text, (i, text)
        assert host in text.splitlines()[0], text
        if ranks:
            assert f"rank {workers[i]} on {host}" in text.splitlines()[0], text

    r = mpitune.load(path)
    assert (r["state"] == "failed").sum() == 2 * len(EXPECTED)
    assert (r["state"] == "complete").sum() == 4
    assert r.best["number"] in {i for i in range(n) if MODES[i % len(MODES)].startswith("ok")}
    assert "ValueError: boom" in r["error"][0]


def test_all_trials_failing_still_completes(tmp_path, run):
    spec = write_spec(tmp_path, '''
        from mpitune import Real
        space = {"x": Real(0.0, 1.0)}
        def objective(params, trial):
            trial.report(0, 1.0)
            raise RuntimeError("always")
    ''')
    path = str(tmp_path / "allfail.h5")
    res = run(3, [spec, "--max-trials", 30, "--storage", path])
    assert res.returncode == 0, res.describe()
    r = mpitune.load(path)
    assert len(r) == 30 and set(r["state"].tolist()) == {"failed"}
    assert r.best is None
    assert len(r.curves["trial"]) == 30  # curve points before the failure are kept
    # the first few failures get a log line each, the rest are only counted
    failure_lines = [x for x in res.stdout.splitlines() if "trial" in x and "failed" in x]
    assert 1 <= len(failure_lines) <= 7, res.stdout
    show = run(None, ["show", path])
    assert show.returncode == 0, show.describe()
    assert "30 failed" in show.stdout and "RuntimeError: always" in show.stdout


UNREADABLE_SPEC = '''
from mpitune import Real

space = {"x": Real(0.0, 1.0)}
MODES = ["bigint", "bigmetric", "floatraises", "metricfloatraises", "mixedkeys", "badrepr",
         "badstr", "ok"]


class FloatRaises:
    """Like a torch tensor of many elements: float() raises RuntimeError."""

    def __float__(self):
        raise RuntimeError("no scalar")


class BadRepr:
    def __repr__(self):
        raise RuntimeError("repr fails")


class BadStr(Exception):
    def __str__(self):
        raise RuntimeError("str fails")


def objective(params, trial):
    mode = MODES[trial.number % len(MODES)]
    if mode == "badstr":
        raise BadStr()
    return {"bigint": 10**400, "bigmetric": {"value": 1.0, "m": 10**400},
            "floatraises": FloatRaises(), "metricfloatraises": {"value": 1.0, "m": FloatRaises()},
            "mixedkeys": {1: 2.0, "a": 3.0}, "badrepr": BadRepr(), "ok": params["x"]}[mode]
'''

UNREADABLE = {"bigint": "OverflowError", "bigmetric": "metric 'm'",
              "floatraises": "RuntimeError: no scalar", "metricfloatraises": "metric 'm'",
              "mixedkeys": "without a 'value' key", "badrepr": "of type BadRepr",
              "badstr": "BadStr: <BadStr object; str() raised RuntimeError>"}


@pytest.mark.parametrize("ranks", [None, 3])
def test_return_values_that_raise_when_read_are_failed_trials(tmp_path, run, ranks):
    """float() overflowing or raising, keys that do not sort, repr() or str() raising:
    failed trials with a message, never a crashed worker or a trial left running."""
    spec = write_spec(tmp_path, UNREADABLE_SPEC)
    path = str(tmp_path / "unreadable.h5")
    n = len(UNREADABLE) + 1
    res = run(ranks, [spec, "--max-trials", n, "--storage", path, "--progress-interval", 0])
    assert res.returncode == 0, res.describe()
    assert "internal error" not in res.stderr, res.describe()
    r = mpitune.load(path)
    assert r.complete and len(r) == n
    for i, (mode, fragment) in enumerate(UNREADABLE.items()):
        assert r["state"][i] == "failed", (mode, r["state"][i], r["error"][i])
        assert fragment in r["error"][i], (mode, r["error"][i])
    assert r["state"][n - 1] == "complete"


TRIAL_MISUSE_SPEC = '''
import threading
from mpitune import Real

space = {"x": Real(0.0, 1.0)}
MODES = ["number", "negnumber", "thread", "ok"]


def objective(params, trial):
    mode = MODES[trial.number % len(MODES)]
    if mode == "number":
        trial.number = 10**6
    if mode == "negnumber":
        trial.number = -1
    thread_errors = []
    if mode == "thread":  # reports from a second thread while the objective's thread does
        def report_in_thread():
            for step in range(200):
                try:
                    trial.report(step, 0.5)
                except RuntimeError as e:
                    thread_errors.append(str(e))

        thread = threading.Thread(target=report_in_thread)
        thread.start()
        for step in range(10):
            trial.report(step / 10, params["x"])  # below the first rung: no verdict to wait for
        thread.join()
    return {"value": params["x"], "thread_errors": len(thread_errors)}
'''


def test_objective_cannot_renumber_its_trial_or_report_from_a_thread(tmp_path, run):
    """Assigning trial.number fails that trial (recorded under its own number); reports
    from another thread raise RuntimeError there and never reach MPI."""
    spec = write_spec(tmp_path, TRIAL_MISUSE_SPEC)
    path = str(tmp_path / "misuse.h5")
    res = run(3, [spec, "--max-trials", 12, "--storage", path, "--pruner", "asha",
                  "--progress-interval", 0], timeout=40)
    assert res.returncode == 0, res.describe()
    r = mpitune.load(path)
    assert r.complete and len(r) == 12
    np.testing.assert_array_equal(r["number"], np.arange(12))
    for i in range(12):
        mode = ["number", "negnumber", "thread", "ok"][i % 4]
        if mode.endswith("number"):
            assert r["state"][i] == "failed", (i, r["error"][i])
            assert "trial.number is read-only" in r["error"][i], r["error"][i]
            assert f"trial {i}:" in r["error"][i].splitlines()[0]
        else:
            assert r["state"][i] == "complete", (i, r["error"][i])
            assert r["thread_errors"][i] == (200 if mode == "thread" else 0)
    curve_trials = set(r.curves["trial"].tolist())
    assert curve_trials == {i for i in range(12) if i % 4 == 2}  # the main thread's points
    assert set(r.curves["step"].tolist()) == {s / 10 for s in range(10)}
