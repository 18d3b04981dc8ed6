"""Pruners: stop unpromising trials early, from the curves they ``trial.report``.

Each rule lives in its own private module behind the narrow :class:`Pruner` interface, with
its arithmetic in module-level functions; this module is the one registry that maps the
``pruner`` setting to classes. ``pruner = "none"`` (the default) creates nothing, so a
search without pruning pays nothing for this package.

Values are compared as losses (negated when maximising); a non-finite reported value (nan,
inf, -inf) counts as the worst value there is, whatever the direction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from ..errors import SpecError
from ._asha import ASHAPruner
from ._base import Pruner, to_loss
from ._bohb import BOHBPruner
from ._hyperband import HyperbandPruner
from ._median import MedianPruner

if TYPE_CHECKING:
    from ..settings import Settings
    from ..table import TrialTable

PRUNERS: dict[str, type[Pruner]] = {"median": MedianPruner, "asha": ASHAPruner,
                                    "hyperband": HyperbandPruner, "bohb": BOHBPruner}
NAMES = ("none", *PRUNERS)

__all__ = ["ASHAPruner", "BOHBPruner", "HyperbandPruner", "MedianPruner", "NAMES", "PRUNERS",
           "Pruner", "check_pruner", "make_pruner", "to_loss"]


def check_pruner(pruner: Any) -> None:
    """Raise :class:`SpecError` unless ``pruner`` is a known name or a Pruner object."""
    if isinstance(pruner, Pruner):
        return
    if not isinstance(pruner, str) or pruner not in NAMES:
        raise SpecError(f"setting 'pruner' is {pruner!r}, but must be one of "
                        f"{', '.join(NAMES)} or a mpitune.pruners.Pruner object")


def make_pruner(settings: Settings, table: Optional[TrialTable] = None) -> Optional[Pruner]:
    """The pruner the settings ask for, bound to their direction, or None for "none".

    With ``table`` (a resumed search's trials), its state is rebuilt from the stored
    curves first (:meth:`Pruner.restore`).
    """
    choice = settings.pruner
    check_pruner(choice)
    if isinstance(choice, Pruner):
        pruner = choice
    elif choice == "none":
        return None
    else:
        pruner = PRUNERS[choice].from_settings(settings)
    pruner.bind(settings.direction)
    if table is not None and table.n_curve:
        pruner.restore(table)
    return pruner
