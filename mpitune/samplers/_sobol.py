"""The Sobol' sequence, scrambled as scipy.stats.qmc.Sobol scrambles it (a linear matrix
scramble followed by a random digital shift), computed directly at any index.

Ours rather than ``scipy.stats.qmc.Sobol`` because importing ``scipy.stats`` costs rank 0
1.2-1.5 s at every start on this machine (more from a cluster's shared file system), while
every worker waits for the first batch: the quasi-random start-up design of the default
samplers then doubled the start-up time of a short search. The points are the same
sequence as scipy's (the tests check the unscrambled ones bit for bit); the generator is
stateless, so a resumed search asks for point ``n`` directly instead of fast-forwarding
an engine.

Direction numbers: S. Joe and F. Y. Kuo, "Constructing Sobol sequences with better
two-dimensional projections", SIAM J. Sci. Comput. 30 (2008) 2635-2654, search criterion
6, 21201 dimensions (``sobol_directions.npz``: the primitive polynomials and initial
numbers, as scipy ships them; https://web.maths.unsw.edu.au/~fkuo/sobol/, BSD licence,
Copyright (c) 2008, Frances Y. Kuo and Stephen Joe).
"""

from __future__ import annotations

import functools
import os
from typing import Optional

import numpy as np

BITS = 30  # as scipy's default: 2^30 points before the sequence repeats
MAXDIM = 21201


@functools.lru_cache(maxsize=1)
def _table() -> tuple[np.ndarray, np.ndarray]:
    path = os.path.join(os.path.dirname(__file__), "sobol_directions.npz")
    with np.load(path) as z:
        return z["poly"].astype(np.uint64), z["vinit"].astype(np.uint64)


@functools.lru_cache(maxsize=8)
def direction_numbers(d: int) -> np.ndarray:
    """(d, BITS) direction numbers of the first ``d`` dimensions, as ``BITS``-bit integers:
    column k is XORed into a point when bit k of its index's Gray code is set. Read-only."""
    if not 1 <= d <= MAXDIM:
        raise ValueError(f"Sobol' points have 1 to {MAXDIM} dimensions, not {d}")
    poly, vinit = _table()
    poly, vinit = poly[:d], vinit[:d]
    degree = np.floor(np.log2(poly.astype(float))).astype(np.int64)  # odd: exact
    degree[0] = 0  # the first dimension is van der Corput's: every m_k = 1
    m = np.zeros((d, BITS), dtype=np.uint64)
    width = vinit.shape[1]
    m[:, :width] = vinit[:, :BITS]
    m[0] = 1
    for k in range(BITS):  # m_k = 2a_1 m_{k-1} ^ 4a_2 m_{k-2} ^ ... ^ 2^s m_{k-s} ^ m_{k-s}
        grow = (degree > 0) & (k >= degree)
        if not grow.any():
            continue
        rows = np.flatnonzero(grow)
        s = degree[rows]
        back = m[rows, k - s]
        value = back ^ (back << s.astype(np.uint64))
        for i in range(1, int(s.max())):
            has = i < s
            coeff = (poly[rows] >> (s - i).astype(np.uint64)) & np.uint64(1)
            term = np.where(has, m[rows, np.maximum(k - i, 0)], 0).astype(np.uint64)
            value ^= (coeff * term) << np.uint64(i)
        m[rows, k] = value
    shifts = (BITS - 1 - np.arange(BITS)).astype(np.uint64)
    v = m << shifts
    v.flags.writeable = False
    return v


def _scrambled(d: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Direction numbers under a random linear matrix scramble (a lower-triangular binary
    matrix with unit diagonal per dimension), and a random digital shift per dimension."""
    v = direction_numbers(d)
    top_first = (BITS - 1 - np.arange(BITS)).astype(np.uint64)
    bits = ((v[:, None, :] >> top_first[None, :, None]) & np.uint64(1)).astype(np.uint8)
    lower = np.tril(rng.integers(0, 2, size=(d, BITS, BITS), dtype=np.uint8), -1)
    lower[:, np.arange(BITS), np.arange(BITS)] = 1
    mixed = np.matmul(lower, bits) & 1  # (d, bit row, k): sums of at most BITS ones
    scrambled = np.bitwise_or.reduce(mixed.astype(np.uint64) << top_first[None, :, None],
                                     axis=1)
    shift = rng.integers(0, 2 ** BITS, size=d, dtype=np.uint64)
    return scrambled, shift


class Sobol:
    """Points ``start .. start + n - 1`` of the ``d``-dimensional Sobol' sequence in
    [0, 1)^d, scrambled with ``seed`` (or not). Each point depends on its index alone."""

    def __init__(self, d: int, scramble: bool = True, seed: Optional[int] = None) -> None:
        if scramble:
            self.v, self.shift = _scrambled(d, np.random.default_rng(seed))
        else:
            self.v, self.shift = direction_numbers(d), np.zeros(d, dtype=np.uint64)
        self.d = d

    def points(self, start: int, n: int) -> np.ndarray:
        if n == 0:
            return np.empty((0, self.d))
        if start + n > 2 ** BITS:
            raise ValueError(f"the Sobol' sequence has 2^{BITS} points")
        index = np.arange(start, start + n, dtype=np.uint64)
        gray = index ^ (index >> np.uint64(1))
        out = np.broadcast_to(self.shift, (n, self.d)).copy()
        for k in range(int(gray.max()).bit_length()):
            set_ = ((gray >> np.uint64(k)) & np.uint64(1)).astype(bool)
            out[set_] ^= self.v[:, k]
        return out * 2.0 ** -BITS
