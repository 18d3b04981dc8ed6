"""Unit tests of mpitune.samplers (the contract every registered sampler must keep) and of
mpitune.suggester."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
from scipy.stats import qmc

from mpitune.errors import SpecError
from mpitune.samplers import (
    SAMPLERS,
    History,
    RandomSampler,
    Sampler,
    SobolSampler,
    check_sampler,
    make_sampler,
)
from mpitune.samplers._base import rank_order
from mpitune.samplers._standin import StandInSampler
from mpitune.space import Categorical, Integer, Real, Space
from mpitune.suggester import Suggester
from mpitune.table import COMPLETE, FAILED, INTERRUPTED, PRUNED, RUNNING, TrialTable

SPACE = Space({"x": Real(0, 1), "lr": Real(1e-4, 1, log=True), "n": Integer(1, 9),
               "c": Categorical(["a", "b", "c"]), "k": 3})


def history(space: Space, n_total: int, pending=None) -> History:
    d = space.ndim
    return History(space=space, x=np.empty((0, d)), loss=np.empty(0),
                   state=np.empty(0, dtype=np.uint8),
                   pending=np.empty((0, d)) if pending is None else pending, n_total=n_total)


def fresh(name: str, seed: int = 123, space: Space = SPACE) -> Sampler:
    sampler = SAMPLERS[name]()
    sampler.bind(space, seed)
    return sampler


# ---- the contract, for every sampler in the registry -------------------------------

ALL = sorted(SAMPLERS)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("n", [1, 3, 64])
def test_shape_and_range(name, n):
    points = fresh(name).suggest(n, history(SPACE, 0))
    points = np.asarray(points)
    assert points.shape == (n, SPACE.ndim)
    assert points.dtype.kind == "f"
    assert np.all(points >= 0.0) and np.all(points < 1.0)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("d", [1, 2, 7])
def test_shape_for_other_dimensions(name, d):
    space = Space({f"p{i}": Real(0, 1) for i in range(d)})
    points = np.asarray(fresh(name, space=space).suggest(5, history(space, 10)))
    assert points.shape == (5, d)
    assert np.all((points >= 0.0) & (points < 1.0))


@pytest.mark.parametrize("name", ALL)
def test_deterministic_for_a_seed(name):
    a = np.asarray(fresh(name, 7).suggest(16, history(SPACE, 0)))
    b = np.asarray(fresh(name, 7).suggest(16, history(SPACE, 0)))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ALL)
def test_different_seeds_differ(name):
    a = np.asarray(fresh(name, 1).suggest(16, history(SPACE, 0)))
    b = np.asarray(fresh(name, 2).suggest(16, history(SPACE, 0)))
    assert not np.allclose(a, b)


@pytest.mark.parametrize("name", ALL)
def test_seed_given_to_constructor_wins_over_bind(name):
    own = SAMPLERS[name](seed=5)
    own.bind(SPACE, 999)
    assert own.seed == 5
    np.testing.assert_array_equal(np.asarray(own.suggest(8, history(SPACE, 0))),
                                  np.asarray(fresh(name, 5).suggest(8, history(SPACE, 0))))


@pytest.mark.parametrize("name", ALL)
def test_successive_batches_differ(name):
    s = fresh(name)
    a = np.asarray(s.suggest(8, history(SPACE, 0)))
    b = np.asarray(s.suggest(8, history(SPACE, 8)))
    assert not np.allclose(a, b)
    assert len(np.unique(np.vstack([a, b]), axis=0)) == 16


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("batches", [[4, 4, 4], [1, 5, 2, 8], [3], [16, 16]])
def test_resume_gives_the_same_next_suggestions(name, batches):
    """What a sampler proposes at n_total=k does not depend on what was drawn before."""
    uninterrupted = fresh(name)
    total = 0
    for size in batches:
        expected = np.asarray(uninterrupted.suggest(size, history(SPACE, total)))
        resumed = np.asarray(fresh(name).suggest(size, history(SPACE, total)))
        np.testing.assert_array_equal(resumed, expected)
        total += size


@pytest.mark.parametrize("name", ALL)
def test_one_big_batch_equals_many_small_ones(name):
    big = np.asarray(fresh(name).suggest(12, history(SPACE, 0)))
    s = fresh(name)
    small = np.vstack([np.asarray(s.suggest(3, history(SPACE, k))) for k in (0, 3, 6, 9)])
    np.testing.assert_allclose(small, big)


@pytest.mark.parametrize("name", ALL)
def test_bug_going_back_to_an_earlier_position(name):
    """BUG for "sobol" (samplers/_qmc.py, SobolSampler.suggest): when the engine has moved
    on and ``history.n_total == 0`` it calls ``reset()`` then ``fast_forward(0)``, which
    scipy rejects with ``OverflowError: can't convert negative value to npy_uint32``. This
    happens when one Sampler object serves a second search (``mpitune.run(...,
    sampler=obj)`` twice: make_sampler returns the object itself). Fix: only fast-forward
    when ``history.n_total > 0``."""
    s = fresh(name)
    first = np.asarray(s.suggest(4, history(SPACE, 0)))
    s.suggest(4, history(SPACE, 4))
    np.testing.assert_array_equal(np.asarray(s.suggest(4, history(SPACE, 0))), first)


@pytest.mark.parametrize("name", ALL)
def test_make_sampler_by_name(name):
    sampler = make_sampler(name)
    assert isinstance(sampler, SAMPLERS[name])
    assert make_sampler(name) is not sampler


def scipy_modules_after(code: str, prefix: str = "scipy") -> str:
    """The scipy modules (those named ``prefix...``) a fresh interpreter holds after
    running ``code``, as the text of a sorted list."""
    code += f"\nimport sys; print(sorted(m for m in sys.modules if m.startswith({prefix!r})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_rank_0_code_imports_scipy_only_when_a_sampler_needs_it():
    """Rank 0 checks the spec, settings and results file before it pays for scipy (~1 s):
    importing the master and binding every sampler must not import it."""
    assert scipy_modules_after(
        "from mpitune.master import Master\n"
        "from mpitune.samplers import SAMPLERS, make_sampler\n"
        "from mpitune.space import Real, Space\n"
        "[make_sampler(n).bind(Space({'x': Real(0, 1)}), 0, budget=50) for n in SAMPLERS]"
    ) == "[]"


def test_the_first_batch_of_the_default_samplers_imports_no_scipy_stats():
    """The reason for our own Sobol' generator: scipy.stats costs rank 0 over a second at
    every start. The start-up design of auto (GP), tpe and sobol must not import it."""
    assert scipy_modules_after(
        "import numpy as np\n"
        "from mpitune.samplers import make_sampler\n"
        "from mpitune.samplers._base import History\n"
        "from mpitune.space import Integer, Real, Space\n"
        "space = Space({'x': Real(0, 1), 'k': Integer(1, 9)})\n"
        "for name in ('auto', 'gp', 'tpe', 'sobol'):\n"
        "    s = make_sampler(name); s.bind(space, 3, budget=100)\n"
        "    h = History(space, x=np.empty((0, 2)), loss=np.empty(0), pending=np.empty((0, 2)))\n"
        "    assert s.suggest(8, h).shape == (8, 2)", "scipy.stats") == "[]"


def test_make_sampler_copies_an_object_and_rejects_unknown():
    obj = RandomSampler(seed=1)
    made = make_sampler(obj)
    assert made is not obj  # a search never changes the user's object
    assert type(made) is RandomSampler and made.seed == 1
    check_sampler(obj)
    for bad in ("hillclimb", "", None, RandomSampler):
        with pytest.raises(SpecError, match="sampler"):
            make_sampler(bad)


def test_random_points_are_uniform():
    points = np.asarray(fresh("random").suggest(20_000, history(SPACE, 0)))
    counts, _ = np.histogram(points[:, 0], bins=10, range=(0, 1))
    assert counts.min() > 1_800 and counts.max() < 2_200


def test_sobol_is_more_balanced_than_random():
    space = Space({f"p{i}": Real(0, 1) for i in range(3)})
    sobol = np.asarray(fresh("sobol", 3, space).suggest(256, history(space, 0)))
    rand = np.asarray(fresh("random", 3, space).suggest(256, history(space, 0)))
    assert qmc.discrepancy(sobol) < 0.5 * qmc.discrepancy(rand)
    # every one of 16 strata of each coordinate holds exactly 16 of 256 Sobol points
    for j in range(3):
        counts = np.bincount((sobol[:, j] * 16).astype(int), minlength=16)
        assert counts.tolist() == [16] * 16


def test_sobol_unscrambled_is_deterministic_and_in_range():
    s = SobolSampler(scramble=False)
    s.bind(SPACE, 0)
    points = s.suggest(8, history(SPACE, 0))
    assert np.all((points >= 0) & (points < 1))
    assert repr(s) == "SobolSampler(seed=0, scramble=False)"


def test_sobol_without_dimensions():
    space = Space({"k": 1})
    s = fresh("sobol", space=space)
    assert s.suggest(3, history(space, 0)).shape == (3, 0)


# ---- Suggester -----------------------------------------------------------------------


class Recorder(Sampler):
    """A sampler that remembers every history it was shown and returns distinct points."""

    name = "recorder"

    def __init__(self) -> None:
        super().__init__(0)
        self.calls: list[tuple[int, History]] = []

    def suggest(self, n, history):
        self.calls.append((n, history))
        start = history.n_total
        return (np.arange(start, start + n)[:, None] + np.zeros(history.ndim)) / 1000.0


SMALL = Space({"x": Real(0, 1), "y": Real(0, 1)})


def table_with(states, values=None) -> TrialTable:
    t = TrialTable(SMALL.ndim)
    n = len(states)
    t.add(np.column_stack([np.arange(n) / 100 + 0.5, np.full(n, 0.25)]))
    values = np.arange(n, dtype=float) if values is None else values
    t.finish(np.arange(n), states, values, np.zeros(n), np.ones(n))
    return t


def test_suggester_batches_of_batch_size():
    rec = Recorder()
    table = TrialTable(SMALL.ndim)
    sug = Suggester(rec, SMALL, table, batch_size=4, direction="minimize")
    taken = []
    for _ in range(6):
        rerun, new = sug.take(1)
        assert rerun == [] and new.shape == (1, 2)
        table.add(new)  # as the master does with an "A" event
        taken.append(new[0, 0])
    assert [n for n, _ in rec.calls] == [4, 4]
    np.testing.assert_allclose(taken, np.arange(6) / 1000.0)  # queue order is kept


def test_suggester_asks_a_cost_free_sampler_for_more_than_batch_size_when_needed():
    rec = Recorder()
    rec.cost_free = True  # as random, sobol, lhs and grid
    table = TrialTable(SMALL.ndim)
    sug = Suggester(rec, SMALL, table, batch_size=2, direction="minimize")
    _, new = sug.take(1)
    table.add(new)
    _, new = sug.take(10)  # one left in the queue, 9 more needed
    assert new.shape == (10, 2)
    assert [n for n, _ in rec.calls] == [2, 9]
    np.testing.assert_allclose(new[:, 0], np.arange(1, 11) / 1000.0)


def test_a_model_proposes_a_batch_and_sobol_fills_a_big_chunk():
    """Chunks bigger than a batch only go to workers of very short trials: a model (GP,
    TPE, ...) proposes batch_size of them, the Sobol' stream the rest, at their indexes."""
    rec = Recorder()
    rec.seed = 3
    table = TrialTable(SMALL.ndim)
    sug = Suggester(rec, SMALL, table, batch_size=2, direction="minimize")
    _, new = sug.take(1)
    table.add(new)
    _, new = sug.take(10)  # one left in the queue, 9 more needed: 2 model + 7 Sobol'
    assert new.shape == (10, 2) and [n for n, _ in rec.calls] == [2, 2]
    np.testing.assert_allclose(new[:3, 0], np.arange(1, 4) / 1000.0)
    assert sug.n_fallback == 7
    sobol = SobolSampler(3)
    np.testing.assert_array_equal(new[3:], sobol.suggest(7, history(SMALL, 4)))


