"""Unit tests of mpitune.results: load() and the Results columns."""

from __future__ import annotations

import json

import numpy as np
import pytest

import mpitune
from mpitune.errors import StorageError
from mpitune.journal import JOURNAL_SUFFIX
from mpitune.results import load, results_from_table
from mpitune.snapshot import Meta, write_snapshot
from mpitune.space import Categorical, Integer, Real, Space
from mpitune.table import COMPLETE, FAILED, TrialTable

SPACE = Space({"x": Real(0.0, 1.0), "n": Integer(1, 4),
               "c": Categorical([1, "a", [1, 2], None]), "s": Categorical(["p", "q"]),
               "const": 7})


def meta(direction: str = "minimize") -> Meta:
    return Meta(space_json=SPACE.to_json(), settings_json=json.dumps({"max_trials": 9}),
                seed=5, direction=direction)


def table(units, values, states=None, metrics=None) -> TrialTable:
    t = TrialTable(SPACE.ndim)
    n = len(units)
    t.apply({"k": "A", "n0": 0, "u": np.asarray(units, dtype=float).tolist()})
    t.apply({"k": "S", "n": list(range(n)), "w": 2, "h": "h1", "g": "GPU-x"})
    t.apply({"k": "D", "n": list(range(n)), "s": states or [COMPLETE] * n,
             "v": list(values), "t0": [float(i) for i in range(n)],
             "t1": [i + 0.5 for i in range(n)], "m": metrics or {},
             "e": {str(i): f"err {i}" for i, s in enumerate(states or []) if s == FAILED}})
    return t


def unit_for(c_index: int, x: float = 0.5, n_index: int = 0, s_index: int = 0):
    return [x, (n_index + 0.5) / 4, (c_index + 0.5) / 4, (s_index + 0.5) / 2]


def test_results_columns():
    t = table([unit_for(0), unit_for(1, 0.25), unit_for(2, 0.75)], [3.0, 1.0, np.nan],
              states=[COMPLETE, COMPLETE, FAILED],
              metrics={"acc": [[0, 1], [0.5, 0.6]], "x": [[0], [9.0]],
                       "number": [[1], [4.0]]})
    r = results_from_table("p.h5", meta(), t)
    assert len(r) == 3
    assert r["number"].tolist() == [0, 1, 2]
    assert r["state"].tolist() == ["complete", "complete", "failed"]
    assert r["x"].tolist() == [0.5, 0.25, 0.75]
    assert r["n"].tolist() == [1, 1, 1]
    assert r["s"].tolist() == ["p", "p", "p"]
    assert r["acc"][:2].tolist() == [0.5, 0.6] and np.isnan(r["acc"][2])
    assert r["metric.x"][0] == 9.0  # a metric named like a parameter is renamed
    assert r["metric.number"][1] == 4.0  # ... and one named like a reserved column
    assert r["number"].dtype == np.int64
    assert r["host"].tolist() == ["h1"] * 3 and r["gpu"].tolist() == ["GPU-x"] * 3
    assert r["worker"].tolist() == [2, 2, 2]
    assert r["duration"].tolist() == [0.5, 0.5, 0.5]
    assert r["error"].tolist() == ["", "", "err 2"]
    assert r.settings == {"max_trials": 9} and r.seed == 5 and r.direction == "minimize"
    assert "3 trials" in repr(r) and "1 failed" in repr(r)


def test_best_minimize_and_maximize():
    units = [unit_for(1, 0.1), unit_for(1, 0.2), unit_for(1, 0.3)]
    r = results_from_table("p", meta(), table(units, [2.0, -1.0, 5.0]))
    assert r.best["number"] == 1 and r.best["value"] == -1.0
    assert r.best["params"]["x"] == 0.2 and r.best["params"]["const"] == 7
    r = results_from_table("p", meta("maximize"), table(units, [2.0, -1.0, 5.0]))
    assert r.best["number"] == 2 and r.best["value"] == 5.0
    failed = table(units, [np.nan] * 3, states=[FAILED] * 3)
    assert results_from_table("p", meta(), failed).best is None


def test_best_params_are_plain_python_values():
    r = results_from_table("p", meta(), table([unit_for(1, 0.1, n_index=3, s_index=1)],
                                              [0.0]))
    p = r.best["params"]
    assert type(p["x"]) is float and type(p["n"]) is int and type(p["s"]) is str
    assert (p["n"], p["s"]) == (4, "q")


@pytest.mark.parametrize("c_index, choice", [(0, 1), (1, "a"), (2, [1, 2]), (3, None)])
def test_bug_best_params_are_the_choices_the_objective_got(c_index, choice):
    """BUG (results.py, Results.best): for a Categorical whose choices are not all of one
    plain type (column_kind "json", e.g. [1, "a", [1, 2], None]) the column holds JSON text,
    and best copies it as is: best["params"]["c"] is '"a"' or '1' or '[1, 2]' instead of
    "a", 1, [1, 2] that the objective received. Fix: json.loads the value for categorical
    dimensions whose column_kind is "json" (param_columns documents the encoding)."""
    r = results_from_table("p", meta(), table([unit_for(c_index)], [0.0]))
    assert r.best["params"]["c"] == choice


def test_curve_of_one_trial():
    t = table([unit_for(0), unit_for(1)], [1.0, 2.0])
    t.apply({"k": "C", "n": [1, 0, 1], "st": [1, 1, 2], "v": [0.9, 0.8, 0.7],
             "t": [1.0, 2.0, 3.0]})
    r = results_from_table("p", meta(), t)
    steps, values = r.curve(1)
    assert steps.tolist() == [1.0, 2.0] and values.tolist() == [0.9, 0.7]
    assert r.curve(5)[0].tolist() == []


def test_load_reads_snapshot_plus_journal(tmp_path):
    path = str(tmp_path / "r.h5")
    t = table([unit_for(0)], [1.0])
    write_snapshot(path, meta(), t)
    with open(path + JOURNAL_SUFFIX, "w") as f:
        f.write(json.dumps({"k": "A", "n0": 1, "u": [unit_for(2)], "q": 1}) + "\n")
    r = mpitune.load(path)
    assert len(r) == 2 and r["state"].tolist() == ["complete", "running"]


def test_load_errors(tmp_path):
    with pytest.raises(StorageError, match="does not exist"):
        load(str(tmp_path / "missing.h5"))
    bad = tmp_path / "bad.h5"
    bad.write_text("nope")
    with pytest.raises(StorageError):
        load(str(bad))
