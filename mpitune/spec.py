"""Load a spec file: a plain Python file defining ``space``, ``objective`` and settings."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import inspect
import os
import sys
import traceback
from dataclasses import dataclass
from typing import Any, Callable

from .errors import SpecError
from .settings import FIELD_NAMES, near_misses


@dataclass
class Spec:
    path: str
    objective: Callable
    space: Any  # the definition as written; mpitune.space.Space validates it
    settings: dict
    warnings: list


def check_objective(objective: Any, where: str) -> Callable:
    """Return a callable ``(params, trial)``; one-argument objectives are wrapped."""
    if not callable(objective):
        raise SpecError(f"{where}: objective must be a function objective(params, trial), "
                        f"got {objective!r}")
    try:
        sig = inspect.signature(objective)
    except (TypeError, ValueError):
        return objective
    try:
        sig.bind({}, None)
        return objective
    except TypeError:
        pass
    try:
        sig.bind({})
    except TypeError:
        name = getattr(objective, "__name__", type(objective).__name__)
        raise SpecError(f"{where}: objective must accept (params, trial), but its signature "
                        f"is {name}{sig}") from None
    return lambda params, trial: objective(params)


def module_name(path: str) -> str:
    """The name to import the spec under: its file's own (``train`` for ``train.py``), which
    is what another process imports when it unpickles a function or class of the spec
    (``multiprocessing`` with spawn or forkserver, DataLoader workers, ``torch.load``), as
    long as that name finds this very file on ``sys.path``; else ``mpitune_spec`` (a name
    taken by another module, ``time.py``, or not an identifier)."""
    stem = os.path.splitext(os.path.basename(path))[0]
    if not stem.isidentifier() or stem in sys.modules or stem in sys.builtin_module_names \
            or importlib.machinery.FrozenImporter.find_spec(stem) is not None:
        return "mpitune_spec"
    directory = os.path.dirname(os.path.abspath(path))
    elsewhere = [p for p in sys.path if os.path.abspath(p or os.curdir) != directory]
    try:
        if importlib.machinery.PathFinder.find_spec(stem, elsewhere) is not None:
            return "mpitune_spec"  # a module of that name exists: never shadow it
        found = importlib.machinery.PathFinder.find_spec(stem, [directory])
        same = found is not None and found.origin is not None \
            and os.path.samefile(found.origin, path)
    except (ImportError, ValueError, OSError):
        same = False
    return stem if same else "mpitune_spec"


def load_spec(path: str) -> Spec:
    """Import the spec file as a module and pick out what mpitune needs."""
    if not os.path.exists(path):
        raise SpecError(f"spec file '{path}' not found")
    if os.path.isdir(path):
        raise SpecError(f"spec file '{path}' is a directory")
    if not os.access(path, os.R_OK):
        raise SpecError(f"spec file '{path}' is not readable")
    directory = os.path.dirname(os.path.abspath(path))
    if directory not in sys.path:
        sys.path.insert(0, directory)
    name = module_name(path)
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise SpecError(f"spec file '{path}' cannot be imported (is it a .py file?)")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except SyntaxError as e:
        raise SpecError(f"spec file '{path}', line {e.lineno}: {e.msg}") from None
    except SpecError as e:
        raise SpecError(f"spec file '{path}': {e}") from None
    except BaseException as e:  # noqa: BLE001 - any failure of user code is a bad spec
        frames = [f for f in traceback.extract_tb(e.__traceback__)
                  if os.path.abspath(f.filename) == os.path.abspath(path)]
        line = f", line {frames[-1].lineno}" if frames else ""
        raise SpecError(f"spec file '{path}'{line} failed to load: "
                        f"{type(e).__name__}: {e}") from None
    names = vars(module)
    if "objective" not in names:
        raise SpecError(f"spec file '{path}' defines no objective(params, trial)")
    if "space" not in names:
        raise SpecError(f"spec file '{path}' defines no space (a dict of name -> dimension)")
    objective = check_objective(names["objective"], f"spec file '{path}'")
    settings = {k: v for k, v in names.items() if k in FIELD_NAMES}
    candidates = [k for k, v in names.items()
                  if not inspect.ismodule(v) and not callable(v) and k.islower()]
    return Spec(path, objective, names["space"], settings, near_misses(candidates))