def test_history_shows_where_pruned_trials_stopped_in_loss_terms():
    rec = Recorder()
    table = table_with([COMPLETE, PRUNED, PRUNED, FAILED], [0.9, np.nan, np.nan, np.nan])
    table.add_curve([1, 2, 1, 3], [1, 1, 3, 2], [0.2, 0.5, 0.7, 0.1], [0.0] * 4)
    sug = Suggester(rec, SMALL, table, batch_size=2, direction="maximize")
    h = sug.history()
    np.testing.assert_array_equal(h.stop_step, [np.nan, 3, 1, np.nan])
    np.testing.assert_array_equal(h.stop_loss, [np.nan, -0.7, -0.5, np.nan])  # negated
    assert h.ranking().tolist() == [0, 1, 2]  # complete, then further, failed left out


def test_rank_order():
    nan = np.nan
    loss = np.array([0.3, nan, nan, 0.1, nan, nan, nan])
    step = np.array([nan, 9.0, 3.0, nan, 9.0, nan, 27.0])
    stop = np.array([nan, 0.5, 0.0, nan, 0.4, nan, nan])  # trial 6: nan report, trial 5 failed
    assert rank_order(loss, step, stop).tolist() == [3, 0, 4, 1, 2]
    assert rank_order(np.empty(0), np.empty(0), np.empty(0)).tolist() == []
    # without stop information (no pruner) it is the order of the losses
    assert rank_order(loss, np.full(7, nan), np.full(7, nan)).tolist() == [3, 0]


