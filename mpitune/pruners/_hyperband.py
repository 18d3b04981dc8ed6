"""Hyperband (Li et al., JMLR 2018) on top of asynchronous successive halving.

Hyperband hedges against a too aggressive ``min_resource`` by running several
successive-halving brackets side by side. Bracket ``b`` (b = 0 .. s_max, with
``s_max = floor(log_eta(max_resource / min_resource))``) has its first rung at
``min_resource * eta**b``; bracket 0 stops trials earliest, bracket ``s_max`` never stops
any. Trials only compete with trials of their own bracket. Each trial joins a bracket fixed
by its number alone (so a resumed search puts it back in the same one), in the proportions
of Hyperband's bracket sizes ``n_s = ceil((s_max + 1) * eta**s / (s + 1))`` with
``s = s_max - b``: most trials go to the aggressive brackets.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ._asha import ASHAPruner, Ladder, _ladder_steps

_PHI = (math.sqrt(5.0) - 1.0) / 2.0  # golden ratio: a low-discrepancy sequence frac(n * phi)


def n_brackets(min_resource: float, max_resource: float, reduction_factor: float) -> int:
    """``s_max + 1``: how many brackets fit between the two resources."""
    ratio = max_resource / min_resource
    if ratio < 1.0:
        return 1
    return int(math.floor(math.log(ratio) / math.log(reduction_factor) + 1e-9)) + 1


def bracket_budgets(count: int, reduction_factor: float) -> np.ndarray:
    """Hyperband's relative bracket sizes, bracket 0 (most aggressive) first."""
    s = np.arange(count - 1, -1, -1, dtype=np.float64)
    return np.ceil(count * reduction_factor ** s / (s + 1.0))


def assign_brackets(numbers, budgets: Sequence[float]) -> np.ndarray:
    """Each trial number's bracket: ``frac(number * phi)`` placed on the cumulative bracket
    sizes, so that any run of consecutive numbers splits in proportion to ``budgets``."""
    numbers = np.asarray(numbers, dtype=np.float64)
    cum = np.cumsum(np.asarray(budgets, dtype=np.float64))
    u = np.mod(numbers * _PHI, 1.0) * cum[-1]
    return np.minimum(np.searchsorted(cum, u, side="right"), len(cum) - 1)


class HyperbandPruner(ASHAPruner):
    """Hyperband's brackets, each an asynchronous successive-halving ladder."""

    name = "hyperband"

    def __init__(self, min_resource: float = 1.0, reduction_factor: int = 3,
                 max_resource: float = 81.0) -> None:
        if max_resource is None:
            raise ValueError("HyperbandPruner needs max_resource (the last step trials "
                             "report)")
        super().__init__(min_resource, reduction_factor, max_resource)
        count = n_brackets(min_resource, max_resource, reduction_factor)
        self.budgets = bracket_budgets(count, reduction_factor)
        self.ladders = [Ladder(min_resource * reduction_factor ** b, reduction_factor,
                               max_resource) for b in range(count)]
        self._bracket: dict[int, Ladder] = {}

    def bracket(self, number: int) -> int:
        return int(assign_brackets([number], self.budgets)[0])

    def _ladder(self, number: int) -> Ladder:
        ladder = self._bracket.get(number)
        if ladder is None:
            ladder = self._bracket[number] = self.ladders[self.bracket(number)]
        return ladder

    def decision_steps(self) -> list[float]:
        return _ladder_steps(self.ladders)

    def finished(self, numbers, states, values) -> None:
        super().finished(numbers, states, values)
        for number in numbers:
            self._bracket.pop(number, None)

    def rung_sizes(self) -> list[list[int]]:
        return [[len(r) for r in lad.rungs] for lad in self.ladders]

    def __repr__(self) -> str:
        lad = self.ladder
        return (f"HyperbandPruner(min_resource={lad.min_resource:g}, reduction_factor="
                f"{lad.reduction_factor}, max_resource={lad.max_resource:g}, "
                f"brackets={len(self.ladders)})")
