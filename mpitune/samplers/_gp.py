"""Gaussian-process Bayesian optimisation, batched with a Kriging believer.

The model is a GP with a Matérn-5/2 kernel and one length scale per dimension, fitted by
maximum a-posteriori likelihood (L-BFGS-B, analytic gradients) to the losses, standardised
and Yeo-Johnson transformed (heavy tails, such as Rosenbrock's, otherwise ruin the fit).
Each new point maximises log expected improvement: the best of a thousand random and
incumbent-perturbed candidates start a joint L-BFGS-B run over the real coordinates (in
length-scale units, with analytic gradients), then integer and categorical coordinates
move one step at a time while that improves.

Types: an integer enters the kernel at the centre of its cell, so the model never
distinguishes two points that run the same configuration; a categorical enters as a
Hamming-distance term with its own length scale (the distance of one-hot vectors, computed
from the choice indices: a one-hot block would cost memory and time in proportion to the
number of choices, 3 GB and 13 s per suggestion for one of 2,000 choices). A coordinate
that is ``nan`` (an inactive conditional parameter) enters as 0.5 for numbers and as "no
choice" for categoricals (half the distance of two different choices). Failed and pruned
trials (``nan`` loss) count as the worst loss seen so far: the search then avoids them
without leaving the region.

Batches: trials still running enter the model as fantasies whose outcome is the posterior
mean (a Kriging believer). That leaves the mean unchanged and shrinks the variance around
work in flight, so the next point goes elsewhere unless the model is confident there.

Portfolio: every ``explore_every``-th suggestion (counted by trial index, so it is the same
on a resumed search) maximises the lower confidence bound ``mean - sqrt(beta) sd`` instead
of log EI. Log EI alone settles in the first good basin it finds (Hartmann-6's local
minimum); those points sample where the model is unsure although it expects no gain.

Cost: the hyper-parameters are refitted only when the number of finished trials crosses a
geometric schedule (about 9 % growth), on that prefix of the history, and memoised; the
result depends on the history alone, so a resumed search proposes what the uninterrupted
one would have. Past ``max_points`` finished trials the GP keeps the best half of them plus
a seeded random sample of the rest, which bounds every step at O(max_points^3).

scipy is imported where it is used, not with the module: rank 0 imports every sampler,
and should check the spec, the settings and the results file, and report a bad one,
before it pays for scipy (about 1 s here, more from a cluster's shared file system).
"""

from __future__ import annotations

import functools
import hashlib
import math
from typing import Optional

import numpy as np

from ..space import Categorical, Integer, Space
from ._base import History, Sampler
from ._qmc import SobolSampler

_SQRT5 = math.sqrt(5.0)
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_NOISE_FLOOR = 1e-6  # noise variance of the standardised losses, at least
_BELOW_ONE = np.nextafter(1.0, 0.0)
_LENGTH_SCALES = (1e-2, 1e2)  # bounds, in the unit cube
_BLOCK = 256  # candidates scored at a time
_EXPLORE_BETA = 9.0  # of the exploratory suggestions' confidence bound (3 sd)


def matern52(r2: np.ndarray, scale: float, derivative: bool = True):
    """The Matérn-5/2 kernel as a function of the squared scaled distance ``r2`` and, with
    ``derivative``, also its derivative with respect to ``r2`` (finite at 0, unlike the
    one with respect to r). In place where it can: these arrays are the bulk of the work."""
    k = np.sqrt(r2)
    k *= _SQRT5
    e = np.exp(-k)
    e *= scale
    k += 1.0
    if derivative:
        dk = k * e
        dk *= -5.0 / 6.0
    k += (5.0 / 3.0) * r2
    k *= e
    return (k, dk) if derivative else k


