"""End to end: ``mpitune.run`` from a user's script under mpiexec, and
``python -m mpitune show``."""

from __future__ import annotations

import json
import os
import re
import subprocess

import numpy as np
import pytest
from conftest import PYTHON, error_lines, write_spec

import mpitune

SCRIPT = '''
import json
import sys

from mpi4py import MPI

import mpitune
from mpitune import Categorical, Integer, Real

SPACE = {"x": Real(-3.0, 3.0), "n": Integer(1, 10), "c": Categorical(["a", "b"]), "k": 5}


def objective(params, trial):
    assert params["k"] == 5
    trial.report(0, params["x"])
    return {"value": (params["x"] - 1.0) ** 2 + 0.01 * params["n"], "twice": 2 * params["x"]}


def say(**info):
    sys.stdout.write("RESULT " + json.dumps(info) + "\\n")  # one write: whole lines
    sys.stdout.flush()


def describe(r, rank, label):
    if r is None:
        say(label=label, rank=rank, type="None")
    else:
        say(label=label, rank=rank, type=type(r).__name__, n=len(r), status=r.status,
            complete=r.complete, best=r.best["number"], value=r.best["value"],
            params=r.best["params"], values=r["value"].tolist())


mode, storage = sys.argv[1], sys.argv[2]
world = MPI.COMM_WORLD
if mode == "plain":
    r = mpitune.run(objective, SPACE, max_trials=int(sys.argv[3]), storage=storage,
                    progress_interval=0, seed=4)
    describe(r, world.rank, "plain")
elif mode == "twice":  # a second search in the same processes resumes the first
    r = mpitune.run(objective, SPACE, max_trials=10, storage=storage, seed=4)
    describe(r, world.rank, "first")
    r = mpitune.run(objective, SPACE, max_trials=25, storage=storage)
    describe(r, world.rank, "second")
elif mode == "split":  # two searches side by side on sub-communicators
    color = 0 if world.rank < 3 else 1
    sub = world.Split(color, world.rank)
    r = mpitune.run(objective, SPACE, comm=sub, max_trials=15 + 5 * color,
                    storage=f"{storage}.{color}.h5", seed=color)
    describe(r, world.rank, f"group{color}")
    sub.Free()
elif mode == "bad":
    try:
        r = mpitune.run(objective, SPACE, max_trials=-1, storage=storage)
    except mpitune.SpecError as e:
        say(label="caught", rank=world.rank, type="SpecError", message=str(e))
    else:
        describe(r, world.rank, "bad")
'''


def results_of(res) -> list[dict]:
    return [json.loads(line[len("RESULT "):]) for line in res.stdout.splitlines()
            if line.startswith("RESULT ")]


@pytest.mark.parametrize("ranks", [3, None])
def test_run_from_script(tmp_path, run, ranks):
    script = write_spec(tmp_path, SCRIPT, "search.py")
    res = run(ranks, [script, "plain", "script.h5", 30], module=False)
    assert res.returncode == 0, res.describe()
    out = sorted(results_of(res), key=lambda x: x["rank"])
    assert len(out) == (ranks or 1), res.describe()
    head, workers = out[0], out[1:]
    assert head["rank"] == 0 and head["type"] == "Results"
    assert head["n"] == 30 and head["status"] == "complete" and head["complete"] is True
    assert head["params"]["k"] == 5
    assert all(w["type"] == "None" for w in workers)
    r = mpitune.load(str(tmp_path / "script.h5"))
    assert len(r) == 30 and r.complete
    np.testing.assert_array_equal(r["value"], head["values"])
    assert r.best["number"] == head["best"]
    np.testing.assert_allclose(r["twice"], 2 * r["x"])
    assert len(r.curves["trial"]) == 30


def test_run_twice_in_one_script_resumes(tmp_path, run):
    script = write_spec(tmp_path, SCRIPT, "search.py")
    res = run(3, [script, "twice", "twice.h5"], module=False)
    assert res.returncode == 0, res.describe()
    out = results_of(res)
    first = [o for o in out if o["label"] == "first" and o["rank"] == 0][0]
    second = [o for o in out if o["label"] == "second" and o["rank"] == 0][0]
    assert first["n"] == 10 and second["n"] == 25
    assert second["values"][:10] == first["values"]
    assert sorted(o["type"] for o in out if o["rank"] != 0) == ["None"] * 4


