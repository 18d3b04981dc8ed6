"""Unit tests of the grid sampler (mpitune/samplers/_grid.py)."""

from __future__ import annotations

import itertools
import tracemalloc

import numpy as np
import pytest

from mpitune.errors import SpecError
from mpitune.samplers._base import History
from mpitune.samplers._grid import GridSampler
from mpitune.space import Categorical, Integer, Real, Space

SMALL = Space({"n": Integer(1, 3), "c": Categorical(["a", "b", {"k": [1]}, 4]),
               "lr": Real(1e-4, 1e-2, log=True), "k": 7})
SMALL_N = 3 * 4 * 2


def history(space: Space, n_total: int) -> History:
    d = space.ndim
    return History(space, x=np.empty((0, d)), loss=np.empty(0),
                   state=np.empty(0, dtype=np.uint8), pending=np.empty((0, d)), n_total=n_total)


def grid(space: Space = SMALL, seed: int = 1, **kwargs) -> GridSampler:
    kwargs.setdefault("levels", 2)
    sampler = GridSampler(**kwargs)
    sampler.bind(space, seed)
    return sampler


def user_rows(space: Space, sampler: GridSampler, start: int, n: int) -> list[tuple]:
    return space.rows(sampler.suggest(n, history(space, start)))


def as_key(row: tuple) -> str:
    """Reals to 12 significant digits: the top of a Real range maps to the largest float
    below 1, which can give ``high`` less an ulp."""
    return repr(tuple(float(f"{v:.12g}") if isinstance(v, float) else v for v in row))


ALL_SMALL = [(n, c, lr) for n in (1, 2, 3) for c in ("a", "b", {"k": [1]}, 4)
             for lr in (1e-4, 1e-2)]


@pytest.mark.parametrize("shuffle", [True, False])
def test_first_n_points_are_every_combination_once(shuffle):
    s = grid(shuffle=shuffle)
    assert s.capacity() == SMALL_N
    rows = user_rows(SMALL, s, 0, SMALL_N)
    assert sorted(map(as_key, rows)) == sorted(map(as_key, ALL_SMALL))
    if not shuffle:  # lexicographic, last parameter fastest
        assert list(map(as_key, rows)) == list(map(as_key, ALL_SMALL))
    else:
        assert rows != ALL_SMALL


@pytest.mark.parametrize("shuffle", [True, False])
def test_past_capacity_it_cycles(shuffle):
    s = grid(shuffle=shuffle)
    first = s.suggest(SMALL_N, history(SMALL, 0))
    np.testing.assert_array_equal(s.suggest(10, history(SMALL, SMALL_N + 3)), first[3:13])


def test_shape_dtype_range_and_cell_centres():
    points = grid().suggest(50, history(SMALL, 0))
    assert points.shape == (50, 3) and points.dtype == np.float64
    assert np.all((points >= 0.0) & (points < 1.0))
    np.testing.assert_array_equal(SMALL.snap(points), points)


def test_deterministic_resume_and_seeds():
    a = grid(seed=5).suggest(SMALL_N, history(SMALL, 0))
    np.testing.assert_array_equal(a, grid(seed=5).suggest(SMALL_N, history(SMALL, 0)))
    assert not np.array_equal(a, grid(seed=6).suggest(SMALL_N, history(SMALL, 0)))
    kept, total = grid(seed=5), 0
    for size in (1, 4, 2, 9, 8):
        got = kept.suggest(size, history(SMALL, total))
        np.testing.assert_array_equal(got, grid(seed=5).suggest(size, history(SMALL, total)))
        np.testing.assert_array_equal(got, a[total: total + size])
        total += size


def test_default_values_per_kind():
    space = Space({"x": Real(0, 10), "lr": Real(1e-4, 1, log=True), "s": Integer(0, 10, step=5),
                   "g": Integer(1, 4, log=True), "b": Categorical([True, False])})
    s = grid(space, levels=5, shuffle=False)
    assert s.capacity() == 5 * 5 * 3 * 4 * 2
    columns = list(zip(*user_rows(space, s, 0, s.capacity())))
    assert sorted(set(columns[0])) == pytest.approx([0.0, 2.5, 5.0, 7.5, 10.0], rel=1e-14)
    assert sorted(set(columns[1])) == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1, 1.0], rel=1e-14)
    assert sorted(set(columns[2])) == [0, 5, 10]
    assert sorted(set(columns[3])) == [1, 2, 3, 4]
    assert set(columns[4]) == {True, False}
    one = grid(Space({"x": Real(2, 4)}), levels=1)
    assert one.capacity() == 1 and user_rows(one.space, one, 0, 1) == [(3.0,)]


