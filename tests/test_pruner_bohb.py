"""BOHB-style multi-fidelity: Hyperband's stopping decisions, and a sampler that models
the highest rung (or the final values) with enough results."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_mpi, write_spec
from test_pruners import SPEC, decisions

import mpitune
from mpitune.pruners import BOHBPruner, HyperbandPruner, make_pruner
from mpitune.pruners._bohb import fidelity_losses, values_at_resources
from mpitune.samplers import SobolSampler
from mpitune.settings import Settings
from mpitune.space import Real, Space
from mpitune.suggester import Suggester
from mpitune.table import COMPLETE, PRUNED, TrialTable


def test_values_at_resources_takes_the_first_report_at_or_past_each_resource():
    trial = np.array([0, 0, 1, 0, 1, 2, 1])
    step = np.array([1, 3, 1, 9, 2, 1, 5.0])
    value = np.array([10, 11, 20, 12, 21, 30, 22.0])
    got = values_at_resources(trial, step, value, 4, np.array([1.0, 3.0, 9.0]))
    want = np.array([[10, 11, 12], [20, 22, np.nan], [30, np.nan, np.nan],
                     [np.nan, np.nan, np.nan]])
    np.testing.assert_array_equal(got, want)


def test_fidelity_losses_picks_the_highest_level_with_enough_points():
    levels = np.array([[1, 2], [3, np.nan], [4, np.nan], [5, 6.0]])
    final = np.array([np.nan, np.nan, np.nan, 7.0])
    losses, k = fidelity_losses(levels, final, min_points=2)
    assert k == 1 and np.array_equal(losses, levels[:, 1], equal_nan=True)
    losses, k = fidelity_losses(levels, final, min_points=4)
    assert k == 0
    losses, k = fidelity_losses(levels, final, min_points=1)
    assert k == 2 and losses[3] == 7.0
    _, k = fidelity_losses(levels, final, min_points=99)  # none has enough: the fullest
    assert k == 0


def table_with_curves(n: int, rng) -> TrialTable:
    """n finished trials of x in [0, 1]: a curve x + 1/step up to step 9; every third
    stopped at step 3 (pruned), the others complete with value x."""
    t = TrialTable(1)
    x = rng.random((n, 1))
    t.add(x)
    steps = np.arange(1, 10, dtype=float)
    states = np.where(np.arange(n) % 3 == 0, PRUNED, COMPLETE)
    for i in range(n):
        last = 3 if states[i] == PRUNED else 9
        s = steps[steps <= last]
        t.add_curve([i] * len(s), s, x[i, 0] + 1.0 / s, np.zeros(len(s)))
    t.finish(np.arange(n), states, np.where(states == COMPLETE, x[:, 0], np.nan),
             np.zeros(n), np.ones(n))
    return t


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_suggester_shows_the_sampler_the_chosen_fidelity(direction):
    rng = np.random.default_rng(0)
    t = table_with_curves(30, rng)
    settings = Settings(pruner="bohb", max_resource=9, direction=direction)
    pruner = make_pruner(settings, t)
    space = Space({"x": Real(0, 1)})
    sampler = SobolSampler(0)
    sampler.bind(space, 0)
    sugg = Suggester(sampler, space, t, 4, direction, fidelity=pruner)
    h = sugg.history()
    sign = 1.0 if direction == "minimize" else -1.0
    loss = h.loss  # the history is built when the sampler first reads it
    # 20 complete trials >= max(d + 2, 6) = 6: the model sees the final values
    assert pruner.level == 2  # rungs at 1 and 3, then the final values
    complete = t.state.data == COMPLETE
    np.testing.assert_allclose(loss[complete], sign * t.value.data[complete])
    assert np.isnan(loss[~complete]).all()
    # with a high threshold it falls back to rung 3, which every trial reached
    pruner.min_points = 25
    loss = sugg.history().loss
    assert pruner.level == 1
    np.testing.assert_allclose(loss, sign * (t.unit.data[:, 0] + 1.0 / 3.0))


def test_bohb_needs_max_resource_and_decides_like_hyperband():
    with pytest.raises(mpitune.SpecError, match="pruner 'bohb' needs it"):
        Settings(pruner="bohb").validate()
    a, b = BOHBPruner(1, 3, 27), HyperbandPruner(1, 3, 27)
    rng = np.random.default_rng(1)
    for n in range(40):
        steps = np.arange(1, 28, dtype=float)
        values = rng.random() + 1.0 / steps
        assert a.observe([n] * 27, steps, values) == b.observe([n] * 27, steps, values)
    assert repr(a).startswith("BOHBPruner(")


def test_e2e_bohb_prunes_and_models(tmp_path):
    spec = write_spec(tmp_path, SPEC.replace("trial.number % 5 == 2", "False"))
    res = run_mpi(4, [spec, "--pruner", "bohb", "--max-resource", "27", "--max-trials", "60",
                      "--storage", "b.h5", "--sampler", "tpe", "--seed", "3",
                      "--progress-interval", "0"], cwd=tmp_path, timeout=90)
    assert res.returncode == 0, res.describe()
    assert "pruner bohb" in res.stdout, res.describe()
    r, decided = decisions(str(tmp_path / "b.h5"), BOHBPruner(1, 3, 27))
    pruned = set(np.flatnonzero(r["state"] == "pruned").tolist())
    assert pruned and pruned <= set(decided)
    assert len(r) == 60
    # the model steers towards small x: later trials are better than the Sobol start
    assert np.median(r["x"][30:]) < np.median(r["x"][:10])


CHECKPOINT_SPEC = '''
import json
import os
import time

from mpitune import Real

space = {"x": Real(0.0, 1.0)}


def objective(params, trial):
    path = os.path.join(trial.checkpoint_dir, "state.json")
    start = 1
    if os.path.exists(path):
        with open(path) as f:
            start = json.load(f)["epoch"] + 1
    for epoch in range(start, 21):
        time.sleep(0.03)
        with open(path + ".tmp", "w") as f:
            json.dump({"epoch": epoch}, f)
        os.replace(path + ".tmp", path)
        trial.report(epoch, params["x"] + 1.0 / epoch)
    return {"value": params["x"], "resumed_from": start - 1}
'''


def test_checkpoint_dir_lets_an_interrupted_trial_resume(tmp_path, start):
    """kill -9 of the whole job in mid-trial; the rerun hands the interrupted trials out
    again with their numbers, and they find their own checkpoints."""
    import signal
    import time

    from conftest import wait_gone

    spec = write_spec(tmp_path, CHECKPOINT_SPEC)
    args = [spec, "--max-trials", "4", "--storage", "c.h5", "--progress-interval", "0"]
    job = start(3, args)
    root = tmp_path / "c.h5.checkpoints"
    deadline = time.monotonic() + 30
    while not any(root.glob("trial-*/state.json")):
        assert job.running() and time.monotonic() < deadline, job.wait(1).describe()
        time.sleep(0.02)
    time.sleep(0.15)
    pids = job.kill_all(signal.SIGKILL)
    job.proc.wait()
    wait_gone(pids)
    res = run_mpi(3, args, cwd=tmp_path, timeout=60)
    assert res.returncode == 0, res.describe()
    r = mpitune.load(str(tmp_path / "c.h5"))
    assert len(r) == 4 and (r["state"] == "complete").all()
    assert (r["resumed_from"] > 0).any(), r["resumed_from"]
    for n in range(4):
        assert (root / f"trial-{n}" / "state.json").exists()
        steps = r.curve(n)[0].tolist()  # points from before the kill are kept too
        resumed = int(r["resumed_from"][n])
        assert steps[-1] == 20 and steps[-(20 - resumed):] == list(range(resumed + 1, 21))
