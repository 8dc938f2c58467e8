"""Outcome files read back: the evidence that a journal was lost, and the journal rebuilt from it.

Every outcome carries, row by row, what the journal knew when it was written: the status, the
invoice number as sent, its invoice and case ids, and the API batch id. So a journal that was
deleted, replaced or put back from an older copy can be told (``lost_journal_evidence``: an
outcome shows invoices sent that the journal does not know were sent) and rebuilt
(``rebuild_journal``): ``SUCCEEDED``, ``PENDING`` and ``UNKNOWN`` invoices are blocked again,
``PENDING`` batches are polled again, and each file is recorded, so that what it sent is never
sent again.
"""

from __future__ import annotations

import functools
import os
import stat
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path

from filedrop.errors import ReadError
from filedrop.inbox import (
    ARCHIVE,
    ARCHIVE_STAMP,
    OUTCOME_SUFFIXES,
    content_hash,
    outcome_path,
    scan,
)
from filedrop.inflight import marks_or_their_folder
from filedrop.journal.engines import PostgresLocation
from filedrop.journal.store import InvoiceRecord, Journal, RebuiltBatch
from filedrop.logs import plural, printable
from filedrop.outcome import (
    OUTCOME_COLUMNS,
    SANDBOX_COLUMN,
    outcome_paths,
    written_stamp,
)
from filedrop.read import INPUT_SUFFIXES, ReadLimits, ReadOptions, read_table
from filedrop.states import (
    BLOCKING_INVOICE_STATES,
    RESOLVE_ADVICE,
    WAITS_ELSEWHERE_ROW,
    WENT_INVOICE_STATES,
    BatchState,
    FileState,
    InvoiceState,
    RowStatus,
    held_on,
    row_status_in,
)

#: Row statuses that show an invoice went to Amili (or was known to have gone from another file).
SENT_ROW_STATUSES = frozenset(
    {
        RowStatus.SUCCEEDED,
        RowStatus.PENDING,
        RowStatus.UNKNOWN,
        RowStatus.FAILED,
        RowStatus.DUPLICATE,
    }
)

#: Which of several outcomes speaking of one invoice number wins: the one that knows most.
_RANK = {
    RowStatus.SUCCEEDED: 5,
    RowStatus.PENDING: 4,
    RowStatus.UNKNOWN: 3,
    RowStatus.DUPLICATE: 2,
    RowStatus.FAILED: 1,
}


@dataclass(frozen=True)
class OutcomeRow:
    """One row of an outcome file: its outcome columns, as written."""

    status: str
    message: str
    invoice_id: str
    case_id: str
    case_number: str
    batch_id: str
    invoice_number: str


def read_outcome(path: Path, *, limits: ReadLimits) -> list[OutcomeRow]:
    """The outcome columns of every row of the outcome file ``path``; ``ReadError`` if it
    cannot be read. An outcome written before a column existed gives '' for that column."""
    return _read_outcome(path, limits=limits)[0]


def _read_outcome(path: Path, *, limits: ReadLimits) -> tuple[list[OutcomeRow], bool]:
    """``read_outcome``, and whether the outcome is a sandbox run's (nothing went to Amili)."""
    table = read_table(path, ReadOptions(expected_headers=OUTCOME_COLUMNS), limits=limits)
    # The outcome columns come last: a user column of the same name earlier on does not count.
    where = {header: i for i, header in enumerate(table.headers)}
    if "outcome_status" not in where:
        raise ReadError(str(path), "it has no outcome_status column, so it is no outcome file")
    columns = [
        [_as_written(text) for text in table.cells.iloc[:, where[name]].tolist()]
        if name in where
        else [""] * len(table)
        for name in OUTCOME_COLUMNS
    ]
    columns[0] = _known_statuses(str(path), columns[0], table.row_numbers.tolist())
    rows = [OutcomeRow(*values) for values in zip(*columns, strict=True)]
    return rows, SANDBOX_COLUMN in where


def _known_statuses(where: str, statuses: list[str], row_numbers: list[int]) -> list[str]:
    """The status column as filedrop wrote it, in whatever case it reads now ("succeeded" as
    typed over); a status that is none of filedrop's is a ``ReadError`` naming its row: left
    out, its invoice would read as never sent, and be sent again."""
    written = []
    for status, row in zip(statuses, row_numbers, strict=True):
        known = row_status_in(status)
        if known is None and status:
            raise ReadError(
                where,
                f'row {row}: outcome_status is "{printable(status[:40])}"'
                f"{'…' if len(status) > 40 else ''}, none of "
                f"filedrop's statuses ({', '.join(RowStatus)}); put back what filedrop "
                "wrote there",
            )
        written.append(status if known is None else known.value)
    return written


