"""Uniform random search, counter-based so that a resume continues the same stream."""

from __future__ import annotations

import numpy as np

from ._base import History, Sampler


class RandomSampler(Sampler):
    """Independent uniform points. Point ``i`` of the search is always the same for a seed:
    the PCG64 stream is advanced to ``i * d`` draws, whatever happened before."""

    name = "random"
    cost_free = True

    def __init__(self, seed=None) -> None:
        super().__init__(seed)
        self._rng: np.random.Generator | None = None
        self._position = -1  # the point the cached generator draws next

    def suggest(self, n: int, history: History) -> np.ndarray:
        d = history.ndim
        if self._rng is None or self._position != history.n_total:
            bits = np.random.PCG64(self.seed)
            bits.advance(history.n_total * d)
            self._rng = np.random.Generator(bits)
        self._position = history.n_total + n
        return self._rng.random((n, d))
