"""End to end: GPU binding through CUDA_VISIBLE_DEVICES (no GPU needed).

Each worker narrows CUDA_VISIBLE_DEVICES to one entry chosen by its node-local worker index
(round robin), before the spec file is imported. The spec below records, per rank, what it
saw at import time and in every trial (a JSON-lines file per rank) and returns the bound id
as metrics, so the stored ``gpu`` column can be compared with what the objective saw.
"""

from __future__ import annotations

import json
import os

import h5py
import numpy as np
import pytest
from conftest import HAVE_NVIDIA, write_spec

import mpitune

SPEC = '''
import json
import os
import time
from mpi4py import MPI
from mpitune import Real

OUT = os.environ["E2E_OUT"]
RANK = MPI.COMM_WORLD.rank
AT_IMPORT = os.environ.get("CUDA_VISIBLE_DEVICES")
with open(os.path.join(OUT, f"import-{RANK}.json"), "w") as f:
    json.dump({"rank": RANK, "env": AT_IMPORT}, f)

space = {"x": Real(0.0, 1.0)}


def num(text):
    if text is None:
        return -1.0
    if text == "":
        return -2.0
    try:
        return float(text)
    except ValueError:  # a list, or a UUID-style id
        return -3.0


def objective(params, trial):
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    with open(os.path.join(OUT, f"trials-{trial.rank}.jsonl"), "a") as f:
        f.write(json.dumps({"number": trial.number, "env": env, "gpu": trial.gpu,
                            "device": trial.device, "import": AT_IMPORT}) + "\\n")
    time.sleep(0.01)
    return {"value": params["x"], "env_gpu": num(env), "attr_gpu": num(trial.gpu),
            "cuda": float(trial.device == "cuda:0"), "rank": trial.rank}
'''


def run_bound(tmp_path, run, ranks, cvd, n_trials=None, extra=()):
    """Run the recording spec with CUDA_VISIBLE_DEVICES=cvd (None: unset)."""
    out = tmp_path / "seen"
    out.mkdir()
    spec = write_spec(tmp_path, SPEC)
    path = str(tmp_path / "gpu.h5")
    workers = max(1, (ranks or 1) - 1)
    n_trials = n_trials or 6 * workers
    res = run(ranks, [spec, "--max-trials", n_trials, "--storage", path, *extra],
              env={"E2E_OUT": str(out), "CUDA_VISIBLE_DEVICES": cvd})
    assert res.returncode == 0, res.describe()
    imports = {}
    for name in os.listdir(out):
        if name.startswith("import-"):
            data = json.loads((out / name).read_text())
            imports[data["rank"]] = data["env"]
    trials = {}
    for name in os.listdir(out):
        if name.startswith("trials-"):
            rank = int(name[len("trials-"):-len(".jsonl")])
            trials[rank] = [json.loads(line) for line in (out / name).read_text().splitlines()]
    with h5py.File(path, "r") as f:
        stored = {
            "number": f["trials/number"][...],
            "worker": f["trials/worker"][...],
            "gpu": np.array([g.decode() for g in f["trials/gpu"][...].tolist()]),
            "env_gpu": f["trials/metrics/env_gpu"][...],
            "attr_gpu": f["trials/metrics/attr_gpu"][...],
            "cuda": f["trials/metrics/cuda"][...],
            "rank": f["trials/metrics/rank"][...],
        }
        assert len(stored["number"]) == n_trials
    return res, imports, trials, stored


def check_consistent(trials, stored):
    """Per rank, every trial saw one id; the stored gpu column matches what it saw."""
    seen = {}
    for rank, rows in trials.items():
        envs = {r["env"] for r in rows}
        assert len(envs) == 1, f"rank {rank} saw several CUDA_VISIBLE_DEVICES: {envs}"
        env = envs.pop()
        assert {r["gpu"] for r in rows} == {env}, (rank, rows[:3])
        assert {r["import"] for r in rows} == {env}, "spec imported before the binding"
        assert {r["device"] for r in rows} == {"cuda:0"}
        seen[rank] = env
    for i in range(len(stored["number"])):
        w = int(stored["worker"][i])
        assert stored["rank"][i] == w
        assert stored["gpu"][i] == seen[w], (i, w, stored["gpu"][i], seen[w])
        assert stored["env_gpu"][i] == float(seen[w])
        assert stored["attr_gpu"][i] == float(seen[w])
        assert stored["cuda"][i] == 1.0
    return seen


