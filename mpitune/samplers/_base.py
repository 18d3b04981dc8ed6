"""The sampler interface: propose points in the unit cube, given what is known so far."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Callable, Optional

import numpy as np

if TYPE_CHECKING:
    from ..space import Space


class History:
    """What a sampler may look at when it proposes a batch.

    All points are rows of the unit cube ``[0, 1)^d``. ``loss`` is always to be minimised
    (the master negates it for ``direction="maximize"``); failed and pruned trials have
    ``loss = nan``. ``pending`` holds the trials running or queued on workers, whose results
    are not known yet: a batched sampler should spread a new batch away from them.
    ``n_total`` counts every trial so far (finished + pending); counter-based samplers use it
    as their position in their stream, which makes a resumed search propose exactly what the
    uninterrupted one would have.

    In a space with conditional parameters, a coordinate is ``nan`` where that parameter
    was inactive (in ``x`` and in ``pending``); the sampler may propose any value there,
    the space masks it out again.

    A pruned trial has no final loss, but it says something: ``stop_step`` and
    ``stop_loss`` hold the step of its last report and the loss reported there (nan for
    other trials). :meth:`ranking` orders every trial that can be ordered, pruned ones
    included: TPE builds its good group from it. (CMA-ES does not: ranked by their early
    values, the pruned trials of an ASHA search drew it to the fast starters, measured on
    the synthetic task of benchmarks/pruning.py: best 0.93 instead of 0.997.)

    The arrays may be given, or built on first use by ``load()`` returning
    ``(x, loss, state, pending[, stop_step, stop_loss])``: samplers that only need
    ``n_total`` (random, Sobol) then cost nothing per batch, however long the history.
    """

    def __init__(self, space: Space, x: Optional[np.ndarray] = None,
                 loss: Optional[np.ndarray] = None, state: Optional[np.ndarray] = None,
                 pending: Optional[np.ndarray] = None, n_total: int = 0,
                 load: Optional[Callable[[], tuple]] = None,
                 stop_step: Optional[np.ndarray] = None,
                 stop_loss: Optional[np.ndarray] = None) -> None:
        self.space = space
        self.n_total = n_total
        self._load = load
        self._arrays = (None if load is not None
                        else (x, loss, state, pending, stop_step, stop_loss))

    def _get(self, i: int) -> np.ndarray:
        if self._arrays is None:
            self._arrays = (tuple(self._load()) + (None, None))[:6]
        if i >= 4 and self._arrays[i] is None:
            return np.full(len(self._arrays[1]), np.nan)
        return self._arrays[i]

    @property
    def x(self) -> np.ndarray:
        """(m, d) finished trials."""
        return self._get(0)

    @property
    def loss(self) -> np.ndarray:
        """(m,) their losses (minimised; nan where failed or pruned)."""
        return self._get(1)

    @property
    def state(self) -> np.ndarray:
        """(m,) their state codes, see mpitune.table.STATES."""
        return self._get(2)

    @property
    def pending(self) -> np.ndarray:
        """(p, d) trials running or queued."""
        return self._get(3)

    @property
    def stop_step(self) -> np.ndarray:
        """(m,) the step of a pruned trial's last report (nan for other trials)."""
        return self._get(4)

    @property
    def stop_loss(self) -> np.ndarray:
        """(m,) the loss a pruned trial reported there (minimised; nan otherwise)."""
        return self._get(5)

    def ranking(self) -> np.ndarray:
        """Indices of the finished trials that can be ordered, best first: see
        :func:`rank_order`."""
        return rank_order(self.loss, self.stop_step, self.stop_loss)

    @property
    def ndim(self) -> int:
        return self.space.ndim


def rank_order(loss: np.ndarray, stop_step: np.ndarray, stop_loss: np.ndarray
               ) -> np.ndarray:
    """Indices of the trials that can be ordered, best first: those with a final loss by
    that loss, then the pruned ones, those that got further first and, at the same step,
    by the loss they reported there. Failed trials and pruned ones without a finite last
    loss are left out."""
    loss = np.asarray(loss, dtype=float)
    final = np.isfinite(loss)
    partial = ~final & np.isfinite(stop_loss) & np.isfinite(stop_step)
    tier = np.where(final, 0, np.where(partial, 1, 2))
    value = np.where(final, loss, np.where(partial, stop_loss, 0.0))
    step = np.where(partial, stop_step, 0.0)
    order = np.lexsort((value, -step, tier))
    return order[: int(np.count_nonzero(tier < 2))]


class Sampler(ABC):
    """A search algorithm. Subclasses implement :meth:`suggest`; everything else is optional.

    A sampler is deterministic given its seed and the history it is shown, so a search can
    be resumed from the results file alone.
    """

    name = "sampler"
    #: True for samplers that cost (almost) nothing per point and must supply every point
    #: themselves (random, quasi-random, grid); a model-based sampler leaves it False, and
    #: the suggester then never lets it hold the workers up (see mpitune.suggester).
    cost_free = False

    def __init__(self, seed: Optional[int] = None) -> None:
        self.seed = seed

    def bind(self, space: Space, seed: int, budget: Optional[int] = None) -> None:
        """Attach the search space, the search's seed (unless one was given) and the trial
        budget (``max_trials``; None when unknown), before the first :meth:`suggest`.

        Raise :class:`mpitune.errors.SpecError` if the sampler cannot search this space."""
        self.space = space
        self.budget = budget
        if self.seed is None:
            self.seed = seed

    def capacity(self) -> Optional[int]:
        """How many distinct points this sampler can propose in all (a grid, a list), or
        None when there is no end."""
        return None

    def remaining(self, history: History) -> Optional[int]:
        """How many of its points the sampler can still propose that ``history`` (the
        trials in the results file as finished or pending, and the explicit
        configurations still to run, as pending) does not hold, or None when there is no
        end: the search stops when they are used up. By default its :meth:`capacity` less
        every trial counted; a sampler that can tell its points apart from others (the
        grid) counts only those the history holds."""
        capacity = self.capacity()
        return None if capacity is None else max(0, capacity - history.n_total)

    def rng(self, history: History) -> np.random.Generator:
        """A generator determined by the seed and the history's length: a resumed search
        that sees the same history draws the same numbers."""
        return np.random.default_rng([self.seed or 0, history.n_total])

    @abstractmethod
    def suggest(self, n: int, history: History) -> np.ndarray:
        """Return an ``(n, d)`` array of new points in ``[0, 1)``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(seed={self.seed!r})"
