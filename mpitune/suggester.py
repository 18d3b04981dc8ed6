"""The batched suggester: asks the sampler for many configurations at once.

It keeps a short queue of proposed unit-cube points, refilled ``batch_size`` at a time (or
more when a worker needs a big chunk of cheap trials). The sampler is shown the finished
trials and, as pending, every trial still running plus the points already queued, so a batch
spreads away from work in flight. Trials interrupted by an earlier run are handed out again
first, with their numbers and parameters.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from .samplers import History, Sampler
from .space import Space
from .table import INTERRUPTED, RUNNING, TrialTable, is_finished


class Suggester:
    def __init__(self, sampler: Sampler, space: Space, table: TrialTable, batch_size: int,
                 direction: str) -> None:
        self.sampler = sampler
        self.space = space
        self.table = table
        self.batch_size = batch_size
        self.sign = 1.0 if direction == "minimize" else -1.0
        self.queue = np.empty((0, space.ndim))
        self.rerun: deque[int] = deque(np.flatnonzero(table.state.data == INTERRUPTED))

    def history(self) -> History:
        """The history as the sampler sees it; its arrays are built only if it reads them."""
        t, queue = self.table, self.queue

        def load() -> tuple:
            state = t.state.data
            done = is_finished(state)
            pending = np.concatenate([t.unit.data[state == RUNNING], queue])
            return t.unit.data[done], self.sign * t.value.data[done], state[done], pending

        return History(self.space, n_total=t.n + len(queue), load=load)

    def take(self, k: int) -> tuple[list[int], np.ndarray | None]:
        """Up to ``k`` trials: (numbers of interrupted trials to re-run, new points)."""
        rerun = [int(self.rerun.popleft()) for _ in range(min(k, len(self.rerun)))]
        k -= len(rerun)
        if k <= 0:
            return rerun, None
        if len(self.queue) < k:
            n = max(self.batch_size, k - len(self.queue))
            points = np.asarray(self.sampler.suggest(n, self.history()), dtype=np.float64)
            if points.shape != (n, self.space.ndim):
                raise RuntimeError(f"sampler {self.sampler!r} returned shape {points.shape}, "
                                   f"expected {(n, self.space.ndim)}")
            self.queue = np.concatenate([self.queue, np.clip(points, 0.0, 1.0)])
        new, self.queue = self.queue[:k], self.queue[k:]
        return rerun, new

    @property
    def n_rerun(self) -> int:
        return len(self.rerun)
