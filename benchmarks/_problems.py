"""Test functions with known minima for ``benchmarks/samplers.py`` (not a benchmark itself).

Each :class:`Problem` holds an mpitune space definition (user units), the function of one
configuration ``f(params) -> float`` (a dict name -> user value, as a worker receives it),
its known minimum ``fmin`` and a documented minimiser ``argmin``. Everything is to be
minimised.

* ``branin``: Branin-Hoo, x1 in [-5, 10], x2 in [0, 15]; three global minima, f* = 0.397887.
* ``hartmann3``, ``hartmann6``: Hartmann on [0, 1]^3 and [0, 1]^6; f* = -3.86278, -3.32237.
* ``rosenbrock4``: Rosenbrock in 4 dimensions on [-5, 10]^4; f* = 0 at (1, 1, 1, 1).
* ``mixed``: a tuning-like problem over a log-scaled learning rate, two integers (one on a
  log scale), a plain real and a categorical (see :func:`mixed`); f* = 0.
* ``levy20``: Levy in 20 dimensions on [-10, 10]^20; f* = 0 at (1, ..., 1). For the
  large-scale row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

# ---- Branin ---------------------------------------------------------------------------------
BRANIN_MIN = 5.0 / (4.0 * math.pi)  # 0.397887357729738...


def branin(p: dict) -> float:
    """Branin-Hoo with the usual constants; minima at (-pi, 12.275), (pi, 2.275),
    (9.42478, 2.475)."""
    x1, x2 = float(p["x1"]), float(p["x2"])
    b, c = 5.1 / (4.0 * math.pi ** 2), 5.0 / math.pi
    t = 1.0 / (8.0 * math.pi)
    return (x2 - b * x1 * x1 + c * x1 - 6.0) ** 2 + 10.0 * (1.0 - t) * math.cos(x1) + 10.0


# ---- Hartmann -------------------------------------------------------------------------------
_H_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
_H3_A = np.array([[3.0, 10.0, 30.0], [0.1, 10.0, 35.0], [3.0, 10.0, 30.0], [0.1, 10.0, 35.0]])
_H3_P = 1e-4 * np.array([[3689, 1170, 2673], [4699, 4387, 7470], [1091, 8732, 5547],
                         [381, 5743, 8828]])
_H6_A = np.array([[10.0, 3.0, 17.0, 3.5, 1.7, 8.0], [0.05, 10.0, 17.0, 0.1, 8.0, 14.0],
                  [3.0, 3.5, 1.7, 10.0, 17.0, 8.0], [17.0, 8.0, 0.05, 10.0, 0.1, 14.0]])
_H6_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                         [2348, 1451, 3522, 2883, 3047, 6650],
                         [4047, 8828, 8732, 5743, 1091, 381]])
# the minima of these constants (the often quoted -3.86278 for Hartmann-3 belongs to a
# slightly different P; with this one the minimum is 2.4e-6 higher)
HARTMANN3_MIN = -3.862779787332663
HARTMANN6_MIN = -3.3223680114155147


def _hartmann(x: np.ndarray, a: np.ndarray, p: np.ndarray) -> float:
    inner = np.sum(a * (x[None, :] - p) ** 2, axis=1)
    return float(-np.sum(_H_ALPHA * np.exp(-inner)))


def hartmann3(p: dict) -> float:
    """Hartmann-3 on [0, 1]^3 (parameters x1..x3)."""
    return _hartmann(np.array([p[f"x{i}"] for i in range(1, 4)], dtype=float), _H3_A, _H3_P)


def hartmann6(p: dict) -> float:
    """Hartmann-6 on [0, 1]^6 (parameters x1..x6)."""
    return _hartmann(np.array([p[f"x{i}"] for i in range(1, 7)], dtype=float), _H6_A, _H6_P)


# ---- Rosenbrock, Levy -----------------------------------------------------------------------
def rosenbrock(p: dict) -> float:
    """Rosenbrock's valley in as many dimensions as there are parameters x1, x2, ..."""
    x = np.array([p[f"x{i}"] for i in range(1, len(p) + 1)], dtype=float)
    return float(np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2))


def levy(p: dict) -> float:
    """Levy's function in as many dimensions as there are parameters x1, x2, ..."""
    x = np.array([p[f"x{i}"] for i in range(1, len(p) + 1)], dtype=float)
    w = 1.0 + (x - 1.0) / 4.0
    head = math.sin(math.pi * w[0]) ** 2
    body = np.sum((w[:-1] - 1.0) ** 2 * (1.0 + 10.0 * np.sin(math.pi * w[:-1] + 1.0) ** 2))
    tail = (w[-1] - 1.0) ** 2 * (1.0 + math.sin(2.0 * math.pi * w[-1]) ** 2)
    return float(head + body + tail)


