"""The master and worker loops in one process over LocalChannel (as session._serial wires
them), with a results file in a temporary directory: budgets, numbering, the results file,
and resuming trials that an earlier run left running."""

from __future__ import annotations

import math
import os
import signal
import time

import numpy as np
import pytest

import mpitune
from mpitune.channel import LocalChannel
from mpitune.gpu import Binding
from mpitune.journal import JOURNAL_SUFFIX
from mpitune.lock import LOCK_SUFFIX
from mpitune.master import Master
from mpitune.samplers import SobolSampler, make_sampler
from mpitune.settings import Settings
from mpitune.space import Categorical, Integer, Real, Space
from mpitune.spec import check_objective
from mpitune.store import Store
from mpitune.suggester import Suggester
from mpitune.worker import Worker

SPACE_DEF = {
    "x": Real(-2.0, 3.0),
    "lr": Real(1e-4, 1e-1, log=True),
    "n": Integer(1, 6),
    "act": Categorical(["relu", "tanh"]),
    "epochs": 2,
}
HOST = "test-host"


def settings(tmp_path, **kw) -> Settings:
    kw.setdefault("storage", str(tmp_path / "results.h5"))
    kw.setdefault("seed", 1234)
    kw.setdefault("progress_interval", 0)
    kw.setdefault("fsync", False)
    kw.setdefault("grace_period", 1.0)
    return Settings(**kw)


def search(objective, s: Settings, space_def=None, batch_size: int | None = None):
    """One serial search, wired as session._serial does; returns (status, code, store)."""
    space = Space(space_def or SPACE_DEF)
    s.validate()
    store = Store.open(s, space, 1)
    try:
        sampler = make_sampler(s.sampler)
        sampler.bind(space, store.meta.seed)
        suggester = Suggester(sampler, space, store.table, s.batch_size or batch_size or 1,
                              s.direction)
        mine, theirs = LocalChannel.pair(0, 1)
        worker = Worker(theirs, check_objective(objective, "test"), Binding(None, 0), HOST)
        worker.where = f"serial run on {HOST}"
        worker.start()
        master = Master(mine, [1], store, suggester, space, s, inline=worker)
        status, code = master.run()
        store.close(status)
    except BaseException:
        store.abandon()
        raise
    return status, code, store


class Recorder:
    """An objective that remembers its calls."""

    def __init__(self, fail_on=()) -> None:
        self.calls: list[tuple[int, dict]] = []
        self.fail_on = set(fail_on)

    @staticmethod
    def value(p) -> float:
        return (p["x"] - 1.0) ** 2 + math.log10(p["lr"]) + p["n"] + (p["act"] == "tanh")

    def __call__(self, params, trial):
        self.calls.append((trial.number, dict(params)))
        for epoch in range(1, params["epochs"] + 1):
            trial.report(epoch, self.value(params) + 1.0 / epoch)
        if trial.number in self.fail_on:
            raise RuntimeError(f"planned failure {trial.number}")
        return {"value": self.value(params), "double_x": 2 * params["x"]}


def check_params(r, i) -> dict:
    p = {name: r[name][i].item() for name in ("x", "lr", "n")}
    p["act"] = str(r["act"][i])
    assert -2.0 <= p["x"] <= 3.0 and 1e-4 <= p["lr"] <= 1e-1 and 1 <= p["n"] <= 6
    assert p["act"] in ("relu", "tanh")
    return p


@pytest.mark.parametrize("max_trials, batch", [(1, None), (23, None), (23, 4), (40, 64)])
def test_budget_exactly_met_and_numbers_once_each(tmp_path, max_trials, batch):
    s = settings(tmp_path, max_trials=max_trials, batch_size=batch)
    objective = Recorder()
    status, code, store = search(objective, s)
    assert (status, code) == ("complete", 0)
    numbers = [n for n, _ in objective.calls]
    assert sorted(numbers) == list(range(max_trials))
    assert store.table.n == max_trials and store.table.n_finished == max_trials
    assert not os.path.exists(s.storage + LOCK_SUFFIX)
    assert not os.path.exists(s.storage + JOURNAL_SUFFIX)

    r = mpitune.load(s.storage)
    assert len(r) == max_trials and r.complete
    assert r["number"].tolist() == list(range(max_trials))
    assert set(r["state"].tolist()) == {"complete"}
    calls = dict(objective.calls)
    for i in range(max_trials):
        p = check_params(r, i)
        given = calls[i]
        assert given["epochs"] == 2  # constants reach the objective
        assert {k: given[k] for k in p} == pytest.approx(p)
        assert r["value"][i] == pytest.approx(Recorder.value(given))
        assert r["double_x"][i] == pytest.approx(2 * given["x"])
    assert set(r["host"].tolist()) == {HOST} and set(r["gpu"].tolist()) == {""}
    assert set(r["worker"].tolist()) == {1}
    assert np.all(r["duration"] >= 0) and set(r["error"].tolist()) == {""}
    assert len(r.curves["trial"]) == 2 * max_trials
    steps, values = r.curve(0)
    assert steps.tolist() == [1.0, 2.0]
    assert values[1] == pytest.approx(Recorder.value(calls[0]) + 0.5)
    best = r.best
    assert best["value"] == pytest.approx(min(Recorder.value(p) for p in calls.values()))
    assert best["params"]["epochs"] == 2


