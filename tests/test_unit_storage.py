"""Unit tests of the persistence layer: TrialTable.apply, the journal, HDF5 snapshots,
Store (open/record/snapshot/close, resume checks) and the lock file."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

import mpitune
from mpitune.errors import SpecError, StorageError
from mpitune.journal import JOURNAL_SUFFIX, Journal, read_journal
from mpitune.lock import LOCK_SUFFIX, UNWRITTEN_AFTER, FileLock
from mpitune.settings import Settings
from mpitune.snapshot import (
    FORMAT_NAME,
    FORMAT_VERSION,
    Meta,
    param_columns,
    read_snapshot,
    write_snapshot,
)
from mpitune.space import Categorical, Integer, Real, Space
from mpitune.store import Store, read_state
from mpitune.table import (
    COMPLETE,
    FAILED,
    FINISHED,
    INTERRUPTED,
    PRUNED,
    RUNNING,
    STATES,
    TrialTable,
)

TIMEOUT = STATES.index("timeout") if "timeout" in STATES else PRUNED

SPACE = Space({
    "x": Real(-5.0, 10.0),
    "lr": Real(1e-4, 1e-1, log=True),
    "width": Integer(16, 512, log=True),
    "batch": Integer(8, 64, step=8),
    "act": Categorical(["relu", "tanh", "gelu"]),
    "cfg": Categorical([None, [1, 2], {"a": 1}, "s"]),
    "flag": Categorical([True, False]),
    "k": Categorical([1, 2, 3]),
    "f": Categorical([0.5, 1, 2.5]),
    "epochs": 5,
})
D = SPACE.ndim


def events() -> list[dict]:
    """A small history with every kind of event and every state."""
    rng = np.random.default_rng(0)
    u = rng.random((7, D)).tolist()
    return [
        {"k": "A", "n0": 0, "u": u[:4]},
        {"k": "S", "n": [0, 1], "w": 1, "h": "node-a", "g": "0"},
        {"k": "S", "n": [2, 3], "w": 2, "h": "node-b", "g": ""},
        {"k": "C", "n": [0, 0, 2], "st": [1.0, 2.0, 1.0], "v": [0.5, 0.25, 9.0],
         "t": [10.0, 11.0, 12.0]},
        {"k": "D", "n": [0, 1], "s": [COMPLETE, FAILED], "v": [0.125, float("nan")],
         "t0": [10.0, 10.5], "t1": [12.0, 13.0], "m": {"acc": [[0], [0.9]]},
         "e": {"1": "rank 1 on node-a, trial 1: ValueError: boom\nTraceback ..."}},
        {"k": "A", "n0": 4, "u": u[4:]},
        {"k": "S", "n": [4, 5, 6], "w": 1, "h": "node-a", "g": "1"},
        {"k": "D", "n": [2, 4, 5], "s": [PRUNED, TIMEOUT, COMPLETE],
         "v": [9.0, float("nan"), -3.0], "t0": [12.0, 13.0, 14.0], "t1": [12.5, 15.0, 14.5],
         "m": {"acc": [[5], [0.7]], "loss2": [[2, 5], [1.5, 2.5]]}, "e": {}},
        {"k": "I", "n": [3]},
    ]


def built_table() -> TrialTable:
    t = TrialTable(D)
    for e in events():
        t.apply(e)
    return t


def labels_of(table: TrialTable, column: str) -> list[str]:
    index = getattr(table, column).data
    return [table.labels[i] if i >= 0 else "" for i in index]


def assert_same_table(a: TrialTable, b: TrialTable) -> None:
    assert a.n == b.n and a.ndim == b.ndim
    np.testing.assert_array_equal(a.unit.data, b.unit.data)
    np.testing.assert_array_equal(a.state.data, b.state.data)
    np.testing.assert_array_equal(a.value.data, b.value.data)  # nan == nan here
    np.testing.assert_array_equal(a.worker.data, b.worker.data)
    assert labels_of(a, "host") == labels_of(b, "host")
    assert labels_of(a, "gpu") == labels_of(b, "gpu")
    np.testing.assert_array_equal(a.t_start.data, b.t_start.data)
    np.testing.assert_array_equal(a.t_end.data, b.t_end.data)
    assert sorted(a.metrics) == sorted(b.metrics)
    for name in a.metrics:
        np.testing.assert_array_equal(a.metrics[name].data, b.metrics[name].data)
    assert a.errors == b.errors
    np.testing.assert_array_equal(a.curve_trial.data, b.curve_trial.data)
    np.testing.assert_array_equal(a.curve_step.data, b.curve_step.data)
    np.testing.assert_array_equal(a.curve_value.data, b.curve_value.data)
    np.testing.assert_array_equal(a.curve_time.data, b.curve_time.data)
    np.testing.assert_array_equal(a.last_step.data, b.last_step.data)
    np.testing.assert_array_equal(a.last_value.data, b.last_value.data)
    assert a.n_finished == b.n_finished


def settings(tmp_path, **kw) -> Settings:
    kw.setdefault("storage", str(tmp_path / "results.h5"))
    kw.setdefault("seed", 42)
    kw.setdefault("progress_interval", 0)
    kw.setdefault("fsync", False)
    return Settings(**kw)


def file_bytes(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


# ---- TrialTable.apply ----------------------------------------------------------------


def test_apply_add_assigns_numbers_and_running_state():
    t = TrialTable(2)
    t.apply({"k": "A", "n0": 0, "u": [[0.1, 0.2], [0.3, 0.4]]})
    assert t.n == 2
    np.testing.assert_array_equal(t.unit.data, [[0.1, 0.2], [0.3, 0.4]])
    assert t.state.data.tolist() == [RUNNING, RUNNING]
    assert np.isnan(t.value.data).all()
    assert t.worker.data.tolist() == [-1, -1]
    t.apply({"k": "A", "n0": 2, "u": [[0.5, 0.6]]})
    assert t.n == 3
    with pytest.raises(ValueError, match="trial 1"):
        t.apply({"k": "A", "n0": 1, "u": [[0.5, 0.6]]})
    assert t.n == 3


def test_apply_start_sets_worker_host_gpu():
    t = TrialTable(1)
    t.apply({"k": "A", "n0": 0, "u": [[0.1], [0.2], [0.3]]})
    t.apply({"k": "S", "n": [0, 2], "w": 3, "h": "nodeX", "g": "GPU-abc"})
    assert t.worker.data.tolist() == [3, -1, 3]
    assert labels_of(t, "host") == ["nodeX", "", "nodeX"]
    assert labels_of(t, "gpu") == ["GPU-abc", "", "GPU-abc"]
    t.apply({"k": "S", "n": [1], "w": 4, "h": "nodeX", "g": "GPU-abc"})
    assert t.labels == ["nodeX", "GPU-abc"]  # labels are shared, not repeated


def test_apply_done_records_values_metrics_errors_and_counts():
    t = TrialTable(1)
    t.apply({"k": "A", "n0": 0, "u": [[0.1], [0.2], [0.3]]})
    t.apply({"k": "D", "n": [0, 2], "s": [COMPLETE, FAILED], "v": [1.5, float("nan")],
             "t0": [1.0, 2.0], "t1": [3.0, 4.0], "m": {"acc": [[0], [0.75]]},
             "e": {"2": "trace"}})
    assert t.state.data.tolist() == [COMPLETE, RUNNING, FAILED]
    assert t.value.data[0] == 1.5 and np.isnan(t.value.data[1:]).all()
    assert t.t_start.data[[0, 2]].tolist() == [1.0, 2.0]
    assert t.t_end.data[[0, 2]].tolist() == [3.0, 4.0]
    assert t.metrics["acc"].data[0] == 0.75 and np.isnan(t.metrics["acc"].data[1:]).all()
    assert t.errors == {2: "trace"}
    assert t.n_finished == 2
    # a D without metrics/errors keys is fine
    t.apply({"k": "D", "n": [1], "s": [PRUNED], "v": [0.0], "t0": [5.0], "t1": [6.0]})
    assert t.n_finished == 3
    assert t.counts() == {**dict.fromkeys(STATES, 0), "complete": 1, "failed": 1,
                          "pruned": 1}


def test_finishing_again_does_not_count_twice():
    t = TrialTable(1)
    t.apply({"k": "A", "n0": 0, "u": [[0.1]]})
    d = {"k": "D", "n": [0], "s": [COMPLETE], "v": [1.0], "t0": [0.0], "t1": [1.0]}
    t.apply(d)
    t.apply(d)
    assert t.n_finished == 1


def test_apply_curve_and_interrupt():
    t = TrialTable(1)
    t.apply({"k": "A", "n0": 0, "u": [[0.1], [0.2]]})
    t.apply({"k": "C", "n": [1, 1], "st": [1, 2], "v": [0.3, 0.2], "t": [7.0, 8.0]})
    assert t.n_curve == 2
    assert t.curve_trial.data.tolist() == [1, 1]
    assert t.curve_step.data.tolist() == [1.0, 2.0]
    assert t.curve_value.data.tolist() == [0.3, 0.2]
    assert t.curve_time.data.tolist() == [7.0, 8.0]
    t.apply({"k": "I", "n": [0, 1]})
    assert t.state.data.tolist() == [INTERRUPTED, INTERRUPTED]
    assert t.n_finished == 0


def test_each_trials_latest_report_is_kept_in_arrival_order():
    """last_step/last_value: where a trial stopped (samplers rank pruned trials by it),
    the latest report even when steps repeat or batches interleave trials."""
    t = TrialTable(1)
    t.apply({"k": "A", "n0": 0, "u": [[0.1], [0.2], [0.3]]})
    t.apply({"k": "C", "n": [0, 1, 0], "st": [1, 1, 2], "v": [0.5, 0.4, 0.3],
             "t": [1.0, 1.0, 2.0]})
    t.apply({"k": "C", "n": [1, 1], "st": [3, 3], "v": [0.2, 0.1], "t": [3.0, 3.0]})
    assert t.last_step.data[:2].tolist() == [2.0, 3.0]
    assert t.last_value.data[:2].tolist() == [0.3, 0.1]
    assert np.isnan(t.last_step.data[2]) and np.isnan(t.last_value.data[2])


def test_apply_unknown_event():
    with pytest.raises(ValueError, match="unknown journal event"):
        TrialTable(1).apply({"k": "Z"})


def test_columns_grow_past_their_capacity():
    t = TrialTable(2)
    for start in range(0, 3000, 700):
        size = min(700, 3000 - start)
        t.apply({"k": "A", "n0": start, "u": np.full((size, 2), start / 3000).tolist()})
    t.apply({"k": "D", "n": list(range(3000)), "s": [COMPLETE] * 3000,
             "v": list(range(3000)), "t0": [0.0] * 3000, "t1": [1.0] * 3000,
             "m": {"m": [[2999], [7.0]]}})
    assert t.n == 3000 and t.n_finished == 3000
    assert t.value.data.tolist() == list(range(3000))
    assert t.unit.data[2999, 0] == 2800 / 3000
    assert len(t.metrics["m"].data) == 3000 and t.metrics["m"].data[2999] == 7.0


def test_best_and_interrupt_running():
    t = built_table()
    assert t.best("minimize") == 5 and t.best("maximize") == 0
    t.apply({"k": "A", "n0": 7, "u": [[0.5] * D]})
    assert t.interrupt_running().tolist() == [6, 7]
    assert t.state.data[6] == INTERRUPTED
    assert TrialTable(1).best("minimize") is None


# ---- journal -------------------------------------------------------------------------


def test_journal_log_write_read(tmp_path):
    path = str(tmp_path / "j")
    j = Journal(path, seq=10, fsync=True)
    assert j.log({"k": "I", "n": [1]}) == 11
    assert j.pending
    assert list(read_journal(path)) == []  # only buffered so far
    j.write()
    assert not j.pending
    j.log({"k": "I", "n": [2]})
    j.sync()
    assert [e["q"] for e in read_journal(path)] == [11, 12]
    assert [e["q"] for e in read_journal(path, after=11)] == [12]
    j.truncate()
    assert list(read_journal(path)) == []
    j.log({"k": "I", "n": [3]})
    j.close()
    assert [(e["q"], e["n"]) for e in read_journal(path)] == [(13, [3])]
    j.close()  # twice is harmless
    assert os.path.exists(path)


def test_journal_close_remove(tmp_path):
    path = str(tmp_path / "j")
    j = Journal(path, seq=0)
    j.log({"k": "I", "n": [1]})
    j.close(remove=True)
    assert not os.path.exists(path)


def test_read_missing_journal(tmp_path):
    assert list(read_journal(str(tmp_path / "nope"))) == []


def lines(*qs) -> bytes:
    return b"".join(json.dumps({"k": "I", "n": [q], "q": q}).encode() + b"\n" for q in qs)


def test_journal_torn_last_line_is_ignored(tmp_path):
    path = tmp_path / "j"
    full = lines(1, 2, 3)
    torn = full + b'{"k":"D","n":[4],"s":[1'
    path.write_bytes(torn)
    assert [e["q"] for e in read_journal(str(path))] == [1, 2, 3]
    path.write_bytes(torn + b"\n\n")  # trailing blank lines do not matter
    assert [e["q"] for e in read_journal(str(path))] == [1, 2, 3]
    path.write_bytes(full[:-1])  # last line complete but without its newline
    assert [e["q"] for e in read_journal(str(path))] == [1, 2, 3]


def test_journal_damaged_middle_line_raises(tmp_path):
    path = tmp_path / "j"
    path.write_bytes(lines(1) + b'{"k":"I",garbage\n' + lines(3))
    with pytest.raises(ValueError, match="line 2"):
        list(read_journal(str(path)))


# ---- snapshot ------------------------------------------------------------------------


def meta(**kw) -> Meta:
    kw.setdefault("space_json", SPACE.to_json())
    kw.setdefault("settings_json", Settings().to_json())
    kw.setdefault("seed", 987654321)
    kw.setdefault("direction", "minimize")
    kw.setdefault("journal_seq", 17)
    return Meta(**kw)


def test_snapshot_round_trip_keeps_every_column(tmp_path):
    path = str(tmp_path / "r.h5")
    table = built_table()
    m = meta(runs=[{"start": 1.0, "ranks": 4}], complete=True)
    write_snapshot(path, m, table)
    m2, t2 = read_snapshot(path)
    assert_same_table(table, t2)
    assert (m2.space_json, m2.settings_json, m2.seed, m2.direction, m2.journal_seq) == \
        (m.space_json, m.settings_json, m.seed, m.direction, m.journal_seq)
    assert m2.runs == m.runs and m2.complete is True
    assert m2.created == pytest.approx(m.created)
    assert os.listdir(tmp_path) == ["r.h5"]  # no temporary file left behind


def test_snapshot_of_empty_table(tmp_path):
    path = str(tmp_path / "r.h5")
    write_snapshot(path, meta(), TrialTable(D))
    _, t = read_snapshot(path)
    assert t.n == 0 and t.n_curve == 0 and t.n_finished == 0


def test_snapshot_opens_with_plain_h5py_and_has_the_documented_layout(tmp_path):
    path = str(tmp_path / "r.h5")
    table = built_table()
    write_snapshot(path, meta(), table)
    with h5py.File(path, "r") as f:
        a = f.attrs
        assert a["format"] == FORMAT_NAME == "mpitune-results"
        assert int(a["format_version"]) == FORMAT_VERSION
        assert Space.from_json(a["space"]).to_json() == SPACE.to_json()
        assert json.loads(a["settings"])["max_trials"] == 100
        assert int(a["seed"]) == 987654321
        assert int(a["journal_seq"]) == 17
        assert a["direction"] == "minimize"
        assert int(a["n_trials"]) == 7
        t = f["trials"]
        assert t["number"][...].tolist() == list(range(7))
        assert [s.decode() for s in t["state"][...]] == \
            [STATES[c] for c in table.state.data]
        assert t["error"].asstr()[1].startswith("rank 1 on node-a")
        assert [h.decode() for h in t["host"][...]] == labels_of(table, "host")
        assert [g.decode() for g in t["gpu"][...]] == labels_of(table, "gpu")
        p = t["params"]
        assert set(p) == set(SPACE.names)
        assert p["x"].dtype == np.float64 and p["width"].dtype == np.int64
        assert p["flag"].dtype == np.bool_ and p["k"].dtype == np.int64
        assert p["f"].dtype == np.float64
        expected = param_columns(SPACE, table.unit.data)
        for name in ("act", "cfg"):
            assert p[name].asstr()[...].tolist() == expected[name].tolist()
        for name in ("x", "lr", "width", "batch", "flag", "k", "f"):
            np.testing.assert_array_equal(p[name][...], expected[name])
        assert set(t["metrics"]) == {"acc", "loss2"}
        assert f["curves"]["trial"][...].tolist() == [0, 0, 2]


def test_param_columns_are_user_values():
    unit = np.random.default_rng(5).random((40, D))
    cols = param_columns(SPACE, unit)
    rows = SPACE.rows(unit)
    for j, name in enumerate(SPACE.names):
        values = [r[j] for r in rows]
        if name == "cfg":
            assert [json.loads(v) for v in cols[name]] == values
        else:
            assert cols[name].tolist() == values


def test_bug_snapshot_survives_error_text_with_lone_surrogate(tmp_path):
    """BUG (snapshot.py, write_snapshot: the ``error`` dataset is written as strict UTF-8):
    an objective whose exception message holds a surrogate-escaped byte (e.g. a
    FileNotFoundError for a file name that is not UTF-8, as os.listdir returns it) gives an
    error text that the journal stores fine but h5py cannot encode: write_snapshot raises
    UnicodeEncodeError (not an OSError, so not even a StorageError), every later snapshot
    and every resume fail the same way. Fix: store error texts (and labels) with
    ``text.encode('utf-8', 'backslashreplace').decode()`` or sanitise them in run_trial."""
    path = str(tmp_path / "r.h5")
    name = os.fsdecode(b"data-\xff.csv")
    t = TrialTable(D)
    t.apply({"k": "A", "n0": 0, "u": [[0.5] * D]})
    t.apply({"k": "D", "n": [0], "s": [FAILED], "v": [float("nan")], "t0": [0.0],
             "t1": [1.0], "e": {"0": f"FileNotFoundError: no such file: '{name}'"}})
    write_snapshot(path, meta(), t)
    _, back = read_snapshot(path)
    assert "data-" in back.errors[0]


def test_one_long_error_or_choice_does_not_widen_every_row(tmp_path):
    """Text columns of load() are object arrays: a fixed-width one (``astype(str)``) took
    trials x longest text x 4 bytes, 1.6 GB for one 30,000-character traceback among
    20,000 trials (and as much for long text choices)."""
    long_choice = "p" * 5000
    space = Space({"prompt": Categorical(["short", long_choice]), "x": Real(0.0, 1.0)})
    s = settings(tmp_path)
    store = Store.open(s, space, 1)
    n = 2000
    unit = np.column_stack([np.where(np.arange(n) % 2, 0.75, 0.25), np.full(n, 0.5)])
    store.table.apply({"k": "A", "n0": 0, "u": unit.tolist()})
    store.table.apply({"k": "D", "n": [5], "s": [FAILED], "v": [np.nan], "t0": [0.0],
                       "t1": [1.0], "e": {"5": "Traceback " + "x" * 30_000}})
    store.close("complete")
    r = mpitune.load(s.storage)
    for name in ("error", "prompt", "host", "gpu"):
        assert r[name].dtype == object and r[name].nbytes == 8 * n, name
    assert r["error"][5].startswith("Traceback xxx") and r["error"][4] == ""
    assert r["prompt"][1] == long_choice and r["prompt"][0] == "short"
    assert isinstance(r["prompt"][0], str) and (r["prompt"] == "short").sum() == n // 2


def test_snapshot_survives_error_text_with_nul(tmp_path):
    """An exception message with a NUL (text decoded from a binary header) made h5py raise
    "VLEN strings do not support embedded NULLs" at every snapshot and every resume: the
    search could never be resumed. The NUL is stored as the four characters \\x00."""
    path = str(tmp_path / "r.h5")
    t = TrialTable(D)
    t.apply({"k": "A", "n0": 0, "u": [[0.5] * D]})
    t.apply({"k": "D", "n": [0], "s": [FAILED], "v": [float("nan")], "t0": [0.0],
             "t1": [1.0], "e": {"0": "ValueError: unexpected header A\x00B"}})
    write_snapshot(path, meta(), t)
    _, back = read_snapshot(path)
    assert back.errors[0] == "ValueError: unexpected header A\\x00B"


def test_read_snapshot_refuses_other_files(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(StorageError, match="cannot be read as HDF5"):
        read_snapshot(str(text))
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["data"] = np.arange(3)
    with pytest.raises(StorageError, match="not an mpitune results file"):
        read_snapshot(str(other))


# ---- read_state ----------------------------------------------------------------------


def test_read_state_missing(tmp_path):
    with pytest.raises(StorageError, match="does not exist"):
        read_state(str(tmp_path / "nope.h5"))
    (tmp_path / "orphan.h5.journal").write_text("")
    with pytest.raises(StorageError, match="journal"):
        read_state(str(tmp_path / "orphan.h5"))


def write_journal(path: str, evs: list[dict], first_q: int) -> None:
    with open(path, "ab") as f:
        for q, e in enumerate(evs, start=first_q):
            f.write(json.dumps({**e, "q": q}).encode() + b"\n")


def test_read_state_replays_newer_journal_lines(tmp_path):
    path = str(tmp_path / "r.h5")
    evs = events()
    snap = TrialTable(D)
    for e in evs[:4]:
        snap.apply(e)
    write_snapshot(path, meta(journal_seq=4), snap)
    write_journal(path + JOURNAL_SUFFIX, evs[4:], first_q=5)
    m, t = read_state(path)
    assert_same_table(built_table(), t)
    assert m.journal_seq == len(evs)


def test_read_state_skips_lines_already_in_the_snapshot(tmp_path):
    """A crash between the snapshot's os.replace and the journal's truncate leaves old
    lines in the journal; the snapshot's journal_seq says which of them to skip."""
    path = str(tmp_path / "r.h5")
    evs = events()
    snap = TrialTable(D)
    for e in evs[:6]:
        snap.apply(e)
    write_snapshot(path, meta(journal_seq=6), snap)
    write_journal(path + JOURNAL_SUFFIX, evs, first_q=1)  # lines 1..6 old, 7..9 new
    m, t = read_state(path)
    assert_same_table(built_table(), t)
    assert m.journal_seq == 9
    # all lines old: nothing replayed
    write_snapshot(path, meta(journal_seq=9), built_table())
    m, t = read_state(path)
    assert_same_table(built_table(), t)