def _as_written(text: str) -> str:
    """A cell as filedrop wrote it, without the ``'`` a CSV outcome puts before ``=+-@``."""
    text = text.strip()
    return text[1:] if text[:1] == "'" and text[1:2] in ("=", "+", "-", "@") else text


def _statuses(rows: list[OutcomeRow]) -> set[RowStatus]:
    known = set(RowStatus)
    return {RowStatus(row.status) for row in rows if row.status in known}


# -- the evidence of a lost journal -----------------------------------------------------------


def outcomes_of(path: Path) -> list[Path]:
    """The outcome files of the input ``path``: beside it and, stamped, in ``archive/``."""
    beside = outcome_path(path)
    found = [beside] if is_regular_file(beside) else []
    archive = path.parent / ARCHIVE
    if archive.is_dir() and not archive.is_symlink():
        wanted = beside.name.casefold()
        with os.scandir(archive) as entries:
            found += sorted(
                Path(entry.path)
                for entry in entries
                if ARCHIVE_STAMP.match(entry.name)
                and ARCHIVE_STAMP.sub("", entry.name).casefold() == wanted
                # Never through a link, and never a pipe: opening one waits for a writer.
                and entry.is_file(follow_symlinks=False)
            )
    return found


def is_regular_file(path: Path) -> bool:
    """Whether ``path`` is a regular file itself, not a link: an outcome is never read through
    a link (as the look over the inbox, ``_outcome_files``, never does); a name the folder
    cannot even hold (too long) is none."""
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def lost_journal_evidence(
    path: Path, journal: Journal, *, target: str, limits: ReadLimits
) -> Path | None:
    """An outcome of ``path`` (beside it or archived) that shows more sent than the journal
    knows: the journal was lost, replaced or put back from an older copy. ``None`` when there
    is none.

    When the journal has never recorded a file of that name, any outcome showing rows sent
    counts, and one that cannot be read too (it is this very file's: better a question than an
    invoice sent twice). When it has, the name proves little: an inbox sharing the journal may
    have a file of the same name, or the journal may be an older copy. Then an outcome this
    journal did not write itself is read, and counts when it shows invoices sent that the
    journal does not know (``_shows_unknown_sent``).

    An outcome that only says nothing was sent (every row ``INVALID``, ``NOT_SENT`` or
    ``ERROR``) is no evidence: processing the file again cannot send anything twice. Nor is one
    older than a journal started afresh on purpose (``journal rebuild --fresh``).
    """
    outcomes = outcomes_of(path)
    if not outcomes:
        return None
    fresh_at = journal.started_fresh_at()
    if journal.knows_file_name(path.name):
        return next(
            (
                outcome
                for outcome, stamp in _not_known(journal, target, outcomes).items()
                if _shows_unknown_sent(
                    outcome,
                    stamp,
                    journal,
                    fresh_at=fresh_at,
                    target=target,
                    limits=limits,
                    named=True,
                )
            ),
            None,
        )
    for outcome in outcomes:
        sent = _sent_numbers(outcome, fresh_at, limits, trial=_is_sandbox(target))
        if sent is None or sent:
            return outcome
    return None


def inbox_lost_journal_evidence(
    inbox: Path,
    journal: Journal,
    *,
    target: str,
    limits: ReadLimits,
    passed: set[str] | None = None,
) -> tuple[str, Path] | None:
    """``lost_journal_evidence`` over the whole inbox and its archive: the name of an input and
    its outcome that shows invoices sent that the journal does not know. Then nothing in this
    inbox may be sent until the journal is rebuilt: a file under a new name (a re-export) may
    hold the very invoices that outcome shows sent. ``None`` when there is none.

    An outcome this journal wrote, or read before, is passed over unread. Any other is read and
    counts only if some invoice it shows sent is unknown at ``target``: whether the journal
    knows its name or its input's only decides which rows count (``_shows_unknown_sent``). One
    that cannot be read shows nothing: any file named like an outcome (junk, a bomb) would
    otherwise hold back the whole inbox.

    ``passed``, where given, holds the stamps of outcomes an earlier look found to show nothing
    unknown: they are passed over without asking the journal, and those found so now are added.
    A daemon looks again each time an outcome comes, and an archive of thousands cost it a
    quarter of a second every file (helper-141)."""
    found = list(_outcomes_and_owners(inbox))
    unknown = _not_known(journal, target, [outcome for outcome, _ in found], passed=passed)
    if not unknown:
        return None
    known = journal.known_names()
    fresh_at = journal.started_fresh_at()
    for outcome, owner in found:
        if outcome not in unknown:
            continue
        source = owner()
        recorded = _recorded_name(outcome, source)
        names = {outcome.name, recorded}
        if _kept(outcome, source):  # under a stamped name: known by the name without it too
            names |= {_unstamped(outcome.name), _unstamped(_input_name(outcome))}
        if _shows_unknown_sent(
            outcome,
            unknown[outcome],
            journal,
            fresh_at=fresh_at,
            target=target,
            limits=limits,
            named=bool(names & known),
        ):
            return recorded, outcome
        if passed is not None:
            passed.add(unknown[outcome])
    return None


