"""The master-worker protocol: message tags, payload shapes, and waiting without spinning.

Every message is a pickled Python object sent with ``comm.send``/``comm.isend`` on a
duplicate of the user's communicator. Payload shapes, by tag:

* ``READY``   worker -> master: ``(host, gpu_id or "", device)`` once, after start-up.
* ``SETUP``   master -> worker: ``(names, constants, trial_timeout, grace_period,
  decision_steps, checkpoint_root)`` once, before any trial: the parameter names in
  dimension order, the constant parameters, the per-trial time limit in seconds (or None),
  the grace period after a stop signal, the ascending steps at which the pruner decides
  (a trial that reaches one waits for the verdict), and the directory that holds the
  trials' checkpoint directories.
* ``TRIALS``  master -> worker: ``(numbers, rows)``, trials to run in order; ``rows[i]`` is a
  tuple of user values in the space's dimension order, or a dict of the active parameters
  in a space with conditional parameters.
* ``RESULTS`` worker -> master: ``(numbers, states, values, t_start, t_end, metrics, errors,
  curve)`` for trials finished since the last send: ``metrics`` maps a name to
  ``(numbers, values)``, ``errors`` a number to its traceback text, ``curve`` is
  ``(numbers, steps, values, times)`` of points not sent yet.
* ``REPORTS`` worker -> master: ``(curve, waiting)``: points of running trials; ``waiting``
  is the number of a trial that reached a decision step and waits for the verdict, or -1.
* ``DECISION`` master -> worker: ``(number, verdict)`` for a running trial; ``PRUNE``
  makes its next ``trial.report`` raise ``TrialPruned``; ``CONTINUE`` answers a waiting
  trial that goes on.
* ``STOP``    master -> worker: ``STOP_END`` after the last trial; ``STOP_DRAIN`` on a
  signal (queued trials are dropped, the running one may finish); ``STOP_NOW`` when the
  grace period is over (the running trial is interrupted at its next report).
* ``BYE``     worker -> master: a last ``RESULTS`` payload, then the worker exits.
* ``FATAL``   worker -> master: ``text`` of an error that makes the worker unusable.
"""

from __future__ import annotations

import os
import time

READY = 1
TRIALS = 2
RESULTS = 3
REPORTS = 4
DECISION = 5
STOP = 6
BYE = 7
FATAL = 8
SETUP = 9

STOP_END, STOP_DRAIN, STOP_NOW = "end", "drain", "now"
PRUNE, CONTINUE = "prune", "continue"

TAG_NAMES = {READY: "READY", TRIALS: "TRIALS", RESULTS: "RESULTS", REPORTS: "REPORTS",
             DECISION: "DECISION", STOP: "STOP", BYE: "BYE", FATAL: "FATAL", SETUP: "SETUP"}


class Backoff:
    """Wait for messages without burning a core, and without adding much latency.

    After activity the caller polls with ``sched_yield`` for ``spin`` seconds (messages
    that arrive in a burst are picked up at once, and an oversubscribed node still runs the
    other ranks), then sleeps for 5% of the time it has been idle, between ``min_sleep``
    and ``max_sleep``. Added latency is therefore bounded by about 5% of the wait itself.
    """

    def __init__(self, spin: float = 0.001, min_sleep: float = 5e-5,
                 max_sleep: float = 0.01) -> None:
        self.spin, self.min_sleep, self.max_sleep = spin, min_sleep, max_sleep
        self.idle_since = time.monotonic()

    def reset(self) -> None:
        self.idle_since = time.monotonic()

    def pause(self) -> None:
        idle = time.monotonic() - self.idle_since
        if idle < self.spin:
            os.sched_yield()
        else:
            time.sleep(min(self.max_sleep, max(self.min_sleep, 0.05 * idle)))
