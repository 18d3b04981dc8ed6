"""Unit tests of the CMA-ES sampler (mpitune/samplers/_cmaes.py)."""

from __future__ import annotations

import numpy as np
import pytest

from mpitune.errors import SpecError
from mpitune.samplers._base import History
from mpitune.samplers._cmaes import CMAESSampler
from mpitune.space import Categorical, Integer, Real, Space

SPACE = Space({"x": Real(0, 1), "lr": Real(1e-4, 1, log=True), "n": Integer(1, 9),
               "c": Categorical(["a", "b", "c"]), "g": Integer(1, 1000, log=True), "k": 3})
CUBE8 = Space({f"p{i}": Real(0, 1) for i in range(8)})


def history(space: Space, x=None, loss=None, pending=None, n_total=None) -> History:
    d = space.ndim
    x = np.empty((0, d)) if x is None else np.asarray(x, dtype=float).reshape(-1, d)
    loss = np.empty(0) if loss is None else np.asarray(loss, dtype=float)
    pending = np.empty((0, d)) if pending is None else np.asarray(pending).reshape(-1, d)
    return History(space, x=x, loss=loss, state=np.zeros(len(loss), dtype=np.uint8),
                   pending=pending, n_total=len(x) + len(pending) if n_total is None else n_total)


def cmaes(space: Space = SPACE, seed: int = 1, **kwargs) -> CMAESSampler:
    sampler = CMAESSampler(**kwargs)
    sampler.bind(space, seed)
    return sampler


class Search:
    """An asynchronous search: ``q`` trials in flight; ``finish`` picks the next one to end
    (FIFO by default), and each finished trial is replaced by one new suggestion."""

    def __init__(self, sampler, space, objective, q: int, order=None) -> None:
        self.sampler, self.space, self.objective, self.q = sampler, space, objective, q
        self.order = order or (lambda pending: 0)
        self.x: list[np.ndarray] = []
        self.loss: list[float] = []
        self.pending: list[np.ndarray] = []

    def history(self) -> History:
        return history(self.space, self.x, self.loss, self.pending)

    def ask(self, n: int) -> np.ndarray:
        points = self.sampler.suggest(n, self.history())
        self.pending.extend(points)
        return points

    def run(self, evaluations: int, check=None) -> np.ndarray:
        self.ask(self.q)
        while len(self.x) < evaluations:
            self.x.append(self.pending.pop(self.order(self.pending)))
            self.loss.append(self.objective(self.x[-1]))
            if check is not None:
                check(self)
            self.ask(1)
        return np.array(self.loss)


def sphere(x: np.ndarray) -> float:
    return float(np.sum((x - 0.3) ** 2))


@pytest.mark.parametrize("n", [1, 3, 64])
def test_shape_dtype_and_range(n):
    for h in (history(SPACE), history(SPACE, np.full((20, 5), 0.99), np.arange(20.0))):
        points = cmaes().suggest(n, h)
        assert points.shape == (n, SPACE.ndim) and points.dtype == np.float64
        assert np.all((points >= 0.0) & (points < 1.0))


def test_deterministic_for_a_seed_and_seeds_differ():
    a = cmaes(seed=7).suggest(16, history(SPACE))
    np.testing.assert_array_equal(a, cmaes(seed=7).suggest(16, history(SPACE)))
    assert not np.allclose(a, cmaes(seed=8).suggest(16, history(SPACE)))
    assert len(np.unique(a, axis=0)) == 16


def test_batches_and_positions_give_the_same_points():
    """Point i depends on the state and on i only, not on how the batches were cut."""
    big = cmaes(CUBE8).suggest(150, history(CUBE8))
    s = cmaes(CUBE8)
    small = np.vstack([s.suggest(k, history(CUBE8, n_total=t))
                       for k, t in ((3, 0), (61, 3), (86, 64))])
    np.testing.assert_array_equal(small, big)


def test_initial_distribution():
    points = cmaes(CUBE8, sigma0=0.1).suggest(2000, history(CUBE8))
    np.testing.assert_allclose(points.mean(axis=0), 0.5, atol=0.01)
    np.testing.assert_allclose(points.std(axis=0), 0.1, rtol=0.06)


def test_state_is_a_function_of_seed_and_history():
    """A long-lived sampler (with its cache) and a fresh one (replaying everything) propose
    the same points at every step of an asynchronous search with out-of-order finishes,
    failures and nan losses: the cache never changes results."""
    rng = np.random.default_rng(0)
    order = rng.integers(0, 6, size=1000)
    space = Space({"a": Real(0, 1), "b": Real(1, 100, log=True), "n": Integer(0, 6),
                   "c": Categorical([1, 2])})

    def objective(x):
        if x[0] > 0.85:
            return np.nan  # failed
        return float(np.sum((x - 0.4) ** 2))

    def check(search):
        h = search.history()
        fresh = cmaes(space, seed=3).suggest(2, h)
        np.testing.assert_array_equal(search.sampler.suggest(2, h), fresh)

    search = Search(cmaes(space, seed=3), space, objective, q=6,
                    order=lambda pending: int(order[len(pending)]) % len(pending))
    losses = search.run(120, check)
    assert np.isnan(losses).any() and np.nanmin(losses) < 0.04  # the choice costs 0.0225


