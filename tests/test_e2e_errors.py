"""End to end: bad inputs. Each must end the whole job within seconds (no rank left
waiting), with a non-zero exit status (2: spec, space or setting; 3: results file), one
``mpitune: error:`` line on stderr naming the problem, and an existing results file left
byte-identical (no journal, lock or temporary file left beside it either).

Every case runs under ``mpiexec -n 3``; a subset also serially.
"""

from __future__ import annotations

import json
import os
import shutil
import time

import h5py
import numpy as np
import pytest
from conftest import error_lines, run_mpi, write_spec

import mpitune

GOOD = '''
from mpitune import Integer, Real

space = {"x": Real(0.0, 1.0), "n": Integer(1, 5)}


def objective(params, trial):
    return params["x"] + params["n"]
'''


def spec_with(space: str = '{"x": Real(0.0, 1.0), "n": Integer(1, 5)}', extra: str = "",
              objective: str = "def objective(params, trial):\n    return params['x']\n"):
    return (f"from mpitune import Categorical, Constant, Integer, Real\n{extra}\n"
            f"space = {space}\n\n{objective}")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """The bytes of a valid results file of GOOD with 6 trials."""
    d = tmp_path_factory.mktemp("pristine")
    spec = write_spec(d, GOOD)
    res = run_mpi(None, [spec, "--max-trials", 6, "--storage", "good.h5", "--seed", 1], cwd=d)
    assert res.returncode == 0, res.describe()
    return (d / "good.h5").read_bytes()


# id, spec text (None: no spec file written), extra args, exit status, words in the message
SPEC_CASES = [
    ("missing_spec", None, [], 2, ["missing.py", "not found"]),
    ("syntax_error", "from mpitune import Real\nspace = {'x': Real(0, 1)\ndef objective(p, t):\n"
                     "    return 1\n", [], 2, ["spec.py", "line"]),
    ("no_objective", "from mpitune import Real\nspace = {'x': Real(0, 1)}\n", [], 2,
     ["defines no objective"]),
    ("no_space", "def objective(params, trial):\n    return 1.0\n", [], 2, ["defines no space"]),
    ("objective_three_args", spec_with(objective="def objective(a, b, c):\n    return 1.0\n"),
     [], 2, ["objective", "(a, b, c)"]),
    ("objective_not_callable", spec_with(objective="objective = 3\n"), [], 2,
     ["objective must be a function"]),
    ("import_error", "import no_such_module_e2e\n" + GOOD, [], 2, ["no_such_module_e2e"]),
    ("raises_at_import", spec_with(extra="raise RuntimeError('bad config e2e')"), [], 2,
     ["bad config e2e", "line"]),
    ("real_low_ge_high", spec_with('{"x": Real(1.0, 1.0)}'), [], 2,
     ["'x'", "low must be < high"]),
    ("integer_low_ge_high", spec_with('{"x": Real(0.0, 1.0), "n": Integer(5, 2)}'), [], 2,
     ["'n'", "low must be < high"]),
    ("real_log_low_zero", spec_with('{"x": Real(0.0, 1.0, log=True)}'), [], 2,
     ["'x'", "log", "low > 0"]),
    ("integer_log_low_zero", spec_with('{"n": Integer(0, 10, log=True)}'), [], 2,
     ["'n'", "log"]),
    ("real_nan_bound", spec_with('{"x": Real(0.0, float("nan"))}'), [], 2, ["'x'", "finite"]),
    ("empty_categorical", spec_with('{"c": Categorical([])}'), [], 2,
     ["'c'", "at least one choice"]),
    ("duplicate_choices", spec_with('{"c": Categorical(["a", "a"])}'), [], 2,
     ["'c'", "distinct"]),
    ("unknown_dimension_object", spec_with('{"x": Thing()}', extra="class Thing:\n    pass\n"),
     [], 2, ["'x'", "neither a dimension"]),
    ("dimension_class_not_called", spec_with('{"x": Real}'), [], 2, ["'x'", "Real(...)"]),
    ("reserved_name", spec_with('{"value": Real(0.0, 1.0)}'), [], 2, ["'value'", "reserved"]),
    ("bad_name", spec_with('{"my-x": Real(0.0, 1.0)}'), [], 2, ["'my-x'"]),
    ("space_not_a_dict", spec_with('[Real(0.0, 1.0)]'), [], 2, ["space", "dict"]),
    ("max_trials_negative", GOOD, ["--max-trials", "-1"], 2, ["max_trials", "-1"]),
    ("max_trials_not_int", GOOD, ["--max-trials", "ten"], 2, ["--max-trials", "ten"]),
    ("max_trials_str_in_spec", GOOD + "max_trials = '10'\n", [], 2, ["max_trials", "'10'"]),
    ("sampler_unknown", GOOD, ["--sampler", "nope"], 2, ["sampler", "nope"]),
    ("sampler_not_sampler_in_spec", GOOD + "sampler = 3\n", [], 2, ["sampler", "3"]),
    ("grid_of_a_huge_integer", spec_with('{"x": Real(0.0, 1.0), "n": Integer(0, 2**45)}'),
     ["--sampler", "grid"], 2, ["'n'", "35184372088833 values", "values="]),
    ("direction_in_spec", GOOD + "direction = 'up'\n", [], 2, ["direction", "'up'"]),
    ("direction_on_cli", GOOD, ["--direction", "up"], 2, ["direction", "up"]),
    ("unknown_option", GOOD, ["--max-trails", "5"], 2, ["--max-trails"]),
    ("grace_negative", GOOD, ["--grace-period", "-1"], 2, ["grace_period"]),
    ("max_time_zero", GOOD, ["--max-time", "0"], 2, ["max_time"]),
    ("seed_negative", GOOD, ["--seed", "-3"], 2, ["seed"]),
    ("trial_timeout_negative", GOOD, ["--trial-timeout", "-1"], 2, ["trial_timeout"]),
    # resuming the existing file with another space or direction
    ("resume_changed_bounds", spec_with('{"x": Real(0.0, 2.0), "n": Integer(1, 5)}'), [], 2,
     ["'x'", "changed", "good.h5"]),
    ("resume_added_param", spec_with('{"x": Real(0.0, 1.0), "n": Integer(1, 5), '
                                     '"y": Real(0.0, 1.0)}'), [], 2, ["'y'", "added"]),
    ("resume_removed_param", spec_with('{"x": Real(0.0, 1.0)}'), [], 2, ["'n'", "removed"]),
    ("resume_changed_type", spec_with('{"x": Real(0.0, 1.0), "n": Real(1.0, 5.0)}'), [], 2,
     ["'n'", "changed"]),
    ("resume_added_constant", spec_with('{"x": Real(0.0, 1.0), "n": Integer(1, 5), '
                                        '"epochs": 3}'), [], 2, ["'epochs'"]),
    ("resume_reordered", spec_with('{"n": Integer(1, 5), "x": Real(0.0, 1.0)}'), [], 2,
     ["order"]),
    ("resume_other_direction", GOOD, ["--direction", "maximize"], 2,
     ["minimize", "maximize"]),
]

