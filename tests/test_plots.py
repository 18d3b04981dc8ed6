"""Plots (the ``plot`` extra): ``python -m mpitune plot`` writes PNGs of a real search's
results file, and the drawn data are the file's own (checked against ``mpitune.load``)."""

from __future__ import annotations

import hashlib
import math
import subprocess
import sys

import numpy as np
import pytest
from conftest import error_lines, make_env, run_mpi, write_spec

import mpitune

matplotlib = pytest.importorskip("matplotlib")  # in the test extra: runs in CI
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from mpitune import plots  # noqa: E402

SPEC = '''
import math
import time
from mpitune import Categorical, Integer, Real

space = {"lr": Real(1e-4, 1.0, log=True), "n": Integer(1, 8),
         "opt": Categorical(["sgd", "adam", None, 3]),
         "momentum": Real(0.0, 1.0, when={"opt": ["sgd"]})}
pruner = "median"
sampler = "random"


def objective(params, trial):
    if params["n"] == 8:
        raise RuntimeError("n = 8 fails")
    base = abs(math.log10(params["lr"]) + 2.0) + params["n"] / 10
    value = math.nan
    for step in range(6):
        time.sleep(0.01)  # the median rule's verdict arrives while the trial runs
        value = base + 2.0 / (step + 1)
        trial.report(step, value)
    return value
'''


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    directory = tmp_path_factory.mktemp("plots")
    spec = write_spec(directory, SPEC)
    path = str(directory / "r.h5")
    res = run_mpi(3, [spec, "--max-trials", 40, "--storage", path, "--seed", 3,
                      "--progress-interval", 0], cwd=directory)
    assert res.returncode == 0, res.describe()
    r = mpitune.load(path)
    states = set(r["state"].tolist())
    assert {"complete", "pruned", "failed"} <= states, states  # every kind is drawn below
    return directory, path, r


def _digest(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_cli_writes_three_pngs_and_leaves_the_file_alone(searched, tmp_path):
    directory, path, r = searched
    before = _digest(path)
    prefix = str(tmp_path / "out")
    res = run_mpi(None, ["plot", path, "--prefix", prefix])
    assert res.returncode == 0, res.describe()
    names = [f"{prefix}-{kind}.png" for kind in ("history", "curves", "params")]
    assert res.stdout.split() == names
    for name in names:
        image = matplotlib.image.imread(name)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
        assert image[..., :3].std() > 0.01, f"{name} is blank"
    assert _digest(path) == before
    # without --prefix: beside the results file, named after it
    res = run_mpi(None, ["plot", path])
    assert res.returncode == 0, res.describe()
    assert res.stdout.split() == [path[:-3] + f"-{k}.png" for k in ("history", "curves",
                                                                     "params")]


def test_history_draws_every_trial_where_the_file_has_it(searched):
    _, _, r = searched
    ax = plots.plot_history(r, Figure().add_subplot())
    complete, pruned = ax.collections[0], ax.collections[1]
    ok = np.flatnonzero(r["state"] == "complete")
    np.testing.assert_array_equal(complete.get_offsets(),
                                  np.column_stack([ok, r["value"][ok]]))
    stopped = np.flatnonzero(r["state"] == "pruned")
    last = [r.curve(i)[1][-1] for i in stopped]
    np.testing.assert_array_equal(pruned.get_offsets(), np.column_stack([stopped, last]))
    best, failed = ax.lines[0], ax.lines[1]
    running, expected = math.inf, []
    for i in range(len(r)):  # the best so far, the slow way
        if r["state"][i] == "complete":
            running = min(running, r["value"][i])
        expected.append(running)
    expected = np.array(expected)
    seen = np.isfinite(expected)
    np.testing.assert_array_equal(best.get_ydata(), expected[seen])
    assert best.get_ydata()[-1] == r.best["value"]
    np.testing.assert_array_equal(failed.get_xdata(), np.flatnonzero(r["state"] == "failed"))


def test_best_so_far_follows_the_direction(searched):
    _, _, r = searched
    flipped = mpitune.results.Results(**{**r.__dict__, "direction": "maximize"})
    value = np.where(r["state"] == "complete", r["value"], -np.inf)
    expected = np.maximum.accumulate(value)
    got = plots.best_so_far(flipped)
    np.testing.assert_array_equal(got[np.isfinite(expected)], expected[np.isfinite(expected)])
    assert np.isnan(got[~np.isfinite(expected)]).all()


def test_curves_are_each_trials_reports(searched):
    _, _, r = searched
    ax = plots.plot_curves(r, Figure().add_subplot())
    lines = [c for c in ax.collections if isinstance(c, LineCollection)][0]
    reported = np.unique(r.curves["trial"])
    segments = lines.get_segments()
    assert len(segments) == len(reported)
    for number, segment in zip(reported, segments):
        steps, values = r.curve(number)
        np.testing.assert_array_equal(segment, np.column_stack([steps, values]))
    best = r.best["number"]
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), r.curve(best)[1])
    # past max_curves: that many, the best trial among them
    ax = plots.plot_curves(r, Figure().add_subplot(), max_curves=5)
    chosen = plots.curve_trials(r, 5)
    assert len(chosen) == 5 and best in chosen
    lines = [c for c in ax.collections if isinstance(c, LineCollection)][0]
    assert len(lines.get_segments()) == 5


