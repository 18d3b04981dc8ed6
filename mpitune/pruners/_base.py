"""The pruner interface: decide from learning-curve points which running trials to stop.

Rank 0 owns the only pruner of a search. :class:`~mpitune.master.Master` calls
:meth:`Pruner.observe` with every batch of curve points as it arrives and posts a prune
decision for each trial number returned; the worker raises :class:`mpitune.TrialPruned` at
that trial's next ``trial.report``. :meth:`Pruner.finished` is told about finished trials,
and :meth:`Pruner.restore` rebuilds the state of a resumed search from the results file.

Internally every pruner works on *losses*: reported values negated for
``direction="maximize"``, so that smaller is always better. A non-finite value (nan, inf or
-inf) counts as the worst possible loss (``+inf``), whatever the direction: a diverged
trial is never kept alive by its nan, and never crashes rank 0.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    from ..table import TrialTable

WORST = math.inf


def to_loss(values, direction: str) -> np.ndarray:
    """Reported values as losses (smaller is better); non-finite values become ``+inf``."""
    v = np.asarray(values, dtype=np.float64)
    loss = v if direction == "minimize" else -v
    return np.where(np.isfinite(loss), loss, WORST)


class Pruner(ABC):
    """An early-stopping rule. Subclasses implement :meth:`observe`; the rest is optional.

    A pruner sees curve points in the order rank 0 received them, and must be cheap: it
    runs inside rank 0's loop for every batch of points. Given the same points in the same
    order it must make the same decisions, which is what makes :meth:`restore` exact.
    """

    name = "pruner"

    def __init__(self) -> None:
        self.direction = "minimize"
        self._sign = 1.0

    def bind(self, direction: str) -> None:
        """Attach the search's direction ("minimize" or "maximize")."""
        self.direction = direction
        self._sign = 1.0 if direction == "minimize" else -1.0

    def loss(self, value: float) -> float:
        """One reported value as a loss; the scalar twin of :func:`to_loss`."""
        x = self._sign * value
        return x if math.isfinite(x) else WORST

    @abstractmethod
    def observe(self, numbers: Sequence[int], steps: Sequence[float],
                values: Sequence[float]) -> list[int]:
        """Take curve points (three equal-length lists, in arrival order); return the
        numbers of trials to stop now. A number is returned at most once."""

    def decision_steps(self) -> list[float]:
        """Steps at which this pruner decides whether a trial goes on (its rungs); a trial
        that reaches one waits for the verdict, one message round trip, instead of
        learning it at its next report. Empty (the default): never wait."""
        return []

    def finished(self, numbers: Sequence[int], states: Sequence[int],
                 values: Sequence[float]) -> None:
        """Trials ended (state codes from :mod:`mpitune.table`): drop per-trial state."""
        return None

    def restore(self, table: TrialTable) -> None:
        """Rebuild the state of a resumed search from its trial table.

        Replays the stored curves in their arrival order, exactly as :meth:`observe` saw
        them, then reports the finished trials. Curves of interrupted trials are skipped:
        those trials run again from the start and report their points anew.
        """
        from ..table import FINISHED, INTERRUPTED

        state = table.state.data
        trials = table.curve_trial.data
        if len(trials):
            keep = state[trials] != INTERRUPTED
            chunk = 65536
            numbers = trials[keep].tolist()
            steps = table.curve_step.data[keep].tolist()
            values = table.curve_value.data[keep].tolist()
            for i in range(0, len(numbers), chunk):
                self.observe(numbers[i:i + chunk], steps[i:i + chunk], values[i:i + chunk])
        done = np.flatnonzero(np.isin(state, FINISHED))
        if len(done):
            self.finished(done.tolist(), state[done].tolist(), table.value.data[done].tolist())

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
