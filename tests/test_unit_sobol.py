"""The Sobol' generator (samplers/_sobol.py): scipy's sequence, its scramble's balance,
and direct access by index (that the start-up design imports no scipy.stats: see
test_unit_samplers.py)."""

import numpy as np
import pytest
from scipy.stats import qmc

from mpitune.samplers._sobol import BITS, MAXDIM, Sobol, direction_numbers


@pytest.mark.parametrize("d", [1, 2, 3, 7, 64, 1111])
def test_unscrambled_points_are_scipys_bit_for_bit(d):
    ours = Sobol(d, scramble=False)
    np.testing.assert_array_equal(ours.points(0, 1024), qmc.Sobol(d, scramble=False).random(1024))
    engine = qmc.Sobol(d, scramble=False)
    engine.fast_forward(100_003)
    np.testing.assert_array_equal(ours.points(100_003, 77), engine.random(77))


def test_every_dimension_of_the_table_matches_scipy():
    np.testing.assert_array_equal(Sobol(MAXDIM, scramble=False).points(0, 64),
                                  qmc.Sobol(MAXDIM, scramble=False).random(64))
    with pytest.raises(ValueError, match="21201"):
        direction_numbers(MAXDIM + 1)


@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_scrambled_points_keep_the_net_balance(seed):
    """2^m scrambled points: each coordinate has one point in each of 2^m intervals, and
    the first two coordinates one in each 2^a x 2^(m-a) box (a (0, m, 2)-net)."""
    m = 8
    p = Sobol(10, seed=seed).points(0, 2 ** m)
    assert np.all((p >= 0) & (p < 1))
    for j in range(10):
        assert np.bincount((p[:, j] * 2 ** m).astype(int), minlength=2 ** m).max() == 1
    for a in range(m + 1):
        boxes = (p[:, 0] * 2 ** a).astype(int) * 2 ** (m - a) + (p[:, 1] * 2 ** (m - a)).astype(int)
        assert np.bincount(boxes, minlength=2 ** m).max() == 1, a
    assert qmc.discrepancy(p) < 0.5 * qmc.discrepancy(np.random.default_rng(seed).random(p.shape))


def test_points_depend_on_the_seed_and_their_index_only():
    whole = Sobol(5, seed=7).points(0, 300)
    pieces = np.vstack([Sobol(5, seed=7).points(a, b - a)
                        for a, b in ((0, 1), (1, 64), (64, 65), (65, 300))])
    np.testing.assert_array_equal(whole, pieces)
    assert not np.array_equal(whole, Sobol(5, seed=8).points(0, 300))
    assert not np.array_equal(whole, Sobol(5, scramble=False).points(0, 300))
    assert Sobol(5, seed=7).points(0, 0).shape == (0, 5)


def test_the_sequence_ends_after_2_to_the_bits_points():
    s = Sobol(2, seed=1)
    assert s.points(2 ** BITS - 1, 1).shape == (1, 2)
    with pytest.raises(ValueError, match="2\\^30"):
        s.points(2 ** BITS - 1, 2)

