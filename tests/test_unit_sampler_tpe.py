"""TPE: start-up from Sobol, the liar spreads batches, types and conditional parameters,
and it finds better points than random search."""

from __future__ import annotations

import numpy as np
import pytest

from mpitune.samplers import History, SobolSampler, TPESampler
from mpitune.samplers._tpe import default_gamma, ramp_weights
from mpitune.space import Categorical, Integer, Real, Space
from mpitune.table import COMPLETE

SPACE2 = Space({"a": Real(0, 1), "b": Real(0, 1)})


def history(space, x, loss, pending=None, n_total=None, **stops):
    """``stops``: optionally ``stop_step`` and ``stop_loss`` of pruned trials."""
    x = np.asarray(x, dtype=float).reshape(-1, space.ndim)
    pending = np.empty((0, space.ndim)) if pending is None else np.asarray(pending)
    return History(space, x=x, loss=np.asarray(loss, dtype=float),
                   state=np.full(len(x), COMPLETE, np.uint8), pending=pending,
                   n_total=len(x) + len(pending) if n_total is None else n_total, **stops)


def tpe(space=SPACE2, seed=0, **kw) -> TPESampler:
    s = TPESampler(**kw)
    s.bind(space, seed)
    return s


def run_async(sampler, space, f, evals, q):
    """The master's schedule: q pending, the oldest finishes, one new suggestion."""
    pending = list(sampler.suggest(q, history(space, [], [], n_total=0)))
    xs, losses, made = [], [], q
    while len(losses) < evals:
        p = pending.pop(0)
        xs.append(p)
        losses.append(f(p[None, :])[0])
        if made < evals:
            h = history(space, xs, losses, np.array(pending).reshape(-1, space.ndim), made)
            pending.append(sampler.suggest(1, h)[0])
            made += 1
    return np.array(losses)


def test_gamma_and_weights():
    assert [default_gamma(n) for n in (1, 10, 11, 100, 1000)] == [1, 1, 2, 10, 25]
    w = ramp_weights(100)
    assert len(w) == 100 and w[0] == pytest.approx(0.01) and np.all(w[-25:] == 1)
    assert np.all(np.diff(w) >= 0)
    assert np.all(ramp_weights(10) == 1)


def test_startup_points_are_the_sobol_stream():
    s = tpe(n_startup=10)
    got = s.suggest(10, history(SPACE2, [], [], n_total=0))
    sobol = SobolSampler(0)
    sobol.bind(SPACE2, 0)
    np.testing.assert_array_equal(got, sobol.suggest(10, history(SPACE2, [], [], n_total=0)))


def test_startup_waits_for_results_not_proposals():
    """With trials running, start-up lasts until n_startup of them have finished."""
    rng = np.random.default_rng(1)
    x = rng.random((9, 2))
    sobol = SobolSampler(0)
    running = history(SPACE2, x, (x**2).sum(1), pending=rng.random((8, 2)))  # 17 proposed
    np.testing.assert_array_equal(tpe(n_startup=10).suggest(5, running),
                                  sobol.suggest(5, running))
    y = rng.random((10, 2))
    enough = history(SPACE2, y, (y**2).sum(1), pending=rng.random((8, 2)))
    got = tpe(n_startup=10).suggest(5, enough)
    assert got.shape == (5, 2)
    assert not np.allclose(got, sobol.suggest(5, enough))


def test_startup_waits_for_complete_trials_under_pruning():
    """Pruned trials, even those that reported and can be ranked, do not end the start-up
    (see TPESampler: counting them drew the model to fast starters); complete ones do."""
    rng = np.random.default_rng(4)
    x = rng.random((13, 2))
    sobol = SobolSampler(0)

    def pruned_after_step_1(n_complete):
        """A history whose first ``n_complete`` trials finished, the rest pruned at step 1."""
        loss = np.full(13, np.nan)
        loss[:n_complete] = (x[:n_complete] ** 2).sum(1)
        pruned = np.isnan(loss)
        return history(SPACE2, x, loss, stop_step=np.where(pruned, 1.0, np.nan),
                       stop_loss=np.where(pruned, 0.5, np.nan))

    few = pruned_after_step_1(3)
    assert len(few.ranking()) == 13
    np.testing.assert_array_equal(tpe(n_startup=10).suggest(5, few), sobol.suggest(5, few))
    enough = pruned_after_step_1(10)
    got = tpe(n_startup=10).suggest(5, enough)
    assert got.shape == (5, 2) and not np.allclose(got, sobol.suggest(5, enough))


