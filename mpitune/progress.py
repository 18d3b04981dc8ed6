"""Rank 0's log: whole lines on stdout, readable in a Slurm output file."""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from .space import Space
from .table import COMPLETE, FAILED, INTERRUPTED, PRUNED, STATES, TIMEOUT, TrialTable

MAX_FAILURE_LINES = 5


def log(message: str, stream=None) -> None:
    """Write one whole line at once (mpiexec interleaves partial lines of several ranks).

    A log line never stops a search: characters the stream cannot encode are escaped,
    and once the reader has gone (``| head``) the log goes to /dev/null."""
    stream = stream or sys.stdout
    line = f"[mpitune {time.strftime('%H:%M:%S')}] {message}\n"
    encoding = getattr(stream, "encoding", None) or "utf-8"
    line = line.encode(encoding, "backslashreplace").decode(encoding, "replace")
    try:
        stream.write(line)
        stream.flush()
    except BrokenPipeError:
        to_devnull(stream)


def to_devnull(stream) -> None:
    """Point ``stream``'s file descriptor at /dev/null: its reader has gone (``| head``),
    and what is still buffered or written later must not raise again."""
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, stream.fileno())
    os.close(null)


def format_params(params: dict) -> str:
    def fmt(v):
        return f"{v:.6g}" if isinstance(v, float) else repr(v)

    return ", ".join(f"{k}={fmt(v)}" for k, v in params.items())


class Progress:
    def __init__(self, table: TrialTable, space: Space, max_trials: int, direction: str,
                 interval: float) -> None:
        self.table, self.space = table, space
        self.max_trials, self.direction, self.interval = max_trials, direction, interval
        self.started = time.monotonic()
        self._next = self.started + interval if interval > 0 else float("inf")
        self._last_time, self._last_done = self.started, table.n_finished
        self.failures_shown = 0

    def best(self) -> tuple[int, float, dict] | None:
        number = self.table.best(self.direction)
        if number is None:
            return None
        unit = self.table.unit.data[number: number + 1]
        params = self.space.params(unit)[0]
        return number, float(self.table.value.data[number]), params

    def line(self, now: float, workers: dict) -> str:
        t = self.table
        running = sum(1 for w in workers.values() if w.outstanding)
        queued = sum(len(w.outstanding) for w in workers.values()) - running
        counts = np.bincount(t.state.data, minlength=len(STATES))
        done = t.n_finished
        rate = (done - self._last_done) / max(now - self._last_time, 1e-9)
        self._last_time, self._last_done = now, done
        parts = [finished_of(done, self.max_trials, "done"), f"{running} running"]
        if queued:
            parts.append(f"{queued} queued")
        for code in (FAILED, PRUNED, TIMEOUT):
            if counts[code]:
                parts.append(f"{counts[code]} {STATES[code]}")
        best = self.best()
        parts.append("best: none yet" if best is None else
                     f"best {best[1] + 0.0:.6g} (trial {best[0]}: {format_params(best[2])})")
        parts.append(f"{rate:.1f} trials/s")
        parts.append(f"elapsed {_clock(now - self.started)}")
        return " | ".join(parts)

    def tick(self, now: float, workers: dict) -> None:
        if now >= self._next:
            log(self.line(now, workers))
            self._next = now + self.interval

    def failure(self, number: int, state: int, text: str) -> None:
        """Show the first few failures as one line each; the rest are only counted."""
        if self.failures_shown < MAX_FAILURE_LINES:
            first = text.strip().splitlines()[0] if text.strip() else "(no message)"
            last = text.strip().splitlines()[-1] if text.strip() else ""
            detail = first if first.endswith(last) else f"{first} ... {last}"
            log(f"trial {number} {'timed out' if state == TIMEOUT else 'failed'}: {detail}")
            self.failures_shown += 1
            if self.failures_shown == MAX_FAILURE_LINES:
                log("further failures are only counted; tracebacks are in the results file")

    def summary(self, status: str, now: float, path: str) -> None:
        t = self.table
        counts = np.bincount(t.state.data, minlength=len(STATES))
        elapsed = now - self.started
        log(f"{status}: {finished_of(t.n_finished, self.max_trials, 'trials finished')} "
            f"({counts[COMPLETE]} complete, {counts[FAILED]} failed, {counts[PRUNED]} pruned, "
            f"{counts[TIMEOUT]} timed out, {counts[INTERRUPTED]} to re-run) in "
            f"{_clock(elapsed)}; results in {path}")
        best = self.best()
        if best is not None:  # + 0.0: a best of -0.0 prints as 0, not -0
            log(f"best value {best[1] + 0.0:.10g} at trial {best[0]}: {format_params(best[2])}")
        elif t.n_finished:
            log(f"warning: no trial completed; see the errors with: python -m mpitune show "
                f"{path}")


def finished_of(finished: int, budget: int, what: str) -> str:
    """``"12/100 done"``; past the budget (lowered on resume) ``"87 done, budget of 74
    reached"``, not ``"87/74 done"``."""
    if finished <= budget:
        return f"{finished}/{budget} {what}"
    return f"{finished} {what}, budget of {budget} reached"


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:d}:{s // 60 % 60:02d}:{s % 60:02d}"
