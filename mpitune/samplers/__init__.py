"""Samplers: algorithms that propose configurations in the unit cube.

Each algorithm lives in its own private module behind the narrow :class:`Sampler`
interface; this module is the one registry that maps setting names to classes.
"""

from __future__ import annotations

import copy
from typing import Any

from ..errors import SpecError
from ._auto import AutoSampler
from ._base import History, Sampler
from ._cmaes import CMAESSampler
from ._gp import GPSampler
from ._grid import GridSampler
from ._qmc import LatinHypercubeSampler, SobolSampler
from ._random import RandomSampler
from ._tpe import TPESampler

SAMPLERS: dict[str, type[Sampler]] = {
    cls.name: cls for cls in (AutoSampler, GPSampler, TPESampler, CMAESSampler, SobolSampler,
                              LatinHypercubeSampler, RandomSampler, GridSampler)
}

__all__ = ["SAMPLERS", "AutoSampler", "CMAESSampler", "GPSampler", "GridSampler", "History",
           "LatinHypercubeSampler", "RandomSampler", "Sampler", "SobolSampler", "TPESampler",
           "make_sampler"]


def check_sampler(sampler: Any) -> None:
    """Raise :class:`SpecError` unless ``sampler`` is a known name or a Sampler object."""
    if isinstance(sampler, Sampler):
        return
    if not isinstance(sampler, str) or sampler not in SAMPLERS:
        raise SpecError(f"setting 'sampler' is {sampler!r}, but must be one of "
                        f"{', '.join(sorted(SAMPLERS))} or a mpitune.samplers.Sampler object")


def make_sampler(sampler: Any) -> Sampler:
    """A fresh sampler from a setting: a registry name or a ready Sampler object."""
    check_sampler(sampler)
    return copy.deepcopy(sampler) if isinstance(sampler, Sampler) else SAMPLERS[sampler]()
