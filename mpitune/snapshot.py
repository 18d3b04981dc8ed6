"""HDF5 snapshots of the trial table: written whole to a temporary file, fsynced, renamed.

An in-place HDF5 update is not crash-safe (a kill inside a write can leave the file
unreadable), but ``os.replace`` is atomic: the results file is always either the previous
snapshot or the new one, and it opens with a plain ``h5py.File(path, "r")`` at every moment.
The HDF5 file is built in memory (h5py on a ``BytesIO``) and written with one plain
``write``: a full disk or quota then fails as an ``OSError`` there, instead of failing
inside HDF5, which leaves its objects unclosable (a stream of "Exception ignored" errors,
then a crash at exit). The price, measured with benchmarks/store_cost.py: 0.86 s instead
of 0.62 s for a 333 MB file, and up to twice the file's size in memory meanwhile. The
layout is documented in the README ("The results file") and versioned by the
``format_version`` attribute.
"""

from __future__ import annotations

import io
import json
import os
import time
from dataclasses import dataclass, field

import h5py
import numpy as np

from .errors import StorageError
from .space import Categorical, Integer, Real, Space
from .table import FINISHED, STATES, TrialTable
from .trial import clean_text

FORMAT_NAME = "mpitune-results"
FORMAT_VERSION = 1
_STATE_DTYPE = "S11"
_STR = h5py.string_dtype("utf-8")


@dataclass
class Meta:
    """What a snapshot stores besides the table."""

    space_json: str
    settings_json: str
    seed: int
    direction: str
    journal_seq: int = 0
    created: float = field(default_factory=time.time)
    runs: list = field(default_factory=list)
    complete: bool = False


def _fixed_strings(texts: list[str], index: np.ndarray) -> np.ndarray:
    table = np.array([t.encode() for t in texts] or [b""], dtype=bytes)
    out = table[np.maximum(index, 0)]
    out[index < 0] = b""
    return out


def param_columns(space: Space, unit: np.ndarray) -> dict[str, np.ndarray]:
    """Typed parameter columns for the HDF5 file and :func:`mpitune.load`.

    Reals are float64, integers int64; categorical columns hold the choices themselves
    (strings, numbers or booleans; other JSON values as JSON text). A conditional
    parameter is missing where it was inactive: nan in a numeric column (conditional
    integer and boolean columns are float64 so that they can hold nan), "" in a text one.
    Text columns are object arrays of ``str`` that share one object per choice: a
    fixed-width array would take trials x longest choice x 4 bytes.
    """
    out = {}
    for j, (dim, col) in enumerate(zip(space.dims, space.columns(unit))):
        if isinstance(dim, Real):
            col = col.astype(np.float64)
        elif isinstance(dim, Integer):
            col = col.astype(np.float64 if dim.when else np.int64)
        elif isinstance(dim, Categorical):
            kind = dim.column_kind
            if kind == "json":
                texts = np.empty(dim.size, dtype=object)
                texts[:] = [json.dumps(c) for c in dim.choices]
                col = texts[dim.index(np.nan_to_num(unit[:, j]))]
            elif kind != "str":  # text choices: col already holds them, as objects
                col = col.astype(np.float64 if dim.when else
                                 {"int": np.int64, "float": np.float64, "bool": np.bool_}[kind])
        if dim.when:
            missing = np.isnan(unit[:, j])
            col[missing] = "" if col.dtype.kind == "O" else np.nan
        out[dim.name] = col
    return out


def write_snapshot(path: str, meta: Meta, table: TrialTable) -> float:
    """Write ``table`` to ``path`` atomically; return the seconds it took."""
    t0 = time.perf_counter()
    space = Space.from_json(meta.space_json)
    tmp = f"{path}.tmp-{os.getpid()}"
    n = table.n
    try:
        image = io.BytesIO()
        with h5py.File(image, "w") as f:
            a = f.attrs
            a["format"] = FORMAT_NAME
            a["format_version"] = FORMAT_VERSION
            from . import __version__

            a["mpitune_version"] = __version__
            a["space"] = meta.space_json
            a["settings"] = meta.settings_json
            a["seed"] = meta.seed
            a["direction"] = meta.direction
            a["journal_seq"] = meta.journal_seq
            a["created"] = meta.created
            a["updated"] = time.time()
            a["runs"] = json.dumps(meta.runs)
            a["complete"] = meta.complete
            a["n_trials"] = n
            t = f.create_group("trials")
            t.create_dataset("number", data=np.arange(n, dtype=np.int64))
            states = np.array([s.encode() for s in STATES], dtype=_STATE_DTYPE)
            t.create_dataset("state", data=states[table.state.data])
            t.create_dataset("value", data=table.value.data)
            t.create_dataset("worker", data=table.worker.data)
            t.create_dataset("host", data=_fixed_strings(table.labels, table.host.data))
            t.create_dataset("gpu", data=_fixed_strings(table.labels, table.gpu.data))
            t.create_dataset("t_start", data=table.t_start.data)
            t.create_dataset("t_end", data=table.t_end.data)
            errors = np.full(n, "", dtype=object)
            for number, text in table.errors.items():
                errors[number] = clean_text(text)
            t.create_dataset("error", data=errors, dtype=_STR)
            t.create_dataset("unit", data=table.unit.data.reshape(n, table.ndim))
            params = t.create_group("params")
            for name, col in param_columns(space, table.unit.data).items():
                if col.dtype.kind == "O":
                    params.create_dataset(name, data=col, dtype=_STR)
                else:
                    params.create_dataset(name, data=col)
            metrics = t.create_group("metrics")
            for name, col in table.metrics.items():
                metrics.create_dataset(name, data=col.data)
            c = f.create_group("curves")
            c.create_dataset("trial", data=table.curve_trial.data)
            c.create_dataset("step", data=table.curve_step.data)
            c.create_dataset("value", data=table.curve_value.data)
            c.create_dataset("time", data=table.curve_time.data)
        with open(tmp, "wb") as out:
            out.write(image.getbuffer())
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
        _fsync_dir(os.path.dirname(os.path.abspath(path)))
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return time.perf_counter() - t0


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _decode(array) -> list[str]:
    return [x.decode() if isinstance(x, bytes) else str(x) for x in array]


