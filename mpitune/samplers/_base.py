"""The sampler interface: propose points in the unit cube, given what is known so far."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import numpy as np

if TYPE_CHECKING:
    from ..space import Space


@dataclass
class History:
    """What a sampler may look at when it proposes a batch.

    All points are rows of the unit cube ``[0, 1)^d``. ``loss`` is always to be minimised
    (the master negates it for ``direction="maximize"``); failed and pruned trials have
    ``loss = nan``. ``pending`` holds the trials running or queued on workers, whose results
    are not known yet: a batched sampler should spread a new batch away from them.
    ``n_total`` counts every trial so far (finished + pending); counter-based samplers use it
    as their position in their stream, which makes a resumed search propose exactly what the
    uninterrupted one would have.
    """

    space: Space
    x: np.ndarray  # (m, d) finished trials
    loss: np.ndarray  # (m,)
    state: np.ndarray  # (m,) state codes, see mpitune.table.STATES
    pending: np.ndarray  # (p, d)
    n_total: int

    @property
    def ndim(self) -> int:
        return self.space.ndim


class Sampler(ABC):
    """A search algorithm. Subclasses implement :meth:`suggest`; everything else is optional.

    A sampler is deterministic given its seed and the history it is shown, so a search can
    be resumed from the results file alone.
    """

    name = "sampler"

    def __init__(self, seed: Optional[int] = None) -> None:
        self.seed = seed

    def bind(self, space: Space, seed: int) -> None:
        """Attach the search space and the search's seed (unless one was given)."""
        self.space = space
        if self.seed is None:
            self.seed = seed

    @abstractmethod
    def suggest(self, n: int, history: History) -> np.ndarray:
        """Return an ``(n, d)`` array of new points in ``[0, 1)``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(seed={self.seed!r})"
