"""Faults: kills at random moments, a second writer, stale locks, torn journals, a full
disk, noisy or misbehaving objectives and a results file from the future.

The kill series are a small version of ``benchmarks/faults.py`` (whose helpers they use):
after each kill the results file opens with plain h5py at once, and running the same
command again loses no finished trial, duplicates none and meets the budget exactly.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import faults  # benchmarks/faults.py, on sys.path through conftest
import h5py
import numpy as np
import pytest
from conftest import MPIEXEC, error_lines, process_tree, wait_gone

import mpitune

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="uses /proc to find the processes of a job")

SLOW = """
import time
from mpitune import Real

space = {"x": Real(0.0, 1.0)}


def objective(params, trial):
    time.sleep(0.05)
    trial.report(0, params["x"])
    return params["x"]
"""

FAST = """
from mpitune import Real

space = {"x": Real(-1.0, 1.0), "y": Real(0.0, 1.0)}


def objective(params, trial):
    trial.report(0, params["x"])
    return params["x"] ** 2 + params["y"]
"""


def complete_values(path) -> dict:
    r = mpitune.load(str(path))
    done = r["state"] == "complete"
    return dict(zip(r["number"][done].tolist(), r["value"][done].tolist()))


def check_finished(path, budget: int, before: dict) -> None:
    """The search in ``path`` is complete: exactly ``budget`` trials, numbered 0..n-1,
    nothing left running, every trial of ``before`` kept with its value."""
    with h5py.File(str(path), "r") as f:
        assert bool(f.attrs["complete"])
    r = mpitune.load(str(path))
    assert len(r) == budget
    np.testing.assert_array_equal(r["number"], np.arange(budget))
    assert not np.isin(r["state"], ["running", "interrupted"]).any()
    for number, value in before.items():
        assert r["state"][number] == "complete" and r["value"][number] == value, number
    for suffix in (".lock", ".journal"):
        assert not os.path.exists(str(path) + suffix), suffix


# ---- kills at random moments ------------------------------------------------------------
@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec")
@pytest.mark.parametrize("series", ["kill", "term", "worker"])
def test_kill_resume_loses_nothing(tmp_path, series):
    """3 hits per series: in start-up, once 20 of 200 trials are complete, once 150 are
    (an uninterrupted run takes about 2 s)."""
    outcomes = [faults.one_kill(series, at, str(tmp_path), MPIEXEC, ranks=4, max_trials=200,
                                max_resumes=3, timeout=60.0, min_complete=n)
                for at, n in ((0.4, 0), (0.0, 20), (0.0, 150))]
    for o in outcomes:
        where = f"{series} at {o.at:.2f} s: {o}"
        assert not o.unreadable and not o.final_unreadable, where
        assert not o.load_failed, where
        assert o.lost == 0 and o.duplicated == 0, where
        assert o.budget_exact, where
        assert not o.leftovers, where
        if series == "term" and 0 < o.complete_before < 200:
            assert o.exit_code == 75, where  # the signal reached a running search
            assert o.stop_seconds < 5.0, where  # trials of ~10 ms: no grace period needed
    assert sum(o.complete_before > 0 for o in outcomes) >= 2, "the hits missed the search"


# ---- locks -------------------------------------------------------------------------------
def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path, spec, run):
    path = tmp_path / "stale.h5"
    lock = tmp_path / "stale.h5.lock"
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": _dead_pid(),
                                "since": time.time()}))
    res = run(3, [spec(FAST), "--storage", path, "--max-trials", 50, "--progress-interval",
                  0])
    assert res.returncode == 0, res.describe()
    check_finished(path, 50, {})


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2:].split()[0] == "Z"


def test_lock_of_a_zombie_process_is_taken_over(tmp_path, spec, run):
    """After a kill, rank 0 stays a zombie until its parent (or PID 1 once the proxy died
    too) reaps it: about 1-2 s in this container, forever under an init that never reaps.
    Its lock is as stale as that of a vanished process."""
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 10
        while not _is_zombie(zombie.pid):  # exited, not waited for
            assert time.monotonic() < deadline
            time.sleep(0.01)
        path = tmp_path / "zombie.h5"
        (tmp_path / "zombie.h5.lock").write_text(json.dumps(
            {"host": socket.gethostname(), "pid": zombie.pid, "since": time.time()}))
        res = run(None, [spec(FAST), "--storage", path, "--max-trials", 20,
                         "--progress-interval", 0])
        assert res.returncode == 0, res.describe()
    finally:
        zombie.wait()


# ---- journal -----------------------------------------------------------------------------
@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec")
def test_torn_journal_line_resumes(tmp_path, spec, start, run):
    path = tmp_path / "torn.h5"
    journal = tmp_path / "torn.h5.journal"
    args = [spec(SLOW), "--storage", path, "--max-trials", 120, "--progress-interval", 0,
            "--snapshot-interval", 1000]
    job = start(3, args)
    deadline = time.monotonic() + 30
    while len(complete_values(path) if path.exists() else {}) < 10:
        assert job.running() and time.monotonic() < deadline, "no progress"
        time.sleep(0.05)
    pids = job.kill_all()
    job.proc.wait()  # mpiexec is our child: reap it
    assert wait_gone(pids)
    before = complete_values(path)
    with open(journal, "ab") as f:  # a write cut short by the kill
        f.write(b'{"k":"D","n":[3,4],"s":[1,1],"v":[0.5')
    assert complete_values(path) == before  # the torn line is ignored
    res = run(3, args)
    assert res.returncode == 0, res.describe()
    check_finished(path, 120, before)


# ---- a full disk -------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path):
    """A 300 kB tmpfs (root only; skipped where mounting is not allowed)."""
    yield from _tmpfs(tmp_path / "small", "300k")


def _tmpfs(directory, size: str):
    """Mount a tmpfs of ``size`` on ``directory`` for one test; skip where that is denied."""
    directory.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                           str(directory)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], capture_output=True)


@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec")
def test_disk_full_stops_with_one_line_then_resumes_elsewhere(tmp_path, spec, run,
                                                              small_disk):
    path = small_disk / "full.h5"
    res = run(3, [spec(FAST), "--storage", path, "--max-trials", 100000,
                  "--progress-interval", 0, "--snapshot-interval", 1000], timeout=60)
    assert res.returncode == 3, res.describe()
    lines = error_lines(res.stderr)
    assert len(lines) == 1, res.describe()
    assert lines[0].startswith("mpitune: error: cannot write journal"), lines
    assert "No space left on device" in lines[0], lines
    assert not os.path.exists(str(path) + ".lock")  # released on the way out
    moved = tmp_path / "moved"
    moved.mkdir()
    for name in os.listdir(small_disk):
        shutil.copy2(small_disk / name, moved / name)
    subprocess.run(["umount", str(small_disk)], capture_output=True)
    before = complete_values(moved / "full.h5")
    assert len(before) > 100, len(before)  # the journal held them
    budget = len(mpitune.load(str(moved / "full.h5"))) + 500
    res = run(3, [str(tmp_path / "spec.py"), "--storage", moved / "full.h5",
                  "--max-trials", budget, "--progress-interval", 0], timeout=60)
    assert res.returncode == 0, res.describe()
    check_finished(moved / "full.h5", budget, before)


def test_disk_full_at_a_snapshot_is_one_line_and_keeps_the_file(tmp_path, spec, run):
    """A snapshot that does not fit: resuming a finished search (which rewrites the
    snapshot first) on a disk with less free space than the file. HDF5 never sees the
    error (the file is built in memory, then written): one line, exit 3, the file as it
    was; written by HDF5 itself this ended in a stream of errors and a crash (exit 11).
    Then a disk too full for the lock file's contents: one line, and no empty lock left
    behind (it used to block every rerun for two minutes)."""
    done = tmp_path / "done.h5"
    res = run(None, [spec(FAST), "--storage", done, "--max-trials", 2000,
                     "--progress-interval", 0])
    assert res.returncode == 0, res.describe()
    size = done.stat().st_size  # the tmpfs holds it, but not a second copy
    with contextlib.contextmanager(_tmpfs)(tmp_path / "disk", f"{size * 3 // 2}") as disk:
        shutil.copy2(done, disk / "done.h5")
        digest = hashlib.sha256((disk / "done.h5").read_bytes()).hexdigest()
        for ranks in (None, 3) if MPIEXEC else (None,):
            res = run(ranks, [str(tmp_path / "spec.py"), "--storage", disk / "done.h5",
                              "--max-trials", 2400, "--progress-interval", 0])
            assert res.returncode == 3, res.describe()
            lines = error_lines(res.stderr)
            assert len(lines) == 1 and "Exception ignored" not in res.stderr, res.describe()
            assert "No space left on device" in lines[0], lines
            assert hashlib.sha256((disk / "done.h5").read_bytes()).hexdigest() == digest
            assert sorted(os.listdir(disk)) == ["done.h5"]
        with open(disk / "filler", "wb", buffering=0) as f, contextlib.suppress(OSError):
            while True:  # until not even the lock's few bytes fit
                f.write(bytes(4096))
        res = run(None, [str(tmp_path / "spec.py"), "--storage", disk / "done.h5",
                         "--max-trials", 2400])
        assert res.returncode == 3, res.describe()
        assert error_lines(res.stderr) == [
            f"mpitune: error: cannot write beside '{disk / 'done.h5'}': No space left on "
            f"device ({disk / 'done.h5'}.lock)"], res.describe()
        assert sorted(os.listdir(disk)) == ["done.h5", "filler"]  # no empty lock left


# ---- objectives that misbehave -------------------------------------------------------------
@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec")
def test_objective_printing_megabytes(tmp_path, spec, run):
    noisy = spec("""
        import sys
        from mpitune import Real

        space = {"x": Real(0.0, 1.0)}


        def objective(params, trial):
            if trial.number < 4:
                sys.stdout.write(("x" * 1023 + "\\n") * 5 * 1024)  # 5 MB
                sys.stdout.flush()
            return params["x"]
        """)
    res = run(3, [noisy, "--storage", tmp_path / "noisy.h5", "--max-trials", 40,
                  "--progress-interval", 0], timeout=90)
    assert res.returncode == 0, res.describe()[-2000:]
    assert len(res.stdout) >= 4 * 5 * 1024 * 1024
    check_finished(tmp_path / "noisy.h5", 40, {})


@pytest.mark.parametrize("ranks", [None, 3])
def test_objective_raising_systemexit_or_keyboardinterrupt_fails_the_trial(tmp_path, spec,
                                                                          run, ranks):
    if ranks and MPIEXEC is None:
        pytest.skip("no mpiexec")
    path = tmp_path / "exits.h5"
    rude = spec("""
        import sys
        from mpitune import Real

        space = {"x": Real(0.0, 1.0)}


        def objective(params, trial):
            if trial.number % 4 == 1:
                sys.exit(3)
            if trial.number % 4 == 2:
                raise KeyboardInterrupt
            return params["x"]
        """)
    res = run(ranks, [rude, "--storage", path, "--max-trials", 40, "--progress-interval", 0])
    assert res.returncode == 0, res.describe()
    check_finished(path, 40, {})
    r = mpitune.load(str(path))
    numbers = np.arange(40)
    np.testing.assert_array_equal(r["state"] == "failed", np.isin(numbers % 4, [1, 2]))
    assert all("SystemExit" in r["error"][n] for n in numbers[numbers % 4 == 1])
    assert all("KeyboardInterrupt" in r["error"][n] for n in numbers[numbers % 4 == 2])


@pytest.mark.parametrize("ranks", [None, 2])
def test_journal_deleted_during_the_run_costs_nothing(tmp_path, spec, run, ranks):
    """The final snapshot holds every trial; the run used to end with exit 1 on the
    FileNotFoundError of removing the journal that was already gone."""
    if ranks and MPIEXEC is None:
        pytest.skip("no mpiexec")
    path = tmp_path / "gone.h5"
    deleting = spec("""
        import os
        from mpitune import Real

        space = {"x": Real(0.0, 1.0)}


        def objective(params, trial):
            if trial.number == 5:
                os.unlink("gone.h5.journal")  # a clean-up script, say
            return params["x"]
        """)
    res = run(ranks, [deleting, "--storage", path, "--max-trials", 20,
                      "--progress-interval", 0])
    assert res.returncode == 0, res.describe()
    check_finished(path, 20, {})
    assert (mpitune.load(str(path))["state"] == "complete").all()


@pytest.mark.parametrize("ranks", [None, 3])
def test_trial_timeout_stores_a_hung_trial_as_timeout(tmp_path, spec, run, ranks):
    if ranks and MPIEXEC is None:
        pytest.skip("no mpiexec")
    path = tmp_path / "hung.h5"
    hung = spec("""
        import time
        from mpitune import Real

        space = {"x": Real(0.0, 1.0)}


        def objective(params, trial):
            if trial.number == 2:
                while True:
                    time.sleep(0.01)
            return params["x"]
        """)
    res = run(ranks, [hung, "--storage", path, "--max-trials", 12, "--trial-timeout", 0.5,
                      "--progress-interval", 0], timeout=60)
    assert res.returncode == 0, res.describe()
    check_finished(path, 12, {})
    r = mpitune.load(str(path))
    assert r["state"][2] == "timeout" and "trial_timeout" in r["error"][2]
    assert (np.delete(r["state"], 2) == "complete").all()
    assert 0.4 < r["duration"][2] < 5.0


@pytest.mark.parametrize("ranks", [None, 3])
def test_timeouts_that_hit_reports_leave_every_curve_whole(tmp_path, spec, run, ranks):
    """A trial_timeout of 2 ms against an objective that does nothing but report: the
    timer lands inside mpitune's own code in report() again and again (mid-send, mid-
    receive, between a curve row's columns). Each trial is a timeout, and the file holds
    every curve whole: columns of one length, steps 0, 1, ... without a gap."""
    if ranks and MPIEXEC is None:
        pytest.skip("no mpiexec")
    path = tmp_path / "tight.h5"
    tight = spec("""
        from mpitune import Real

        space = {"x": Real(0.0, 1.0)}


        def objective(params, trial):
            step = 0
            while True:
                trial.report(step, params["x"])
                step += 1
        """)
    res = run(ranks, [tight, "--storage", path, "--max-trials", 120, "--trial-timeout", 0.002,
                      "--sampler", "random", "--progress-interval", 0], timeout=60)
    assert res.returncode == 0, res.describe()
    check_finished(path, 120, {})
    with h5py.File(str(path), "r") as f:
        lengths = {name: len(f["curves"][name]) for name in f["curves"]}
    assert len(set(lengths.values())) == 1, lengths
    r = mpitune.load(str(path))
    assert (r["state"] == "timeout").all()
    for number in range(120):
        steps, values = r.curve(number)
        np.testing.assert_array_equal(steps, np.arange(len(steps)))
        assert (values == r["x"][number]).all()

# ---- a results file from a newer mpitune ---------------------------------------------------
def test_newer_format_version_is_refused_and_left_untouched(tmp_path, spec, run):
    path = tmp_path / "future.h5"
    res = run(None, [spec(FAST), "--storage", path, "--max-trials", 10])
    assert res.returncode == 0, res.describe()
    with h5py.File(str(path), "r+") as f:
        f.attrs["format_version"] = int(f.attrs["format_version"]) + 1
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    mtime = os.stat(path).st_mtime_ns
    for ranks in (None, 3) if MPIEXEC else (None,):
        res = run(ranks, [str(tmp_path / "spec.py"), "--storage", path, "--max-trials", 20])
        assert res.returncode == 3, res.describe()
        lines = error_lines(res.stderr)
        assert len(lines) == 1 and "format version" in lines[0], res.describe()
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
        assert os.stat(path).st_mtime_ns == mtime
        assert sorted(os.listdir(tmp_path)) == ["future.h5", "spec.py"]


# ---- a signal during start-up ----------------------------------------------------------------
def _mpi_loaded(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/maps") as f:
            return "libmpi" in f.read()
    except OSError:
        return False


@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec")
def test_sigterm_during_startup_exits_75(tmp_path, spec, start):
    """Slurm's warning or scancel can come at any moment, also while the ranks start: here
    once every rank has loaded the MPI library (mpitune's command line is running) and
    before rank 0 can have opened the results file."""
    job = start(4, [spec(FAST), "--storage", tmp_path / "early.h5", "--max-trials", 50,
                    "--progress-interval", 0])
    deadline = time.monotonic() + 20
    ranks: list = []
    while len(ranks) < 4:
        assert job.running() and time.monotonic() < deadline
        ranks = [p for p in process_tree(job.pid)
                 if faults.rank_of(p) is not None and _mpi_loaded(p)]
        time.sleep(0.002)
    job.send(15)
    res = job.wait(30)
    assert res.returncode == 75, res.describe()



@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec")
def test_sigterm_while_a_worker_still_loads_the_spec_writes_nothing(tmp_path, spec, start):
    """One worker takes long to import the spec (a slow shared file system); the other is
    ready and says BYE when the signal comes. Rank 0 must not count that BYE as a second
    ready worker: it writes nothing and ends with 75, saying why. (The slow import ends
    within rank 0's shutdown wait: a rank that never answers ends the job by MPI_Abort,
    whose status MPICH reports as 75 or 9 at random.)"""
    path = tmp_path / "slow.h5"
    slow = spec("""
        import time
        from mpi4py import MPI
        from mpitune import Real

        if MPI.COMM_WORLD.rank == 2:
            time.sleep(3)
        space = {"x": Real(0.0, 1.0)}


        def objective(params):
            return params["x"]
        """)
    job = start(3, [slow, "--storage", path, "--max-trials", 10, "--grace-period", 30])
    deadline = time.monotonic() + 30
    while len([p for p in process_tree(job.pid) if faults.rank_of(p) is not None
               and _mpi_loaded(p)]) < 3:
        assert job.running() and time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(1.5)  # rank 1 is ready and waits in its loop
    job.send(15)
    res = job.wait(30)
    assert res.returncode == 75, res.describe()
    assert "1 of 2 workers were still starting, before anything was written" in res.stdout
    assert sorted(os.listdir(tmp_path)) == ["spec.py"]

@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec")
def test_sigterm_after_the_search_ended_exits_0(tmp_path, spec):
    """A signal that comes while the ranks finalize MPI, just after a complete search (an
    uncatchable moment for a job script), must not turn exit 0 into a killed job."""
    path = spec(FAST)
    codes = []
    for delay in (0.01, 0.025, 0.04, 0.06):
        log = tmp_path / f"late-{delay}.log"
        with open(log, "w") as out:
            proc = subprocess.Popen([MPIEXEC, "-n", "4", sys.executable, "-m", "mpitune", path,
                                     "--storage", str(tmp_path / f"late-{delay}.h5"),
                                     "--max-trials", "300", "--progress-interval", "0"],
                                    stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while "complete:" not in log.read_text():
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.002)
            time.sleep(delay)  # rank 0 logged the summary: the ranks are shutting down
            proc.send_signal(15)
            codes.append(proc.wait(timeout=30))
        finally:
            if proc.poll() is None:
                faults.kill_all([proc.pid, *faults.descendants(proc.pid)])
                proc.wait()
    assert codes == [0, 0, 0, 0], codes


# ---- kill -9 of rank 0 alone, hostile files, a read-only directory ---------------------------
@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec")
def test_kill_of_rank_0_alone_loses_nothing(tmp_path, spec, start, run):
    """SIGKILL to the master only: the launcher ends the job; the next run resumes."""
    path = tmp_path / "master.h5"
    job = start(4, [spec(SLOW), "--storage", path, "--max-trials", 120,
                    "--progress-interval", 0])
    deadline = time.monotonic() + 30
    before: dict = {}
    while len(before) < 10:
        assert job.running() and time.monotonic() < deadline, "the search did not start"
        time.sleep(0.05)
        if path.exists():
            before = complete_values(path)
    master = [p for p in process_tree(job.pid) if faults.rank_of(p) == 0]
    assert len(master) == 1, master
    os.kill(master[0], 9)
    job.wait(30)
    with h5py.File(str(path), "r") as f:  # opens at once, no h5clear
        assert f.attrs["format"] == "mpitune-results"
    before = complete_values(path)  # what the journal held at the kill
    wait_gone(process_tree(job.pid) + master)
    res = run(4, [str(tmp_path / "spec.py"), "--storage", path, "--max-trials", 120,
                  "--progress-interval", 0], timeout=60)
    assert res.returncode == 0, res.describe()
    check_finished(path, 120, before)


def test_truncated_results_file_is_refused_and_left_untouched(tmp_path, spec, run):
    path = tmp_path / "cut.h5"
    res = run(None, [spec(FAST), "--storage", path, "--max-trials", 30])
    assert res.returncode == 0, res.describe()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    for ranks in (None, 3) if MPIEXEC else (None,):
        res = run(ranks, [str(tmp_path / "spec.py"), "--storage", path, "--max-trials", 40])
        assert res.returncode == 3, res.describe()
        lines = error_lines(res.stderr)
        assert len(lines) == 1 and "cut.h5" in lines[0], res.describe()
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
        assert sorted(os.listdir(tmp_path)) == ["cut.h5", "spec.py"]


@pytest.fixture
def read_only_dir(tmp_path):
    """A tmpfs for a results file, remounted read-only by the test (root only)."""
    yield from _tmpfs(tmp_path / "ro", "2m")


def test_read_only_storage_directory_is_refused(tmp_path, spec, run, read_only_dir):
    path = read_only_dir / "done.h5"
    res = run(None, [spec(FAST), "--storage", path, "--max-trials", 10])
    assert res.returncode == 0, res.describe()
    subprocess.run(["mount", "-o", "remount,ro", str(read_only_dir)], check=True)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    for ranks in (None, 3) if MPIEXEC else (None,):
        for target in (path, read_only_dir / "new.h5"):
            res = run(ranks, [str(tmp_path / "spec.py"), "--storage", target,
                              "--max-trials", 20], timeout=30)
            assert res.returncode == 3, res.describe()
            lines = error_lines(res.stderr)
            assert len(lines) == 1 and "Read-only file system" in lines[0], res.describe()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert sorted(os.listdir(read_only_dir)) == ["done.h5"]
