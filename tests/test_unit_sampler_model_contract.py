"""The contract every registered sampler keeps once it has results to model: shapes,
bounds, cell values, determinism, resume, and tolerance of odd histories (failed trials,
constant losses, inactive conditional coordinates, many pending trials)."""

from __future__ import annotations

import numpy as np
import pytest

from mpitune.samplers import SAMPLERS, History
from mpitune.space import Categorical, Integer, Real, Space
from mpitune.table import COMPLETE, FAILED

MIXED = Space({"x": Real(-1, 2), "lr": Real(1e-4, 1, log=True), "n": Integer(1, 9),
               "m": Integer(2, 64, log=True), "s": Integer(0, 20, step=5),
               "c": Categorical(["a", "b", "c"]), "k": 3})
CONDITIONAL = Space({"opt": Categorical(["sgd", "adam", "rms"]),
                     "momentum": Real(0, 0.99, when={"opt": "sgd"}),
                     "beta": Real(0.8, 0.999, when={"opt": ["adam", "rms"]}),
                     "nest": Categorical([True, False], when={"opt": "sgd"}),
                     "depth": Integer(1, 6)})

ALL = sorted(set(SAMPLERS) - {"grid"})  # a grid's points do not depend on the history


def loss_of(space: Space, x: np.ndarray) -> np.ndarray:
    """A smooth loss of the unit coordinates, inactive ones counting as 0.3."""
    return ((np.nan_to_num(x, nan=0.3) - 0.3) ** 2).sum(axis=1)


def make_history(space: Space, m: int, p: int, seed: int = 0, failed: int = 0,
                 constant: bool = False) -> History:
    rng = np.random.default_rng(seed)
    x = space.mask(space.snap(rng.random((m, space.ndim))))
    loss = np.ones(m) if constant else loss_of(space, x)
    state = np.full(m, COMPLETE, dtype=np.uint8)
    loss[:failed] = np.nan
    state[:failed] = FAILED
    pending = space.mask(space.snap(rng.random((p, space.ndim))))
    return History(space, x=x, loss=loss, state=state, pending=pending, n_total=m + p)


def fresh(name: str, space: Space, seed: int = 3, budget: int = 100):
    s = SAMPLERS[name]()
    s.bind(space, seed, budget)
    return s


def check_points(space: Space, points: np.ndarray, n: int) -> None:
    points = np.asarray(points)
    assert points.shape == (n, space.ndim) and points.dtype.kind == "f"
    finite = points[~np.isnan(points)]
    assert np.all((finite >= 0.0) & (finite < 1.0))
    masked = space.mask(np.nan_to_num(points, nan=0.5))
    snapped = space.snap(masked)
    for j, dim in enumerate(space.dims):
        if not isinstance(dim, Real):  # the space snaps them; the user sees a valid value
            values = space.columns(snapped)[j][~np.isnan(snapped[:, j])]
            assert all(dim.to_user(dim.to_unit([v]))[0] == v for v in values)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("space", [MIXED, CONDITIONAL], ids=["mixed", "conditional"])
@pytest.mark.parametrize("n", [1, 8])
def test_model_phase_shapes_and_bounds(name, space, n):
    points = fresh(name, space).suggest(n, make_history(space, 40, 7))
    check_points(space, points, n)


@pytest.mark.parametrize("name", ALL)
def test_model_phase_is_deterministic_and_resumable(name):
    h = make_history(MIXED, 30, 5)
    a = fresh(name, MIXED).suggest(6, h)
    b = fresh(name, MIXED).suggest(6, make_history(MIXED, 30, 5))  # a "resumed" sampler
    np.testing.assert_array_equal(a, b)
    c = fresh(name, MIXED, seed=4).suggest(6, h)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("kind", ["failed", "all_failed", "constant", "no_pending",
                                  "many_pending", "one_result"])
def test_odd_histories(name, kind):
    h = {"failed": lambda: make_history(MIXED, 30, 4, failed=10),
         "all_failed": lambda: make_history(MIXED, 20, 4, failed=20),
         "constant": lambda: make_history(MIXED, 30, 4, constant=True),
         "no_pending": lambda: make_history(MIXED, 30, 0),
         "many_pending": lambda: make_history(MIXED, 12, 200),
         "one_result": lambda: make_history(MIXED, 1, 30)}[kind]()
    check_points(MIXED, fresh(name, MIXED).suggest(5, h), 5)


@pytest.mark.parametrize("name", ALL)
def test_batch_points_are_distinct(name):
    space = Space({"a": Real(0, 1), "b": Real(0, 1), "c": Real(0, 1)})
    points = fresh(name, space).suggest(8, make_history(space, 40, 8))
    assert len(np.unique(np.round(points, 9), axis=0)) == 8


@pytest.mark.parametrize("name", ALL)
def test_single_dimension_and_large_history(name):
    space = Space({"a": Real(0, 1)})
    check_points(space, fresh(name, space).suggest(4, make_history(space, 300, 20)), 4)