def test_failures_count_toward_the_budget(tmp_path):
    s = settings(tmp_path, max_trials=10)
    objective = Recorder(fail_on={2, 7})
    status, code, _ = search(objective, s)
    assert (status, code) == ("complete", 0)
    r = mpitune.load(s.storage)
    assert len(r) == 10
    assert [i for i in range(10) if r["state"][i] == "failed"] == [2, 7]
    assert r["error"][2].startswith(f"serial run on {HOST}, trial 2: RuntimeError: planned")
    assert math.isnan(r["value"][7])
    assert r["error"][3] == ""


def test_zero_trials(tmp_path):
    s = settings(tmp_path, max_trials=0)
    objective = Recorder()
    status, code, _ = search(objective, s)
    assert (status, code) == ("complete", 0) and objective.calls == []
    assert len(mpitune.load(s.storage)) == 0


def test_maximize_best(tmp_path):
    s = settings(tmp_path, max_trials=12, direction="maximize")
    objective = Recorder()
    search(objective, s)
    r = mpitune.load(s.storage)
    assert r.best["value"] == pytest.approx(max(Recorder.value(p) for _, p in objective.calls))


def test_time_limit_stops_and_a_rerun_continues(tmp_path):
    s = settings(tmp_path, max_trials=50, max_time=0.3)

    def slow(params, trial):
        time.sleep(0.02)
        return params["x"]

    t0 = time.monotonic()
    status, code, store = search(slow, s)
    assert time.monotonic() - t0 < 3.0
    assert code == 75 and "time limit" in status
    done = store.table.n_finished
    assert 0 < done < 50
    assert not os.path.exists(s.storage + LOCK_SUFFIX)
    status, code, _ = search(lambda p, t: p["x"], s.replace(max_time=None))
    assert (status, code) == ("complete", 0)
    r = mpitune.load(s.storage)
    assert len(r) == 50 and set(r["state"].tolist()) == {"complete"}


def test_signal_drains_then_resume_completes(tmp_path):
    s = settings(tmp_path, max_trials=30, grace_period=5.0)
    calls = []

    def objective(params, trial):
        calls.append(trial.number)
        if trial.number == 4:
            os.kill(os.getpid(), signal.SIGUSR1)  # as from "scancel --signal=USR1"
            time.sleep(0.01)
        return params["x"]

    previous = signal.getsignal(signal.SIGUSR1)
    status, code, store = search(objective, s)
    assert signal.getsignal(signal.SIGUSR1) == previous  # handlers restored
    assert code == 75 and "SIGUSR1" in status
    assert store.table.n_finished < 30
    r = mpitune.load(s.storage)
    assert r["state"][4] == "complete"  # the running trial was allowed to finish
    assert not (r["state"] == "running").any()
    status, code, _ = search(lambda p, t: p["x"], s)
    assert (status, code) == ("complete", 0)
    r = mpitune.load(s.storage)
    assert (r["state"] == "complete").sum() == 30
    assert len(r) == len(set(r["number"].tolist()))


def test_trial_timeout_in_the_loop(tmp_path):
    s = settings(tmp_path, max_trials=3)
    if "trial_timeout" not in Settings.__dataclass_fields__:
        pytest.skip("no trial_timeout in this version")
    s = s.replace(trial_timeout=0.1)

    def objective(params, trial):
        if trial.number == 1:
            time.sleep(10)
        return params["x"]

    t0 = time.monotonic()
    status, code, _ = search(objective, s)
    assert time.monotonic() - t0 < 3.0
    assert (status, code) == ("complete", 0)
    r = mpitune.load(s.storage)
    assert r["state"].tolist() == ["complete", "timeout", "complete"]
    assert "trial_timeout" in r["error"][1]


def leave_trials_running(s: Settings, space: Space, n: int, finished: int) -> np.ndarray:
    """Simulate a run that was killed: ``n`` trials handed out, ``finished`` of them done."""
    store = Store.open(s, space, 2)
    unit = np.random.default_rng(9).random((n, space.ndim))
    store.record({"k": "A", "n0": 0, "u": unit.tolist()})
    store.record({"k": "S", "n": list(range(n)), "w": 1, "h": "old-host", "g": ""})
    store.record({"k": "D", "n": list(range(finished)), "s": [1] * finished,
                  "v": [100.0 + i for i in range(finished)], "t0": [0.0] * finished,
                  "t1": [1.0] * finished, "m": {}, "e": {}})
    store.abandon()  # the journal stays; the file still says "running" for the rest
    return unit


