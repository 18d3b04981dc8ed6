"""jobscripts/slurm_chain.sbatch on a real Slurm: stop at the warning signal, continue.

Runs only where Slurm answers and this host is one of its compute nodes (a single-node
test cluster such as the one /work/shared/tools/slurm_local.sh starts, with >= 5 CPUs and
4 GPUs in gres, fake ones will do); elsewhere it is skipped with the reason. Set
MPITUNE_TEST_SLURM=1 to submit from a login node anyway (the jobs then need the same file
system and Python on the compute node).

The chain runs with a 1-minute limit and ``--signal=USR1@15`` (given as SBATCH_TIMELIMIT
and SBATCH_SIGNAL, which the continuation inherits): Slurm checks limits every 30 s, so the
warning reaches every rank 15-45 s after a link starts. A search of about 50 s of work then
needs at least two links. The grace period is shorter than a trial, so trials that were
running at the warning are interrupted and run again in the next link.

With srun the test waits for that warning. With mpiexec it sends the same signal the same
way (``scancel --signal=USR1``: every step of the job, not the batch shell) once ten trials
are done, and runs a smaller search, so that it does not wait for Slurm's clock twice.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest

import mpitune

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "jobscripts", "slurm_chain.sbatch")
WAIT = 240.0  # seconds for the whole chain

SPEC = """\
import time

from mpitune import Real

space = {"x": Real(-1.0, 1.0)}
progress_interval = 5


def objective(params, trial):
    for step in range(10):  # 1 s per trial, a report every 0.1 s
        time.sleep(0.1)
        trial.report(step, params["x"] ** 2 + 1.0 / (step + 1))
    return params["x"] ** 2
