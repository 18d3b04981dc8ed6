"""The master loop on rank 0: hand out trials, collect results, keep the store current.

Mirrors :mod:`mpitune.worker`. Each worker is kept ``target`` trials ahead: one running and
one queued when trials are slow (no round trip between trials), a chunk worth
``queue_ahead`` seconds of work when they are fast (thousands of trials per message), and
never more than its fair share of what is left of the budget. The loop waits with
:class:`~mpitune.protocol.Backoff`, so an idle rank 0 costs almost no CPU.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from . import protocol as P
from . import stopsignals
from .errors import MpituneError
from .progress import Progress, log
from .settings import Settings
from .space import Space
from .store import Store
from .suggester import Suggester

MAX_CHUNK = 4096
SLOW_TRIAL = 1.0  # seconds; slower trials get no queued successor (freshest suggestions)
MIN_NAP, MAX_NAP = 5e-5, 2e-3  # bounds of rank 0's shortest sleep, see Master._nap
STOP_MARGIN = 1.0  # seconds past the grace period before stuck workers are abandoned
EXIT_COMPLETE, EXIT_STOPPED = 0, 75


@dataclass
class WorkerState:
    rank: int
    host: str = ""
    gpu: str = ""
    device: str = ""
    ready: bool = False
    done: bool = False
    outstanding: set = field(default_factory=set)


class Master:
    def __init__(self, channel, worker_ranks: list[int], store: Store, suggester: Suggester,
                 space: Space, settings: Settings, inline=None, pruner=None) -> None:
        self.channel = channel
        self.workers = {r: WorkerState(r) for r in worker_ranks}
        self.store, self.table = store, store.table
        self.suggester, self.space, self.settings = suggester, space, settings
        self.inline = inline
        self.pruner = pruner  # see mpitune.pruners: observe() curve points, finished() trials
        self.budget = suggester.budget(settings.max_trials)
        self.progress = Progress(self.table, space, self.budget, settings.direction,
                                 settings.progress_interval)
        self.hungry: set[int] = set()
        self.n_active = len(self.workers)  # workers that have not said BYE
        self.n_outstanding = 0
        self.mean_duration: Optional[float] = None
        self.stopping: Optional[str] = None  # None, "end", "drain", "now"
        self.stop_reason = ""
        self.signals: list[str] = []
        self.deadline = math.inf
        self.time_limit = (time.monotonic() + settings.max_time if settings.max_time
                           else math.inf)

    # ---- the loop -------------------------------------------------------------------
    def run(self) -> tuple[str, int]:
        """Run until the budget is done or a stop; return (status, exit code)."""
        backoff = P.Backoff(spin=0.0)  # workers have work queued: sleeping costs them nothing
        previous = self._install_signals()
        try:
            while self.n_active:
                busy = self.inline.step() if self.inline is not None else False
                messages = self.channel.fetch()
                for source, tag, payload in messages:
                    self._handle(source, tag, payload)
                now = time.monotonic()
                if self._check_stop(now):
                    break
                if self.hungry and self.stopping is None:
                    self._feed()
                self.store.tick(now)
                self.progress.tick(now, self.workers)
                if messages or busy:
                    backoff.reset()
                    backoff.min_sleep = self._nap()
                else:
                    backoff.pause()
        finally:
            self._restore_signals(previous)
        abandoned = [r for r, w in self.workers.items() if not w.done]
        lost = [n for r in abandoned for n in self.workers[r].outstanding]
        if lost:
            self.store.record({"k": "I", "n": sorted(lost)})
        if self.suggester.n_fallback:
            log(f"{self.suggester.n_fallback} trials were stand-in points (Sobol' points and "
                f"steps from the best trials) handed out while the sampler was busy (trials "
                f"too short for it)")
        if self.table.n_finished >= self.budget:
            return "complete", EXIT_COMPLETE  # also when a signal came after the last trial
        if self.signals:
            return f"stopped by {self.signals[0]}", EXIT_STOPPED
        return self.stop_reason or "stopped", EXIT_STOPPED

    def _check_stop(self, now: float) -> bool:
        """Start, escalate or finish a stop; True when the loop must end now."""
        if self.signals and math.isinf(self.deadline) and self.stopping != P.STOP_END:
            self._stop(P.STOP_DRAIN, self.settings.grace_period)
            self.deadline = now + self.settings.grace_period + STOP_MARGIN
            log(f"{self.signals[0]}: no new trials; running ones get "
                f"{self.settings.grace_period:g} s to finish")
        elif self.stopping is None:
            if self._budget_left() == 0 or now >= self.time_limit:
                if now >= self.time_limit and self._budget_left() > 0:
                    self.stop_reason = f"time limit of {self.settings.max_time:g} s reached"
                if self.n_outstanding == 0:
                    self._stop(P.STOP_END, None)
                elif now >= self.time_limit:
                    # running trials finish however long they take; queued ones never start
                    self.hungry.clear()
                    self._stop(P.STOP_DRAIN, None)
        elif len(self.signals) > 1 and self.stopping != P.STOP_NOW:
            self._stop(P.STOP_NOW, 0.0)
            self.deadline = min(self.deadline, now + 0.5)
        return now >= self.deadline

    def _stop(self, mode: str, grace: Optional[float]) -> None:
        self.stopping = mode
        for rank, w in self.workers.items():
            if not w.done:
                self._post(rank, P.STOP, (mode, grace))

    def _budget_left(self) -> int:
        return max(0, self.budget - self.table.n_finished - self.n_outstanding)

    def pump(self) -> None:
        """Handle the messages that have arrived, nothing else (serial mode calls this
        from inside the inline trial, so that reports are judged while it runs)."""
        for source, tag, payload in self.channel.fetch():
            self._handle(source, tag, payload)

    # ---- messages -------------------------------------------------------------------
    def _handle(self, source: int, tag: int, payload) -> None:
        w = self.workers[source]
        if tag == P.RESULTS or tag == P.BYE:
            self._on_results(w, payload)
            if tag == P.BYE:
                w.done = True
                self.n_active -= 1
                self.hungry.discard(source)
                if w.outstanding:  # queued on the worker but never started: run them later
                    self.store.record({"k": "I", "n": sorted(w.outstanding)})
                    self.n_outstanding -= len(w.outstanding)
                    w.outstanding.clear()
            elif self.stopping is None:
                self.hungry.add(source)
        elif tag == P.REPORTS:
            curve, waiting = payload
            pruned = self._on_curve(curve)
            if waiting >= 0 and waiting not in pruned:
                self._post(source, P.DECISION, (waiting, P.CONTINUE))
        elif tag == P.READY:
            w.host, w.gpu, w.device = payload
            w.ready = True
            if all(x.ready for x in self.workers.values()):
                self._log_workers()
            steps = self.pruner.decision_steps() if self.pruner is not None else []
            self._post(source, P.SETUP, (self.space.names, self.space.constants,
                                         self.settings.trial_timeout,
                                         self.settings.grace_period, steps,
                                         self.store.checkpoint_root))
            if self.stopping is None:
                self.hungry.add(source)
            else:
                self._post(source, P.STOP, (self.stopping, 0.0))
        elif tag == P.FATAL:
            raise MpituneError(f"rank {source}: {payload}")
        else:
            raise RuntimeError(f"rank 0 got an unexpected message "
                               f"{P.TAG_NAMES.get(tag, tag)} from rank {source}")

    def _log_workers(self) -> None:
        hosts = sorted({w.host for w in self.workers.values()})
        gpus = [f"{w.rank}->{w.gpu}" for w in self.workers.values() if w.gpu]
        log(f"{len(self.workers)} worker(s) ready on {len(hosts)} host(s) "
            f"({', '.join(hosts[:4])}{', ...' if len(hosts) > 4 else ''}); "
            + (f"GPU per rank: {', '.join(gpus[:16])}{' ...' if len(gpus) > 16 else ''}"
               if gpus else "no GPUs, trials run on the CPU"))

    def _on_curve(self, curve) -> list[int]:
        """Record curve points, post the pruner's stop decisions; return the stopped."""
        if not curve[0]:
            return []
        self.store.record({"k": "C", "n": curve[0], "st": curve[1], "v": curve[2],
                           "t": curve[3]})
        if self.pruner is None:
            return []
        pruned = self.pruner.observe(curve[0], curve[1], curve[2])
        for number in pruned:
            rank = int(self.table.worker.data[number])
            self._post(rank, P.DECISION, (int(number), P.PRUNE))
        return pruned

    def _on_results(self, w: WorkerState, payload) -> None:
        numbers, states, values, t_start, t_end, metrics, errors, curve = payload
        self._on_curve(curve)
        if not numbers:
            return
        self.store.record({"k": "D", "n": numbers, "s": states, "v": values, "t0": t_start,
                           "t1": t_end, "m": metrics, "e": errors})
        w.outstanding.difference_update(numbers)
        self.n_outstanding -= len(numbers)
        if self.pruner is not None:
            self.pruner.finished(numbers, states, values)
        # per-trial cost as the worker experienced it, overhead included
        span = (t_end[-1] - t_start[0]) / len(numbers)
        self.mean_duration = span if self.mean_duration is None else (
            0.7 * self.mean_duration + 0.3 * span)
        self.suggester.trial_seconds = self.mean_duration
        for number, text in errors.items():
            self.progress.failure(number, int(self.table.state.data[number]), text)

    def _nap(self) -> float:
        """Shortest sleep of an idle rank 0: a quarter of the work each worker has queued
        (one trial, or ``queue_ahead`` of short ones), so rank 0 wakes a few times per
        trial instead of thousands of times a second, and no worker runs dry."""
        d = self.mean_duration
        if d is None:
            return MIN_NAP
        return min(MAX_NAP, max(MIN_NAP, 0.25 * min(d, self.settings.queue_ahead)))

    # ---- handing out trials ---------------------------------------------------------
    def _target(self) -> int:
        """How many trials to keep assigned to each worker."""
        d = self.mean_duration
        if d is None:
            return 1
        ratio = self.settings.queue_ahead / max(d, 1e-7)  # may be inf: queue_ahead is free
        ahead = MAX_CHUNK if ratio >= MAX_CHUNK else max(1, math.ceil(ratio))
        return ahead + (1 if d < SLOW_TRIAL else 0)

    def _feed(self) -> None:
        target = self._target()
        left = self._budget_left()
        fair = max(1, math.ceil(left / max(1, len(self.workers))))
        for rank in sorted(self.hungry):
            w = self.workers[rank]
            want = min(target, fair) - len(w.outstanding)
            if want <= 0 or (w.outstanding and want < max(1, target // 2)):
                continue
            if self._send_trials(w, min(want, self._budget_left())) == 0:
                break
        self.hungry.clear()

    def _send_trials(self, w: WorkerState, k: int) -> int:
        if k <= 0:
            return 0
        rerun, new = self.suggester.take(k)
        numbers = rerun
        if not rerun and (new is None or not len(new)):
            return 0
        if new is not None and len(new):
            n0 = self.table.n
            self.store.record({"k": "A", "n0": n0, "u": new.tolist()})
            numbers = rerun + list(range(n0, n0 + len(new)))
        self.store.record({"k": "S", "n": numbers, "w": w.rank, "h": w.host, "g": w.gpu})
        rows = self.space.rows(self.table.unit.data[np.asarray(numbers)])
        self._post(w.rank, P.TRIALS, (numbers, rows))
        w.outstanding.update(numbers)
        self.n_outstanding += len(numbers)
        return len(numbers)

    def _post(self, rank: int, tag: int, payload) -> None:
        self.channel.post(rank, tag, payload)

    # ---- signals --------------------------------------------------------------------
    def _on_signal(self, signum, frame) -> None:
        self.signals.append(signal.Signals(signum).name)
        if self.inline is not None:
            self.inline.interrupt(len(self.signals), self.settings.grace_period)

    def _install_signals(self) -> dict:
        """Handle stop signals from here on; take over those that came during start-up.
        Serial mode: the inline trial is interrupted after the grace period, as on a
        worker. Python sets signal handlers in the main thread only: a search started
        from another thread runs without (as a worker there does), and says so."""
        self.signals.extend(stopsignals.received)
        stopsignals.received.clear()
        if not stopsignals.in_main_thread():
            inline_timeout = self.inline is not None and self.settings.trial_timeout
            timeout = " and trial_timeout is not enforced" if inline_timeout else ""
            log(f"running in thread {threading.current_thread().name!r}, not the main "
                f"thread: stop signals (SIGTERM, SIGINT, SIGUSR1) are not handled here"
                f"{timeout}")
            return {}
        previous = stopsignals.install(self._on_signal)
        if self.inline is not None:
            previous.update(self.inline.watch_interrupts())
        return previous

    def _restore_signals(self, previous: dict) -> None:
        if self.inline is not None:
            self.inline.unwatch(previous)  # also cancels a pending interrupt
        else:
            stopsignals.restore(previous)
