"""Unit tests of the grid sampler (mpitune/samplers/_grid.py)."""

from __future__ import annotations

import itertools
import tracemalloc

import numpy as np
import pytest

from mpitune.errors import SpecError
from mpitune.samplers import make_sampler
from mpitune.samplers._base import History
from mpitune.samplers._grid import GridSampler
from mpitune.space import Categorical, Integer, Real, Space
from mpitune.suggester import Suggester, configs_to_unit
from mpitune.table import COMPLETE, FAILED, INTERRUPTED, TrialTable

SMALL = Space({"n": Integer(1, 3), "c": Categorical(["a", "b", {"k": [1]}, 4]),
               "lr": Real(1e-4, 1e-2, log=True), "k": 7})
SMALL_N = 3 * 4 * 2


def history(space: Space, n_total: int, x=None, pending=None) -> History:
    """A real History: ``x`` finished rows (all complete), ``pending`` running ones."""
    d = space.ndim
    x = np.empty((0, d)) if x is None else np.asarray(x, dtype=float)
    pending = np.empty((0, d)) if pending is None else np.asarray(pending, dtype=float)
    return History(space, x=x, loss=np.zeros(len(x)), state=np.ones(len(x), dtype=np.uint8),
                   pending=pending, n_total=n_total)


def grid(space: Space = SMALL, seed: int = 1, **kwargs) -> GridSampler:
    kwargs.setdefault("levels", 2)
    sampler = GridSampler(**kwargs)
    sampler.bind(space, seed)
    return sampler


def user_rows(space: Space, sampler: GridSampler, start: int, n: int) -> list[tuple]:
    return space.rows(sampler.suggest(n, history(space, start)))