#: The rows whose invoice numbers a journal that knows an outcome's file must know as well, as a
#: rebuild records them: these went to Amili for good (a ``DUPLICATE`` row with a number repeats
#: one sent before). ``FAILED`` rows may go again, and a rebuild does not record them.
_KEPT_FOR_GOOD = frozenset(
    {RowStatus.SUCCEEDED, RowStatus.PENDING, RowStatus.UNKNOWN, RowStatus.DUPLICATE}
)


def _not_known(
    journal: Journal, target: str, outcomes: list[Path], *, passed: set[str] | None = None
) -> dict[Path, str]:
    """The outcomes ``journal`` does not know all of (``Journal.known_outcomes``), in their
    order, each with its ``written_stamp``; those ``passed`` holds are not asked about, and
    those the journal knows are added to it."""
    stamps = {outcome: written_stamp(outcome) for outcome in outcomes}
    asked = [
        stamp for stamp in stamps.values() if stamp and (passed is None or stamp not in passed)
    ]
    known = journal.known_outcomes(target=target, stamps=asked)
    if passed is not None:
        passed |= known
    return {
        outcome: stamp
        for outcome, stamp in stamps.items()
        if stamp and stamp not in known and (passed is None or stamp not in passed)
    }


def _shows_unknown_sent(
    outcome: Path,
    stamp: str,
    journal: Journal,
    *,
    fresh_at: float | None,
    target: str,
    limits: ReadLimits,
    named: bool,
) -> bool:
    """Whether ``outcome`` (``stamp``) shows invoices sent that ``journal`` does not know at
    ``target``. One read that shows none is remembered in the journal, and not read again.

    ``named``: the journal knows the outcome's file by name. Then only rows sent for good
    count (``_KEPT_FOR_GOOD``), and only with their number: an outcome from before the number
    column (``''``) cannot be checked, and its name is all there is. Otherwise every row sent
    counts, and one without a number is unknown by nature.
    """
    try:
        found = outcome.stat()
    except OSError:
        return False
    if fresh_at is not None and found.st_mtime <= fresh_at:
        return False  # older than a journal started afresh on purpose
    sent = _sent_rows_once(
        outcome, found.st_mtime_ns, found.st_size, limits, trial=_is_sandbox(target)
    )
    if sent is None:
        return False  # unreadable: no evidence, and perhaps readable later
    for_good = {number for number, status, _ in sent if status in _KEPT_FOR_GOOD} - {""}
    numbers = for_good if named else {number for number, _, _ in sent}
    known = journal.invoices(target=target, numbers=numbers) if numbers else {}
    if len(known) < len(numbers) or _behind(sent, known):
        return True
    # One sent for good that the journal would let go again is as unknown: the journal holds
    # it FAILED (an older copy, from before a corrected export sent it). Unless the outcome
    # calls it UNKNOWN in the very batch that 'filedrop resolve --not-sent' settled since: the
    # operator's word, which comes after the outcome.
    settled = {
        number
        for number, status, advised in sent
        if status is RowStatus.UNKNOWN
        and advised is not None
        and number in known
        and known[number].status is InvoiceState.NOT_SENT
        and known[number].batch == advised
    }
    if any(known[number].status not in BLOCKING_INVOICE_STATES for number in for_good - settled):
        return True
    journal.outcome_checked(target=target, stamp=stamp)
    return False


def _behind(
    sent: Iterable[tuple[str, RowStatus, int | None]], known: Mapping[str, InvoiceRecord]
) -> bool:
    """Whether the outcome's ``sent`` rows show an invoice went (SUCCEEDED or PENDING, from a
    batch Amili answered) that the journal (``known``) holds UNKNOWN: the journal is older than
    the outcome, put back from a copy taken before that batch was resolved as not sent and the
    invoice sent again. UNKNOWN blocks the number, so this passed for known, and 'resolve
    --not-sent' on the old batch then sent the invoices twice (found by a hostile review)."""
    return any(
        status in WENT_INVOICE_STATES  # the row statuses spell the invoice states
        and number in known
        and known[number].status is InvoiceState.UNKNOWN
        for number, status, _ in sent
    )


