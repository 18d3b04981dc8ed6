"""End to end: a whole search under mpiexec (1, 2, 5 and 8 ranks) and serially.

Checks the results file with plain h5py (layout, dtypes, attributes) and with
``mpitune.load``: the budget is reached exactly, every trial number is recorded once,
parameters lie in the space with the right types, constants reach the objective, metrics
and learning curves are stored, and the sampler stream does not depend on the rank count.
"""

from __future__ import annotations

import json
import math
import os
import socket

import h5py
import numpy as np
import pytest
from conftest import error_lines, write_spec

import mpitune

SPEC = '''
import math
import mpitune
from mpitune import Categorical, Constant, Integer, Real

space = {
    "x": Real(-2.0, 3.0),
    "lr": Real(1e-4, 1e-1, log=True),
    "n": Integer(2, 20, step=3),
    "m": Integer(1, 1000, log=True),
    "act": Categorical(["relu", "tanh", "gelu"]),
    "k": Categorical([1, 2, 4]),
    "flag": Categorical([True, False]),
    "epochs": 3,
    "tag": Constant("abc"),
    "opts": {"a": [1, 2]},
}
REPORTS = 3
ACTS = ["relu", "tanh", "gelu"]


def value_of(p):
    return (p["x"] - 0.5) ** 2 + math.log10(p["lr"]) ** 2 / 10 + p["n"] / 100 + p["m"] / 1e4 \\
        + ACTS.index(p["act"]) / 10 + p["k"] / 50 + (0.3 if p["flag"] else 0.0)


def objective(params, trial):
    types_ok = (type(params["x"]) is float and type(params["lr"]) is float
                and type(params["n"]) is int and type(params["m"]) is int
                and type(params["act"]) is str and type(params["k"]) is int
                and type(params["flag"]) is bool)
    constants_ok = (params["epochs"] == 3 and params["tag"] == "abc"
                    and params["opts"] == {"a": [1, 2]})
    assert trial.params is params or trial.params == params
    for step in range(REPORTS):
        trial.report(step, params["x"] + step)
    return {"value": value_of(params), "x_seen": params["x"], "lr_seen": params["lr"],
            "n_seen": params["n"], "m_seen": params["m"], "act_seen": ACTS.index(params["act"]),
            "k_seen": params["k"], "flag_seen": float(params["flag"]),
            "types_ok": float(types_ok), "constants_ok": float(constants_ok),
            "seen_number": trial.number, "seen_rank": trial.rank}
'''


def value_of(p: dict) -> float:
    acts = ["relu", "tanh", "gelu"]
    return ((p["x"] - 0.5) ** 2 + math.log10(p["lr"]) ** 2 / 10 + p["n"] / 100 + p["m"] / 1e4
            + acts.index(p["act"]) / 10 + p["k"] / 50 + (0.3 if p["flag"] else 0.0))