def test_read_state_refuses_a_gap_in_the_journal(tmp_path):
    path = str(tmp_path / "r.h5")
    write_snapshot(path, meta(journal_seq=0), TrialTable(D))
    write_journal(path + JOURNAL_SUFFIX, events()[:1], first_q=2)
    before = file_bytes(path)
    with pytest.raises(StorageError, match="cannot be replayed"):
        read_state(path)
    assert file_bytes(path) == before


def test_read_state_refuses_a_damaged_journal(tmp_path):
    path = str(tmp_path / "r.h5")
    write_snapshot(path, meta(journal_seq=0), TrialTable(D))
    with open(path + JOURNAL_SUFFIX, "wb") as f:
        f.write(b"garbage\n" + lines(1))
    with pytest.raises(StorageError, match="cannot be replayed"):
        read_state(path)


# ---- Store ---------------------------------------------------------------------------


def test_store_open_fresh_writes_initial_snapshot(tmp_path):
    s = settings(tmp_path)
    store = Store.open(s, SPACE, 3)
    try:
        path = s.storage
        assert os.path.exists(path) and os.path.exists(path + LOCK_SUFFIX)
        with h5py.File(path, "r") as f:
            assert f.attrs["format"] == FORMAT_NAME
            assert int(f.attrs["seed"]) == 42
            assert int(f.attrs["n_trials"]) == 0
            assert json.loads(f.attrs["runs"])[0]["ranks"] == 3
        assert store.table.n == 0 and store.meta.seed == 42
    finally:
        store.close("complete")
    assert not os.path.exists(s.storage + LOCK_SUFFIX)
    assert not os.path.exists(s.storage + JOURNAL_SUFFIX)