def test_run_on_sub_communicators(tmp_path, run):
    script = write_spec(tmp_path, SCRIPT, "search.py")
    res = run(5, [script, "split", "split"], module=False)
    assert res.returncode == 0, res.describe()
    out = {o["rank"]: o for o in results_of(res)}
    assert sorted(out) == [0, 1, 2, 3, 4]
    assert out[0]["type"] == "Results" and out[0]["n"] == 15  # rank 0 of group 0
    assert out[3]["type"] == "Results" and out[3]["n"] == 20  # rank 0 of group 1
    assert {out[r]["type"] for r in (1, 2, 4)} == {"None"}
    a = mpitune.load(str(tmp_path / "split.0.h5"))
    b = mpitune.load(str(tmp_path / "split.1.h5"))
    assert len(a) == 15 and len(b) == 20 and a.complete and b.complete
    assert set(a["worker"].tolist()) <= {1, 2} and set(b["worker"].tolist()) == {1}


def test_run_bad_setting(tmp_path, run):
    script = write_spec(tmp_path, SCRIPT, "search.py")
    # serially: a catchable SpecError
    res = run(None, [script, "bad", "bad.h5"], module=False)
    assert res.returncode == 0, res.describe()
    out = results_of(res)
    assert out and out[0]["type"] == "SpecError" and "max_trials" in out[0]["message"]
    # under MPI: one error line from rank 0 and exit status 2, no hang
    res = run(3, [script, "bad", "bad.h5"], module=False, timeout=30)
    assert res.returncode == 2, res.describe()
    lines = error_lines(res.stderr)
    assert len(lines) == 1 and "max_trials" in lines[0], res.describe()
    assert not (tmp_path / "bad.h5").exists()


SHOW_SPEC = '''
from mpitune import Categorical, Integer, Real

space = {"x": Real(-1.0, 1.0), "n": Integer(1, 4), "c": Categorical(["p", "q"])}


def objective(params, trial):
    if params["n"] == 4 and params["c"] == "q":
        raise ValueError("n=4 with q is not allowed")
    return params["x"] + params["n"]
'''


def trial_lines(stdout: str) -> list[tuple[int, float]]:
    return [(int(m.group(1)), float(m.group(2)))
            for m in re.finditer(r"^\s+trial\s+(\d+)\s+value\s+(\S+)", stdout, re.M)]


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_show_prints_the_best_trials(tmp_path, run, direction):
    spec = write_spec(tmp_path, SHOW_SPEC)
    res = run(3, [spec, "--max-trials", 40, "--storage", "r.h5", "--seed", 2,
                  "--direction", direction])
    assert res.returncode == 0, res.describe()
    r = mpitune.load(str(tmp_path / "r.h5"))
    best = r.best
    show = run(None, ["show", "r.h5"])
    assert show.returncode == 0, show.describe()
    out = show.stdout
    counts = f"{(r['state'] == 'complete').sum()} complete"
    assert "r.h5" in out and "40 trials" in out and counts in out
    assert f"direction: {direction}" in out and "search complete" in out
    assert f"seed: {r.seed}" in out
    lines = trial_lines(out)
    assert len(lines) == 10
    assert lines[0][0] == best["number"]
    assert lines[0][1] == pytest.approx(best["value"], rel=1e-7)
    values = [v for _, v in lines]
    assert values == sorted(values, reverse=direction == "maximize")
    first = out[out.index(f"trial {best['number']:6d}"):].splitlines()[0]
    assert f"c='{best['params']['c']}'" in first and f"n={best['params']['n']}" in first
    failed = int((r["state"] == "failed").sum())
    if failed:
        assert f"{failed} failed" in out and "n=4 with q is not allowed" in out

    top = run(None, ["show", "r.h5", "--top", "3"])
    assert top.returncode == 0 and len(trial_lines(top.stdout)) == 3


def test_show_errors(tmp_path, run):
    res = run(None, ["show", "absent.h5"])
    assert res.returncode == 3, res.describe()
    lines = error_lines(res.stderr)
    assert len(lines) == 1 and "absent.h5" in lines[0]
    res = run(None, ["show", str(tmp_path)])  # HDF5's own message spans two lines
    assert res.returncode == 3 and res.stderr.count("\n") == 1, res.describe()
    assert error_lines(res.stderr) and "Is a directory" in res.stderr, res.describe()
    res = run(None, ["show"])
    assert res.returncode != 0