def test_suggester_rejects_wrong_shape():
    class Bad(Recorder):
        def suggest(self, n, history):
            return np.zeros((n, history.ndim + 1))

    sug = Suggester(Bad(), SMALL, TrialTable(SMALL.ndim), batch_size=2, direction="minimize")
    with pytest.raises(RuntimeError, match="shape"):
        sug.take(1)


def test_suggester_clips_points_into_the_cube():
    class Wild(Recorder):
        def suggest(self, n, history):
            return np.array([[-0.5, 1.5]] * n)

    sug = Suggester(Wild(), SMALL, TrialTable(SMALL.ndim), batch_size=1, direction="minimize")
    _, new = sug.take(1)
    assert np.all((new >= 0) & (new <= 1))


def test_suggester_reruns_interrupted_trials_first():
    t = table_with([COMPLETE, INTERRUPTED, FAILED, INTERRUPTED, INTERRUPTED])
    rec = Recorder()
    sug = Suggester(rec, SMALL, t, batch_size=4, direction="minimize")
    assert sug.n_rerun == 3
    assert sug.take(2) == ([1, 3], None)
    assert rec.calls == []
    rerun, new = sug.take(3)
    assert rerun == [4] and new.shape == (2, 2)
    assert sug.n_rerun == 0
    assert all(type(n) is int for n in rerun)
    rerun, new = sug.take(2)
    assert rerun == [] and new.shape == (2, 2)