SERIAL_TOO = {"missing_spec", "syntax_error", "no_objective", "objective_three_args",
              "real_low_ge_high", "unknown_dimension_object", "max_trials_negative",
              "sampler_unknown", "direction_in_spec", "resume_changed_bounds"}
SPEC_PARAMS = [pytest.param(*case, ranks, id=f"{case[0]}-{'serial' if ranks is None else 'mpi3'}")
               for case in SPEC_CASES
               for ranks in ((3, None) if case[0] in SERIAL_TOO else (3,))]


def check_refused(res, rc, words, timeout_s=30):
    assert res.returncode == rc, res.describe()
    lines = error_lines(res.stderr)
    assert len(lines) == 1, f"expected one error line\n{res.describe()}"
    for word in words:
        assert word in lines[0], f"{word!r} not in {lines[0]!r}"
    other = [x for x in res.stderr.splitlines() if x.strip() and x not in lines]
    assert not other, f"more than the one error line on stderr\n{res.describe()}"
    assert "Traceback" not in res.stdout + res.stderr
    assert res.elapsed < timeout_s


def check_untouched(directory, name: str, before: bytes):
    path = os.path.join(directory, name)
    with open(path, "rb") as f:
        assert f.read() == before, f"{name} was modified"
    for suffix in (".journal", ".lock"):
        assert not os.path.exists(path + suffix), f"{name}{suffix} left behind"
    assert not [f for f in os.listdir(directory) if ".tmp-" in f]


@pytest.mark.parametrize("case, text, args, rc, words, ranks", SPEC_PARAMS)
def test_bad_spec_or_setting_is_refused(tmp_path, run, pristine, case, text, args, rc, words,
                                        ranks):
    (tmp_path / "good.h5").write_bytes(pristine)
    spec = "missing.py" if text is None else write_spec(tmp_path, text)
    res = run(ranks, [spec, "--storage", "good.h5", *args], timeout=30)
    check_refused(res, rc, words)
    check_untouched(tmp_path, "good.h5", pristine)