def test_store_draws_and_keeps_a_seed(tmp_path):
    s = settings(tmp_path, seed=None)
    store = Store.open(s, SPACE, 1)
    seed = store.meta.seed
    assert isinstance(seed, int) and seed >= 0
    store.close("stopped")
    store = Store.open(s, SPACE, 1)
    assert store.meta.seed == seed
    store.close("stopped")


def record_all(store: Store) -> None:
    for e in events():
        store.record(dict(e))


def test_store_record_snapshot_close_and_resume(tmp_path):
    s = settings(tmp_path)
    store = Store.open(s, SPACE, 2)
    record_all(store)
    assert_same_table(built_table(), store.table)
    store.snapshot()
    assert os.path.getsize(s.storage + JOURNAL_SUFFIX) == 0
    store.record({"k": "A", "n0": 7, "u": [[0.5] * D]})
    store.journal.write()
    # a reader during the run sees snapshot + journal
    _, live = read_state(s.storage)
    assert live.n == 8
    store.close("complete")
    m, t = read_state(s.storage)
    assert t.n == 8 and m.complete is True
    with h5py.File(s.storage, "r") as f:
        run = json.loads(f.attrs["runs"])[-1]
        assert run["status"] == "complete" and run["end"] is not None

    # resume: running trials become interrupted, finished ones are kept
    store = Store.open(s, SPACE, 2)
    try:
        t = store.table
        assert t.n == 8
        assert t.state.data[6] == INTERRUPTED and t.state.data[7] == INTERRUPTED
        assert t.state.data[3] == INTERRUPTED
        assert t.n_finished == sum(int(x in FINISHED) for x in t.state.data)
        assert len(store.meta.runs) == 2 and store.meta.complete is False
    finally:
        store.close("stopped")


