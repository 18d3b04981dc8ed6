"""benchmarks/pruning.py: a tiny run of its measurement under mpiexec (the trials that the
run's --max-time interrupts are in the results file without times, and must not turn the
worker-seconds and the best value within the budget into nan; the configurations it gives
Optuna to compare the pruning rules alone are those the mpitune run ran)."""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest
from conftest import MPIEXEC

import mpitune


@pytest.mark.skipif(MPIEXEC is None, reason="needs mpiexec")
def test_interrupted_trials_do_not_spoil_the_measurement(tmp_path):
    import pruning as bench  # benchmarks/, on sys.path through conftest

    task = bench.Task("synthetic", bench.synthetic_run, "maximize", 81, 3.0, 1.0)
    args = argparse.Namespace(mpiexec=MPIEXEC, mpiexec_args="", workers=2, seed=1,
                              busy_budget=0.0)
    run = bench.run_mpitune(args, task, "none", str(tmp_path), sampler="sobol")
    assert run.method == "mpitune none [sobol]"
    stored = mpitune.load(str(tmp_path / "synthetic-none-sobol-seed1.h5"))
    interrupted = stored["state"] == "interrupted"
    assert interrupted.any() and np.isnan(stored["t_start"][interrupted]).all()
    assert len(run.states) == int((~interrupted).sum()) and "interrupted" not in run.states
    s = bench.summarise(run, task, None)
    assert math.isfinite(s["worker_s"]) and s["worker_s"] > 0.4 * task.budget
    assert math.isfinite(s["best"]) and s["best"] <= 1.0
    first = bench.mpitune_configurations("synthetic", 1, 8)
    assert [{k: stored[k][i] for k in first[0]} for i in range(8)] == first


def test_optuna_is_given_the_configurations_of_mpitune():
    optuna = pytest.importorskip("optuna")
    import pruning as bench

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=bench._optuna_sampler("same", 3, "digits"))
    got = [bench.optuna_params("digits", study.ask()) for _ in range(5)]
    assert got == bench.mpitune_configurations("digits", 3, 5)
