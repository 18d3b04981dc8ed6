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
from . import stopsignals
from .errors import MpituneError, error_line
from .gpu import bind, local_worker_index
from .settings import Settings

Prepare = Callable[[], "tuple[Callable, object, Settings]"]


def _print_error(message: str) -> None:
    sys.stdout.flush()
    sys.stderr.write(error_line(message))
    sys.stderr.flush()


def execute(prepare: Prepare, comm=None, bind_gpus: bool = True, raise_errors: bool = False):
    """Run a search on every rank of ``comm`` (default: COMM_WORLD).

    ``prepare()`` loads the objective, space and settings; it runs after GPU binding.
    Rank 0 (or the only rank) returns ``(Results or None, exit_code)``; workers return
    ``None``. Under MPI every rank ends in a non-blocking barrier, so that rank 0 can stop
    the workers in order after an error instead of aborting; only when they do not answer
    within ``SHUTDOWN_WAIT`` seconds is the job aborted.
    """
    from mpi4py import MPI

    world = MPI.COMM_WORLD if comm is None else comm
    if world.size > 1:
        _meet(world)
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
        _final_barrier(comm, timeout=None)
        return None
    except BaseException as e:  # noqa: BLE001 - never leave the other ranks hanging
        if size == 1 and raise_errors:
            raise
        head = f"rank {rank} on {socket.gethostname()}: internal error"
        text = "".join(traceback.format_exception(type(e), e, e.__traceback__))
        sys.stderr.write(f"mpitune: {head}\n{text}")
        _abort(comm, 1)
    finally:
        comm.Free()


SHUTDOWN_WAIT = 5.0
STARTUP_WAIT = 600.0  # seconds; MPITUNE_STARTUP_TIMEOUT overrides it
# seconds between a rank's last words and its MPI_Abort: the launcher forwards a rank's
# output asynchronously and drops what it has not read when Abort tears the job down
# (hydra under load lost the one line that said why, 1 run in 4)
FORWARD_WAIT = 1.0
STARTUP_STAGGER = 3.0  # seconds between rank 0, rank 1 and the rest giving up at start-up


def _meet(world) -> None:
    """Check that every rank of ``world`` has started the search, with a non-blocking
    barrier and a deadline, before any collective (``Dup``) could wait for ever on a rank
    that never calls it (``mpitune.run`` inside ``if rank == 0:``). A rank still waiting
    at the deadline ends the job: rank 0 at once, saying why; rank 1 a few seconds later
    (also saying why: rank 0 is the one missing); the others after that, silently."""
    try:
        timeout = float(os.environ.get("MPITUNE_STARTUP_TIMEOUT", STARTUP_WAIT))
    except ValueError:
        timeout = STARTUP_WAIT
    request = world.Ibarrier()
    backoff = P.Backoff()
    # rank 0 speaks first; rank 1 only if rank 0 is not there to; the rest abort silently
    deadline = time.monotonic() + timeout + STARTUP_STAGGER * min(world.rank, 2)
    while not request.Test():
        if timeout > 0 and time.monotonic() > deadline:
            if world.rank < 2:
                _print_error(f"rank {world.rank}: not every rank of the job started the "
                             f"search within {timeout:g} s (MPITUNE_STARTUP_TIMEOUT): every "
                             f"rank must run it (python -m mpitune, or mpitune.run on every "
                             f"rank of the communicator)")
            _abort(world, 1)
        backoff.pause()


def _final_barrier(comm, timeout: float | None, channel=None) -> bool:
    """Wait for every rank without spinning; False if ``timeout`` passed first.

    With a ``channel``, messages still arriving are received and dropped meanwhile, so
    that a worker's last large send can complete and let it reach the barrier."""
    request = comm.Ibarrier()
    backoff = P.Backoff()
    deadline = None if timeout is None else time.monotonic() + timeout
    while not request.Test():
        if deadline is not None and time.monotonic() > deadline:
            return False
        if channel is not None and channel.fetch():
            continue
        backoff.pause()
    return True


def _stop_workers(comm, channel, code: int, mode: str) -> None:
    """After an error on rank 0: stop every worker, wait for them, else abort the job."""
    for rank in range(1, comm.size):
        channel.post(rank, P.STOP, (mode, 0.0))
    if not _final_barrier(comm, SHUTDOWN_WAIT, channel):
        _abort(comm, code)


def _abort(comm, code: int) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    if comm.size > 1:
        time.sleep(FORWARD_WAIT)
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


def _validate(prepare_result) -> None:
    """Check the space and the settings (raises SpecError) without touching any file."""
    from .space import Space

    Space(prepare_result[1])
    prepare_result[2].validate()


class _StoppedAtStartup(MpituneError):
    """A stop signal came before every worker was ready: nothing was written."""

    exit_code = 75  # master.EXIT_STOPPED (master is not imported before the spec loads)


def _await_workers(channel, n_workers: int) -> list:
    """Wait until every worker has said READY (has loaded the spec), before rank 0 writes
    anything; return the messages received meanwhile (a ready worker may say more, e.g.
    BYE after a signal), or raise the first worker's error. A stop signal ends the wait
    (:class:`_StoppedAtStartup`): a worker still loading may take long, and the job is
    ending anyway."""
    received: list = []
    ready: set = set()
    backoff = P.Backoff()
    while len(ready) < n_workers:
        if stopsignals.received:
            raise _StoppedAtStartup(
                f"stopped by {stopsignals.received[0]} while {n_workers - len(ready)} of "
                f"{n_workers} workers were still starting, before anything was written: "
                f"run the same command again")
        messages = channel.fetch()
        for source, tag, payload in messages:
            if tag == P.FATAL:
                raise MpituneError(f"rank {source}: {payload}")
            if tag == P.READY:
                ready.add(source)
            received.append((source, tag, payload))
        if messages:
            backoff.reset()
        else:
            backoff.pause()
    return received


