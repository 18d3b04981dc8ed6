"""The search space: typed dimensions and the map between the unit cube and user values.

Samplers work in the unit hypercube ``[0, 1)^d``; the :class:`Space` maps ``(n, d)`` unit
arrays to user values (log scales, integer steps, categorical choices) and back, column by
column with numpy. Constants take no dimension. numpy is imported lazily so that workers,
which only receive finished parameter rows, do not pay for it.
"""

from __future__ import annotations

import copy
import json
import math
import numbers
from typing import Any

from .errors import SpecError, short_repr
from .settings import plain_number

RESERVED_NAMES = frozenset(
    {"number", "state", "value", "worker", "host", "gpu", "t_start", "t_end", "duration",
     "error"}
)


# Integer values travel through float64 (the unit cube, conditional columns): beyond these
# limits neighbouring values share one float64 unit value and would be merged or swapped.
INT_LIMIT = 2**51
LOG_INT_LIMIT = 2**45
INT64 = (-2**63, 2**63 - 1)


_POWERS_OF_TEN = None  # 10.0 ** 0 .. 10.0 ** 22, built on first use (numpy is lazy here)


def _jsonable(x: Any) -> bool:
    try:
        json.dumps(x, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def _is_number(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


# A tidy value is a decimal of at most 12 significant digits (people write no more), or 0,
# within the error of the round trip through the unit cube of the value computed: 16 ulps
# of the largest term in the arithmetic (a log scale of 1e-10..1e10 loses a few ulps
# in its exponent; a linear one ulps of its widest bound, which near 0 is many digits).
_TIDY_DIGITS = 12
_TIDY_ULPS = 16
_TIDY_BY_PYTHON = 16  # values at most, else numpy (see tidy)


def tidy(values, tolerance=None):
    """Each value replaced by the shortest decimal (at most 12 significant digits, or 0)
    within ``tolerance`` of it, if there is one.

    A user value goes through the unit cube (``to_unit``, then ``to_user``) and comes back
    a little off: ``1e-3`` on a log scale as ``0.0010000000000000002``, the top of
    ``Real(0, 1)`` as ``0.9999999999999999``, ``7.77e-06`` on ``Real(-5, 10)`` as
    ``7.76999999985e-06``. Explicit configurations and grid points must reach the
    objective, and the results file, as written. ``tolerance`` (absolute, per value or one
    for all) is the error of that round trip, by default 16 ulps of each value (then 0 is
    never within reach). A value drawn at random rarely moves, and never by more than
    ``tolerance``: the unit cube cannot tell it from the tidy one anyway.

    A few values (the trials of one handout) go through Python's own correctly rounded
    decimal conversion, many (a results file's column) through numpy: each way costs many
    times the other's at the other's size; both give the same values."""
    import numpy as np

    v = np.asarray(values, dtype=float)
    if v.size > _TIDY_BY_PYTHON:
        return _tidy_array(v, tolerance)
    x = v.ravel().tolist()
    if tolerance is None:
        reach = [_TIDY_ULPS * math.ulp(a) for a in x]
    elif np.ndim(tolerance) == 0:
        reach = [float(tolerance)] * len(x)
    else:
        reach = np.broadcast_to(np.asarray(tolerance, dtype=float), v.shape).ravel().tolist()
    out = [_tidy_one(a, r, tolerance is not None) for a, r in zip(x, reach)]
    return np.array(out, dtype=float).reshape(v.shape)


def _tidy_one(x: float, reach: float, to_zero: bool) -> float:
    if not math.isfinite(x) or x == 0.0:
        return x
    if to_zero and abs(x) <= reach:
        return 0.0
    if abs(float(f"{x:.{_TIDY_DIGITS}g}") - x) > reach:  # then every shorter one is too
        return x
    for digits in range(1, _TIDY_DIGITS + 1):
        r = float(f"{x:.{digits}g}")
        if abs(r - x) <= reach:
            return r
    return x  # not reached: the 12-digit one is within reach


def _tidy_array(v, tolerance):
    """:func:`tidy` with numpy: first each value's nearest 12-digit decimal (out of reach
    for almost every value drawn at random, and then so is every shorter one), then 1..11
    digits at once for the values still in play."""
    import numpy as np

    x = v.ravel()
    size = np.abs(x)
    with np.errstate(all="ignore"):  # 0, inf and nan fall out of the comparisons below
        if tolerance is None:  # as math.ulp, which np.spacing is not at the largest float
            reach = _TIDY_ULPS * (np.nextafter(size, np.inf) - size)
            reach[np.isinf(reach)] = _TIDY_ULPS * math.ulp(np.finfo(float).max)
            zero = None
        else:
            reach = np.broadcast_to(np.asarray(tolerance, dtype=float), v.shape).ravel()
            zero = (size <= reach) & np.isfinite(size)
        rounded, near, exact = _round_digits(x, size, reach, np.array([_TIDY_DIGITS - 1]))
        out = np.where(near, rounded, x)
        todo = np.flatnonzero(near)
        if len(todo):
            shorter, ok, _ = _round_digits(x[todo], size[todo], reach[todo],
                                           np.arange(_TIDY_DIGITS - 1))
            fewest = ok.argmax(axis=1)  # the first True, if any
            found = ok[np.arange(len(todo)), fewest]
            out[todo[found]] = shorter[found, fewest[found]]
        # beyond 10**+-22 a power of ten is not exact: such values take the Python way
        beyond = np.flatnonzero(~exact & np.isfinite(size) & (size > 0))
    for i in beyond.tolist():
        out[i] = _tidy_one(float(x[i]), float(reach[i]), zero is not None)
    if zero is not None:
        out[zero] = 0.0
    return out.reshape(v.shape)


def _round_digits(x, size, reach, decimals):
    """Each of ``x`` (``size`` = ``|x|``) rounded to ``decimals + 1`` significant digits
    (one column per entry of ``decimals``), whether that is within ``reach``, and whether
    its last column could be computed exactly. Under ``np.errstate(all="ignore")``."""
    import numpy as np

    global _POWERS_OF_TEN
    if _POWERS_OF_TEN is None:
        _POWERS_OF_TEN = np.array([float(10**i) for i in range(23)])
    x, size, reach = x[:, None], size[:, None], reach[:, None]
    k = decimals - np.floor(np.log10(size))  # decimals kept, may be < 0
    exact = np.abs(k) <= 22  # 10**22 is the largest power of ten float64 holds exactly
    power = _POWERS_OF_TEN.take(np.abs(k).astype(np.intp), mode="clip")
    up = k >= 0
    # n / 10**k and n * 10**k with integer n are correctly rounded: the nearest double
    n = np.round(np.where(up, x * power, x / power))
    rounded = np.where(up, n / power, n * power)
    near = exact & (np.abs(rounded - x) <= reach)
    if rounded.shape[1] == 1:
        return rounded[:, 0], near[:, 0], exact[:, 0]
    return rounded, near, exact[:, -1]


def _finite(x: Any) -> bool:
    """Whether ``x`` has a finite float64 value (an int beyond ~1.8e308 has none)."""
    try:
        return math.isfinite(x)
    except OverflowError:
        return False


def _unstorable(choice: Any, kind: str, float_column: bool) -> str:
    """Why a categorical ``choice`` cannot be stored exactly in a results column of ``kind``
    (see :attr:`Categorical.column_kind`), or '' if it can."""
    if kind == "str":
        if "\x00" in choice:
            return "HDF5 text ends at a NUL character"
        try:
            choice.encode("utf-8")
        except UnicodeEncodeError:
            return "it is not valid UTF-8 text (it has a lone surrogate)"
    elif kind in ("int", "float") and float_column:
        try:
            exact = float(choice) == choice
        except OverflowError:
            exact = False
        if not exact:
            return ("its column is float64 (choices mixed with floats, or a conditional "
                    "parameter), which holds every integer exactly only up to 2**53")
    elif kind == "int" and not INT64[0] <= choice <= INT64[1]:
        return "it does not fit in the column's int64"
    elif kind == "json" and _non_text_keys(choice):
        return "JSON keeps dict keys as text only, so it would come back with other keys"
    return ""


def _non_text_keys(x: Any) -> bool:
    """Whether a dict inside ``x`` (at any depth) has a key that is not a str."""
    if isinstance(x, dict):
        return any(not isinstance(k, str) or _non_text_keys(v) for k, v in x.items())
    if isinstance(x, (list, tuple)):
        return any(_non_text_keys(v) for v in x)
    return False


class Dimension:
    """Base class of one searched parameter; ``name`` is set when the space is built.

    ``when={"parent": value or [values]}`` makes the parameter *conditional*: it exists
    only in trials where each named parent (a Categorical listed earlier in the space) takes
    one of the given values (a list, tuple or set of at least one). Elsewhere it is
    inactive: not passed to the objective and stored as missing."""

    kind = ""
    name = "?"
    when: dict | None = None

    def _fail(self, rule: str) -> SpecError:
        return SpecError(f"parameter '{self.name}': {rule}")

    def validate(self) -> None:
        """Raise :class:`SpecError` naming the parameter if the definition is invalid."""

    def check_limits(self) -> None:
        """Raise :class:`SpecError` if a valid definition has values that the unit cube or
        the results file cannot hold exactly. Not applied to a space read back from a
        results file, so that files written before a limit existed still load."""

    def to_json(self) -> dict:
        raise NotImplementedError

    def to_user(self, u):
        """Map a 1-d array of unit values to a 1-d array of user values."""
        raise NotImplementedError

    def to_unit(self, values):
        """Map user values back to the unit value at the centre of their cell."""
        raise NotImplementedError

    def check_value(self, value: Any, where: str) -> None:
        """Raise :class:`SpecError` unless ``value`` is one this parameter can take."""
        raise NotImplementedError

    def snap(self, u):
        """Move unit values to the unit value of the user value they map to (the centre of
        their cell for integers and choices; reals are unchanged); nan stays nan."""
        return self.canonical(u)

    def canonical(self, u):
        """Unit values moved to the unit value of the user value they stand for, reals
        included (a real's through :func:`tidy`); nan stays nan. Equal results are the
        same user value."""
        import numpy as np

        u = np.asarray(u, dtype=float)
        out = u.copy()
        ok = ~np.isnan(u)
        out[ok] = self._centre(np.clip(u[ok], 0.0, 1.0))
        return out

    def _centre(self, u):
        """The unit value of the user value that the unit values ``u`` map to."""
        return self.to_unit(self.to_user(u))


class Real(Dimension):
    """A real parameter on ``[low, high]``, uniform or log-uniform (``log=True``)."""

    kind = "real"

    def __init__(self, low: float, high: float, log: bool = False,
                 when: dict | None = None) -> None:
        self.low, self.high = plain_number(low), plain_number(high)
        self.log, self.when = log, when

    def validate(self) -> None:
        if not _is_number(self.low) or not _is_number(self.high):
            raise self._fail(f"Real bounds must be numbers, got low={self.low!r}, "
                             f"high={self.high!r}")
        if not (_finite(self.low) and _finite(self.high)):
            raise self._fail(f"Real bounds must be finite, got [{short_repr(self.low)}, "
                             f"{short_repr(self.high)}]")
        if not self.low < self.high:
            raise self._fail(f"low must be < high, got low={short_repr(self.low)}, "
                             f"high={short_repr(self.high)}")
        if not isinstance(self.log, bool):
            raise self._fail(f"log must be True or False, got {self.log!r}")
        if self.log and self.low <= 0:
            raise self._fail(f"a log scale needs low > 0, got low={self.low}")

    def check_limits(self) -> None:
        if not self.log and not math.isfinite(float(self.high) - float(self.low)):
            raise self._fail(f"the width high - low of [{short_repr(self.low)}, "
                             f"{short_repr(self.high)}] overflows float64 (every value "
                             f"would come out as high); narrow the range")

    def check_value(self, value: Any, where: str) -> None:
        if not _is_number(value) or not self.low <= value <= self.high:
            raise SpecError(f"{where}: '{self.name}' = {short_repr(value)} is not a number "
                            f"in [{self.low}, {self.high}]")

    def to_json(self) -> dict:
        return {"type": "real", "low": float(self.low), "high": float(self.high),
                "log": self.log}

    def to_user(self, u):
        """User values of unit values, tidied (see :func:`tidy`): a value that was given
        (an explicit configuration, a grid point, a bound) comes back as written."""
        import numpy as np

        values, tolerance = self._values(u)
        return np.clip(tidy(values, tolerance), self.low, self.high)

    def _values(self, u):
        """User values of unit values before tidying, and the error of a round trip
        through the unit cube at each (an array, or one number on a linear scale)."""
        import numpy as np

        if self.log:
            lo, hi = math.log(self.low), math.log(self.high)
            values = np.exp(lo + u * (hi - lo))
            # an error of e in the exponent is a relative error of e in the value
            return values, _TIDY_ULPS * np.abs(values) * np.spacing(max(abs(lo), abs(hi), 1.0))
        values = self.low + u * (self.high - self.low)
        return values, _TIDY_ULPS * np.spacing(max(abs(self.low), abs(self.high)))

    def same(self, u, v):
        """Whether unit values ``u`` and ``v`` (arrays of one shape) are the same user value
        as far as the unit cube can tell: within the error of its round trip. ``1e-3``
        written in a configuration and the grid's ``1e-3`` (from ``np.geomspace``, some
        ulps off) are; so are the top of a range (unit 1) and the grid's top (the largest
        float below 1, as samplers propose ``[0, 1)``)."""
        import numpy as np

        a, ta = self._values(np.asarray(u, dtype=float))
        b, tb = self._values(np.asarray(v, dtype=float))
        return np.abs(a - b) <= np.maximum(ta, tb)

    def snap(self, u):
        """Reals have no cells: unit values stay as they are (clipped to [0, 1])."""
        import numpy as np

        return np.clip(np.asarray(u, dtype=float), 0.0, 1.0)

    def to_unit(self, values):
        import numpy as np

        v = np.asarray(values, dtype=float)
        if self.log:
            lo, hi = math.log(self.low), math.log(self.high)
            return np.clip((np.log(v) - lo) / (hi - lo), 0.0, 1.0)
        return np.clip((v - self.low) / (self.high - self.low), 0.0, 1.0)

    def __repr__(self) -> str:
        return (f"Real({self.low!r}, {self.high!r}{', log=True' if self.log else ''}"
                f"{_when_repr(self)})")


class Integer(Dimension):
    """An integer parameter on ``[low, high]`` (both included), with an optional ``step``
    or a log scale (``log=True``, then ``low >= 1`` and no step).

    Values map to cells of the float64 unit cube, so ``low``, ``high`` and ``step`` must be
    within ``-2**51..2**51`` and a log scale needs ``high <= 2**45``: beyond, neighbouring
    values share one unit value (a sampler, an explicit configuration or a resumed search
    would get the wrong one), and float64 columns no longer hold every value exactly."""

    kind = "integer"

    def __init__(self, low: int, high: int, step: int = 1, log: bool = False,
                 when: dict | None = None) -> None:
        self.low, self.high, self.step = (plain_number(x) for x in (low, high, step))
        self.log, self.when = log, when

    def validate(self) -> None:
        for label, x in (("low", self.low), ("high", self.high), ("step", self.step)):
            if not isinstance(x, numbers.Integral) or isinstance(x, bool):
                raise self._fail(f"Integer {label} must be an int, got {short_repr(x)}")
        if not self.low < self.high:
            raise self._fail(f"low must be < high, got low={self.low}, high={self.high}")
        if self.step < 1:
            raise self._fail(f"step must be >= 1, got step={self.step}")
        if not isinstance(self.log, bool):
            raise self._fail(f"log must be True or False, got {self.log!r}")
        if self.log and self.low < 1:
            raise self._fail(f"a log scale needs low >= 1, got low={self.low}")
        if self.log and self.step != 1:
            raise self._fail("a log scale cannot have a step")

    def check_limits(self) -> None:
        for label, x in (("low", self.low), ("high", self.high), ("step", self.step)):
            if abs(x) > INT_LIMIT:
                raise self._fail(f"Integer {label} must be within -2**51..2**51 ({INT_LIMIT}) "
                                 f"so that float64 tells neighbouring values apart, got "
                                 f"{short_repr(x)}")
        if self.log and self.high > LOG_INT_LIMIT:
            raise self._fail(f"a log scale needs high <= 2**45 ({LOG_INT_LIMIT}) so that "
                             f"float64 tells neighbouring values apart, got high={self.high}")

    @property
    def size(self) -> int:
        return (self.high - self.low) // self.step + 1

    def check_value(self, value: Any, where: str) -> None:
        ok = _is_number(value) and self.low <= value <= self.high \
            and float(value).is_integer() and (int(value) - self.low) % self.step == 0
        if not ok:
            steps = f" in steps of {self.step}" if self.step != 1 else ""
            raise SpecError(f"{where}: '{self.name}' = {short_repr(value)} is not an integer "
                            f"in {self.low}..{self.high}{steps}")

    def to_json(self) -> dict:
        return {"type": "integer", "low": int(self.low), "high": int(self.high),
                "step": int(self.step), "log": self.log}

    def to_user(self, u):
        import numpy as np

        if self.log:
            lo, hi = math.log(self.low - 0.5), math.log(self.high + 0.5)
            v = np.rint(np.exp(lo + u * (hi - lo)))
            return np.clip(v, self.low, self.high).astype(np.int64)
        index = np.minimum((u * self.size).astype(np.int64), self.size - 1)
        return self.low + index * self.step

    def to_unit(self, values):
        import numpy as np

        v = np.asarray(values, dtype=float)
        if self.log:
            lo, hi = math.log(self.low - 0.5), math.log(self.high + 0.5)
            return np.clip((np.log(v) - lo) / (hi - lo), 0.0, 1.0)
        return ((v - self.low) / self.step + 0.5) / self.size

    def __repr__(self) -> str:
        extra = (", log=True" if self.log else "") + (f", step={self.step}" if self.step != 1
                                                     else "")
        return f"Integer({self.low!r}, {self.high!r}{extra}{_when_repr(self)})"


class Categorical(Dimension):
    """One of a list of JSON-serialisable choices; the objective gets the choice itself.

    Every choice must come back unchanged from the results file, whose column type is
    :attr:`column_kind`: text choices must be valid UTF-8 without NUL characters, integer
    choices must fit int64, or float64 exactly where the column is float64 (mixed with
    floats, or conditional). Choices must be distinct as JSON, and in a float64 column also
    as numbers: ``[0, 0.0, 1]`` is refused, while a JSON-text column keeps ``[0, 0.0, "a"]``
    and ``[True, 1]`` distinct."""

    kind = "categorical"

    def __init__(self, choices, when: dict | None = None) -> None:
        self.choices = list(choices) if isinstance(choices, (list, tuple)) else choices
        self.when = when

    def validate(self) -> None:
        if not isinstance(self.choices, list):
            raise self._fail(f"Categorical choices must be a list, got {self.choices!r}")
        if not self.choices:
            raise self._fail("Categorical needs at least one choice, got []")
        encoded = []
        for c in self.choices:
            try:
                encoded.append(json.dumps(c, sort_keys=True, allow_nan=False))
            except (TypeError, ValueError):
                raise self._fail(f"choice {short_repr(c)} is not JSON-serialisable") from None
        if len(set(encoded)) != len(encoded):
            raise self._fail(f"choices must be distinct, got {self.choices!r}")

    def check_limits(self) -> None:
        kind = self.column_kind
        float_column = kind == "float" or bool(self.when) and kind == "int"
        for c in self.choices:
            why = _unstorable(c, kind, float_column)
            if why:
                raise self._fail(f"choice {short_repr(c)} cannot be stored in the results "
                                 f"file: {why}")
        if kind == "float":
            seen: dict = {}
            for c in self.choices:
                first = seen.setdefault(c, c)
                if first is not c:
                    raise self._fail(f"choices {short_repr(first)} and {short_repr(c)} are "
                                     f"equal numbers, which the results file's float64 "
                                     f"column cannot tell apart")

    @property
    def size(self) -> int:
        return len(self.choices)

    @property
    def column_kind(self) -> str:
        """How the choices are stored in the HDF5 file: str, int, float, bool or json."""
        cs = self.choices
        if all(isinstance(c, str) for c in cs):
            return "str"
        if all(isinstance(c, bool) for c in cs):
            return "bool"
        if all(isinstance(c, numbers.Integral) and not isinstance(c, bool) for c in cs):
            return "int"
        if all(_is_number(c) for c in cs):
            return "float"
        return "json"

    def lookup(self, value: Any) -> int | None:
        """The index of the choice ``value`` names, or None: the choice of equal JSON text,
        else the one number equal to ``value`` (a JSON ``1`` for the choice ``1.0``; bools
        are not numbers here)."""
        key = _json_key(value)
        for k, c in enumerate(self.choices):
            if key is not None and json.dumps(c, sort_keys=True) == key:
                return k
        if _is_number(value):
            equal = [k for k, c in enumerate(self.choices) if _is_number(c) and c == value]
            if len(equal) == 1:
                return equal[0]
        return None

    def check_value(self, value: Any, where: str) -> None:
        if self.lookup(value) is None:
            raise SpecError(f"{where}: '{self.name}' = {short_repr(value)} is not one of "
                            f"{self.choices!r}")

    def to_json(self) -> dict:
        return {"type": "categorical", "choices": self.choices}

    def index(self, u):
        import numpy as np

        return np.minimum((u * self.size).astype(np.int64), self.size - 1)

    def to_user(self, u):
        import numpy as np

        table = np.empty(self.size, dtype=object)
        table[:] = self.choices
        return table[self.index(u)]

    def _centre(self, u):
        """On the indices alone: the choices are distinct, so the round trip through the
        user values (a JSON key per value) gives the same, far more slowly."""
        return (self.index(u) + 0.5) / self.size

    def to_unit(self, values):
        import numpy as np

        keys = {json.dumps(c, sort_keys=True): i for i, c in enumerate(self.choices)}
        idx = np.array([keys[k] if (k := _json_key(v)) in keys else self.lookup(v)
                        for v in values], dtype=float)
        return (idx + 0.5) / self.size

    def __repr__(self) -> str:
        return f"Categorical({self.choices!r}{_when_repr(self)})"


def _json_key(value: Any) -> str | None:
    """JSON text that tells apart what ``==`` does not (True, 1 and 1.0), or None for a
    value that has none."""
    try:
        return json.dumps(value, sort_keys=True)
    except (TypeError, ValueError):
        return None


def _when_repr(dim: Dimension) -> str:
    return f", when={dim.when!r}" if dim.when else ""


class Constant:
    """A fixed value passed to the objective; it takes no dimension of the search."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"Constant({self.value!r})"


_TYPES = {"real": Real, "integer": Integer, "categorical": Categorical}


class Space:
    """An ordered set of named dimensions plus constants.

    Build it from a dict ``name -> Real | Integer | Categorical | Constant | plain value``;
    plain values are constants. ``check_limits=False`` skips each dimension's
    :meth:`~Dimension.check_limits` (for spaces read back from a results file).
    """

    def __init__(self, definition: dict, check_limits: bool = True) -> None:
        if isinstance(definition, Space):
            definition = {**definition.constants, **dict(zip(definition.names,
                                                             definition.dims))}
        if not isinstance(definition, dict) or not definition:
            raise SpecError(f"space must be a non-empty dict of name -> dimension, "
                            f"got {definition!r}")
        self.dims: list[Dimension] = []
        self.constants: dict[str, Any] = {}
        for name, dim in definition.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise SpecError(f"parameter name {name!r} must be an identifier-like string")
            if name in RESERVED_NAMES:
                raise SpecError(f"parameter name '{name}' is reserved for a results column; "
                                f"rename it")
            if isinstance(dim, type) and issubclass(dim, (Dimension, Constant)):
                raise SpecError(f"parameter '{name}': {dim.__name__} must be called with "
                                f"its arguments, e.g. {dim.__name__}(...)")
            if isinstance(dim, Dimension):
                dim = copy.copy(dim)  # the same object may serve under several names
                dim.name = name
                dim.validate()
                if check_limits:
                    dim.check_limits()
                self.dims.append(dim)
            else:
                value = dim.value if isinstance(dim, Constant) else dim
                try:
                    json.dumps(value, allow_nan=False)
                except (TypeError, ValueError):
                    raise SpecError(f"parameter '{name}': {short_repr(value)} is neither a "
                                    f"dimension (Real, Integer, Categorical) nor a "
                                    f"JSON-serialisable constant") from None
                self.constants[name] = value
        self.names = [d.name for d in self.dims]
        self._conditions = self._check_conditions()
        self.conditional = bool(self._conditions)

    def _check_conditions(self) -> dict[int, list[tuple[int, list[int]]]]:
        """Validate every ``when=`` and normalise it to {dim index: [(parent index, allowed
        choice indexes)]}, with each ``when`` rewritten as {parent: [choices]}."""
        index = {name: j for j, name in enumerate(self.names)}
        conditions = {}
        for j, dim in enumerate(self.dims):
            if dim.when is None:
                continue
            if not isinstance(dim.when, dict) or not dim.when:
                raise dim._fail(f"when must be a non-empty dict of parent name -> value(s), "
                                f"got {dim.when!r}")
            rules, normal = [], {}
            for parent, values in dim.when.items():
                p = index.get(parent)
                if p is None or p >= j:
                    where = "a parameter listed before it" if p is None else "listed before it"
                    raise dim._fail(f"when names '{parent}', which must be {where} "
                                    f"(a Categorical)")
                pdim = self.dims[p]
                if not isinstance(pdim, Categorical):
                    raise dim._fail(f"when names '{parent}', which is a {pdim.kind} "
                                    f"parameter; conditions need a Categorical parent")
                keys = [json.dumps(c, sort_keys=True) for c in pdim.choices]
                single = _jsonable(values) and json.dumps(values, sort_keys=True) in keys
                many = not single and isinstance(values, (list, tuple, set, frozenset))
                wanted = list(values) if many else [values]
                if many and not wanted:
                    raise dim._fail(f"when {{'{parent}': {values!r}}} lists no value, so it "
                                    f"would never be active; give some of {parent}'s "
                                    f"choices {pdim.choices!r}")
                allowed = []
                for v in wanted:
                    k = json.dumps(v, sort_keys=True) if _jsonable(v) else None
                    if k not in keys:
                        raise dim._fail(f"when {{'{parent}': {v!r}}}: {v!r} is not one of "
                                        f"{parent}'s choices {pdim.choices!r}")
                    allowed.append(keys.index(k))
                rules.append((p, sorted(set(allowed))))
                normal[parent] = [pdim.choices[i] for i in sorted(set(allowed))]
            dim.when = normal
            conditions[j] = rules
        return conditions

    @property
    def ndim(self) -> int:
        return len(self.dims)

    def active(self, unit):
        """An ``(n, d)`` boolean array: which parameters of each unit row are active."""
        import numpy as np

        unit = np.asarray(unit, dtype=float)
        act = np.ones(unit.shape, dtype=bool)
        for j, rules in self._conditions.items():
            for p, allowed in rules:
                parent = self.dims[p].index(np.nan_to_num(unit[:, p]))
                act[:, j] &= act[:, p] & np.isin(parent, allowed)
        return act

    def mask(self, unit):
        """A copy of ``unit`` with nan where a parameter is inactive."""
        import numpy as np

        out = np.array(unit, dtype=float, copy=True)
        if self.conditional:
            out[~self.active(out)] = np.nan
        return out

    def to_json(self) -> str:
        """A canonical JSON text (dimensions in order); equal spaces give equal text."""
        dims = [{"name": d.name, **d.to_json(), **({"when": d.when} if d.when else {})}
                for d in self.dims]
        return json.dumps({"dimensions": dims, "constants": self.constants}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Space:
        data = json.loads(text)
        definition: dict = {}
        for d in data["dimensions"]:
            kwargs = {k: v for k, v in d.items() if k not in ("type", "name")}
            definition[d["name"]] = _TYPES[d["type"]](**kwargs)
        definition.update({k: Constant(v) for k, v in data["constants"].items()})
        return cls(definition, check_limits=False)  # a stored space loads as it was written

    def snap(self, unit):
        """Snap an ``(n, d)`` unit array column by column, see :meth:`Dimension.snap`."""
        import numpy as np

        out = np.array(unit, dtype=float, copy=True)
        for j, dim in enumerate(self.dims):
            if not isinstance(dim, Real):
                out[:, j] = dim.snap(out[:, j])
        return out

    def canonical(self, unit):
        """:meth:`Dimension.canonical` column by column: two rows are the same
        configuration exactly when their canonical rows are equal (``0.3`` written in a
        configuration and a grid's ``0.30000000000000004`` are)."""
        import numpy as np

        out = np.array(unit, dtype=float, copy=True)
        for j, dim in enumerate(self.dims):
            out[:, j] = dim.canonical(out[:, j])
        return out

    def columns(self, unit) -> list:
        """Map an ``(n, d)`` unit array to one numpy array of user values per dimension.

        Where a coordinate is nan (an inactive conditional parameter) the value is
        meaningless: use :meth:`active` or the unit array to tell."""
        import numpy as np

        return [dim.to_user(np.nan_to_num(unit[:, j]) if dim.when else unit[:, j])
                for j, dim in enumerate(self.dims)]

    def rows(self, unit) -> list:
        """Map an ``(n, d)`` unit array to ``n`` rows of plain Python values: tuples in
        the order of :attr:`names`, or, in a space with conditional parameters, dicts of
        the active parameters only.

        Lists and dicts among categorical choices are fresh copies, so an objective that
        changes its parameters cannot change the space."""
        import numpy as np

        cols = [c.tolist() for c in self.columns(unit)]
        for j, dim in enumerate(self.dims):
            if isinstance(dim, Categorical) and dim.column_kind == "json":
                cols[j] = [copy.deepcopy(v) for v in cols[j]]
        if not self.conditional:
            return list(zip(*cols)) if cols else [()] * len(unit)
        act = ~np.isnan(np.asarray(unit, dtype=float))
        return [{name: col[i] for name, col, a in zip(self.names, cols, act[i]) if a}
                for i in range(len(unit))]

    def params(self, unit) -> list[dict]:
        """Map an ``(n, d)`` unit array to ``n`` dicts of active parameters and constants,
        as the objective receives them."""
        rows = self.rows(unit)
        if not self.conditional:
            rows = [dict(zip(self.names, r)) for r in rows]
        return [{**r, **self.constants} for r in rows]

    def to_unit(self, params: list[dict]):
        """Map user parameter dicts to an ``(n, d)`` unit array (cell centres)."""
        import numpy as np

        out = np.empty((len(params), self.ndim))
        for j, dim in enumerate(self.dims):
            try:
                out[:, j] = dim.to_unit([p[dim.name] for p in params])
            except KeyError:
                raise SpecError(f"a configuration lacks parameter '{dim.name}'") from None
        return self.mask(out)

    def diff(self, other: Space) -> str:
        """Describe how ``other`` differs from this space, or '' if they are equal."""
        a, b = json.loads(self.to_json()), json.loads(other.to_json())
        for data in (a, b):
            data["dimensions"] = {d.pop("name"): d for d in data["dimensions"]}
        problems = []
        for section in ("dimensions", "constants"):
            sa, sb = a[section], b[section]
            for name in sorted(set(sa) | set(sb)):
                if name not in sb:
                    problems.append(f"'{name}' was removed")
                elif name not in sa:
                    problems.append(f"'{name}' was added")
                elif _json_key(sa[name]) != _json_key(sb[name]):  # True == 1 == 1.0
                    problems.append(f"'{name}' changed from {sa[name]} to {sb[name]}")
        if not problems and self.names != other.names:
            problems.append(f"the order of parameters changed from {self.names} to "
                            f"{other.names}")
        return "; ".join(problems)

    def __repr__(self) -> str:
        items = [f"{d.name}={d!r}" for d in self.dims]
        items += [f"{k}={v!r}" for k, v in self.constants.items()]
        return f"Space({', '.join(items)})"
