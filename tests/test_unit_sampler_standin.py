"""Unit tests of the stand-in points a model-based search gets while its model is too slow
(mpitune.samplers._standin); the suggester handing them out is tested in
test_unit_samplers.py."""

from __future__ import annotations

import numpy as np

from mpitune.samplers import History, SobolSampler
from mpitune.samplers._base import rank_order
from mpitune.samplers._standin import StandInSampler, best_rows
from mpitune.space import Categorical, Integer, Real, Space
from mpitune.table import COMPLETE, PRUNED

REALS = Space({f"x{i}": Real(0, 1) for i in range(10)})
MIXED = Space({"x": Real(0, 1), "lr": Real(1e-4, 1, log=True), "n": Integer(1, 9),
               "c": Categorical(["a", "b", "c"]), "k": 3})


def past(space: Space, m: int, seed: int = 0, n_total=None, **arrays) -> History:
    rng = np.random.default_rng(seed)
    x = space.snap(rng.random((m, space.ndim)))
    loss = arrays.pop("loss", rng.random(m))
    state = np.where(np.isfinite(loss), COMPLETE, PRUNED).astype(np.uint8)
    return History(space, x=x, loss=loss, state=state, pending=np.empty((0, space.ndim)),
                   n_total=m if n_total is None else n_total, **arrays)


def test_too_few_results_give_the_sobol_points_of_those_indexes():
    h = past(REALS, 9)
    got = StandInSampler(seed=4).suggest(6, h)
    np.testing.assert_array_equal(got, SobolSampler(4).suggest(6, h))


def test_even_indexes_are_sobol_odd_ones_steps_from_the_best_trials():
    h = past(REALS, 40, n_total=41)
    got = StandInSampler(seed=4).suggest(8, h)
    sobol = SobolSampler(4).suggest(8, h)
    odd = (41 + np.arange(8)) % 2 == 1
    np.testing.assert_array_equal(got[~odd], sobol[~odd])
    best = np.argsort(h.loss)[:5]
    others = np.argsort(h.loss)[5:]
    for point in got[odd]:
        # coordinates a step leaves alone are copied from its centre: one of the 5 best
        assert any(np.any(point == h.x[b]) for b in best)
        assert not any(np.any(point == h.x[o]) for o in others)
    near = np.min(np.abs(got[odd][:, None, :] - h.x[best][None]).sum(-1), axis=1)
    far = np.min(np.abs(sobol[odd][:, None, :] - h.x[best][None]).sum(-1), axis=1)
    assert np.median(near) < 0.5 * np.median(far)


def test_points_are_in_the_cube_snapped_and_deterministic():
    h = past(MIXED, 30)
    a = StandInSampler(seed=7).suggest(64, h)
    b = StandInSampler(seed=7).suggest(64, h)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (64, MIXED.ndim) and np.all((a >= 0) & (a < 1))
    steps = a[1::2]  # (indexes 31, 33, ...) at the cells of their integers and choices
    np.testing.assert_array_equal(MIXED.snap(steps), steps)
    assert not np.array_equal(a, StandInSampler(seed=7).suggest(64, past(MIXED, 30,
                                                                         n_total=31)))
    c = MIXED.names.index("c")  # a categorical that moves takes any choice
    assert len(np.unique(steps[:, c])) == 3


def test_a_centre_with_inactive_coordinates_gets_random_ones_there():
    space = Space({"opt": Categorical(["sgd", "adam"]),
                   "momentum": Real(0, 1, when={"opt": "sgd"})})
    h = past(space, 20)
    h.x[:, 1] = np.where(h.x[:, 0] < 0.5, h.x[:, 1], np.nan)
    got = StandInSampler(seed=1).suggest(10, h)
    assert not np.isnan(got).any() and np.all((got >= 0) & (got < 1))


def test_best_rows_are_the_head_of_rank_order():
    rng = np.random.default_rng(2)
    m = 200
    loss = np.where(rng.random(m) < 0.3, rng.random(m), np.nan)
    stop_step = np.where(np.isnan(loss), rng.integers(1, 4, m), np.nan)
    stop_loss = np.where(np.isnan(loss), rng.random(m), np.nan)
    for k in (1, 5, 50, 100):  # fewer finals than k: pruned ones that got further next
        assert set(best_rows(loss, stop_step, stop_loss, k)) == \
            set(rank_order(loss, stop_step, stop_loss)[:k])


def test_under_a_pruner_steps_start_from_the_trials_that_got_furthest():
    m = 30
    stop_step = np.r_[np.full(3, 9.0), np.full(m - 3, 1.0)]
    h = past(REALS, m, loss=np.full(m, np.nan), stop_step=stop_step,
             stop_loss=np.random.default_rng(3).random(m))
    got = StandInSampler(seed=2, n_best=3).suggest(8, h)
    for point in got[1::2]:
        assert any(np.any(point == h.x[b]) for b in range(3))
        assert not any(np.any(point == h.x[o]) for o in range(3, m))


def test_a_step_never_lands_on_its_centre_in_a_discrete_space():
    space = Space({"a": Integer(1, 9), "b": Integer(1, 9), "c": Categorical(["x", "y"])})
    h = past(space, 40)
    got = StandInSampler(seed=5).suggest(400, h)
    sobol = SobolSampler(5).suggest(400, h)
    steps = got[1::2][np.any(got[1::2] != sobol[1::2], axis=1)]
    assert len(steps) > 50  # most rows are steps, some fell back to their Sobol' point
    best = space.snap(h.x[np.argsort(h.loss)[:5]])
    assert not np.any(np.all(steps[:, None, :] == best[None], axis=2))
