"""Grid search: every combination of a finite set of values per parameter."""

from __future__ import annotations

import bisect
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
    values go through the unit cube like every sampler's and come back as written too
    (``Real.to_user`` tidies the few ulps the round trip costs, see ``space.tidy``), the
    top of a range included, although it maps to the largest float below 1 (samplers
    propose ``[0, 1)``)."""
    return np.minimum(dim.to_unit(values), _BELOW_ONE)


def _rows(a: Optional[np.ndarray], d: int) -> np.ndarray:
    """``a`` as (m, d) rows; none for a history that does not hold the array."""
    if a is None:
        return np.empty((0, d))
    return a if np.ndim(a) == 2 else np.reshape(a, (-1, d))


MAX_BLOCKS = 100_000  # combinations of the values of condition parents a grid may have
MAX_VALUES = 1_000_000  # values an Integer may have on the grid: each is listed in memory
_INT64_SAFE = 2**31  # below this, products of two combination numbers fit in int64


def _ints(values: list, size: int) -> np.ndarray:
    """Combination numbers as an array: int64 where they fit, else Python ints."""
    return np.array(values, dtype=np.int64 if size < 2**63 else object)


class _Blocks:
    """The distinct active configurations of a grid, numbered ``0 .. size - 1``.

    The parents of conditions split the grid into blocks, one per combination of the
    parents' active values (parents in order, last fastest; an inactive parent is nan). In
    a block the other active parameters take every combination of their values, last
    parameter fastest; inactive parameters are nan and do not multiply the grid. Without
    conditions there is one block, and numbering is lexicographic, last parameter fastest.
    """

    def __init__(self, space, units: list) -> None:
        self.space, self.units = space, units
        d = space.ndim
        self.parents = sorted({space.names.index(p) for dim in space.dims if dim.when
                               for p in dim.when})
        others = [j for j in range(d) if j not in set(self.parents)]
        self.keys: dict[tuple, int] = {}
        self.fixed: list[np.ndarray] = []
        self.free: list[list[int]] = []
        self.strides: list[list[int]] = []
        self.offsets: list[int] = []
        self.size = 0

        def add(row: np.ndarray, key: tuple) -> None:
            active = space.active(row[None, :])[0]
            free = [j for j in others if active[j]]
            strides, size = [], 1
            for j in reversed(free):
                strides.insert(0, size)
                size *= len(units[j])
            self.keys[key] = len(self.fixed)
            self.fixed.append(row)
            self.free.append(free)
            self.strides.append(strides)
            self.offsets.append(self.size)
            self.size += size
            if len(self.fixed) > MAX_BLOCKS:
                raise SpecError(f"GridSampler: the conditions' parents "
                                f"({', '.join(space.names[p] for p in self.parents)}) have "
                                f"more than {MAX_BLOCKS} combinations of values; give fewer "
                                f"values with values={{...}} or use another sampler")

        def walk(k: int, row: np.ndarray, key: tuple) -> None:
            if k == len(self.parents):
                add(row, key)
                return
            j = self.parents[k]
            if not space.active(row[None, :])[0, j]:
                walk(k + 1, row, key + (-1,))
                return
            for i, u in enumerate(units[j]):
                child = row.copy()
                child[j] = u
                walk(k + 1, child, key + (i,))

        walk(0, np.full(d, np.nan), ())

    def rows(self, combos: np.ndarray) -> np.ndarray:
        """The unit rows of combination numbers (nan where a parameter is inactive)."""
        out = np.empty((len(combos), self.space.ndim))
        if len(self.offsets) == 1:
            which = np.zeros(len(combos), dtype=np.int64)
        else:
            which = np.array([bisect.bisect_right(self.offsets, c) - 1 for c in combos],
                             dtype=np.int64)
        for b in np.unique(which):
            at = np.flatnonzero(which == b)
            rest = combos[at] - self.offsets[b]
            out[at] = self.fixed[b]
            for j, stride in zip(self.free[b], self.strides[b]):
                digit = ((rest // stride) % len(self.units[j])).astype(np.int64)
                out[at, j] = self.units[j][digit]
        return out

    def numbers(self, x: np.ndarray) -> np.ndarray:
        """The combination numbers of unit rows (any sampler's, or explicit
        configurations), -1 for rows that are no configuration of the grid.

        Integers and choices are snapped to their cell, so any unit value in it is that
        grid value. A real is a grid value when it is the same user value as far as the
        unit cube can tell (:meth:`Real.same`): a configuration's ``x = 0.3`` or ``x =
        high`` is the grid's ``0.3`` or top, whose unit values differ in the last bits."""
        x = _rows(np.asarray(x, dtype=float), self.space.ndim)
        digits = np.full(x.shape, -1, dtype=np.int64)  # -1: nan; -2: not a grid value
        for j, dim in enumerate(self.space.dims):
            ok = ~np.isnan(x[:, j])
            if not ok.any():
                continue
            u = dim.snap(x[ok, j])  # a Real's is its unit value, in [0, 1]
            order = np.argsort(self.units[j], kind="stable")
            grid = self.units[j][order]
            at = np.minimum(np.searchsorted(grid, u), len(grid) - 1)
            if dim.kind == "real":  # the nearer of the grid values either side
                below = np.maximum(at - 1, 0)
                at = np.where(np.abs(grid[below] - u) < np.abs(grid[at] - u), below, at)
                hit = dim.same(u, grid[at])
            else:
                hit = grid[at] == u
            digits[ok, j] = np.where(hit, order[at], -2)
        out = _ints([-1] * len(x), self.size)
        if len(self.parents):
            keys, group = np.unique(digits[:, self.parents], axis=0, return_inverse=True)
            group = np.asarray(group).reshape(-1)
        else:
            keys, group = np.empty((1, 0), dtype=np.int64), np.zeros(len(x), dtype=np.int64)
        for g, key in enumerate(keys):
            b = self.keys.get(tuple(int(k) for k in key))
            if b is None:
                continue
            at = np.flatnonzero(group == g)
            free = digits[np.ix_(at, self.free[b])]
            good = (free >= 0).all(axis=1)
            at, free = at[good], free[good]
            number = _ints([self.offsets[b]] * len(at), self.size)
            for col, stride in enumerate(self.strides[b]):
                number = number + free[:, col].astype(number.dtype) * stride
            out[at] = number
        return out


