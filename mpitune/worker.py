"""The worker loop: take trials from rank 0, run the objective, send results in groups.

Mirrors :mod:`mpitune.master`. Results of short trials are grouped for up to
``SEND_INTERVAL``; learning-curve points are sent at most every ``REPORT_INTERVAL`` and do
not wait for an answer, except at the pruner's decision steps (its rungs): there the
points leave at once and the trial waits for the verdict, one message round trip. Other
pruning decisions and stops are picked up at the next report.
"""

from __future__ import annotations

import bisect
import copy
import os
import signal
import threading
import time
from collections import deque
from typing import Callable

from . import protocol as P
from . import stopsignals
from .errors import TrialInterrupted
from .gpu import Binding
from .trial import Outcomes, Trial, run_trial

SEND_INTERVAL = 0.002
REPORT_INTERVAL = 0.005


class Worker:
    def __init__(self, channel, objective: Callable, binding: Binding, host: str) -> None:
        self.channel = channel
        self.objective = objective
        self.binding = binding
        self.host = host
        self.rank = channel.rank
        self.where = f"rank {self.rank} on {host}"
        self.queue: deque = deque()
        self.outcomes = Outcomes()
        self.decisions: dict[int, str] = {}
        self.names: list[str] = []
        self.constants: dict = {}
        self.containers: list[str] = []  # constants each trial gets its own copy of
        self.trial_timeout: float | None = None
        self.grace = 5.0
        self.decision_steps: list[float] = []  # ascending; slightly lowered, see _rungs_at
        self.checkpoint_root = ""
        self._rungs_passed: dict[int, int] = {}
        self._signals = 0
        self._interrupter: threading.Timer | None = None
        self._watching = False  # SIGUSR2 is ours: the grace timer may interrupt a trial
        self.stop: str | None = None
        self.interrupt_at = float("inf")  # running trial is interrupted at a report after it
        self.current: Trial | None = None  # the trial being run
        self.done = False
        self.last_send = self.last_report = time.monotonic()

    def start(self) -> None:
        self.channel.post(0, P.READY, (self.host, self.binding.gpu or "", self.binding.device))

    def run(self) -> None:
        """Serve rank 0 until it says stop (MPI mode)."""
        previous = self._watch_signals()
        self.start()
        backoff = P.Backoff()
        try:
            while not self.done:
                if self.step():
                    backoff.reset()
                else:
                    backoff.pause()
            while self.channel.sending:  # let the last results leave before MPI finalises
                backoff.pause()
        finally:
            self.unwatch(previous)

    # ---- stop signals reach every rank: a trial that never reports is still stopped ----
    def _watch_signals(self) -> dict:
        if not stopsignals.in_main_thread():
            return {}
        previous = stopsignals.install(self._on_stop_signal)
        previous.update(self.watch_interrupts())
        return previous

    def watch_interrupts(self) -> dict:
        """Let the grace timer interrupt the running trial (SIGUSR2 to this thread, see
        :meth:`_arm_interrupter`); return the previous handler. Main thread only: elsewhere
        a stop reaches the trial at its next report."""
        if not stopsignals.in_main_thread():
            return {}
        self._watching = True
        return {signal.SIGUSR2: signal.signal(signal.SIGUSR2, self._on_interrupt)}

    def unwatch(self, previous: dict) -> None:
        """Cancel a pending interrupt, then restore the handlers in ``previous``; the join
        makes sure a SIGUSR2 already sent meets our handler, not the fatal default."""
        if self._interrupter is not None:
            self._interrupter.cancel()
            self._interrupter.join()
        self._watching = False
        stopsignals.restore(previous)

    def _arm_interrupter(self, delay: float) -> None:
        """Interrupt the running trial in ``delay`` seconds, whether it reports or not."""
        if not self._watching:
            return
        if self._interrupter is not None:
            self._interrupter.cancel()
        self._interrupter = threading.Timer(delay, signal.pthread_kill,
                                            (threading.main_thread().ident, signal.SIGUSR2))
        self._interrupter.daemon = True
        self._interrupter.start()

    def _on_stop_signal(self, signum, frame) -> None:
        """Rank 0 got the same signal and stops the search; if the running trial neither
        ends nor reports within the grace period, interrupt it from here (SIGUSR2 to this
        thread), so the worker can still say BYE instead of being killed."""
        self._signals += 1
        if self.stop is None:
            self.stop = P.STOP_DRAIN
        self._arm_interrupter(self.grace if self._signals == 1 else 0.0)

    def _on_interrupt(self, signum, frame) -> None:
        if self.in_trial:
            self.interrupt_at = 0.0
            self.current._stop(TrialInterrupted("interrupted: the search was stopped by a "
                                                "signal"))

    @property
    def in_trial(self) -> bool:
        """True while the objective runs (or its return value is read): only then may a
        stop raise TrialInterrupted, never while the outcome is being recorded."""
        return self.current is not None and self.current._running

    def step(self) -> bool:
        """One turn of the loop: read messages, run at most one trial. True if busy."""
        busy = self._drain()
        if self.queue and self.stop is None:
            number, row = self.queue.popleft()
            self._run(number, row)
            if not self.queue or time.monotonic() - self.last_send >= SEND_INTERVAL:
                self._send(P.RESULTS)
            return True
        if self.stop is not None and not self.done:
            self.queue.clear()  # trials never started; rank 0 runs them again later
            self._send(P.BYE)
            self.done = True
            return True
        return busy

    def _drain(self) -> bool:
        messages = self.channel.fetch(0)
        for _, tag, payload in messages:
            if tag == P.TRIALS:
                self.queue.extend(zip(*payload))
            elif tag == P.SETUP:
                (self.names, self.constants, self.trial_timeout, self.grace, steps,
                 self.checkpoint_root) = payload
                self.decision_steps = [r * (1.0 - 1e-9) for r in steps]  # as pruners do
                self.containers = [name for name, value in self.constants.items()
                                   if isinstance(value, (list, dict, tuple))]
            elif tag == P.DECISION:
                self.decisions[payload[0]] = payload[1]
            elif tag == P.STOP:
                self.stop, grace = payload
                if grace is not None:
                    self.interrupt_at = min(self.interrupt_at, time.monotonic() + grace)
        return bool(messages)

    def _run(self, number: int, row: tuple) -> None:
        params = dict(self.constants)
        for name in self.containers:  # an objective that changes them changes its own copy
            params[name] = copy.deepcopy(params[name])
        params.update(row if isinstance(row, dict) else zip(self.names, row))
        self.current = Trial(number, params, self, self.rank, self.host, self.binding.device,
                             self.binding.gpu)
        try:
            run_trial(self.objective, self.current, self.outcomes, self.where,
                      self.trial_timeout)
        finally:
            self.current = None
        self.decisions.clear()  # decisions only ever concern the trial that just ended
        self._rungs_passed.clear()

    def _send(self, tag: int) -> None:
        self.channel.post(0, tag, self.outcomes.payload())
        self.last_send = self.last_report = time.monotonic()

    # the link that Trial.report and Trial.should_stop call
    def report(self, number: int, step: float, value: float) -> None:
        self.outcomes.add_point(number, step, value)
        now = time.monotonic()
        passed = bisect.bisect_right(self.decision_steps, step)
        if passed > self._rungs_passed.get(number, 0):  # reached a rung: wait for the verdict
            self._rungs_passed[number] = passed
            self.channel.post(0, P.REPORTS, (self.outcomes.take_curve(), number))
            self.last_report = now
            self._await_verdict(number)
        elif now - self.last_report >= REPORT_INTERVAL:
            self.channel.post(0, P.REPORTS, (self.outcomes.take_curve(), -1))
            self.last_report = now
        self._drain()

    def _await_verdict(self, number: int) -> None:
        """Wait until rank 0 says whether trial ``number`` goes on past this rung; a stop
        (signal, grace period over, the trial's timeout) ends the wait too."""
        backoff = P.Backoff()
        while True:
            self._drain()
            verdict = self.decisions.get(number)
            if verdict == P.CONTINUE:
                del self.decisions[number]
                return
            if verdict is not None or self.stop is not None \
                    or time.monotonic() >= self.interrupt_at \
                    or self.current._deferred is not None:  # a timeout waits for us
                return
            backoff.pause()

    def checkpoint_dir(self, number: int) -> str:
        path = os.path.join(self.checkpoint_root or ".mpitune-checkpoints", f"trial-{number}")
        os.makedirs(path, exist_ok=True)
        return path

    def should_stop(self, number: int) -> bool:
        if time.monotonic() >= self.interrupt_at:
            raise TrialInterrupted(f"trial {number} interrupted: the search is stopping")
        return self.decisions.get(number) == P.PRUNE

    def interrupt(self, count: int, grace: float) -> None:
        """Serial mode's signal handler: the first signal lets the running trial finish
        within ``grace``, then interrupts it as under MPI (reports or not, when
        :meth:`watch_interrupts` was called); a second interrupts it at once."""
        if count == 1:
            self.interrupt_at = min(self.interrupt_at, time.monotonic() + grace)
            self._arm_interrupter(grace)
        elif self.in_trial:
            self.interrupt_at = 0.0
            self.current._stop(TrialInterrupted("interrupted by a second signal"))
