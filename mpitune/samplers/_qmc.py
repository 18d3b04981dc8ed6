"""Quasi-random (low-discrepancy) search: scrambled Sobol' points (our generator, see
:mod:`._sobol`) and Latin hypercubes (scipy.stats.qmc)."""

from __future__ import annotations

import numpy as np

from ..errors import SpecError
from ._base import History, Sampler
from ._random import RandomSampler
from ._sobol import BITS, MAXDIM, Sobol


class SobolSampler(Sampler):
    """Scrambled Sobol' points: fill the space more evenly than random points.

    Point ``i`` of the search is point ``i`` of the sequence (``history.n_total`` numbers
    the next one), so a resumed search proposes the points the uninterrupted one would
    have. Above 21201 dimensions, or past the sequence's 2^30 points, it falls back to
    :class:`RandomSampler`.
    """

    name = "sobol"
    cost_free = True

    def __init__(self, seed=None, scramble: bool = True) -> None:
        super().__init__(seed)
        self.scramble = scramble
        self._engine: Sobol | None = None

    def suggest(self, n: int, history: History) -> np.ndarray:
        d = history.ndim
        if d == 0:
            return np.empty((n, 0))
        if d > MAXDIM or history.n_total + n > 2 ** BITS:
            return RandomSampler(self.seed).suggest(n, history)
        if self._engine is None or self._engine.d != d:
            self._engine = Sobol(d, scramble=self.scramble, seed=self.seed)
        points = self._engine.points(history.n_total, n)
        return np.minimum(points, np.nextafter(1.0, 0.0))

    def __repr__(self) -> str:
        return f"SobolSampler(seed={self.seed!r}, scramble={self.scramble!r})"


class LatinHypercubeSampler(Sampler):
    """Latin hypercube points, in blocks of ``block`` points: within a block, every column
    has exactly one point in each of the ``block`` strata ``[k/block, (k+1)/block)``.

    Block ``k`` is drawn from its own generator, seeded with ``(seed, k)``, and point ``i``
    of the search is row ``i % block`` of block ``i // block``: a resumed search proposes
    the points the uninterrupted one would have, whatever the batch sizes. ``block``
    defaults to the trial budget (capped at 4096) when :meth:`bind` is told it, so a whole
    search is one Latin hypercube; else 256. A budget changed on resume changes the default
    block, hence the points still to come (the finished ones are kept).
    """

    name = "lhs"
    cost_free = True
    MAX_BLOCK = 4096
    DEFAULT_BLOCK = 256

    def __init__(self, seed=None, block: int | None = None) -> None:
        super().__init__(seed)
        if block is not None and (not isinstance(block, int) or isinstance(block, bool)
                                  or block < 1):
            raise SpecError(f"LatinHypercubeSampler: block must be an int >= 1, got {block!r}")
        self.block = block
        self._cached: tuple[int, int, int, np.ndarray] | None = None  # (seed, size, k, block)

    def block_size(self) -> int:
        """The number of points per Latin hypercube block."""
        if self.block is not None:
            return self.block
        budget = getattr(self, "budget", None)
        if budget:
            return max(1, min(int(budget), self.MAX_BLOCK))
        return self.DEFAULT_BLOCK

    def _block(self, k: int, size: int, d: int) -> np.ndarray:
        key = (self.seed or 0, size, k)
        if self._cached is not None and self._cached[:3] == key:
            return self._cached[3]
        from scipy.stats import qmc

        rng = np.random.default_rng([self.seed or 0, k])
        try:
            engine = qmc.LatinHypercube(d, rng=rng)
        except TypeError:  # scipy < 1.15 names it seed
            engine = qmc.LatinHypercube(d, seed=rng)
        points = np.minimum(engine.random(size), np.nextafter(1.0, 0.0))
        self._cached = (*key, points)
        return points

    def suggest(self, n: int, history: History) -> np.ndarray:
        d = history.ndim
        if d == 0:
            return np.empty((n, 0))
        size = self.block_size()
        index = np.arange(history.n_total, history.n_total + n)
        blocks, rows = np.divmod(index, size)
        out = np.empty((n, d))
        for k in np.unique(blocks):
            mask = blocks == k
            out[mask] = self._block(int(k), size, d)[rows[mask]]
        return out

    def __repr__(self) -> str:
        return f"LatinHypercubeSampler(seed={self.seed!r}, block={self.block!r})"
