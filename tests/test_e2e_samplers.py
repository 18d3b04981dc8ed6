"""End to end under mpiexec: every sampler runs a search to its budget; conditional
parameters reach the objective only when active and are stored as missing; explicit
configurations run first; a grid stops when it is used up, runs each configuration the
results file lacks once after trials of another sampler, and counts explicit configurations
on the grid as its points; bad input is refused before the results file is touched."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import error_lines, run_mpi, write_spec

import mpitune
from mpitune.samplers import SAMPLERS

CONDITIONAL = '''
from mpitune import Categorical, Integer, Real

space = {
    "opt": Categorical(["sgd", "adam", "rms"]),
    "momentum": Real(0.0, 0.99, when={"opt": "sgd"}),
    "nesterov": Categorical([True, False], when={"opt": "sgd"}),
    "beta": Real(0.8, 0.999, when={"opt": ["adam", "rms"]}),
    "layers": Integer(1, 4),
    "width": Integer(8, 64, log=True, when={"opt": "adam"}),
    "lr": Real(1e-4, 1.0, log=True),
    "epochs": 2,
}
EXPECTED = {"sgd": {"momentum", "nesterov"}, "adam": {"beta", "width"}, "rms": {"beta"}}


def objective(params, trial):
    keys = set(params) - {"opt", "layers", "lr", "epochs"}
    if keys != EXPECTED[params["opt"]]:
        raise RuntimeError(f"wrong parameters for {params['opt']}: {sorted(keys)}")
    value = abs(params["lr"] - 0.01) + params["layers"] / 10
    if params["opt"] == "sgd":
        value += abs(params["momentum"] - 0.9) + (0.0 if params["nesterov"] else 0.1)
    else:
        value += 1.0 - params["beta"] + params.get("width", 0) / 1000
    return value
'''


@pytest.mark.parametrize("sampler", ["auto", "tpe", "gp", "cmaes", "sobol", "random", "lhs"])
def test_conditional_space_with_every_sampler(tmp_path, run, sampler):
    if sampler not in SAMPLERS:
        pytest.skip(f"sampler {sampler} is not registered")
    spec = write_spec(tmp_path, CONDITIONAL)
    res = run(3, [spec, "--max-trials", 40, "--sampler", sampler, "--seed", 5,
                  "--progress-interval", 0])
    assert res.returncode == 0, res.describe()
    r = mpitune.load(str(tmp_path / "results.h5"))
    assert len(r) == 40 and (r["state"] == "complete").all(), r.trials["error"]
    opt = r["opt"]
    assert set(opt) == {"sgd", "adam", "rms"}
    sgd, adam = opt == "sgd", opt == "adam"
    assert np.isnan(r["momentum"][~sgd]).all() and not np.isnan(r["momentum"][sgd]).any()
    assert np.isnan(r["beta"][sgd]).all() and not np.isnan(r["beta"][~sgd]).any()
    assert np.isnan(r["nesterov"][~sgd]).all()  # a conditional bool column is float64
    width = r["width"]
    assert np.isnan(width[~adam]).all()
    assert np.all(width[adam] == np.round(width[adam])) and np.all(width[adam] >= 8)
    first_sgd = r.params(int(np.flatnonzero(sgd)[0]))
    assert set(first_sgd) == {"opt", "momentum", "nesterov", "layers", "lr", "epochs"}
    assert type(first_sgd["nesterov"]) is bool and type(first_sgd["layers"]) is int
    if adam.any():
        assert type(r.params(int(np.flatnonzero(adam)[0]))["width"]) is int
    with h5py.File(tmp_path / "results.h5", "r") as f:  # missing in the file itself
        unit = f["trials/unit"][...]
        assert np.isnan(unit[~sgd, 1]).all() and not np.isnan(unit[sgd, 1]).any()
        assert f["trials/params/momentum"].dtype == np.float64
        assert f["trials/params/width"].dtype == np.float64
        space = json.loads(f.attrs["space"])
        when = {d["name"]: d.get("when") for d in space["dimensions"]}
        assert when["momentum"] == {"opt": ["sgd"]} and when["beta"] == {"opt": ["adam", "rms"]}


def test_conditional_space_resumes(tmp_path, run):
    spec = write_spec(tmp_path, CONDITIONAL)
    res = run(3, [spec, "--max-trials", 15, "--seed", 2])
    assert res.returncode == 0, res.describe()
    res = run(3, [spec, "--max-trials", 30, "--seed", 2])
    assert res.returncode == 0, res.describe()
    r = mpitune.load(str(tmp_path / "results.h5"))
    assert len(r) == 30 and (r["state"] == "complete").all()


CONFIGS_SPEC = '''
from mpitune import Categorical, Integer, Real

space = {"x": Real(-5.0, 5.0), "n": Integer(0, 10, step=2), "c": Categorical(["a", "b"]),
         "lr": Real(1e-5, 1.0, log=True), "k": 7}
configs = [{"x": 0.1, "n": 4, "c": "b", "lr": 1e-3},
           {"x": -5.0, "n": 10, "c": "a", "k": 7, "lr": 1.0},
           {"x": 7.77e-6, "n": 0, "c": "a", "lr": 3e-4}]


def objective(params):
    return (params["x"] - 1) ** 2 + params["n"] + (params["c"] == "a") + params["lr"]
'''


def configs_value(x, n, c, lr):
    return (x - 1) ** 2 + n + (c == "a") + lr


def test_explicit_configs_run_first(tmp_path, run):
    spec = write_spec(tmp_path, CONFIGS_SPEC)
    res = run(3, [spec, "--max-trials", 12, "--progress-interval", 0])
    assert res.returncode == 0, res.describe()
    r = mpitune.load(str(tmp_path / "results.h5"))
    assert len(r) == 12
    # exactly as written (through the unit cube 0.1 came back 0.10000000000000053 and 1e-3
    # on the log scale 0.0010000000000000002), to the objective and in the file
    for i, want in enumerate([(0.1, 4, "b", 1e-3), (-5.0, 10, "a", 1.0),
                              (7.77e-6, 0, "a", 3e-4)]):
        assert (r["x"][i], r["n"][i], r["c"][i], r["lr"][i]) == want
        assert r["value"][i] == configs_value(*want)
    # given on the command line as JSON, they replace the spec's
    res = run(None, [spec, "--max-trials", 3, "--storage", "cli.h5",
                     "--configs", '[{"x": 2.3, "n": 6, "c": "a", "lr": 0.01}]'])
    assert res.returncode == 0, res.describe()
    r = mpitune.load(str(tmp_path / "cli.h5"))
    assert (r["x"][0], r["n"][0], r["c"][0], r["lr"][0]) == (2.3, 6, "a", 0.01)
    assert r["value"][0] == configs_value(2.3, 6, "a", 0.01)


NUMPY_CONFIGS_SPEC = """
import numpy as np
from mpitune import Categorical, Integer, Real