def log_h(z: np.ndarray) -> np.ndarray:
    """``log(phi(z) + z Phi(z))``, the log of expected improvement at unit variance, stable
    for very negative ``z`` (Ament et al., 2023, "Unexpected improvements")."""
    from scipy import special
    z = np.asarray(z, dtype=float)
    out = np.empty_like(z)
    mid = z > -1.0
    zm = z[mid]
    out[mid] = np.log(np.exp(-0.5 * zm * zm) / math.sqrt(2 * math.pi) + zm * special.ndtr(zm))
    low = ~mid & (z > -1e4)
    zl = z[low]
    tail = np.log1p(zl * math.sqrt(math.pi / 2) * special.erfcx(-zl / math.sqrt(2)))
    out[low] = -0.5 * zl * zl - _LOG_SQRT_2PI + tail
    far = z <= -1e4
    out[far] = -0.5 * z[far] ** 2 - _LOG_SQRT_2PI - 2.0 * np.log(-z[far])
    return out


class _Features:
    """Maps unit-cube rows to kernel features: the numbers (integers at their cell centres,
    nan as 0.5), then one column per categorical holding the choice's index (nan as -1).
    Distances between features: squared differences of the (scaled) numbers, plus per
    categorical its weight times 0 (same choice), 1 (different choices) or 0.5 (one of the
    two has none): what one-hot blocks with columns of weight 1/2 would give."""

    def __init__(self, space: Space) -> None:
        self.space = space
        dims = space.dims
        self.numeric = [j for j, dim in enumerate(dims) if not isinstance(dim, Categorical)]
        self.integer = [j for j, dim in enumerate(dims) if isinstance(dim, Integer)]
        self.real = [j for j in self.numeric if j not in self.integer]
        self.categorical = [j for j, dim in enumerate(dims) if isinstance(dim, Categorical)]
        self.real_columns = np.array([self.numeric.index(j) for j in self.real], dtype=np.intp)

    def encode(self, unit: np.ndarray) -> np.ndarray:
        unit = np.asarray(unit, dtype=float)
        numbers = unit[:, self.numeric]
        if self.integer:
            numbers = self.space.snap(unit)[:, self.numeric]
        out = np.empty((len(unit), len(self.numeric) + len(self.categorical)))
        out[:, :len(self.numeric)] = np.where(np.isnan(numbers), 0.5, numbers)
        for c, j in enumerate(self.categorical, start=len(self.numeric)):
            u = unit[:, j]
            ok = ~np.isnan(u)
            out[:, c] = -1.0
            out[ok, c] = self.space.dims[j].index(np.clip(u[ok], 0.0, 1.0))
        return out

    def sqdist_by_dim(self, f: np.ndarray) -> np.ndarray:
        """(d, n, n) squared distances of the rows of ``f`` in each dimension."""
        p = len(self.numeric)
        out = np.empty((len(f), len(f), self.space.ndim))  # returned as a (d, n, n) view
        diff = f[:, None, :p] - f[None, :, :p]
        out[:, :, self.numeric] = diff * diff
        for c, j in enumerate(self.categorical, start=p):
            out[:, :, j] = _mismatch(f[:, c], f[:, c])
        return np.moveaxis(out, 2, 0)

    def metric(self, inv_ls2: np.ndarray) -> _Metric:
        """The distance of the kernel for inverse squared length scales ``inv_ls2``."""
        return _Metric(np.sqrt(inv_ls2[self.numeric]), inv_ls2[self.categorical])

    def scaled(self, unit: np.ndarray, metric: _Metric) -> np.ndarray:
        """Features whose numbers are in length-scale units (see :class:`_Metric`)."""
        f = self.encode(unit)
        f[:, :len(metric.scales)] *= metric.scales
        return f