class GridSampler(Sampler):
    """Every combination of the parameters' values, each exactly once.

    Integer and Categorical parameters take all their values (an Integer with a step: its
    step grid), Real parameters ``levels`` evenly spaced values from ``low`` to ``high``
    (geometrically spaced on a log scale), and ``values={"name": [...]}`` gives the values
    of some parameters explicitly (checked against the dimension when bound).

    Combinations are the distinct active configurations, numbered as in :class:`_Blocks`
    (lexicographically, last parameter fastest, without conditions); an inactive
    conditional parameter does not multiply them. Position ``i`` of the grid's order is
    combination ``π(i)``. With ``shuffle=True``, ``π(i) = (a·i + b) mod N``,
    ``gcd(a, N) = 1``: a bijection that needs no memory however large the grid. ``a`` is
    the integer coprime to ``N`` nearest to ``N`` times the golden ratio's fractional part
    (or its complement, drawn from the seed), which spreads a partial grid over the space
    like a Weyl sequence; ``b`` is drawn from the seed. Without shuffle ``π`` is the
    identity. :meth:`suggest` proposes the first positions whose configuration is in
    neither the finished nor the pending trials, so every configuration runs once, also
    after trials of another sampler or explicit configurations, and the same history
    gives the same points. :meth:`capacity` is ``N``; :meth:`remaining`, the
    configurations a history does not hold yet, is what the search still runs (the
    suggester's budget): the search stops when the grid is used up; asked for more, the
    sampler cycles.
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
        self._blocks = _Blocks(space, self._units)
        self._size = self._blocks.size
        self._ab = self._affine()

    def _dim_values(self, dim) -> list:
        """The user values of one dimension on the grid, validated if given explicitly."""
        if dim.name in self.values:
            return self._checked(dim, self.values[dim.name])
        if dim.kind == "categorical":
            return list(dim.choices)
        if dim.kind == "integer":
            step = 1 if dim.log else dim.step
            if dim.size > MAX_VALUES:
                raise SpecError(f"GridSampler: parameter '{dim.name}' has {dim.size} values "
                                f"({dim.low}..{dim.high}), more than the {MAX_VALUES} a grid "
                                f"lists; give the ones to try with GridSampler(values="
                                f"{{'{dim.name}': [...]}}) or use another sampler")
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
        """The number of distinct configurations (a Python int: it may exceed 2**63)."""
        return self._size

    def _affine(self) -> tuple[int, int]:
        """``(a, b)`` of the affine permutation, from the seed."""
        n = self._size
        rng = np.random.default_rng([self.seed or 0, n % (2**63)])
        flip, b = rng.integers(0, 2), int(rng.integers(0, 2**62)) % n
        if n < 2**53:
            target = round(n * _GOLDEN)
        else:  # exact integer arithmetic: n may be far beyond a float's range
            scale = 2**64
            target = (n * round(_GOLDEN * scale) + scale // 2) // scale
        for offset in range(n + 1):
            for a in (target + offset, target - offset):
                if 0 < a < n and math.gcd(a, n) == 1:
                    return (n - a if flip else a), b
        return 1, b  # n == 1

    def _permute(self, positions) -> np.ndarray:
        """``π`` of each position: its combination number."""
        size = self._size
        if self.shuffle:
            a, b = self._ab
            return _ints([(a * int(i) + b) % size for i in positions], size)
        return _ints([int(i) % size for i in positions], size)

    def combinations(self, start: int, n: int) -> np.ndarray:
        """The combination numbers of positions ``start .. start + n - 1`` of ``π``."""
        return self._permute(range(start, start + n))

    def held(self, history: History) -> np.ndarray:
        """The distinct combination numbers, sorted, of the grid configurations that the
        history's finished and pending trials hold (trials off the grid hold none)."""
        seen = np.concatenate([_rows(history.x, history.ndim),
                               _rows(history.pending, history.ndim)])
        if not len(seen):
            return _ints([], self._size)
        numbers = self._blocks.numbers(seen)
        return np.unique(numbers[numbers >= 0])

    def positions(self, history: History) -> list[int]:
        """The sorted positions (in ``π``'s order) of the grid configurations that the
        history's finished and pending trials already hold."""
        numbers = self.held(history)
        size = self._size
        if not self.shuffle or not len(numbers):
            return numbers.tolist()
        a, b = self._ab
        inverse = pow(a, -1, size) if size > 1 else 0
        if size < _INT64_SAFE:
            return np.unique((inverse * (numbers - b)) % size).tolist()
        return sorted({(inverse * (int(c) - b)) % size for c in numbers})

    def remaining(self, history: History) -> int:
        """How many grid configurations the history does not hold yet: what
        :meth:`suggest` proposes before it cycles. Trials of another sampler, repeated
        ones and explicit configurations off the grid hold none."""
        return self._size - len(self.held(history))

    def suggest(self, n: int, history: History) -> np.ndarray:
        """Free positions ``k .. k + n - 1``: the positions of ``π`` whose configuration
        is in neither the finished nor the pending trials, skipping the first ``k``, the
        trials that ``history.n_total`` counts but the history does not show (interrupted
        ones, which run again with their own configuration). So each configuration runs
        once, whatever ran before, and the same history gives the same points. When they
        are used up, positions ``0, 1, ...`` again (the grid cycles)."""
        d = history.ndim
        if d == 0 or n <= 0:
            return np.empty((max(n, 0), d))
        done = self.positions(history)
        shown = len(_rows(history.x, d)) + len(_rows(history.pending, d))
        skip = max(0, history.n_total - shown)
        n_free = self._size - len(done)
        if not n_free:
            return self._blocks.rows(self._permute([i % self._size for i in range(n)]))
        wanted = [(skip + i) % n_free for i in range(n)]
        # the j-th free position is j plus the number of done positions D_i with D_i - i <= j
        gaps = [p - i for i, p in enumerate(done)]  # nondecreasing
        chosen = [j + bisect.bisect_right(gaps, j) for j in wanted]
        return self._blocks.rows(self._permute(chosen))

    def __repr__(self) -> str:
        return (f"GridSampler(values={self.values!r}, levels={self.levels!r}, "
                f"seed={self.seed!r}, shuffle={self.shuffle!r})")
