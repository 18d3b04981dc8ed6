"""End to end: resuming a search, and recovering from kill -9 of the whole job.

Resume: finished trials are kept unchanged and count toward max_trials, the sampler stream
continues where it stopped (a 50 + 50 search equals an uninterrupted 100-trial search with
the same seed), and a search whose budget is reached returns at once.

Kill -9: MPICH's hydra starts every proxy and rank in its own session, so the tests collect
the whole process tree of mpiexec and SIGKILL every process of it at once. Right after the
kill the results file must open with plain h5py and with mpitune.load; a re-run must finish
the budget exactly, without duplicated trial numbers, keeping every trial that was complete
before the kill with identical values.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time

import h5py
import numpy as np
import pytest
from conftest import run_mpi, start_mpi, wait_gone, write_spec

import mpitune

SPEC = '''
import os
import time
from mpitune import Categorical, Integer, Real

space = {"x": Real(-1.0, 1.0), "k": Integer(1, 50), "c": Categorical(["a", "b", "c"]),
         "lr": Real(1e-3, 1.0, log=True)}
SLEEP = float(os.environ.get("E2E_SLEEP", "0"))
CALLS = os.environ.get("E2E_CALLS")


def objective(params, trial):
    if CALLS:
        with open(os.path.join(CALLS, f"calls-{os.getpid()}.txt"), "a") as f:
            f.write(f"{trial.number}\\n")
    for step in range(2):
        if SLEEP:
            time.sleep(SLEEP / 2)
        trial.report(step, params["x"] * (step + 1))
    return {"value": params["x"] ** 2 + params["k"] / 100 + params["lr"],
            "half": params["x"] / 2}
'''

COLUMNS = ("number", "state", "value", "x", "k", "c", "lr", "half", "worker", "host", "gpu",
           "t_start", "t_end", "error")


def count_calls(directory) -> int:
    total = 0
    for name in os.listdir(directory):
        if name.startswith("calls-"):
            with open(os.path.join(directory, name)) as f:
                total += len(f.read().split())
    return total


def test_resume_extends_budget_and_keeps_trials(tmp_path, run):
    spec = write_spec(tmp_path, SPEC)
    calls = tmp_path / "calls"
    calls.mkdir()
    env = {"E2E_CALLS": str(calls)}
    path = str(tmp_path / "resume.h5")
    common = ["--storage", path, "--seed", 5, "--progress-interval", 0, "--sampler", "sobol"]

    res = run(4, [spec, "--max-trials", 50, *common], env=env)
    assert res.returncode == 0, res.describe()
    first = mpitune.load(path)
    assert len(first) == 50 and first.complete
    with h5py.File(path, "r") as f:
        unit50 = f["trials/unit"][...]
    assert count_calls(calls) == 50

    res = run(4, [spec, "--max-trials", 100, *common], env=env)
    assert res.returncode == 0, res.describe()
    assert "resuming 50 finished trials" in res.stdout
    second = mpitune.load(path)
    assert len(second) == 100 and second.complete
    np.testing.assert_array_equal(second["number"], np.arange(100))
    assert set(second["state"].tolist()) == {"complete"}
    for name in COLUMNS:
        np.testing.assert_array_equal(second[name][:50], first[name], err_msg=name)
    mask = second.curves["trial"] < 50
    for name in ("trial", "step", "value", "time"):
        np.testing.assert_array_equal(second.curves[name][mask], first.curves[name],
                                      err_msg=name)
    assert len(second.curves["trial"]) == 200
    assert count_calls(calls) == 100
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["trials/unit"][:50], unit50)
        runs = json.loads(f.attrs["runs"])
        assert [r["status"] for r in runs] == ["complete", "complete"]
        assert [r["resumed_trials"] for r in runs] == [0, 50]
        assert int(f.attrs["seed"]) == 5

    # the same seed without the pause proposes exactly the same 100 configurations (Sobol:
    # counter-based; a model-based sampler depends on the order results came in)
    straight = str(tmp_path / "straight.h5")
    res = run(3, [spec, "--max-trials", 100, "--storage", straight, "--seed", 5,
                  "--sampler", "sobol"])
    assert res.returncode == 0, res.describe()
    whole = mpitune.load(straight)
    for name in ("x", "k", "c", "lr", "value"):
        np.testing.assert_array_equal(whole[name], second[name], err_msg=name)

    # at the budget: returns at once, runs nothing, keeps everything
    t0 = time.monotonic()
    res = run(4, [spec, "--max-trials", 100, *common], env=env)
    elapsed = time.monotonic() - t0
    assert res.returncode == 0, res.describe()
    assert count_calls(calls) == 100, "the objective ran although the budget was reached"
    third = mpitune.load(path)
    assert len(third) == 100 and third.complete
    for name in COLUMNS:
        np.testing.assert_array_equal(third[name], second[name], err_msg=name)
    assert elapsed < 20, f"a run at its budget took {elapsed:.1f} s"

    # a smaller budget than what is stored: nothing runs, nothing is dropped, and the log
    # and status say so truly (not "100/60 trials finished")
    res = run(None, [spec, "--max-trials", 60, *common], env=env)
    assert res.returncode == 0, res.describe()
    assert "complete: 100 trials finished, budget of 60 reached (100 complete" in res.stdout
    assert "/60" not in res.stdout, res.describe()
    status = run(None, ["status", path])
    assert status.returncode == 0, status.describe()
    assert status.stdout == f"{path}: 100 trials finished, budget of 60 reached; complete\n"
    assert count_calls(calls) == 100
    fourth = mpitune.load(path)
    assert len(fourth) == 100
    np.testing.assert_array_equal(fourth["value"], second["value"])
    with h5py.File(path, "r") as f:
        assert len(json.loads(f.attrs["runs"])) == 4


def test_resume_switching_between_serial_and_mpi(tmp_path, run):
    spec = write_spec(tmp_path, SPEC)
    path = str(tmp_path / "mixed.h5")
    res = run(None, [spec, "--max-trials", 10, "--storage", path, "--seed", 9])
    assert res.returncode == 0, res.describe()
    res = run(3, [spec, "--max-trials", 25, "--storage", path])
    assert res.returncode == 0, res.describe()
    r = mpitune.load(path)
    assert len(r) == 25 and r.complete and r.seed == 9
    np.testing.assert_array_equal(r["number"], np.arange(25))
    assert set(r["worker"][:10].tolist()) == {1}  # the serial run's in-process worker
    assert set(r["worker"][10:].tolist()) <= {1, 2}


CHDIR_SPEC = """
import os
from mpitune import Real