# ---- a mixed, tuning-like problem -----------------------------------------------------------
MIXED_OPTIMIZERS = ["adam", "sgd", "rmsprop"]
_MIXED_BEST_LOG10_LR = {"adam": -3.0, "sgd": -1.5, "rmsprop": -4.2}
_MIXED_OFFSET = {"adam": 0.0, "sgd": 0.3, "rmsprop": 0.15}


def mixed(p: dict) -> float:
    """A mixed problem: ``lr`` (log-scaled real), ``layers`` and ``units`` (integers, units
    on a log scale), ``dropout`` (real) and ``optimizer`` (categorical).

    The best learning rate depends on the optimizer (10^-3 for adam, 10^-1.5 for sgd,
    10^-4.2 for rmsprop), each optimizer has its own floor (0, 0.3, 0.15), the learning rate
    and the depth interact, the width has small ripples (local minima at every doubling), and
    the integers' best values are inside their ranges: f* = 0 at optimizer='adam', lr=1e-3,
    layers=6, units=96, dropout=0.15.
    """
    opt = p["optimizer"]
    u = math.log10(float(p["lr"])) - _MIXED_BEST_LOG10_LR[opt]
    v = (int(p["layers"]) - 6) / 3.0
    w = math.log2(int(p["units"]) / 96.0)
    z = (float(p["dropout"]) - 0.15) / 0.3
    return (_MIXED_OFFSET[opt] + u * u + 0.8 * u * v + v * v + 0.5 * w * w
            + 0.2 * (1.0 - math.cos(2.0 * math.pi * w)) + z * z)


# ---- the registry ---------------------------------------------------------------------------
@dataclass
class Problem:
    """A test function over a space, with its known minimum and one point attaining it."""

    name: str
    space: dict  # name -> mpitune dimension (built lazily, see space_def())
    f: Callable[[dict], float]
    fmin: float
    argmin: dict
    about: str = ""

    def __call__(self, params: dict) -> float:
        return self.f(params)


def _box(prefix: str, n: int, low: float, high: float) -> dict:
    from mpitune import Real

    return {f"{prefix}{i}": Real(low, high) for i in range(1, n + 1)}


def _build() -> dict[str, Problem]:
    from mpitune import Categorical, Integer, Real

    problems = [
        Problem("branin", {"x1": Real(-5.0, 10.0), "x2": Real(0.0, 15.0)}, branin,
                BRANIN_MIN, {"x1": math.pi, "x2": 2.275}, "Branin, 2 reals"),
        Problem("hartmann3", _box("x", 3, 0.0, 1.0), hartmann3, HARTMANN3_MIN,
                {"x1": 0.114589, "x2": 0.555649, "x3": 0.852547}, "Hartmann-3 on [0,1]^3"),
        Problem("hartmann6", _box("x", 6, 0.0, 1.0), hartmann6, HARTMANN6_MIN,
                {"x1": 0.20169, "x2": 0.150011, "x3": 0.476874, "x4": 0.275332,
                 "x5": 0.311652, "x6": 0.657301}, "Hartmann-6 on [0,1]^6"),
        Problem("rosenbrock4", _box("x", 4, -5.0, 10.0), rosenbrock, 0.0,
                {f"x{i}": 1.0 for i in range(1, 5)}, "Rosenbrock on [-5,10]^4"),
        Problem("mixed", {"lr": Real(1e-5, 1e-1, log=True), "layers": Integer(1, 12),
                          "units": Integer(8, 1024, log=True), "dropout": Real(0.0, 0.8),
                          "optimizer": Categorical(MIXED_OPTIMIZERS)}, mixed, 0.0,
                {"lr": 1e-3, "layers": 6, "units": 96, "dropout": 0.15, "optimizer": "adam"},
                "log real, 2 integers (1 log), real, categorical(3)"),
        Problem("levy20", _box("x", 20, -10.0, 10.0), levy, 0.0,
                {f"x{i}": 1.0 for i in range(1, 21)}, "Levy on [-10,10]^20"),
    ]
    return {p.name: p for p in problems}


_PROBLEMS: dict[str, Problem] = {}


def problems() -> dict[str, Problem]:
    """All problems by name (built on first use: the spaces need mpitune importable)."""
    if not _PROBLEMS:
        _PROBLEMS.update(_build())
    return _PROBLEMS


def get(name: str) -> Problem:
    """One problem by name; ValueError naming the known ones otherwise."""
    table = problems()
    if name not in table:
        raise ValueError(f"unknown problem {name!r}; known: {', '.join(table)}")
    return table[name]


def check_minimum(problem: Problem) -> Any:
    """f(argmin) - fmin (should be ~0, >= 0 up to the argmin's rounding)."""
    return problem(problem.argmin) - problem.fmin
