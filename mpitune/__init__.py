"""mpitune: hyperparameter search for HPC clusters over MPI.

Rank 0 is the master (search space, batched suggester, results file); every other rank is
a worker that runs the objective on its own GPU. Public API: the space constructors
(:class:`Real`, :class:`Integer`, :class:`Categorical`, :class:`Constant`), :func:`run`,
:func:`load`, :class:`TrialPruned`. Heavy modules (numpy, h5py, the master) are imported
only when used, so worker ranks stay lean.
"""

from __future__ import annotations

from typing import Any, Callable

from .errors import MpituneError, SpecError, StorageError, TrialInterrupted, TrialPruned
from .space import Categorical, Constant, Integer, Real

__version__ = "0.1.0"

__all__ = ["Categorical", "Constant", "Integer", "MpituneError", "Real", "SpecError",
           "StorageError", "TrialInterrupted", "TrialPruned", "load", "run"]


def run(objective: Callable, space: dict, comm: Any = None, **settings: Any):
    """Run a search from a script launched under mpiexec (or alone, serially).

    Call it on every rank. Rank 0 returns a :class:`mpitune.results.Results` (its
    ``status`` says whether the budget was reached); workers return None after shutdown.
    ``settings`` are the same names as in a spec file (``max_trials``, ``storage``, ...).
    Bad settings raise :class:`SpecError` in a serial run and end the whole job (one
    message, non-zero exit) under MPI.
    """
    from mpi4py import MPI

    from .session import execute
    from .settings import Settings
    from .spec import check_objective

    if isinstance(comm, MPI.Comm) and comm == MPI.COMM_NULL:  # e.g. Split(MPI.UNDEFINED)
        raise SpecError("mpitune.run: comm must be an mpi4py intracommunicator such as "
                        "MPI.COMM_WORLD, got MPI.COMM_NULL (this rank is in no group: "
                        "call mpitune.run only on the ranks of the communicator)")
    if comm is not None and not isinstance(comm, MPI.Intracomm):
        raise SpecError(f"mpitune.run: comm must be an mpi4py intracommunicator such as "
                        f"MPI.COMM_WORLD, got {type(comm).__name__} {comm!r:.80}")

    def prepare():
        return check_objective(objective, "mpitune.run"), space, Settings().replace(**settings)

    out = execute(prepare, comm=comm, bind_gpus=settings.get("bind_gpus", True),
                  raise_errors=True)
    if out is None:
        return None
    results, code = out
    if results is None:  # the error was printed and the workers stopped
        raise SystemExit(code)
    return results


def load(path: str):
    """Load a results file as numpy columns; see :class:`mpitune.results.Results`."""
    import os

    from .results import load as _load

    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(f"mpitune.load: path must be a file name (str or os.PathLike), "
                        f"got {type(path).__name__} {path!r:.80}")
    return _load(os.fsdecode(path))