def check_file(path: str, n_trials: int, ranks: int, reports: int = 3) -> None:
    """Assert everything the search should have written, reading the file with plain h5py
    and with mpitune.load."""
    assert not os.path.exists(path + ".journal"), "journal left after a clean run"
    assert not os.path.exists(path + ".lock"), "lock left after a clean run"
    leftovers = [f for f in os.listdir(os.path.dirname(path)) if ".tmp-" in f]
    assert not leftovers, f"temporary snapshot files left: {leftovers}"

    with h5py.File(path, "r") as f:
        a = f.attrs
        assert a["format"] == "mpitune-results"
        assert int(a["format_version"]) == 1
        assert bool(a["complete"]) is True
        assert a["direction"] == "minimize"
        space = json.loads(a["space"])
        names = [d["name"] for d in space["dimensions"]]
        assert names == ["x", "lr", "n", "m", "act", "k", "flag"]
        assert space["constants"] == {"epochs": 3, "tag": "abc", "opts": {"a": [1, 2]}}
        settings = json.loads(a["settings"])
        assert settings["max_trials"] == n_trials
        runs = json.loads(a["runs"])
        assert len(runs) == 1 and runs[0]["status"] == "complete"
        assert runs[0]["ranks"] == ranks
        assert int(a["journal_seq"]) >= 1

        t = f["trials"]
        number = t["number"][...]
        assert number.dtype == np.int64
        np.testing.assert_array_equal(number, np.arange(n_trials))
        state = t["state"][...]
        assert state.dtype.kind == "S", state.dtype
        assert set(state.tolist()) == {b"complete"}
        value = t["value"][...]
        assert value.shape == (n_trials,) and np.isfinite(value).all()
        assert t["unit"].shape == (n_trials, 7)
        unit = t["unit"][...]
        assert ((unit >= 0) & (unit <= 1)).all()
        p = {name: t["params"][name][...] for name in names}
        m = {name: t["metrics"][name][...] for name in t["metrics"]}

        assert p["x"].dtype == np.float64 and p["lr"].dtype == np.float64
        assert p["n"].dtype == np.int64 and p["m"].dtype == np.int64
        assert p["k"].dtype == np.int64 and p["flag"].dtype == np.bool_
        assert ((-2.0 <= p["x"]) & (p["x"] <= 3.0)).all()
        assert ((1e-4 <= p["lr"]) & (p["lr"] <= 1e-1)).all()
        assert set(p["n"].tolist()) <= {2, 5, 8, 11, 14, 17, 20}
        assert ((1 <= p["m"]) & (p["m"] <= 1000)).all()
        acts = [x.decode() if isinstance(x, bytes) else x for x in p["act"].tolist()]
        assert set(acts) <= {"relu", "tanh", "gelu"}
        assert set(p["k"].tolist()) <= {1, 2, 4}

        # what the objective saw is what the file says, exactly
        np.testing.assert_array_equal(m["x_seen"], p["x"])
        np.testing.assert_array_equal(m["lr_seen"], p["lr"])
        np.testing.assert_array_equal(m["n_seen"], p["n"])
        np.testing.assert_array_equal(m["m_seen"], p["m"])
        np.testing.assert_array_equal(m["k_seen"], p["k"])
        np.testing.assert_array_equal(m["flag_seen"], p["flag"].astype(float))
        np.testing.assert_array_equal(
            m["act_seen"], [["relu", "tanh", "gelu"].index(x) for x in acts])
        np.testing.assert_array_equal(m["types_ok"], 1.0)
        np.testing.assert_array_equal(m["constants_ok"], 1.0)
        np.testing.assert_array_equal(m["seen_number"], number)
        worker = t["worker"][...]
        np.testing.assert_array_equal(m["seen_rank"], worker)
        if ranks > 1:
            assert set(worker.tolist()) <= set(range(1, ranks))
        for i in range(n_trials):
            row = {k: v[i].item() for k, v in p.items() if k != "act"}
            row["act"] = acts[i]
            assert value[i] == pytest.approx(value_of(row), rel=1e-12, abs=1e-12)
        hosts = {h.decode() for h in t["host"][...].tolist()}
        assert hosts == {socket.gethostname()}
        t0, t1 = t["t_start"][...], t["t_end"][...]
        assert np.isfinite(t0).all() and (t1 >= t0).all()
        errors = t["error"].asstr()[...]
        assert all(e == "" for e in errors)

        c = f["curves"]
        assert len(c["trial"]) == n_trials * reports
        for name in ("step", "value", "time"):
            assert len(c[name]) == n_trials * reports
        ct, cs, cv = c["trial"][...], c["step"][...], c["value"][...]
        for i in range(n_trials):
            mask = ct == i
            assert sorted(cs[mask].tolist()) == list(range(reports)), i
            np.testing.assert_allclose(np.sort(cv[mask]), p["x"][i] + np.arange(reports))

    r = mpitune.load(path)
    assert len(r) == n_trials
    assert r.complete is True
    np.testing.assert_array_equal(r["number"], np.arange(n_trials))
    assert set(r["state"].tolist()) == {"complete"}
    assert r["n"].dtype == np.int64 and r["m"].dtype == np.int64
    assert set(r["act"].tolist()) <= {"relu", "tanh", "gelu"}
    np.testing.assert_array_equal(r["x"], r["x_seen"])
    np.testing.assert_array_equal(r["duration"], r["t_end"] - r["t_start"])
    assert len(r.curves["trial"]) == n_trials * reports
    best = r.best
    assert best is not None
    assert best["value"] == pytest.approx(float(np.min(r["value"])))
    assert best["number"] == int(np.argmin(r["value"]))
    assert best["params"]["epochs"] == 3 and best["params"]["tag"] == "abc"
    steps, values = r.curve(best["number"])
    assert sorted(steps.tolist()) == [0.0, 1.0, 2.0]


@pytest.mark.parametrize("ranks, n_trials, sampler", [
    (None, 20, "sobol"),    # serial: python -m mpitune spec.py
    (1, 20, "random"),      # mpiexec -n 1: also the serial path
    (2, 30, "sobol"),
    (5, 40, "random"),
])
def test_search_fills_budget_exactly(tmp_path, run, ranks, n_trials, sampler):
    spec = write_spec(tmp_path, SPEC)
    path = str(tmp_path / "out.h5")
    res = run(ranks, [spec, "--max-trials", n_trials, "--storage", path, "--seed", 7,
                      "--sampler", sampler, "--progress-interval", 0])
    assert res.returncode == 0, res.describe()
    assert res.stderr.strip() == "", res.describe()
    check_file(path, n_trials, ranks or 1)
    assert "complete" in res.stdout