def test_a_late_finish_changes_the_generations_consistently():
    """A straggler that finishes late lands in an early generation; the cached state is
    rolled back and replayed, matching a fresh sampler."""
    s = cmaes(CUBE8, seed=4)
    points = s.suggest(60, history(CUBE8))
    loss = np.array([sphere(p) for p in points])
    done = np.ones(60, bool)
    done[2] = False
    early = history(CUBE8, points[done], loss[done], points[~done])
    before = s.suggest(4, early)
    late = history(CUBE8, points, loss)
    after = s.suggest(4, late)
    np.testing.assert_array_equal(before, cmaes(CUBE8, seed=4).suggest(4, early))
    np.testing.assert_array_equal(after, cmaes(CUBE8, seed=4).suggest(4, late))
    assert not np.array_equal(before, after)


def test_converges_on_a_sphere_in_an_asynchronous_schedule():
    """8-d sphere centred at 0.3, 8 trials in flight, FIFO: 600 evaluations."""
    losses = Search(cmaes(CUBE8, seed=11), CUBE8, sphere, q=8).run(600)
    assert losses.min() < 1e-3
    assert losses[-50:].max() < 0.1  # the whole population has contracted


def test_converges_on_an_ellipsoid():
    scales = 10.0 ** np.linspace(0, 3, 4)
    space = Space({f"p{i}": Real(0, 1) for i in range(4)})
    losses = Search(cmaes(space, seed=2), space,
                    lambda x: float(np.sum(scales * (x - 0.6) ** 2)), q=4).run(800)
    assert losses.min() < 1e-4


def test_optimum_on_the_boundary():
    space = Space({f"p{i}": Real(0, 1) for i in range(3)})
    search = Search(cmaes(space, seed=5), space, lambda x: float(np.sum((1 - x) ** 2)), q=4)
    assert search.run(300).min() < 1e-4
    tail = np.array(search.x[-40:])
    assert np.all((tail >= 0) & (tail < 1)) and tail.mean() > 0.99


def test_integers_find_their_optimum_and_keep_moving():
    space = Space({f"n{i}": Integer(0, 40) for i in range(3)} | {"x": Real(0, 1)})

    def objective(p):
        values = np.array(space.rows(p[None])[0], dtype=float)
        return float(np.sum((values[:3] - 17) ** 2) + 100 * (values[3] - 0.25) ** 2)

    search = Search(cmaes(space, seed=6), space, objective, q=4)
    losses = search.run(500)
    assert losses.min() < 0.05  # every integer right: a wrong one costs at least 1
    tail = np.array(search.x[-100:])
    for j in range(3):  # the step-size floor keeps neighbouring integers in play
        assert len(np.unique(tail[:, j])) >= 2


def test_categorical_and_integer_coordinates_are_cell_centres():
    h = history(SPACE, np.full((30, 5), 0.3), np.linspace(0, 1, 30))
    points = cmaes(seed=9).suggest(300, h)
    np.testing.assert_array_equal(SPACE.snap(points), points)
    c = points[:, 3]
    assert set(np.round(c * 3 - 0.5, 9)) == {0.0, 1.0, 2.0}
    assert np.bincount((c * 3).astype(int)).min() > 70  # uniform, not modelled


def test_nan_coordinates_and_losses_are_tolerated():
    rng = np.random.default_rng(1)
    x = rng.random((40, SPACE.ndim))
    x[rng.random(x.shape) < 0.3] = np.nan  # inactive conditional parameters
    loss = rng.random(40)
    loss[::3] = np.nan
    loss[5] = np.inf
    points = cmaes().suggest(20, history(SPACE, x, loss, pending=x[:3]))
    assert np.all(np.isfinite(points)) and np.all((points >= 0) & (points < 1))


def test_all_failed_trials_do_not_crash():
    space = Space({f"p{i}": Real(0, 1) for i in range(3)})
    losses = Search(cmaes(space), space, lambda x: np.nan, q=5).run(150)
    assert np.isnan(losses).all()


def test_flat_losses_restart_with_a_larger_population():
    """An integer-only space converges to one cell, the losses are flat: restarts (IPOP)."""
    space = Space({"a": Integer(0, 3), "b": Categorical(["u", "v"])})
    s = cmaes(space, seed=2)
    search = Search(s, space, lambda x: float(np.floor(x[0] * 4)), q=3)
    search.run(200)
    state = s._replay(search.history(), np.array([0]))
    assert state.restarts >= 1 and state.lam > 4
    assert np.all(np.isfinite(search.loss))


def test_only_categorical_or_no_dimensions():
    space = Space({"c": Categorical(list("abcd")), "k": 1})
    points = cmaes(space).suggest(40, history(space, np.full((8, 1), 0.125), np.arange(8.0)))
    assert set(points[:, 0]) == {0.125, 0.375, 0.625, 0.875}
    empty = Space({"k": 1})
    assert cmaes(empty).suggest(3, history(empty)).shape == (3, 0)


def test_repr_and_popsize():
    assert repr(CMAESSampler(seed=3, popsize=12)) == (
        "CMAESSampler(seed=3, popsize=12, sigma0=0.3)")
    s = cmaes(CUBE8, popsize=6)
    points = s.suggest(12, history(CUBE8))
    state = s._replay(history(CUBE8, points, np.arange(12.0)), np.arange(8))
    assert state.lam == 6 and state.used == 12 and state.generation == 2


@pytest.mark.parametrize("kwargs", [{"popsize": 1}, {"popsize": 4.5}, {"sigma0": 0},
                                    {"sigma0": 2.0}, {"sigma0": "big"}])
def test_bad_arguments_are_spec_errors(kwargs):
    with pytest.raises(SpecError, match="CMAESSampler"):
        CMAESSampler(**kwargs)