def _mismatch(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) Hamming distances of choice indices (-1: none, half a mismatch)."""
    a, b = a[:, None], b[None, :]
    return np.where(a == b, 0.0, np.where((a < 0) | (b < 0), 0.5, 1.0))


class _Metric:
    """Squared scaled distance between features whose numbers are already multiplied by
    ``scales`` (1 / length scale): their squared Euclidean distance, plus ``weights`` (1 /
    squared length scale) times the mismatch of each categorical column."""

    def __init__(self, scales: np.ndarray, weights: np.ndarray) -> None:
        self.scales, self.weights = scales, weights

    def sqdist(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        from scipy.spatial.distance import cdist
        p = len(self.scales)
        r2 = cdist(a[:, :p], b[:, :p], "sqeuclidean") if p else np.zeros((len(a), len(b)))
        for c, w in enumerate(self.weights, start=p):
            r2 += w * _mismatch(a[:, c], b[:, c])
        return r2


def fit_hyperparameters(d2: np.ndarray, y: np.ndarray) -> np.ndarray:
    """MAP fit of ``[log inverse squared length scales (d), log scale, log noise]`` to the
    standardised losses ``y``, given the (d, n, n) squared differences per dimension.

    The priors are Optuna's (gamma-like on the inverse squared length scales, the scale
    and the noise); they keep the fit sane with few points."""
    from scipy import linalg, optimize
    d, n = d2.shape[0], len(y)
    flat = d2.reshape(d, -1)
    eye = np.eye(n)

    def objective(p: np.ndarray) -> tuple[float, np.ndarray]:
        lam, scale, noise = np.exp(p[:d]), math.exp(p[d]), math.exp(p[d + 1])
        k, dk = matern52(np.tensordot(lam, d2, 1), scale)
        try:
            factor = linalg.cho_factor(k + (noise + 1e-9) * eye, lower=True,
                                       check_finite=False)
        except linalg.LinAlgError:
            return 1e10, np.zeros_like(p)
        alpha = linalg.cho_solve(factor, y, check_finite=False)
        w = linalg.cho_solve(factor, eye, check_finite=False) - np.outer(alpha, alpha)
        nll = 0.5 * y @ alpha + np.log(np.diag(factor[0])).sum()
        grad = np.empty_like(p)
        grad[:d] = 0.5 * lam * (flat @ (w * dk).ravel())
        grad[d] = 0.5 * np.sum(w * k)
        grad[d + 1] = 0.5 * noise * np.trace(w)
        prior = -np.sum(0.1 / lam + 0.1 * lam) + math.log(scale) - scale \
            + 0.1 * math.log(noise) - 30.0 * noise
        dprior = np.concatenate([0.1 / lam - 0.1 * lam, [1.0 - scale, 0.1 - 30.0 * noise]])
        return nll - prior, grad - dprior

    start = np.zeros(d + 2)
    start[d + 1] = math.log(1e-3)
    lam_bounds = (-2 * math.log(_LENGTH_SCALES[1]), -2 * math.log(_LENGTH_SCALES[0]))
    bounds = [lam_bounds] * d + [(math.log(1e-2), math.log(1e2)), (math.log(_NOISE_FLOOR), 0.0)]
    res = optimize.minimize(objective, start, jac=True, method="L-BFGS-B", bounds=bounds,
                            options={"maxiter": 100})
    return res.x


class _Posterior:
    """A GP conditioned on scaled features ``z`` (distances by ``metric``) with
    standardised targets ``y``."""

    def __init__(self, z: np.ndarray, y: np.ndarray, scale: float, noise: float,
                 metric: _Metric) -> None:
        from scipy import linalg
        self.z, self.y, self.scale, self.noise, self.metric = z, y, scale, noise, metric
        self.beta: Optional[float] = None  # see :meth:`acquire`
        k = matern52(metric.sqdist(z, z), scale, derivative=False)
        factor = linalg.cho_factor(k + (noise + 1e-9) * np.eye(len(y)), lower=True,
                                   check_finite=False)
        self.factor = factor
        self.alpha = linalg.cho_solve(factor, y, check_finite=False)

    @functools.cached_property
    def kinv(self) -> np.ndarray:
        """The inverse of the noisy kernel matrix (only needed for variances)."""
        from scipy import linalg
        return linalg.cho_solve(self.factor, np.eye(len(self.y)), check_finite=False)

    def believe(self, z: np.ndarray) -> _Posterior:
        """This posterior with fantasies at ``z`` whose outcome is the current mean."""
        k = matern52(self.metric.sqdist(z, self.z), self.scale, derivative=False)
        mean = k @ self.alpha
        return _Posterior(np.vstack([self.z, z]), np.concatenate([self.y, mean]), self.scale,
                          self.noise, self.metric)

    def predict(self, z: np.ndarray, columns: Optional[np.ndarray] = None) -> tuple:
        """Mean and variance at ``z``; with ``columns``, also their gradients with respect to
        those feature columns."""
        r2 = self.metric.sqdist(z, self.z)
        if columns is None:
            k = matern52(r2, self.scale, derivative=False)
        else:
            k, dk = matern52(r2, self.scale)
        v = k @ self.kinv
        mean = k @ self.alpha
        var = np.maximum(self.scale - np.einsum("ij,ij->i", k, v), 1e-12)
        if columns is None:
            return mean, var
        da, dv = dk * self.alpha, dk * v
        zc, ac = z[:, columns], self.z[:, columns]
        dmean = 2.0 * (zc * da.sum(1)[:, None] - da @ ac)
        dvar = -4.0 * (zc * dv.sum(1)[:, None] - dv @ ac)
        return mean, var, dmean, dvar

    def predict_blocks(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance by blocks of rows that keep the (rows, n) temporaries in cache."""
        return tuple(np.concatenate(a) for a in zip(*(
            self.predict(z[i:i + _BLOCK]) for i in range(0, len(z), _BLOCK))))

    def acquire(self, z: np.ndarray, best: float, columns: Optional[np.ndarray] = None):
        """The acquisition to maximise: log EI, or with ``self.beta`` set the negated lower
        confidence bound ``sqrt(beta) sd - mean`` (with its gradient, see :meth:`predict`)."""
        if self.beta is None:
            return self.log_ei(z, best, columns)
        root = math.sqrt(self.beta)
        if columns is None:
            mean, var = self.predict_blocks(z)
            return root * np.sqrt(var) - mean
        mean, var, dmean, dvar = self.predict(z, columns)
        sd = np.sqrt(var)
        return root * sd - mean, root * dvar / (2.0 * sd[:, None]) - dmean

    def log_ei(self, z: np.ndarray, best: float, columns: Optional[np.ndarray] = None):
        """log expected improvement below ``best`` (and its gradient, see :meth:`predict`)."""
        from scipy import special
        if columns is None:
            mean, var = self.predict_blocks(z)
            sd = np.sqrt(var)
            return np.log(sd) + log_h((best - mean) / sd)
        mean, var, dmean, dvar = self.predict(z, columns)
        sd = np.sqrt(var)
        u = (best - mean) / sd
        lh = log_h(u)
        ratio = np.exp(special.log_ndtr(u) - lh)  # d log_h / du
        dsd = dvar / (2.0 * sd[:, None])
        grad = dsd / sd[:, None] - ratio[:, None] * (dmean + u[:, None] * dsd) / sd[:, None]
        return np.log(sd) + lh, grad


