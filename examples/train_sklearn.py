r"""Tune a scikit-learn neural network on the digits data set, epoch by epoch.

    pip install ".[mpich,sklearn]"                                # once, in your venv
    mpiexec -n 3 python -m mpitune examples/train_sklearn.py      # 1 master + 2 workers
    python -m mpitune show sklearn_digits.h5                      # the best trials
    mpiexec -n 3 python -m mpitune examples/train_sklearn.py --pruner asha --max-resource 12 \
        --storage pruned.h5                                       # stop poor trials early

Each trial trains an :class:`~sklearn.neural_network.MLPClassifier` one epoch at a time
with ``partial_fit``, reports the validation loss after every epoch with
``trial.report`` (the learning curves land in ``/curves`` of the results file) and
returns the final validation loss as the value to minimise, plus the accuracy as an
extra metric. The digits data (1,797 8x8 images) ships with scikit-learn: nothing is
downloaded.

A spec file is a plain Python module: ``space`` and ``objective`` are required, and any
module-level name equal to a setting (``max_trials``, ``storage``, ``seed``,
``batch_size``, ...) *is* that setting. Constants of our own are therefore written in
UPPER CASE, so that none of them is mistaken for a setting.
"""

import functools
import math
import os

# One BLAS thread per worker: several workers share a node's cores. Workers import this
# file before numpy, so the variable still takes effect. Set it higher (or export it in
# the job script) when each worker has several cores to itself.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from mpitune import Categorical, Integer, Real, TrialPruned  # noqa: E402

space = {
    "learning_rate": Real(1e-4, 3e-2, log=True),  # log scale: 1e-4 is as likely as 1e-2
    "hidden": Integer(16, 256, log=True),  # units in the hidden layer
    "activation": Categorical(["relu", "tanh", "logistic"]),
    "alpha": Real(1e-6, 1e-2, log=True),  # L2 penalty
    "minibatch": Categorical([32, 64, 128]),
    "epochs": 12,  # a constant: passed to the objective, not searched
}

# settings (see README, "Settings"); each can be overridden on the command line,
# e.g. --max-trials 100 --storage other.h5
max_trials = 24
storage = "sklearn_digits.h5"
progress_interval = 5.0

VALIDATION_SHARE = 0.25


@functools.lru_cache(maxsize=1)
def digits():
    """Train/validation split of the digits data, loaded once per worker (rank 0, which
    never trains, does not pay for it)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = x / 16.0  # pixel values are 0..16
    return train_test_split(x, y, test_size=VALIDATION_SHARE, stratify=y, random_state=0)


def objective(params, trial):
    import numpy as np
    from sklearn.metrics import accuracy_score, log_loss
    from sklearn.neural_network import MLPClassifier

    x_train, x_val, y_train, y_val = digits()
    classes = np.unique(y_train)
    model = MLPClassifier(
        hidden_layer_sizes=(params["hidden"],),
        activation=params["activation"],
        alpha=params["alpha"],
        learning_rate_init=params["learning_rate"],
        batch_size=params["minibatch"],
        random_state=trial.number,  # reproducible: one seed per trial
    )
    for epoch in range(1, params["epochs"] + 1):
        model.partial_fit(x_train, y_train, classes=classes)  # one pass over the data
        proba = model.predict_proba(x_val)
        val_loss = log_loss(y_val, proba, labels=classes)
        if not math.isfinite(val_loss):
            raise TrialPruned(f"diverged at epoch {epoch}")  # stored as state "pruned"
        # one point of this trial's learning curve; returns at once
        trial.report(epoch, val_loss)
    accuracy = accuracy_score(y_val, classes[proba.argmax(axis=1)])
    # "value" is what the search minimises; other keys become metrics/<name> columns
    return {"value": val_loss, "accuracy": accuracy}
