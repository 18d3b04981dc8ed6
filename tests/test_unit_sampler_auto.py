"""The auto sampler: which algorithm it picks for a space and a budget, and that it then
behaves exactly like that algorithm."""

from __future__ import annotations

import numpy as np
import pytest

from mpitune.samplers import SAMPLERS, AutoSampler, History
from mpitune.samplers._auto import GP_MAX_TRIALS, choose, grid_size
from mpitune.space import Categorical, Integer, Real, Space

CONT = Space({"a": Real(0, 1), "b": Real(1e-3, 1, log=True)})
SMALL_DISCRETE = Space({"n": Integer(1, 4), "c": Categorical(["x", "y", "z"])})
COND = Space({"c": Categorical(["x", "y"]), "n": Integer(1, 4, when={"c": "x"})})


@pytest.mark.parametrize("space, budget, name", [
    (CONT, 100, "gp"),
    (CONT, GP_MAX_TRIALS, "gp"),
    (CONT, GP_MAX_TRIALS + 1, "cmaes"),
    (CONT, None, "cmaes"),
    (Space({"a": Real(0, 1), "c": Categorical(["x", "y"])}), 5000, "tpe"),
    (COND, 5000, "tpe"),
    (SMALL_DISCRETE, 12, "grid"),
    (SMALL_DISCRETE, 100, "grid"),
    (SMALL_DISCRETE, 11, "gp"),
    (COND, 100, "gp"),  # conditional: not a plain grid
    (Space({f"x{i}": Real(0, 1) for i in range(40)}), 200, "cmaes"),
    (Space({f"x{i}": Real(0, 1) for i in range(40)} | {"c": Categorical([1, 2])}), 200,
     "tpe"),
    (Space({"k": 3}), 10, "random"),
])
def test_choice(space, budget, name):
    got, why = choose(space, budget)
    assert got == name and why


def test_grid_size():
    assert grid_size(SMALL_DISCRETE) == 12
    assert grid_size(CONT) is None and grid_size(COND) is None


@pytest.mark.parametrize("space, budget", [(CONT, 50), (CONT, 5000), (SMALL_DISCRETE, 20)])
def test_auto_behaves_like_its_choice(space, budget):
    auto = AutoSampler()
    auto.bind(space, 9, budget)
    name = choose(space, budget)[0]
    assert repr(auto).startswith(f"auto: {name} (")
    twin = SAMPLERS[name]()
    twin.bind(space, 9, budget)
    rng = np.random.default_rng(0)
    x = space.snap(rng.random((30, space.ndim)))
    h = History(space, x=x, loss=(x**2).sum(1), state=np.ones(30, np.uint8),
                pending=np.empty((0, space.ndim)), n_total=30)
    np.testing.assert_array_equal(auto.suggest(4, h), twin.suggest(4, h))
    assert auto.capacity() == twin.capacity()
