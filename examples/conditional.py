"""Conditional parameters and explicit configurations.

    mpiexec -n 5 python -m mpitune examples/conditional.py
    python -m mpitune show conditional.h5

``momentum`` and ``nesterov`` exist only when ``optimizer`` is "sgd", ``beta1`` only for
"adam" and "adamw", ``weight_decay`` only for "adamw". The objective receives only the
active ones; the results file stores the others as missing (NaN, or "" for text). The
two ``configs`` (a known good setting and the library defaults, say) run first.
"""

import math

from mpitune import Categorical, Integer, Real

space = {
    "optimizer": Categorical(["sgd", "adam", "adamw"]),
    "lr": Real(1e-5, 1.0, log=True),
    "momentum": Real(0.0, 0.99, when={"optimizer": "sgd"}),
    "nesterov": Categorical([True, False], when={"optimizer": "sgd"}),
    "beta1": Real(0.5, 0.999, when={"optimizer": ["adam", "adamw"]}),
    "weight_decay": Real(1e-6, 1e-1, log=True, when={"optimizer": "adamw"}),
    "layers": Integer(1, 6),
}

configs = [
    {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True, "layers": 2},
    {"optimizer": "adam", "lr": 1e-3, "beta1": 0.9, "layers": 2},
]


def objective(params):
    """A made-up validation loss: each optimiser has its own best learning rate."""
    best_lr = {"sgd": 0.05, "adam": 2e-3, "adamw": 1e-3}[params["optimizer"]]
    loss = (math.log10(params["lr"] / best_lr)) ** 2 + 0.05 * abs(params["layers"] - 3)
    if params["optimizer"] == "sgd":
        loss += (params["momentum"] - 0.9) ** 2 + (0.0 if params["nesterov"] else 0.05)
    else:
        loss += 2 * (params["beta1"] - 0.9) ** 2
    if params["optimizer"] == "adamw":
        loss += 0.02 * abs(math.log10(params["weight_decay"]) + 2) - 0.1
    return loss


max_trials = 100
storage = "conditional.h5"
