"""The job scripts' decision after the launcher returns, without a scheduler: pbs.sh runs
as a plain bash script (qstat and qsub absent), its launcher replaced by ``true``, so the
search itself is whatever an earlier run left in the results file."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_spec

JOBSCRIPTS = Path(__file__).resolve().parent.parent / "jobscripts"
SLOW = """
    import time
    from mpitune import Real

    space = {"x": Real(0.0, 1.0)}


    def objective(params):
        time.sleep(0.05)
        return params["x"]
    """


def pbs_after_a_launcher_that_said_0(tmp_path, storage: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SPEC": "spec.py", "STORAGE": storage, "NRANKS": "2",
           "PBS_JOBID": "1.test", "MPIEXEC": "true", "MPITUNE_PYTHON": sys.executable,
           "PATH": os.path.dirname(sys.executable) + os.pathsep + "/usr/bin:/bin"}
    return subprocess.run(["bash", str(JOBSCRIPTS / "pbs.sh")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)


def test_a_launcher_status_0_with_the_search_unfinished_means_run_again(tmp_path, run):
    """A worker that exits 0 on its own (os._exit(0), a library's exit(0)) can end the
    whole job with status 0 before the budget: the results file decides, 75 and requeue."""
    write_spec(tmp_path, SLOW)
    res = run(None, ["spec.py", "--storage", "part.h5", "--max-trials", 200,
                     "--max-time", 0.3, "--progress-interval", 0])
    assert res.returncode == 75, res.describe()
    job = pbs_after_a_launcher_that_said_0(tmp_path, "part.h5")
    assert job.returncode == 75, job.stdout + job.stderr
    assert "could not submit the continuation" in job.stdout  # qsub is absent here

    res = run(None, ["spec.py", "--storage", "done.h5", "--max-trials", 3])
    assert res.returncode == 0, res.describe()
    job = pbs_after_a_launcher_that_said_0(tmp_path, "done.h5")
    assert job.returncode == 0, job.stdout + job.stderr
    assert "continuation" not in job.stdout


@pytest.mark.parametrize("script", ["slurm_chain.sbatch", "slurm_gpu.sbatch",
                                    "slurm_cpu.sbatch", "flux.sh"])
def test_every_job_script_lets_the_results_file_decide_the_same_statuses(script):
    """Only 2, 3 and 75 are taken as the launcher reports them, as in pbs.sh above."""
    def decision(text: str) -> tuple:
        taken, other = re.search(r'case "\$status" in\n *(.*?)\) ;;\n *\*\) (.*?)\n *esac',
                                 text, re.S).groups()
        return taken, other.replace('"$PYTHON"', "python")

    assert decision((JOBSCRIPTS / script).read_text()) == \
        decision((JOBSCRIPTS / "pbs.sh").read_text())