def test_store_crash_keeps_journal_and_resume_replays_it(tmp_path):
    s = settings(tmp_path)
    store = Store.open(s, SPACE, 2)
    record_all(store)
    store.abandon()  # a fatal error: no final snapshot, journal kept
    assert os.path.exists(s.storage + JOURNAL_SUFFIX)
    assert not os.path.exists(s.storage + LOCK_SUFFIX)
    store = Store.open(s, SPACE, 2)
    try:
        expected = built_table()
        expected.interrupt_running()
        assert_same_table(expected, store.table)
        assert not os.path.exists(s.storage + JOURNAL_SUFFIX) or \
            os.path.getsize(s.storage + JOURNAL_SUFFIX) == 0
    finally:
        store.close("stopped")


def test_store_simulated_crash_between_snapshot_and_truncate(tmp_path):
    s = settings(tmp_path)
    store = Store.open(s, SPACE, 2)
    evs = events()
    for e in evs[:5]:
        store.record(dict(e))
    store.journal.write()
    store.meta.journal_seq = store.journal.seq
    write_snapshot(store.path, store.meta, store.table)  # ... and the truncate never ran
    for e in evs[5:]:
        store.record(dict(e))
    store.abandon()
    m, t = read_state(s.storage)
    assert_same_table(built_table(), t)
    assert m.journal_seq == len(evs)


