"""The median stopping rule (Golovin et al., "Google Vizier", 2017).

A trial is stopped at step ``s`` when its best loss so far is strictly worse than the
median of the values other trials reported at the same step ``s``, provided that
``s >= warmup_steps`` and that at least ``min_trials`` other trials have reported at ``s``.
Steps are matched exactly: trials should report at the same steps (epochs, say).
"""

from __future__ import annotations

import bisect
from typing import Sequence

import numpy as np

from ._base import Pruner, to_loss


def median_of_sorted(xs: Sequence[float]) -> float:
    """The median of an ascending sequence (the mean of the middle two for even lengths);
    ``+inf`` entries are allowed, nan is not (losses never hold nan)."""
    n = len(xs)
    if n == 0:
        return float("nan")
    mid = n // 2
    if n % 2:
        return float(xs[mid])
    a, b = float(xs[mid - 1]), float(xs[mid])
    return b if a == b else 0.5 * (a + b)


def median_prune(best: float, others: Sequence[float], step: float, warmup_steps: float,
                 min_trials: int) -> bool:
    """The rule for one point: ``best`` is the trial's best loss up to ``step``, ``others``
    the losses (ascending) that other trials reported at ``step``."""
    if step < warmup_steps or len(others) < max(1, min_trials):
        return False
    return best > median_of_sorted(others)


def median_stop_steps(curves: Sequence[tuple[Sequence[float], Sequence[float]]],
                      direction: str = "minimize", warmup_steps: float = 0.0,
                      min_trials: int = 5) -> np.ndarray:
    """Where the rule stops each of ``curves`` (``(steps, values)`` pairs) when the trials
    run one after another in that order: the stopping step, or nan for a trial never
    stopped. A reference for tests; :class:`MedianPruner` makes the same decisions online.
    """
    by_step: dict[float, list[float]] = {}
    out = np.full(len(curves), np.nan)
    for i, (steps, values) in enumerate(curves):
        losses = to_loss(values, direction)
        best = np.minimum.accumulate(losses) if len(losses) else losses
        for s, x, b in zip(np.asarray(steps, dtype=float), losses, best):
            others = by_step.setdefault(float(s), [])
            stop = median_prune(float(b), others, float(s), warmup_steps, min_trials)
            bisect.insort(others, float(x))  # a stopped trial's last point still counts
            if stop:
                out[i] = s
                break
    return out


class MedianPruner(Pruner):
    """Stop a trial whose best value so far is worse than the median of the others at the
    same step. ``min_trials``: how many other trials must have reported at a step before
    anything is stopped there; ``warmup_steps``: no trial is stopped at a smaller step."""

    name = "median"

    def __init__(self, warmup_steps: float = 0.0, min_trials: int = 5) -> None:
        super().__init__()
        self.warmup_steps = float(warmup_steps)
        self.min_trials = int(min_trials)
        self._by_step: dict[float, list[float]] = {}  # step -> ascending losses reported there
        self._best: dict[int, float] = {}  # running trial -> best loss so far
        self._seen: dict[int, set] = {}  # running trial -> steps already counted
        self._stopped: set[int] = set()

    @classmethod
    def from_settings(cls, settings) -> MedianPruner:
        return cls(warmup_steps=settings.warmup_steps)

    def observe(self, numbers, steps, values) -> list[int]:
        out = []
        stopped, best_of, seen_of, by_step = self._stopped, self._best, self._seen, self._by_step
        for number, step, value in zip(numbers, steps, values):
            if number in stopped:
                continue
            loss = self.loss(value)
            best = min(best_of.get(number, loss), loss)
            best_of[number] = best
            seen = seen_of.get(number)
            if seen is None:
                seen = seen_of[number] = set()
            elif step in seen:
                continue  # a step reported twice counts once
            seen.add(step)
            others = by_step.get(step)
            if others is None:
                others = by_step[step] = []
            if median_prune(best, others, step, self.warmup_steps, self.min_trials):
                stopped.add(number)
                out.append(number)
            bisect.insort(others, loss)
        return out

    def finished(self, numbers, states, values) -> None:
        for number in numbers:
            self._best.pop(number, None)
            self._seen.pop(number, None)
            self._stopped.discard(number)

    def __repr__(self) -> str:
        return f"MedianPruner(warmup_steps={self.warmup_steps:g}, min_trials={self.min_trials})"
