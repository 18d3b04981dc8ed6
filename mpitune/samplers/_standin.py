"""The points a model-based sampler's search gets while the model is too slow for it.

When trials are shorter than a model takes to propose them (milliseconds of objective, or
the one-step trials of an ASHA rung), the suggester does not keep workers waiting: the
points the model cannot make in time come from :class:`StandInSampler`, which costs
almost nothing (no fit, O(m) in the history). Blind points (Sobol') would waste those
trials; these are half Sobol' points, so the space stays covered, and half Gaussian steps
from the best trials so far, where a model would most likely have sent them. Under a
pruner, "best" follows :func:`._base.rank_order`: complete trials first, then pruned
ones, those that got further first.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from ..space import Categorical
from ._base import History, Sampler, rank_order
from ._qmc import SobolSampler

_BELOW_ONE = np.nextafter(1.0, 0.0)


def best_rows(loss: np.ndarray, stop_step: np.ndarray, stop_loss: np.ndarray,
              k: int) -> np.ndarray:
    """The first ``k`` of :func:`rank_order` (unordered among themselves), in O(m) when at
    least ``k`` trials have a final loss."""
    loss = np.asarray(loss, dtype=float)
    final = np.flatnonzero(np.isfinite(loss))
    if len(final) >= k:
        return final[np.argpartition(loss[final], k - 1)[:k]]
    return rank_order(loss, stop_step, stop_loss)[:k]


class StandInSampler(Sampler):
    """Cheap points for a model-based search: Sobol' points and steps from the incumbents.

    Point ``i`` of the search (``history.n_total + row``) is a step from one of the
    ``n_best`` best trials when ``i`` is odd and at least ``min_results`` trials can be
    ranked, else the Sobol' point of that index. A step moves each coordinate with
    probability ``min(1, 4 / d)`` (at least one) by a normal draw whose scale is drawn
    log-uniformly from 1e-3 to 0.3 of the range; a categorical that moves takes a random
    choice; a step that lands on the configuration of one of the best trials (small steps
    of integers and choices) is dropped for the Sobol' point. Deterministic for a seed and
    a history.
    """

    name = "stand-in"
    cost_free = True

    def __init__(self, seed: Optional[int] = None, n_best: int = 5,
                 min_results: int = 10) -> None:
        super().__init__(seed)
        self.n_best = n_best
        self.min_results = min_results
        self._sobol = SobolSampler(seed)

    def suggest(self, n: int, history: History) -> np.ndarray:
        points = self._sobol.suggest(n, history)
        d = history.ndim
        local = np.flatnonzero((history.n_total + np.arange(n)) % 2 == 1)
        if d == 0 or len(local) == 0:
            return points
        loss = history.loss
        if np.count_nonzero(np.isfinite(loss) | np.isfinite(history.stop_loss)) \
                < self.min_results:
            return points
        best = best_rows(loss, history.stop_step, history.stop_loss, self.n_best)
        if len(best) == 0:
            return points
        rng = np.random.default_rng([self.seed or 0, history.n_total, 2])
        k = len(local)
        centres = history.x[best[rng.integers(len(best), size=k)]]
        centres = np.where(np.isnan(centres), rng.random((k, d)), centres)
        scale = np.exp(rng.uniform(math.log(1e-3), math.log(0.3), size=(k, 1)))
        moved = rng.random((k, d)) < min(1.0, 4.0 / d)
        moved[np.arange(k), rng.integers(d, size=k)] = True
        step = np.clip(centres + moved * scale * rng.standard_normal((k, d)), 0.0, _BELOW_ONE)
        categorical = np.array([isinstance(dim, Categorical) for dim in history.space.dims])
        redraw = moved & categorical
        step[redraw] = rng.random(int(redraw.sum()))
        step = history.space.snap(step)
        # a step that stays in the cells of its centre (integers, choices), or lands on
        # another of the best trials, would run that configuration again: such rows keep
        # their Sobol' point
        tops = history.space.snap(history.x[best])
        same = np.any(np.all(step[:, None, :] == tops[None], axis=2), axis=1)
        points[local[~same]] = step[~same]
        return points

    def __repr__(self) -> str:
        return f"StandInSampler(seed={self.seed!r})"
