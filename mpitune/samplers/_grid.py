"""Grid search: every combination of a finite set of values per parameter."""

from __future__ import annotations

import json
import math
import numbers
from typing import Any, Optional

import numpy as np

from ..errors import SpecError
from ._base import History, Sampler

_BELOW_ONE = float(np.nextafter(1.0, 0.0))
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def _is_number(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _key(value: Any) -> str:
    """How the space tells choices apart (see Categorical.to_unit)."""
    try:
        return json.dumps(value, sort_keys=True)
    except (TypeError, ValueError):
        return repr(value)


def _units(dim, values: list) -> np.ndarray:
    """The unit values of a dimension's grid values.

    Integer and Categorical values map to their cell centres and come back exactly. Real
    values go through the unit cube like every sampler's, so the objective may get them
    a few ulps off (``0.0010000000000000002`` for ``1e-3`` on a log scale); the top of a
    Real range maps to the largest float below 1 (samplers propose ``[0, 1)``)."""
    return np.minimum(dim.to_unit(values), _BELOW_ONE)


class GridSampler(Sampler):
    """Every combination of the parameters' values, each exactly once.

    Integer and Categorical parameters take all their values (an Integer with a step: its
    step grid), Real parameters ``levels`` evenly spaced values from ``low`` to ``high``
    (geometrically spaced on a log scale), and ``values={"name": [...]}`` gives the values
    of some parameters explicitly (checked against the dimension when bound).

    Point ``i`` of the search (``history.n_total`` counts them) is combination ``π(i)``,
    where combinations are numbered lexicographically, last parameter fastest. With
    ``shuffle=True``, ``π(i) = (a·i + b) mod N``, ``gcd(a, N) = 1``: a bijection that needs
    no memory however large the grid. ``a`` is the integer coprime to ``N`` nearest to
    ``N`` times the golden ratio's fractional part (or its complement, drawn from the seed),
    which spreads a partial grid over the space like a Weyl sequence; ``b`` is drawn from
    the seed. Without shuffle ``π`` is the identity. :meth:`capacity` is ``N``: the search
    stops when the grid is used up; asked for points past ``N`` the sampler cycles (point
    ``i`` is point ``i mod N``).
    """

    name = "grid"
    cost_free = True

    def __init__(self, values: Optional[dict] = None, levels: int = 5,
                 seed: Optional[int] = None, shuffle: bool = True) -> None:
        super().__init__(seed)
        if values is not None and not isinstance(values, dict):
            raise SpecError(f"GridSampler: values must be a dict of parameter name -> list "
                            f"of values, got {values!r}")
        if not isinstance(levels, int) or isinstance(levels, bool) or levels < 1:
            raise SpecError(f"GridSampler: levels must be an int >= 1, got {levels!r}")
        self.values = dict(values or {})
        self.levels = levels
        self.shuffle = bool(shuffle)
        self._units: list[np.ndarray] = []
        self._size = 1
        self._ab = (1, 0)

    def bind(self, space, seed: int, budget: Optional[int] = None) -> None:
        super().bind(space, seed, budget)
        for name in self.values:
            if name not in space.names:
                where = ("a constant, not a searched parameter" if name in space.constants
                         else f"not a parameter of the space ({', '.join(space.names)})")
                raise SpecError(f"GridSampler: values for '{name}': '{name}' is {where}")
        self._units = [_units(dim, self._dim_values(dim)) for dim in space.dims]
        self._size = math.prod(len(u) for u in self._units)
        self._ab = self._affine()

    def _dim_values(self, dim) -> list:
        """The user values of one dimension on the grid, validated if given explicitly."""
        if dim.name in self.values:
            return self._checked(dim, self.values[dim.name])
        if dim.kind == "categorical":
            return list(dim.choices)
        if dim.kind == "integer":
            step = 1 if dim.log else dim.step
            return list(range(dim.low, dim.high + 1, step))
        if self.levels == 1:
            return [float(dim.to_user(np.array([0.5]))[0])]
        spaced = np.geomspace if dim.log else np.linspace
        return [float(v) for v in spaced(dim.low, dim.high, self.levels)]

    @staticmethod
    def _checked(dim, given: Any) -> list:
        def fail(rule: str) -> SpecError:
            return SpecError(f"GridSampler: parameter '{dim.name}': {rule}")

        if not isinstance(given, (list, tuple)) or not given:
            raise fail(f"values must be a non-empty list, got {given!r}")
        if dim.kind == "categorical":
            choices = {_key(c) for c in dim.choices}
            for v in given:
                if _key(v) not in choices:
                    raise fail(f"value {v!r} is not one of the choices {dim.choices!r}")
        else:
            for v in given:
                if not _is_number(v) or not math.isfinite(v):
                    raise fail(f"value {v!r} is not a finite number")
                if not dim.low <= v <= dim.high:
                    raise fail(f"value {v!r} is outside [{dim.low}, {dim.high}]")
                if dim.kind == "integer" and (v != int(v) or (int(v) - dim.low) % dim.step):
                    step = f" with step {dim.step} from {dim.low}" if dim.step != 1 else ""
                    raise fail(f"value {v!r} is not an integer{step}")
            if dim.kind == "integer":
                given = [int(v) for v in given]
        keys = [_key(v) for v in given] if dim.kind == "categorical" else [float(v) for v in given]
        if len(set(keys)) != len(keys):
            raise fail(f"values must be distinct, got {list(given)!r}")
        return list(given)

    def capacity(self) -> Optional[int]:
        """The number of combinations (a Python int: it may exceed 2**63)."""
        return self._size

    def _affine(self) -> tuple[int, int]:
        """``(a, b)`` of the affine permutation, from the seed."""
        n = self._size
        rng = np.random.default_rng([self.seed or 0, n % (2**63)])
        flip, b = rng.integers(0, 2), int(rng.integers(0, 2**62)) % n
        target = round(n * _GOLDEN)
        for offset in range(n + 1):
            for a in (target + offset, target - offset):
                if 0 < a < n and math.gcd(a, n) == 1:
                    return (n - a if flip else a), b
        return 1, b  # n == 1

    def combinations(self, start: int, n: int) -> np.ndarray:
        """The combination numbers of points ``start .. start + n - 1`` of the search."""
        size = self._size
        index = range(start, start + n)
        if self.shuffle:
            a, b = self._ab
            combos = [(a * i + b) % size for i in index]
        else:
            combos = [i % size for i in index]
        return np.array(combos, dtype=np.int64 if size < 2**63 else object)

    def suggest(self, n: int, history: History) -> np.ndarray:
        d = history.ndim
        out = np.empty((n, d))
        if d == 0:
            return out
        remaining = self.combinations(history.n_total, n)
        for j in range(d - 1, -1, -1):  # last parameter fastest
            size = len(self._units[j])
            digit = (remaining % size).astype(np.int64)
            remaining = remaining // size
            out[:, j] = self._units[j][digit]
        return out

    def __repr__(self) -> str:
        return (f"GridSampler(values={self.values!r}, levels={self.levels!r}, "
                f"seed={self.seed!r}, shuffle={self.shuffle!r})")