def test_store_closes_cleanly_when_the_journal_was_deleted_during_the_run(tmp_path):
    """The final snapshot holds every trial, so a journal someone deleted (a cleanup
    script, a user) costs nothing: close neither fails nor loses a trial."""
    s = settings(tmp_path)
    store = Store.open(s, SPACE, 2)
    record_all(store)
    store.journal.write()
    os.unlink(s.storage + JOURNAL_SUFFIX)
    store.close("complete")
    m, t = read_state(s.storage)
    assert_same_table(built_table(), t)
    assert m.complete is True
    assert sorted(os.listdir(tmp_path)) == ["results.h5"]


def test_store_refuses_a_different_space_and_leaves_the_file_alone(tmp_path):
    s = settings(tmp_path)
    store = Store.open(s, SPACE, 1)
    record_all(store)
    store.close("complete")
    before = file_bytes(s.storage)
    other = Space({"x": Real(-5.0, 11.0)})
    with pytest.raises(SpecError, match="'x' changed") as info:
        Store.open(s, other, 1)
    assert "space differs" in str(info.value)
    assert file_bytes(s.storage) == before
    assert not os.path.exists(s.storage + LOCK_SUFFIX)
    assert not os.path.exists(s.storage + JOURNAL_SUFFIX)


def test_store_refuses_a_different_direction_and_leaves_the_file_alone(tmp_path):
    s = settings(tmp_path)
    Store.open(s, SPACE, 1).close("complete")
    before = file_bytes(s.storage)
    with pytest.raises(SpecError, match="minimize"):
        Store.open(s.replace(direction="maximize"), SPACE, 1)
    assert file_bytes(s.storage) == before
    assert not os.path.exists(s.storage + LOCK_SUFFIX)