"""


def _slurm_unavailable() -> str:
    """Why the test cannot run here, or '' when it can."""
    if shutil.which("sbatch") is None:
        return "sbatch is not on PATH (no Slurm here)"
    try:
        nodes = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %c %G %T"], capture_output=True,
                               text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"sinfo failed: {e}"
    if nodes.returncode != 0:
        return f"no Slurm controller answers (sinfo: {nodes.stderr.strip()})"
    host = socket.gethostname().split(".")[0]
    usable = []
    for line in nodes.stdout.splitlines():
        name, cpus, gres, state = (line.split() + ["", "", "", ""])[:4]
        gpus = re.search(r"gpu(?::[^:,()]+)?:(\d+)", gres)
        if (cpus.isdigit() and int(cpus) >= 5 and gpus and int(gpus.group(1)) >= 4
                and not state.startswith(("down", "drain"))):
            usable.append(name)
    if not usable:
        return "no Slurm node with >= 5 CPUs and 4 GPUs in gres (slurm_local.sh has them)"
    if host not in usable and os.environ.get("MPITUNE_TEST_SLURM") != "1":
        return (f"this host ({host}) is not a Slurm compute node; set MPITUNE_TEST_SLURM=1 to "
                f"submit test jobs anyway")
    return ""


REASON = _slurm_unavailable()
pytestmark = pytest.mark.skipif(bool(REASON), reason=REASON)


def _jobs(name: str) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-n", name, "-o", "%i %T"], capture_output=True,
                         text=True, timeout=30)
    return out.stdout.split("\n") if out.stdout.strip() else []


def _logs(directory: str) -> str:
    parts = []
    for path in sorted(glob.glob(os.path.join(directory, "mpitune-chain-*.out")),
                       key=lambda p: int(re.findall(r"(\d+)\.out$", p)[0])):
        with open(path) as f:
            parts.append(f"==> {os.path.basename(path)} <==\n{f.read()}")
    return "\n".join(parts)


def _complete(path: str) -> dict:
    r = mpitune.load(path)
    done = r["state"] == "complete"
    return dict(zip(r["number"][done].tolist(), r["value"][done].tolist()))


def _signal_steps_when_ten_are_done(job: str, storage: str) -> bool:
    """``scancel --signal=USR1`` (every step, as the time-limit warning) once ten trials
    are complete; True when sent."""
    try:
        if not os.path.exists(storage) or len(_complete(storage)) < 10:
            return False
    except mpitune.StorageError:
        return False
    subprocess.run(["scancel", "--signal=USR1", job], capture_output=True, timeout=30)
    return True


@pytest.mark.parametrize("launcher, max_trials", [("srun", 200), ("mpiexec", 80)])
def test_chain_stops_at_warning_and_continues(tmp_path, launcher, max_trials):
    directory = str(tmp_path)
    with open(os.path.join(directory, "spec.py"), "w") as f:
        f.write(SPEC)
    storage = os.path.join(directory, "spec.h5")
    name = f"mpitune-test-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, SBATCH_TIMELIMIT="1", SBATCH_SIGNAL="USR1@15",
               SBATCH_JOB_NAME=name, MPITUNE_PYTHON=sys.executable,
               MPITUNE_LAUNCHER=launcher, STORAGE=storage, MAX_LINKS="6")
    env.pop("SBATCH_OUTPUT", None)
    # Sobol' points never repeat, so a point seen twice below is work the chain redid (a
    # model may legitimately propose a bound of x twice)
    submit = subprocess.run(["sbatch", "--parsable", SCRIPT, "spec.py", "--max-trials",
                             str(max_trials), "--grace-period", "0.3", "--sampler", "sobol"],
                            cwd=directory,
                            env=env, capture_output=True, text=True, timeout=60)
    assert submit.returncode == 0, submit.stderr
    first = submit.stdout.strip().split(";")[0]
    before_second: dict = {}
    signalled = launcher == "srun"  # srun waits for Slurm's own warning
    try:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if not signalled:
                signalled = _signal_steps_when_ten_are_done(first, storage)
            logs = _logs(directory)
            if not before_second and "link 1: mpitune exited with status" in logs:
                before_second = _complete(storage)  # while link 2 may already run
            if "mpitune exited with status" in logs and not _jobs(name):
                break
            time.sleep(1.0)
        else:
            pytest.fail(f"the chain did not finish within {WAIT:.0f} s:\n{_logs(directory)}")
    finally:
        subprocess.run(["scancel", "-n", name], capture_output=True, timeout=30)
    logs = _logs(directory)
    statuses = [int(s) for s in re.findall(r"mpitune exited with status (\d+)", logs)]
    print(logs)
    assert os.path.exists(os.path.join(directory, f"mpitune-chain-{first}.out"))
    assert len(statuses) >= 2, f"the first link was not stopped by the warning:\n{logs}"
    assert statuses[:-1] == [75] * (len(statuses) - 1) and statuses[-1] == 0, logs
    assert logs.count("stopped by SIGUSR1") == len(statuses) - 1, logs
    assert logs.count("chain: submitted link") == len(statuses) - 1, logs

    r = mpitune.load(storage)
    assert r.complete
    assert len(r) == max_trials
    assert np.array_equal(r["number"], np.arange(max_trials))
    assert (r["state"] == "complete").all()
    assert len(np.unique(r["x"])) == max_trials  # no point evaluated twice
    assert before_second, "no trial was complete when the first link ended"
    for number, value in before_second.items():  # nothing finished was lost or redone
        assert r["value"][number] == value
    assert 0 < len(before_second) < max_trials
    # 5 tasks and 4 GPUs: rank 0 is the master, ranks 1-4 each get their own GPU
    pairs = set(zip(r["worker"].tolist(), r["gpu"].tolist()))
    assert pairs == {(1, "0"), (2, "1"), (3, "2"), (4, "3")}, pairs
    assert "GPU per rank: 1->0, 2->1, 3->2, 4->3" in logs
    for leftover in (".lock", ".journal"):
        assert not os.path.exists(storage + leftover)