def as_key(row: tuple) -> str:
    """Exact: grid values reach the objective as written (1e-4, not 1.0000000000000005e-4;
    the top of a range as itself, although samplers propose [0, 1))."""
    return repr(row)


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
    used = history(SMALL, SMALL_N, x=first[:-3], pending=first[-3:])
    np.testing.assert_array_equal(s.suggest(10, used), first[:10])


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
        h = history(SMALL, total, x=a[:total // 2], pending=a[total // 2: total])
        got = kept.suggest(size, h)
        np.testing.assert_array_equal(got, grid(seed=5).suggest(size, h))
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
    before = s.suggest(50, history(space, 0))
    points = s.suggest(200, history(space, 50, x=before))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2_000_000
    assert s.capacity() == per_dim**dims
    assert points.shape == (200, dims) and np.all((points >= 0) & (points < 1))
    assert len(np.unique(points, axis=0)) == 200
    combos = s.combinations(50, 200)
    digits = np.array(space.rows(points)) - 1
    expected = [int("".join(map(str, row))) for row in digits]  # base-10 digits
    assert [int(c) for c in combos] == expected


def test_without_dimensions_and_repr():
    space = Space({"k": 1})
    s = grid(space)
    assert s.capacity() == 1 and s.suggest(3, history(space, 0)).shape == (3, 0)
    assert repr(GridSampler(levels=3, seed=2)) == (
        "GridSampler(values={}, levels=3, seed=2, shuffle=True)")


def test_resume_after_other_trials_runs_each_configuration_once():
    """Trials of another sampler (some repeated, one failed, some running) come first:
    the grid proposes exactly the configurations they did not hold, each once, and the
    same history gives the same points."""
    space = Space({"a": Integer(0, 5), "c": Categorical(["p", "q", "r", "s", "t"])})
    s = grid(space, seed=2)
    rng = np.random.default_rng(4)
    ran = space.snap(rng.random((12, 2)))  # not snapped exactly as stored: snap() is done
    ran = np.vstack([ran, ran[:3], rng.random((2, 2))])  # repeats and raw unit values
    done = {tuple(r) for r in space.rows(ran)}
    h = History(space, x=ran[:-4], loss=np.r_[np.zeros(len(ran) - 5), np.nan],
                state=np.r_[np.ones(len(ran) - 5), 2].astype(np.uint8), pending=ran[-4:],
                n_total=len(ran))
    assert s.remaining(h) == 30 - len(done)
    rest = s.suggest(30 - len(done), h)
    rows = {tuple(r) for r in space.rows(rest)}
    assert len(rows) == len(rest) and not rows & done and len(rows | done) == 30
    np.testing.assert_array_equal(rest, grid(space, seed=2).suggest(len(rest), h))


@pytest.mark.parametrize("shuffle", [True, False])
def test_explicit_real_values_and_foreign_reals_in_the_history(shuffle):
    """A grid Real value in the history counts as run; another sampler's real does not."""
    s = grid(SMALL, shuffle=shuffle)
    first = s.suggest(5, history(SMALL, 0))
    foreign = first[:1].copy()
    foreign[:, 2] = 0.3  # lr off the grid's two levels
    h = history(SMALL, 6, x=np.vstack([first, foreign]))
    assert s.remaining(h) == SMALL_N - 5
    np.testing.assert_array_equal(s.suggest(SMALL_N - 5, h),
                                  s.suggest(SMALL_N, history(SMALL, 0))[5:])


COND2 = Space({"o": Categorical(["a", "b"]), "m": Real(0.0, 1.0, when={"o": "a"}),
               "k": Integer(1, 3, when={"o": "b"})})


@pytest.mark.parametrize("shuffle", [True, False])
def test_conditional_space_enumerates_active_configurations_once(shuffle):
    s = grid(COND2, levels=5, shuffle=shuffle)
    assert s.capacity() == 5 + 3
    points = s.suggest(8, history(COND2, 0))
    np.testing.assert_array_equal(COND2.mask(points), points)  # nan where inactive
    rows = [tuple(sorted(r.items())) for r in COND2.rows(points)]
    assert len(set(rows)) == 8
    assert sorted(r for r in rows if r[1] == ("o", "b")) == [
        (("k", k), ("o", "b")) for k in (1, 2, 3)]
    np.testing.assert_array_equal(s.suggest(3, history(COND2, 8, x=points)), points[:3])


def test_nested_conditions_count_each_active_configuration():
    space = Space({"o": Categorical(["a", "b"]), "p": Categorical([1, 2, 3], when={"o": "a"}),
                   "k": Integer(1, 4, when={"p": [1, 2]}), "j": Integer(0, 1)})
    s = grid(space)
    n = s.capacity()
    assert n == ((2 * 4 + 1) + 1) * 2
    rows = [tuple(sorted(r.items())) for r in space.rows(s.suggest(n, history(space, 0)))]
    assert len(set(rows)) == n



def test_an_integer_with_more_values_than_a_grid_lists_is_refused_in_one_line():
    """Integer(0, 2**45) used to end in a MemoryError listing its 3.5e13 values; now a
    SpecError names the parameter and the way out, and given values are fine."""
    space = Space({"x": Real(0, 1), "n": Integer(0, 2**45)})
    with pytest.raises(SpecError, match=r"'n' has 35184372088833 values .*values=") as info:
        grid(space)
    assert "\n" not in str(info.value)
    s = grid(space, values={"n": [0, 2**20, 2**45]})
    assert s.capacity() == s.levels * 3
    stepped = Space({"n": Integer(0, 2**45, step=2**30)})  # 32769 values: listed
    assert grid(stepped).capacity() == 2**15 + 1


def test_a_grid_far_past_float_range_works_with_python_ints():
    """400 parameters of 10 values: 10**400 combinations, no float overflow."""
    space = Space({f"i{j}": Integer(0, 9) for j in range(400)})
    s = grid(space, seed=1)
    assert s.capacity() == 10**400
    first = s.suggest(5, history(space, 0))
    more = s.suggest(5, history(space, 5, x=first[:3], pending=first[3:]))
    both = np.vstack([first, more])
    assert len(np.unique(both, axis=0)) == 10
    assert [int(c) for c in s.combinations(0, 10)] == [
        int("".join(map(str, row))) for row in space.rows(both)]


@pytest.mark.parametrize("dim, levels", [
    (Real(0.0, 1.0), 6), (Real(0.0, 1.0), 11), (Real(0.1, 0.9), 5), (Real(-5.0, 10.0), 4),
    (Real(2.0, 64.0, log=True), 6), (Real(2.0, 64.0, log=True), 7),
    (Real(1e-5, 1e-1, log=True), 5)])
def test_explicit_reals_are_the_grid_points_they_show(dim, levels):
    """A configuration that gives a real as the grid shows it (``0.3``, ``0.6``, the top
    of the range, ``np.geomspace``'s interior values) is that grid point, although its unit
    value differs in the last bits (the top: 1 against the largest float below 1); a value
    1e-9 of the range away is not. Before, such configurations ran a second time."""
    space = Space({"x": dim, "c": Categorical(["a", "b"])})
    s = grid(space, levels=levels)
    shown = space.rows(s.suggest(2 * levels, history(space, 0)))
    configs = configs_to_unit(space, [{"x": x, "c": c} for x, c in shown])
    assert not np.array_equal(configs, s.suggest(2 * levels, history(space, 0)))
    assert s.remaining(history(space, 0, pending=configs)) == 0
    np.testing.assert_array_equal(
        np.sort(s._blocks.numbers(configs).astype(np.int64)), np.arange(2 * levels))
    step = 1e-9 * (dim.high - dim.low)
    nudged = [{"x": x + step if x < dim.high else x - step, "c": c} for x, c in shown]
    assert s.remaining(history(space, 0, pending=configs_to_unit(space, nudged))) == \
        2 * levels


def drain(sug: Suggester, table: TrialTable) -> np.ndarray:
    """Everything the suggester hands out, recorded as the master does (an "A" event, then
    the trial finishes), until it has nothing left; the new rows."""
    start = table.n
    while True:
        rerun, new = sug.take(5)
        if rerun:
            table.finish(rerun, [COMPLETE] * len(rerun), [0.0] * len(rerun),
                         [0.0] * len(rerun), [1.0] * len(rerun))
        if new is None or not len(new):
            if not rerun:
                return table.unit.data[start:]
            continue
        numbers = table.add(new)
        table.finish(numbers, [COMPLETE] * len(numbers), [0.0] * len(numbers),
                     [0.0] * len(numbers), [1.0] * len(numbers))


GRID12 = Space({"c": Categorical(["a", "b", "c"]), "n": Integer(1, 4)})


@pytest.mark.parametrize("sampler", ["grid", "auto"])
def test_budget_after_other_trials_is_the_file_plus_the_grid_configurations_it_lacks(sampler):
    """8 trials of another sampler, 5 distinct configurations (repeats, a failed and an
    interrupted one among them): the budget is those 8 plus the 7 configurations they lack,
    and the grid hands out exactly those 7. It used to be max(12, 8): 4 of the 7 ran."""
    table = TrialTable(GRID12.ndim)
    ran = GRID12.to_unit([{"c": c, "n": n} for c, n in
                          [("a", 1), ("b", 2), ("a", 1), ("c", 4), ("b", 2), ("a", 3), ("c", 4),
                           ("b", 3)]])
    numbers = table.add(ran)
    table.finish(numbers[:6], [COMPLETE, COMPLETE, FAILED, COMPLETE, COMPLETE, COMPLETE],
                 np.zeros(6), np.zeros(6), np.ones(6))
    table.finish(numbers[6:], [INTERRUPTED] * 2, np.full(2, np.nan), np.zeros(2), np.ones(2))
    s = make_sampler(sampler)
    s.bind(GRID12, 3, budget=100)
    sug = Suggester(s, GRID12, table, batch_size=4, direction="minimize")
    assert sug.budget(100) == 8 + 7 and sug.budget(10) == 10
    assert sug.plan(100) == (" (all the sampler has: 8 in the file + 7 of the grid's 12 "
                             "configurations not among them)")
    assert sug.record(100) == {"budget": 15, "sampler_end": {
        "trials": 15, "of": "grid", "configurations": 12, "left": 7}}
    new = drain(sug, table)
    rows = GRID12.rows(new)
    assert len(rows) == 7 and len(set(rows)) == 7
    assert set(rows) | set(GRID12.rows(ran)) == {(c, n) for c in "abc" for n in range(1, 5)}
    assert (table.state.data == COMPLETE).sum() == 14  # the two interrupted ran again
    # resumed, the grid is used up: nothing to add
    again = Suggester(s, GRID12, table, batch_size=4, direction="minimize")
    assert again.budget(100) == 15 and again.sampler_left == 0
    rerun, new = again.take(4)
    assert rerun == [] and len(new) == 0


def test_explicit_configurations_that_are_grid_points_count_as_those_points():
    """Configurations on the grid (a real at its top, given as the range's bound, and
    one listed twice) run as given and count as their grid points; one off the grid runs in
    addition. It used to be len(configs) + N trials: the grid cycled through its first
    points again."""
    space = Space({"c": Categorical(["a", "b"]), "x": Real(0.0, 1.0)})
    s = grid(space, levels=3)  # x in 0, 0.5, 1: 6 configurations
    given = [{"c": "a", "x": 1.0}, {"c": "b", "x": 0.5}, {"c": "a", "x": 0.3},
             {"c": "b", "x": 0.5}]
    configs = configs_to_unit(space, given)
    table = TrialTable(space.ndim)
    sug = Suggester(s, space, table, batch_size=2, direction="minimize", configs=configs)
    assert sug.budget(100) == 4 + 4
    assert sug.plan(100) == (" (all the sampler has: 4 explicit configurations + 4 of the "
                             "grid's 6 configurations not among them)")
    rows = space.rows(drain(sug, table))
    assert rows[:4] == [tuple(c.values()) for c in given]
    assert sorted(set(rows[4:]) | set(rows[:2])) == [
        (c, x) for c in "ab" for x in (0.0, 0.5, 1.0)]
    assert len(rows) == 8 and len(set(rows[4:])) == 4


def test_a_resumed_grid_proposes_what_the_uninterrupted_one_would_have():
    """Stopped after any number of trials (some of them interrupted, to run again), the
    grid continues with the configurations the uninterrupted search gave the same trial
    numbers, after trials of another sampler too."""
    rng = np.random.default_rng(7)
    ran = GRID12.snap(rng.random((6, 2)))

    def search(stops: list) -> np.ndarray:
        table = TrialTable(GRID12.ndim)
        numbers = table.add(ran)
        table.finish(numbers, [COMPLETE] * 6, np.zeros(6), np.zeros(6), np.ones(6))
        for stop in stops + [None]:
            s = grid(GRID12, seed=4)
            sug = Suggester(s, GRID12, table, batch_size=3, direction="minimize")
            while stop is None or table.n < stop:
                rerun, new = sug.take(2)
                if new is None or not len(new):
                    if not rerun:
                        break
                    table.finish(rerun, [COMPLETE] * len(rerun), np.zeros(len(rerun)),
                                 np.zeros(len(rerun)), np.ones(len(rerun)))
                    continue
                numbers = table.add(new)
                table.finish(rerun + numbers[:1].tolist(), [COMPLETE] * (len(rerun) + 1),
                             np.zeros(len(rerun) + 1), np.zeros(len(rerun) + 1),
                             np.ones(len(rerun) + 1))
                table.finish(numbers[1:], [INTERRUPTED] * (len(numbers) - 1),
                             np.full(len(numbers) - 1, np.nan), np.zeros(len(numbers) - 1),
                             np.ones(len(numbers) - 1))
            # whatever was left queued is lost, as when a job ends
        return table.unit.data.copy()

    whole = search([])
    assert len({tuple(r) for r in GRID12.rows(whole)}) == 12
    for stops in ([7], [8, 11], [9, 10, 12]):
        np.testing.assert_array_equal(search(stops), whole)


def test_budget_in_a_conditional_space_with_a_real():
    """COND2's grid: 5 values of the real m where o == "a", 3 of the integer k where
    o == "b" (8 configurations; the inactive one multiplies nothing). Random trials hold
    the k configurations they hit but none of m's (a random real is no grid value);
    explicit configurations hold m's top and a k value, one with m off the grid holds none.
    The grid then adds exactly the configurations none of them holds."""
    rng = np.random.default_rng(2)
    ran = COND2.mask(COND2.snap(rng.random((6, 3))))  # 4 with o == "a"; k = 1 and 3
    table = TrialTable(COND2.ndim)
    numbers = table.add(ran)
    table.finish(numbers, [COMPLETE] * 6, np.zeros(6), np.zeros(6), np.ones(6))
    given = [{"o": "a", "m": 1.0}, {"o": "b", "k": 2}, {"o": "a", "m": 0.33}]
    s = grid(COND2, levels=5)
    sug = Suggester(s, COND2, table, batch_size=3, direction="minimize",
                    configs=configs_to_unit(COND2, given))

    def key(row: dict) -> tuple:
        return tuple(sorted(row.items()))

    every = {key({"o": "a", "m": m}) for m in (0.0, 0.25, 0.5, 0.75, 1.0)} | {
        key({"o": "b", "k": k}) for k in (1, 2, 3)}
    held = {key(r) for r in COND2.rows(ran)} & every
    assert 0 < len(held) < 3 and all(dict(h)["o"] == "b" for h in held)
    held |= {key(given[0]), key(given[1])}
    assert len(held) == 4 and sug.budget(100) == 6 + 3 + 8 - 4
    new = [key(r) for r in COND2.rows(drain(sug, table))]
    assert new[:3] == [key(c) for c in given]
    assert len(set(new[3:])) == len(new[3:]) == 8 - len(held)
    assert set(new[3:]) | held == every