def _open(prepare_result, n_workers: int, n_ranks: int):
    """Validate everything, then open the store: nothing is written before all checks."""
    from .pruners import make_pruner
    from .samplers import make_sampler
    from .space import Space
    from .store import Store
    from .suggester import Suggester, configs_to_unit

    objective, space_def, settings = prepare_result
    space = Space(space_def)
    settings.validate()
    configs = configs_to_unit(space, settings.configs or [])
    make_sampler(settings.sampler).bind(space, 0, budget=settings.max_trials)  # may refuse
    make_pruner(settings)  # likewise, before the file is touched
    built: list = []

    def plan(meta, table) -> dict:
        """The suggester, once the seed is settled (a resumed search keeps its own) and
        the trials are read; its budget goes into the run's entry of the first snapshot."""
        sampler = make_sampler(settings.sampler)
        sampler.bind(space, meta.seed, budget=settings.max_trials)
        built.append(Suggester(sampler, space, table, settings.batch_size or n_workers,
                               settings.direction, configs))
        return built[0].record(settings.max_trials)

    store = Store.open(settings, space, n_ranks, plan=plan)
    suggester = built[0]
    pruner = make_pruner(settings, store.table)  # rebuilt from the stored curves on resume
    if getattr(pruner, "models_fidelity", False):
        suggester.fidelity = pruner
    return objective, space, settings, store, suggester, pruner


def _announce(store, space, settings, n_workers: int, suggester) -> None:
    from .progress import log

    t = store.table
    resumed = (f"resuming {t.n_finished} finished trials, {suggester.n_rerun} to re-run"
               if t.n else "new search")
    if t.n and len(suggester.configs):
        todo, given = len(suggester.configs_todo), len(suggester.configs)
        resumed += (f"; {todo} of {given} explicit configurations to run first "
                    f"({given - todo} already in the file)")
    budget = suggester.budget(settings.max_trials)
    log(f"{n_workers} worker(s), {budget} trials{suggester.plan(settings.max_trials)} to "
        f"{settings.direction}, "
        f"{space.ndim} parameter(s), sampler {suggester.sampler!r}"
        f"{'' if settings.pruner == 'none' else f', pruner {settings.pruner}'}, "
        f"storage {settings.storage} "
        f"({resumed})")


def _run_master(master, store, settings):
    """Run the loop, close the store; return (Results, exit code)."""
    from .results import results_from_table

    try:
        status, code = master.run()
        store.close(status)
    except BaseException:
        store.abandon()
        raise
    master.progress.summary(status, time.monotonic(), settings.storage)
    # the file's absolute name: a serial objective may have changed directory since
    results = results_from_table(store.path, store.meta, store.table)
    results.status = status
    return results, code


def _master(comm, prepare: Prepare):
    from .channel import MPIChannel
    from .master import Master

    channel = MPIChannel(comm)
    try:
        prepared = prepare()
        _validate(prepared)
        ready = _await_workers(channel, comm.size - 1)
        objective, space, settings, store, suggester, pruner = _open(
            prepared, comm.size - 1, comm.size)
    except _StoppedAtStartup as e:
        from .progress import log

        log(str(e))
        _stop_workers(comm, channel, e.exit_code, P.STOP_END)
        return None, e.exit_code
    except MpituneError as e:
        _print_error(str(e))
        _stop_workers(comm, channel, e.exit_code, P.STOP_END)
        return None, e.exit_code
    _announce(store, space, settings, comm.size - 1, suggester)
    master = Master(channel, list(range(1, comm.size)), store, suggester, space, settings,
                    pruner=pruner)
    for message in ready:
        master._handle(*message)
    try:
        results, code = _run_master(master, store, settings)
    except MpituneError as e:
        _print_error(str(e))
        _stop_workers(comm, channel, e.exit_code, P.STOP_NOW)
        return None, e.exit_code
    if not all(w.done for w in master.workers.values()):
        from .progress import log

        log("some workers did not stop within the grace period; ending the job")
        _abort(comm, code)
    if not _final_barrier(comm, SHUTDOWN_WAIT):
        _abort(comm, code)
    return results, code


def _serial(prepare: Prepare, bind_gpus: bool):
    from .channel import LocalChannel
    from .master import Master
    from .worker import Worker

    binding, objective, space_def, settings = _bound(prepare, 0, bind_gpus)
    objective, space, settings, store, suggester, pruner = _open(
        (objective, space_def, settings), 1, 1)
    _announce(store, space, settings, 1, suggester)
    mine, theirs = LocalChannel.pair(0, 1)
    inline = Worker(theirs, objective, binding, socket.gethostname())
    inline.where = f"serial run on {inline.host}"
    inline.start()
    master = Master(mine, [1], store, suggester, space, settings, inline=inline, pruner=pruner)
    theirs.pump = master.pump  # rank 0 answers while the inline trial runs, as under MPI
    return _run_master(master, store, settings)


def _worker(comm, prepare: Prepare, index: int, bind_gpus: bool) -> None:
    from .channel import MPIChannel
    from .worker import Worker

    stopsignals.record_early()  # rank 0 decides; a worker only notes stop signals
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
                while channel.sending:
                    backoff.pause()
                return
        backoff.pause()

