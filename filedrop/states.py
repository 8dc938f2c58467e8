"""Row statuses and exit codes: the words and numbers users and scripts rely on."""

from __future__ import annotations

import enum


class RowStatus(enum.StrEnum):
    """What happened to one input row (``outcome_status``)."""

    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    INVALID = "INVALID"
    DUPLICATE = "DUPLICATE"
    PENDING = "PENDING"
    UNKNOWN = "UNKNOWN"
    ERROR = "ERROR"


class ExitCode(enum.IntEnum):
    """Exit codes of ``filedrop run`` (and the other commands where they fit)."""

    OK = 0
    FAILURES = 1
    USAGE = 2
    PENDING = 3


def exit_code_for(statuses: set[RowStatus]) -> ExitCode:
    """Collapse the statuses seen in a run into the one code ``run`` exits with."""
    if statuses & {RowStatus.FAILED, RowStatus.INVALID, RowStatus.UNKNOWN, RowStatus.ERROR}:
        return ExitCode.FAILURES
    if RowStatus.PENDING in statuses:
        return ExitCode.PENDING
    return ExitCode.OK