def test_store_refuses_a_newer_format_version(tmp_path):
    s = settings(tmp_path)
    Store.open(s, SPACE, 1).close("complete")
    with h5py.File(s.storage, "a") as f:
        f.attrs["format_version"] = FORMAT_VERSION + 1
    before = file_bytes(s.storage)
    with pytest.raises(StorageError, match="newer"):
        Store.open(s, SPACE, 1)
    assert file_bytes(s.storage) == before
    assert not os.path.exists(s.storage + LOCK_SUFFIX)


@pytest.mark.parametrize("damage", ["no_format_version", "settings", "nan_unit", "unit_2"])
def test_damaged_files_are_refused_with_a_storage_error(tmp_path, damage):
    """An attribute or a column that a bit flip or a foreign writer damaged: load and a
    resume both refuse the file with one StorageError naming it, and leave it alone (a
    bare KeyError, IndexError or JSONDecodeError before; the resume rewrote a file whose
    settings it could not read)."""
    s = settings(tmp_path)
    store = Store.open(s, SPACE, 1)
    store.table.apply({"k": "A", "n0": 0, "u": [[0.5] * D]})
    store.close("complete")
    with h5py.File(s.storage, "a") as f:
        if damage == "no_format_version":
            del f.attrs["format_version"]
        elif damage == "settings":
            f.attrs["settings"] = '{"max_trials": 1'
        else:
            unit = f["trials/unit"][...]
            unit[0, SPACE.names.index("act")] = np.nan if damage == "nan_unit" else 2.0
            f["trials/unit"][...] = unit
    before = file_bytes(s.storage)
    for action in (lambda: mpitune.load(s.storage), lambda: Store.open(s, SPACE, 1)):
        with pytest.raises(StorageError, match="results.h5' is damaged or incomplete"):
            action()
    assert file_bytes(s.storage) == before
    assert not os.path.exists(s.storage + LOCK_SUFFIX)


