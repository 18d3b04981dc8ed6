"""Unit tests of the Gaussian-process sampler (mpitune.samplers._gp): the sampler contract,
the handling of types, failures and pending trials, the numerics, and one quality check."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special, stats
from test_unit_samplers import SPACE as MIXED  # reals, a log real, an integer, a choice

from mpitune.samplers import History, SobolSampler
from mpitune.samplers._gp import (
    GPSampler,
    _Features,
    _Posterior,
    fit_hyperparameters,
    log_h,
    matern52,
    warp,
    yeo_johnson,
    yeo_johnson_power,
)
from mpitune.space import Categorical, Integer, Real, Space

CUBE = Space({f"x{i}": Real(0, 1) for i in range(3)})


def quadratic(x: np.ndarray) -> np.ndarray:
    return np.sum((x - 0.3) ** 2, axis=1)


def history(space: Space, x=None, loss=None, pending=None, n_total=None) -> History:
    d = space.ndim
    x = np.empty((0, d)) if x is None else np.asarray(x, dtype=float)
    loss = np.empty(0) if loss is None else np.asarray(loss, dtype=float)
    pending = np.empty((0, d)) if pending is None else np.asarray(pending, dtype=float)
    n_total = len(x) + len(pending) if n_total is None else n_total
    return History(space, x=x, loss=loss, state=np.full(len(x), 1, np.uint8),
                   pending=pending, n_total=n_total)


def fitted(space: Space, m: int = 20, seed: int = 0, f=None) -> History:
    """A history of ``m`` finished random points of ``space`` (losses of ``f``)."""
    x = space.snap(np.random.default_rng(seed).random((m, space.ndim)))
    f = f or (lambda u: quadratic(u[:, :1]) + 0.1 * u[:, -1])
    return history(space, x, f(x))


def fresh(seed: int = 1, space: Space = MIXED, **kwargs) -> GPSampler:
    sampler = GPSampler(seed=seed, **kwargs)
    sampler.bind(space, 99)
    return sampler


# ---- the contract -------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 4])
def test_shape_dtype_and_range(n):
    h = fitted(MIXED)
    points = fresh().suggest(n, h)
    assert points.shape == (n, MIXED.ndim)
    assert points.dtype.kind == "f"
    assert np.all((points >= 0.0) & (points < 1.0))


def test_deterministic_for_a_seed_and_a_history():
    h = fitted(MIXED)
    np.testing.assert_array_equal(fresh(7).suggest(3, h), fresh(7).suggest(3, h))


def test_different_seeds_differ():
    h = fitted(MIXED)
    assert not np.allclose(fresh(1).suggest(3, h), fresh(2).suggest(3, h))


def test_resume_gives_the_same_next_suggestions():
    """A sampler that saw earlier histories (and cached a fit) proposes what a fresh one
    shown only the last history proposes."""
    running = fresh(3, CUBE)
    x = np.random.default_rng(0).random((40, 3))
    for m in (12, 20, 33):
        running.suggest(2, history(CUBE, x[:m], quadratic(x[:m])))
    last = history(CUBE, x, quadratic(x), pending=x[:2] + 0.01)
    np.testing.assert_array_equal(running.suggest(3, last), fresh(3, CUBE).suggest(3, last))


def test_startup_points_are_the_sobol_stream():
    sampler = fresh(5, MIXED, n_startup=10)
    sobol = SobolSampler(5).suggest(12, history(MIXED))
    np.testing.assert_array_equal(sampler.suggest(8, history(MIXED)), sobol[:8])
    # start-up waits for results, not proposals: 8 finished and 8 running is still Sobol'
    running = history(MIXED, sobol[:8], quadratic(sobol[:8]), pending=sobol[8:12])
    np.testing.assert_array_equal(sampler.suggest(4, running)[:2],
                                  SobolSampler(5).suggest(2, running))
    done = history(MIXED, sobol[:10], quadratic(sobol[:10]), pending=sobol[10:12])
    assert not np.allclose(sampler.suggest(2, done), SobolSampler(5).suggest(2, done))


def test_default_startup_grows_with_dimension_and_is_capped():
    sampler = GPSampler()
    assert sampler.startup(1) == 10
    assert sampler.startup(6) == 14
    assert sampler.startup(50) == 20
    assert GPSampler(n_startup=3).startup(6) == 3


@pytest.mark.parametrize("kwargs", [{"n_startup": 0}, {"n_startup": 2.5},
                                    {"max_points": 5}, {"max_points": "many"}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="The value of"):
        GPSampler(**kwargs)


def test_zero_and_one_dimension():
    space0 = Space({"k": 1})
    assert fresh(space=space0).suggest(3, history(space0)).shape == (3, 0)
    space1 = Space({"x": Real(-1, 1)})
    points = fresh(space=space1).suggest(2, fitted(space1, 12))
    assert points.shape == (2, 1) and np.all((points >= 0) & (points < 1))
    assert fresh().suggest(0, fitted(MIXED)).shape == (0, MIXED.ndim)


# ---- batches and pending trials --------------------------------------------------------


def spread(points: np.ndarray) -> np.ndarray:
    """The pairwise distances of the rows of ``points``."""
    return np.linalg.norm(points[:, None] - points[None], axis=-1)[
        np.triu_indices(len(points), 1)]


@pytest.mark.parametrize("seed", [0, 1])
def test_a_batch_is_spread_out_by_its_pending_points(seed):
    """Eight points asked at once are far apart; eight asked one by one with no pending
    points (the same history) are nearly the same point. Log EI only: the exploratory
    suggestions would spread the lone ones too."""
    h = fitted(CUBE, 25, seed=seed)
    batch = fresh(seed, CUBE, explore_every=0).suggest(8, h)
    alone = np.vstack([fresh(seed, CUBE, explore_every=0).suggest(
                           1, history(CUBE, h.x, h.loss, n_total=25 + i))
                       for i in range(8)])
    assert spread(batch).min() > 1e-5
    assert spread(batch).mean() > 100 * spread(alone).mean()


def test_pending_trials_push_the_next_point_away():
    h = fitted(CUBE, 25)
    first = fresh(space=CUBE).suggest(1, h)
    with_pending = fresh(space=CUBE).suggest(1, history(CUBE, h.x, h.loss, pending=first))
    assert np.linalg.norm(with_pending - first) > 1e-3


# ---- types, inactive coordinates, failures ------------------------------------------


def test_integers_and_choices_are_proposed_at_their_cell_values():
    points = fresh().suggest(6, fitted(MIXED, 25))
    np.testing.assert_array_equal(points[:, 2:], MIXED.snap(points)[:, 2:])


def test_only_discrete_dimensions():
    space = Space({"n": Integer(0, 30), "c": Categorical(list("abcde"))})
    points = fresh(space=space).suggest(3, fitted(space, 15))
    np.testing.assert_array_equal(points, space.snap(points))


def test_inactive_coordinates_are_tolerated():
    h = fitted(MIXED, 20)
    x, pending = h.x.copy(), h.x[:3].copy()
    x[::2, 1] = np.nan  # lr inactive in half the trials
    x[::3, 3] = np.nan  # the categorical too
    pending[:, 2] = np.nan
    points = fresh().suggest(2, history(MIXED, x, h.loss, pending=pending))
    assert np.all(np.isfinite(points)) and np.all((points >= 0) & (points < 1))



def one_hot_sqdist(space: Space, a: np.ndarray, b: np.ndarray, inv_ls2: np.ndarray):
    """Reference: squared scaled distances with every categorical as a one-hot block whose
    columns weigh 1/2 (nan: all zeros), numbers as 0.5 when nan, integers at cell centres."""
    def features(unit):
        snapped = space.snap(unit)
        cols, weights = [], []
        for j, dim in enumerate(space.dims):
            u = snapped[:, j]
            if isinstance(dim, Categorical):
                onehot = np.zeros((len(u), dim.size))
                ok = ~np.isnan(u)
                onehot[np.flatnonzero(ok), dim.index(u[ok])] = 1.0
                cols.append(onehot)
                weights += [0.5 * inv_ls2[j]] * dim.size
            else:
                cols.append(np.where(np.isnan(u), 0.5, u)[:, None])
                weights.append(inv_ls2[j])
        return np.hstack(cols) * np.sqrt(weights)
    fa, fb = features(a), features(b)
    return ((fa[:, None, :] - fb[None, :, :]) ** 2).sum(-1)


def test_categorical_distances_are_those_of_one_hot_blocks_without_building_them():
    """The kernel sees a categorical as a one-hot block (Hamming distance, "no choice" half
    way), but its features hold one column per categorical whatever its number of choices:
    a 3,000-choice parameter costs no more than a 3-choice one."""
    space = Space({"x": Real(0, 1), "big": Categorical(list(range(3000))), "n": Integer(1, 9),
                   "c": Categorical(list("abc"))})
    rng = np.random.default_rng(5)
    a, b = space.snap(rng.random((12, 4))), space.snap(rng.random((9, 4)))
    b[:4, 1] = a[:4, 1]  # some equal choices
    a[::3, 1], b[::2, 3], a[1, 3], b[1, 3] = np.nan, np.nan, np.nan, np.nan
    inv_ls2 = np.array([3.0, 0.7, 5.0, 2.0])
    feats = _Features(space)
    metric = feats.metric(inv_ls2)
    assert feats.encode(a).shape == (12, 4)
    r2 = metric.sqdist(feats.scaled(a, metric), feats.scaled(b, metric))
    np.testing.assert_allclose(r2, one_hot_sqdist(space, a, b, inv_ls2), rtol=1e-12)
    by_dim = feats.sqdist_by_dim(feats.encode(a))
    np.testing.assert_allclose(np.tensordot(inv_ls2, by_dim, 1),
                               one_hot_sqdist(space, a, a, inv_ls2), rtol=1e-12, atol=1e-15)
    points = fresh(space=space).suggest(2, fitted(space, 25))
    np.testing.assert_array_equal(points, space.snap(points))

def test_failed_trials_are_tolerated_and_avoided():
    h = fitted(CUBE, 20)
    loss = h.loss.copy()
    loss[::3] = np.nan
    points = fresh(space=CUBE).suggest(3, history(CUBE, h.x, loss))
    assert np.all(np.isfinite(points)) and np.all((points >= 0) & (points < 1))


def test_an_all_failed_history_falls_back_to_sobol():
    x = np.random.default_rng(0).random((15, 3))
    h = history(CUBE, x, np.full(15, np.nan))
    np.testing.assert_array_equal(fresh(4, CUBE).suggest(2, h),
                                  SobolSampler(4).suggest(2, h))


def test_constant_losses_are_tolerated():
    x = np.random.default_rng(0).random((15, 3))
    points = fresh(space=CUBE).suggest(2, history(CUBE, x, np.full(15, 2.5)))
    assert np.all(np.isfinite(points)) and np.all((points >= 0) & (points < 1))


def test_long_histories_are_subsampled():
    x = np.random.default_rng(0).random((90, 3))
    points = fresh(space=CUBE, max_points=30).suggest(2, history(CUBE, x, quadratic(x)))
    assert points.shape == (2, 3) and np.all((points >= 0) & (points < 1))


# ---- numerics ----------------------------------------------------------------------


def test_log_h_matches_the_direct_formula_and_stays_finite():
    z = np.linspace(-8, 5, 27)
    direct = np.log(np.exp(-z**2 / 2) / math.sqrt(2 * math.pi) + z * special.ndtr(z))
    np.testing.assert_allclose(log_h(z), direct, rtol=1e-7)
    far = log_h(np.array([-50.0, -1e3, -1e5, -1e9]))
    assert np.all(np.isfinite(far)) and np.all(np.diff(far) < 0)


def test_matern_derivative():
    r2 = np.array([0.0, 0.01, 0.5, 3.0])
    k, dk = matern52(r2, 2.0)
    assert k[0] == pytest.approx(2.0)
    eps = 1e-6
    numeric = (matern52(r2 + eps, 2.0)[0] - matern52(r2, 2.0)[0]) / eps
    np.testing.assert_allclose(dk, numeric, rtol=1e-4)


def test_log_ei_gradient_matches_finite_differences():
    feats = _Features(CUBE)
    rng = np.random.default_rng(0)
    x = rng.random((15, 3))
    metric = feats.metric(np.array([4.0, 9.0, 1.0]))
    gp = _Posterior(feats.scaled(x, metric), (quadratic(x) - 0.3) * 5, 1.0, 1e-4, metric)
    z = feats.scaled(rng.random((4, 3)), metric)
    cols = np.arange(3)
    value, grad = gp.log_ei(z, -1.0, cols)
    eps = 1e-6
    for c in cols:
        step = z.copy()
        step[:, c] += eps
        np.testing.assert_allclose(grad[:, c], (gp.log_ei(step, -1.0) - value) / eps,
                                   rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("draw", ["normal", "lognormal", "negative_pareto", "ties"])
def test_yeo_johnson_matches_scipy(draw):
    """Our transform and power fit are scipy's (without its per-call overhead)."""
    rng = np.random.default_rng(3)
    y = {"normal": rng.normal(size=80), "lognormal": rng.lognormal(sigma=2.0, size=80),
         "negative_pareto": -rng.pareto(1.5, size=80),
         "ties": np.repeat([0.0, 1.0, 50.0], [40, 30, 10])}[draw]
    y = (y - y.mean()) / y.std()
    power = yeo_johnson_power(y)
    assert power == pytest.approx(stats.yeojohnson_normmax(y), abs=1e-6)
    for p in (power, 0.0, 1.0, 2.0, -1.5):
        np.testing.assert_allclose(yeo_johnson(y, p), stats.yeojohnson(y, lmbda=p),
                                   rtol=1e-12, atol=1e-12)


