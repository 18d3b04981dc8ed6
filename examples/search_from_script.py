"""Run a search from your own script with ``mpitune.run`` instead of a spec file.

    mpiexec -n 3 python examples/search_from_script.py     # 1 master + 2 workers
    python examples/search_from_script.py                  # serially, in one process

``mpitune.run`` must be called on every rank. Rank 0 gets the results (the same
``Results`` object as ``mpitune.load`` returns, plus ``.status``); the workers get None
once the search is over. Settings are keyword arguments with the same names as in a spec
file; a second run with the same ``storage`` resumes the search.
"""

import mpitune
from mpitune import Integer, Real


def objective(params, trial):
    return (params["x"] - 1.0) ** 2 + 0.01 * params["n"]


if __name__ == "__main__":
    results = mpitune.run(objective, {"x": Real(-3.0, 3.0), "n": Integer(1, 10)},
                          max_trials=50, storage="script.h5", progress_interval=0)
    if results is not None:  # rank 0
        print(f"{results.status}: best {results.best}")
