"""Exceptions that mpitune raises or asks users to raise."""

from __future__ import annotations


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