def test_resume_reruns_running_trials_with_the_same_numbers(tmp_path):
    s = settings(tmp_path, max_trials=8)
    space = Space(SPACE_DEF)
    unit = leave_trials_running(s, space, n=5, finished=2)
    objective = Recorder()
    status, code, _ = search(objective, s)
    assert (status, code) == ("complete", 0)
    numbers = [n for n, _ in objective.calls]
    assert numbers[:3] == [2, 3, 4]  # re-runs first
    assert sorted(numbers) == [2, 3, 4, 5, 6, 7]  # 0 and 1 were finished: not run again
    expected_rows = space.rows(unit)
    for number, params in objective.calls[:3]:
        assert tuple(params[k] for k in space.names) == expected_rows[number]

    r = mpitune.load(s.storage)
    assert len(r) == 8 and set(r["state"].tolist()) == {"complete"}
    assert r["value"][:2].tolist() == [100.0, 101.0]  # the old results are kept
    np.testing.assert_array_equal(r["host"][:2], ["old-host", "old-host"])
    assert set(r["host"][2:].tolist()) == {HOST}
    runs = r.settings  # settings of the last run
    assert runs["max_trials"] == 8


def test_resume_with_fewer_trials_left_than_to_rerun(tmp_path):
    s = settings(tmp_path, max_trials=4)
    leave_trials_running(s, Space(SPACE_DEF), n=6, finished=2)
    objective = Recorder()
    status, _, _ = search(objective, s)
    assert status == "complete"
    assert [n for n, _ in objective.calls] == [2, 3]
    r = mpitune.load(s.storage)
    assert r["state"].tolist() == ["complete"] * 4 + ["interrupted"] * 2


@pytest.mark.parametrize("sampler", ["sobol", "random"])
def test_resumed_search_proposes_what_the_uninterrupted_one_would(tmp_path, sampler):
    whole = settings(tmp_path, max_trials=20, sampler=sampler,
                     storage=str(tmp_path / "whole.h5"))
    search(Recorder(), whole, batch_size=3)
    parts = settings(tmp_path, max_trials=7, sampler=sampler,
                     storage=str(tmp_path / "parts.h5"))
    search(Recorder(), parts, batch_size=3)
    search(Recorder(), parts.replace(max_trials=20), batch_size=3)
    a, b = mpitune.load(whole.storage), mpitune.load(parts.storage)
    assert len(a) == len(b) == 20
    for name in ("x", "lr", "n", "act"):
        np.testing.assert_array_equal(a[name], b[name])


def test_bug_one_sampler_object_for_two_searches(tmp_path):
    """BUG (samplers/_qmc.py, SobolSampler.suggest): a Sampler object given as the
    ``sampler`` setting is used as is (make_sampler returns it), so a second search with the
    same object (two mpitune.run calls in one script or notebook) starts at n_total=0 with
    an engine that already moved: ``reset(); fast_forward(0)`` raises OverflowError from
    scipy and the search dies. Fix: skip fast_forward when n_total == 0 (or reset by
    re-creating the engine)."""
    sampler = SobolSampler(seed=5)
    first = settings(tmp_path, max_trials=6, sampler=sampler,
                     storage=str(tmp_path / "first.h5"))
    search(Recorder(), first)
    second = first.replace(storage=str(tmp_path / "second.h5"))
    status, code, _ = search(Recorder(), second)
    assert (status, code) == ("complete", 0)
    a, b = mpitune.load(first.storage), mpitune.load(second.storage)
    np.testing.assert_array_equal(a["x"], b["x"])  # same seed, same proposals


def test_bug_failure_message_with_undecodable_file_name(tmp_path):
    """BUG (snapshot.py write_snapshot / trial.py run_trial): an objective whose exception
    message holds a file name that is not UTF-8 (os.listdir/os.fsdecode give a surrogate
    escape such as '\\udcff'; ``raise ValueError(f"cannot parse {path}")``) yields an error
    text that h5py cannot store: the final snapshot raises
    UnicodeEncodeError, the search dies, and since the text stays in the journal every
    resume dies the same way. Fix: store error texts with errors='backslashreplace'."""
    bad_name = os.fsdecode(b"/data/input-\xff.csv")

    def objective(params, trial):
        if trial.number == 1:
            raise ValueError(f"cannot parse {bad_name}")
        return params["x"]

    s = settings(tmp_path, max_trials=3)
    status, code, _ = search(objective, s)
    assert (status, code) == ("complete", 0)
    r = mpitune.load(s.storage)
    assert r["state"].tolist() == ["complete", "failed", "complete"]
    assert "input-" in r["error"][1]


def test_failure_message_with_nul_is_stored_and_the_search_resumes(tmp_path):
    """A NUL in an exception message (text decoded from a binary header) made every
    snapshot fail, so the search died and no resume could get past the journal."""
    header = b"A\x00B".decode("latin-1")

    def objective(params, trial):
        if trial.number == 1:
            raise ValueError(f"unexpected header {header}")
        return params["x"]

    s = settings(tmp_path, max_trials=3)
    assert search(objective, s)[:2] == ("complete", 0)
    assert search(objective, s.replace(max_trials=5))[:2] == ("complete", 0)
    r = mpitune.load(s.storage)
    assert r["state"].tolist() == ["complete", "failed"] + ["complete"] * 3
    assert "ValueError: unexpected header A\\x00B\n" in r["error"][1]