@functools.lru_cache(maxsize=256)
def _sent_rows_once(
    outcome: Path, mtime_ns: int, size: int, limits: ReadLimits, *, trial: bool
) -> tuple[tuple[str, RowStatus, int | None], ...] | None:
    """``_sent_rows`` of an outcome as it is now (its time and size are part of the key)."""
    sent = _sent_rows(outcome, None, limits, trial=trial)
    return None if sent is None else tuple(sent)


def _sent_numbers(
    outcome: Path, fresh_at: float | None, limits: ReadLimits, *, trial: bool
) -> list[str] | None:
    """The invoice numbers of the rows ``outcome`` shows sent (``_sent_rows``)."""
    sent = _sent_rows(outcome, fresh_at, limits, trial=trial)
    return None if sent is None else [number for number, _, _ in sent]


def _sent_rows(
    outcome: Path, fresh_at: float | None, limits: ReadLimits, *, trial: bool
) -> list[tuple[str, RowStatus, int | None]] | None:
    """The invoice number, status and advised batch (``_advised_number``, of an UNKNOWN row) of
    each row ``outcome`` shows sent (``SENT_ROW_STATUSES``),
    after the journal was last started afresh on purpose; None when it cannot be read. A
    sandbox run's shows none unless ``trial`` (the journal is a sandbox's too): nothing in it
    went to Amili, so for another environment it is no evidence of a lost journal, as the
    rebuild does not read it into one either."""
    try:
        if fresh_at is not None and outcome.stat().st_mtime <= fresh_at:
            return []
        rows, sandbox = _read_outcome(outcome, limits=limits)
    except FileNotFoundError:
        return []
    except (OSError, ReadError):
        return None
    if sandbox and not trial:
        return []
    # An outcome older than the invoice number column gives ''.
    return [
        (row.invoice_number, RowStatus(row.status), _advised_number(row))
        for row in rows
        if row.status in SENT_ROW_STATUSES  # a StrEnum member equals its text
    ]


def _is_sandbox(target: str) -> bool:
    """Whether ``target`` (environment:organisation) is the sandbox's."""
    return target.partition(":")[0] == "sandbox"


def shows_sent(outcome: Path, *, limits: ReadLimits) -> bool:
    """Whether the outcome file ``outcome`` (a regular file) shows rows sent, or cannot be read
    to tell: such an outcome is kept, never overwritten by another version's."""
    numbers = _sent_numbers(outcome, None, limits, trial=True)
    return numbers is None or bool(numbers)


def lost_journal_message(name: str, outcome: Path, journal: Path | PostgresLocation) -> str:
    """The one sentence a run, status and report say when an outcome in the inbox shows more
    than its journal knows: every file of the inbox is held back then
    (``inbox_lost_journal_evidence``). The names in it are escaped here, as they are data."""
    return (
        f"{printable(name)}: its outcome {printable(str(outcome))} shows invoices sent that the "
        f"journal {journal} does not know were sent, so the journal was lost, replaced or put "
        "back from an older copy; nothing in this inbox is sent until 'filedrop journal rebuild' "
        "has read the outcomes back into it (or FILEDROP_STATE points at the journal in use)"
    )


def journal_lost_sentence(
    journal: Path | PostgresLocation,
    inboxes: list[Path],
    setting: str,
    *,
    limits: ReadLimits,
    empty: bool = False,
) -> str | None:
    """What ``status`` and ``report`` say when there is no journal at ``journal`` (or, with
    ``empty``, one that holds no file) but an outcome in one of ``inboxes`` (or its ``archive/``)
    shows files were processed; None when none does. ``setting`` is where the journal's place is
    set (``FILEDROP_STATE``, a config key).

    Only an outcome that reads back (within ``limits``) and shows rows sent counts, as for a
    run (``lost_journal_evidence``): a stray file named like one, or an outcome of rows none of
    which went, raised the alarm, and no rebuild could clear it."""
    outcomes = [
        outcome
        for inbox in inboxes
        for outcome, _ in _outcome_files(inbox)
        if _shows_sent(outcome, limits)
    ]
    marks = [mark for inbox in inboxes for mark in marks_or_their_folder(inbox)]
    # An empty journal is what a lost one leaves once anything opened it again (a run refused
    # for the loss, a status): as lost as none at all.
    none = f"The journal at {journal} holds no file" if empty else f"No journal at {journal}"
    if not outcomes:
        if not marks:
            return None
        return (
            f"{none}, yet a file was being sent from the inbox (filedrop's mark "
            f"of it is {printable(str(marks[0]))}, and no outcome shows what went): the journal "
            f"was lost or moved; point {setting} at the journal in use, or see what 'filedrop "
            "run' says of that mark."
        )
    # A rebuild reads outcomes, not marks: a mark goes on holding the inbox back after it.
    besides = (
        f"; a file was being sent too (filedrop's mark of it is {printable(str(marks[0]))}), "
        "which a rebuild does not read: see what 'filedrop run' says of that mark"
        if marks
        else ""
    )
    return (
        f"{none}, yet the inbox holds {plural(len(outcomes), 'outcome file')} "
        f"(such as {printable(str(outcomes[0]))}), so files were processed: the journal was lost "
        "or moved; run 'filedrop journal rebuild' with the FILEDROP_ENV and FILEDROP_ORG_ID "
        f"they were sent with, or point {setting} at the journal in use{besides}."
    )


