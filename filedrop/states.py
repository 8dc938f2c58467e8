"""Every state name filedrop uses, and the tables from one kind of state to another.

Files, batches and invoices are recorded in the journal under these names; rows are reported to
users under ``RowStatus``; a run ends with one ``ExitCode``. The journal's SQL, the pipeline, the
runner, the daemon and the CLI all use these enums, so a state is spelt in exactly one place.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Iterable


class FileState(enum.StrEnum):
    """Where one input file is (the journal's ``files.state``, and each run's report)."""

    CLAIMED = "claimed"
    """A process is working on it now."""
    WAITING = "waiting"
    """Its batches were still QUEUED (or the process stopped first); it is taken up again."""
    DONE = "done"
    """Every row has its final status and the outcome is written."""
    ERROR = "error"
    """The file itself could not be read or mapped; it has a one-row ERROR outcome."""
    RETRY = "retry"
    """A passing problem (API down, credentials refused mid-run, disk full) stopped it; the next
    run or the daemon's retry resumes it."""
    GONE = "gone"
    """Moved, replaced or deleted before every row had its status (filedrop stopped while
    sending it): its outcome lists the invoices sent from it. The same bytes dropped again are
    taken up again, and the rows never sent go then."""
    SKIPPED = "skipped"
    """Not processed by this run: already processed, claimed by a live process, or gone. Only in
    reports; the journal never stores it."""


#: File states that the journal keeps coming back to (a file in them is claimed again).
RESUMABLE_FILE_STATES = frozenset({FileState.WAITING, FileState.RETRY})
#: File states after which the same bytes are never processed again.
FINAL_FILE_STATES = frozenset({FileState.DONE, FileState.ERROR})


class BatchState(enum.StrEnum):
    """Where one batch of invoices is (the journal's ``batches.state``)."""

    POSTING = "posting"
    """Written down before its POST; no answer recorded yet."""
    QUEUED = "queued"
    """The API accepted it and answered a batch id; polled until it ends."""
    DONE = "done"
    """The API ended it (SUCCESS, PARTIAL or FAILED) and every invoice's result is recorded."""
    UNKNOWN = "unknown"
    """Whether the API got it cannot be told; never resent by itself (``filedrop resolve``)."""
    REJECTED = "rejected"
    """Certainly not taken by the API (refused, or not sent at all)."""
    RESOLVED = "resolved"
    """Was UNKNOWN; an operator checked with Amili and said what happened."""


#: Batches whose fate is still being learnt.
UNFINISHED_BATCH_STATES = (BatchState.POSTING, BatchState.QUEUED)


class InvoiceState(enum.StrEnum):
    """What the journal knows of one invoice number at one target (environment and org)."""

    SENDING = "SENDING"
    """Claimed by a batch that is being POSTed."""
    PENDING = "PENDING"
    """In a batch the API has; waiting for it to end."""
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    UNKNOWN = "UNKNOWN"
    NOT_SENT = "NOT_SENT"
    """Certainly never reached the API, for a reason that passes or that the operator fixes;
    the next run of its file sends it."""


#: Invoice states that forbid sending the same number again ("never send an invoice twice").
BLOCKING_INVOICE_STATES = (
    InvoiceState.SENDING,
    InvoiceState.PENDING,
    InvoiceState.SUCCEEDED,
    InvoiceState.UNKNOWN,
)
#: Invoice states that say Amili took the invoice (it answered for its batch): an outcome
#: showing one of them knows more than a journal holding the number UNKNOWN (an older copy).
WENT_INVOICE_STATES = (InvoiceState.SUCCEEDED, InvoiceState.PENDING)


class RowStatus(enum.StrEnum):
    """What happened to one input row (``outcome_status``); the words users and scripts see."""

    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    INVALID = "INVALID"
    DUPLICATE = "DUPLICATE"
    PENDING = "PENDING"
    NOT_SENT = "NOT_SENT"
    UNKNOWN = "UNKNOWN"
    ERROR = "ERROR"
    SKIPPED = "SKIPPED"
    """Not an invoice by the mapping's skip rules (a totals row, a credit note); never sent, and
    never a reason to look: it leaves the exit code alone."""


_ROW_STATUS_BY_FOLDED = {status.value.casefold(): status for status in RowStatus}


def row_status_in(text: str) -> RowStatus | None:
    """The status an outcome cell holds, in whatever case it was typed over ("succeeded"), as
    every reader of outcomes takes it (``journal rebuild``, ``report``); None for none."""
    return _ROW_STATUS_BY_FOLDED.get(text.strip().casefold())


#: The row status of a row whose invoice is in this journal state (and was sent from this file;
#: an invoice sent from another file makes the row DUPLICATE). SENDING means the process that sent
#: it died before the answer: whether the API got it cannot be told.
ROW_STATUS_OF_INVOICE: dict[InvoiceState, RowStatus] = {
    InvoiceState.SENDING: RowStatus.UNKNOWN,
    InvoiceState.PENDING: RowStatus.PENDING,
    InvoiceState.SUCCEEDED: RowStatus.SUCCEEDED,
    InvoiceState.FAILED: RowStatus.FAILED,
    InvoiceState.UNKNOWN: RowStatus.UNKNOWN,
    InvoiceState.NOT_SENT: RowStatus.NOT_SENT,
}