def test_explicit_values_are_kept_in_the_given_order():
    space = Space({"lr": Real(1e-5, 1, log=True), "m": Real(0, 0.99), "n": Integer(2, 64, step=2),
                   "c": Categorical(["x", "y", "z"])})
    values = {"lr": [3e-4, 1e-3, 1], "m": [0.9, 0.0, 0.99], "n": [64, 32.0], "c": ["z"]}
    s = grid(space, values=values, shuffle=False)
    assert s.capacity() == 3 * 3 * 2 * 1
    rows = user_rows(space, s, 0, s.capacity())
    expected = itertools.product([3e-4, 1e-3, 1.0], [0.9, 0.0, 0.99], [64, 32], ["z"])
    assert list(map(as_key, rows)) == list(map(as_key, expected))
    assert all(type(r[2]) is int for r in rows)


@pytest.mark.parametrize("values, message", [
    ({"lr": [1e-3, 2.0]}, "'lr'.*2.0.*outside"),
    ({"lr": [0.0]}, "'lr'.*0.0.*outside"),
    ({"lr": ["big"]}, "'lr'.*'big'.*number"),
    ({"lr": [float("nan")]}, "'lr'.*nan.*number"),
    ({"n": [3]}, "'n'.*3.*step 2"),
    ({"n": [4.5]}, "'n'.*4.5.*integer"),
    ({"n": [100]}, "'n'.*100.*outside"),
    ({"c": ["w"]}, "'c'.*'w'.*choices"),
    ({"c": [True]}, "'c'.*True.*choices"),
    ({"c": "x"}, "'c'.*non-empty list"),
    ({"c": []}, "'c'.*non-empty list"),
    ({"n": [2, 2.0]}, "'n'.*distinct"),
    ({"nope": [1]}, "'nope'.*not a parameter"),
    ({"k": [1]}, "'k'.*constant"),
])
def test_bad_explicit_values_name_the_parameter(values, message):
    space = Space({"lr": Real(1e-4, 1, log=True), "n": Integer(0, 10, step=2),
                   "c": Categorical(["x", 1]), "k": 3})
    with pytest.raises(SpecError, match=message):
        grid(space, values=values)


@pytest.mark.parametrize("kwargs", [{"levels": 0}, {"levels": 2.5}, {"levels": True},
                                    {"values": [1, 2]}])
def test_bad_constructor_arguments(kwargs):
    with pytest.raises(SpecError, match="GridSampler"):
        GridSampler(**kwargs)


def test_the_shuffle_is_a_bijection_for_many_sizes():
    for sizes in ([1], [2], [3, 2], [6, 10], [7, 11, 13], [2, 2, 2, 2, 2], [97]):
        space = Space({f"p{i}": Integer(1, s) if s > 1 else Categorical(["only"])
                       for i, s in enumerate(sizes)})
        for seed in range(4):
            s = grid(space, seed=seed)
            n = s.capacity()
            combos = s.combinations(0, n)
            assert sorted(combos.tolist()) == list(range(n))
            points = s.suggest(n, history(space, 0))
            assert len(np.unique(points, axis=0)) == n


def test_a_partial_shuffled_grid_is_spread():
    """The first 10 points of a 10 x 10 grid: lexicographic order keeps the first
    parameter at one value, the shuffle covers both parameters widely."""
    space = Space({"a": Integer(0, 9), "b": Integer(0, 9)})
    rows = np.array(user_rows(space, grid(space, seed=3), 0, 10))
    assert len(set(rows[:, 0])) >= 5 and len(set(rows[:, 1])) == 10
    assert len(set(np.array(user_rows(space, grid(space, shuffle=False), 0, 10))[:, 0])) == 1


@pytest.mark.parametrize("per_dim, dims", [(10, 12), (10, 20)])
def test_huge_grid_without_memory(per_dim, dims):
    """10^12 and 10^20 (past int64) combinations: no O(N) memory, still a bijection."""
    space = Space({f"p{i}": Integer(1, per_dim) for i in range(dims)})
    tracemalloc.start()
    s = grid(space, seed=9)
    points = s.suggest(200, history(space, 10**11))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2_000_000
    assert s.capacity() == per_dim**dims
    assert points.shape == (200, dims) and np.all((points >= 0) & (points < 1))
    assert len(np.unique(points, axis=0)) == 200
    combos = s.combinations(10**11, 200)
    digits = np.array(space.rows(points)) - 1
    expected = [int("".join(map(str, row))) for row in digits]  # base-10 digits
    assert [int(c) for c in combos] == expected


def test_without_dimensions_and_repr():
    space = Space({"k": 1})
    s = grid(space)
    assert s.capacity() == 1 and s.suggest(3, history(space, 0)).shape == (3, 0)
    assert repr(GridSampler(levels=3, seed=2)) == (
        "GridSampler(values={}, levels=3, seed=2, shuffle=True)")