def test_settings_from_spec_file(tmp_path, run):
    """Settings defined in the spec apply; command-line options override them."""
    spec = write_spec(tmp_path, SPEC + '\nmax_trials = 12\nstorage = "from_spec.h5"\n'
                                       'seed = 3\nsampler = "random"\n')
    res = run(3, [spec, "--progress-interval", 0])
    assert res.returncode == 0, res.describe()
    r = mpitune.load(str(tmp_path / "from_spec.h5"))
    assert len(r) == 12 and r.seed == 3
    assert r.settings["sampler"] == "random"
    res = run(3, [spec, "--max-trials", 15, "--storage", "override.h5"])
    assert res.returncode == 0, res.describe()
    assert len(mpitune.load(str(tmp_path / "override.h5"))) == 15


def test_same_seed_same_trials_whatever_the_rank_count(tmp_path, run):
    """Sobol's stream is counter-based: trial i gets the same parameters with 1 or 4
    workers (a model-based sampler depends on which results are in when it is asked)."""
    spec = write_spec(tmp_path, SPEC)
    for ranks, name in ((None, "serial.h5"), (5, "five.h5")):
        res = run(ranks, [spec, "--max-trials", 24, "--storage", name, "--seed", 11,
                          "--sampler", "sobol"])
        assert res.returncode == 0, res.describe()
    a, b = mpitune.load(str(tmp_path / "serial.h5")), mpitune.load(str(tmp_path / "five.h5"))
    for name in ("x", "lr", "n", "m", "act", "k", "flag", "value"):
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_eight_ranks_instant_objective(tmp_path, run):
    spec = write_spec(tmp_path, '''
        from mpitune import Integer, Real
        space = {"x": Real(0.0, 1.0), "i": Integer(0, 9)}
        def objective(params, trial):
            return params["x"] + params["i"]
    ''')
    path = str(tmp_path / "eight.h5")
    res = run(8, [spec, "--max-trials", 3000, "--storage", path, "--progress-interval", 0],
              timeout=90)
    assert res.returncode == 0, res.describe()
    with h5py.File(path, "r") as f:
        assert bool(f.attrs["complete"])
        np.testing.assert_array_equal(f["trials/number"][...], np.arange(3000))
        assert set(f["trials/state"][...].tolist()) == {b"complete"}
        value = f["trials/value"][...]
        np.testing.assert_allclose(value, f["trials/params/x"][...] + f["trials/params/i"][...])
        workers = set(f["trials/worker"][...].tolist())
        assert workers <= set(range(1, 8))
        assert len(f["curves/trial"]) == 0
    assert not os.path.exists(path + ".journal") and not os.path.exists(path + ".lock")


def test_zero_budget_and_help(tmp_path, run):
    spec = write_spec(tmp_path, SPEC)
    res = run(3, [spec, "--max-trials", 0, "--storage", "zero.h5"])
    assert res.returncode == 0, res.describe()
    r = mpitune.load(str(tmp_path / "zero.h5"))
    assert len(r) == 0 and r.complete and r.best is None

    res = run(2, [spec, "--help"])
    assert res.returncode == 0, res.describe()
    assert res.stdout.count("usage:") == 1, res.describe()  # rank 0 only
    for flag in ("--max-trials", "--storage", "--seed", "--sampler", "--max-time",
                 "--grace-period", "--progress-interval", "--direction"):
        assert flag in res.stdout
    assert not os.path.exists(tmp_path / "results.h5")

    res = run(None, ["--help"])  # without a spec file too
    assert res.returncode == 0 and "--max-trials" in res.stdout, res.describe()
    res = run(2, [])  # no spec at all: one line, exit 2
    assert res.returncode == 2, res.describe()
    assert len(error_lines(res.stderr)) == 1 and "spec" in error_lines(res.stderr)[0]


def test_more_workers_than_trials(tmp_path, run):
    spec = write_spec(tmp_path, SPEC)
    res = run(6, [spec, "--max-trials", 3, "--storage", "few.h5"])
    assert res.returncode == 0, res.describe()
    check_file(str(tmp_path / "few.h5"), 3, 6)


