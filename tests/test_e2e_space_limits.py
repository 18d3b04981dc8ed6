"""End to end: spaces and settings the results file cannot hold are refused before any file
is written (they used to crash rank 0 at the first snapshot, on every rerun), and a
conditional text choice "" survives the whole run as a value, not as a missing one."""

from __future__ import annotations

import os

import pytest
from conftest import error_lines

import mpitune

OBJECTIVE = "def objective(params, trial):\n    return 1.0\n"

REFUSED = [
    ("nul_choice", 'space = {"x": Categorical(["a", "\\x00nul"])}', ["'x'", "NUL"]),
    ("int64_range", 'space = {"x": Integer(-2**63, 2**63 - 1)}', ["'x'", "2**51"]),
    ("seed_beyond_int64", 'space = {"x": Real(0, 1)}\nseed = 2**64', ["'seed'", "int64"]),
    ("huge_batch", 'space = {"x": Real(0, 1)}\nbatch_size = 10**9', ["'batch_size'",
                                                                      "100000"]),
]


@pytest.mark.parametrize("case, text, words", REFUSED, ids=[c[0] for c in REFUSED])
def test_unstorable_space_or_setting_is_refused_before_writing(tmp_path, run, spec, case,
                                                                text, words):
    path = spec(f"from mpitune import Categorical, Integer, Real\n{text}\n{OBJECTIVE}")
    res = run(3, [path, "--storage", "r.h5", "--max-trials", 4], timeout=30)
    assert res.returncode == 2, res.describe()
    lines = error_lines(res.stderr)
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.describe()
    for word in words:
        assert word in lines[0], lines[0]
    assert not [f for f in os.listdir(tmp_path) if f.startswith("r.h5")]


CONDITIONAL_EMPTY_STRING = '''
import numpy as np
from mpitune import Categorical

space = {"opt": Categorical(["sgd", "adam", "rms"]),
         "tag": Categorical(["", "a"], when={"opt": {"sgd", "rms"}})}
max_trials = np.int64(12)
max_time = np.float32(60)


def objective(params, trial):
    return 0.0 if params.get("tag") == "" else 1.0
'''


def test_conditional_empty_string_choice_is_kept_in_results_and_show(tmp_path, run, spec):
    path = spec(CONDITIONAL_EMPTY_STRING)
    seed = 2**63 - 1
    res = run(3, [path, "--storage", "r.h5", "--seed", seed, "--sampler", "random"])
    assert res.returncode == 0, res.describe()
    r = mpitune.load(str(tmp_path / "r.h5"))
    assert len(r) == 12 and r.seed == seed and r.settings["max_trials"] == 12
    for i in range(len(r)):
        params = r.params(i)
        assert ("tag" in params) == (params["opt"] != "adam"), params
        assert r["value"][i] == (0.0 if params.get("tag") == "" else 1.0)
    assert r.best["value"] == 0.0 and r.best["params"]["tag"] == ""
    show = run(None, ["show", "r.h5"])
    assert show.returncode == 0 and "tag=''" in show.stdout, show.describe()
