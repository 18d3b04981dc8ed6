"""CMA-ES (covariance matrix adaptation evolution strategy) for asynchronous batches.

The update is the standard ``(μ/μ_w, λ)`` CMA-ES of Hansen's tutorial ("The CMA Evolution
Strategy: A Tutorial", arXiv:1604.00772): weighted recombination of the best half,
cumulative step-size adaptation, rank-one plus rank-μ covariance update, positive weights
only. Around it, what a tuner on a cluster needs:

* **State from history alone.** The state is replayed from ``history.x`` and
  ``history.loss`` at every call; a cache of checkpoints only skips the replay of a prefix
  that is unchanged, so a resumed search (or another process) computes the same state.
* **Asynchronous generations.** History does not say which trial number a finished row
  has, only that finished rows come in trial-number order, so a generation is the next
  ``λ`` finished rows in that order: the distribution is updated each time ``λ`` more
  results are in, without waiting for stragglers. A straggler finishing late lands in an
  earlier generation; the replay then starts again from the checkpoint before it.
  Every row enters the update as the point that was evaluated, relative to the current
  mean (Hansen's "injection" of external solutions, with the Mahalanobis length of its
  step clipped), so points drawn from an older distribution, or proposed by another
  sampler before a resume, are used correctly.
* **Reproducible proposals.** Point ``i`` of the search (``history.n_total`` + position
  in the batch) is ``mean + σ·B·D·z_i``, where ``z_i`` comes from a generator seeded with
  ``(seed, i // 64)``: the same state always proposes the same points at the same
  positions, whatever the batch sizes.
* **Bounds.** The distribution lives in the unit cube; a sample outside it is mirrored
  back in at 0 and 1 (repeatedly, however far out: a triangle wave), and the mirrored
  point is what the update sees, so the mean, a convex combination of evaluated points
  and itself, stays in the cube; an optimum on the boundary is approached from inside.
* **Integers** are continuous coordinates snapped to their cells by the space; their
  standard deviation is kept at least 0.4 of a cell (by raising the diagonal of ``C``),
  so they keep moving to the neighbouring values instead of freezing.
* **Categorical** parameters are not modelled: each is drawn uniformly at random, for
  every point, independently of the rest.
* **nan** coordinates (inactive conditional parameters) are imputed with the mean, so
  they move nothing; failed and pruned trials (``nan`` loss) rank last; a generation with
  no result at all changes nothing (three in a row restart the strategy).
* **Restarts** (IPOP): when the real coordinates' standard deviations have shrunk below
  ``1e-10`` of the cube (or ``σ`` below ``1e-12``), the covariance is degenerate, or the
  losses are flat, the strategy restarts from a random mean with a doubled population, at
  most 9 times.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Optional

import numpy as np

from ..errors import SpecError
from ._base import History, Sampler

_BELOW_ONE = float(np.nextafter(1.0, 0.0))
_Z_BLOCK = 64  # proposals drawn per seeded generator
_Z_TAG, _RESTART_TAG = 0x5A, 0x5E  # keep the seed streams of z's and restart means apart
_CHECKPOINTS = 64
_TOLX, _MAX_CONDITION, _MAX_RESTARTS = 1e-10, 1e14, 9
_INTEGER_FLOOR = 0.4  # least standard deviation of an integer coordinate, in cells


class _Strategy:
    """The constants of the tutorial's Table 1 for dimension ``n`` and population ``lam``."""

    def __init__(self, n: int, lam: int) -> None:
        self.n, self.lam, self.mu = n, lam, lam // 2
        w = math.log((lam + 1) / 2) - np.log(np.arange(1, self.mu + 1))
        self.weights = w / w.sum()
        self.mueff = 1.0 / float(np.sum(self.weights**2))
        mueff = self.mueff
        self.cc = (4 + mueff / n) / (n + 4 + 2 * mueff / n)
        self.cs = (mueff + 2) / (n + mueff + 5)
        self.c1 = 2 / ((n + 1.3) ** 2 + mueff)
        self.cmu = min(1 - self.c1, 2 * (mueff - 2 + 1 / mueff) / ((n + 2) ** 2 + mueff))
        self.damps = 1 + 2 * max(0.0, math.sqrt((mueff - 1) / (n + 1)) - 1) + self.cs
        self.chi_n = math.sqrt(n) * (1 - 1 / (4 * n) + 1 / (21 * n * n))
        self.clip = math.sqrt(n) + 2 * n / (n + 2)  # longest accepted Mahalanobis step
        self.flat_window = 10 + math.ceil(30 * n / lam)