def test_any_json_choices_and_metric_name_clash(tmp_path, run):
    """Categorical choices of mixed JSON kinds reach the objective as the values themselves
    and are stored as JSON text; a metric named like a parameter is kept as metric.NAME."""
    spec = write_spec(tmp_path, '''
        from mpitune import Categorical, Real
        CHOICES = [None, 1, "one", [1, 2], {"a": 1}, 2.5, True]
        space = {"x": Real(0.0, 1.0), "j": Categorical(CHOICES), "f": Categorical([0.5, 1.5]),
                 "b": Categorical([False, True])}
        def objective(params, trial):
            index = [i for i, c in enumerate(CHOICES)
                     if type(c) is type(params["j"]) and c == params["j"]]
            assert len(index) == 1, params["j"]
            assert type(params["f"]) is float and type(params["b"]) is bool
            return {"value": params["x"], "x": 10 * params["x"], "index": index[0]}
    ''')
    path = str(tmp_path / "json.h5")
    res = run(3, [spec, "--max-trials", 40, "--storage", path])
    assert res.returncode == 0, res.describe()
    choices = [None, 1, "one", [1, 2], {"a": 1}, 2.5, True]
    with h5py.File(path, "r") as f:
        j = f["trials/params/j"].asstr()[...]
        assert f["trials/params/f"].dtype == np.float64
        assert f["trials/params/b"].dtype == np.bool_
        index = f["trials/metrics/index"][...]
        np.testing.assert_allclose(f["trials/metrics/x"][...], 10 * f["trials/params/x"][...])
    for text, i in zip(j, index):
        assert json.loads(text) == choices[int(i)]
    assert len(set(index.tolist())) >= 5
    r = mpitune.load(path)
    assert set(r["state"].tolist()) == {"complete"}
    np.testing.assert_allclose(r["metric.x"], 10 * r["x"])


class ConstantsOnlyBug(AssertionError):
    pass


@pytest.mark.parametrize("ranks", [3, None])
def test_space_of_constants_only(tmp_path, run, ranks):
    """A space without dimensions (every trial runs the same fixed configuration, e.g. to
    measure noise) is accepted by Space and the samplers; the search should just run."""
    spec = write_spec(tmp_path, '''
        space = {"a": 1, "b": "two"}
        def objective(params, trial):
            assert params == {"a": 1, "b": "two"}
            return params["a"] + trial.number
    ''')
    path = str(tmp_path / "const.h5")
    res = run(ranks, [spec, "--max-trials", 5, "--storage", path], timeout=30)
    problems = []
    if res.returncode != 0:
        problems.append(f"exit status {res.returncode}: "
                        f"{(error_lines(res.stderr) or res.stderr.splitlines()[-1:])}")
    try:
        r = mpitune.load(path)
    except mpitune.StorageError as e:
        problems.append(f"load() after that run: {e}")
    if problems:
        raise ConstantsOnlyBug("; ".join(problems))
    assert len(r) == 5 and r.complete
    np.testing.assert_array_equal(r["value"], 1 + np.arange(5))


@pytest.mark.parametrize("ranks", [None, 2])
def test_objective_may_hand_spec_functions_to_spawned_processes(tmp_path, run, ranks):
    """A process pool with the spawn start method (forkserver is the default from Python
    3.14 on Linux) imports the spec by its module name to unpickle its functions."""
    spec = write_spec(tmp_path, """
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        from mpitune import Real

        space = {"x": Real(-1.0, 1.0)}


        def square(v):
            return v * v


        def objective(params):
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(1, mp_context=context) as pool:
                return pool.submit(square, params["x"]).result(timeout=30)
        """, name="pool_spec.py")
    res = run(ranks, [spec, "--max-trials", 2, "--progress-interval", 0], timeout=90)
    assert res.returncode == 0, res.describe()
    r = mpitune.load(str(tmp_path / "results.h5"))
    assert (r["state"] == "complete").all(), r["error"]
    np.testing.assert_array_equal(r["value"], r["x"] ** 2)


@pytest.mark.parametrize("ranks", [2, None])
def test_objective_changing_list_and_dict_constants_changes_its_own_copy(tmp_path, run,
                                                                          ranks):
    """Constants that are lists or dicts (plain or Constant, nested too) reach every trial
    as given, even when earlier trials on the same worker changed theirs in place (e.g. by
    appending layer sizes); the space stored in the results file is unchanged."""
    spec = write_spec(tmp_path, '''
        from mpitune import Constant, Real
        space = {"x": Real(0.0, 1.0), "hidden": [64, 64], "opts": Constant({"wd": [0.1]}),
                 "pair": ([1], 2)}
        def objective(params, trial):
            seen = [params["hidden"], params["opts"], params["pair"]]
            assert seen == [[64, 64], {"wd": [0.1]}, ([1], 2)], seen
            params["hidden"].append(8)
            params["opts"]["wd"].append(1)
            params["pair"][0].append(3)
            return params["x"]
    ''')
    path = str(tmp_path / "mutable.h5")
    res = run(ranks, [spec, "--max-trials", 8, "--storage", path, "--progress-interval", 0])
    assert res.returncode == 0, res.describe()
    r = mpitune.load(path)
    assert r["error"].tolist() == [""] * 8
    assert len(r) == 8 and (r["state"] == "complete").all()
    assert r.space.constants == {"hidden": [64, 64], "opts": {"wd": [0.1]}, "pair": [[1], 2]}
