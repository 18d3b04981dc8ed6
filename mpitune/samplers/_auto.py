"""The default sampler: picks an algorithm from the space and the budget, and says why."""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..space import Integer, Real
from ._base import History, Sampler

GP_MAX_TRIALS = 1000  # past this the GP's refits cost more than its better trials gain
GP_MAX_DIMS = 30


def grid_size(space) -> Optional[int]:
    """Number of distinct configurations of a space without real parameters (an inactive
    conditional parameter does not multiply them, as in GridSampler), else None."""
    from ..errors import SpecError
    from ._grid import GridSampler

    if any(isinstance(d, Real) for d in space.dims):
        return None
    grid = GridSampler()
    try:
        grid.bind(space, 0)
    except SpecError:  # too many combinations of the conditions' parents
        return None
    return grid.capacity()


def choose(space, budget: Optional[int]) -> tuple[str, str]:
    """(sampler name, the reason in words) for a space and a trial budget."""
    d = space.ndim
    n = grid_size(space)
    if d == 0:
        return "random", "no searched parameters"
    if budget == 0:
        return "random", "a budget of 0 trials: nothing to propose"
    if n is not None and budget is not None and n <= budget:
        return "grid", f"the space has only {n} configurations, at most the budget of {budget}"
    kinds = sorted({type(dim).__name__ for dim in space.dims})
    if budget is not None and budget <= GP_MAX_TRIALS and d <= GP_MAX_DIMS:
        return "gp", (f"a budget of {budget} trials is small enough for a Gaussian process "
                      f"to model every result ({d} parameters: {', '.join(kinds)})")
    why = (f"{budget} trials" if budget is not None and budget > GP_MAX_TRIALS
           else f"{d} parameters")
    if all(isinstance(dim, (Real, Integer)) and not dim.when for dim in space.dims):
        return "cmaes", (f"{why} is too many for a Gaussian process; all parameters are "
                         f"numeric, where CMA-ES adapts fastest at this budget")
    return "tpe", (f"{why} is too many for a Gaussian process; TPE handles the categorical "
                   f"or conditional parameters and scales linearly")


class AutoSampler(Sampler):
    """Chooses among the registered samplers when bound to a space (see :func:`choose`);
    its repr names the choice and the reason, which the run's first log line shows."""

    name = "auto"

    def __init__(self, seed: Optional[int] = None) -> None:
        super().__init__(seed)
        self.choice: Optional[Sampler] = None
        self.reason = ""

    def bind(self, space, seed: int, budget: Optional[int] = None) -> None:
        from . import SAMPLERS

        super().bind(space, seed, budget)
        name, self.reason = choose(space, budget)
        if name not in SAMPLERS:
            name, self.reason = "tpe", f"{self.reason}; {name} is not available"
        self.choice = SAMPLERS[name](seed=self.seed)
        self.choice.bind(space, self.seed, budget)

    @property
    def cost_free(self) -> bool:
        return self.choice is not None and self.choice.cost_free

    def capacity(self) -> Optional[int]:
        return None if self.choice is None else self.choice.capacity()

    def remaining(self, history: History) -> Optional[int]:
        """The choice's: for a grid, how many of its configurations the history does not
        hold yet; None for a sampler without an end."""
        return None if self.choice is None else self.choice.remaining(history)

    def suggest(self, n: int, history: History) -> np.ndarray:
        return self.choice.suggest(n, history)

    def __repr__(self) -> str:
        if self.choice is None:
            return f"AutoSampler(seed={self.seed!r})"
        return f"auto: {self.choice.name} ({self.reason})"