def _schedule(m: int) -> int:
    """The history prefix the hyper-parameters are fitted on: m itself for small m, else
    the largest 2^(k/8) <= m (a refit every ~9 % of growth)."""
    if m < 16:
        return m
    return int(2.0 ** (math.floor(8.0 * math.log2(m)) / 8.0))


def _impute(loss: np.ndarray) -> np.ndarray:
    """Failed trials (nan) take the worst finite loss."""
    ok = np.isfinite(loss)
    return np.where(ok, loss, np.max(loss[ok]) if ok.any() else 0.0)


def _standardise(y: np.ndarray) -> np.ndarray:
    """Zero mean and unit variance. Scaled into [-1, 1] first, so that losses near the ends
    of float64's range (subnormal ones like 1e-320, or ones near 1e308) neither underflow
    to a zero variance nor overflow to an infinite one."""
    top = float(np.max(np.abs(y))) if y.size else 0.0
    if not (top > 0 and math.isfinite(top)):
        return np.zeros_like(y)
    y = y / top
    y = y - np.mean(y)
    sd = np.std(y)
    return y / sd if sd > 0 else y


def warp(y: np.ndarray, power: Optional[float] = None) -> tuple[np.ndarray, float]:
    """Standardised losses, Yeo-Johnson transformed and standardised again, and the power
    used (fitted by maximum likelihood when ``power`` is None). Heavy-tailed losses (a
    valley among huge walls, like Rosenbrock's) become near-Gaussian, which the GP models
    far better; well-behaved ones are left almost unchanged."""
    y = _standardise(y)
    if np.ptp(y) == 0:
        return y, 1.0
    if power is None:
        power = yeo_johnson_power(y)
    return _standardise(yeo_johnson(y, power)), power


