r"""Early stopping ("pruning") of unpromising trials, on cheap synthetic learning curves.

    mpiexec -n 5 python -m mpitune examples/prune_curves.py                  # ASHA
    mpiexec -n 5 python -m mpitune examples/prune_curves.py --pruner hyperband \
        --storage prune_hyperband.h5
    mpiexec -n 5 python -m mpitune examples/prune_curves.py --pruner median \
        --warmup-steps 5 --storage prune_median.h5
    python -m mpitune show prune_curves.h5

Every trial reports its learning curve with ``trial.report(step, value)``; rank 0 feeds
the points to the pruner as they arrive and tells the worker to stop a trial the rule
gives up on: the trial's next ``trial.report`` raises :class:`mpitune.TrialPruned`. The
trial is stored with state ``pruned`` and its curve up to where it stopped. Catching the
exception to clean up (and even returning a value) is fine: the trial stays ``pruned``.

The pruner settings (also ``--pruner``, ``--min-resource``, ... on the command line):

* ``pruner``: ``"none"`` (default), ``"median"``, ``"asha"`` or ``"hyperband"``, or a
  :class:`mpitune.pruners.Pruner` object, e.g. ``MedianPruner(min_trials=10)``.
* ``min_resource`` / ``max_resource`` / ``reduction_factor``: ASHA's rungs sit at steps
  ``min_resource * reduction_factor**k`` below ``max_resource`` (the last step a full
  trial reports; hyperband needs it), and the best ``1/reduction_factor`` of each rung go
  on.
* ``warmup_steps``: the median rule stops nothing at earlier steps.

A nan or infinite reported value counts as the worst value there is.
"""

import math
import time

from mpitune import Integer, Real, TrialPruned

space = {
    "lr": Real(1e-4, 1.0, log=True),
    "width": Integer(8, 1024, log=True),
}

# settings
pruner = "asha"
min_resource = 1
max_resource = 27
reduction_factor = 3
max_trials = 300
storage = "prune_curves.h5"
progress_interval = 5.0

STEP_SECONDS = 0.01  # what one "epoch" costs here


def objective(params, trial):
    u = (math.log10(params["lr"]) + 2.5) ** 2 + (math.log2(params["width"]) - 7) ** 2 / 9
    final = 0.1 + 0.2 * u  # the loss this configuration would end at
    tau = 3.0 * params["lr"] ** -0.1  # how fast it gets there
    try:
        for epoch in range(1, max_resource + 1):
            time.sleep(STEP_SECONDS)  # "train one epoch"
            loss = final + 2.0 * math.exp(-epoch / tau)
            if params["lr"] > 0.5 and epoch > 3:
                loss = math.nan  # diverged: counts as the worst value
            trial.report(epoch, loss)  # raises TrialPruned once rank 0 stops the trial
    except TrialPruned:
        # release files, GPU memory, ... here; the trial is stored as "pruned" either way
        raise
    return loss if math.isfinite(loss) else 10.0