def _shows_sent(outcome: Path, limits: ReadLimits) -> bool:
    """Whether ``outcome`` reads back and shows a row sent (a sandbox run's too: nothing here
    tells which environment the journal was of)."""
    try:
        found = outcome.stat()
    except OSError:
        return False
    return bool(_sent_rows_once(outcome, found.st_mtime_ns, found.st_size, limits, trial=True))


def no_journal_sentence(
    journal: Path | PostgresLocation,
    inboxes: list[Path],
    setting: str,
    *,
    limits: ReadLimits,
) -> str:
    """``journal_lost_sentence``, or that nothing has been processed yet."""
    lost = journal_lost_sentence(journal, inboxes, setting, limits=limits)
    return lost or f"No journal at {journal} yet: nothing has been processed."


# -- rebuilding ---------------------------------------------------------------------------------


@dataclass
class RebuildReport:
    """What ``rebuild_journal`` read and recorded."""

    outcomes: int = 0
    files: int = 0
    invoices: int = 0
    queued_batches: int = 0
    unknown_batches: int = 0
    unreadable: list[str] = field(default_factory=list)
    """Outcome files that could not be read, each with why."""
    rows_without_number: int = 0
    """Rows that say something was sent, in outcomes written before filedrop recorded the
    invoice number in them: nothing of them can be rebuilt."""
    renumbered: list[tuple[str, int, int]] = field(default_factory=list)  # in outcome order
    sandbox: int = 0
    """Outcomes of sandbox runs, not read back into a journal for another environment."""
    taken_again: int = 0
    """Files whose input is in the inbox, which the next run takes again."""
    """(outcome file, the batch number its advice names, the number it has now): batches whose
    number was taken by another batch of this journal."""


@dataclass(frozen=True)
class _Outcome:
    """One outcome file read, with the input it belongs to (if that is still there)."""

    path: Path
    rows: list[OutcomeRow]
    mtime: float
    input: Path | None
    name: str  # the input's name as the journal knew it (without archive/'s stamp)


def rebuild_journal(
    journal: Journal, *, inbox: Path, target: str, limits: ReadLimits
) -> RebuildReport:
    """Read every outcome file in ``inbox`` and ``inbox/archive`` back into ``journal``.

    Each invoice number with its status, ids and batch is recorded for ``target``; where
    several outcomes speak of one number, the one that knows most wins (``SUCCEEDED`` over
    ``PENDING`` over ``UNKNOWN``, then the newest). Batches that were ``PENDING`` come back
    ``queued`` (the next run or ``watch`` polls them), those ``UNKNOWN`` come back ``unknown``
    (``filedrop status`` and ``filedrop resolve`` take them). Each file is recorded: one with
    rows ``PENDING`` or ``NOT_SENT`` is resumed, one whose input is in the inbox is taken again
    (``_file_state``: what it sent is not sent again), an archived one is done. What the
    journal already knows is kept.
    """
    report = RebuildReport()
    outcomes: list[_Outcome] = []
    for outcome_file, input_file in _outcome_files(inbox):
        try:
            rows, sandbox = _read_outcome(outcome_file, limits=limits)
            mtime = outcome_file.stat().st_mtime
        except (OSError, ReadError) as exc:
            report.unreadable.append(f"{outcome_file.name} ({exc})")
            continue
        report.outcomes += 1
        if sandbox and not _is_sandbox(target):
            report.sandbox += 1  # a trial: nothing in it went to this Amili
            continue
        name = _recorded_name(outcome_file, input_file)
        outcomes.append(_Outcome(outcome_file, rows, mtime, input_file, name))
    winners = _winners(outcomes)
    records = [(outcome, *_records(outcome, winners, report)) for outcome in outcomes]
    # Every number an outcome's advice names is kept for its batch: others are drawn above.
    named = max((b.number or 0 for _, _, batches in records for b in batches), default=0)
    for outcome, invoices, batches in records:
        held = _held_day(outcome.rows)
        if not _statuses(outcome.rows) & {*SENT_ROW_STATUSES, RowStatus.NOT_SENT} and not held:
            continue  # nothing was sent from it, nor held back: processing it again is harmless
        state, sha256 = _file_state(outcome), _sha256(outcome)
        known = journal.find_file(target=target, name=outcome.name, sha256=sha256) is not None
        added, renumbered = journal.record_rebuilt_file(
            target=target,
            name=outcome.name,
            path=outcome.input or outcome.path.with_name(_input_name(outcome.path)),
            sha256=sha256,
            state=state,
            counts=dict(Counter(row.status for row in outcome.rows)),
            outcome=outcome.path,
            batches=batches,
            invoices=invoices,
            draw_above=named,
            created_at=None if held is None else noon_of(held),
        )
        report.invoices += added
        report.renumbered.extend((outcome.path.name, old, new) for old, new in renumbered)
        if known:
            continue  # the journal knew it already: it keeps its state and batches
        report.taken_again += state is FileState.RETRY
        report.files += 1
        report.queued_batches += sum(s is BatchState.QUEUED for s in batches.values())
        report.unknown_batches += sum(s is BatchState.UNKNOWN for s in batches.values())
    return report