def test_interrupted_trials_waiting_to_run_again_are_pending():
    """A model asked for new points in the same call that hands out the re-runs must see
    them as running: else, shown the history they were proposed from, it proposes their
    points again (a kill-and-resume run ran a configuration twice)."""
    t = table_with([COMPLETE, INTERRUPTED, COMPLETE, INTERRUPTED, RUNNING])
    rec = Recorder()
    sug = Suggester(rec, SMALL, t, batch_size=4, direction="minimize")
    rerun, new = sug.take(4)
    assert rerun == [1, 3] and new.shape == (2, 2)
    history = rec.calls[0][1]
    np.testing.assert_array_equal(history.pending, t.unit.data[[1, 3, 4]])
    np.testing.assert_array_equal(history.x, t.unit.data[[0, 2]])


def test_suggester_history_shows_finished_and_pending():
    t = table_with([COMPLETE, FAILED, RUNNING, COMPLETE, RUNNING],
                   values=np.array([3.0, np.nan, np.nan, 1.0, np.nan]))
    rec = Recorder()
    sug = Suggester(rec, SMALL, t, batch_size=3, direction="maximize")
    sug.take(1)
    n, h = rec.calls[0]
    assert n == 3 and h.space is SMALL and h.ndim == 2
    assert h.n_total == 5
    np.testing.assert_array_equal(h.x, t.unit.data[[0, 1, 3]])
    np.testing.assert_array_equal(h.state, [COMPLETE, FAILED, COMPLETE])
    np.testing.assert_array_equal(h.loss, [-3.0, np.nan, -1.0])  # maximize: negated
    np.testing.assert_array_equal(h.pending, t.unit.data[[2, 4]])

    # the trial just handed out is running; the two points still queued are pending too
    t.add(np.array([[0.0, 0.0]]))  # the master records the taken point as a running trial
    sug.take(4)  # two from the queue, then a new batch of max(batch_size, 2) = 3
    n, h = rec.calls[1]
    assert n == 3
    assert h.n_total == 6 + 2
    assert len(h.pending) == 3 + 2
    np.testing.assert_array_equal(h.pending[:3], t.unit.data[[2, 4, 5]])
    np.testing.assert_allclose(h.pending[3:, 0], [0.006, 0.007])


def test_suggester_minimize_loss_is_value():
    t = table_with([COMPLETE, COMPLETE], values=np.array([2.0, -1.0]))
    rec = Recorder()
    Suggester(rec, SMALL, t, batch_size=1, direction="minimize").take(1)
    np.testing.assert_array_equal(rec.calls[0][1].loss, [2.0, -1.0])


def test_suggester_with_a_real_sampler_matches_direct_calls():
    """The suggester's bookkeeping of n_total keeps counter-based samplers on their stream."""
    sampler = fresh("sobol", 11, SMALL)
    t = TrialTable(SMALL.ndim)
    sug = Suggester(sampler, SMALL, t, batch_size=4, direction="minimize")
    got = []
    for k in (1, 2, 3, 5, 1):
        _, new = sug.take(k)
        t.add(new)  # as the master does with an "A" event
        got.append(new)
    direct = fresh("sobol", 11, SMALL).suggest(12, history(SMALL, 0))
    np.testing.assert_allclose(np.vstack(got), direct[: sum((1, 2, 3, 5, 1))])


