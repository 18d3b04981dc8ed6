"""Exceptions that mpitune raises or asks users to raise, and how messages show values."""

from __future__ import annotations

import math
from typing import Any, Callable


def error_line(message: object) -> str:
    """``mpitune: error: MESSAGE`` on one line: text from elsewhere (HDF5's messages span
    lines) has its line breaks and the blanks around them folded into one space."""
    text = " ".join(line.strip() for line in str(message).splitlines() if line.strip())
    return f"mpitune: error: {text}\n"


class MpituneError(Exception):
    """A user-facing error: printed as one line, the job exits non-zero."""

    exit_code = 1


class SpecError(MpituneError):
    """The spec file, the space or a setting is invalid."""

    exit_code = 2


class StorageError(MpituneError):
    """The results file cannot be created, read, resumed or written."""

    exit_code = 3


class TrialPruned(Exception):
    """Raised inside an objective when rank 0 decided to stop the trial early.

    The objective may catch it to clean up; the trial is stored as ``pruned`` either way.
    """


class TrialTimedOut(BaseException):
    """Raised inside an objective that ran past ``trial_timeout``; stored as ``timeout``."""


class TrialInterrupted(BaseException):
    """Raised inside an objective when the whole search is stopping (signal, time limit).

    A ``BaseException`` so that ``except Exception`` in user code does not swallow it;
    the trial is stored as ``interrupted`` and runs again on resume.
    """


def safe_text(x: Any, convert: Callable[[Any], str] = str) -> str:
    """``str(x)`` (or ``convert(x)``), or a stand-in naming the type when that raises: an
    objective's objects must not break the error message about them. A stop or a time
    limit raised meanwhile is not the object's doing and goes on."""
    try:
        return convert(x)
    except (TrialInterrupted, TrialTimedOut):
        raise
    except BaseException as e:  # noqa: BLE001 - any __str__/__repr__ of user code
        return f"<{type(x).__name__} object; {convert.__name__}() raised {type(e).__name__}>"


def short_repr(x: Any, limit: int = 200) -> str:
    """``repr(x)`` for a one-line message: at most ``limit`` characters (then the length),
    an int too long to read as ``~1e+N`` (Python does not even print one of over 4300
    digits), and a stand-in when ``repr`` raises."""
    if isinstance(x, int) and abs(x) >= 10**20:
        return f"{'-' if x < 0 else ''}~1e+{math.log10(abs(x)):.0f}"
    text = safe_text(x, repr)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"