space = {"x": Real(-1.0, 1.0)}
HOME = os.getcwd()


def objective(params, trial):
    os.chdir(os.path.join(HOME, "elsewhere"))  # e.g. a framework that changes directory
    with open(os.path.join(trial.checkpoint_dir, "state"), "w") as f:
        f.write(str(params["x"]))
    return params["x"] ** 2
"""


def test_serial_objective_that_changes_directory_keeps_results_in_place(tmp_path, run):
    """A relative --storage names the file where the run started, even after the in-process
    objective changed directory: the journal, lock, snapshots and checkpoints stay there."""
    spec = write_spec(tmp_path, CHDIR_SPEC)
    (tmp_path / "elsewhere").mkdir()
    res = run(None, [spec, "--storage", "cd.h5", "--max-trials", 10, "--snapshot-interval",
                     0.01, "--progress-interval", 0])
    assert res.returncode == 0, res.describe()
    assert os.listdir(tmp_path / "elsewhere") == []
    assert sorted(os.listdir(tmp_path)) == ["cd.h5", "cd.h5.checkpoints", "elsewhere",
                                            "spec.py"]
    r = mpitune.load(str(tmp_path / "cd.h5"))
    assert len(r) == 10 and r.complete and (r["state"] == "complete").all()
    assert sorted(os.listdir(tmp_path / "cd.h5.checkpoints")) == sorted(
        f"trial-{n}" for n in range(10))


def test_symlinked_results_file_stays_a_symlink_and_shares_its_files(tmp_path, run):
    """A run through a symlink resumes the file it points to, keeps the link, and puts the
    journal, lock and checkpoints beside the real file (where a run by its real name looks)."""
    spec = write_spec(tmp_path, CHDIR_SPEC.replace('os.chdir(os.path.join(HOME, "elsewhere"))',
                                                   "pass"))
    (tmp_path / "scratch").mkdir()
    common = [spec, "--progress-interval", 0, "--seed", 3]
    res = run(2, [*common, "--storage", "scratch/s.h5", "--max-trials", 5])
    assert res.returncode == 0, res.describe()
    os.symlink("scratch/s.h5", tmp_path / "s.h5")
    res = run(2, [*common, "--storage", "s.h5", "--max-trials", 10])
    assert res.returncode == 0, res.describe()
    assert os.path.islink(tmp_path / "s.h5")
    assert sorted(os.listdir(tmp_path)) == ["s.h5", "scratch", "spec.py"]
    r = mpitune.load(str(tmp_path / "scratch" / "s.h5"))
    assert len(r) == 10 and r.complete and (r["state"] == "complete").all()
    assert sorted(os.listdir(tmp_path / "scratch" / "s.h5.checkpoints")) == sorted(
        f"trial-{n}" for n in range(10))


def _complete_trials(r) -> dict:
    ok = np.flatnonzero(r["state"] == "complete")
    return {int(i): (float(r["value"][i]), float(r["x"][i]), int(r["k"][i]), str(r["c"][i]),
                     float(r["t_start"][i])) for i in ok}


def _n_complete(path: str) -> int:
    try:
        return int((mpitune.load(path)["state"] == "complete").sum())
    except (mpitune.StorageError, OSError):
        return 0


def _kill_runs(directory, kills: int, budget: int, seed: int):
    """Run the slow spec, SIGKILL the whole job at random moments, check the file after
    every kill, then finish the search. Returns the final Results."""
    rng = random.Random(seed)
    spec = write_spec(directory, SPEC)
    path = str(directory / "killed.h5")
    env = {"E2E_SLEEP": "0.03"}
    kept: dict = {}
    snapshot_intervals = ["10", "0.3", "0.05", "0"]
    killed = 0
    for i in range(kills):
        job = start_mpi(4, [spec, "--max-trials", budget, "--storage", path, "--seed", 1,
                            "--progress-interval", 0, "--snapshot-interval",
                            snapshot_intervals[i % len(snapshot_intervals)],
                            "--flush-interval", "0.05"], env=env, cwd=directory)
        try:
            # kill at a random moment once this run has made some progress (start-up takes
            # a variable time on a loaded machine)
            t0 = time.monotonic()
            while job.running() and _n_complete(path) < len(kept) + 3:
                assert time.monotonic() - t0 < 60, "the search made no progress"
                time.sleep(0.02)
            delay = rng.uniform(0.0, 0.8)
            time.sleep(delay)
            assert job.running(), (f"run {i} ended before the kill (seed {seed})\n"
                                   f"{job.wait().describe()}")
            if i % 2 == 0:  # every process of the job at once
                pids = job.kill_all()
                how = "every process"
            else:  # mpiexec's process group only, as `kill -9 -PGID` does: the proxy
                pids = job.tree()  # notices and kills the ranks (own sessions) itself
                os.killpg(job.pid, signal.SIGKILL)
                how = "mpiexec's process group"
            job.proc.wait()
        finally:
            job.cleanup()
        killed += 1
        where = (f"after kill {i} ({how}), {time.monotonic() - t0:.2f} s after the start "
                 f"(seed {seed})")

        # at once: a plain HDF5 reader and mpitune.load both work
        with h5py.File(path, "r") as f:
            assert f.attrs["format"] == "mpitune-results", where
            n_snap = len(f["trials/number"])
            assert set(f["trials/state"][...].tolist()) <= {
                b"complete", b"running", b"interrupted", b"failed", b"pruned"}, where
        r = mpitune.load(path)
        assert len(r) >= n_snap, where
        np.testing.assert_array_equal(r["number"], np.arange(len(r)))
        now = _complete_trials(r)
        assert len(now) > len(kept), f"no progress {where}"
        for number, row in kept.items():
            assert now.get(number) == row, f"trial {number} changed {where}"
        kept = now
        # the lock names rank 0's pid: a re-run may only start once it has left the
        # process table (see conftest.wait_gone)
        assert wait_gone(pids), f"processes of the killed job still there {where}"

    res = run_mpi(4, [spec, "--max-trials", budget, "--storage", path,
                      "--progress-interval", 0], env=env, timeout=90, cwd=directory)
    assert res.returncode == 0, res.describe()
    final = mpitune.load(path)
    assert len(final) == budget, f"{len(final)} trials for a budget of {budget}"
    np.testing.assert_array_equal(final["number"], np.arange(budget))
    assert set(final["state"].tolist()) == {"complete"}
    assert final.complete
    # the whole configuration: the model-based default may put one parameter on a bound
    # (x = 1.0) in two trials, which the CI saw once
    configs = list(zip(*(final[name].tolist() for name in ("x", "k", "c", "lr"))))
    repeated = sorted({c for c in configs if configs.count(c) > 1})
    assert not repeated, f"configurations run twice: {repeated}"
    done = _complete_trials(final)
    for number, row in kept.items():
        assert done[number] == row, f"trial {number} changed after the re-run"
    assert not os.path.exists(path + ".journal") and not os.path.exists(path + ".lock")
    assert not [f for f in os.listdir(directory) if ".tmp-" in f]
    with h5py.File(path, "r") as f:
        runs = json.loads(f.attrs["runs"])
    assert len(runs) == killed + 1
    assert all(run_["end"] is None for run_ in runs[:-1])
    assert runs[-1]["status"] == "complete"
    return final


@pytest.fixture(scope="module")
def killed_search(tmp_path_factory):
    """One search killed with SIGKILL at 3 random moments, then finished."""
    seed = int(os.environ.get("E2E_KILL_SEED", random.randrange(10**6)))
    return _kill_runs(tmp_path_factory.mktemp("killed"), kills=3, budget=300, seed=seed)


def test_kill_whole_job_then_resume(killed_search):
    assert len(killed_search) == 300


def test_rerun_trial_keeps_both_curves_and_ends_with_a_full_one(killed_search):
    """Documented (README, "The results file"): a trial interrupted and run again has the
    curve points of both attempts. The attempt that completed it reported last, so in
    arrival order every trial's curve ends with its full curve, steps 0 then 1."""
    r = killed_search
    trials, steps, times = r.curves["trial"], r.curves["step"], r.curves["time"]
    counts = np.bincount(trials, minlength=len(r))
    assert (counts >= 2).all(), np.flatnonzero(counts < 2)[:10]
    assert (counts == 2).sum() >= len(r) - 4 * 3 * 2  # at most a few trials per kill re-ran
    for number in np.flatnonzero(counts > 2):
        mine = trials == number
        assert steps[mine][-2:].tolist() == [0.0, 1.0], (number, steps[mine])
        t = times[mine]
        assert t[-2] >= r["t_start"][number] - 1e-3, (number, t, r["t_start"][number])