def foreign_hdf5(path):
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=np.arange(10))
        f.attrs["creator"] = "another program"


def newer_format(path, pristine):
    with open(path, "wb") as f:
        f.write(pristine)
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = 99


STORAGE_CASES = [
    ("random_bytes", lambda p, g: open(p, "wb").write(os.urandom(4096)),
     ["cannot be read as HDF5"]),
    ("empty_file", lambda p, g: open(p, "wb").close(), ["cannot be read as HDF5"]),
    ("foreign_hdf5", lambda p, g: foreign_hdf5(p), ["not an mpitune results file"]),
    ("newer_format", newer_format, ["format version 99"]),
]


@pytest.mark.parametrize("ranks", [3, None], ids=["mpi3", "serial"])
@pytest.mark.parametrize("case, make, words", STORAGE_CASES, ids=[c[0] for c in STORAGE_CASES])
def test_bad_results_file_is_refused_and_untouched(tmp_path, run, pristine, case, make, words,
                                                   ranks):
    spec = write_spec(tmp_path, GOOD)
    path = str(tmp_path / "r.h5")
    make(path, pristine)
    before = open(path, "rb").read()
    res = run(ranks, [spec, "--storage", "r.h5"], timeout=30)
    check_refused(res, 3, words + ["r.h5"])
    check_untouched(tmp_path, "r.h5", before)
    show = run(None, ["show", "r.h5"])
    assert show.returncode == 3 and len(error_lines(show.stderr)) == 1, show.describe()
    check_untouched(tmp_path, "r.h5", before)


def test_damaged_journal_is_refused_and_both_files_untouched(tmp_path, run, pristine):
    spec = write_spec(tmp_path, GOOD)
    (tmp_path / "good.h5").write_bytes(pristine)
    journal = b'{"k":"X","q":1}\nnot json at all\n{"k":"C","q":3}\n'
    (tmp_path / "good.h5.journal").write_bytes(journal)
    res = run(3, [spec, "--storage", "good.h5"], timeout=30)
    check_refused(res, 3, ["journal", "good.h5"])
    assert (tmp_path / "good.h5").read_bytes() == pristine
    assert (tmp_path / "good.h5.journal").read_bytes() == journal
    assert not (tmp_path / "good.h5.lock").exists()


def test_journal_without_results_file_is_refused(tmp_path, run):
    spec = write_spec(tmp_path, GOOD)
    (tmp_path / "gone.h5.journal").write_bytes(b'{"k":"C","n":[],"st":[],"v":[],"t":[],"q":1}\n')
    res = run(3, [spec, "--storage", "gone.h5"], timeout=30)
    check_refused(res, 3, ["gone.h5"])
    assert not (tmp_path / "gone.h5").exists()


@pytest.mark.parametrize("ranks", [3, None], ids=["mpi3", "serial"])
def test_storage_directory_missing(tmp_path, run, ranks):
    spec = write_spec(tmp_path, GOOD)
    res = run(ranks, [spec, "--storage", str(tmp_path / "nodir" / "r.h5")], timeout=30)
    check_refused(res, 3, ["nodir", "does not exist"])
    assert not (tmp_path / "nodir").exists()


def test_storage_is_a_directory(tmp_path, run):
    spec = write_spec(tmp_path, GOOD)
    (tmp_path / "adir").mkdir()
    res = run(3, [spec, "--storage", "adir"], timeout=30)
    check_refused(res, 3, ["adir", "directory"])
    assert os.listdir(tmp_path / "adir") == []


def test_missing_spec_path_is_named_serial_and_mpi(tmp_path, run):
    for ranks in (None, 1, 3):
        res = run(ranks, [str(tmp_path / "nowhere" / "spec.py")], timeout=30)
        check_refused(res, 2, ["nowhere/spec.py"])
    assert not (tmp_path / "results.h5").exists()