def test_params_one_panel_per_parameter(searched):
    _, _, r = searched
    fig = plots.plot_params(r, Figure())
    axes = fig.get_axes()
    assert [ax.get_xlabel() for ax in axes] == r.space.names
    by_name = dict(zip(r.space.names, axes))
    assert by_name["lr"].get_xscale() == "log" and by_name["n"].get_xscale() == "linear"
    ticks = [t.get_text() for t in by_name["opt"].get_xticklabels()]
    assert ticks == ["sgd", "adam", "None", "3"]
    ok = r["state"] == "complete"
    # each panel holds the complete trials where that parameter was active
    for j, name in enumerate(r.space.names):
        rows = ok & r.active[:, j]
        points = by_name[name].collections[0].get_offsets()
        np.testing.assert_array_equal(points[:, 1], r["value"][rows])
        if name in ("lr", "n", "momentum"):
            np.testing.assert_array_equal(points[:, 0], r[name][rows].astype(float))
    assert (ok & ~r.active[:, r.space.names.index("momentum")]).any()
    opt = by_name["opt"].collections[0].get_offsets()[:, 0]
    positions = np.rint(opt).astype(int)
    choices = ["sgd", "adam", None, 3]
    decoded = [r.params(i)["opt"] for i in np.flatnonzero(ok)]
    assert [choices[k] for k in positions] == decoded


def test_plot_without_matplotlib_says_how_to_install(searched):
    _, path, _ = searched
    before = _digest(path)
    code = ("import sys; sys.modules['matplotlib'] = None; from mpitune.cli import main; "
            f"sys.exit(main(['plot', {path!r}]))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=make_env(), timeout=60)
    assert res.returncode == 1, res.stderr
    assert error_lines(res.stderr) == [
        "mpitune: error: plotting needs matplotlib: pip install matplotlib (or, in "
        "mpitune's source tree, pip install '.[plot]')"]
    assert _digest(path) == before


def test_plot_of_a_missing_file_is_one_line(tmp_path):
    res = run_mpi(None, ["plot", str(tmp_path / "none.h5")])
    assert res.returncode == 3
    lines = error_lines(res.stderr)
    assert len(lines) == 1 and "none.h5" in lines[0], res.stderr


def test_params_named_or_at_most_max_panels(searched, tmp_path):
    """A wide search (600 parameters made a 1440 x 76,800 pixel figure in a minute) draws
    the first ``max_panels`` and says so; ``names`` / ``--params`` choose the panels."""
    _, path, r = searched
    fig = plots.plot_params(r, Figure(), max_panels=2)
    assert [ax.get_xlabel() for ax in fig.get_axes()] == r.space.names[:2]
    assert fig._suptitle.get_text() == f"2 of {r.space.ndim} parameters"
    fig = plots.plot_params(r, Figure(), names=["momentum", "lr"])
    assert [ax.get_xlabel() for ax in fig.get_axes()] == ["momentum", "lr"]
    with pytest.raises(ValueError, match="no parameter 'nope'"):
        plots.plot_params(r, Figure(), names=["lr", "nope"])
    prefix = str(tmp_path / "some")
    res = run_mpi(None, ["plot", path, "--prefix", prefix, "--params", "opt,n"])
    assert res.returncode == 0, res.describe()
    res = run_mpi(None, ["plot", path, "--prefix", str(tmp_path / "bad"), "--params", "x"])
    assert res.returncode == 2
    assert error_lines(res.stderr) == [
        f"mpitune: error: mpitune plot --params: no parameter 'x' in this search "
        f"(parameters: {', '.join(r.space.names)})"], res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "some-curves.png", "some-history.png", "some-params.png"]


def test_failed_trials_only_and_names_the_font_lacks_plot_without_warnings(tmp_path):
    """Only failed trials, with curves: the curves' legend says "failed" (matplotlib
    warned that it had nothing to put in a legend). A parameter named in a script the
    font lacks is drawn as boxes, without a warning per glyph and figure."""
    spec = write_spec(tmp_path, "from mpitune import Real\nspace = {'数x': Real(0.0, 1.0)}\n"
                                "def objective(params, trial):\n    trial.report(0, 1.0)\n"
                                "    raise ValueError('no')\n")
    res = run_mpi(None, [spec, "--max-trials", 3, "--storage", "f.h5"], cwd=tmp_path)
    assert res.returncode == 0, res.describe()
    res = run_mpi(None, ["plot", str(tmp_path / "f.h5")])
    assert res.returncode == 0 and res.stderr == "", res.describe()
    assert len(res.stdout.split()) == 3
    r = mpitune.load(str(tmp_path / "f.h5"))
    ax = plots.plot_curves(r, Figure().add_subplot())
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["failed"]
