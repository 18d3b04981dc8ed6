"""Uniform random search, counter-based so that a resume continues the same stream."""

from __future__ import annotations

import numpy as np

from ._base import History, Sampler


class RandomSampler(Sampler):
    """Independent uniform points. Point ``i`` of the search is always the same for a seed:
    the PCG64 stream is advanced to ``i * d`` draws, whatever happened before."""

    name = "random"

    def suggest(self, n: int, history: History) -> np.ndarray:
        d = history.ndim
        bits = np.random.PCG64(self.seed)
        bits.advance(history.n_total * d)
        return np.random.Generator(bits).random((n, d))