def yeo_johnson(y: np.ndarray, power: float) -> np.ndarray:
    """The Yeo-Johnson transform (as ``scipy.stats.yeojohnson`` with ``lmbda``). Ours
    because scipy's per-call argument wrappers cost more than the arithmetic on a hundred
    losses: with them the power fit was ~15 % of the GP's time per suggestion."""
    out = np.empty_like(y)
    pos = y >= 0
    up, down = np.log1p(y[pos]), np.log1p(-y[~pos])
    out[pos] = up if abs(power) < 1e-12 else np.expm1(power * up) / power
    other = 2.0 - power
    out[~pos] = -down if abs(other) < 1e-12 else -np.expm1(other * down) / other
    return out


def yeo_johnson_power(y: np.ndarray) -> float:
    """The power that maximises the Gaussian log-likelihood of ``yeo_johnson(y, power)``
    (as ``scipy.stats.yeojohnson_normmax``), searched where the transform of values up to
    20 times the largest seen stays within half of float64's exponent range."""
    from scipy import optimize

    n = len(y)
    log_jacobian = float(np.sum(np.sign(y) * np.log1p(np.abs(y))))

    def negative_log_likelihood(power: float) -> float:
        with np.errstate(over="ignore", invalid="ignore"):
            var = float(np.var(yeo_johnson(y, power)))
        if not (var > 0 and math.isfinite(var)):
            return math.inf
        return 0.5 * n * math.log(var) - (power - 1.0) * log_jacobian

    info = np.finfo(np.float64)
    log_eps = math.log(info.eps)
    span = math.log1p(20.0 * float(np.max(np.abs(y))))
    low = (math.log(info.tiny) - log_eps) / 2.0 / span
    high = (math.log(info.max) + log_eps) / 2.0 / span
    if np.all(y < 0):
        low, high = 2.0 - high, 2.0 - low
    elif np.any(y < 0):
        low, high = max(2.0 - high, low), min(2.0 - low, high)
    return float(optimize.fminbound(negative_log_likelihood, low, high, xtol=1.48e-8))