class _State:
    """Mean, step size, covariance (with its eigendecomposition) and evolution paths."""

    def __init__(self, mean: np.ndarray, sigma: float, lam: int, restarts: int = 0,
                 used: int = 0) -> None:
        n = len(mean)
        self.mean, self.sigma, self.lam = mean, sigma, lam
        self.cov, self.basis, self.scales = np.eye(n), np.eye(n), np.ones(n)
        self.p_sigma, self.p_c = np.zeros(n), np.zeros(n)
        self.generation, self.restarts, self.used = 0, restarts, used
        self.bests: list[float] = []
        self.empty = 0  # consecutive generations without any result

    def copy(self) -> _State:
        new = _State.__new__(_State)
        new.__dict__.update({k: (v.copy() if isinstance(v, (np.ndarray, list)) else v)
                             for k, v in self.__dict__.items()})
        return new


class CMAESSampler(Sampler):
    """CMA-ES on the continuous (Real, Integer) parameters; see the module docstring.

    ``popsize`` is ``λ``, the number of results per update, by default ``4 + ⌊3 ln n⌋``
    for ``n`` modelled parameters; with many workers, a ``popsize`` of at least the number
    of workers keeps the points in flight from lagging many updates behind. ``sigma0`` is
    the initial step size in the unit cube; the initial mean is the centre of the cube.
    """

    name = "cmaes"

    def __init__(self, seed: Optional[int] = None, popsize: Optional[int] = None,
                 sigma0: float = 0.3) -> None:
        super().__init__(seed)
        if popsize is not None and (not isinstance(popsize, int) or isinstance(popsize, bool)
                                    or popsize < 2):
            raise SpecError(f"CMAESSampler: popsize must be an int >= 2, got {popsize!r}")
        if not isinstance(sigma0, (int, float)) or not 0 < sigma0 <= 1:
            raise SpecError(f"CMAESSampler: sigma0 must be in (0, 1], got {sigma0!r}")
        self.popsize, self.sigma0 = popsize, float(sigma0)
        self._cache_key: Optional[tuple] = None
        self._checkpoints: deque[_State] = deque(maxlen=_CHECKPOINTS)
        self._rows = self._losses = np.empty(0)
        self._strategies: dict[int, _Strategy] = {}

    # ---- the space -------------------------------------------------------------------

    def _layout(self, space) -> tuple[np.ndarray, np.ndarray]:
        """Column indices of the modelled (Real, Integer) and categorical dimensions."""
        kinds = np.array([dim.kind for dim in space.dims])
        return np.flatnonzero(kinds != "categorical"), np.flatnonzero(kinds == "categorical")

    def _cell_widths(self, space, columns: np.ndarray, mean: np.ndarray) -> np.ndarray:
        """The unit width of the integer cell under the mean, per modelled column (0 for
        reals): the least standard deviation is a fraction of it."""
        widths = np.zeros(len(columns))
        for k, j in enumerate(columns):
            dim = space.dims[j]
            if dim.kind != "integer":
                continue
            if dim.log:
                v = float(dim.to_user(np.array([mean[k]]))[0])
                widths[k] = (math.log(v + 0.5) - math.log(v - 0.5)) / (
                    math.log(dim.high + 0.5) - math.log(dim.low - 0.5))
            else:
                widths[k] = 1.0 / dim.size
        return widths

    def _lambda0(self, n: int) -> int:
        return int(self.popsize) if self.popsize else 4 + int(3 * math.log(max(n, 1)))

    def _strategy(self, n: int, lam: int) -> _Strategy:
        if lam not in self._strategies:
            self._strategies[lam] = _Strategy(n, lam)
        return self._strategies[lam]

    # ---- the update ------------------------------------------------------------------

    def _initial(self, n: int) -> _State:
        return _State(np.full(n, 0.5), self.sigma0, self._lambda0(n))

    def _restart(self, state: _State) -> _State:
        if state.restarts >= _MAX_RESTARTS:
            return state
        k = state.restarts + 1
        mean = np.random.default_rng([self.seed or 0, _RESTART_TAG, k]).random(len(state.mean))
        return _State(mean, self.sigma0, self._lambda0(len(mean)) * 2**k, k, state.used)

    def _update(self, state: _State, x: np.ndarray, loss: np.ndarray, space,
                columns: np.ndarray) -> _State:
        """One generation: the ``λ`` evaluated points ``x`` (modelled columns) and losses."""
        s = self._strategy(len(state.mean), state.lam)
        state.used += state.lam
        loss = np.where(np.isnan(loss), np.inf, loss)
        if not np.any(loss < np.inf):
            state.empty += 1
            return self._restart(state) if state.empty >= 3 else state
        state.empty = 0
        x = np.where(np.isnan(x), state.mean, x)
        y = (x - state.mean) / state.sigma
        inv_sqrt = (state.basis / state.scales) @ state.basis.T
        length = np.linalg.norm(y @ inv_sqrt, axis=1)
        y *= np.minimum(1.0, s.clip / np.maximum(length, 1e-300))[:, None]
        best = y[np.argsort(loss, kind="stable")[: s.mu]]
        step = s.weights @ best

        state.mean = state.mean + state.sigma * step
        state.generation += 1
        state.p_sigma = ((1 - s.cs) * state.p_sigma
                         + math.sqrt(s.cs * (2 - s.cs) * s.mueff) * (inv_sqrt @ step))
        norm = float(np.linalg.norm(state.p_sigma))
        h_sigma = (norm / math.sqrt(1 - (1 - s.cs) ** (2 * state.generation))
                   < (1.4 + 2 / (s.n + 1)) * s.chi_n)
        state.p_c = ((1 - s.cc) * state.p_c
                     + h_sigma * math.sqrt(s.cc * (2 - s.cc) * s.mueff) * step)
        rank_one = np.outer(state.p_c, state.p_c) + (1 - h_sigma) * s.cc * (2 - s.cc) * state.cov
        rank_mu = (best.T * s.weights) @ best
        state.cov = (1 - s.c1 - s.cmu) * state.cov + s.c1 * rank_one + s.cmu * rank_mu
        state.sigma *= math.exp(min(1.0, s.cs / s.damps * (norm / s.chi_n - 1)))
        self._condition(state, space, columns)

        state.bests.append(float(loss.min()))
        del state.bests[: -s.flat_window]
        finite = loss[np.isfinite(loss)]
        tol = 1e-12 * max(1.0, abs(float(np.median(finite))))
        flat = (len(state.bests) == s.flat_window and np.ptp(state.bests) <= tol
                and np.ptp(finite) <= tol)
        reals = np.array([space.dims[j].kind == "real" for j in columns])
        small = state.sigma < _TOLX * 1e-2 or (  # the first test ends integer-only searches
            reals.any() and state.sigma * np.sqrt(np.diag(state.cov)[reals]).max() < _TOLX)
        degenerate = state.scales.max() ** 2 > _MAX_CONDITION * state.scales.min() ** 2
        return self._restart(state) if flat or small or degenerate else state

    def _condition(self, state: _State, space, columns: np.ndarray) -> None:
        """Symmetrise ``C``, cap the step size at the cube's size, keep integer coordinates
        at least ``_INTEGER_FLOOR`` cells wide, and refresh the eigendecomposition."""
        cov = (state.cov + state.cov.T) / 2
        state.sigma = min(state.sigma, 1.0 / math.sqrt(float(np.diag(cov).max())))
        floor = (_INTEGER_FLOOR * self._cell_widths(space, columns, state.mean)) / state.sigma
        cov[np.diag_indices_from(cov)] = np.maximum(np.diag(cov), floor**2)
        eigenvalues, state.basis = np.linalg.eigh(cov)
        eigenvalues = np.maximum(eigenvalues, 1e-20 * eigenvalues.max())
        state.scales = np.sqrt(eigenvalues)
        state.cov = (state.basis * eigenvalues) @ state.basis.T

    # ---- replay with a cache of checkpoints ------------------------------------------

    def _replay(self, history: History, columns: np.ndarray) -> _State:
        """The state after every complete generation of the history."""
        space = history.space
        key = (self.seed, space.to_json(), self.popsize, self.sigma0)
        if key != self._cache_key:
            self._cache_key, self._strategies = key, {}
            self._checkpoints.clear()
            self._rows, self._losses = np.empty((0, space.ndim)), np.empty(0)
        x, loss = np.asarray(history.x, dtype=float), np.asarray(history.loss, dtype=float)
        same = min(len(self._rows), len(x))
        if same:  # rows of the cached prefix that still hold: the cache may not change results
            differs = ~(_equal(x[:same], self._rows[:same]).all(axis=1)
                        & _equal(loss[:same], self._losses[:same]))
            if differs.any():
                same = int(np.argmax(differs))
        while self._checkpoints and self._checkpoints[-1].used > same:
            self._checkpoints.pop()
        state = (self._checkpoints[-1] if self._checkpoints
                 else self._initial(len(columns))).copy()
        while state.used + state.lam <= len(x):
            rows = slice(state.used, state.used + state.lam)
            state = self._update(state, x[rows][:, columns], loss[rows], space, columns)
            self._checkpoints.append(state.copy())
        self._rows, self._losses = x[: state.used].copy(), loss[: state.used].copy()
        return state

    # ---- proposals -------------------------------------------------------------------

    def _draws(self, start: int, n: int, d_normal: int, d_uniform: int):
        """``z`` (normal) and ``u`` (uniform) rows of points ``start .. start + n - 1``."""
        index = np.arange(start, start + n)
        blocks, rows = np.divmod(index, _Z_BLOCK)
        z, u = np.empty((n, d_normal)), np.empty((n, d_uniform))
        for b in np.unique(blocks):
            rng = np.random.default_rng([self.seed or 0, _Z_TAG, int(b)])
            mask = blocks == b
            z[mask] = rng.standard_normal((_Z_BLOCK, d_normal))[rows[mask]]
            u[mask] = rng.random((_Z_BLOCK, d_uniform))[rows[mask]]
        return z, u

    def suggest(self, n: int, history: History) -> np.ndarray:
        space = history.space
        columns, categorical = self._layout(space)
        z, u = self._draws(history.n_total, n, len(columns), len(categorical))
        out = np.empty((n, space.ndim))
        out[:, categorical] = u
        if len(columns):
            state = self._replay(history, columns)
            x = state.mean + state.sigma * ((z * state.scales) @ state.basis.T)
            folded = np.mod(x, 2.0)
            out[:, columns] = np.where(folded > 1.0, 2.0 - folded, folded)
        return np.minimum(space.snap(out), _BELOW_ONE)

    def __repr__(self) -> str:
        return (f"CMAESSampler(seed={self.seed!r}, popsize={self.popsize!r}, "
                f"sigma0={self.sigma0!r})")


def _equal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise equality where nan equals nan."""
    return (a == b) | (np.isnan(a) & np.isnan(b))