def test_bit_flips_give_a_load_or_a_storage_error(tmp_path):
    """Bytes flipped anywhere in a real results file: mpitune.load returns or raises
    StorageError, never h5py's raw OSError or RuntimeError (a damaged attribute or B-tree)
    or an IndexError (a nan where a choice must be)."""
    s = settings(tmp_path)
    store = Store.open(s, SPACE, 1)
    store.table.apply({"k": "A", "n0": 0, "u": [[0.25] * D, [0.75] * D]})
    store.table.apply({"k": "D", "n": [0, 1], "s": [FAILED, FAILED], "v": [np.nan] * 2,
                       "t0": [0.0] * 2, "t1": [1.0] * 2, "e": {"0": "boom", "1": "bang"}})
    store.close("complete")
    data = file_bytes(s.storage)
    damaged = str(tmp_path / "damaged.h5")
    outcomes = {"loaded": 0, "refused": 0}
    for offset in range(0, len(data), 127):
        with open(damaged, "wb") as f:
            f.write(data[:offset] + bytes(b ^ 0xA5 for b in data[offset:offset + 32])
                    + data[offset + 32:])
        try:
            mpitune.load(damaged)
            outcomes["loaded"] += 1
        except StorageError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 10 and outcomes["loaded"] > 10, outcomes


def test_store_refuses_non_hdf5_and_foreign_hdf5(tmp_path):
    text = tmp_path / "results.h5"
    text.write_bytes(b"not an HDF5 file\n" * 10)
    before = file_bytes(text)
    with pytest.raises(StorageError, match="cannot be read as HDF5"):
        Store.open(settings(tmp_path), SPACE, 1)
    assert file_bytes(text) == before
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.arange(10)
        f.attrs["format"] = "something-else"
    before = file_bytes(foreign)
    with pytest.raises(StorageError, match="not an mpitune results file"):
        Store.open(settings(tmp_path, storage=str(foreign)), SPACE, 1)
    assert file_bytes(foreign) == before
    assert sorted(os.listdir(tmp_path)) == ["foreign.h5", "results.h5"]


def test_store_refuses_missing_directory_and_directory(tmp_path):
    with pytest.raises(StorageError, match="does not exist"):
        Store.open(settings(tmp_path, storage=str(tmp_path / "no" / "r.h5")), SPACE, 1)
    with pytest.raises(StorageError, match="directory"):
        Store.open(settings(tmp_path, storage=str(tmp_path)), SPACE, 1)


def test_store_removes_leftover_temporary_snapshots(tmp_path):
    s = settings(tmp_path)
    leftover = tmp_path / "results.h5.tmp-99999"
    leftover.write_bytes(b"half a snapshot")
    Store.open(s, SPACE, 1).close("complete")
    assert not leftover.exists()


def test_store_tick_writes_and_snapshots(tmp_path):
    s = settings(tmp_path, flush_interval=0.0, snapshot_interval=0.0)
    store = Store.open(s, SPACE, 1)
    try:
        store.record({"k": "A", "n0": 0, "u": [[0.5] * D]})
        store.tick(store.journal.last_write + 10.0)
        assert store.snapshots == 1
        _, t = read_snapshot(s.storage)
        assert t.n == 1
    finally:
        store.close("complete")


# ---- lock ----------------------------------------------------------------------------


def test_second_open_is_refused_while_the_first_is_open(tmp_path):
    s = settings(tmp_path)
    store = Store.open(s, SPACE, 1)
    try:
        before = file_bytes(s.storage)
        with pytest.raises(StorageError, match="in use") as info:
            Store.open(s, SPACE, 1)
        assert f"pid {os.getpid()}" in str(info.value)
        assert file_bytes(s.storage) == before
        assert os.path.exists(s.storage + LOCK_SUFFIX)  # the first run still holds it
    finally:
        store.close("complete")
    Store.open(s, SPACE, 1).close("complete")


