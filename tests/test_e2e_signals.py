"""End to end: stopping a search early (signals, --max-time) and continuing it.

mpiexec (hydra) forwards SIGTERM, SIGINT and SIGUSR1 to every rank; workers ignore them
and rank 0 stops the search in order: no new trials, running ones get grace_period seconds
(then they are interrupted at their next report), a final snapshot, exit status 75. The
file is then complete (no journal, no lock) and running the same command finishes the
budget.
"""

from __future__ import annotations

import json
import os
import signal
import time

import h5py
import numpy as np
import pytest
from conftest import write_spec

import mpitune

SPEC = '''
import os
import time
from mpitune import Integer, Real

space = {"x": Real(0.0, 1.0), "k": Integer(1, 9)}
STEPS = int(os.environ.get("E2E_STEPS", "2"))
STEP = float(os.environ.get("E2E_STEP", "0.01"))


def objective(params, trial):
    for step in range(STEPS):
        time.sleep(STEP)
        trial.report(step, params["x"] / (step + 1))
    return params["x"] + params["k"]
'''


def wait_for(predicate, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = predicate()
        if out:
            return out
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def n_complete(path: str) -> int:
    """Complete trials as mpitune.load sees them while the search runs (0 before the file
    exists)."""
    if not os.path.exists(path):
        return 0
    try:
        r = mpitune.load(path)
    except mpitune.StorageError:
        return 0
    return int((r["state"] == "complete").sum())


def n_reporting(path: str) -> int:
    """Trials that have reported a curve point so far, as mpitune.load sees them (0
    before the file exists): they are running, not just handed out."""
    try:
        return len(np.unique(mpitune.load(path).curves["trial"]))
    except (mpitune.StorageError, OSError):
        return 0


def complete_rows(r) -> dict:
    ok = np.flatnonzero(r["state"] == "complete")
    return {int(i): (float(r["value"][i]), float(r["x"][i]), int(r["k"][i])) for i in ok}


def check_stopped_file(path: str, budget: int, status: str):
    """After exit 75: a finished-looking file that says it is not complete."""
    assert not os.path.exists(path + ".journal"), "journal left after a clean stop"
    assert not os.path.exists(path + ".lock"), "lock left after a clean stop"
    with h5py.File(path, "r") as f:
        assert bool(f.attrs["complete"]) is False
        runs = json.loads(f.attrs["runs"])
        assert runs[-1]["status"].startswith(status), runs[-1]
        assert runs[-1]["end"] is not None
        states = {s.decode() for s in f["trials/state"][...].tolist()}
    assert states <= {"complete", "interrupted"}, states
    r = mpitune.load(path)
    np.testing.assert_array_equal(r["number"], np.arange(len(r)))
    assert (r["state"] == "complete").sum() < budget
    return r


def finish(run, spec, path, budget, before, env=None, ranks=4):
    """Re-run the same command: the budget is reached exactly and earlier trials stay."""
    res = run(ranks, [spec, "--max-trials", budget, "--storage", path,
                      "--progress-interval", 0], env=env)
    assert res.returncode == 0, res.describe()
    r = mpitune.load(path)
    assert len(r) == budget and r.complete
    np.testing.assert_array_equal(r["number"], np.arange(budget))
    assert set(r["state"].tolist()) == {"complete"}
    after = complete_rows(r)
    for number, row in complete_rows(before).items():
        assert after[number] == row, number
    for number in np.flatnonzero(before["state"] == "interrupted"):
        # re-run with the same number and parameters
        assert r["x"][number] == before["x"][number]
        assert r["k"][number] == before["k"][number]
    return r


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT", "SIGUSR1"])
def test_signal_to_mpiexec_stops_cleanly_then_resumes(tmp_path, start, run, signame):
    spec = write_spec(tmp_path, SPEC)
    path = str(tmp_path / "sig.h5")
    budget = 150
    env = {"E2E_STEP": "0.01"}
    job = start(4, [spec, "--max-trials", budget, "--storage", path, "--progress-interval", 0],
                env=env)
    wait_for(lambda: n_complete(path) >= 10 or not job.running(), what="10 trials")
    assert job.running(), job.wait().describe()
    job.send(getattr(signal, signame))
    t0 = time.monotonic()
    res = job.wait(timeout=30)
    took = time.monotonic() - t0
    assert res.returncode == 75, res.describe()
    assert f"stopped by {signame}" in res.stdout, res.describe()
    assert took < 10, f"stopping took {took:.1f} s"  # trials take 20 ms, grace is 5 s
    assert "mpitune: error" not in res.stderr
    before = check_stopped_file(path, budget, f"stopped by {signame}")
    if signame == "SIGTERM":  # continuing is the same whatever the signal was
        finish(run, spec, path, budget, before, env=env)


def test_signal_to_every_rank_as_slurm_does(tmp_path, start, run):
    """srun --signal / sbatch --signal=USR1@120 signal every rank at once."""
    spec = write_spec(tmp_path, SPEC)
    path = str(tmp_path / "all.h5")
    budget = 150
    job = start(4, [spec, "--max-trials", budget, "--storage", path, "--progress-interval", 0],
                env={"E2E_STEP": "0.01"})
    wait_for(lambda: n_complete(path) >= 5 or not job.running(), what="5 trials")
    ranks = []
    for pid in job.tree():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if os.path.basename(argv[0]).startswith(b"python") and b"mpitune" in argv:
            ranks.append(pid)
    assert len(ranks) == 4, ranks
    for pid in ranks:
        os.kill(pid, signal.SIGUSR1)
    res = job.wait(timeout=30)
    assert res.returncode == 75, res.describe()
    assert "stopped by SIGUSR1" in res.stdout
    before = check_stopped_file(path, budget, "stopped by SIGUSR1")
    finish(run, spec, path, budget, before, env={"E2E_STEP": "0.01"})


def test_grace_period_interrupts_long_trials(tmp_path, start, run):
    """Trials longer than the grace period are interrupted at their next report, stored as
    interrupted, and run again (same number, same parameters) on resume."""
    spec = write_spec(tmp_path, SPEC)
    path = str(tmp_path / "grace.h5")
    job = start(3, [spec, "--max-trials", 6, "--storage", path, "--grace-period", 0.3,
                    "--progress-interval", 0], env={"E2E_STEPS": "200", "E2E_STEP": "0.05"})

    wait_for(lambda: n_reporting(path) >= 2 or not job.running(), what="two trials reporting")
    assert job.running(), job.wait().describe()
    job.send(signal.SIGTERM)
    t0 = time.monotonic()
    res = job.wait(timeout=30)
    took = time.monotonic() - t0
    assert res.returncode == 75, res.describe()
    assert took < 6, f"a 0.3 s grace period took {took:.1f} s (trials last 10 s)"
    before = check_stopped_file(path, 6, "stopped by SIGTERM")
    assert (before["state"] == "interrupted").sum() >= 1
    assert (before["state"] == "complete").sum() == 0
    finish(run, spec, path, 6, before, env={"E2E_STEPS": "2"}, ranks=3)


def test_second_signal_interrupts_at_once(tmp_path, start):
    spec = write_spec(tmp_path, SPEC)
    path = str(tmp_path / "twice.h5")
    job = start(3, [spec, "--max-trials", 6, "--storage", path, "--grace-period", 30,
                    "--progress-interval", 0], env={"E2E_STEPS": "400", "E2E_STEP": "0.05"})
    # both trials must be running (a stop before they start ends the search at once, and
    # mpiexec, sent the second signal after its ranks exited, fails with exit 255)
    wait_for(lambda: n_reporting(path) >= 2 or not job.running(), what="two trials reporting")
    assert job.running(), job.wait().describe()
    t0 = time.monotonic()
    job.send(signal.SIGTERM)
    time.sleep(0.5)
    job.send(signal.SIGTERM)
    res = job.wait(timeout=40)
    took = time.monotonic() - t0
    assert res.returncode == 75, res.describe()
    assert took < 10, f"second signal: stopping took {took:.1f} s despite a 30 s grace"
    r = check_stopped_file(path, 6, "stopped by SIGTERM")
    assert (r["state"] == "interrupted").sum() >= 2  # both running trials


def test_serial_sigterm(tmp_path, start, run):
    spec = write_spec(tmp_path, SPEC)
    path = str(tmp_path / "serial.h5")
    job = start(None, [spec, "--max-trials", 500, "--storage", path, "--progress-interval", 0],
                env={"E2E_STEP": "0.01"})
    wait_for(lambda: n_complete(path) >= 5 or not job.running(), what="5 trials")
    assert job.running(), job.wait().describe()
    job.send(signal.SIGTERM)
    res = job.wait(timeout=30)
    assert res.returncode == 75, res.describe()
    before = check_stopped_file(path, 500, "stopped by SIGTERM")
    finish(run, spec, path, len(before) + 10, before, ranks=None)


def test_max_time_stops_with_75_then_resumes(tmp_path, run):
    spec = write_spec(tmp_path, SPEC)
    path = str(tmp_path / "timed.h5")
    t0 = time.monotonic()
    res = run(3, [spec, "--max-trials", 100000, "--storage", path, "--max-time", 1.0,
                  "--progress-interval", 0], env={"E2E_STEP": "0.02"})
    took = time.monotonic() - t0
    assert res.returncode == 75, res.describe()
    assert took < 20, took
    assert "time limit" in res.stdout
    before = check_stopped_file(path, 100000, "time limit")
    assert (before["state"] == "complete").sum() > 0
    finish(run, spec, path, len(before) + 12, before, ranks=3)



@pytest.mark.parametrize("ranks", [None, 3])
def test_max_time_starts_no_trial_after_the_limit(tmp_path, run, ranks):
    """Trials already queued on a worker when the time limit passes do not start: they
    are left to the next run (interrupted), and the running ones finish."""
    spec = write_spec(tmp_path, SPEC)
    path = str(tmp_path / "limit.h5")
    res = run(ranks, [spec, "--max-trials", 1000, "--storage", path, "--max-time", 2.0,
                      "--progress-interval", 0], env={"E2E_STEPS": "4", "E2E_STEP": "0.05"})
    assert res.returncode == 75, res.describe()
    with h5py.File(path, "r") as f:
        started = json.loads(f.attrs["runs"])[0]["start"]
    r = mpitune.load(path)
    ran = np.isfinite(r.trials["t_start"])
    assert ran.sum() >= 2
    assert r.trials["t_start"][ran].max() <= started + 2.0 + 0.1
    assert (r.trials["state"][~ran] == "interrupted").all()
    assert (r.trials["state"][ran] == "complete").all()

SLEEPER = '''
import os
import time
from mpitune import Integer, Real

space = {"x": Real(0.0, 1.0), "k": Integer(1, 9)}


def objective(params, trial):
    if os.environ.get("E2E_SLEEP") and trial.number == 1:
        open("started", "w").close()
        while True:  # never reports, never returns
            time.sleep(1)
    return params["x"] + params["k"]
'''


def _start_sleeper(tmp_path, start, grace: float):
    """A serial search whose trial 1 sleeps forever; returns (spec, path, job) once that
    trial runs."""
    spec = write_spec(tmp_path, SLEEPER)
    path = str(tmp_path / "sleeper.h5")
    job = start(None, [spec, "--max-trials", 3, "--storage", path, "--grace-period", grace,
                       "--progress-interval", 0], env={"E2E_SLEEP": "1"})
    wait_for(lambda: (tmp_path / "started").exists() or not job.running(),
             what="trial 1 to start")
    assert job.running(), job.wait().describe()
    return spec, path, job


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT", "SIGUSR1"])
def test_serial_signal_interrupts_a_trial_that_never_reports(tmp_path, start, run, signame):
    """Serial mode, as a worker under MPI: a trial still running when the grace period is
    over is interrupted, stored as interrupted, exit 75, and a rerun runs it again."""
    spec, path, job = _start_sleeper(tmp_path, start, grace=1)
    job.send(getattr(signal, signame))
    t0 = time.monotonic()
    res = job.wait(timeout=15)
    took = time.monotonic() - t0
    assert res.returncode == 75, res.describe()
    assert took < 5, f"a 1 s grace period took {took:.1f} s"
    before = check_stopped_file(path, 3, f"stopped by {signame}")
    assert before["state"][0] == "complete" and before["state"][1] == "interrupted"
    if signame == "SIGTERM":
        finish(run, spec, path, 3, before, ranks=None)


def test_serial_second_signal_interrupts_at_once(tmp_path, start):
    _, path, job = _start_sleeper(tmp_path, start, grace=60)
    t0 = time.monotonic()
    job.send(signal.SIGTERM)
    time.sleep(0.3)
    job.send(signal.SIGTERM)
    res = job.wait(timeout=15)
    assert res.returncode == 75, res.describe()
    assert time.monotonic() - t0 < 5
    r = check_stopped_file(path, 3, "stopped by SIGTERM")
    assert r["state"][1] == "interrupted"
