"""Plots of a results file with matplotlib (the ``plot`` extra): the search's history, the
learning curves, and each parameter against the value.

Each ``plot_*`` function draws on the Axes (or Figure) it is given, else on a new pyplot
one, and returns it, so a notebook can compose them; :func:`save_plots` writes the set as
PNG files without pyplot (no display needed), as ``python -m mpitune plot`` does. They
read a :class:`~mpitune.results.Results`, so they work on a file a search is still writing.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Optional, Sequence

import numpy as np

from .results import Results, received_value
from .space import Categorical
from .table import latest_points

MISSING_MATPLOTLIB = ("plotting needs matplotlib: pip install matplotlib (or, in mpitune's "
                      "source tree, pip install '.[plot]')")
STATE_COLOURS = {"complete": "C0", "pruned": "0.65", "failed": "C3", "running": "C2",
                 "interrupted": "C2"}


def require_matplotlib():
    """matplotlib, or an ImportError that says how to install it."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError(MISSING_MATPLOTLIB) from None
    return matplotlib


def _new_axes(ax):
    if ax is not None:
        return ax
    require_matplotlib()
    import matplotlib.pyplot as plt
    return plt.subplots()[1]


def best_so_far(results: Results) -> np.ndarray:
    """The best complete value among trials 0..i, for every trial i (nan before the first)."""
    value = np.where(results["state"] == "complete", results["value"], np.nan)
    if results.direction == "maximize":
        return -np.fmin.accumulate(-value)
    return np.fmin.accumulate(value)


def last_reported(results: Results) -> np.ndarray:
    """Each trial's last reported curve value in arrival order (nan if it reported none)."""
    out = np.full(len(results), np.nan)
    numbers, latest = latest_points(results.curves["trial"])
    out[numbers] = results.curves["value"][latest]
    return out


def plot_history(results: Results, ax: Any = None) -> Any:
    """Value of every complete trial against its number, the best so far as a step line,
    pruned trials at their last reported value and failed ones as ticks along the axis."""
    ax = _new_axes(ax)
    number, state, value = results["number"], results["state"], results["value"]
    ok = (state == "complete") & np.isfinite(value)
    ax.scatter(number[ok], value[ok], s=10, color=STATE_COLOURS["complete"],
               label="complete", zorder=2)
    pruned = state == "pruned"
    last = last_reported(results)
    shown = pruned & np.isfinite(last)
    if shown.any():
        ax.scatter(number[shown], last[shown], s=10, marker="x",
                   color=STATE_COLOURS["pruned"], label="pruned (last report)", zorder=1)
    best = best_so_far(results)
    seen = np.isfinite(best)
    if seen.any():
        ax.step(number[seen], best[seen], where="post", color="C1", label="best so far",
                zorder=3)
    failed = state == "failed"
    if failed.any():
        ax.plot(number[failed], np.zeros(int(failed.sum())), "|", markersize=12,
                color=STATE_COLOURS["failed"], transform=ax.get_xaxis_transform(),
                label="failed", clip_on=False)
    ax.set_xlabel("trial")
    ax.set_ylabel(f"value ({results.direction})")
    ax.set_title(f"{len(results)} trials")
    if ax.get_legend_handles_labels()[0]:  # none when no trial has a value yet
        ax.legend(loc="best", fontsize="small")
    return ax


def curve_trials(results: Results, max_curves: int, seed: int = 0) -> np.ndarray:
    """The trials whose curves :func:`plot_curves` draws: all that reported, or past
    ``max_curves`` the 10 best complete ones plus a seeded random sample of the others."""
    reported = np.unique(results.curves["trial"])
    if len(reported) <= max_curves:
        return reported
    value = results["value"][reported]
    ok = (results["state"][reported] == "complete") & np.isfinite(value)
    sign = -1.0 if results.direction == "maximize" else 1.0
    order = np.argsort(np.where(ok, sign * value, np.inf), kind="stable")
    top = reported[order[:min(10, int(ok.sum()), max_curves)]]
    rest = np.setdiff1d(reported, top)
    sample = np.random.default_rng(seed).choice(rest, max_curves - len(top), replace=False)
    return np.sort(np.concatenate([top, sample]))


def plot_curves(results: Results, ax: Any = None, max_curves: int = 500) -> Any:
    """Every trial's learning curve (its points in the order they arrived; a trial run
    again after an interruption shows both attempts), coloured by the trial's state, the
    best trial's on top. Past ``max_curves`` trials, see :func:`curve_trials`."""
    require_matplotlib()
    from matplotlib.collections import LineCollection

    ax = _new_axes(ax)
    trial, step, value = (results.curves[k] for k in ("trial", "step", "value"))
    chosen = curve_trials(results, max_curves)
    keep = np.isin(trial, chosen)
    order = np.flatnonzero(keep)[np.argsort(trial[keep], kind="stable")]
    numbers, starts = np.unique(trial[order], return_index=True)
    points = np.column_stack([step[order], value[order]])
    segments = np.split(points, starts[1:])
    states = results["state"][numbers]
    colours = [STATE_COLOURS.get(s, "C2") for s in states]
    lines = LineCollection(segments, colors=colours, linewidths=0.8, alpha=0.7)
    ax.add_collection(lines)
    best = results.best
    if best is not None and best["number"] in numbers:
        s = segments[int(np.searchsorted(numbers, best["number"]))]
        ax.plot(s[:, 0], s[:, 1], color="C1", linewidth=2.0,
                label=f"best: trial {best['number']}")
    if len(points):
        ax.autoscale_view()
    for state in ("complete", "pruned", "failed"):
        if (states == state).any():
            ax.plot([], [], color=STATE_COLOURS[state], label=state)
    ax.set_xlabel("step")
    ax.set_ylabel("reported value")
    ax.set_title(f"learning curves of {len(numbers)} trials")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize="small")
    return ax


