"""Start-up and shut-down of a search on every rank, for the CLI and :func:`mpitune.run`.

Order matters: the GPU is bound before the user's spec is imported (frameworks read
``CUDA_VISIBLE_DEVICES`` once), and every error ends the whole job with one message from
rank 0 and a non-zero exit instead of leaving other ranks waiting (``MPI.Abort``).
"""

from __future__ import annotations

import os
import socket
import sys
import time
import traceback
from typing import Callable

from . import protocol as P
from .errors import MpituneError
from .gpu import bind, local_worker_index
from .settings import Settings

Prepare = Callable[[], "tuple[Callable, object, Settings]"]


def _print_error(message: str) -> None:
    sys.stdout.flush()
    sys.stderr.write(f"mpitune: error: {message}\n")
    sys.stderr.flush()


def execute(prepare: Prepare, comm=None, bind_gpus: bool = True, raise_errors: bool = False):
    """Run a search on every rank of ``comm`` (default: COMM_WORLD).

    ``prepare()`` loads the objective, space and settings; it runs after GPU binding.
    Rank 0 (or the only rank) returns ``(Results, exit_code)``; workers return ``None``.
    """
    from mpi4py import MPI

    world = MPI.COMM_WORLD if comm is None else comm
    comm = world.Dup()
    rank, size = comm.rank, comm.size
    try:
        if size == 1:
            try:
                return _serial(prepare, bind_gpus)
            except MpituneError as e:
                if raise_errors:
                    raise
                _print_error(str(e))
                return None, e.exit_code
        index = local_worker_index(comm)
        if rank == 0:
            return _master(comm, prepare)
        _worker(comm, prepare, index, bind_gpus)
        return None
    except MpituneError as e:
        _print_error(str(e))
        _abort(comm, e.exit_code)
    except BaseException as e:  # noqa: BLE001 - never leave the other ranks hanging
        if size == 1 and raise_errors:
            raise
        head = f"rank {rank} on {socket.gethostname()}: internal error"
        sys.stderr.write(f"mpitune: {head}\n{''.join(traceback.format_exception(e))}")
        _abort(comm, 1)
    finally:
        if not comm.is_inter and comm != MPI.COMM_NULL:
            comm.Free()


def _abort(comm, code: int) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    if comm.size > 1:
        comm.Abort(code)
    sys.exit(code)


def _bound(prepare: Prepare, index: int, bind_gpus: bool):
    """Bind a GPU, then load the spec; undo the binding if the spec turns it off."""
    before = os.environ.get("CUDA_VISIBLE_DEVICES")
    binding = bind(index, enabled=bind_gpus)
    objective, space, settings = prepare()
    if bind_gpus and not settings.bind_gpus:
        if before is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = before
        binding = bind(index, enabled=False)
    return binding, objective, space, settings


def _open(prepare_result, n_workers: int, n_ranks: int):
    """Validate everything, then open the store: nothing is written before all checks."""
    from .samplers import make_sampler
    from .space import Space
    from .store import Store
    from .suggester import Suggester

    objective, space_def, settings = prepare_result
    space = Space(space_def)
    settings.validate()
    store = Store.open(settings, space, n_ranks)
    sampler = make_sampler(settings.sampler)
    sampler.bind(space, store.meta.seed)
    suggester = Suggester(sampler, space, store.table, settings.batch_size or n_workers,
                          settings.direction)
    return objective, space, settings, store, suggester


def _announce(store, space, settings, n_workers: int, sampler) -> None:
    from .progress import log

    t = store.table
    resumed = (f"resuming {t.n_finished} finished trials, {len(_rerun(t))} to re-run"
               if t.n else "new search")
    log(f"{n_workers} worker(s), {settings.max_trials} trials to {settings.direction}, "
        f"{space.ndim} parameter(s), sampler {sampler!r}, storage {settings.storage} "
        f"({resumed})")


def _rerun(table):
    import numpy as np

    from .table import INTERRUPTED

    return np.flatnonzero(table.state.data == INTERRUPTED)


def _finish(master, store, path: str, status: str, code: int):
    from .results import results_from_table

    store.close(status)
    master.progress.summary(status, time.monotonic(), path)
    results = results_from_table(path, store.meta, store.table)
    results.status = status
    return results, code


def _run_master(master, store, settings):
    try:
        status, code = master.run()
    except BaseException:
        store.abandon()
        raise
    return _finish(master, store, settings.storage, status, code)


def _master(comm, prepare: Prepare):
    from .channel import MPIChannel
    from .master import Master

    objective, space, settings, store, suggester = _open(prepare(), comm.size - 1, comm.size)
    _announce(store, space, settings, comm.size - 1, suggester.sampler)
    channel = MPIChannel(comm)
    master = Master(channel, list(range(1, comm.size)), store, suggester, space, settings)
    results, code = _run_master(master, store, settings)
    if not all(w.done for w in master.workers.values()):
        from .progress import log

        log("some workers did not stop within the grace period; ending the job")
        _abort(comm, code)
    backoff = P.Backoff()
    while channel.sending:
        backoff.pause()
    return results, code


def _serial(prepare: Prepare, bind_gpus: bool):
    from .channel import LocalChannel
    from .master import Master
    from .worker import Worker

    binding, objective, space_def, settings = _bound(prepare, 0, bind_gpus)
    objective, space, settings, store, suggester = _open((objective, space_def, settings), 1, 1)
    _announce(store, space, settings, 1, suggester.sampler)
    mine, theirs = LocalChannel.pair(0, 1)
    inline = Worker(theirs, objective, binding, socket.gethostname())
    inline.where = f"serial run on {inline.host}"
    inline.start()
    master = Master(mine, [1], store, suggester, space, settings, inline=inline)
    return _run_master(master, store, settings)


def _worker(comm, prepare: Prepare, index: int, bind_gpus: bool) -> None:
    from .channel import MPIChannel
    from .worker import Worker

    channel = MPIChannel(comm)
    try:
        binding, objective, _, _ = _bound(prepare, index, bind_gpus)
    except MpituneError as e:
        _wait_for_master(channel, str(e))
        return
    except BaseException as e:  # noqa: BLE001 - reported by rank 0, which ends the job
        _wait_for_master(channel, f"{type(e).__name__}: {e}")
        return
    Worker(channel, objective, binding, socket.gethostname()).run()


def _wait_for_master(channel, message: str) -> None:
    """Tell rank 0 why this worker cannot start, then wait to be stopped or aborted."""
    channel.post(0, P.FATAL, f"{message} (on {socket.gethostname()})")
    backoff = P.Backoff()
    while True:
        for _, tag, _payload in channel.fetch(0):
            if tag == P.STOP:
                return
        backoff.pause()