class GPSampler(Sampler):
    """Bayesian optimisation with a Gaussian process and log expected improvement.

    Parameters
    ----------
    seed:
        Seed of the random candidates and of the start-up design (None: the search's).
    n_startup:
        Results the model waits for: until that many trials have finished, points come
        from a scrambled Sobol' sequence (with ``q`` trials running, about
        ``n_startup + q`` of them); by default ``max(10, 2 d + 2)`` capped at 20.
    max_points:
        The most finished trials the GP is conditioned on; beyond, it keeps the best half
        and a seeded random sample of the rest, so a suggestion costs at most
        O(max_points^3) however long the search.
    explore_every:
        Every this many suggestions (by trial index) one maximises a wide lower confidence
        bound instead of log EI (see the module's notes); 0 never.
    """

    name = "gp"

    def __init__(self, seed: Optional[int] = None, n_startup: Optional[int] = None,
                 max_points: int = 300, explore_every: int = 4) -> None:
        super().__init__(seed)
        if n_startup is not None and (not isinstance(n_startup, int) or n_startup < 1):
            raise ValueError(f"The value of `n_startup` is {n_startup!r}, but must be an "
                             f"int >= 1 or None.")
        if not isinstance(max_points, int) or max_points < 20:
            raise ValueError(f"The value of `max_points` is {max_points!r}, but must be an "
                             f"int >= 20.")
        if not isinstance(explore_every, int) or explore_every < 0:
            raise ValueError(f"The value of `explore_every` is {explore_every!r}, but must be "
                             f"an int >= 0.")
        self.n_startup = n_startup
        self.max_points = max_points
        self.explore_every = explore_every
        self._fit_memo: tuple = (None, None)

    def startup(self, d: int) -> int:
        """The number of start-up trials in ``d`` dimensions."""
        return self.n_startup if self.n_startup is not None else min(max(10, 2 * d + 2), 20)

    def suggest(self, n: int, history: History) -> np.ndarray:
        d = history.ndim
        if d == 0 or n == 0:
            return np.empty((n, d))
        if int(np.isfinite(history.loss).sum()) < self.startup(d):
            return SobolSampler(self.seed).suggest(n, history)  # the model needs results
        return self._propose(n, history)

    def _subset(self, loss: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Indices of the rows the GP keeps: all, or the best half plus a random sample."""
        m = len(loss)
        if m <= self.max_points:
            return np.arange(m)
        order = np.argsort(loss, kind="stable")
        half = self.max_points // 2
        rest = rng.choice(order[half:], self.max_points - half, replace=False)
        return np.sort(np.concatenate([order[:half], rest]))

    def _hyperparameters(self, feats: _Features, x: np.ndarray, loss: np.ndarray):
        """Fitted kernel parameters and warping power for this history, memoised on the
        prefix of the history they depend on."""
        m = _schedule(len(loss))
        key = hashlib.blake2b(np.ascontiguousarray(x[:m]).tobytes()
                              + np.ascontiguousarray(loss[:m]).tobytes()
                              + repr((self.seed, self.max_points)).encode()).hexdigest()
        if self._fit_memo[0] != key:
            y = _impute(loss[:m])
            rows = self._subset(y, np.random.default_rng([self.seed or 0, m, 1]))
            y, power = warp(y[rows])
            d2 = feats.sqdist_by_dim(feats.encode(x[:m][rows]))
            self._fit_memo = (key, (fit_hyperparameters(d2, y), power))
        return self._fit_memo[1]

    def _explores(self, index: int) -> bool:
        """Whether suggestion number ``index`` (0-based trial index) is an exploratory one."""
        every = self.explore_every
        return every > 0 and index % every == every - 1

    def _propose(self, n: int, history: History) -> np.ndarray:
        space, pending, index = history.space, history.pending, history.n_total
        feats = _Features(space)
        rng = self.rng(history)
        x, loss = np.asarray(history.x, dtype=float), np.asarray(history.loss, dtype=float)
        params, power = self._hyperparameters(feats, x, loss)
        d = space.ndim
        metric = feats.metric(np.exp(params[:d]))
        y = _impute(loss)
        rows = self._subset(y, rng)
        x, y = x[rows], warp(y[rows], power)[0]
        gp = _Posterior(feats.scaled(x, metric), y, math.exp(params[d]),
                        math.exp(params[d + 1]), metric)
        if len(pending):
            gp = gp.believe(feats.scaled(pending, metric))
        incumbents = np.where(np.isnan(x), 0.5, x)[np.argsort(y, kind="stable")[:5]]
        out = np.empty((n, d))
        for i in range(n):
            # the believed outcomes count: a point whose mean beats the best is taken once
            gp.beta = _EXPLORE_BETA if self._explores(index + i) else None
            out[i] = _maximise(gp, float(np.min(gp.y)), feats, incumbents, rng)
            if i + 1 < n:
                gp = gp.believe(feats.scaled(out[i:i + 1], metric))
        return out


def _candidates(space: Space, incumbents: np.ndarray, rng: np.random.Generator,
                n_uniform: int = 500, n_local: int = 500) -> np.ndarray:
    """Uniform points plus Gaussian perturbations of the incumbents at scales from 1e-3 to
    0.3, each moving a random subset of about 20 coordinates (all in low dimensions)."""
    d = space.ndim
    centres = incumbents[rng.integers(len(incumbents), size=n_local)]
    step = np.exp(rng.uniform(math.log(1e-3), math.log(0.3), size=(n_local, 1)))
    moved = rng.random((n_local, d)) < min(1.0, 20.0 / d)
    local = centres + moved * step * rng.standard_normal((n_local, d))
    points = np.vstack([rng.random((n_uniform, d)), np.clip(local, 0.0, _BELOW_ONE)])
    return space.snap(points)


def _maximise(gp: _Posterior, best: float, feats: _Features, incumbents: np.ndarray,
              rng: np.random.Generator, n_starts: int = 4) -> np.ndarray:
    """The point of the unit cube with the highest acquisition (see
    :meth:`_Posterior.acquire`) that we can find."""
    space = feats.space
    cand = _candidates(space, incumbents, rng)
    score = gp.acquire(feats.scaled(cand, gp.metric), best)
    top = np.argsort(-score, kind="stable")[:n_starts]
    points, score = cand[top], score[top]
    if feats.real:
        points, score = _polish_real(gp, best, feats, points)
    i = int(np.argmax(score))
    point = points[i]
    if feats.integer or feats.categorical:
        point = _polish_discrete(gp, best, feats, point, score[i])
    return np.minimum(point, _BELOW_ONE)


def _polish_real(gp: _Posterior, best: float, feats: _Features, points: np.ndarray,
                 maxiter: int = 15) -> tuple[np.ndarray, np.ndarray]:
    """L-BFGS-B on the real coordinates of all starts at once (their log EIs summed: the
    starts are independent, so the gradient separates). It works on the scaled features
    (coordinate / length scale), where the acquisition is about equally curved in every
    direction: far fewer iterations than in the unit cube."""
    from scipy import optimize
    cols = feats.real_columns
    scales = gp.metric.scales
    z = feats.scaled(points, gp.metric)
    before = gp.acquire(z, best)

    def objective(flat: np.ndarray) -> tuple[float, np.ndarray]:
        z[:, cols] = flat.reshape(len(points), len(cols))
        value, grad = gp.acquire(z, best, cols)
        return -float(np.sum(value)), -grad.ravel()

    start = z[:, cols].ravel()
    upper = np.tile(scales[cols], len(points))
    res = optimize.minimize(objective, start, jac=True, method="L-BFGS-B",
                            bounds=optimize.Bounds(np.zeros_like(upper), upper),
                            options={"maxiter": maxiter, "maxfun": maxiter + 5})
    out = points.copy()
    out[:, feats.real] = np.clip(res.x.reshape(len(points), len(cols)) / scales[cols], 0.0,
                                 _BELOW_ONE)
    final = gp.acquire(feats.scaled(out, gp.metric), best)
    keep = final >= before
    return np.where(keep[:, None], out, points), np.where(keep, final, before)


def _polish_discrete(gp: _Posterior, best: float, feats: _Features, point: np.ndarray,
                     score: float, rounds: int = 3) -> np.ndarray:
    """Move one integer by one step or change one choice while log EI improves."""
    dims = feats.space.dims
    cols, values = [], []
    for j in feats.integer:
        size = dims[j].size
        cols += [j, j]
        values += [-1.0 / size, 1.0 / size]  # relative moves
    relative = len(cols)
    for j in feats.categorical:
        size = dims[j].size
        cols += [j] * size
        values += list((np.arange(size) + 0.5) / size)
    cols, values = np.array(cols), np.array(values)
    for _ in range(rounds):
        trial = np.repeat(point[None], len(cols), axis=0)
        rows = np.arange(len(cols))
        trial[rows, cols] = np.where(rows < relative, trial[rows, cols] + values, values)
        trial = feats.space.snap(np.clip(trial, 0.0, _BELOW_ONE))
        value = gp.acquire(feats.scaled(trial, gp.metric), best)
        i = int(np.argmax(value))
        if value[i] <= score:
            break
        point, score = trial[i], value[i]
    return point