def test_warp_tames_heavy_tails_and_keeps_the_order():
    y = np.exp(3 * np.random.default_rng(0).standard_normal(60))  # a few huge losses
    warped, power = warp(y)
    assert np.all(np.argsort(warped) == np.argsort(y))
    assert abs(np.mean(warped)) < 1e-9 and np.std(warped) == pytest.approx(1.0)
    assert abs(stats.skew(warped)) < stats.skew(y) / 2
    np.testing.assert_array_equal(warp(y, power)[0], warped)
    assert np.all(warp(np.full(5, 3.0))[0] == 0.0)



@pytest.mark.parametrize("scale", [1e-320, 1e-300, 1e300, 1e307])
def test_warp_of_losses_near_the_ends_of_float64_is_the_warp_of_plain_ones(scale):
    """Subnormal losses (1e-320) used to give a zero or subnormal standard deviation and
    infinite bounds for the power search (rank 0 crashed); huge ones an infinite variance
    (every loss warped to 0). Scaled, they warp as the same losses of ordinary size."""
    y = np.random.default_rng(2).uniform(-1.0, 1.0, 30)
    plain, power = warp(y)
    warped, scaled_power = warp(scale * y)
    assert np.all(np.isfinite(warped)) and math.isfinite(scaled_power)
    np.testing.assert_array_equal(stats.rankdata(warped), stats.rankdata(scale * y))
    tolerance = 1e-2 if scale < 1e-310 else 1e-6  # subnormals keep only a few digits
    np.testing.assert_allclose(warped, plain, atol=tolerance)


