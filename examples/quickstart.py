"""Quick start: a cheap analytic objective with every kind of parameter.

    mpiexec -n 5 python -m mpitune examples/quickstart.py      # 1 master + 4 workers
    python -m mpitune examples/quickstart.py                   # serially, no mpiexec
    python -m mpitune show results.h5                          # the best trials
"""

import math

from mpitune import Categorical, Integer, Real

space = {
    "x": Real(-5.0, 10.0),
    "y": Real(0.0, 15.0),
    "lr": Real(1e-5, 1e-1, log=True),
    "layers": Integer(1, 8),
    "activation": Categorical(["relu", "tanh", "gelu"]),
    "epochs": 5,  # a constant
}


def objective(params, trial):
    # Branin's function, plus small penalties from the other parameters
    x, y = params["x"], params["y"]
    branin = (y - 5.1 / (4 * math.pi**2) * x**2 + 5 / math.pi * x - 6) ** 2 \
        + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x) + 10
    penalty = 0.1 * abs(math.log10(params["lr"]) + 3) + 0.05 * abs(params["layers"] - 4)
    penalty += {"relu": 0.0, "tanh": 0.2, "gelu": 0.1}[params["activation"]]
    for epoch in range(1, params["epochs"] + 1):  # a learning curve that converges
        trial.report(epoch, branin + penalty + 1.0 / epoch)
    return {"value": branin + penalty, "branin": branin}


max_trials = 200
storage = "results.h5"
