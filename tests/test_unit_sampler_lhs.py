"""Unit tests of the Latin hypercube sampler (mpitune/samplers/_qmc.py)."""

from __future__ import annotations

import numpy as np
import pytest

from mpitune.errors import SpecError
from mpitune.samplers._base import History
from mpitune.samplers._qmc import LatinHypercubeSampler
from mpitune.space import Categorical, Integer, Real, Space

SPACE = Space({"x": Real(0, 1), "lr": Real(1e-4, 1, log=True), "n": Integer(1, 9),
               "c": Categorical(["a", "b", "c"]), "k": 3})
CUBE = Space({f"p{i}": Real(0, 1) for i in range(5)})


def history(space: Space, n_total: int) -> History:
    d = space.ndim
    return History(space, x=np.empty((0, d)), loss=np.empty(0),
                   state=np.empty(0, dtype=np.uint8), pending=np.empty((0, d)), n_total=n_total)


def lhs(seed: int = 1, space: Space = SPACE, budget=None, **kwargs) -> LatinHypercubeSampler:
    sampler = LatinHypercubeSampler(**kwargs)
    sampler.bind(space, seed, budget)
    return sampler


@pytest.mark.parametrize("n", [1, 7, 300])
def test_shape_dtype_and_range(n):
    points = lhs().suggest(n, history(SPACE, 0))
    assert points.shape == (n, SPACE.ndim) and points.dtype == np.float64
    assert np.all((points >= 0.0) & (points < 1.0))


def test_deterministic_for_a_seed_and_seeds_differ():
    a = lhs(7).suggest(20, history(SPACE, 3))
    np.testing.assert_array_equal(a, lhs(7).suggest(20, history(SPACE, 3)))
    assert not np.allclose(a, lhs(8).suggest(20, history(SPACE, 3)))


@pytest.mark.parametrize("batches", [[4, 4, 4], [1, 5, 2, 8], [30, 1, 30]])
def test_resume_and_batching_give_the_same_points(batches):
    """Point i is row i % block of block i // block, whoever asks and in what batches."""
    whole = lhs(block=16).suggest(sum(batches), history(SPACE, 0))
    kept, total = lhs(block=16), 0
    for size in batches:
        fresh = lhs(block=16).suggest(size, history(SPACE, total))
        np.testing.assert_array_equal(kept.suggest(size, history(SPACE, total)), fresh)
        np.testing.assert_array_equal(fresh, whole[total: total + size])
        total += size
    # going back to an earlier position (one object serving a second search)
    np.testing.assert_array_equal(kept.suggest(5, history(SPACE, 0)), whole[:5])


@pytest.mark.parametrize("block", [1, 10, 64])
def test_every_block_is_stratified(block):
    points = lhs(3, CUBE, block=block).suggest(3 * block, history(CUBE, 0))
    for k in range(3):
        part = points[k * block: (k + 1) * block]
        for j in range(CUBE.ndim):
            strata = np.sort(np.floor(part[:, j] * block).astype(int))
            np.testing.assert_array_equal(strata, np.arange(block))
    assert not np.allclose(points[:block], points[block: 2 * block])


def test_stratified_across_batches_of_one_search():
    sampler, parts = lhs(5, CUBE, block=12), []
    for start, size in ((0, 5), (5, 1), (6, 6)):
        parts.append(sampler.suggest(size, history(CUBE, start)))
    strata = np.sort(np.floor(np.vstack(parts) * 12).astype(int), axis=0)
    np.testing.assert_array_equal(strata, np.tile(np.arange(12)[:, None], (1, CUBE.ndim)))


def test_default_block_follows_the_budget():
    assert lhs().block_size() == 256
    assert lhs(budget=100).block_size() == 100
    assert lhs(budget=10**6).block_size() == 4096
    assert lhs(budget=100, block=8).block_size() == 8
    points = lhs(2, CUBE, budget=40).suggest(40, history(CUBE, 0))
    for j in range(CUBE.ndim):
        assert sorted(np.floor(points[:, j] * 40).astype(int)) == list(range(40))


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "8"])
def test_bad_block_is_a_spec_error(bad):
    with pytest.raises(SpecError, match="block"):
        LatinHypercubeSampler(block=bad)


def test_without_dimensions_and_repr():
    space = Space({"k": 1})
    assert lhs(space=space).suggest(3, history(space, 0)).shape == (3, 0)
    assert repr(lhs(4, block=9)) == "LatinHypercubeSampler(seed=4, block=9)"


def test_categorical_and_integer_values_are_balanced():
    """One block of 9 points: each of the 9 integers and each choice 3 times."""
    rows = SPACE.rows(lhs(6, block=9).suggest(9, history(SPACE, 0)))
    assert sorted(r[2] for r in rows) == list(range(1, 10))
    assert sorted(r[3] for r in rows) == ["a"] * 3 + ["b"] * 3 + ["c"] * 3