def test_show_into_a_closed_pipe_ends_quietly(tmp_path, run):
    """``show ... | head``: the reader leaves early, which is no results-file problem."""
    spec = write_spec(tmp_path, SHOW_SPEC)
    assert run(None, [spec, "--max-trials", 12, "--storage", "r.h5"]).returncode == 0
    proc = subprocess.Popen([PYTHON, "-m", "mpitune", "show", "r.h5"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # nobody reads: the first write meets a closed pipe
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and err == b"", (proc.returncode, err)


UNICODE_SPEC = """
from mpitune import Real

space = {"λ": Real(0.0, 1.0), "é": Real(0.0, 1.0)}


def objective(params, trial):
    return params["λ"] + params["é"]
"""


def test_log_lines_never_stop_a_search(tmp_path, run):
    """Parameter names the locale cannot print are escaped, not fatal; a reader that goes
    away (``| head -1``) leaves the search running to the end, not killed by a traceback."""
    spec = write_spec(tmp_path, UNICODE_SPEC)
    res = run(None, [spec, "--max-trials", 6, "--storage", "u.h5"],
              env={"PYTHONIOENCODING": "ascii"})
    assert res.returncode == 0 and "\\u03bb=" in res.stdout, res.describe()
    show = run(None, ["show", "u.h5"], env={"PYTHONIOENCODING": "ascii"})
    assert show.returncode == 0 and "\\xe9=" in show.stdout, show.describe()
    proc = subprocess.Popen([PYTHON, "-m", "mpitune", spec, "--max-trials", "30",
                             "--storage", "closed.h5", "--progress-interval", "0.01"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    r = mpitune.load(str(tmp_path / "closed.h5"))
    assert r.complete and len(r) == 30
    top = run(None, ["show", "u.h5", "--top", "-1"])
    assert top.returncode == 2 and "--top" in top.stderr, top.describe()


def test_extreme_but_valid_settings_run(tmp_path, run):
    """Accepted settings at their limits run to the end (queue_ahead 1e308 once made rank 0
    overflow computing the queue length, after the results file was opened)."""
    spec = write_spec(tmp_path, UNICODE_SPEC)
    res = run(None, [spec, "--max-trials", 8, "--storage", "x.h5", "--queue-ahead", "1e308",
                     "--trial-timeout", "1e9", "--pruner", "asha", "--reduction-factor",
                     1000])
    assert res.returncode == 0, res.describe()
    assert mpitune.load(str(tmp_path / "x.h5")).complete


PARTIAL = """
import sys

from mpi4py import MPI

import mpitune
from mpitune import Real

rank = MPI.COMM_WORLD.rank
if (sys.argv[1] == "rank0") == (rank == 0):  # only rank 0, or every rank but 0
    mpitune.run(lambda params, trial: params["x"], {"x": Real(0.0, 1.0)}, max_trials=4,
                storage="partial.h5")
print("rank", rank, "done", flush=True)
"""


@pytest.mark.parametrize("who", ["rank0", "workers"])
def test_run_called_on_only_some_ranks_ends_the_job_with_a_reason(tmp_path, run, who):
    """It used to wait for ever (in the communicator's Dup, a collective)."""
    script = write_spec(tmp_path, PARTIAL, "partial.py")
    res = run(3, [script, who], module=False, env={"MPITUNE_STARTUP_TIMEOUT": "2"},
              timeout=40)
    assert res.returncode != 0 and res.elapsed < 30, res.describe()
    lines = error_lines(res.stderr)
    assert len(lines) == 1 and "MPITUNE_STARTUP_TIMEOUT" in lines[0], res.describe()
    assert not (tmp_path / "partial.h5").exists()


TYPED_BOUNDS = """
import json

import numpy as np

import mpitune
from mpitune import Real

seen = []


def objective(params, trial):
    seen.append(params["v"])
    return params["v"]


mpitune.run(objective, {"v": Real(np.float16(0), np.float32(1))}, max_trials=8,
            storage="typed.h5", progress_interval=0, sampler="random", seed=3)
print("SEEN " + json.dumps(seen), flush=True)
"""


def test_numpy_typed_bounds_reach_the_objective_as_stored(tmp_path, run):
    """The objective gets exactly the values the results file holds (it got values rounded
    to float16 from float16 bounds, e.g. 0.09 for the stored 0.0856)."""
    script = write_spec(tmp_path, TYPED_BOUNDS, "typed.py")
    res = run(None, [script], module=False)
    assert res.returncode == 0, res.describe()
    seen = json.loads(res.stdout.split("SEEN ", 1)[1])
    assert seen == mpitune.load(str(tmp_path / "typed.h5"))["v"].tolist()
    assert len(set(seen)) == 8


IN_A_THREAD = """
import threading

import mpitune
from mpitune import Real

out = {}


def search():
    try:
        out["r"] = mpitune.run(lambda params: params["x"] ** 2, {"x": Real(-1.0, 1.0)},
                               max_trials=5, storage="thread.h5", progress_interval=0)
    except BaseException as e:
        out["r"] = f"{type(e).__name__}: {e}"


thread = threading.Thread(target=search, name="searcher")
thread.start()
thread.join()
print("OUT", out["r"], flush=True)
"""


@pytest.mark.parametrize("ranks", [None, 2])
def test_run_from_a_thread_that_is_not_the_main_one(tmp_path, run, ranks):
    """Python sets signal handlers only in the main thread: the search runs without them,
    saying so once, instead of failing with "signal only works in main thread" and
    leaving the journal and lock behind."""
    script = write_spec(tmp_path, IN_A_THREAD, "threaded.py")
    res = run(ranks, [script], module=False)
    assert res.returncode == 0, res.describe()
    where = os.path.realpath(tmp_path / "thread.h5")
    assert f"OUT Results('{where}': 5 trials (5 complete))" in res.stdout, res.describe()
    said = [line for line in res.stderr.splitlines() + res.stdout.splitlines()
            if "stop signals (SIGTERM, SIGINT, SIGUSR1) are not handled" in line]
    assert len(said) == 1 and "'searcher'" in said[0], res.describe()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thread.h5", "threaded.py"]


CHANGES_DIRECTORY = """
import os

import mpitune
from mpitune import Real


def objective(params):
    os.chdir("elsewhere")  # once: a framework that changes directory
    return params["x"] ** 2


r = mpitune.run(objective, {"x": Real(-1.0, 1.0)}, max_trials=3, storage="cd.h5",
                progress_interval=0)
if r is not None:
    print("PATH", r.path, len(mpitune.load(r.path)), flush=True)
"""


def test_results_of_run_name_the_file_after_the_objective_changed_directory(tmp_path, run):
    """Serially the objective runs in this process: a chdir there must not leave
    ``Results.path`` naming a file that is not there (it is the absolute name)."""
    script = write_spec(tmp_path, CHANGES_DIRECTORY.replace('"elsewhere"', repr(
        str(tmp_path / "elsewhere"))), "cd_script.py")
    (tmp_path / "elsewhere").mkdir()
    res = run(None, [script], module=False)
    assert res.returncode == 0, res.describe()
    assert f"PATH {os.path.realpath(tmp_path / 'cd.h5')} 3" in res.stdout, res.describe()


def test_api_refuses_wrong_argument_types_in_one_line():
    for path in (None, 5):
        with pytest.raises(TypeError, match="mpitune.load: path must be a file name"):
            mpitune.load(path)
    with pytest.raises(mpitune.SpecError, match="comm must be an mpi4py intracommunicator"):
        mpitune.run(lambda params, trial: 0.0, {"x": mpitune.Real(0.0, 1.0)}, comm="world")


def test_api_refuses_a_null_communicator_in_one_line(tmp_path, monkeypatch):
    """A rank left out of a Split gets an Intracomm equal to MPI.COMM_NULL: refused like
    other bad comm values, instead of MPI's raw "Null communicator" exception."""
    from mpi4py import MPI

    monkeypatch.chdir(tmp_path)
    left_out = MPI.COMM_WORLD.Split(MPI.UNDEFINED, 0)
    assert isinstance(left_out, MPI.Intracomm) and left_out == MPI.COMM_NULL
    for comm in (left_out, MPI.COMM_NULL):
        with pytest.raises(mpitune.SpecError, match="comm must be an mpi4py intracommunicator"
                           ".*COMM_NULL") as info:
            mpitune.run(lambda params: 0.0, {"x": mpitune.Real(0.0, 1.0)}, comm=comm,
                        storage="null.h5")
        assert "\n" not in str(info.value)
    assert os.listdir(tmp_path) == []


def test_status_says_whether_to_continue(tmp_path, run):
    spec = write_spec(tmp_path, SHOW_SPEC)
    assert run(3, [spec, "--max-trials", 10, "--storage", "s.h5"]).returncode == 0
    done = run(None, ["status", "s.h5"])
    assert done.returncode == 0 and "10/10" in done.stdout and "complete" in done.stdout
    # status reads the budget stored by the last run: extend the search, stopped early
    res = run(3, [spec, "--max-trials", 10_000_000, "--max-time", 0.3, "--storage", "s.h5"])
    assert res.returncode == 75, res.describe()
    partial = run(None, ["status", "s.h5"])
    assert partial.returncode == 75 and "not complete" in partial.stdout, partial.describe()
    missing = run(None, ["status", "absent.h5"])
    assert missing.returncode == 3 and "absent.h5" in missing.stderr


LEAN_SPEC = """
import sys
from mpitune import Real
space = {"x": Real(0, 1)}
def objective(params, trial):
    heavy = [m for m in ("numpy", "scipy", "h5py") if m in sys.modules]
    return {"value": params["x"], "heavy": float(len(heavy))}
"""


def test_workers_do_not_import_numpy_scipy_or_h5py(tmp_path, run):
    """Rank 0 needs numpy, scipy and h5py; workers only run the objective (imports cost
    throughput and, at scale, hit the parallel file system)."""
    spec = write_spec(tmp_path, LEAN_SPEC)
    res = run(3, [spec, "--max-trials", 12, "--storage", "lean.h5"])
    assert res.returncode == 0, res.describe()
    r = mpitune.load(str(tmp_path / "lean.h5"))
    assert (r["state"] == "complete").all() and (r["heavy"] == 0).all()
