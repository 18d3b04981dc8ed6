"""The command line: ``python -m mpitune SPEC [--setting VALUE ...]`` and
``python -m mpitune show RESULTS.h5``. Options are generated from :class:`Settings`."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import signal
import sys
from typing import Optional

from .errors import SpecError, error_line
from .settings import Settings, field_type

USAGE_EPILOG = """\
settings: defaults < names defined in the spec file < these options.
exit status: 0 search complete; 75 stopped before the budget (signal or --max-time):
run the same command again to continue; 2 bad spec, space or setting; 3 results file
problem; 1 other errors.
analysis: python -m mpitune show RESULTS.h5, python -m mpitune plot RESULTS.h5 (PNGs;
needs matplotlib), or mpitune.load(path) in Python.
job scripts: python -m mpitune status RESULTS.h5 exits 0 if the search is complete, 75
if not."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that only prints on rank 0 and raises instead of exiting."""

    quiet = False

    def _print_message(self, message, file=None):
        if not self.quiet:
            super()._print_message(message, file)

    def error(self, message):
        raise SpecError(f"{message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m mpitune",
                description="Run a hyperparameter search described by a spec file: rank 0 "
                            "is the master, every other rank a worker.",
                epilog=USAGE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec", help="Python file defining space, objective(params, trial) and "
                                "optional settings")
    for f in dataclasses.fields(Settings):
        flag = "--" + f.name.replace("_", "-")
        kind = field_type(f)
        help_text = f.metadata["help"]
        if "default" not in help_text:
            help_text += f" (default: {f.default!r})"
        if kind is list:
            p.add_argument(flag, dest=f.name, type=_json_list, default=None, metavar="JSON",
                           help=help_text)
        elif kind is bool:
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                           default=None, help=help_text)
        else:
            p.add_argument(flag, dest=f.name, type=kind, default=None, metavar=f.name.upper(),
                           choices=f.metadata.get("choices"), help=help_text)
    return p