def test_pruned_trials_that_got_furthest_fill_the_good_group():
    """An ASHA search: 2 complete trials (far from the optimum) and many pruned ones; the
    pruned trials that reached the last rung are near (0.8, 0.8), so TPE samples there."""
    rng = np.random.default_rng(3)
    x = rng.random((200, 2))
    near = np.linalg.norm(x - 0.8, axis=1)
    loss = np.full(200, np.nan)
    far = np.argsort(near)[-2:]
    loss[far] = 1.0
    stop_step = np.where(np.isnan(loss), np.where(near < 0.15, 9.0, 1.0), np.nan)
    stop_loss = np.where(np.isnan(loss), near, np.nan)
    h = history(SPACE2, x, loss, stop_step=stop_step, stop_loss=stop_loss)
    got = tpe(n_startup=2).suggest(16, h)
    assert np.median(np.linalg.norm(got - 0.8, axis=1)) < 0.2
    got = tpe(n_startup=2).suggest(16, history(SPACE2, x, loss))  # without stop data
    assert np.median(np.linalg.norm(got - 0.8, axis=1)) > 0.2


def test_pending_points_push_the_batch_away():
    """With many trials pending at the best region, fewer new points land there."""
    rng = np.random.default_rng(2)
    x = rng.random((60, 2))
    loss = ((x - 0.2) ** 2).sum(1)
    near = lambda pts: (np.linalg.norm(pts - 0.2, axis=1) < 0.1).sum()  # noqa: E731
    alone = tpe().suggest(16, history(SPACE2, x, loss, n_total=60))
    crowd = 0.2 + 0.02 * rng.standard_normal((40, 2))
    crowded = tpe().suggest(16, history(SPACE2, x, loss, crowd, n_total=100))
    assert near(crowded) < near(alone)
    assert len(np.unique(alone, axis=0)) == 16


@pytest.mark.parametrize("multivariate", [True, False])
def test_beats_random_search(multivariate):
    """Median over seeds of the best loss after 60 evaluations with 4 pending."""
    space = Space({f"x{i}": Real(-2, 3) for i in range(4)})

    def f(u):
        return ((u - 0.7) ** 2).sum(axis=1)

    tpe_best, random_best = [], []
    for seed in range(5):
        tpe_best.append(run_async(tpe(space, seed, multivariate=multivariate), space, f,
                                  60, 4).min())
        random_best.append(f(np.random.default_rng(seed).random((60, 4))).min())
    assert np.median(tpe_best) < 0.5 * np.median(random_best)


def test_integer_and_categorical_values_are_cells():
    space = Space({"n": Integer(1, 5), "c": Categorical(["a", "b", "c"]),
                   "m": Integer(1, 1000, log=True)})
    rng = np.random.default_rng(0)
    x = space.snap(rng.random((30, 3)))
    loss = np.abs(x[:, 0] - 0.5) + (space.dims[1].index(x[:, 1]) != 2)
    for multivariate in (True, False):
        got = tpe(space, multivariate=multivariate).suggest(12, history(space, x, loss))
        np.testing.assert_allclose(got, space.snap(got))


def test_categorical_preference_is_learned():
    space = Space({"c": Categorical(list("abcde")), "a": Real(0, 1)})
    rng = np.random.default_rng(3)
    x = space.snap(rng.random((80, 2)))
    loss = (space.dims[0].index(x[:, 0]) != 3) + 0.1 * x[:, 1]
    got = tpe(space).suggest(16, history(space, x, loss))
    assert (space.dims[0].index(got[:, 0]) == 3).sum() >= 8


def test_conditional_coordinates():
    space = Space({"opt": Categorical(["sgd", "adam"]),
                   "momentum": Real(0, 1, when={"opt": "sgd"}), "lr": Real(0, 1)})
    rng = np.random.default_rng(4)
    x = space.mask(space.snap(rng.random((50, 3))))
    is_sgd = space.dims[0].index(x[:, 0]) == 0
    loss = np.where(is_sgd, np.abs(np.nan_to_num(x[:, 1]) - 0.8), 1.0) + 0.1 * x[:, 2]
    for multivariate in (True, False):
        got = tpe(space, multivariate=multivariate).suggest(10, history(space, x, loss))
        sgd = space.dims[0].index(got[:, 0]) == 0
        assert np.isnan(got[~sgd, 1]).all() and not np.isnan(got[sgd, 1]).any()
        assert sgd.sum() >= 6  # sgd is the better optimiser here


def test_large_history_batch():
    space = Space({f"x{i}": Real(0, 1) for i in range(6)})
    rng = np.random.default_rng(5)
    x = rng.random((5000, 6))
    got = tpe(space).suggest(16, history(space, x, (x**2).sum(1), rng.random((16, 6))))
    assert got.shape == (16, 6) and len(np.unique(got, axis=0)) == 16


@pytest.mark.parametrize("kwargs, message", [
    ({"n_candidates": 0}, "n_candidates must be an int >= 1"),
    ({"n_startup": -1}, "n_startup must be an int >= 0"),
    ({"max_kernels": 2.5}, "max_kernels must be an int >= 1"),
    ({"multivariate": "yes"}, "multivariate must be None, True or False"),
    ({"gamma": 10}, "gamma must be a function"),
    ({"prior_weight": 0}, "prior_weight must be a number > 0"),
])
def test_bad_options_are_refused_when_the_spec_loads(kwargs, message):
    from mpitune.errors import SpecError

    with pytest.raises(SpecError, match=message):
        TPESampler(**kwargs)