class ExitCode(enum.IntEnum):
    """Exit codes of ``filedrop run`` (and of the other commands where they fit)."""

    OK = 0
    """Every row SUCCEEDED, DUPLICATE or SKIPPED."""
    ATTENTION = 1
    """Some row FAILED, INVALID or UNKNOWN, some file ERROR, or rows NOT_SENT of a file that is
    gone: a person should look."""
    SETUP = 2
    """Fix the setup: usage, configuration, credentials, organisation, URL or batch size."""
    UNFINISHED = 3
    """Rows still PENDING, or NOT_SENT because the API was unavailable; the next run continues."""
    INTERRUPTED = 130
    """Stopped by Ctrl-C (128 + SIGINT, as shells report it)."""


#: Row statuses that need a person to look (exit code 1).
ATTENTION_STATUSES = frozenset(
    {RowStatus.FAILED, RowStatus.INVALID, RowStatus.UNKNOWN, RowStatus.ERROR}
)
#: Row statuses that the next run finishes by itself (exit code 3).
UNFINISHED_STATUSES = frozenset({RowStatus.PENDING, RowStatus.NOT_SENT})


def exit_code_for(
    statuses: Iterable[RowStatus],
    *,
    setup_problem: bool = False,
    attention: bool = False,
    unfinished: bool = False,
) -> ExitCode:
    """The one code a run exits with: when several apply, the first of 2, 1, 3, 0 wins.

    ``setup_problem``: something the operator must fix stopped part of the run (credentials, URL,
    organisation, a batch too large); it outranks the NOT_SENT rows it left. ``attention``: a
    person must act beyond what the statuses show (a gone file's rows never sent). ``unfinished``:
    work was left for the next run beyond what the row statuses show (a file that could not be
    finished because the API was unavailable).
    """
    seen = set(statuses)
    if setup_problem:
        return ExitCode.SETUP
    if attention or seen & ATTENTION_STATUSES:
        return ExitCode.ATTENTION
    if unfinished or seen & UNFINISHED_STATUSES:
        return ExitCode.UNFINISHED
    return ExitCode.OK


def resolve_command(batch: int) -> str:
    """``filedrop resolve 17``: how every message names the command that settles an UNKNOWN
    batch. An outcome keeps it in its rows, and 'filedrop journal rebuild' reads the batch's
    number back from there (``RESOLVE_ADVICE``), so it is spelt here alone."""
    return f"filedrop resolve {batch}"


def orphan_message(batch: int) -> str:
    """What is said of a batch whose POST never got its answer because its process stopped:
    the message of its rows once the next start makes it UNKNOWN, and status's before that."""
    return (
        f"filedrop stopped while sending batch #{batch}, so whether Amili received it cannot "
        f"be told; check with Amili, then run '{resolve_command(batch)} --sent' or '--not-sent'"
    )


#: How the row of a file begins whose invoice number another file's batch holds, not ended
#: there (UNKNOWN or PENDING: ``pipeline._elsewhere``): ``journal rebuild`` reads it back, so that
#: such a row never speaks for that batch over the other file's own outcome.
WAITS_ELSEWHERE = ("was being sent from", "is in a batch sent from")
WAITS_ELSEWHERE_ROW = re.compile(
    r"invoice .{0,400}? (?:" + "|".join(map(re.escape, WAITS_ELSEWHERE)) + ") ", re.DOTALL
)


#: ``resolve_command`` followed by its flag, in a row's message: the batch's journal number. At
#: most 9 digits, so a hostile outcome cannot push the journal's numbers past a 32-bit column.
RESOLVE_ADVICE = re.compile(r"filedrop resolve ([1-9][0-9]{0,8}) --")


#: The built-in rule that holds back an invoice whose due date has not passed
#: (``prepare._not_due_yet``).
NOT_DUE_RULE = "skip.not_due"
_HELD, _NOT_SENT = " has not passed on", ": the invoice is not overdue yet, and is not sent"
_HELD_ON = re.compile(
    re.escape(_HELD) + r" (\d{2})\.(\d{2})\.(\d{4})" + re.escape(_NOT_SENT) + r"\Z"
)


def not_due_message(due: str, day: dt.date) -> str:
    """Why a row of an invoice held back is not sent: ``due`` (its due date's column and cell)
    has not passed on ``day``. An outcome keeps it in its rows, and 'filedrop journal rebuild'
    reads the day back from there (``held_on``), so it is spelt here alone."""
    return f"rule {NOT_DUE_RULE}: {due}{_HELD} {day:%d.%m.%Y}{_NOT_SENT}"


def held_on(message: str) -> dt.date | None:
    """The day a row's message says its invoice was held back on (``not_due_message``), or
    None if it says nothing of the kind."""
    found = _HELD_ON.search(message) if message.startswith(f"rule {NOT_DUE_RULE}: ") else None
    try:
        return None if found is None else dt.date(int(found[3]), int(found[2]), int(found[1]))
    except ValueError:  # no such day: not a message filedrop wrote
        return None
