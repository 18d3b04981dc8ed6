"""Asynchronous successive halving (ASHA; Li et al., "A System for Massively Parallel
Hyperparameter Tuning", MLSys 2020), as a pruner.

Rungs sit at resources ``min_resource * reduction_factor**k`` (k = 0, 1, ...) below
``max_resource`` (all of them when it is unknown). A trial *reaches* rung k at its first
reported step >= that resource; the value reported at that step is its rung value, added to
the rung. The trial goes on only while its rung value is among the best
``max(1, n // reduction_factor)`` of the ``n`` values the rung has seen so far, itself
included; otherwise it is stopped there. Nothing waits: early trials are judged against the
few values the rung holds when they arrive, as in ASHA, so the first trial at a rung always
goes on.
"""

from __future__ import annotations

import bisect
import math
from typing import Optional, Sequence

import numpy as np

from ..settings import MAX_RUNGS
from ._base import Pruner, to_loss

_TOL = 1e-9  # relative: rungs computed as min * eta**k in floating point


def reached(step: float, resource: float) -> bool:
    """True when ``step`` is at or past ``resource`` (up to rounding)."""
    return step >= resource * (1.0 - _TOL)


def is_rung(resource: float, max_resource: Optional[float]) -> bool:
    """Rungs lie strictly below ``max_resource``: a trial there is done, not judged; and
    none is at inf (:func:`rung_resource` past the float range)."""
    return resource < math.inf and (max_resource is None
                                    or resource < max_resource * (1.0 - _TOL))


def rung_resource(min_resource: float, reduction_factor: float, k: int) -> float:
    """``min_resource * reduction_factor**k``, or inf past the float range (a step of
    1e308 must find no rung there, not crash rank 0)."""
    try:
        return float(min_resource) * float(reduction_factor) ** k
    except OverflowError:
        return math.inf


def rung_resources(min_resource: float, reduction_factor: float,
                   max_resource: Optional[float], up_to: Optional[float] = None) -> np.ndarray:
    """The rungs' resources, ascending: those below ``max_resource``; when it is None,
    those up to ``up_to`` (which must then be given)."""
    if max_resource is None and up_to is None:
        raise ValueError("rung_resources: give max_resource or up_to")
    out = []
    k = 0
    while True:
        r = rung_resource(min_resource, reduction_factor, k)
        if not is_rung(r, max_resource) or (up_to is not None and not reached(up_to, r)):
            break
        out.append(r)
        k += 1
    return np.asarray(out, dtype=np.float64)


def rung_values(steps, values, resources, direction: str = "minimize") -> np.ndarray:
    """A curve's loss at each rung: the value at its first step (in report order) at or
    past the rung's resource, as a loss (non-finite values become ``+inf``); nan where
    the curve never reached the rung."""
    steps = np.asarray(steps, dtype=np.float64)
    resources = np.asarray(resources, dtype=np.float64)
    out = np.full(len(resources), np.nan)
    if not len(steps) or not len(resources):
        return out
    hit = steps[:, None] >= resources[None, :] * (1.0 - _TOL)
    first = np.argmax(hit, axis=0)
    ok = hit.any(axis=0)
    out[ok] = to_loss(np.asarray(values, dtype=np.float64)[first[ok]], direction)
    return out


