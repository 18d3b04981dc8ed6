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
    (COND, 4, "gp"),
    (SMALL_DISCRETE, 12, "grid"),
    (SMALL_DISCRETE, 100, "grid"),
    (SMALL_DISCRETE, 11, "gp"),
    (COND, 5, "grid"),  # 4 values of n for c == x, and c == y: 5 configurations
    (Space({f"x{i}": Real(0, 1) for i in range(40)}), 200, "cmaes"),
    (Space({f"x{i}": Real(0, 1) for i in range(40)} | {"c": Categorical([1, 2])}), 200,
     "tpe"),
    (Space({"k": 3}), 10, "random"),
    (CONT, 0, "random"),  # max_trials = 0: no model to fit, nothing to say about one
])
def test_choice(space, budget, name):
    got, why = choose(space, budget)
    assert got == name and why


def test_grid_size():
    assert grid_size(SMALL_DISCRETE) == 12
    assert grid_size(CONT) is None
    assert grid_size(COND) == 5  # an inactive n does not multiply the configurations
    nested = Space({"o": Categorical(["a", "b"]), "p": Categorical([1, 2, 3], when={"o": "a"}),
                    "k": Integer(1, 4, when={"p": [1, 2]}), "j": Integer(0, 1)})
    assert grid_size(nested) == ((2 * 4 + 1) + 1) * 2
    # more values than a grid lists: no grid, and no attempt to list them (MemoryError)
    assert grid_size(Space({"n": Integer(0, 2**45), "c": Categorical([1, 2])})) is None
    assert choose(Space({"n": Integer(0, 2**45)}), 100)[0] == "gp"


def test_auto_switching_to_grid_on_resume_runs_the_rest_of_the_grid_once():
    """10 distinct trials ran under another sampler: the grid auto now picks proposes the
    20 other configurations, in an order that depends on the history only."""
    space = Space({"a": Integer(0, 5), "c": Categorical(["p", "q", "r", "s", "t"])})
    auto = AutoSampler()
    auto.bind(space, 2, 40)
    assert repr(auto).startswith("auto: grid (") and auto.capacity() == 30
    rng = np.random.default_rng(1)
    ran = np.unique(space.snap(rng.random((40, 2))), axis=0)[:10]
    h = History(space, x=ran[:8], loss=np.zeros(8), state=np.ones(8, np.uint8),
                pending=ran[8:], n_total=10)
    rest = auto.suggest(20, h)
    every = {tuple(r) for r in space.rows(np.vstack([ran, rest]))}
    assert len(every) == 30
    np.testing.assert_array_equal(rest, auto.suggest(20, h))


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