def test_one_gpu_per_worker(tmp_path, run):
    res, imports, trials, stored = run_bound(tmp_path, run, 5, "0,1,2,3", n_trials=32)
    assert imports[0] == "0,1,2,3"  # rank 0 (the master) is not narrowed
    workers = {r: imports[r] for r in range(1, 5)}
    assert sorted(workers.values()) == ["0", "1", "2", "3"], workers
    # node-local worker index = rank - 1 on a single node
    assert workers == {1: "0", 2: "1", 3: "2", 4: "3"}
    seen = check_consistent(trials, stored)
    for rank, env in seen.items():
        assert env == workers[rank]
    assert "GPU per rank" in res.stdout


def test_more_workers_than_gpus_round_robin(tmp_path, run):
    res, imports, trials, stored = run_bound(tmp_path, run, 7, "0,1,2,3", n_trials=36)
    workers = {r: imports[r] for r in range(1, 7)}
    assert workers == {1: "0", 2: "1", 3: "2", 4: "3", 5: "0", 6: "1"}, workers
    check_consistent(trials, stored)
    assert set(stored["gpu"].tolist()) <= {"0", "1", "2", "3"}


def test_single_visible_device_is_kept(tmp_path, run):
    res, imports, trials, stored = run_bound(tmp_path, run, 4, "2")
    assert {imports[r] for r in range(1, 4)} == {"2"}
    seen = check_consistent(trials, stored)
    assert set(seen.values()) == {"2"}
    assert set(stored["gpu"].tolist()) == {"2"}


def test_non_numeric_ids_are_passed_through(tmp_path, run):
    """UUID-style ids (GPU-..., MIG-...) are bound as given."""
    out = tmp_path / "seen"
    out.mkdir()
    spec = write_spec(tmp_path, '''
        import os
        from mpitune import Real
        space = {"x": Real(0.0, 1.0)}
        def objective(params, trial):
            assert os.environ["CUDA_VISIBLE_DEVICES"] == trial.gpu
            return params["x"]
    ''')
    ids = "GPU-aaaa-1111,MIG-bbbb-2222"
    res = run(3, [spec, "--max-trials", 12, "--storage", "uuid.h5"],
              env={"CUDA_VISIBLE_DEVICES": ids})
    assert res.returncode == 0, res.describe()
    r = mpitune.load(str(tmp_path / "uuid.h5"))
    assert set(r["state"].tolist()) == {"complete"}
    for w, g in zip(r["worker"], r["gpu"]):
        assert g == ids.split(",")[w - 1]


@pytest.mark.parametrize("cvd", ["", "-1", None])
def test_no_gpu_means_cpu(tmp_path, run, cvd):
    if cvd is None and HAVE_NVIDIA:
        pytest.skip("this machine has NVIDIA GPUs; the unset case would bind them")
    res, imports, trials, stored = run_bound(tmp_path, run, 3, cvd)
    assert {imports[r] for r in (1, 2)} == {cvd}
    for rows in trials.values():
        assert {r["device"] for r in rows} == {"cpu"}
        assert {r["gpu"] for r in rows} == {None}
        assert {r["env"] for r in rows} == {cvd}  # left alone
    assert set(stored["gpu"].tolist()) == {""}
    np.testing.assert_array_equal(stored["cuda"], 0.0)
    np.testing.assert_array_equal(stored["attr_gpu"], -1.0)
    assert "no GPUs" in res.stdout


def test_serial_run_binds_first_gpu(tmp_path, run):
    res, imports, trials, stored = run_bound(tmp_path, run, None, "0,1,2,3", n_trials=5)
    assert imports[0] == "0"
    assert set(stored["gpu"].tolist()) == {"0"}
    check_consistent(trials, stored)


def test_binding_can_be_turned_off(tmp_path, run):
    res, imports, trials, stored = run_bound(tmp_path, run, 3, "0,1", extra=["--no-bind-gpus"])
    for rows in trials.values():
        assert {r["env"] for r in rows} == {"0,1"}  # left as the launcher set it
    assert {imports[1], imports[2]} == {"0,1"}
    np.testing.assert_array_equal(stored["env_gpu"], -3.0)
