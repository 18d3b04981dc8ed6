"""Quasi-random (low-discrepancy) search with scipy.stats.qmc."""

from __future__ import annotations

import warnings

import numpy as np

from ._base import History, Sampler
from ._random import RandomSampler


class SobolSampler(Sampler):
    """Scrambled Sobol' points: fill the space more evenly than random points.

    The engine is fast-forwarded to ``history.n_total``, so a resumed search proposes the
    points the uninterrupted one would have. Above scipy's dimension limit (21201) it
    falls back to :class:`RandomSampler`.
    """

    name = "sobol"

    def __init__(self, seed=None, scramble: bool = True) -> None:
        super().__init__(seed)
        self.scramble = scramble
        self._engine = None
        self._position = -1

    def suggest(self, n: int, history: History) -> np.ndarray:
        from scipy.stats import qmc

        d = history.ndim
        if d == 0:
            return np.empty((n, 0))
        if d > qmc.Sobol.MAXDIM:
            return RandomSampler(self.seed).suggest(n, history)
        if self._engine is None or self._position > history.n_total:
            self._engine = qmc.Sobol(d, scramble=self.scramble, seed=self.seed)
            self._position = 0
        if self._position != history.n_total:
            self._engine.fast_forward(history.n_total - self._position)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # balance needs 2^k points; fine
            points = self._engine.random(n)
        self._position = history.n_total + n
        return np.minimum(points, np.nextafter(1.0, 0.0))

    def __repr__(self) -> str:
        return f"SobolSampler(seed={self.seed!r}, scramble={self.scramble!r})"