def test_second_concurrent_run_is_refused_by_the_lock(tmp_path, start, run):
    spec = write_spec(tmp_path, GOOD.replace(
        "def objective(params, trial):\n",
        "import time\n\ndef objective(params, trial):\n    time.sleep(0.05)\n"))
    path = tmp_path / "busy.h5"
    first = start(3, [spec, "--storage", "busy.h5", "--max-trials", 200,
                      "--progress-interval", 0])
    deadline = time.monotonic() + 30
    while not (path.exists() and (tmp_path / "busy.h5.lock").exists()):
        assert first.running(), first.wait().describe()
        assert time.monotonic() < deadline, "the first run never started"
        time.sleep(0.02)
    lock_text = (tmp_path / "busy.h5.lock").read_text()
    owner = json.loads(lock_text)
    for ranks in (3, None):
        res = run(ranks, [spec, "--storage", "busy.h5", "--max-trials", 200], timeout=30)
        if not first.running():
            pytest.fail("the first run ended before the second was refused; slow it down")
        check_refused(res, 3, ["busy.h5", "in use by another mpitune run",
                               f"pid {owner['pid']}"])
        assert (tmp_path / "busy.h5.lock").read_text() == lock_text  # the lock untouched
    res = first.wait(60)
    assert res.returncode == 0, res.describe()
    r = mpitune.load(str(path))
    assert len(r) == 200 and r.complete  # 5 s: outlives the two refused starts
    np.testing.assert_array_equal(r["number"], np.arange(200))
    assert set(r["state"].tolist()) == {"complete"}
    assert not (tmp_path / "busy.h5.lock").exists()
    assert not (tmp_path / "busy.h5.journal").exists()


def run_failing_on_rank_2(tmp_path, run, pristine):
    """Resume ``good.h5`` (a copy of ``pristine``) with a spec that fails to import on
    rank 2 only; the job must end with exit status 1."""
    (tmp_path / "good.h5").write_bytes(pristine)
    spec = write_spec(tmp_path, "from mpi4py import MPI\n"
                                "if MPI.COMM_WORLD.rank == 2:\n"
                                "    raise RuntimeError('only on rank two')\n" + GOOD)
    res = run(3, [spec, "--storage", "good.h5", "--max-trials", 12], timeout=30)
    assert res.returncode == 1, res.describe()
    return res


def test_worker_only_failure_ends_the_job(tmp_path, run, pristine):
    """A spec that fails to import on one worker only: the job ends (exit 1, one line
    naming the rank and the error) instead of hanging, and no trial is lost."""
    res = run_failing_on_rank_2(tmp_path, run, pristine)
    lines = error_lines(res.stderr)
    assert len(lines) == 1, res.describe()
    assert "rank 2" in lines[0] and "only on rank two" in lines[0], lines
    r = mpitune.load(str(tmp_path / "good.h5"))
    assert len(r) >= 6
    before = {"x": r["x"][:6].copy(), "value": r["value"][:6].copy()}
    shutil.copy(tmp_path / "good.h5", tmp_path / "copy.h5")
    res = run(3, [write_spec(tmp_path, GOOD, "fixed.py"), "--storage", "good.h5",
                  "--max-trials", 12])
    assert res.returncode == 0, res.describe()
    r = mpitune.load(str(tmp_path / "good.h5"))
    assert len(r) == 12 and r.complete
    np.testing.assert_array_equal(r["x"][:6], before["x"])
    np.testing.assert_array_equal(r["value"][:6], before["value"])


class FileTouched(AssertionError):
    pass


def test_worker_only_failure_leaves_existing_file_untouched(tmp_path, run, pristine):
    """README: 'Nothing is written before the spec, space, settings and existing file have
    all been checked'. A spec that fails on one worker is a failed start too."""
    run_failing_on_rank_2(tmp_path, run, pristine)
    left = sorted(f for f in os.listdir(tmp_path) if f.startswith("good.h5"))
    changed = (tmp_path / "good.h5").read_bytes() != pristine
    if changed or left != ["good.h5"]:
        with h5py.File(tmp_path / "good.h5", "r") as f:
            runs, complete = json.loads(f.attrs["runs"]), bool(f.attrs["complete"])
        raise FileTouched(f"after a start that failed on rank 2: files {left}, file "
                          f"rewritten: {changed}, complete={complete} (was True), last run "
                          f"entry {runs[-1]['status']!r}/{runs[-1]['end']!r}")


def test_misspelt_setting_in_spec_is_a_warning(tmp_path, run):
    spec = write_spec(tmp_path, GOOD + "max_trial = 3\n")
    res = run(3, [spec, "--storage", "w.h5", "--max-trials", 4])
    assert res.returncode == 0, res.describe()
    assert "max_trial" in res.stdout and "did you mean 'max_trials'" in res.stdout
    assert len(mpitune.load(str(tmp_path / "w.h5"))) == 4