def promotable(loss: float, rung: Sequence[float], reduction_factor: float) -> bool:
    """Whether a trial whose rung value is ``loss`` goes on; ``rung`` holds the rung's
    losses in ascending order, this trial's included. The best ``max(1, n // eta)`` go on
    (ties with the last of them too)."""
    k = max(1, int(len(rung) // reduction_factor))
    return loss <= rung[k - 1]


def asha_stop_rungs(curves: Sequence[tuple[Sequence[float], Sequence[float]]],
                    min_resource: float = 1.0, reduction_factor: float = 3,
                    max_resource: Optional[float] = None,
                    direction: str = "minimize") -> np.ndarray:
    """Where ASHA stops each of ``curves`` (``(steps, values)`` pairs) when the trials run
    one after another in that order: the index of the rung, or -1 for a trial that goes on
    to the end. A reference for tests; :class:`ASHAPruner` decides the same online."""
    top = max((max(s) for s, _ in curves if len(s)), default=min_resource)
    resources = rung_resources(min_resource, reduction_factor, max_resource, up_to=top)
    rungs: list[list[float]] = [[] for _ in resources]
    out = np.full(len(curves), -1, dtype=np.int64)
    for i, (steps, values) in enumerate(curves):
        at = rung_values(steps, values, resources, direction)
        for k, x in enumerate(at):
            if math.isnan(x):
                break
            bisect.insort(rungs[k], x)
            if not promotable(x, rungs[k], reduction_factor):
                out[i] = k
                break
    return out


def _ladder_steps(ladders: Sequence[Ladder], most: int = MAX_RUNGS) -> list[float]:
    """The rung resources of ``ladders``, ascending (the first ``most`` of each when
    there is no ``max_resource``; the settings refuse a ladder with more)."""
    steps = set()
    for lad in ladders:
        for k in range(most):
            r = rung_resource(lad.min_resource, lad.reduction_factor, k)
            if not is_rung(r, lad.max_resource):
                break
            steps.add(r)
    return sorted(steps)


class Ladder:
    """The rungs of one successive-halving bracket: each an ascending list of losses."""

    __slots__ = ("min_resource", "reduction_factor", "max_resource", "resources", "rungs")

    def __init__(self, min_resource: float, reduction_factor: float,
                 max_resource: Optional[float]) -> None:
        self.min_resource = float(min_resource)
        self.reduction_factor = reduction_factor
        self.max_resource = None if max_resource is None else float(max_resource)
        self.resources: list[float] = []
        self.rungs: list[list[float]] = []

    def resource(self, k: int) -> Optional[float]:
        """Rung k's resource, or None past the last rung."""
        while len(self.resources) <= k:
            r = rung_resource(self.min_resource, self.reduction_factor, len(self.resources))
            if not is_rung(r, self.max_resource):
                return None
            self.resources.append(r)
            self.rungs.append([])
        return self.resources[k]

    def climb(self, k: int, step: float, loss: float) -> int:
        """A trial next due at rung ``k`` reports ``loss`` at ``step``: record it at every
        rung it reaches now. Return the next rung it is due at, or -1 if it must stop."""
        while True:
            r = self.resource(k)
            if r is None or not reached(step, r):
                return k
            rung = self.rungs[k]
            bisect.insort(rung, loss)
            if not promotable(loss, rung, self.reduction_factor):
                return -1
            k += 1


class ASHAPruner(Pruner):
    """Asynchronous successive halving; see the module's documentation."""

    name = "asha"

    def __init__(self, min_resource: float = 1.0, reduction_factor: int = 3,
                 max_resource: Optional[float] = None) -> None:
        super().__init__()
        self.ladder = Ladder(min_resource, reduction_factor, max_resource)
        self._next: dict[int, int] = {}  # running trial -> next rung index, -1: stopped

    @classmethod
    def from_settings(cls, settings) -> ASHAPruner:
        return cls(settings.min_resource, settings.reduction_factor, settings.max_resource)

    def _ladder(self, number: int) -> Ladder:
        return self.ladder

    def observe(self, numbers, steps, values) -> list[int]:
        out = []
        nxt = self._next
        for number, step, value in zip(numbers, steps, values):
            k = nxt.get(number, 0)
            if k < 0:
                continue
            k = self._ladder(number).climb(k, step, self.loss(value))
            nxt[number] = k
            if k < 0:
                out.append(number)
        return out

    def decision_steps(self) -> list[float]:
        return _ladder_steps([self.ladder])

    def finished(self, numbers, states, values) -> None:
        for number in numbers:
            self._next.pop(number, None)

    def rung_sizes(self) -> list[int]:
        """How many trials each rung has seen (for tests and logs)."""
        return [len(r) for r in self.ladder.rungs]

    def __repr__(self) -> str:
        lad = self.ladder
        return (f"ASHAPruner(min_resource={lad.min_resource:g}, reduction_factor="
                f"{lad.reduction_factor}, max_resource={lad.max_resource})")