def test_worker_crash_ends_job_and_search_resumes(tmp_path, run):
    """A worker that dies (os._exit in the objective) ends the whole job fast (MPI cannot
    survive it); the file stays readable and a re-run finishes the budget."""
    spec = write_spec(tmp_path, SPEC.replace(
        "    for step in range(2):",
        "    if trial.number == 25 and os.environ.get('E2E_CRASH'):\n"
        "        os._exit(7)\n"
        "    for step in range(2):"))
    path = str(tmp_path / "crash.h5")
    res = run(4, [spec, "--max-trials", 120, "--storage", path, "--progress-interval", 0],
              env={"E2E_CRASH": "1", "E2E_SLEEP": "0.01"}, timeout=60)
    assert res.returncode != 0, res.describe()
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == "mpitune-results"
    r = mpitune.load(path)
    before = _complete_trials(r)
    assert 25 not in before
    res = run(4, [spec, "--max-trials", 120, "--storage", path, "--progress-interval", 0],
              env={"E2E_SLEEP": "0.01"}, timeout=60)
    assert res.returncode == 0, res.describe()
    final = mpitune.load(path)
    assert len(final) == 120 and set(final["state"].tolist()) == {"complete"}
    np.testing.assert_array_equal(final["number"], np.arange(120))
    after = _complete_trials(final)
    for number, row in before.items():
        assert after[number] == row