def test_two_names_of_one_file_share_its_lock_journal_and_snapshots(tmp_path):
    """A symlink to the results file is resolved once at open: the lock excludes a second
    run by the real name, the journal lies beside the real file (where a reader by either
    name finds it), and snapshots replace the real file, not the link."""
    (tmp_path / "scratch").mkdir()
    real = str(tmp_path / "scratch" / "r.h5")
    link = str(tmp_path / "r.h5")
    Store.open(settings(tmp_path, storage=real), SPACE, 1).close("complete")
    os.symlink(real, link)
    store = Store.open(settings(tmp_path, storage=link), SPACE, 1)
    try:
        with pytest.raises(StorageError, match="in use"):
            Store.open(settings(tmp_path, storage=real), SPACE, 1)
        assert os.path.exists(real + LOCK_SUFFIX) and os.path.exists(real + JOURNAL_SUFFIX)
        store.record({"k": "A", "n0": 0, "u": [[0.5] * D]})
        store.journal.write()
        assert read_state(link)[1].n == 1 and read_state(real)[1].n == 1
        store.snapshot()
        assert os.path.islink(link) and read_snapshot(real)[1].n == 1
    finally:
        store.close("complete")
    assert sorted(os.listdir(tmp_path)) == ["r.h5", "scratch"]
    assert sorted(os.listdir(tmp_path / "scratch")) == ["r.h5"]
    assert store.checkpoint_root == real + ".checkpoints"


def test_store_paths_do_not_move_with_the_working_directory(tmp_path, monkeypatch):
    """A relative storage name is resolved at open: a later chdir (an objective in a serial
    run) changes nothing about where the journal, snapshots and lock go."""
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path)
    store = Store.open(settings(tmp_path, storage="r.h5"), SPACE, 1)
    try:
        monkeypatch.chdir(tmp_path / "elsewhere")
        store.record({"k": "A", "n0": 0, "u": [[0.5] * D]})
        store.tick(store.journal.last_write + 10.0)
        store.snapshot()
    finally:
        store.close("complete")
    assert os.listdir(tmp_path / "elsewhere") == []
    assert sorted(os.listdir(tmp_path)) == ["elsewhere", "r.h5"]
    assert read_state(str(tmp_path / "r.h5"))[1].n == 1


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_lock_of_a_dead_pid_on_this_host_is_taken_over(tmp_path):
    s = settings(tmp_path)
    Store.open(s, SPACE, 1).close("complete")
    lock = s.storage + LOCK_SUFFIX
    with open(lock, "w") as f:
        json.dump({"host": socket.gethostname(), "pid": dead_pid(), "since": 0.0}, f)
    store = Store.open(s, SPACE, 1)
    try:
        with open(lock) as f:
            assert json.load(f)["pid"] == os.getpid()
    finally:
        store.close("complete")


def test_stale_lock_naming_this_very_process_is_taken_over(tmp_path):
    """A lock left by a killed run whose pid this process got again (pid reuse, common in
    containers) blocked every restart; only a lock this process really holds is live.
    Two stores in one process on one file still exclude each other."""
    s = settings(tmp_path)
    Store.open(s, SPACE, 1).close("complete")
    lock = s.storage + LOCK_SUFFIX
    with open(lock, "w") as f:
        json.dump({"host": socket.gethostname(), "pid": os.getpid(), "since": 0.0}, f)
    store = Store.open(s, SPACE, 1)
    try:
        with pytest.raises(StorageError, match="in use") as info:
            Store.open(s, SPACE, 1)
        assert f"pid {os.getpid()}" in str(info.value)
    finally:
        store.close("complete")
    assert not os.path.exists(lock)


def test_lock_of_a_live_process_on_another_host_with_fresh_heartbeat_is_respected(tmp_path):
    results = str(tmp_path / "r.h5")
    with open(results + LOCK_SUFFIX, "w") as f:
        json.dump({"host": "some-other-node", "pid": 1, "since": 0.0}, f)
    with pytest.raises(StorageError, match="some-other-node"):
        FileLock(results).acquire()
    old = os.path.getmtime(results + LOCK_SUFFIX) - 1000
    os.utime(results + LOCK_SUFFIX, (old, old))  # heartbeat older than STALE_AFTER
    lock = FileLock(results)
    lock.acquire()
    assert lock.held
    lock.release()
    assert not os.path.exists(results + LOCK_SUFFIX)


@pytest.mark.parametrize("content", ["", "{half", "[]"])
def test_ownerless_lock_is_respected_only_while_its_creator_may_be_writing_it(tmp_path,
                                                                              content):
    """Empty or unreadable: its creator died (or met a full disk) between creating and
    writing it, or is writing it right now. Taken over after UNWRITTEN_AFTER seconds, not
    STALE_AFTER (a rerun after a kill -9 at that moment starts at once)."""
    results = str(tmp_path / "r.h5")
    with open(results + LOCK_SUFFIX, "w") as f:
        f.write(content)
    with pytest.raises(StorageError, match="another process"):
        FileLock(results).acquire()
    old = time.time() - UNWRITTEN_AFTER - 1
    os.utime(results + LOCK_SUFFIX, (old, old))
    lock = FileLock(results)
    lock.acquire()
    with open(results + LOCK_SUFFIX) as f:
        assert lock.held and json.load(f)["pid"] == os.getpid()
    lock.release()