def _held_day(rows: list[OutcomeRow]) -> date | None:
    """The day an outcome's rows say their invoices were held on as not due yet
    (``skip.not_due``), the earliest if several: recorded as the day the file was taken, the
    next run judges it on that day again. Taken as new, it would send them from an export days
    old. A day no run can have judged on (before 1970, after today: an outcome edited by hand)
    is passed over."""
    days = (held_on(row.message) for row in rows if row.status == RowStatus.SKIPPED)
    return min((day for day in days if day is not None and _FIRST_DAY <= day <= date.today()),
               default=None)  # fmt: skip


_FIRST_DAY = date(1970, 1, 2)  # the first day whose noon is a time stamp everywhere


def noon_of(day: date) -> float:
    """The time stamp a file taken on ``day`` is recorded with when only its day is known."""
    return datetime.combine(day, time(12)).timestamp()


def held_day_unrecorded(
    path: Path, sha256: str, journal: Journal, *, target: str, limits: ReadLimits
) -> tuple[Path, date] | None:
    """Where the journal never took a file of ``path``'s name, at any target (it was lost, or
    started anew), an outcome of it that held invoices back as not due on a day, and that day
    (the earliest, if several): the day to judge the file on. Taken as new, it would be judged
    today, and an invoice due since sent from an export days old, whose invoice may have been
    paid meanwhile; with its journal, the same bytes are not read again at all.

    Where the journal knows a file of that name, nothing is read: it is that journal's outcome
    (opened and saved since, copied, or its day written in another time zone), and a new export
    under the name is judged today. A journal put back from an older copy knows the name too,
    and gives no day (``journal rebuild`` reads the day back).

    Which outcomes: the one beside it, the last written under its name (if the input now there
    is a newer export, the old day holds back once what fell due since, never sending early);
    and each archived one whose input archived with it has these very bytes (the archive holds
    every earlier export of the name, each judged on its own day). One that cannot be read, one
    of a sandbox trial for another target or of another target for a sandbox trial, or one older
    than a journal started afresh on purpose gives no day. Such an outcome shows nothing sent,
    or ``lost_journal_evidence`` holds the file back first."""
    if journal.knows_file_name(path.name):
        return None
    beside = outcome_path(path)
    fresh_at = journal.started_fresh_at()
    found: list[tuple[date, Path]] = []
    for outcome in outcomes_of(path):
        if outcome != beside and not _archived_with(outcome, beside, path.name, sha256):
            continue
        try:
            if fresh_at is not None and outcome.stat().st_mtime <= fresh_at:
                continue
            rows, sandbox = _read_outcome(outcome, limits=limits)
        except (OSError, ReadError):
            continue
        day = _held_day(rows)
        if day is not None and sandbox == _is_sandbox(target):
            found.append((day, outcome))
    return min(((o, d) for d, o in found), key=lambda held: held[1], default=None)


def _archived_with(outcome: Path, beside: Path, name: str, sha256: str) -> bool:
    """Whether the input archived with ``outcome`` (``archive/<stamp>-<name>``, the stamp its
    own) has the bytes ``sha256``."""
    stamp = outcome.name[: len(outcome.name) - len(beside.name)]
    try:
        return content_hash(outcome.with_name(stamp + name)) == sha256
    except OSError:
        return False


def outcome_stamps(inbox: Path) -> tuple[tuple[str, str | None], ...]:
    """Each outcome file's path, size and time in ``inbox`` and its archive: what changes when
    an outcome comes, goes or is written anew, copied over another in place too (helper-143:
    the archive folder's own stamp missed that, and a copy's invoices went twice), so a look
    over them can be kept until then. From the folders' listings, a few ms for thousands."""
    stamps: list[tuple[str, str | None]] = []
    for folder in (inbox, inbox / ARCHIVE):
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.name.lower().endswith(OUTCOME_SUFFIXES):
                        try:
                            info = entry.stat(follow_symlinks=False)
                        except OSError:
                            continue
                        stamps.append((entry.path, f"{info.st_size}:{info.st_mtime_ns}"))
        except OSError:
            continue
    return tuple(sorted(stamps))


