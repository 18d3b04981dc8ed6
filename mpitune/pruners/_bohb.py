"""Model-based multi-fidelity search in the spirit of BOHB (Falkner et al., ICML 2018).

Hyperband's brackets decide which trials stop (see :mod:`._hyperband`); in addition the
*sampler* is shown losses measured at one fidelity: the highest level, among the rungs'
resources and the finished trials' final values, that has at least ``min_points``
results. Early in a search that is the first rung (many cheap results), later the final
values. Trials without a value at that level (stopped earlier, failed) count as failed
for the model, which the samplers treat as worse than any result.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ._asha import reached, rung_resources
from ._base import to_loss
from ._hyperband import HyperbandPruner


def values_at_resources(trial: np.ndarray, step: np.ndarray, value: np.ndarray, n: int,
                        resources: np.ndarray) -> np.ndarray:
    """``(n, len(resources))`` reported values: per trial, its first reported value (in
    arrival order) at a step at or past each resource; nan where it never got there."""
    out = np.full((n, len(resources)), np.nan)
    for k, r in enumerate(resources):
        hit = np.flatnonzero(reached(step, r))
        first_trials, first = np.unique(trial[hit], return_index=True)
        out[first_trials, k] = value[hit[first]]
    return out


def fidelity_losses(levels: np.ndarray, final: np.ndarray, min_points: int
                    ) -> tuple[np.ndarray, int]:
    """Pick the highest fidelity with at least ``min_points`` finite losses.

    ``levels`` (n, R) holds losses at the rungs, ``final`` (n,) the final losses (nan when
    not complete). Returns the chosen column of losses and its index (R = final)."""
    columns = np.column_stack([levels, final])
    counts = np.isfinite(columns).sum(axis=0)
    enough = np.flatnonzero(counts >= min_points)
    k = int(enough[-1]) if len(enough) else int(np.argmax(counts))
    return columns[:, k], k


class BOHBPruner(HyperbandPruner):
    """Hyperband brackets plus a sampler that models the best-supported fidelity."""

    name = "bohb"
    models_fidelity = True

    def __init__(self, min_resource: float = 1.0, reduction_factor: int = 3,
                 max_resource: float = 81.0, min_points: Optional[int] = None) -> None:
        super().__init__(min_resource, reduction_factor, max_resource)
        self.min_points = min_points
        self.level = -1  # the fidelity the sampler saw last (for logs and tests)

    def sampler_losses(self, table, ndim: int) -> np.ndarray:
        """Losses for every trial of ``table`` as the sampler should see them (nan: no
        result at the chosen fidelity)."""
        from ..table import COMPLETE

        n = table.n
        lad = self.ladder
        resources = rung_resources(lad.min_resource, lad.reduction_factor, lad.max_resource)
        raw = values_at_resources(table.curve_trial.data, table.curve_step.data,
                                  table.curve_value.data, n, resources)
        levels = np.where(np.isnan(raw), np.nan, to_loss(raw, self.direction))
        state = table.state.data
        final = np.where(state == COMPLETE, to_loss(table.value.data, self.direction), np.nan)
        min_points = self.min_points or max(ndim + 2, 6)
        losses, self.level = fidelity_losses(levels, final, min_points)
        return np.where(np.isfinite(losses), losses, np.nan)

    def __repr__(self) -> str:
        return "BOHB" + super().__repr__()[len("Hyperband"):]