def test_subnormal_losses_are_modelled_not_fatal():
    x = np.random.default_rng(0).random((25, 3))
    points = fresh(space=CUBE).suggest(2, history(CUBE, x, 1e-320 * quadratic(x)))
    assert np.all(np.isfinite(points)) and np.all((points >= 0) & (points < 1))


def test_fitted_length_scales_find_the_relevant_dimension():
    x = np.random.default_rng(0).random((40, 3))
    y = np.sin(6 * x[:, 0])
    feats = _Features(CUBE)
    params = fit_hyperparameters(feats.sqdist_by_dim(feats.encode(x)), (y - y.mean()) / y.std())
    inv_ls2 = np.exp(params[:3])
    assert inv_ls2[0] > 10 * max(inv_ls2[1], inv_ls2[2])


# ---- quality ------------------------------------------------------------------------


def test_finds_a_much_better_point_than_random_on_a_quadratic():
    """30 evaluations, batches of 4 with pending trials: the GP gets near the optimum."""
    sampler = fresh(0, CUBE)
    x = np.empty((0, 3))
    while len(x) < 30:
        pending = np.empty((0, 3))
        batch = sampler.suggest(4, history(CUBE, x, quadratic(x), pending=pending))
        x = np.vstack([x, batch])
    gp_best = quadratic(x).min()
    random_best = np.median([quadratic(np.random.default_rng(s).random((30, 3))).min()
                             for s in range(20)])
    assert gp_best < 0.05 * random_best


def test_exploratory_suggestions_follow_the_trial_index():
    """Every ``explore_every``-th trial maximises the confidence bound: with the portfolio
    off, that one suggestion changes and the others do not; the result is reproducible."""
    space = Space({"a": Real(0.0, 1.0), "b": Real(0.0, 1.0)})
    x = np.random.default_rng(0).random((20, 2))
    h = history(space, x, quadratic(x), pending=np.empty((0, 2)))
    on = GPSampler(seed=3, n_startup=5, explore_every=4)
    off = GPSampler(seed=3, n_startup=5, explore_every=0)
    a, b = on.suggest(4, h), off.suggest(4, h)
    assert on._explores(23) and not on._explores(20)
    np.testing.assert_array_equal(a, GPSampler(seed=3, n_startup=5).suggest(4, h))
    np.testing.assert_array_equal(a[:3], b[:3])
    assert not np.allclose(a[3], b[3])
    with pytest.raises(ValueError):
        GPSampler(explore_every=-1)