def _json_list(text: str) -> list:
    try:
        value = json.loads(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON ({e}): {text!r}") from None
    if not isinstance(value, list):
        raise argparse.ArgumentTypeError(f"must be a JSON list, got {text!r}")
    return value


def parse(argv: list[str], quiet: bool = False) -> tuple[str, dict]:
    """Return the spec path and the settings given on the command line."""
    parser = build_parser()
    parser.quiet = quiet
    args = vars(parser.parse_args(argv))
    spec = args.pop("spec")
    return spec, {k: v for k, v in args.items() if v is not None}


def count(text: str) -> int:
    """An argparse type: an integer >= 0."""
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def show(argv: list[str]) -> int:
    """Print a summary of a results file: counts, the best trials, the slowest failures."""
    import numpy as np

    from .progress import format_params
    from .results import load

    parser = argparse.ArgumentParser(prog="python -m mpitune show",
                                     description="Summarise a results file.")
    parser.add_argument("path")
    parser.add_argument("--top", type=count, default=10, help="best trials to list")
    args = parser.parse_args(argv)
    r = load(args.path)
    print(repr(r))
    print(f"direction: {r.direction}; seed: {r.seed}; "
          f"{'search complete' if r.complete else 'not complete'}")
    ok = np.flatnonzero(r["state"] == "complete")
    order = ok[np.argsort(r["value"][ok])]
    if r.direction == "maximize":
        order = order[::-1]
    for i in order[: args.top]:
        params = {k: v for k, v in r.params(i).items() if k not in r.space.constants}
        print(f"  trial {i:6d}  value {r['value'][i]:.8g}  {format_params(params)}")
    for state in ("failed", "timeout"):
        hit = np.flatnonzero(r["state"] == state)
        if len(hit):
            last = r["error"][hit[0]].strip().splitlines()
            print(f"{len(hit)} {state}; first (trial {hit[0]}): {last[-1] if last else ''}")
    return 0


def status(argv: list[str]) -> int:
    """One line about a results file; exit 0 if its search is complete, 75 if not (run the
    same command again), 3 if it cannot be read. For job scripts deciding to requeue."""
    import numpy as np

    from .progress import finished_of
    from .results import load
    from .suggester import left_to_run
    from .table import FINISHED, STATES

    parser = argparse.ArgumentParser(prog="python -m mpitune status",
                                     description="Exit 0 if the search in a results file "
                                                 "is complete, 75 if it should continue.")
    parser.add_argument("path")
    args = parser.parse_args(argv)
    r = load(args.path)
    # the budget the last run had (a grid's may be below max_trials), else max_trials
    run = r.runs[-1] if r.runs else {}
    budget = run.get("budget", r.settings.get("max_trials", len(r)))
    finished = int(np.isin(r["state"], [STATES[code] for code in FINISHED]).sum())
    done = r.complete or finished >= budget
    end = run.get("sampler_end")
    left = (f"{left_to_run(end, len(r))} of the {end['of']}'s {end['configurations']} "
            f"configurations not run yet; " if end else "")
    print(f"{args.path}: {finished_of(finished, budget, 'trials finished')}; {left}"
          f"{'complete' if done else 'not complete: run the same command again'}")
    return 0 if done else 75


def plot(argv: list[str]) -> int:
    """Write PNG plots of a results file (history, learning curves, parameters)."""
    from .results import load

    parser = argparse.ArgumentParser(prog="python -m mpitune plot",
                                     description="Write PNG plots of a results file: "
                                                 "PREFIX-history.png, PREFIX-curves.png, "
                                                 "PREFIX-params.png.")
    parser.add_argument("path")
    parser.add_argument("--prefix", help="where to write them (default: the results file's "
                                         "path without .h5)")
    parser.add_argument("--params", help="comma-separated parameters for PREFIX-params.png "
                                         "(default: the first 36)")
    args = parser.parse_args(argv)
    from .plots import params_to_plot, require_matplotlib, save_plots

    require_matplotlib()  # before reading the file: say what is missing first
    r = load(args.path)
    prefix = args.prefix or (args.path[:-3] if args.path.endswith(".h5") else args.path)
    params = None if args.params is None else [p.strip() for p in args.params.split(",")]
    try:
        params_to_plot(r, params)
    except ValueError as e:
        raise SpecError(f"mpitune plot --params: {e}") from None
    for path in save_plots(r, prefix, params=params):
        print(path)
    return 0


COMMANDS = {"show": show, "status": status, "plot": plot}


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    for stream in (sys.stdout, sys.stderr):  # parameter names need not fit the locale
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="backslashreplace")
    if argv and argv[0] in COMMANDS:
        try:
            code = COMMANDS[argv[0]](argv[1:])
            sys.stdout.flush()  # here, where a closed pipe can still be handled
            return code
        except BrokenPipeError:  # `show ... | head`: the reader has all it wanted
            from .progress import to_devnull

            to_devnull(sys.stdout)
            return 1
        except SpecError as e:
            sys.stderr.write(error_line(e))
            return 2
        except ImportError as e:  # plot without matplotlib
            sys.stderr.write(error_line(e))
            return 1
        except Exception as e:  # noqa: BLE001 - StorageError and friends: one line
            sys.stderr.write(error_line(e))
            return 3
    return run_cli(argv)


def run_cli(argv: list[str]) -> int:
    from . import stopsignals

    stopsignals.record_early()  # a scancel during start-up must not kill a rank
    from mpi4py import MPI

    from .session import execute
    from .spec import load_spec

    rank = MPI.COMM_WORLD.rank
    options: dict = {}

    def prepare():
        from .space import Space

        spec = load_spec(spec_path)
        try:
            Space(spec.space)
        except SpecError as e:
            raise SpecError(f"spec file '{spec_path}': {e}") from None
        settings = Settings().replace(**spec.settings).replace(**options)
        if rank == 0:
            from .progress import log

            for warning in spec.warnings:
                log(f"warning: spec file '{spec_path}': {warning}")
        return spec.objective, spec.space, settings

    try:
        spec_path, options = parse(argv, quiet=rank != 0)
    except SystemExit as e:  # --help
        return int(e.code or 0)
    except SpecError as e:
        if rank == 0:
            sys.stderr.write(error_line(e))
        return 2
    out = execute(prepare, bind_gpus=options.get("bind_gpus", True))
    # Python restores default handlers at exit, before mpi4py finalises MPI: a stop signal
    # in that window would kill a rank of a search that has ended. Ignored signals stay so.
    for name in stopsignals.NAMES:
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    return 0 if out is None else out[1]