class SlowSampler(Sampler):
    """Takes 30 ms per call and proposes the centre of the cube (easy to tell apart)."""

    def suggest(self, n, history):
        time.sleep(0.03)
        return np.full((n, history.ndim), 0.5)


def slow_suggester(direction: str = "minimize") -> tuple[Space, TrialTable, Suggester]:
    space = Space({"a": Real(0, 1), "b": Real(0, 1)})
    sampler = SlowSampler(seed=1)
    sampler.bind(space, 1)
    table = TrialTable(space.ndim)
    return space, table, Suggester(sampler, space, table, 4, direction)


def test_a_slow_sampler_gives_way_to_sobol_for_short_trials():
    space, table, sugg = slow_suggester()
    for _ in range(2):  # the first call is not timed (imports); the second is
        table.add(sugg.take(4)[1])
    assert sugg.n_fallback == 0
    sugg.trial_seconds = 0.01  # 30 ms per batch would keep the workers waiting
    got = sugg.take(4)[1]
    assert sugg.n_fallback == 4 and not np.any(got == 0.5)
    sobol = SobolSampler(1)
    np.testing.assert_array_equal(got, sobol.suggest(4, history(space, table.n)))
    table.add(got)
    sugg.trial_seconds = 1.0  # long trials: the sampler is asked again, once as long as
    time.sleep(0.035)          # its last call has passed since (half of rank 0's time)
    assert np.all(sugg.take(4)[1] == 0.5) and sugg.n_fallback == 4


def test_the_suggester_hands_out_stand_in_points_while_the_model_is_slow():
    space, table, sugg = slow_suggester("maximize")
    for _ in range(4):
        table.add(sugg.take(4)[1])
    table.add(np.random.default_rng(0).random((12, 2)))
    values = np.random.default_rng(1).random(table.n)
    table.finish(np.arange(table.n), np.full(table.n, COMPLETE), values, np.zeros(table.n),
                 np.ones(table.n))
    sugg.trial_seconds = 0.01  # 30 ms per batch would keep the workers waiting
    got = sugg.take(6)[1]
    assert sugg.n_fallback == 6 and not np.any(got == 0.5)
    # ranked by the final values, maximised; trial 28 is next
    seen = History(space, x=table.unit.data, loss=-values, state=table.state.data,
                   pending=np.empty((0, 2)), n_total=table.n)
    np.testing.assert_array_equal(got, StandInSampler(1).suggest(6, seen))
    assert not np.array_equal(got[1::2], SobolSampler(1).suggest(6, seen)[1::2])


def test_configs_not_run_matches_rows_with_inactive_coordinates_and_counts_repeats():
    from mpitune.suggester import configs_not_run

    nan = np.nan
    configs = np.array([[0.25, nan], [0.25, 0.5], [0.25, nan], [0.75, 0.125], [0.25, 0.5]])
    held = np.array([[0.75, 0.125], [0.25, float("nan")], [0.5, 0.5], [0.25, 0.5]])
    np.testing.assert_array_equal(configs_not_run(configs, held), configs[[2, 4]])
    np.testing.assert_array_equal(configs_not_run(configs, held[:0]), configs)
    assert configs_not_run(configs[:0], held).shape == (0, 2)


def test_configs_not_run_knows_a_grid_value_from_the_same_value_written_in_a_config():
    from mpitune.space import Real, Space
    from mpitune.suggester import configs_not_run

    space = Space({"x": Real(0.0, 1.0), "lr": Real(1e-4, 1.0, log=True)})
    x, lr = space.dims
    # a grid's 0.3 and 1e-3 (0.30000000000000004, 0.0010000000000000002) and its top (the
    # largest float below 1, as samplers propose [0, 1))
    held = np.array([[x.to_unit(np.linspace(0.0, 1.0, 11))[3],
                      lr.to_unit(np.geomspace(1e-4, 1.0, 5))[1]],
                     [np.nextafter(1.0, 0.0), np.nextafter(1.0, 0.0)], [0.5, 0.5]])
    configs = space.to_unit([{"x": 0.3, "lr": 1e-3}, {"x": 1.0, "lr": 1.0},
                             {"x": 0.35, "lr": 1e-4}])
    assert not np.any(np.all(configs[:2, None] == held[None], axis=2))  # not equal bits
    np.testing.assert_array_equal(configs_not_run(configs, held, space), configs[[2]])
    np.testing.assert_array_equal(configs_not_run(configs, held), configs)