MAX_PANELS = 36


def params_to_plot(results: Results, names: Optional[Sequence[str]] = None,
                   max_panels: int = MAX_PANELS) -> list[int]:
    """The dimensions :func:`plot_params` draws: those named (unknown names raise
    ValueError), else the first ``max_panels`` (a figure of 600 panels took a minute and
    a gigabyte, 1440 x 76,800 pixels)."""
    all_names = results.space.names
    if names is None:
        return list(range(min(len(all_names), max_panels)))
    unknown = [n for n in names if n not in all_names]
    if unknown:
        raise ValueError(f"no parameter {', '.join(map(repr, unknown))} in this search "
                         f"(parameters: {', '.join(all_names)})")
    return [all_names.index(n) for n in dict.fromkeys(names)]


def plot_params(results: Results, fig: Any = None, columns: int = 3,
                names: Optional[Sequence[str]] = None, max_panels: int = MAX_PANELS) -> Any:
    """One panel per searched parameter: the value of each complete trial against it (log
    axis for a log-scaled parameter, one slot per choice for a categorical), best starred.
    Trials where a conditional parameter was inactive are left out of its panel. Only the
    parameters ``names``, or the first ``max_panels`` (the title then says how many)."""
    require_matplotlib()
    if fig is None:
        import matplotlib.pyplot as plt
        fig = plt.figure()
    chosen = params_to_plot(results, names, max_panels)
    ncols = max(1, min(columns, len(chosen)))
    nrows = max(1, math.ceil(len(chosen) / ncols))
    fig.set_size_inches(4.0 * ncols, 3.2 * nrows)
    if len(chosen) < results.space.ndim:
        fig.suptitle(f"{len(chosen)} of {results.space.ndim} parameters", fontsize="small")
    value = results["value"]
    ok = (results["state"] == "complete") & np.isfinite(value)
    best = results.best
    for panel, j in enumerate(chosen):
        dim = results.space.dims[j]
        ax = fig.add_subplot(nrows, ncols, panel + 1)
        rows = ok & results.active[:, j]
        x = results[dim.name][rows]
        if isinstance(dim, Categorical):
            x = choice_positions(dim, x)
            ax.set_xticks(np.arange(dim.size))
            ax.set_xticklabels([choice_label(c) for c in dim.choices], rotation=30,
                               fontsize="small")
            x = x + np.random.default_rng(j).uniform(-0.15, 0.15, len(x))  # see overlaps
        elif getattr(dim, "log", False):
            ax.set_xscale("log")
        ax.scatter(x, value[rows], s=8, color=STATE_COLOURS["complete"])
        if best is not None and rows[best["number"]]:
            i = int(np.flatnonzero(np.flatnonzero(rows) == best["number"])[0])
            ax.scatter([x[i]], [value[best["number"]]], s=80, marker="*", color="C1",
                       zorder=3)
        ax.set_xlabel(dim.name)
        ax.set_ylabel("value")
    fig.tight_layout()
    return fig


def choice_positions(dim: Categorical, column: np.ndarray) -> np.ndarray:
    """The index in ``dim.choices`` of each value of a categorical results column."""
    keys, inverse = np.unique(column.astype(str), return_inverse=True)
    firsts = np.unique(inverse, return_index=True)[1]
    decoded = [received_value(dim, column[i]) for i in firsts]  # one per distinct choice
    positions = np.array([_position(dim.choices, v) for v in decoded], dtype=float)
    return positions[inverse] if len(keys) else np.empty(0)


def _position(choices: list, value: Any) -> int:
    """Where ``value`` is among ``choices``: the same type first (True is not 1), then an
    equal number of another type (a float64 column holds the integer choices as floats)."""
    def same_kind(c):
        return isinstance(c, bool) == isinstance(value, bool)
    for k, c in enumerate(choices):
        if type(c) is type(value) and c == value:
            return k
    for k, c in enumerate(choices):
        if same_kind(c) and c == value:
            return k
    raise ValueError(f"{value!r} is not one of the choices {choices!r}")


def choice_label(choice: Any, limit: int = 14) -> str:
    """A choice as a short tick label: strings as they are, other values as their repr."""
    text = choice if isinstance(choice, str) else repr(choice)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def save_plots(results: Results, prefix: str, dpi: Optional[int] = 120,
               params: Optional[Sequence[str]] = None) -> list[str]:
    """Write ``PREFIX-history.png``, ``PREFIX-curves.png`` (when trials reported) and
    ``PREFIX-params.png`` (when parameters are searched: ``params``, or the first
    :data:`MAX_PANELS`); returns their paths."""
    require_matplotlib()
    from matplotlib.figure import Figure

    params_to_plot(results, params)  # unknown names: nothing written
    written = []

    def save(fig, name: str) -> None:
        path = f"{prefix}-{name}.png"
        fig.savefig(path, dpi=dpi)
        written.append(path)

    with warnings.catch_warnings():
        # names in scripts the font lacks (CJK) are drawn as boxes; a warning per glyph
        # and figure says only that
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        fig = Figure(figsize=(7, 4.5))
        plot_history(results, fig.add_subplot())
        fig.tight_layout()
        save(fig, "history")
        if len(results.curves["trial"]):
            fig = Figure(figsize=(7, 4.5))
            plot_curves(results, fig.add_subplot())
            fig.tight_layout()
            save(fig, "curves")
        if results.space.ndim:
            save(plot_params(results, Figure(), names=params), "params")
    return written