space = {"x": Real(-1.0, 1.0), "n": Integer(1, 4), "k": Categorical([1, 2, 4]),
         "w": Categorical([0.5, 1.0, 2.0])}
configs = [{"x": np.float32(0.5), "n": n, "k": np.int64(2), "w": 1} for n in np.arange(1, 3)]


def objective(params):
    assert [type(params[p]) for p in "xnkw"] == [float, int, int, float], params
    return params["x"] + params["n"] + params["k"] + params["w"]
"""


def test_configs_built_with_numpy_run_as_plain_values(tmp_path, run):
    """numpy scalars in configs (np.arange, np.float32) used to pass the checks and then
    crash rank 0 when the settings were stored as JSON; a JSON ``1`` for the choice
    ``1.0`` was refused. They are plain values, and the choice they name."""
    spec = write_spec(tmp_path, NUMPY_CONFIGS_SPEC)
    res = run(None, [spec, "--max-trials", 3, "--progress-interval", 0])
    assert res.returncode == 0, res.describe()
    r = mpitune.load(str(tmp_path / "results.h5"))
    assert r["state"].tolist() == ["complete"] * 3
    assert r["n"][:2].tolist() == [1, 2] and r["x"][:2].tolist() == [0.5, 0.5]
    assert r["k"][:2].tolist() == [2, 2] and r["w"][:2].tolist() == [1.0, 1.0]
    assert r.settings["configs"][0] == {"x": 0.5, "n": 1, "k": 2, "w": 1}



def test_configs_added_on_resume_run_next_and_none_runs_twice(tmp_path, run):
    """Configurations not yet in the results file run first on resume (the list may grow
    between runs); those already there do not run again; one listed twice runs twice."""
    spec = write_spec(tmp_path, CONFIGS_SPEC)
    a = {"x": 2.5, "n": 6, "c": "a", "lr": 0.01}
    b = {"x": -1.25, "n": 2, "c": "b", "lr": 0.1}
    res = run(None, [spec, "--max-trials", 3, "--configs", json.dumps([a])])
    assert res.returncode == 0, res.describe()
    res = run(3, [spec, "--max-trials", 7, "--configs", json.dumps([a, b, b]),
                  "--progress-interval", 0])
    assert res.returncode == 0, res.describe()
    assert "2 of 3 explicit configurations to run first (1 already in the file)" in res.stdout
    r = mpitune.load(str(tmp_path / "results.h5"))
    rows = [(r["x"][i], r["n"][i], r["c"][i], r["lr"][i]) for i in range(len(r))]
    as_row = [tuple(c.values()) for c in (a, b)]
    assert rows[0] == as_row[0] and rows[3:5] == [as_row[1]] * 2
    assert rows.count(as_row[0]) == 1 and rows.count(as_row[1]) == 2
    res = run(None, [spec, "--max-trials", 9, "--configs", json.dumps([b, a])])
    assert res.returncode == 0, res.describe()
    assert "0 of 2 explicit configurations to run first (2 already in the file)" in res.stdout
    r = mpitune.load(str(tmp_path / "results.h5"))
    rows = [(r["x"][i], r["n"][i], r["c"][i], r["lr"][i]) for i in range(len(r))]
    assert len(rows) == 9 and rows.count(as_row[0]) == 1 and rows.count(as_row[1]) == 2

@pytest.fixture(scope="module")
def configs_results(tmp_path_factory) -> bytes:
    """The bytes of a finished 6-trial search of CONFIGS_SPEC, run once for every case
    below (as test_e2e_errors.py's ``pristine``)."""
    directory = tmp_path_factory.mktemp("configs")
    spec = write_spec(directory, CONFIGS_SPEC)
    res = run_mpi(3, [spec, "--max-trials", 6], cwd=directory)
    assert res.returncode == 0, res.describe()
    return (directory / "results.h5").read_bytes()


@pytest.mark.parametrize("configs, message", [
    ('[{"x": 9.0, "n": 4, "c": "b"}]', "entry 0: 'x' = 9.0 is not a number in [-5.0, 5.0]"),
    ('[{"x": 1, "n": 3, "c": "b"}]', "entry 0: 'n' = 3 is not an integer in 0..10 in steps"),
    ('[{"x": 1, "n": 4}]', "entry 0: parameter 'c' is missing"),
    ('[{"x": 1, "n": 4, "c": "z"}]', "'c' = 'z' is not one of ['a', 'b']"),
    ('[{"x": 1, "n": 4, "c": "a", "y": 1}]', "entry 0: unknown parameter 'y'"),
    ('[{"x": 1, "n": 4, "c": "a", "k": 8}]', "'k' is the constant 7, got 8"),
    ('[1, 2]', "setting 'configs' is [1, 2], but must be a list of dicts"),
    ('{"x": 1}', "must be a JSON list"),
])
def test_bad_configs_are_refused_before_the_file_is_touched(tmp_path, run, configs_results,
                                                           configs, message):
    spec = write_spec(tmp_path, CONFIGS_SPEC)
    path = tmp_path / "results.h5"
    path.write_bytes(configs_results)
    before = hashlib.sha256(configs_results).hexdigest()
    res = run(3, [spec, "--max-trials", 9, "--configs", configs])
    assert res.returncode != 0
    text = res.stderr
    assert message in text, res.describe()
    if "JSON list" not in message:
        assert len(error_lines(text)) == 1, res.describe()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_grid_stops_when_used_up(tmp_path, run):
    if "grid" not in SAMPLERS:
        pytest.skip("grid sampler not registered")
    spec = write_spec(tmp_path, '''
        from mpitune import Categorical, Integer

        space = {"n": Integer(1, 4), "c": Categorical(["a", "b", "c"])}
        sampler = "grid"

        def objective(params):
            return params["n"] * 10 + "abc".index(params["c"])
    ''')
    res = run(3, [spec, "--max-trials", 100, "--progress-interval", 0])
    assert res.returncode == 0, res.describe()
    assert "12 trials (all the sampler has: the grid's 12 configurations)" in res.stdout
    r = mpitune.load(str(tmp_path / "results.h5"))
    assert len(r) == 12 and r.complete
    assert sorted(zip(r["n"].tolist(), r["c"].tolist())) == \
        [(n, c) for n in range(1, 5) for c in "abc"]
    res = run(3, [spec, "--max-trials", 200])  # resuming an exhausted grid: nothing to do
    assert res.returncode == 0, res.describe()
    assert len(mpitune.load(str(tmp_path / "results.h5"))) == 12


GRID12_SPEC = '''
from mpitune import Categorical, Integer

space = {"c": Categorical(["a", "b", "c"]), "n": Integer(1, 4)}


def objective(params):
    return params["n"] + (params["c"] == "b")
'''
GRID12 = {(c, n) for c in "abc" for n in range(1, 5)}


def pairs(r) -> list:
    return list(zip(r["c"].tolist(), r["n"].tolist()))


def test_grid_after_another_sampler_runs_every_configuration_the_file_lacks(tmp_path, run):
    """8 random trials hold 6 of the 12 configurations (two repeats); auto then picks the
    grid, whose budget is those 8 trials plus the 6 configurations they lack, each run
    once. The budget used to be max(12, trials in the file): 4 of the 6 ran, and the search
    said "12 trials (all the sampler has)" and complete. A search stopped early and resumed
    (--max-trials 13, then 100) gives the same trials; a resumed finished grid runs none;
    `status` says how many of the grid's configurations are left."""
    spec = write_spec(tmp_path, GRID12_SPEC)
    for name in ("a.h5", "b.h5"):
        res = run(3, [spec, "--storage", name, "--sampler", "random", "--seed", 1,
                      "--max-trials", 8])
        assert res.returncode == 0, res.describe()
    first = pairs(mpitune.load(str(tmp_path / "a.h5")))
    assert len(first) == 8 and len(set(first)) == 6, first  # the repeats that mattered
    res = run(3, [spec, "--storage", "a.h5", "--max-trials", 100, "--progress-interval", 0])
    assert res.returncode == 0, res.describe()
    assert ("14 trials (all the sampler has: 8 in the file + 6 of the grid's 12 "
            "configurations not among them) to minimize") in res.stdout, res.describe()
    assert "sampler auto: grid" in res.stdout and "complete: 14/14 trials" in res.stdout
    r = mpitune.load(str(tmp_path / "a.h5"))
    rows = pairs(r)
    assert len(rows) == 14 and r.complete and (r["state"] == "complete").all()
    assert set(rows) == GRID12 and len(set(rows[8:])) == 6 and not set(rows[8:]) & set(first)
    status = run(None, ["status", "a.h5"])
    assert status.returncode == 0, status.describe()
    assert status.stdout == ("a.h5: 14/14 trials finished; 0 of the grid's 12 configurations "
                             "not run yet; complete\n")
    # resuming the finished grid: complete at once, nothing runs
    res = run(3, [spec, "--storage", "a.h5", "--max-trials", 100, "--progress-interval", 0])
    assert res.returncode == 0, res.describe()
    assert "14 in the file + 0 of the grid's 12 configurations" in res.stdout, res.describe()
    assert pairs(mpitune.load(str(tmp_path / "a.h5"))) == rows
    # the same search in two runs: the grid proposes what the one run did
    res = run(3, [spec, "--storage", "b.h5", "--max-trials", 13])
    assert res.returncode == 0, res.describe()
    status = run(None, ["status", "b.h5"])
    assert status.stdout == ("b.h5: 13/13 trials finished; 1 of the grid's 12 configurations "
                             "not run yet; complete\n"), status.describe()
    res = run(3, [spec, "--storage", "b.h5", "--max-trials", 100])
    assert res.returncode == 0, res.describe()
    with h5py.File(tmp_path / "a.h5", "r") as a, h5py.File(tmp_path / "b.h5", "r") as b:
        np.testing.assert_array_equal(a["trials/unit"][...], b["trials/unit"][...])


def test_explicit_configs_on_the_grid_are_its_points_and_none_runs_twice(tmp_path, run):
    """The default sampler picks the grid over 6 configurations; the 2 explicit ones are
    grid points and count as those: 6 trials, each configuration once (it used to be 8,
    and ('a', 2) and ('a', 3) ran twice as the grid cycled). With a real on the grid, a
    configuration at the top of its range or at a grid value is that grid point, and one off
    the grid runs in addition: 11 trials; a configuration added on resume is matched to the
    grid's trials the same way."""
    spec = write_spec(tmp_path, '''
        from mpitune import Categorical, Integer

        space = {"c": Categorical(["a", "b"]), "n": Integer(1, 3)}
        configs = [{"c": "a", "n": 1}, {"c": "b", "n": 3}]

        def objective(params):
            return params["n"] + (params["c"] == "b")
    ''')
    res = run(3, [spec, "--seed", 1, "--max-trials", 100, "--progress-interval", 0])
    assert res.returncode == 0, res.describe()
    assert ("6 trials (all the sampler has: 2 explicit configurations + 4 of the grid's 6 "
            "configurations not among them)") in res.stdout, res.describe()
    r = mpitune.load(str(tmp_path / "results.h5"))
    rows = pairs(r)
    assert rows[:2] == [("a", 1), ("b", 3)] and len(rows) == 6
    assert set(rows) == {(c, n) for c in "ab" for n in (1, 2, 3)}

    spec = write_spec(tmp_path, '''
        from mpitune import Categorical, Real
        from mpitune.samplers import GridSampler

        space = {"c": Categorical(["a", "b"]), "x": Real(0.0, 0.9)}
        configs = [{"c": "a", "x": 0.9}, {"c": "b", "x": 0.45}, {"c": "a", "x": 0.3}]
        sampler = GridSampler(levels=5)

        def objective(params):
            return params["x"] + (params["c"] == "b")
    ''', name="reals.py")
    res = run(3, [spec, "--storage", "reals.h5", "--max-trials", 100])
    assert res.returncode == 0, res.describe()
    assert "11 trials (all the sampler has: 3 explicit configurations + 8 of the grid's 10" \
        in res.stdout, res.describe()
    r = mpitune.load(str(tmp_path / "reals.h5"))
    rows = list(zip(r["c"].tolist(), r["x"].tolist()))
    assert rows[:3] == [("a", 0.9), ("b", 0.45), ("a", 0.3)] and len(rows) == 11
    grid = {(c, x) for c in "ab" for x in (0.0, 0.225, 0.45, 0.675, 0.9)}
    assert len(set(rows)) == 11 and set(rows) == grid | {("a", 0.3)}
    # the grid's top ran as the largest unit value below 1; written in a configuration
    # added on resume it is unit 1, and the same configuration: it does not run again
    more = json.dumps([{"c": "a", "x": 0.9}, {"c": "b", "x": 0.45}, {"c": "a", "x": 0.3},
                       {"c": "b", "x": 0.9}])
    res = run(3, [spec, "--storage", "reals.h5", "--max-trials", 100, "--configs", more])
    assert res.returncode == 0, res.describe()
    assert "0 of 4 explicit configurations to run first (4 already in the file)" \
        in res.stdout, res.describe()
    assert len(mpitune.load(str(tmp_path / "reals.h5"))) == 11


def test_auto_says_what_it_picked(tmp_path, run):
    spec = write_spec(tmp_path, CONDITIONAL)
    res = run(2, [spec, "--max-trials", 5])
    assert res.returncode == 0, res.describe()
    assert "sampler auto: " in res.stdout + res.stderr, res.describe()


@pytest.mark.parametrize("when, message", [
    ('{"nope": "a"}', "parameter 'b': when names 'nope', which must be a parameter listed "
                      "before it"),
    ('{"a": "z"}', "parameter 'b': when {'a': 'z'}: 'z' is not one of a's choices"),
    ('{"x": 1.0}', "parameter 'b': when names 'x', which is a real parameter"),
    ('"a"', "parameter 'b': when must be a non-empty dict"),
])
def test_bad_conditions(tmp_path, run, when, message):
    spec = write_spec(tmp_path, f'''
        from mpitune import Categorical, Real

        space = {{"x": Real(0, 1), "a": Categorical(["a", "b"]),
                  "b": Real(0, 1, when={when})}}

        def objective(params):
            return 0.0
    ''')
    res = run(2, [spec, "--max-trials", 3])
    assert res.returncode != 0
    assert message in res.stderr, res.describe()
    assert len(error_lines(res.stderr)) == 1
    assert not (tmp_path / "results.h5").exists()


@pytest.mark.parametrize("example", ["quickstart.py", "conditional.py"])
def test_examples_run(tmp_path, run, example):
    """The README's examples run as documented (fewer trials)."""
    path = str(Path(__file__).resolve().parent.parent / "examples" / example)
    res = run(3, [path, "--max-trials", 30, "--storage", "ex.h5", "--progress-interval", 0])
    assert res.returncode == 0, res.describe()
    r = mpitune.load(str(tmp_path / "ex.h5"))
    assert len(r) == 30 and (r["state"] == "complete").all()
    if example == "conditional.py":
        assert r.params(0)["momentum"] == 0.9 and "beta1" not in r.params(0)
        assert r.params(1)["optimizer"] == "adam" and "momentum" not in r.params(1)