def _check_unit(unit: np.ndarray, space: Space) -> None:
    """Every stored coordinate in [0, 1], nan only where a parameter is conditional."""
    conditional = np.array([bool(dim.when) for dim in space.dims], dtype=bool)
    missing = np.isnan(unit)
    if (missing & ~conditional).any():
        raise ValueError("a parameter that is always active has no value")
    with np.errstate(invalid="ignore"):
        if ((unit < 0) | (unit > 1)).any():
            raise ValueError("a unit coordinate is outside [0, 1]")


def _read_open(f: h5py.File, path: str) -> tuple[Meta, TrialTable]:
    """The body of :func:`read_snapshot`, on the open file; h5py and value errors left
    to the caller to name."""
    a = f.attrs
    if a.get("format") != FORMAT_NAME:
        raise StorageError(f"'{path}' is an HDF5 file but not an mpitune results file; it "
                           f"was not touched: choose another --storage")
    version = int(a["format_version"])
    if version > FORMAT_VERSION:
        raise StorageError(f"'{path}' has format version {version}, newer than this "
                           f"mpitune reads ({FORMAT_VERSION}); upgrade mpitune")
    meta = Meta(space_json=a["space"], settings_json=a["settings"],
                seed=int(a["seed"]), direction=str(a["direction"]),
                journal_seq=int(a["journal_seq"]), created=float(a["created"]),
                runs=json.loads(a["runs"]), complete=bool(a["complete"]))
    json.loads(meta.settings_json or "{}")
    space = Space.from_json(meta.space_json)
    t = f["trials"]
    n = len(t["number"])
    table = TrialTable(space.ndim)
    unit = t["unit"][...].reshape(n, space.ndim)
    _check_unit(unit, space)
    table.add(unit)
    names, index = np.unique(t["state"][...], return_inverse=True)
    codes = {s.encode(): i for i, s in enumerate(STATES)}
    table.state.data[:] = np.array([codes[x] for x in names], dtype=np.uint8)[index]
    table.value.data[:] = t["value"][...]
    table.worker.data[:] = t["worker"][...]
    for column in ("host", "gpu"):
        names, index = np.unique(t[column][...], return_inverse=True)
        labels = [table.label(x) if x else -1 for x in _decode(names)]
        getattr(table, column).data[:] = np.array(labels, dtype=np.int32)[index]
    table.t_start.data[:] = t["t_start"][...]
    table.t_end.data[:] = t["t_end"][...]
    errors = t["error"][...]  # bytes objects: decode only the non-empty ones
    for number in np.flatnonzero(errors != b""):
        table.errors[int(number)] = errors[number].decode()
    for name, ds in t["metrics"].items():
        table.set_metrics({name: (slice(None), ds[...])})
    c = f["curves"]
    table.add_curve(c["trial"][...], c["step"][...], c["value"][...], c["time"][...])
    return meta, table


def read_snapshot(path: str) -> tuple[Meta, TrialTable]:
    """Read a snapshot back into a :class:`Meta` and a :class:`TrialTable`.

    Raises :class:`StorageError` naming the file when it is not a readable mpitune file.
    """
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise StorageError(f"results file '{path}' cannot be read as HDF5 ({e}); it was not "
                           f"touched: move it away or choose another --storage") from None
    with f:
        try:
            meta, table = _read_open(f, path)
        except (KeyError, ValueError, TypeError, IndexError, OSError, RuntimeError) as e:
            # OSError and RuntimeError: h5py's for a damaged header, attribute or B-tree
            raise StorageError(f"results file '{path}' is damaged or incomplete "
                               f"({type(e).__name__}: {e}); it was not touched") from None
    table.n_finished = int(np.isin(table.state.data, FINISHED).sum())
    return meta, table