def _poll_during_run(tmp_path, start, name: str, budget: int = 400, max_loads: int = 100000):
    """Run a search that snapshots as often as it can and read the file in a loop until it
    ends. Returns (reads, list of trial counts that each mpitune.load saw)."""
    spec = write_spec(tmp_path, SPEC)
    path = str(tmp_path / name)
    job = start(4, [spec, "--max-trials", budget, "--storage", path, "--snapshot-interval", 0,
                    "--progress-interval", 0], env={"E2E_SLEEP": "0.02"})
    reads, seen = 0, []
    deadline = time.monotonic() + 60
    while job.running() and time.monotonic() < deadline and len(seen) < max_loads:
        if not os.path.exists(path):
            time.sleep(0.005)
            continue
        with h5py.File(path, "r") as f:
            n = len(f["trials/number"])
            assert len(f["trials/state"]) == n == int(f.attrs["n_trials"])
            assert f["trials/unit"].shape[0] == n
        reads += 1
        r = mpitune.load(path)
        np.testing.assert_array_equal(r["number"], np.arange(len(r)))
        seen.append(len(r))
    res = job.wait(30)
    assert res.returncode == 0, res.describe()
    final = mpitune.load(path)
    assert len(final) == budget and final.complete
    with h5py.File(path, "r") as f:
        assert int(json.loads(f.attrs["runs"])[-1]["snapshots"]) >= 2
    return reads, seen


def test_file_always_readable_during_a_run(tmp_path, start):
    """Snapshots replace the file atomically: plain h5py and mpitune.load succeed at every
    moment of a run that snapshots as often as it can."""
    reads, seen = _poll_during_run(tmp_path, start, "live.h5", budget=200, max_loads=300)
    assert reads >= 5 and len(seen) >= 5, (reads, seen)


class LoadWentBack(AssertionError):
    pass


def test_load_during_a_run_never_goes_back(tmp_path, start):
    """README: mpitune.load 'sees the very latest trials during a run'. A later load must
    never return fewer trials than an earlier one."""
    for attempt in range(3):  # a race: a few searches make a false pass very unlikely
        reads, seen = _poll_during_run(tmp_path, start, f"mono{attempt}.h5")
        drops = [(a, b) for a, b in zip(seen, seen[1:]) if b < a]
        if drops:
            break
    if drops:
        raise LoadWentBack(f"{len(drops)} of {len(seen)} loads returned fewer trials than "
                           f"the load before, e.g. {drops[:5]}")