def _outcome_files(inbox: Path) -> Iterator[tuple[Path, Path | None]]:
    """Each outcome file in ``inbox`` and ``inbox/archive``, with its input where it is there."""
    for outcome, owner in _outcomes_and_owners(inbox):
        yield outcome, owner()


def _outcomes_and_owners(inbox: Path) -> Iterator[tuple[Path, Callable[[], Path | None]]]:
    """``_outcome_files`` with each input found only when asked for: finding them scans the
    whole folder, and an archive of thousands cost a daemon's look at every file a quarter of
    a second, where most outcomes are passed over by their stamps alone."""
    for folder in (inbox, inbox / ARCHIVE):
        if not folder.is_dir() or folder.is_symlink():
            continue
        owners: dict[str, Path] | None = None

        def owner(name: str, folder: Path = folder) -> Path | None:
            nonlocal owners
            if owners is None:
                owners = {
                    dest.name.casefold(): source
                    for source, dest in outcome_paths(scan(folder)[0]).items()
                    if dest is not None
                }
            return owners.get(name.casefold())

        with os.scandir(folder) as entries:
            names = sorted(
                entry.name
                for entry in entries
                if entry.name.lower().endswith(OUTCOME_SUFFIXES)
                and not entry.name.startswith(".")
                and entry.is_file(follow_symlinks=False)
            )
        for name in names:
            yield folder / name, functools.partial(owner, name)


def _input_name(outcome: Path) -> str:
    """The input an outcome's name points to when the input is gone (``x.outcome.csv``: x.csv)."""
    lowered = outcome.name.lower()
    suffix = next(s for s in OUTCOME_SUFFIXES if lowered.endswith(s))
    stem = outcome.name[: -len(suffix)]
    if stem.lower().endswith(INPUT_SUFFIXES):
        return stem  # report.xls.outcome.xlsx came from report.xls
    return stem + suffix.removeprefix(".outcome")


def _recorded_name(outcome: Path, source: Path | None) -> str:
    """The name under which the journal records the input of ``outcome``: ``source``'s (the
    input beside it), else the one its name points to; without the stamp of one kept under a
    stamped name (``_kept``)."""
    name = source.name if source is not None else _input_name(outcome)
    return _unstamped(name) if _kept(outcome, source) else name


def _kept(outcome: Path, source: Path | None) -> bool:
    """Whether ``outcome`` was kept under a stamped name: in ``archive/``, or (when archive/
    could not be a folder) in the inbox without an input of its own. An export whose own name
    starts like a stamp ('20240301-120000-x.csv') has its input beside its outcome."""
    return outcome.parent.name == ARCHIVE or (
        source is None and ARCHIVE_STAMP.match(outcome.name) is not None
    )


def _unstamped(name: str) -> str:
    return ARCHIVE_STAMP.sub("", name)


def _sha256(outcome: _Outcome) -> str:
    """The input's hash; for an input that is gone, one no input's bytes can ever have."""
    if outcome.input is not None:
        try:
            return content_hash(outcome.input)
        except OSError:
            pass
    return f"outcome-{content_hash(outcome.path)}"


def _file_state(outcome: _Outcome) -> FileState:
    """Resumable when rows wait (``PENDING``, ``NOT_SENT``) or an input is in the inbox;
    ``gone`` when rows wait ``NOT_SENT`` for an input that is not there.

    Nothing tells whether the input beside an outcome is the version the outcome speaks of:
    the next day's export under the same name may be there, with any time on it (``cp -p``,
    an unzip). So it is taken again: its invoices the outcome shows sent are not sent again,
    any other is, and every row gets its status. An archived input is the outcome's own (they
    are archived together), and done.
    """
    statuses = _statuses(outcome.rows)
    if RowStatus.NOT_SENT in statuses:
        # No run resumes an input that is not there: its rows go when it is dropped again.
        return FileState.RETRY if outcome.input is not None else FileState.GONE
    if RowStatus.PENDING in statuses:
        return FileState.WAITING
    # An outcome from before outcome_invoice_number cannot block what it shows sent: then the
    # input is taken for the version it speaks of, and left alone.
    if outcome.input is not None and outcome.input.parent.name != ARCHIVE and _numbered(outcome):
        return FileState.RETRY
    return FileState.DONE


def _rank(row: OutcomeRow) -> int:
    """How much the row knows of its invoice (``_RANK``). A row that waits for another file's
    batch (``WAITS_ELSEWHERE_ROW``) knows no more than a DUPLICATE of it: the other file's own
    outcome, if there, speaks for the batch (its API id, all its invoices)."""
    if _waits_elsewhere(row):
        return _RANK[RowStatus.DUPLICATE]
    return _RANK[RowStatus(row.status)]


def _waits_elsewhere(row: OutcomeRow) -> bool:
    return row.status in (RowStatus.UNKNOWN, RowStatus.PENDING) and bool(
        WAITS_ELSEWHERE_ROW.match(row.message)
    )


def _winners(outcomes: list[_Outcome]) -> dict[str, tuple[int, float, Path]]:
    """For each invoice number: (rank, outcome time, outcome file) of the outcome that wins."""
    best: dict[str, tuple[int, float, Path]] = {}
    for outcome in outcomes:
        for row in outcome.rows:
            if row.invoice_number and row.status in _RANK:
                candidate = (_rank(row), outcome.mtime, outcome.path)
                current = best.get(row.invoice_number)
                if current is None or candidate[:2] > current[:2]:
                    best[row.invoice_number] = candidate
    return best


Invoice = tuple[str, InvoiceState, RebuiltBatch | None, str, str, str, str]


def _numbered(outcome: _Outcome) -> bool:
    """Whether the outcome has the invoice number as sent (``outcome_invoice_number``): every
    row sent from it has one then (a number repeated within the file has none)."""
    return any(row.invoice_number for row in outcome.rows)


def _records(
    outcome: _Outcome, winners: dict[str, tuple[int, float, Path]], report: RebuildReport
) -> tuple[list[Invoice], dict[RebuiltBatch, BatchState]]:
    """The invoices this outcome wins, in the journal's terms, and the batches they were in."""
    invoices: dict[str, Invoice] = {}
    batch_statuses: defaultdict[RebuiltBatch, set[InvoiceState]] = defaultdict(set)
    # A batch whose API id is known is one batch, named by any of its UNKNOWN rows' advice.
    advised = {
        row.batch_id: number
        for row in outcome.rows
        if row.batch_id and (number := _advised_number(row)) is not None
    }
    numbered = _numbered(outcome)
    for row in outcome.rows:
        # FAILED: Amili refused it, so it may go again (corrected, from a new version).
        if row.status not in _RANK or row.status == RowStatus.FAILED:
            continue
        number = row.invoice_number
        if not number:
            report.rows_without_number += not numbered  # else repeated within the file
            continue
        if winners[number][2] != outcome.path or number in invoices:
            continue
        status, batch, message = _invoice_state(row, outcome.path.name, advised)
        if batch is not None:
            batch_statuses[batch].add(status)
        invoices[number] = (
            number,
            status,
            batch,
            row.invoice_id,
            row.case_id,
            row.case_number,
            message,
        )
    return list(invoices.values()), {b: _batch_state(s) for b, s in batch_statuses.items()}


def _advised_number(row: OutcomeRow) -> int | None:
    """The journal number of the row's batch, from an UNKNOWN row's 'filedrop resolve N'."""
    if row.status != RowStatus.UNKNOWN:
        return None
    advice = RESOLVE_ADVICE.search(row.message)
    return int(advice[1]) if advice else None


def _invoice_state(
    row: OutcomeRow, outcome_name: str, advised: dict[str, int]
) -> tuple[InvoiceState, RebuiltBatch | None, str]:
    """(status, its batch or None for no batch, message); ``advised``: the journal number
    of each API batch id that an UNKNOWN row's advice names."""
    status = RowStatus(row.status)
    if status is RowStatus.DUPLICATE or (status is RowStatus.PENDING and _waits_elsewhere(row)):
        # Sent (or on its way) from another file whose outcome is not here: what it became is
        # not known beyond the ids this row repeats; a case id means Amili has it.
        known = bool(row.case_id or row.invoice_id)
        state = InvoiceState.SUCCEEDED if known else InvoiceState.UNKNOWN
        return state, None, f"rebuilt from a {status} row of {outcome_name}: {row.message}"
    state = InvoiceState(status.value)
    if state is InvoiceState.UNKNOWN:
        number = advised.get(row.batch_id) if row.batch_id else _advised_number(row)
        return state, RebuiltBatch(row.batch_id, number), row.message
    batch = RebuiltBatch(row.batch_id, advised.get(row.batch_id)) if row.batch_id else None
    if state is InvoiceState.PENDING:
        return state, batch, ""
    return state, batch, row.message if state is InvoiceState.FAILED else ""


def _batch_state(statuses: set[InvoiceState]) -> BatchState:
    if InvoiceState.PENDING in statuses:
        return BatchState.QUEUED
    if InvoiceState.UNKNOWN in statuses:
        return BatchState.UNKNOWN
    return BatchState.DONE
