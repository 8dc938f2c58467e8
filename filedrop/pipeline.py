"""One file end to end.

read -> map and validate -> leave out what the journal says was sent -> plan batches -> claim and
POST each batch (bounded) -> poll every batch on its own schedule -> outcome from the journal.

The outcome is always rebuilt from the journal, never from memory, so a resumed file (after a
crash, or a batch that outlived the poll timeout) goes through exactly the same code as a new one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import errno
import functools
import hashlib
import logging
import os
import queue
import re
import shutil
import stat
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from concurrent.futures import wait as wait_for
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from filedrop.api.client import (
    AmbiguousSubmission,
    AmiliClient,
    ApiError,
    ApiUnavailable,
    AuthError,
    BatchResult,
    EncodedInvoices,
    PollSchedule,
    StillPending,
    encode_invoices,
)
from filedrop.api.poller import DaemonPool, Poller
from filedrop.batch import plan_batches
from filedrop.errors import (
    ClaimLostError,
    ConfigError,
    FiledropError,
    MappingError,
    ReadAgainLaterError,
    ReadError,
)
from filedrop.inbox import (
    ARCHIVE,
    HashedFile,
    NotRegularFileError,
    archive_folder,
    content_hash,
    hash_file,
    in_folder,
    is_same_file,
    outcome_path,
    saved_over,
    scan,
    stamped_names,
)
from filedrop.inflight import (
    MarkFate,
    MarkHeldError,
    Sending,
    clear_mark,
    mark_of,
    unknown_mark,
)
from filedrop.journal import BatchRecord, FileRecord, InvoiceRecord, Journal, this_owner
from filedrop.journal.rebuild import (
    held_day_unrecorded,
    inbox_lost_journal_evidence,
    lost_journal_evidence,
    lost_journal_message,
    noon_of,
    outcome_stamps,
    shows_sent,
)
from filedrop.journal.store import CLAIM_LOST, REBUILT, FinishedBatch
from filedrop.logs import fields, plural, printable
from filedrop.mapping import Mapping, select_mapping
from filedrop.mapping.groups import zeros_in_front
from filedrop.mapping.payload import invoice_rows
from filedrop.mapping.prepare import (
    Prepared,
    PreparedInvoice,
    Rejection,
    payloads,
    prepare,
    prepare_parts,
)
from filedrop.mapping.tree import Obj
from filedrop.memory import frozen_for_gc, no_cyclic_gc, quick_switches, release_freed_memory
from filedrop.metrics import (
    BATCH_NOT_SENT,
    BATCH_REFUSED,
    BATCH_SUBMITTED,
    BATCH_UNKNOWN,
    InboxMetrics,
)
from filedrop.mounts import ShareWatch
from filedrop.outcome import (
    OUTCOME_COLUMNS,
    BatchLine,
    OutcomeSummary,
    RowsAhead,
    check_outcome_name,
    earlier_outcome_problem,
    is_sandbox,
    keep_aside,
    outcome_paths,
    rows_ahead,
    write_error_outcome,
    write_outcome,
    written_stamp,
    xlsx_fit_problem,
)
from filedrop.progress import Progress
from filedrop.read import (
    EMPTY_FILE,
    ReadInfo,
    ReadLimits,
    ReadOptions,
    Table,
    read_table,
)
from filedrop.states import (
    BLOCKING_INVOICE_STATES,
    FINAL_FILE_STATES,
    ROW_STATUS_OF_INVOICE,
    WAITS_ELSEWHERE,
    BatchState,
    FileState,
    InvoiceState,
    RowStatus,
    orphan_message,
    resolve_command,
)

log = logging.getLogger("filedrop")


#: A batch being polled: its journal id and the future of its poll.
Poll = tuple[int, Future[BatchResult | StillPending]]
#: A polled batch as its poll ended: its journal id, and its result or that it is still QUEUED.
Ended = tuple[int, BatchResult | StillPending]
#: Handed from a posting or polling thread to the file's: a finished POST, or an ended poll.
Handed = tuple[None, Future[Poll | None]] | tuple[int, Future[BatchResult | StillPending]]


@dataclass(kw_only=True)
class Context:
    """Everything a file needs to be processed; shared by the files of one run or daemon.

    Built from ``Settings`` by ``runner.open_context`` (the values have no defaults here, so
    each default lives in ``Settings`` alone). ``clock`` and ``sleep`` are wall time, injected
    so that tests of waiting take no time.
    """

    client: AmiliClient
    journal: Journal
    mappings: list[Mapping]
    environment: str
    org_id: str
    inbox: Path
    inbox_name: str
    """The inbox's name in the config's list of inboxes, ``default`` when it lists none."""
    batch_size: int
    concurrent_batches: int
    concurrent_files: int
    stability_s: float
    claim_stale_s: float
    schedule: PollSchedule
    archive: bool
    read_limits: ReadLimits
    metrics: InboxMetrics
    """This inbox's series and health facts (its name is the ``inbox`` label)."""
    sharing: tuple[Path, ...] = ()
    """The config's other inboxes with this one's journal and target, which this process
    serves too: the evidence of a lost journal found in any of them (an outcome, a sending
    mark) holds them all back, as a file dropped into one may be a copy of one dropped into
    another; and a copy of an export unfinished in one of them is that inbox's to report."""
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], object] = time.sleep
    stop: threading.Event = field(default_factory=threading.Event)
    owner: str = field(default_factory=this_owner)
    progress: Progress = field(default_factory=Progress)
    poster: DaemonPool = field(init=False)
    posting: threading.BoundedSemaphore = field(init=False)
    """Held from a batch's claim to its POST's answer: at most ``concurrent_batches`` at once."""
    poller: Poller = field(init=False)
    share: ShareWatch = field(init=False)
    """Whether the share the inbox lies on is mounted: unmounted, its files all look deleted."""
    _said: set[str] = field(init=False, default_factory=set)
    _said_lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    _lost: tuple[float, object, tuple[str, Path] | None] = field(
        init=False, default=(-1e9, None, None)
    )
    #: The outcomes' stamps a look found to show nothing unknown (``inbox_lost_journal_evidence``),
    #: forgotten every ``_LOOK_FOR_LOST_JOURNAL_S``.
    _passed: set[str] = field(init=False, default_factory=set)
    _lost_lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        # One thread per POST in flight: each batch's JSON is built by the file's thread while
        # the posting threads wait for their answers (_send_batches), and as many more batches
        # wait built in the queue, so a thread that is done takes the next at once. Twice as
        # many threads, each building its own batch's JSON, were as fast against an API 90 ms
        # away and cost 1-3 s more CPU for a 200,000-row file (the interpreter lock passed
        # among eight threads).
        self.poster = DaemonPool(
            workers=self.concurrent_batches, queued=self.concurrent_batches, name="filedrop-post"
        )
        self.posting = threading.BoundedSemaphore(self.concurrent_batches)
        self.poller = Poller(self.client, schedule=self.schedule, timed=self.metrics.poll_took)
        self.share = ShareWatch(self.inbox)

    @property
    def target(self) -> str:
        """Which API and organisation invoice numbers are unique within."""
        return f"{self.environment}:{self.org_id}"

    @functools.cached_property
    def read_under(self) -> str:
        """What a file's ``ERROR`` was found under: the mapping files' texts and the read limits.

        A file refused as an ERROR is final for its bytes only while these stay the same: once
        the user fixes the mapping it did not fit, or raises a limit it went over, the next run
        takes it again (nothing was sent from it, and its invoice numbers are checked as any
        file's are), rather than skipping it as processed and exiting 0.
        """
        limits = {
            f.name: getattr(self.read_limits, f.name)
            for f in dataclasses.fields(self.read_limits)
            if f.name != "sources"
        }
        mappings = sorted((m.path.name, m.text_sha256) for m in self.mappings)
        return hashlib.sha256(repr((mappings, sorted(limits.items()))).encode()).hexdigest()

    def say_once(self, topic: str) -> bool:
        """True the first time ``topic`` is asked about in this run or daemon: log it then."""
        with self._said_lock:
            if topic in self._said:
                return False
            self._said.add(topic)
            return True

    def close(self) -> None:
        self.poller.close()

    def lost_journal_elsewhere(self) -> tuple[str, Path] | None:
        """``inbox_lost_journal_evidence`` for this inbox: looked for again whenever an outcome
        in it, or in its archive, comes, goes or changes (``outcome_stamps``), and after 30 s
        at most (a daemon sees a rebuild without a restart). An outcome another journal wrote
        that landed within the 30 s of an earlier look went unseen, and a re-export dropped
        with it went again (a hostile review, helper-140)."""
        folders = (self.inbox, *self.sharing)
        with self._lost_lock:  # one file thread looks; the others take what it found
            looked_at, seen, found = self._lost
            stamps = tuple(outcome_stamps(folder) for folder in folders)
            expired = time.monotonic() - looked_at > _LOOK_FOR_LOST_JOURNAL_S
            if stamps != seen or expired:
                if expired:
                    self._passed.clear()  # a rebuild, a journal put back: all looked at again
                found = next(
                    (
                        evidence
                        for folder in folders
                        if (
                            evidence := inbox_lost_journal_evidence(
                                folder,
                                self.journal,
                                target=self.target,
                                limits=self.read_limits,
                                passed=self._passed,
                            )
                        )
                    ),
                    None,
                )
                self._lost = (time.monotonic(), stamps, found)
            return found


#: How long a look over the inbox for a lost journal's evidence holds.
_LOOK_FOR_LOST_JOURNAL_S = 30.0


class Setback(enum.Enum):
    """Why a file was left ``RETRY``; it decides what the run's exit code says."""

    UNAVAILABLE = "unavailable"
    """Amili was down or out of reach: nothing is wrong with the setup, the next run continues."""
    SETUP = "setup"
    """Credentials, organisation id, URL or batch size were refused: fix the setup."""
    FAULT = "fault"
    """The disk, the outcome file or filedrop itself failed: a person should look."""
    CHANGING = "changing"
    """The file changed while it was read: it is taken again once it settles (the next run's,
    as a file still being written is)."""
    ELSEWHERE = "elsewhere"
    """The same export is being sent from the folder of an inbox this process does not serve,
    and not finished there: a run of that inbox finishes it (exit 3 here, as nothing of this
    copy went yet)."""


@dataclass(frozen=True)
class FileReport:
    """How one file went: its rows per status, where its outcome is, and in what state.

    ``setback`` says why a ``RETRY`` file stopped, and so whether its NOT_SENT rows wait for
    Amili (exit 3) or for the operator (exit 2).
    """

    path: Path
    state: FileState
    counts: dict[str, int]
    outcome: Path | None = None
    message: str | None = None
    setback: Setback | None = None
    held_by: str | None = None
    """Who has a file ``SKIPPED`` in hand: another process at work on it (its lease still runs),
    or the path of the same export unfinished in another folder. A watcher looks again, to
    take it over if that process dies, or to find it done."""
    awaited: frozenset[int] = frozenset()
    """The other files' batches (journal ids) some of its rows wait for, to learn what became
    of their invoices (``_OutcomeDraft.awaited``)."""

    @property
    def statuses(self) -> set[RowStatus]:
        """The row statuses of this file's rows."""
        return {RowStatus(status) for status, rows in self.counts.items() if rows > 0}


@dataclass
class _Setbacks:
    """What went wrong with this file's POSTs, gathered from the posting threads."""

    messages: list[str] = field(default_factory=list)
    kinds: set[Setback] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def worst(self) -> Setback | None:
        for kind in (Setback.SETUP, Setback.FAULT, Setback.UNAVAILABLE):
            if kind in self.kinds:
                return kind
        return None


#: Why a file was left as it was: the stop came before it was claimed.
NOT_BEGUN = "not begun: filedrop was stopping"


def process_file(path: Path, ctx: Context) -> FileReport:
    """Process one ready file, or resume it; never raises for a problem with the file itself."""
    if ctx.stop.is_set():
        # Not begun: not even claimed, so the next run or daemon takes it as it is.
        return FileReport(path, FileState.WAITING, {}, message=NOT_BEGUN)
    ctx.journal.put_back_if_deleted()
    if lost := _lost_journal(path, ctx):
        return lost
    hashed = _hash(path, ctx)
    if isinstance(hashed, FileReport):
        return hashed
    with _TAKEN.one_at_a_time((ctx.target, path.name, hashed.sha256), ctx.stop) as ours:
        if not ours:
            return FileReport(path, FileState.WAITING, {}, message=NOT_BEGUN)
        taken_at = _held_before(path, ctx, hashed.sha256)
        return _claim_and_process(path, ctx, hashed, taken_at=taken_at)


def _held_before(path: Path, ctx: Context, sha256: str) -> float | None:
    """When the file was first taken, as its outcome tells, where the journal never took a file
    of its name (at any target) and that outcome held invoices back as not due on an earlier
    day: it is judged on that day (``held_day_unrecorded``), and the log says so."""
    held = held_day_unrecorded(path, sha256, ctx.journal, target=ctx.target, limits=ctx.read_limits)
    if held is None or held[1] >= date.today():
        return None
    outcome, day = held
    log.warning(
        "%s: judged on %s, the day its outcome %s was written with a journal that is gone, "
        "so every invoice due on or after that day is SKIPPED; if this is a new export, copy "
        "it in again under a new name to have it judged today",
        printable(path.name),
        f"{day:%d.%m.%Y}",
        printable(str(outcome.relative_to(path.parent))),
        extra=fields(
            "file_held_day",
            inbox=ctx.metrics.name,
            file=path.name,
            day=str(day),
            outcome=str(outcome),
        ),
    )
    return noon_of(day)


class _InHand:
    """The files this process is at work on, by the journal's key (target, name, content).

    The journal's claim lets an owner take back its own claim (a file this daemon failed on is
    retried by it), and every inbox of one process is the same owner. Two inboxes of one
    organisation given the same export at the same moment both claimed it: one file's batches
    credited to the other's rows, and an outcome left PENDING for good. The second waits here
    until the first is done, then finds the file processed, and says where.
    """

    def __init__(self) -> None:
        self._held: set[tuple[str, str, str]] = set()
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def one_at_a_time(self, key: tuple[str, str, str], stop: threading.Event) -> Iterator[bool]:
        """Hold ``key`` for the block; False (and nothing held) if a stop came while another
        thread held it. A key free is taken even after a stop: the caller looked before."""
        with self._changed:
            while key in self._held and not stop.is_set():
                self._changed.wait(timeout=0.5)  # a stop sets no condition: look now and then
            ours = key not in self._held
            if ours:
                self._held.add(key)
        if not ours:
            yield False
            return
        try:
            yield True
        finally:
            with self._changed:
                self._held.discard(key)
                self._changed.notify_all()


_TAKEN = _InHand()


def _claim_and_process(
    path: Path, ctx: Context, hashed: HashedFile, *, taken_at: float | None = None
) -> FileReport:
    """Claim the file in the journal and process it, or say why it is not ours. ``taken_at``:
    when it was first taken, for a file the journal has no record of (``_held_before``)."""
    if (sender := _unfinished_elsewhere(path, hashed, ctx)) is not None:
        # An inbox this process serves as well says how that file went; another is left
        # unfinished as far as this process can tell.
        served_here = any(in_folder(sender, folder.resolve()) for folder in ctx.sharing)
        return FileReport(
            path,
            FileState.SKIPPED,
            {},
            message=f"being sent from {printable(sender)}, the same export, not finished "
            "there; a run of that folder's inbox finishes it and writes its outcome there",
            held_by=sender,
            setback=None if served_here else Setback.ELSEWHERE,
        )
    record = ctx.journal.claim_file(
        path=path,
        sha256=hashed.sha256,
        target=ctx.target,
        owner=ctx.owner,
        stale_s=ctx.claim_stale_s,
        read_under=ctx.read_under,
        taken_at=taken_at,
    )
    if record is None:
        return _skipped(path, hashed, ctx)
    log.info(
        "%s: claimed",
        printable(path.name),
        extra=fields("file_claimed", inbox=ctx.metrics.name, file=path.name),
    )
    try:
        return _process_claimed(path, ctx, record, hashed)
    except Exception:
        # Left to retry, not held: a watching daemon retries only a file it still finds, and
        # one moved away meanwhile (its whole inbox, say) would stay claimed by a live process
        # for as long as it runs, its sent batches never polled and its outcome never written.
        # Let go, it is any run's to resume, or to close as gone once its batches end.
        with contextlib.suppress(*ctx.journal.errors, OSError):
            ctx.journal.let_go(record.id, owner=ctx.owner)
        raise


def _unfinished_elsewhere(path: Path, hashed: HashedFile, ctx: Context) -> str | None:
    """Where this very export is being sent from, if from another folder that still holds it:
    one unfinished (batches pending, a retry due) is that file's to finish.

    The journal's claim lets anyone take up a file left waiting, so that a file moved to
    another inbox is finished from there. A copy in a second inbox did so while the first
    still held it: the record moved to the copy, which wrote its own outcome, and the first's
    kept its rows PENDING for good. A copy waits until the other is done, then is skipped.
    """
    record = ctx.journal.find_file(target=ctx.target, name=path.name, sha256=hashed.sha256)
    if record is None or record.state in FINAL_FILE_STATES:
        return None
    if os.path.realpath(record.path) == os.path.realpath(path):
        return None
    other = Path(record.path)
    try:
        # A size of its own is another file, and costs no read (a daemon looks each heartbeat).
        there = other.lstat().st_size == hashed.size and hash_file(other).sha256 == hashed.sha256
    except OSError:  # gone from there, a link, unreadable: this copy is the one left to finish it
        there = False
    return record.path if there else None


def _outcome_missing(path: Path, record: FileRecord, ctx: Context) -> FileReport:
    """A finished file whose outcome was deleted: the skip says so, and where it was. It is not
    written again by itself: read with today's mapping and rules, the rows might no longer be
    the ones the journal recorded, and a rewrite could call sent rows unsent or invalid."""
    gone = printable(Path(record.outcome or "").name)
    said = (
        f"{ALREADY_PROCESSED}, but its outcome {gone} is gone; the journal still holds every "
        "row's fate ('filedrop status'), and nothing is sent again"
    )
    message = f"{ALREADY_PROCESSED}; its outcome {gone} is missing"
    return _skipped_saying(path, ctx, event="outcome_missing", said=said, message=message)


def _outcome_of_later(path: Path, later: FileRecord, ctx: Context) -> FileReport:
    """An earlier version of a file, back under its name (A, then B, then A again): these bytes
    were processed, but the outcome beside them is the later version's, whose rows are not
    theirs. It said only "already processed", and a user reading that outcome read rows the
    file does not hold. The outcome stays (the journal's rebuild reads it as B's); the skip
    says whose it is, and where the file's own went."""
    outcome = printable(Path(later.outcome or "").name)
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(later.created_at))
    said = (
        f"{ALREADY_PROCESSED} (these very bytes), but its outcome {outcome} is that of another "
        f"version of {printable(path.name)}, processed since ({when}), and shows that one's rows; "
        f"this one's, if it showed invoices sent, was moved to {ARCHIVE}/ under a stamped name "
        "then. Nothing is sent again"
    )
    message = f"{ALREADY_PROCESSED}; its outcome {outcome} is another version's"
    return _skipped_saying(
        path, ctx, event="outcome_of_another_version", said=said, message=message
    )


def _skipped_saying(path: Path, ctx: Context, *, event: str, said: str, message: str) -> FileReport:
    """A skip whose reason the user must see: ``said`` as a warning, ``message`` the report's
    short form."""
    log.warning(
        "%s: %s",
        printable(path.name),
        said,
        extra=fields(event, inbox=ctx.metrics.name, file=path.name),
    )
    return FileReport(path, FileState.SKIPPED, {}, message=message)


#: Why a file was skipped: these very bytes are finished (``done`` or ``error``) at this target.
ALREADY_PROCESSED = "already processed"
#: Why a file was skipped: another live process holds its claim, and may yet leave it unfinished
#: (``waiting`` or ``retry``), so whoever still runs must look at it again.
BUSY_ELSEWHERE = "being processed by another filedrop process"


def _skipped(path: Path, hashed: HashedFile, ctx: Context) -> FileReport:
    """The report of a file whose claim was refused, with why, read back from the journal.

    The other process may have finished meanwhile (``already processed``); anything short of a
    final state is still another process's: ``held_by`` names it, and the daemon looks at the
    file again until that process finishes it, leaves it waiting, or its lease runs out.
    """
    record = ctx.journal.find_file(target=ctx.target, name=path.name, sha256=hashed.sha256)
    if record is not None and record.state in FINAL_FILE_STATES:
        if mark_of(path, hashed.sha256, ctx.target, ctx.journal).shown_by_outcome:
            # Begun here, finished from another folder (the same file dropped in another
            # inbox sharing the journal): that outcome shows all this mark names.
            clear_mark(path, hashed.sha256, ctx.target, journal=ctx.journal.identity())
        if record.outcome and not os.path.lexists(record.outcome):
            return _outcome_missing(path, record, ctx)
        beside = Path(record.path).absolute() == path.absolute()
        if beside and (later := ctx.journal.later_with_outcome(record)) is not None:
            return _outcome_of_later(path, later, ctx)
        if beside:
            return FileReport(path, FileState.SKIPPED, {}, message=ALREADY_PROCESSED)
        # The same export dropped in another inbox: whoever looks in this folder finds no
        # outcome beside the file, so the log says where it is, as a warning.
        where = f"; its outcome is {record.outcome}" if record.outcome else ""
        message = f"{ALREADY_PROCESSED} as {printable(record.path)}{printable(where)}"
        said = f"{message}; these very bytes were processed there, and nothing is sent again"
        return _skipped_saying(path, ctx, event="processed_elsewhere", said=said, message=message)
    holder = record.owner if record is not None and record.owner else None
    message = f"{BUSY_ELSEWHERE} ({holder})" if holder else BUSY_ELSEWHERE
    return FileReport(
        path, FileState.SKIPPED, {}, message=message, held_by=holder or "another process"
    )


def _held_now(ctx: Context) -> str | None:
    """Why nothing of this inbox may be sent now, asked again as a file read and checked is about
    to have its first batch claimed: an outcome of another journal's showing invoices this one
    does not know, written since the file was claimed, by a run that sent the same export
    under another name. None when none."""
    elsewhere = ctx.lost_journal_elsewhere()
    return None if elsewhere is None else lost_journal_message(*elsewhere, ctx.journal.path)


def _lost_journal(path: Path, ctx: Context) -> FileReport | None:
    """The report of a file not sent because its outcome knows more than the journal does.

    Asked before the file is claimed: a journal that was deleted or replaced must never make
    filedrop start afresh over an inbox it processed before, sending every invoice again.
    """
    outcome = lost_journal_evidence(path, ctx.journal, target=ctx.target, limits=ctx.read_limits)
    mark = next(
        (
            found
            for folder in (path.parent, *ctx.sharing)
            if (found := unknown_mark(folder, ctx.journal, target=ctx.target, of=path.name))
        ),
        None,
    )
    if outcome is not None:
        said = lost_journal_message(path.name, outcome, ctx.journal.path)
        message = (
            "not sent: its outcome shows invoices sent that the journal does not know were sent "
            "(lost, replaced or an older copy); run 'filedrop journal rebuild'"
        )
    elif elsewhere := ctx.lost_journal_elsewhere():
        # A file of another name (a re-export, say) may hold the invoices that outcome shows.
        name, outcome = elsewhere
        said = lost_journal_message(name, outcome, ctx.journal.path)
        message = (
            f"not sent: the outcome {outcome.name} shows invoices sent from {name} that the "
            "journal does not know were sent (lost, replaced or an older copy); run 'filedrop "
            "journal rebuild'"
        )
    elif mark is not None:
        said, message = mark.sentence(ctx.journal.path), mark.summary()
        mark = None  # told
    else:
        return None
    if mark is not None:
        # A rebuild reads outcomes, not marks: the mark would hold the inbox back after it.
        said = f"{said}. And besides: {mark.sentence(ctx.journal.path)}"
        message = f"{message}; a sending mark holds it back too (see the log)"
    if ctx.say_once("lost-journal"):
        log.error(
            "%s",
            printable(said),
            extra=fields("journal_lost", inbox=ctx.metrics.name, file=path.name),
        )
    return FileReport(path, FileState.SKIPPED, {}, message=message, setback=Setback.SETUP)


def _hash(path: Path, ctx: Context) -> HashedFile | FileReport:
    """The file's hash, or the report of a file that cannot even be hashed."""
    name = printable(path.name)
    try:
        return hash_file(path)
    except FileNotFoundError:
        return FileReport(path, FileState.SKIPPED, {}, message="gone before it was read")
    except NotRegularFileError as exc:
        # A link or a pipe put in the file's place after the scan: never read, and no outcome
        # beside it either, as for any other entry that is not an input.
        log.info(
            "%s: ignored (%s)",
            name,
            exc.strerror,
            extra=fields(
                "file_ignored", inbox=ctx.metrics.name, file=path.name, reason=exc.strerror
            ),
        )
        return FileReport(path, FileState.SKIPPED, {}, message=f"ignored ({exc.strerror})")
    except OSError as exc:
        # Not even its bytes can be read (permissions, a lock held by another program): the
        # journal cannot know it without a hash, but the user still gets an ERROR outcome.
        message = f"{name}: cannot be opened ({exc.strerror or exc}); check its permissions"
        dest = outcome_path(path)
        left = os.path.lexists(dest)
        if left:
            # Without its bytes nothing tells whose outcome that is (this file's own, written
            # before a lock was taken on it, say): it stays, and the sentence says so.
            message += f"; the outcome {printable(dest.name)} beside it is left as it was"
        log.error(
            "%s",
            message,
            extra=fields("file_error", inbox=ctx.metrics.name, file=path.name, status="error"),
        )
        # FAULT: the fix (its permissions, the lock let go) changes no byte of it, so a watch
        # looks again, as for a file held back, rather than settle it as an ERROR of its bytes.
        error = {RowStatus.ERROR.value: 1}
        if left:
            return FileReport(path, FileState.ERROR, error, None, message, setback=Setback.FAULT)
        summary = _summary(path, ctx, datetime.now(UTC))
        outcome = write_error_outcome(path, message, summary, dest=dest)
        return FileReport(path, FileState.ERROR, error, outcome, message, setback=Setback.FAULT)


def _process_claimed(
    path: Path, ctx: Context, record: FileRecord, hashed: HashedFile
) -> FileReport:
    """Everything that refuses a file permanently is found here, before anything is sent."""
    file_id = record.id
    name = printable(path.name)
    started = datetime.now(UTC)
    dest, problem = _outcome_dest(path)
    if dest is None:
        return _file_error(path, ctx, file_id, f"{name}: {problem}", started, dest=None)
    _keep_earlier_outcome(
        path, dest, unless=record.outcome_written, limits=ctx.read_limits, inbox=ctx.metrics.name
    )
    if hashed.size == 0:
        # Said once: the journal keeps this ERROR for these (no) bytes; new bytes are a new file.
        message = f"{name}: {EMPTY_FILE}"
        return _file_error(path, ctx, file_id, message, started, dest=dest)

    # The delimiter the CSV was last read with, for the ERROR outcome of a file refused after
    # it was read (no mapping fits, columns named twice).
    read_with: list[str | None] = [None]

    def read(file_path: Path, options: ReadOptions) -> Table:
        table = _read_hashed(
            file_path, options, hashed=hashed, limits=ctx.read_limits, stop=ctx.stop
        )
        read_with[0] = _csv_delimiter(table)
        return table

    try:
        mapping, table = select_mapping(ctx.mappings, path, read)
        release_freed_memory()  # the parser's buffers: else the file's peak lasts to its end
        prepared, later = prepare_parts(table, mapping, today=_file_day(record))
        if later is not None and ctx.journal.sent_numbers_of(file_id):
            # Sent from before: every number it sent is checked against all of the file as
            # the mapping reads it now (refuse_if_renumbered) before anything more is sent.
            for part in later:
                prepared.merge(part)
            later = None
        release_freed_memory()  # prepare's intermediate columns
    except ReadAgainLaterError as exc:
        return _read_again_later(path, ctx, file_id, exc)
    except FiledropError as exc:
        return _file_error(
            path, ctx, file_id, _refusal(path, exc), started, dest=dest, delimiter=read_with[0]
        )
    if problem := xlsx_fit_problem(table) or earlier_outcome_problem(table):
        delimiter = _csv_delimiter(table)
        return _file_error(
            path, ctx, file_id, f"{name}: {problem}", started, dest=dest, delimiter=delimiter
        )
    if later is None:
        refuse_if_renumbered(ctx.journal, record, prepared.invoices)
    with frozen_for_gc(), _PartsAhead(later, name=name) as ahead:
        return _send_and_report(prepared, ahead, ctx, file_id, started, dest=dest, hashed=hashed)


def _file_day(record: FileRecord) -> date:
    """The day a file's invoices must be overdue on to be sent (``skip.not_due``): the day it
    was first taken, whenever it is read again (a run resumed, an outcome rewritten), so that
    a row left out as not due is never sent later from an export days old, whose invoice may
    have been paid since."""
    return date.fromtimestamp(record.created_at)


def _csv_delimiter(table: Table) -> str | None:
    """The delimiter a CSV table was read with, for its ERROR outcome; None for a workbook."""
    return table.info.delimiter if table.info.kind == "csv" else None


def _refusal(path: Path, exc: FiledropError) -> str:
    """Why ``path`` is refused, naming it by its bare name, as every other line about a file in
    the inbox does (an error about the mapping file itself keeps naming that file)."""
    where = (
        exc.path
        if isinstance(exc, ReadError)
        else exc.mapping
        if isinstance(exc, MappingError)
        else None
    )
    return f"{printable(path.name)}: {exc.detail}" if where == str(path) else str(exc)  # type: ignore[attr-defined]


def _outcome_dest(path: Path) -> tuple[Path | None, str]:
    """Where ``path``'s outcome goes, or why it cannot go anywhere (a permanent problem).

    Asked before anything is sent, so a file whose outcome could not be written is never sent:
    a name too long for the folder once ``.outcome.xlsx`` is added, or an outcome name another
    input of the inbox holds too. Other failures to create it (permissions, a full disk) raise
    ``OSError``: they pass, and the file is taken again.
    """
    inputs = {candidate.name: candidate for candidate in scan(path.parent)[0]}
    inputs[path.name] = path
    dest = outcome_paths(inputs.values())[path]
    if dest is None:
        return None, (
            "its outcome file would have the same name as another file's here (names are "
            "compared without case); rename one of them and drop it again"
        )
    try:
        check_outcome_name(dest)
    except OSError as exc:
        if exc.errno != errno.ENAMETOOLONG:
            raise
        return None, (
            f"the name is too long for its outcome file {printable(dest.name)} next to it; "
            "rename it shorter and drop it again"
        )
    return dest, ""


def _read_hashed(
    path: Path,
    options: ReadOptions,
    *,
    hashed: HashedFile,
    limits: ReadLimits,
    stop: threading.Event,
) -> Table:
    """``read_table`` of the bytes hashed, else ``ReadAgainLaterError`` (a link put there, or
    bytes that changed since)."""
    replaced = ReadAgainLaterError(str(path), ReadAgainLaterError.REPLACED)
    if not is_same_file(path, hashed.identity):
        raise replaced
    table = read_table(path, options, limits=limits, sha256=hashed.sha256, stop=stop)
    # Checked again after reading: a link that was there only while it was read is caught too.
    if not is_same_file(path, hashed.identity):
        raise replaced
    return table


def _read_again_later(
    path: Path, ctx: Context, file_id: int, exc: ReadAgainLaterError
) -> FileReport:
    """The report of a file whose read was given up (it changed, filedrop was stopping, or its
    reader was killed).

    Its claim is let go with nothing recorded against these bytes: an ERROR there would refuse
    the file for good once it settles back to them (rewritten in place with the same content,
    say), and its rows would never be sent. It is taken again: by the watcher once it settles,
    by the next run (exit 3, as a file still being written)."""
    ctx.journal.let_go(file_id)
    message = f"{printable(path.name)}: {exc.detail}"
    log.warning(
        "%s",
        message,
        extra=fields("file_read_again", inbox=ctx.metrics.name, file=path.name),
    )
    if exc.stopped:
        return FileReport(path, FileState.WAITING, {}, message=message)
    setback = Setback.CHANGING if exc.replaced else Setback.FAULT
    return FileReport(path, FileState.RETRY, {}, message=message, setback=setback)


def _file_error(
    path: Path,
    ctx: Context,
    file_id: int,
    message: str,
    started: datetime,
    *,
    dest: Path | None,
    delimiter: str | None = None,
) -> FileReport:
    """A file that cannot be read or mapped still gets an outcome: one ERROR row and why
    (at ``dest``; with None, when no outcome can be written, the log and journal say it),
    delimited by ``delimiter`` when the file was read."""
    message = printable(message)
    log.error(
        "%s",
        message,
        extra=fields("file_error", inbox=ctx.metrics.name, file=path.name, status=FileState.ERROR),
    )
    outcome = (
        write_error_outcome(
            path, message, _summary(path, ctx, started), dest=dest, delimiter=delimiter
        )
        if dest is not None
        else None
    )
    counts = {RowStatus.ERROR.value: 1}
    ctx.journal.finish_file(
        file_id,
        state=FileState.ERROR,
        counts=counts,
        mapping=None,
        outcome=outcome,
        message=message,
        written=written_stamp(outcome) if outcome else None,
        read_under=ctx.read_under,
    )
    return FileReport(path, FileState.ERROR, counts, outcome, message)


def _summary(path: Path, ctx: Context, started: datetime) -> OutcomeSummary:
    return OutcomeSummary(
        source=path,
        environment=ctx.environment,
        mapping=None,
        started_at=started,
        finished_at=datetime.now(UTC),
    )


def _send_and_report(
    prepared: Prepared,
    later: _PartsAhead,
    ctx: Context,
    file_id: int,
    started: datetime,
    *,
    dest: Path,
    hashed: HashedFile,
) -> FileReport:
    path, sha256 = prepared.table.path, hashed.sha256
    name = printable(path.name)
    setbacks = _Setbacks()
    draft = _OutcomeDraft(prepared, target=ctx.target, file_id=file_id)
    ahead: RowsAhead | None = None

    def while_polls_wait() -> None:
        nonlocal ahead
        if ctx.stop.is_set():  # no outcome is written (below)
            return
        try:
            draft.read(ctx.journal)
        except ctx.journal.errors as exc:
            # Only a head start: the polls still end and are recorded, and the read after
            # them takes every invoice again (a failed read leaves them all unsettled).
            log.debug("%s: the outcome's draft could not be read: %s", name, exc)
            return
        if dest.suffix == ".xlsx":
            # The rows whose outcome is settled made and deflated now, while nothing else
            # happens: most of an xlsx outcome's cost, which the end of the run then skips.
            sandbox = is_sandbox(ctx.environment)
            try:
                columns, settled = draft.provisional()
                ahead = rows_ahead(prepared.table, columns, settled, sandbox=sandbox)
            except Exception as exc:  # a head start only: the outcome is then made at the end
                log.warning("%s: the outcome's rows could not be made ahead: %s", name, exc)

    sending = None
    if prepared.invoices or not later.done:
        # An outcome of another journal's that landed while the file was read (the same export
        # sent under another name) stops it before its first batch is claimed: once claimed,
        # that batch's invoices would count as known, and the outcome as showing nothing new
        # (helper-141: 100 invoices went twice).
        if (held := _held_now(ctx)) is not None:
            raise MarkHeldError(held)
        # On disk before each POST, from the first batch on: should this run be killed and its
        # journal then be lost too, or put back from an older copy, the next one finds what an
        # outcome would have told it (inflight.py).
        journal_id = ctx.journal.identity()
        sending = Sending(
            path,
            sha256,
            journal=journal_id,
            target=ctx.target,
            now=ctx.clock(),
            fresh_at=ctx.journal.started_fresh_at(),
        )
    held_for: set[int] = set()  # the batches this file's twins wait for (``_send``)
    pending = _send(
        prepared,
        later,
        ctx,
        file_id,
        setbacks=setbacks,
        name=name,
        while_polls_wait=while_polls_wait,
        sending=sending,
        held_for=held_for,
    )
    if ctx.stop.is_set() and (pending or not later.done or _unsent(draft.numbers, ctx)):
        # Leave the file resumable rather than write an outcome that the restart would redo.
        ctx.journal.finish_file(
            file_id, state=FileState.WAITING, counts={}, mapping=prepared.mapping.name, outcome=None
        )
        return FileReport(path, FileState.WAITING, {})
    if not ctx.journal.holds(file_id, ctx.owner):
        # Held up past its claim, this process was overtaken: the new holder's outcome stands.
        raise ClaimLostError(CLAIM_LOST)
    draft.read(ctx.journal)  # what the last polls changed, or all of it
    waits_elsewhere = draft.waits_elsewhere or _waits_for_twins(prepared)
    outcomes = draft.frame()
    release_freed_memory()  # the invoices and their columns, let go by the draft
    counts = dict(Counter(outcomes["outcome_status"]))
    state = file_state_of(counts, pending=pending, waits_elsewhere=waits_elsewhere)
    summary = OutcomeSummary(
        source=path,
        environment=ctx.environment,
        mapping=prepared.mapping.name,
        started_at=started,
        finished_at=datetime.now(UTC),
        batches=tuple(_batch_line(b) for b in ctx.journal.batches(file_id=file_id)),
        notes=tuple(setbacks.messages),
        amount_column=_amount_column(prepared.mapping, prepared.table),
        amount_notation=(prepared.mapping.decimal, prepared.mapping.thousands),
    )
    outcome = write_outcome(prepared.table, outcomes, summary, dest=dest, ahead=ahead)
    # The outcome shows what was sent from here on.
    clear_mark(path, sha256, ctx.target, journal=ctx.journal.identity())
    written = written_stamp(outcome)
    changed = _changed_while_sent(path, hashed, ctx)
    if state is FileState.DONE and ctx.archive:
        outcome = _archive(path, outcome, ctx, sha256=sha256)
    message = _file_message(setbacks, waits_elsewhere=waits_elsewhere, changed=changed)
    ctx.journal.finish_file(
        file_id,
        state=state,
        counts=counts,
        mapping=prepared.mapping.name,
        outcome=outcome,
        message=message,
        written=written,
    )
    ctx.progress.file_done()
    log.info(
        "%s: %s; outcome %s",
        name,
        _counts_text(counts),
        printable(outcome.name),
        extra=fields(
            "file_done",
            inbox=ctx.metrics.name,
            file=path.name,
            status=state,
            counts=counts,
            outcome=outcome.name,
        ),
    )
    return FileReport(
        path,
        state,
        counts,
        outcome,
        message,
        setback=setbacks.worst() or (Setback.CHANGING if changed else None),
        awaited=draft.awaited | held_for,
    )


def _send(
    prepared: Prepared,
    later: _PartsAhead,
    ctx: Context,
    file_id: int,
    *,
    setbacks: _Setbacks,
    name: str,
    while_polls_wait: Callable[[], None] | None = None,
    sending: Sending | None = None,
    held_for: set[int],
) -> int:
    """Send the invoices the journal does not block, and poll the batches a previous run left
    behind too; returns how many batches are still QUEUED. ``while_polls_wait`` and ``sending``:
    as ``_send_batches`` says. ``held_for`` gets the other files' batches that invoices held
    back for their twins (``_hold_back_twins``) wait for.

    The first part's batches go out while the later parts are prepared; each part is merged
    into ``prepared`` as it comes. A batch runs on across parts, so a file takes as many POSTs
    as its invoices need, and the line saying how many go is logged once they are all planned.
    Stopping (``ctx.stop``) takes no more parts: ``later.done`` tells whether all came.
    """
    # Batches a previous run left behind: orphaned POSTs become UNKNOWN, QUEUED ones are polled
    # alongside the new ones.
    polls = resume_batches(ctx, file_id, name=name)

    def to_send(part: Prepared) -> list[PreparedInvoice]:
        numbers = [invoice.invoice_number for invoice in part.invoices]
        known = ctx.journal.invoices(target=ctx.target, numbers=numbers)
        may = [inv for inv in part.invoices if _may_send(known.get(inv.invoice_number), file_id)]
        twins = ctx.journal.zero_twins(
            target=ctx.target, numbers=[invoice.invoice_number for invoice in may]
        )
        if not twins:
            return may
        others = {n: twin for n, twin in twins.items() if twin.file_id != file_id}
        if len(others) < len(twins):
            _known_as_recorded(prepared, twins, file_id)
        if others:
            _hold_back_twins(prepared, others, ctx.journal)
            held_for.update(_awaited_by(others))
        return [invoice for invoice in may if invoice.invoice_number not in twins]

    def planned(invoices: int, batches: int) -> None:
        if batches:
            log.info(
                "%s: %s to send",
                name,
                invoices_in_batches(invoices, batches),
                extra=fields(
                    "file_planned",
                    inbox=ctx.metrics.name,
                    file=prepared.table.path.name,
                    counts={"invoices": invoices, "batches": batches},
                ),
            )

    def batches() -> Iterator[list[PreparedInvoice]]:
        size = ctx.batch_size
        waiting = to_send(prepared)
        invoices, made = len(waiting), 0
        ctx.progress.file_started(rows=len(prepared.table), batches=len(polls))
        while True:
            last = later.done  # at once for a file of one part: its plan is told before a POST
            cut = len(waiting) if last else len(waiting) - len(waiting) % size
            now = plan_batches(waiting[:cut], size=size)
            del waiting[:cut]
            ctx.progress.more_batches(len(now))
            made += len(now)
            if last:
                planned(invoices, made)
            yield from now
            if last:
                return
            part = later.next_part(stop=ctx.stop)
            if part is None and not later.done:
                return  # stopping: the rest is for the next run
            if part is not None:
                prepared.merge(part)
                more = to_send(part)
                invoices += len(more)
                waiting += more

    return _send_batches(
        ctx,
        batches(),
        polls,
        file_id=file_id,
        setbacks=setbacks,
        name=name,
        while_polls_wait=while_polls_wait,
        sending=sending,
    )


#: How long a file given up waits for the part being prepared on its thread (20,000 rows take
#: about a second on a slow host).
_PART_JOIN_S = 30.0


class _PartsAhead:
    """The later parts of a long file (``prepare_parts``), prepared on a thread of their own
    while the batches of those before go out: checking 200,000 rows takes seconds of CPU,
    which the first POST would otherwise wait for. ``done`` once every part was handed over
    (at once when there are none).

    Every part is prepared as soon as it can be, as in one go before: prepared one part ahead
    instead, a 1,000,000-row file kept the parts' shared conversions (up to 200,000 values of
    each kind) and made its invoices all through its sending, and peaked at 1,040-1,044 MB
    instead of 987. The threads that post and poll get the interpreter's lock meanwhile by
    ``quick_switches``.
    """

    def __init__(self, parts: Iterator[Prepared] | None, *, name: str) -> None:
        self.done = parts is None
        self._name = name
        self._ready: queue.SimpleQueue[Prepared | BaseException | None] = queue.SimpleQueue()
        self._abandoned = False
        self._thread: threading.Thread | None = None
        if parts is not None:
            self._thread = threading.Thread(
                target=self._prepare, args=(parts,), name=f"prepare {name}", daemon=True
            )
            self._thread.start()

    def _prepare(self, parts: Iterator[Prepared]) -> None:
        try:
            while not self._abandoned:
                with quick_switches():
                    part = next(parts, None)
                self._ready.put(part)
                if part is None:
                    return
        except BaseException as exc:  # raised where the part is asked for, in the file's thread
            self._ready.put(exc)

    def next_part(self, *, stop: threading.Event) -> Prepared | None:
        """The next part; None when there are no more (then ``done``) or ``stop`` is set. A
        part that could not be prepared raises here what it raised."""
        while not self.done and not stop.is_set():
            try:
                item = self._ready.get(timeout=0.1)
            except queue.Empty:
                continue
            if isinstance(item, BaseException):
                raise item
            if item is None:
                self.done = True
            return item
        return None

    def __enter__(self) -> _PartsAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        # Given up (stopping, or sending failed): the thread ends after the part at hand, and
        # is waited for, so that it holds nothing (the table, the lock's quick switches) into
        # the next file. A part that failed unasked for is still told.
        self._abandoned = True
        if self._thread is not None:
            self._thread.join(timeout=_PART_JOIN_S)
        while not self._ready.empty():
            item = self._ready.get()
            if isinstance(item, BaseException):
                log.warning("%s: a later part of it could not be prepared: %r", self._name, item)


def refuse_if_renumbered(
    journal: Journal, record: FileRecord, invoices: list[PreparedInvoice]
) -> None:
    """``ConfigError`` when invoice numbers the file of ``record`` sent before are not among
    ``invoices``, as the mapping reads it now: its invoice number was mapped otherwise since, or
    a rule now leaves out a row that was sent. Resumed or rewritten, its rows could then go again
    under other numbers, or a sent row read as not sent: nothing is sent or rewritten. A record
    made by ``journal rebuild`` is not held to it: its numbers are an outcome's, perhaps an
    older export's of the same name."""
    if record.message == REBUILT:
        return
    gone = journal.sent_numbers_of(record.id) - {invoice.invoice_number for invoice in invoices}
    if gone:
        raise ConfigError(
            f"the mapping now leaves out {plural(len(gone), 'invoice number')} this file sent "
            f"before (such as {min(gone)}): its invoice numbers are mapped otherwise, or a rule "
            "now rejects or skips those rows; so that nothing goes twice under other numbers, "
            "nothing is sent or rewritten until the mapping reads the file as it did"
        )


def _file_message(setbacks: _Setbacks, *, waits_elsewhere: bool, changed: bool) -> str | None:
    """What the run says of a file beside its counts: its setbacks, rows waiting for another
    file's batch, a new version saved over it."""
    notes = list(setbacks.messages)
    if waits_elsewhere:
        notes.append(WAITS_FOR_ANOTHER_FILE)
    if changed:
        notes.append(CHANGED_WHILE_SENT)
    return "; ".join(notes) or None


def _changed_while_sent(path: Path, hashed: HashedFile, ctx: Context) -> bool:
    """Whether ``path`` was saved over while it was sent (a corrected re-export under the same
    name), said as a warning: its outcome shows the version that was sent, and beside the new
    one it said nothing of that, nor did the run, which exited 0 with the new invoices in no
    outcome until the next run took them."""
    if not saved_over(path, hashed):
        return False
    log.warning(
        "%s: %s",
        printable(path.name),
        CHANGED_WHILE_SENT,
        extra=fields("file_changed", inbox=ctx.metrics.name, file=path.name),
    )
    return True


def file_state_of(
    counts: dict[str, int], *, pending: int, waits_elsewhere: bool = False
) -> FileState:
    """A file with NOT_SENT rows is taken again by the next run (``retry``), even with the same
    bytes, and so is one whose rows wait for what becomes of their invoices in another file's
    batch (``_OutcomeDraft.waits_elsewhere``: sent from there, they are DUPLICATEs; not, they
    go from this file); one with batches still QUEUED is ``waiting``; otherwise it is ``done``."""
    if counts.get(RowStatus.NOT_SENT.value) or waits_elsewhere:
        return FileState.RETRY
    return FileState.WAITING if pending else FileState.DONE


def rewrite_outcome(
    record: FileRecord,
    journal: Journal,
    mappings: list[Mapping],
    *,
    limits: ReadLimits,
    inbox: str | None = None,
) -> tuple[Path, dict[str, int]] | None:
    """Write a file's outcome again from what the journal now knows, as a run writes it (after
    ``filedrop resolve``); returns the outcome and its counts.

    ``None`` when the input is gone or its bytes changed since: the journal keeps what it
    learnt, and the next run of a new version of the file uses it. ``limits`` are the inbox's,
    as a run reads with; ``inbox`` names it in the log. ``FiledropError`` when the file's
    sending mark names batches this journal does not hold: its outcome would call rows unsent
    that went.
    """
    path = Path(record.path)
    mark = mark_of(path, record.sha256, record.target, journal)
    if mark is MarkFate.UNKNOWN:
        raise FiledropError(
            "its sending mark names batches this journal does not hold, so it would show rows "
            "as not sent that went; point FILEDROP_STATE at the journal in use then"
        )
    try:
        there = content_hash(path) == record.sha256
    except OSError:
        there = False
    if not there:
        return _rewrite_gone_outcome(record, journal, limits=limits)
    mapping, table = select_mapping(mappings, path, functools.partial(read_table, limits=limits))
    prepared = prepare(table, mapping, today=_file_day(record))
    refuse_if_renumbered(journal, record, prepared.invoices)
    outcomes, waits_elsewhere = _outcomes(
        prepared, journal, target=record.target, file_id=record.id
    )
    counts = dict(Counter(outcomes["outcome_status"]))
    summary = OutcomeSummary(
        source=path,
        environment=record.target.partition(":")[0],
        mapping=mapping.name,
        started_at=datetime.fromtimestamp(record.created_at, UTC),
        finished_at=datetime.now(UTC),
        batches=tuple(_batch_line(b) for b in journal.batches(file_id=record.id)),
        amount_column=_amount_column(mapping, prepared.table),
        amount_notation=(mapping.decimal, mapping.thousands),
    )
    dest = outcome_path(path)
    _keep_earlier_outcome(path, dest, unless=record.outcome_written, limits=limits, inbox=inbox)
    outcome = write_outcome(prepared.table, outcomes, summary, dest=dest)
    if mark.shown_by_outcome:
        # This outcome shows all it names.
        clear_mark(path, record.sha256, record.target, journal=journal.identity())
    pending = len(journal.batches(file_id=record.id, states=(BatchState.QUEUED,)))
    journal.finish_file(
        record.id,
        state=file_state_of(counts, pending=pending, waits_elsewhere=waits_elsewhere),
        counts=counts,
        mapping=mapping.name,
        outcome=outcome,
        message=record.message,
        written=written_stamp(outcome),
        # A run that took the file up while it was read keeps it: its outcome comes after.
        claim=record.owner if record.state is FileState.CLAIMED else None,
    )
    return outcome, counts


def _rewrite_gone_outcome(
    record: FileRecord, journal: Journal, *, limits: ReadLimits
) -> tuple[Path, dict[str, int]] | None:
    """``rewrite_outcome`` of a file that is gone: the outcome ``write_gone_outcome`` gave it,
    written again from what the journal knows now. None when the file is not gone, or its
    outcome is not that one (one written while it was there lists every row; only the file
    itself can give them again)."""
    if record.state is not FileState.GONE or record.outcome is None:
        return None
    outcome = Path(record.outcome)
    try:
        if written_stamp(outcome) != record.outcome_written:
            return None  # changed or replaced since: not filedrop's to write over
        headers = read_table(
            outcome, ReadOptions(expected_headers=OUTCOME_COLUMNS), limits=limits
        ).headers
    except (OSError, ReadError):
        return None
    if headers[:1] != [OUTCOME_COLUMNS[0]]:
        return None  # the input's columns come first in an outcome written from the file
    rewritten, counts = write_gone_outcome(record, journal, dest=outcome)
    if rewritten is None:
        return None
    _record_gone(journal, record, rewritten, counts, record.message, claim=None)
    return rewritten, counts


def _record_gone(
    journal: Journal,
    record: FileRecord,
    outcome: Path | None,
    counts: dict[str, int],
    message: str | None,
    *,
    claim: str | None,
    written_now: bool = True,
) -> None:
    """Record the file ``gone``, with the outcome it has (``written_now``: just written from the
    journal) and its counts; ``claim`` as ``finish_file`` takes it."""
    journal.finish_file(
        record.id,
        state=FileState.GONE,
        counts=counts,
        mapping=record.mapping,
        outcome=outcome,
        message=message,
        written=written_stamp(outcome) if outcome and written_now else None,
        claim=claim,
    )


def close_gone_file(
    record: FileRecord,
    journal: Journal,
    *,
    inbox: str | None = None,
    say_once: Callable[[str], bool] = lambda _topic: True,
) -> FileReport | None:
    """Leave a file whose bytes are gone from its path (moved, replaced or deleted while it was
    unfinished) ``gone``, with the outcome it never got; returns the report of that outcome
    (for the run's summary and exit code), or of why the file was left as it was (a sending
    mark this journal does not know), None when no outcome was written now.

    The input is gone, so that outcome lists only what the journal knows (``write_gone_outcome``).
    Rows never sent are in no journal and so in no outcome; the same bytes dropped again are
    taken up again (``gone`` is not final) and send them. A file that wrote its outcome before
    (left to retry, or waiting on its batches) keeps it: every row is in it; unless batches went
    after it was written (its sending mark names them), when it shows rows as not sent that
    went, or it shows rows PENDING, whose batches have ended since: then the journal's outcome
    is written too (in ``archive/``, beside the earlier one).
    Called once the file's batches have all ended, by a caller that holds no claim (``claim`` of
    ``finish_file``). A file held back is logged only when ``say_once`` (``Context.say_once``)
    says so: it is found so again at each look, twice a run and at every rescan of a daemon.
    """
    source = Path(record.path)
    mark = mark_of(source, record.sha256, record.target, journal)
    if mark is MarkFate.UNKNOWN:
        # A journal that does not know all that was sent from it (put back from an older copy)
        # would write an outcome calling sent rows unsent and take the mark away, the one
        # record of them: the file stays as it is, and its mark holds the inbox back.
        why = (
            "moved, replaced or deleted while unfinished, and not closed: its sending mark names "
            "batches this journal does not hold; point FILEDROP_STATE at the journal in use then"
        )
        if say_once(f"gone and held back: {record.id}"):
            log.warning(
                "%s: %s", printable(record.name), why,
                extra=fields("file_gone_held", inbox=inbox, file=record.name),
            )  # fmt: skip
        return FileReport(source, FileState.SKIPPED, {}, message=why, setback=Setback.SETUP)
    # The outcome written while the file was there falls behind when batches went after it
    # (its mark names them), or when batches it showed PENDING have ended since.
    stale = record.outcome_written is not None and (
        mark is MarkFate.KNOWN or record.counts.get(RowStatus.PENDING, 0) > 0
    )
    written_now = record.outcome_written is None or stale
    if written_now:
        outcome, counts = write_gone_outcome(record, journal)
        told = _gone_told(counts, outcome.relative_to(source.parent) if outcome else None)
        if stale and record.outcome_written is not None:
            # The earlier outcome stays this journal's own, known as such: no longer the one
            # its record wrote, it would read as another journal's, showing rows sent (PENDING)
            # that this one may send again (FAILED), and hold the inbox back.
            journal.outcome_checked(target=record.target, stamp=record.outcome_written)
    else:
        outcome, counts = (Path(record.outcome) if record.outcome else None), record.counts
        told = (
            "its outcome stays as it was written while the file was there, so rows it shows "
            "PENDING may have ended since; drop the same file again to have it rewritten"
        )
    # Its outcome (written now, or before with every row and nothing sent since) tells what
    # went, or that nothing did: the mark has nothing more to say.
    clear_mark(source, record.sha256, record.target, journal=journal.identity())
    _record_gone(
        journal,
        record,
        outcome,
        counts,
        f"moved, replaced or deleted while unfinished: {told}",
        claim=record.owner if record.state is FileState.CLAIMED else None,
        written_now=written_now,
    )
    log.warning(
        "%s: moved, replaced or deleted while unfinished; %s",
        printable(record.name),
        told,
        extra=fields("file_gone", inbox=inbox, file=record.name, counts=counts),
    )
    if outcome is None or not written_now:
        return None
    return FileReport(source, FileState.GONE, counts, outcome, f"gone: {told}")


#: The message of a gone file's row that was never sent: no run sends it on its own.
GONE_NOT_SENT = (
    "not sent, and the file was moved, replaced or deleted first: drop the same file again to "
    "send it"
)


def write_gone_outcome(
    record: FileRecord, journal: Journal, *, dest: Path | None = None
) -> tuple[Path | None, dict[str, int]]:
    """The outcome of a file that is gone, from the journal alone: one row per invoice sent
    from it, with its status, ids and batch as every outcome has them, so people learn what
    became of them and 'filedrop journal rebuild' reads them back; returns it (None when
    nothing was sent) and its counts. Written at the file's outcome name, or into the archive
    when an outcome (an older one) or a new version of the file is there, so nothing writes
    over it; at ``dest`` when given (the one it wrote before, rewritten after ``filedrop
    resolve``).
    """
    path = Path(record.path)
    invoices = journal.sent_from(record.id)
    if not invoices or (
        dest is None and all(invoice.status is InvoiceState.NOT_SENT for invoice in invoices)
    ):
        return None, {}  # nothing reached Amili (a rewrite after resolve keeps its rows)
    batches = journal.batches(file_id=record.id)
    batch_ids = {batch.id: batch.batch_id or "" for batch in batches}
    rows = [
        _invoice_outcome(
            invoice.invoice_number,
            invoice,
            journal,
            file_id=record.id,
            batch_ids=batch_ids,
            poll_failures={},
            file_names={},
        )
        for invoice in invoices
    ]
    # No run takes up a file that is gone: what its rows never sent waits for a person.
    rows = [
        (status, GONE_NOT_SENT, *rest) if status == RowStatus.NOT_SENT else (status, text, *rest)
        for status, text, *rest in rows
    ]
    name = outcome_path(path)
    cells = pd.DataFrame(index=pd.RangeIndex(len(rows)))
    table = Table(
        path=path,
        headers=[],
        cells=cells,
        values=cells,
        row_numbers=np.arange(2, len(rows) + 2),
        # As an ERROR outcome: UTF-8 with a BOM, which Excel reads as such, comma-separated.
        info=ReadInfo(kind="excel", encoding=None)
        if name.suffix == ".xlsx"
        else ReadInfo(kind="csv", encoding="utf-8-sig", delimiter=","),
    )
    summary = OutcomeSummary(
        source=path,
        environment=record.target.partition(":")[0],
        mapping=record.mapping,
        started_at=datetime.fromtimestamp(record.created_at, UTC),
        finished_at=datetime.now(UTC),
        batches=tuple(_batch_line(b) for b in batches),
        notes=(
            f"{path.name} was moved, replaced or deleted while unfinished: these are the "
            f"{plural(len(rows), 'invoice')} of the batches it sent. Those NOT_SENT and its "
            "rows not listed were never sent, and go when the same file is dropped again.",
        ),
    )
    if dest is None:
        dest = name
        if os.path.lexists(dest) or os.path.lexists(path):
            # An outcome is there, or a new version of the file is, whose outcome will be:
            # this one goes where nothing writes over it (a daemon may have taken the new
            # version up already, past the point where it keeps an earlier outcome aside).
            (dest,) = stamped_names(archive_folder(dest.parent) or dest.parent, dest.name)
    columns = dict(zip(OUTCOME_COLUMNS, map(list, zip(*rows, strict=True)), strict=True))
    outcome = write_outcome(table, pd.DataFrame(columns), summary, dest=dest)
    return outcome, dict(Counter(columns["outcome_status"]))


def resume_batches(
    ctx: Context, file_id: int, *, name: str, timeout_s: float | None = None
) -> list[Poll]:
    """Recover what earlier runs left of a file's batches; returns the polls to wait for.

    Called only once the file is ours (claimed, or its owner is gone): a batch still POSTING
    means its process died between writing it down and recording the answer, so the POST may
    have reached Amili and is never sent again by itself (``UNKNOWN``). A QUEUED batch is polled
    again, for at most ``timeout_s`` (default: the poll timeout). Wait for the polls with
    ``record_polls``.
    """
    for orphan in ctx.journal.postings_of(file_id):
        ctx.journal.batch_unknown(orphan.id, message=orphan_message(orphan.id))
        # Said when it is decided, not only in the outcome: someone must act on it.
        log.warning(
            "%s: batch #%d (%s) was being posted when filedrop stopped, so whether Amili "
            "received it cannot be told; its rows are UNKNOWN and never sent again by themselves: "
            "check with Amili, then run '%s --sent' or '--not-sent'",
            printable(name),
            orphan.id,
            plural(orphan.invoice_count, "invoice"),
            resolve_command(orphan.id),
            extra=fields("batch_unknown", inbox=ctx.metrics.name, file=name, batch=orphan.id),
        )
    return [
        (batch.id, ctx.poller.track(batch.batch_id, timeout_s=timeout_s))
        for batch in ctx.journal.batches(file_id=file_id, states=(BatchState.QUEUED,))
        if batch.batch_id
    ]


def record_polls(ctx: Context, polls: list[Poll], *, file_id: int, name: str) -> int:
    """Wait for each poll and record the batches as they end, as a run does while it sends;
    returns how many are still QUEUED. ``name`` is the file's name, for the log."""
    return _send_batches(ctx, [], polls, file_id=file_id, setbacks=_Setbacks(), name=name)


def _send_batches(
    ctx: Context,
    batches: Iterable[list[PreparedInvoice]],
    polls: list[Poll],
    *,
    file_id: int,
    setbacks: _Setbacks,
    name: str,
    while_polls_wait: Callable[[], None] | None = None,
    sending: Sending | None = None,
) -> int:
    """POST ``batches`` (at most ``concurrent_batches`` at once) and record every batch, these
    and the resumed ``polls``, as soon as its poll ends; returns how many are still QUEUED.
    ``while_polls_wait`` is called once, when no POST is unanswered and something is still
    awaited (polls, or answers not yet taken, which may be failures): the second or more until
    the last poll ends is free for other work. The batches that end meanwhile are recorded
    after it. ``sending``: the file's mark, which notes each batch before its POST.

    Recording while the rest are still being sent keeps only the batches in flight in memory
    (each ended batch's parsed result is 100 entries; a 200,000-row file's would be tens of
    megabytes held to the end), and spreads the journal's work over the time spent waiting.
    """
    # What the posting and polling threads hand over: (None, a finished POST's future, which
    # raises what the POST raised) or (a batch's journal id, its ended poll). The callbacks hold
    # the batch's id, not its poll, so no batch makes a reference cycle for the collector. All
    # journal writes stay on this thread.
    handed: queue.SimpleQueue[Handed] = queue.SimpleQueue()
    expected = 0
    pending = 0

    def watch(poll: Poll) -> None:
        nonlocal expected
        expected += 1
        batch, future = poll
        future.add_done_callback(lambda ended: handed.put((batch, ended)))

    def take(item: Handed, ended: list[Ended]) -> None:
        nonlocal expected
        expected -= 1
        match item:
            case (None, post):
                if (poll := post.result()) is not None:
                    watch(poll)
            case (int() as batch, poll_ended):
                ended.append((batch, poll_ended.result()))

    def take_handed(*, wait: bool) -> None:
        """Take what was handed over (waiting for the first with ``wait``); the batches that
        ended are recorded together, in one journal transaction."""
        nonlocal pending
        ended: list[Ended] = []
        if wait:
            take(handed.get(), ended)
        while not handed.empty():
            take(handed.get(), ended)
        if ended:
            pending += _record_ended(ctx, ended, name=name)

    for poll in polls:
        watch(poll)
    polls.clear()
    unanswered: set[Future[Poll | None]] = set()  # only these: a done one holds its results

    def answered(post: Future[Poll | None]) -> None:
        unanswered.discard(post)
        handed.put((None, post))

    try:
        for batch in batches:
            take_handed(wait=False)
            # Built here, while the posting threads wait for their answers: the submit below
            # waits for one of them to be free, and hands it a batch ready to send.
            built = _body_or_why_not(batch)
            post = ctx.poster.submit(
                functools.partial(_submit_batch, name=name, sending=sending),
                batch,
                built,
                ctx,
                file_id,
                setbacks,
            )
            del built
            unanswered.add(post)
            expected += 1
            post.add_done_callback(answered)
        while expected:
            if while_polls_wait is not None and not unanswered:
                while_polls_wait()
                while_polls_wait = None
            take_handed(wait=True)
    except BaseException:
        # A journal write here failed (or a POST's did): the file is given up for now, but not
        # before the POSTs on their way have ended and recorded what they could. One still
        # recording its answer when the file is taken again would write over what the next
        # attempt decided. Those not yet begun are not begun (cancelled).
        wait_for([post for post in list(unanswered) if not post.cancel()])
        raise
    return pending


def _record_ended(ctx: Context, ended: list[Ended], *, name: str) -> int:
    """Record how these polled batches ended, the finished ones in one journal transaction;
    returns how many are still QUEUED (polled again later)."""
    finished = [
        FinishedBatch(
            batch,
            result.status,
            result.succeeded,  # (number, invoice id, case id, case number) each, as recorded
            [
                (f.invoice_number, "; ".join(f.errors) or "rejected by the API")
                for f in result.failed
            ],
        )
        for batch, result in ended
        if isinstance(result, BatchResult)
    ]
    if finished:
        ctx.journal.batches_finished(finished)
    for batch, result in ended:
        ctx.progress.batch_done()
        if isinstance(result, StillPending):
            event, status, counts = "batch_pending", "QUEUED", None
            ctx.journal.batch_still_queued(batch, failure=result.failure)
            if result.failure:
                what = (
                    f"not learnt: its last poll failed ({result.failure}); it is polled again later"
                )
            else:
                what = "still QUEUED; it is polled again later"
        else:
            event, status, what = "batch_ended", result.status, f"ended {result.status}"
            counts = {"succeeded": len(result.succeeded), "failed": len(result.failed)}
        log.info(
            "%s: batch %s %s",
            name,
            result.batch_id,
            what,
            extra=fields(
                event,
                inbox=ctx.metrics.name,
                file=name,
                batch=batch,
                batch_id=result.batch_id,
                status=status,
                counts=counts,
            ),
        )
    return len(ended) - len(finished)


def invoices_in_batches(invoices: int, batches: int) -> str:
    """``1 invoice in 1 batch``, ``2 invoices in 1 batch``: counts with their nouns agreeing."""
    return f"{plural(invoices, 'invoice')} in {plural(batches, 'batch', 'batches')}"


def _may_send(record: InvoiceRecord | None, file_id: int) -> bool:
    """Whether an invoice number may go out: not blocked in the journal (never sent, certainly
    not received, or rejected by the API), unless the API rejected it from this very file,
    which would only be rejected again; a corrected file (new content) may resend it.

    The journal's claim enforces ``BLOCKING_INVOICE_STATES`` again, atomically, when the batch
    is written down.
    """
    if record is None:
        return True
    if record.status in BLOCKING_INVOICE_STATES:
        return False
    return not (record.status is InvoiceState.FAILED and record.file_id == file_id)


def _known_as_recorded(prepared: Prepared, twins: dict[str, InvoiceRecord], file_id: int) -> None:
    """Each invoice whose twin (``Journal.zero_twins``) this very file sent takes the twin's
    number, as the journal records it: a journal rebuilt from this file's outcome, which a
    spreadsheet program opened and saved, holds 781 for the 000781 sent, and the file, taken
    again, called its own row a DUPLICATE of itself and lost its case. Its outcome then reads
    the invoice's own record (SUCCEEDED with its case, a batch still polled, UNKNOWN with its
    resolve advice). The twin blocks it, so it is never sent: its cells would go as 000781
    under a claim of 781."""
    prepared.invoices[:] = [
        invoice._replace(invoice_number=twin.invoice_number)
        if (twin := twins.get(invoice.invoice_number)) is not None and twin.file_id == file_id
        else invoice
        for invoice in prepared.invoices
    ]


def _hold_back_twins(prepared: Prepared, twins: dict[str, InvoiceRecord], journal: Journal) -> None:
    """Each invoice whose number the journal holds with more or fewer zeros in front
    (``Journal.zero_twins``) leaves ``prepared``'s invoices for its rows' outcome as that
    invoice's (``_twin_outcome``): it is the same invoice, its export opened and saved by a
    spreadsheet program since it was sent."""
    names: dict[int, str] = {}
    kept = []
    for invoice in prepared.invoices:
        twin = twins.get(invoice.invoice_number)
        if twin is None:
            kept.append(invoice)
            continue
        why = Rejection(
            *_twin_outcome(invoice.invoice_number, twin, _earlier(twin, journal, names))
        )
        prepared.rejected.update(dict.fromkeys(invoice.rows, why))
    prepared.invoices[:] = kept


def _earlier(twin: InvoiceRecord, journal: Journal, names: dict[int, str]) -> str:
    """The name of the file ``twin`` was sent from, as messages show it; ``names`` keeps those
    looked up so far, so that a file of many twins costs one lookup (a round trip on
    PostgreSQL), not one a row."""
    if twin.file_id not in names:
        names[twin.file_id] = printable(journal.file(twin.file_id).name)
    return names[twin.file_id]


def _twin_outcome(number: str, twin: InvoiceRecord, earlier: str) -> tuple[RowStatus, str]:
    """A row whose invoice number is ``twin``'s with zeros in front dropped or added, or that
    ``twin`` holds as a CSV cell written ="…": as a row holding ``twin``'s own number would be
    (``_elsewhere``): DUPLICATE once it was sent, and waiting (UNKNOWN, PENDING; the file is
    taken again) while that may yet end unsent."""
    if twin.invoice_number.startswith('="'):
        shown = (
            f"{number} (as {twin.invoice_number}, as filedrop sent a cell so written before it "
            "read it as the text Excel shows)"
        )
    else:
        reason = zeros_in_front(number, twin.invoice_number, saved_here=True)
        shown = f"{number} (as {twin.invoice_number}: {reason})"
    return _elsewhere(shown, twin, earlier)


def _waits_for_twins(prepared: Prepared) -> bool:
    """Whether some row waits for its twin's batch (``_twin_outcome``): prepare never holds a
    row back as PENDING or UNKNOWN, so such a row is one."""
    waiting = (RowStatus.PENDING, RowStatus.UNKNOWN)
    return any(rejection.status in waiting for rejection in prepared.rejected.values())


def _unsent(numbers: list[str], ctx: Context) -> bool:
    """Whether some of the file's invoice ``numbers`` were never written down (the run stopped
    before them)."""
    return len(ctx.journal.invoices(target=ctx.target, numbers=numbers)) < len(set(numbers))


def _submit_batch(
    invoices: list[PreparedInvoice],
    built: EncodedInvoices | Exception,
    ctx: Context,
    file_id: int,
    setbacks: _Setbacks,
    *,
    name: str,
    sending: Sending | None = None,
) -> Poll | None:
    """Claim, POST and start polling one batch, whose body is ``built`` (or why it could not
    be); returns what to wait for, if anything. ``sending`` notes the batch before its POST.

    The log line and the poll start after the batch gave its posting slot back; the claim, the
    POST and the journal's record of its answer hold it. So no more batches are claimed and not
    yet recorded as answered (what a crash leaves UNKNOWN) than POSTs may be in flight.
    """
    if ctx.stop.is_set():
        return None
    with ctx.posting:
        if ctx.stop.is_set():
            return None
        posted = _claim_and_post(
            invoices, built, ctx, file_id, setbacks, name=name, sending=sending
        )
        if posted is None:
            return None
        batch, batch_id, count = posted
        if not _record_submitted(ctx, batch, batch_id):
            return None  # UNKNOWN by another process's decision, which stands
    ctx.progress.batch_sent()
    log.info(
        "batch #%d: submitted as %s (%s)",
        batch,
        batch_id,
        plural(count, "invoice"),
        extra=fields(
            "batch_submitted",
            inbox=ctx.metrics.name,
            batch=batch,
            batch_id=batch_id,
            counts={"invoices": count},
        ),
    )
    return batch, ctx.poller.track(batch_id)


def _claim_and_post(
    invoices: list[PreparedInvoice],
    built: EncodedInvoices | Exception,
    ctx: Context,
    file_id: int,
    setbacks: _Setbacks,
    *,
    name: str,
    sending: Sending | None = None,
) -> tuple[int, str, int] | None:
    """Claim the batch's numbers and POST those claimed; returns the batch's journal id, its
    API id and how many invoices went, or None when nothing was accepted.

    ``built`` is the body of every invoice, or why it could not be built: a number another run
    took since is left out, and the body built again. ``sending`` notes the batch, after its
    claim and before its POST.
    """
    numbers = [invoice.invoice_number for invoice in invoices]
    batch, claimed = ctx.journal.claim_batch(
        file_id=file_id, target=ctx.target, invoice_numbers=numbers, owner=ctx.owner
    )
    if not claimed:
        ctx.journal.drop_empty_batch(batch)
        return None
    try:
        if isinstance(built, Exception):
            raise built
        body = built
        if len(claimed) < len(numbers):
            wanted = set(claimed)
            body = batch_body([inv for inv in invoices if inv.invoice_number in wanted])
        if sending is not None:
            sending.before_post(batch)
    except Exception as exc:
        # Nothing left this process (a NaN amount is refused here too, and a mark that could
        # not be written): say so, rather than leave the batch for UNKNOWN.
        ctx.journal.batch_not_sent(batch, message=f"not sent: {exc}")
        raise
    started = time.perf_counter()
    try:
        batch_id = ctx.client.create_invoices(ctx.org_id, body)
    except (AmbiguousSubmission, ApiUnavailable, AuthError, ApiError) as exc:
        result = _record_failed_post(batch, exc, ctx, setbacks, name=name, invoices=body.count)
        ctx.metrics.batch_posted(result, seconds=time.perf_counter() - started)
        return None
    ctx.metrics.batch_posted(BATCH_SUBMITTED, seconds=time.perf_counter() - started)
    return batch, batch_id, body.count


#: How long a batch Amili accepted waits for the journal to record it (a PostgreSQL restart or
#: failover, a busy SQLite file), trying again after 1, 2, 4, 8 and 16 s unless filedrop is
#: stopping. Given up, the batch is left POSTING, which the next start makes UNKNOWN: it is
#: never sent again, but its rows need ``filedrop resolve``.
_RECORD_SUBMITTED_DELAYS_S = (1.0, 2.0, 4.0, 8.0, 16.0)


def _record_submitted(ctx: Context, batch: int, batch_id: str) -> bool:
    """Record that Amili accepted the batch, as ``batch_id``, waiting out a journal that cannot
    be written for a while: this id is what tells its rows' fate, and nothing else knows it.
    A batch another process made UNKNOWN meanwhile (this one was stopped long enough for its
    claim to lapse) is known now, and polled as well; False when it was resolved since."""
    facts = fields("batch_unrecorded", inbox=ctx.metrics.name, batch=batch, batch_id=batch_id)
    settle = f"check its rows with Amili, then run '{resolve_command(batch)} --sent'"
    delays = iter(_RECORD_SUBMITTED_DELAYS_S)
    while True:
        try:
            recorded = ctx.journal.batch_submitted(batch, batch_id=batch_id)
        except ctx.journal.errors as exc:
            delay_s = next(delays, None)
            if delay_s is None or ctx.stop.is_set():
                log.error(
                    "batch #%d: Amili accepted it as %s, but the journal could not record that "
                    "(%s); the next start makes it UNKNOWN: %s",
                    batch, batch_id, exc, settle, extra=facts,
                )  # fmt: skip
                raise
            log.warning(
                "batch #%d: Amili accepted it as %s, but the journal cannot record that (%s); "
                "trying again in %.0f s",
                batch, batch_id, exc, delay_s, extra=facts,
            )  # fmt: skip
            ctx.stop.wait(delay_s)
            continue
        if recorded:
            return True
        elsewhere = ctx.journal.batch_accepted_after_all(batch, batch_id=batch_id)
        if elsewhere is None:
            return False  # ended otherwise meanwhile: nothing this answer can add
        log.warning(
            "batch #%d: Amili accepted it as %s after another filedrop process had made it "
            "UNKNOWN (this one was held up past its claim); it is polled now, and its rows get "
            "their status%s",
            batch, batch_id,
            f"; {plural(elsewhere, 'invoice')} of it, resolved as not sent meanwhile, went "
            "again in another batch: Amili has them twice, cancel one with Amili"
            if elsewhere else "",
            extra=facts,
        )  # fmt: skip
        return True


def _body_or_why_not(invoices: list[PreparedInvoice]) -> EncodedInvoices | Exception:
    """The batch's body, or why it cannot be built (a NaN amount), which is told when the
    batch is claimed (`_claim_and_post`)."""
    try:
        return batch_body(invoices)
    except Exception as exc:  # handed on, and told there
        return exc


def batch_body(invoices: list[PreparedInvoice]) -> EncodedInvoices:
    """The POST body of these invoices.

    The cyclic collector stays paused until the batch's dicts are bytes and gone: they die by
    reference counting, unseen. Switched back on while they were still alive, its deferred
    collections would scan every one of them first.
    """
    with no_cyclic_gc():
        return encode_invoices(payloads(invoices))


#: What the operator does after a POST refused for who or where we are, by HTTP status; the
#: rows stay NOT_SENT and the next run sends them.
_SETUP_REFUSALS = {
    401: "the API answered 401, credentials refused; check FILEDROP_CLIENT_ID and "
    "FILEDROP_CLIENT_SECRET (or FILEDROP_CLIENT_SECRET_FILE)",
    403: "the API answered 403, forbidden; check that the client may use this organisation "
    "(FILEDROP_ORG_ID)",
    404: "the API answered 404, not found; check FILEDROP_ORG_ID and the API base URL "
    "(FILEDROP_ENV or FILEDROP_API_URL)",
    413: "the API answered 413, request too large; lower FILEDROP_BATCH_SIZE",
}
#: How every refusal of a batch too large ends: the one thing to do.
LOWER_BATCH_SIZE = "lower FILEDROP_BATCH_SIZE"

#: A refusal of the whole batch that gives the batch's size as the reason, whatever its status:
#: the guide names neither the largest batch nor how a larger one is refused, and filedrop's own
#: sandbox answers 400 "A batch holds at most 5 invoices, not 11". As a refusal of the invoices'
#: content it made every row FAILED, and the same file, its batch size lowered, was never sent.
#: Words that say so outright:
_BATCH_TOO_LARGE = re.compile(
    r"\bbatch\s+size\b|\bbatch\s+(?:is\s+)?too\s+(?:large|big)\b"
    r"|\btoo\s+many\s+(?:invoices|items|entries|elements)\b",
    re.IGNORECASE,
)
#: Else a limit on how many, of what the batch is ("Number of invoices (150) exceeds limit
#: (100)"): such words with every number in them below the invoices sent, but that count itself.
_A_LIMIT = re.compile(
    r"\b(?:at\s+most|max(?:imum)?|no\s+more\s+than|more\s+than|up\s+to|limit|exceed(?:s|ed)?|"
    r"between)\b",
    re.IGNORECASE,
)
_OF_THE_BATCH = re.compile(r"\b(?:batch|invoices|items|entries|elements|request|payload)\b", re.I)
#: A count as a limit has a few digits: a longer run (a reference, a garbled answer) is none, and
#: is not converted (Python refuses to convert more than 4,300 digits).
_NUMBER = re.compile(r"\b\d{1,9}\b")
#: Words about one invoice ("invoices[3].", "invoices.3.references", "debtors", "each invoice")
#: or about a rate ("per day") are not about the batch's size, whatever else they say.
_NOT_THE_BATCH = re.compile(
    r"\[\s*\d+\s*\]|\b\w+\.\d+\b|\b(?:debtors?|claims?|address(?:es)?|phoneNumbers|emails|"
    r"references|each\s+invoice|per\s+invoice|per\s+(?:second|minute|hour|day)|a\s+day|daily)\b",
    re.IGNORECASE,
)


def refused_as_too_large(words: str, *, invoices: int) -> bool:
    """Whether a whole batch of ``invoices`` was refused, in the API's ``words``, for its size.

    The words say the batch is too large, or give a limit on how many below the invoices sent
    (the largest number they give, that count aside, is below it). A batch of one is never too
    large, so lowering the batch size always ends the retries; words about one invoice or a
    rate are about something else."""
    if invoices < 2 or _NOT_THE_BATCH.search(words):
        return False
    if _BATCH_TOO_LARGE.search(words):
        return True
    if not (_A_LIMIT.search(words) and _OF_THE_BATCH.search(words)):
        return False
    limits = [n for n in map(int, _NUMBER.findall(words)) if n != invoices]
    return bool(limits) and max(limits) < invoices


def not_sent_reason(exc: FiledropError, *, invoices: int) -> tuple[str, Setback] | None:
    """Why a POST of ``invoices`` invoices that certainly did not reach Amili left them NOT_SENT,
    and whose move it is; ``None`` when the API refused the batch for its content (its invoices
    FAILED)."""
    if isinstance(exc, ApiUnavailable):
        tries = plural(exc.attempts, "attempt")
        return f"Amili was not available ({exc.reason}, {tries})", Setback.UNAVAILABLE
    if isinstance(exc, AuthError):
        return _SETUP_REFUSALS[401], Setback.SETUP
    if isinstance(exc, ApiError) and exc.status in _SETUP_REFUSALS:
        return _SETUP_REFUSALS[exc.status], Setback.SETUP
    if (
        isinstance(exc, ApiError)
        and 400 <= exc.status < 500
        and refused_as_too_large(exc.excerpt, invoices=invoices)
    ):
        return (
            f"the API answered {exc.status}, {exc.excerpt!r}: a batch of {invoices} invoices is "
            "too large; lower FILEDROP_BATCH_SIZE",
            Setback.SETUP,
        )
    return None


def _record_failed_post(
    batch: int, exc: FiledropError, ctx: Context, setbacks: _Setbacks, *, name: str, invoices: int
) -> str:
    """What a failed POST means for its invoices, written down before anything else happens;
    returns which of the metrics' batch results it was. The log line names the file (``name``,
    printable), as a batch's number alone leaves the reader to look it up.

    Maybe received: ``UNKNOWN``, never resent by itself. Certainly not received because of
    where or who we are or a passing outage (API down, credentials, org id, URL, a batch too
    large): NOT_SENT, and the next run of the file sends it. Refused for its content: the whole
    batch's invoices FAILED.
    """
    facts = fields("batch_failed", inbox=ctx.metrics.name, file=name, batch=batch)
    if isinstance(exc, AmbiguousSubmission):
        # The one thing to do, said where it happens as well as in the outcome and status.
        message = (
            f"{str(exc).rstrip('.')}; check with Amili, then run "
            f"'{resolve_command(batch)} --sent' or '--not-sent'"
        )
        log.error("%s: batch #%d: %s", name, batch, message, extra=facts)
        ctx.journal.batch_unknown(batch, message=message)
        return BATCH_UNKNOWN
    reason = not_sent_reason(exc, invoices=invoices)
    # A refusal read as a batch too large is said as such: the API's answer alone carried the
    # advice for a refusal of content ("fix what the answer names and send again").
    said = reason[0] if reason is not None and reason[0].endswith(LOWER_BATCH_SIZE) else exc
    log.error("%s: batch #%d: %s", name, batch, said, extra=facts)
    if reason is None:
        ctx.journal.batch_refused(batch, message=f"the API refused the whole batch: {exc}")
        return BATCH_REFUSED
    why, setback = reason
    ends = " and" if setback is Setback.SETUP else ";"
    message = f"not sent: {why}{ends} the next run sends it"
    ctx.journal.batch_not_sent(batch, message=message)
    with setbacks.lock:  # the file's batches are posted from several threads
        if message not in setbacks.messages:
            setbacks.messages.append(message)
        setbacks.kinds.add(setback)
    return BATCH_NOT_SENT


def _outcomes(
    prepared: Prepared, journal: Journal, *, target: str, file_id: int
) -> tuple[pd.DataFrame, bool]:
    """One status per row, from the local checks and what the journal now knows; and whether
    some row waits for another file's batch (``_OutcomeDraft.waits_elsewhere``)."""
    draft = _OutcomeDraft(prepared, target=target, file_id=file_id)
    draft.read(journal)
    waits_elsewhere = draft.waits_elsewhere
    return draft.frame(), waits_elsewhere


#: The one state of the file's own invoices that nothing changes any more: ``filedrop resolve``
#: may turn UNKNOWN into SUCCEEDED or NOT_SENT while the last polls are awaited (it waits for a
#: live run, but one whose lease ran out, stalled, is taken for gone), and another file may
#: take a FAILED or NOT_SENT number meanwhile. Those are few; SUCCEEDED holds nearly every row,
#: and is final.
_FINAL = InvoiceState.SUCCEEDED.value


class _Decided(NamedTuple):
    """What a draft knows once read: the outcome columns and which invoices the journal could
    still change."""

    numbers: list[str]  # the file's invoice numbers, in order
    positions: np.ndarray  # the table rows of the invoices, one after the other
    sizes: np.ndarray  # how many rows each invoice has
    columns: list[np.ndarray]  # OUTCOME_COLUMNS: a row each, or an invoice each when grouped
    slot: np.ndarray  # where each invoice's outcome goes in ``columns``
    unsettled: np.ndarray  # indices into numbers
    #: The other files' batches some of its numbers are in, not settled there yet.
    awaited: frozenset[int] = frozenset()


class _OutcomeDraft:
    """A file's outcome, worked out from the journal once per invoice, and again only for the
    invoices whose record could have changed since.

    A run reads it while its last polls are awaited: the second or so after its last POST is
    answered, in which nothing else happens. Once the polls end, the second read takes only
    what could have changed: every invoice of the file's own that has not SUCCEEDED (batches
    still in flight, UNKNOWN ones ``filedrop resolve`` may settle if the run stalled, FAILED or
    NOT_SENT numbers another file may take), numbers another file holds, and numbers not
    written down. A second of work for 200,000 rows so comes before the last poll, not after
    it.

    The first read lets the invoices go (``prepared.invoices`` is emptied): their prepared
    columns are, after the table, the most memory a file holds, and the outcome is built from
    the journal, which knows everything they could tell.
    """

    def __init__(self, prepared: Prepared, *, target: str, file_id: int) -> None:
        self._prepared, self._target, self._file_id = prepared, target, file_id
        self._decided: _Decided | None = None
        self._awaited: frozenset[int] = frozenset()  # kept once framed, unlike the rest

    @property
    def numbers(self) -> list[str]:
        """The file's invoice numbers, in their order."""
        if self._decided is None:
            return [invoice.invoice_number for invoice in self._prepared.invoices]
        return self._decided.numbers

    def read(self, journal: Journal) -> None:
        """Decide from the journal as it is now every invoice's outcome the first time, then
        only those of the invoices that were unsettled."""
        if self._decided is None:
            invoices = self._prepared.invoices
            numbers = [invoice.invoice_number for invoice in invoices]
            positions, sizes = invoice_rows(invoices)
            invoices.clear()
            release_freed_memory()  # the prepared columns: the outcome's strings take their place
            # Each invoice's outcome goes straight to its row; an invoice of several rows
            # (grouped lines) first to its own entry, spread over its rows at the end.
            grouped = not (sizes == 1).all()
            size = len(numbers) if grouped else len(self._prepared.table)
            self._decided = _Decided(
                numbers,
                positions,
                sizes,
                [np.full(size, "", dtype=object) for _ in OUTCOME_COLUMNS],
                np.arange(len(numbers)) if grouped else positions,
                np.arange(len(numbers)),
            )
            self._held_elsewhere(journal)
        self._decided = self._decide(journal, self._decided)
        self._awaited = self._decided.awaited

    def _held_elsewhere(self, journal: Journal) -> None:
        """An invoice held as not due yet (``skip.not_due``) that another file already sent
        is DUPLICATE of it, as it would be when due: a re-export with a later due date does
        not hide that the invoice is with Amili. One that went nowhere stays SKIPPED."""
        held = self._prepared.held
        if not held:
            return
        names: dict[int, str] = {}
        for number, record in journal.invoices(target=self._target, numbers=list(held)).items():
            if record.file_id == self._file_id:
                continue
            status, text = _elsewhere(number, record, _earlier(record, journal, names))
            if status is RowStatus.DUPLICATE:
                self._prepared.rejected.update(
                    dict.fromkeys(held[number], Rejection(RowStatus.DUPLICATE, text))
                )

    def _decide(self, journal: Journal, decided: _Decided) -> _Decided:
        file_id, which = self._file_id, decided.unsettled
        decide, batch_ids = _outcome_decider(journal, file_id=file_id)
        numbers = (
            decided.numbers
            if len(which) == len(decided.numbers)
            else [decided.numbers[k] for k in which.tolist()]
        )
        # The records stream from the journal a chunk at a time, mostly in the order asked
        # (SQLite keeps it); a chunk that is not is matched through a hash index of the
        # numbers, made the first time one is needed (for a million numbers, it takes 40 MB).
        index: pd.Index | None = None
        recorded = np.zeros(len(numbers), dtype=bool)
        unsettled = np.zeros(len(numbers), dtype=bool)
        # Another file's invoices are unsettled every time, so the last read sees them all.
        awaited: set[int] = set()
        records = journal.invoice_rows(target=self._target, numbers=numbers)
        at = 0  # where the next chunk starts when the order holds
        for chunk in records:
            names = [row[0] for row in chunk]
            if at >= 0 and names == numbers[at : at + len(names)]:
                found = np.arange(at, at + len(names))
                own = numbers[at : at + len(names)]
                at += len(names)
            else:
                index = pd.Index(numbers, dtype=object) if index is None else index
                found = index.get_indexer(names)
                own = [numbers[k] for k in found.tolist()]
                at = -1  # out of step for good
            del names
            recorded[found] = True
            unsettled[found] = [row[2] != file_id or row[1] != _FINAL for row in chunk]
            awaited.update(
                row[3] for row in chunk if row[2] != file_id and _open_elsewhere(row[1], row[3])
            )
            values = _chunk_outcomes(chunk, own, decide, file_id=file_id, batch_ids=batch_ids)
            slots = decided.slot[which[found]]
            for column, value in zip(decided.columns, values, strict=True):
                column[slots] = value
        del index, records
        # Numbers the journal has no record of: the run stopped before their batch was claimed.
        unrecorded = np.flatnonzero(~recorded)
        if len(unrecorded):
            # Or left out of its batch's claim for a twin another file's batch claimed first
            # (``Journal.claim_batch``): that invoice's outcome, not "filedrop stopped".
            twins = journal.zero_twins(
                target=self._target, numbers=[numbers[k] for k in unrecorded.tolist()]
            )
            names: dict[int, str] = {}  # a file's name looked up once, not once a row
            values = [
                decide(numbers[k], None)
                if (twin := twins.get(numbers[k])) is None
                else self._twin_row(numbers[k], twin, journal, names)
                for k in unrecorded.tolist()
            ]
            awaited.update(_awaited_by(twins))
            slots = decided.slot[which[unrecorded]]
            for column, value in zip(decided.columns, zip(*values, strict=True), strict=True):
                column[slots] = value
        return decided._replace(unsettled=which[unsettled | ~recorded], awaited=frozenset(awaited))

    @staticmethod
    def _twin_row(
        number: str, twin: InvoiceRecord, journal: Journal, names: dict[int, str]
    ) -> tuple[str, ...]:
        """The outcome columns of an invoice held back for its twin (``_twin_outcome``);
        ``names`` keeps the files' names looked up so far (``_earlier``)."""
        status, text = _twin_outcome(number, twin, _earlier(twin, journal, names))
        ids = (twin.invoice_id or "", twin.case_id or "", twin.case_number or "")
        return (status.value, text, *ids, "", number)

    @property
    def waits_elsewhere(self) -> bool:
        """Whether some row waits for what becomes of its invoice in another file's batch (read
        before ``frame``): the file is then taken again (``file_state_of``)."""
        return bool(self.awaited)

    @property
    def awaited(self) -> frozenset[int]:
        """The other files' batches those rows wait for (``waits_elsewhere``), as last read."""
        return self._awaited

    def frame(self) -> pd.DataFrame:
        """The outcome columns of every row: each invoice's outcome on its rows (spread a whole
        column at a time), and the rows refused before sending with their reasons."""
        decided = self._decided
        if decided is None:
            raise RuntimeError("an outcome draft is framed once, after it was read")
        self._decided = None  # the per-invoice columns of grouped lines go with it
        columns = self._row_columns(decided, copy=False)
        missing = np.flatnonzero(columns["outcome_status"] == "")
        if len(missing):  # a bug upstream; never let it pass as a silent blank
            raise AssertionError(f"rows without a status: {missing[:10].tolist()}")
        return pd.DataFrame(columns, copy=False)  # the arrays are the frame's: no second copy

    def provisional(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The outcome columns of every row as the draft reads now (``frame`` without ending
        the draft), and which rows are settled: refused before sending, or of an invoice the
        journal can no longer change. For making the outcome's rows ahead (``rows_ahead``)."""
        decided = self._decided
        if decided is None:
            raise RuntimeError("an outcome draft is read before it is looked at")
        columns = self._row_columns(decided, copy=True)
        open_invoices = np.zeros(len(decided.numbers), dtype=bool)
        open_invoices[decided.unsettled] = True
        settled = np.ones(len(self._prepared.table), dtype=bool)
        settled[decided.positions[np.repeat(open_invoices, decided.sizes)]] = False
        return columns, settled

    def _row_columns(self, decided: _Decided, *, copy: bool) -> dict[str, np.ndarray]:
        """The outcome columns a row each (new arrays with ``copy``, else the draft's own where
        they already are a row each, overwritten)."""
        prepared = self._prepared
        if (decided.sizes == 1).all():
            columns = {
                name: column.copy() if copy else column
                for name, column in zip(OUTCOME_COLUMNS, decided.columns, strict=True)
            }
        else:
            spread = np.repeat(np.arange(len(decided.numbers)), decided.sizes)
            columns = {}
            for name, per_invoice in zip(OUTCOME_COLUMNS, decided.columns, strict=True):
                columns[name] = np.full(len(prepared.table), "", dtype=object)
                columns[name][decided.positions] = per_invoice[spread]
        status, message = columns["outcome_status"], columns["outcome_message"]
        for position, (row_status, text) in prepared.rejected.items():
            status[position], message[position] = row_status.value, text
        for position, note in prepared.notes.items():
            message[position] = f"{message[position]}; {note}" if message[position] else note
        return columns


def _outcome_decider(
    journal: Journal, *, file_id: int
) -> tuple[Callable[[str, InvoiceRecord | None], tuple[str, ...]], dict[int, str]]:
    """``_invoice_outcome`` bound to what the journal knows of the file's batches, and their
    API ids by journal id: what a file's outcome is decided from, read once."""
    batches = journal.batches(file_id=file_id)
    batch_ids = {b.id: b.batch_id or "" for b in batches}
    poll_failures = {
        b.id: b.message
        for b in batches
        if b.state is BatchState.QUEUED and b.api_status is None and b.message
    }
    decide = functools.partial(
        _invoice_outcome,
        journal=journal,
        file_id=file_id,
        batch_ids=batch_ids,
        poll_failures=poll_failures,
        file_names={},
    )
    return decide, batch_ids


#: The row status of an invoice of the file at hand, by its state in the journal, as text.
_ROW_STATUS_TEXT = {state.value: ROW_STATUS_OF_INVOICE[state].value for state in InvoiceState}


def _chunk_outcomes(
    chunk: list[tuple[Any, ...]],
    own: list[str],
    decide: Callable[[str, InvoiceRecord], tuple[str, ...]],
    *,
    file_id: int,
    batch_ids: dict[int, str],
) -> list[list[str]]:
    """The outcome columns of a chunk of journal rows (``InvoiceRecord``'s fields, the status as
    text), a column at a time, each the same as ``decide`` (``_invoice_outcome``) gives.

    ``own`` are the file's own texts of the chunk's numbers, which the number column takes:
    the journal's equal copies would be a million more strings (66 MB) held to the end.

    Most invoices are the file's own and settled: their columns are the journal's values as
    text, with no record made. The rest, sent from another file or still PENDING (whose
    messages say more), are decided one by one.
    """
    _, states, owners, batches, invoice_ids, case_ids, case_numbers, messages = (
        list(column) for column in zip(*chunk, strict=True)
    )
    numbers = list(own)  # the other rows below are written into it
    columns = [
        [_ROW_STATUS_TEXT[state] for state in states],
        [message or "" for message in messages],
        [value or "" for value in invoice_ids],
        [value or "" for value in case_ids],
        [value or "" for value in case_numbers],
        [batch_ids.get(batch or -1, "") for batch in batches],
        numbers,
    ]
    pending = InvoiceState.PENDING.value
    others = [
        k
        for k, (state, owner) in enumerate(zip(states, owners, strict=True))
        if owner != file_id or state == pending
    ]
    for k in others:
        record = InvoiceRecord(numbers[k], InvoiceState(states[k]), *chunk[k][2:])
        for column, value in zip(columns, decide(numbers[k], record), strict=True):
            column[k] = value
    return columns


def _invoice_outcome(
    number: str,
    record: InvoiceRecord | None,
    journal: Journal,
    *,
    file_id: int,
    batch_ids: dict[int, str],
    poll_failures: dict[int, str],
    file_names: dict[int, str],
) -> tuple[str, str, str, str, str, str, str]:
    """The outcome columns of one invoice's rows; the last is its number as sent."""
    if record is None:
        # Stopped before its batch was claimed: nothing was sent; the next run sends it.
        return (
            RowStatus.NOT_SENT.value,
            "not sent: filedrop stopped first; the next run sends it",
            "",
            "",
            "",
            "",
            number,
        )
    if record.file_id != file_id:
        if record.file_id not in file_names:
            file_names[record.file_id] = journal.file(record.file_id).name
        status, text = _elsewhere(number, record, file_names[record.file_id])
        return (
            status.value,
            text,
            record.invoice_id or "",
            record.case_id or "",
            record.case_number or "",
            "",
            number,
        )
    row_status = ROW_STATUS_OF_INVOICE[record.status]
    text = record.message or ""
    if row_status is RowStatus.PENDING:
        failure = poll_failures.get(record.batch or -1)
        text = (
            f"whether its batch ended is not known: its last poll failed ({failure}); it is "
            "polled again and this file rewritten"
            if failure
            else "its batch was still QUEUED; it is polled again and this file rewritten"
        )
    return (
        row_status.value,
        text,
        record.invoice_id or "",
        record.case_id or "",
        record.case_number or "",
        batch_ids.get(record.batch or -1, ""),
        number,
    )


#: Said of a file saved over while it was sent (``saved_over``).
CHANGED_WHILE_SENT = (
    "it changed while it was sent: its outcome shows the version that was sent, and the next "
    "run takes the new one"
)
#: What a file says (the run's summary, ``status``, the daemon's retry) whose rows wait for
#: another file's batch (``_OutcomeDraft.waits_elsewhere``).
WAITS_FOR_ANOTHER_FILE = (
    "some rows wait for another file's batch, which their messages name; every run takes this "
    "file again until that batch is settled"
)
#: States of another file's invoice that may yet end otherwise than sent (``_open_elsewhere``).
_OPEN_ELSEWHERE = frozenset(
    {InvoiceState.UNKNOWN.value, InvoiceState.SENDING.value, InvoiceState.PENDING.value}
)


def _open_elsewhere(status: str, batch: int | None) -> bool:
    """Whether another file's invoice, in this state and batch, may yet end otherwise than sent,
    so that a row of the file at hand holding the same number waits for it. Only in a batch:
    one a rebuild read back from a DUPLICATE row has none, and nothing will ever settle it."""
    return status in _OPEN_ELSEWHERE and batch is not None


def _awaited_by(twins: dict[str, InvoiceRecord]) -> set[int]:
    """The other files' batches that invoices held back for these twins wait for."""
    return {
        twin.batch
        for twin in twins.values()
        if twin.batch is not None and _open_elsewhere(twin.status.value, twin.batch)
    }


def _elsewhere(number: str, record: InvoiceRecord, earlier: str) -> tuple[RowStatus, str]:
    """A row whose invoice number another file holds in the journal: what it waits for while
    that file's batch may yet end unsent (``_open_elsewhere``), as the row is sent from this
    file if that one did not send it (the file is taken again: ``file_state_of``); NOT_SENT
    once that file did not; else a DUPLICATE. An older version of a file, re-exported while its
    batch was lost, is gone from the inbox: this file is the one to send it then."""
    status = record.status
    if _open_elsewhere(status.value, record.batch):
        if status is InvoiceState.UNKNOWN:
            return (
                RowStatus.UNKNOWN,
                # Why is that file's to say (filedrop stopped, the connection was lost or timed
                # out, an answer of 500 or without a batch id): here only what is true of all.
                f"invoice {number} {WAITS_ELSEWHERE[0]} {earlier} (batch #{record.batch}), and "
                "whether Amili has it is not known: check with Amili, then "
                f"'{resolve_command(record.batch or 0)} --sent' or '--not-sent'; the next run "
                "then tells, or sends it from this file",
            )
        return (
            RowStatus.PENDING,
            f"invoice {number} {WAITS_ELSEWHERE[1]} {earlier} that has not ended; the next "
            "run tells whether Amili has it, or sends it from this file",
        )
    if status in (InvoiceState.FAILED, InvoiceState.NOT_SENT):
        return (
            RowStatus.NOT_SENT,
            f"invoice {number} was not sent from {earlier} ({status.lower()}); the next run "
            "sends it from this file",
        )
    case = f", case {record.case_number}" if record.case_number else ""
    return (
        RowStatus.DUPLICATE,
        f"invoice {number} was already sent from {earlier} ({status.lower()}{case}); not sent "
        "again",
    )


def _amount_column(mapping: Mapping, table: Table) -> int | None:
    """The input column of each row's amount: the one the invoice's original amount reads, else
    the one the first claim's amount reads; None when both are constants or sums."""
    claims = [item for item in mapping.claims.items if isinstance(item, Obj)]
    candidates = [
        mapping.invoice.get_field("originalInvoiceAmount"),
        *(claim.get_field("remainingAmount") for claim in claims[:1]),
    ]
    for field_ in candidates:
        if field_ is not None and field_.source == "column":
            positions = mapping.resolve_columns(table.headers, file_name=table.path.name)
            return positions.get(field_.columns)
    return None


def _batch_line(batch: BatchRecord) -> BatchLine:
    def when(stamp: float | None) -> datetime | None:
        return datetime.fromtimestamp(stamp, UTC) if stamp else None

    return BatchLine(
        batch_id=batch.batch_id,
        invoices=batch.invoice_count,
        status=batch.api_status or batch.state.upper(),
        submitted_at=when(batch.submitted_at),
        finished_at=when(batch.finished_at),
    )


def _archive(path: Path, outcome: Path, ctx: Context, *, sha256: str) -> Path:
    """Move original and outcome to ``archive/``, stamped so last month's file is never replaced.

    An ``archive`` that is a symbolic link is never followed (it could lead anywhere the daemon
    may write), nor one that is a file: both files stay where they are, and the log says so
    once. An original whose bytes are no longer those processed (``sha256``: replaced or
    rewritten meanwhile) stays in the inbox, to be taken as the new file it is; only the outcome
    goes.
    """
    archive = archive_folder(path.parent)
    if archive is None:
        if ctx.say_once("archive-not-a-folder"):
            log.warning(
                "%s is not a folder filedrop may use (a symbolic link, which it never follows, "
                "or a file): files stay in the inbox; make it a folder to archive them",
                printable(str(path.parent / ARCHIVE)),
                extra=fields("archive_link", inbox=ctx.metrics.name),
            )
        return outcome
    kept_input, kept_outcome = stamped_names(archive, path.name, outcome.name)
    try:
        # Hashed through one handle, and moved only if that very file is still at the path: a
        # new export renamed in while it was hashed is not archived in its stead.
        hashed = hash_file(path)
        unchanged = hashed.sha256 == sha256 and is_same_file(path, hashed.identity)
    except OSError:  # gone, or no longer a regular file: nothing to move
        unchanged = False
    if unchanged:
        shutil.move(path, kept_input)
    else:
        log.info(
            "%s: changed while it was processed; it stays in the inbox, and only its outcome "
            "goes to the archive",
            printable(path.name),
            extra=fields("file_changed", inbox=ctx.metrics.name, file=path.name),
        )
    return Path(shutil.move(outcome, kept_outcome))


def _keep_earlier_outcome(
    path: Path, dest: Path, *, unless: str | None, limits: ReadLimits, inbox: str | None
) -> None:
    """Keep the outcome at ``dest`` rather than let ``path``'s overwrite it, when it is not the
    one ``path``'s record wrote last (stamped ``unless``) and shows invoices sent.

    Such an outcome is an earlier version's of the file (same name, other bytes) and the only
    record beside the journal of what was sent from it, which 'filedrop journal rebuild' reads
    back: overwritten, a lost journal would let those invoices go out again. One that shows
    nothing sent (only ERROR or INVALID rows) is simply replaced. Done before anything is sent
    or written for the file; ``OSError`` when it cannot be moved.
    """
    try:
        if not stat.S_ISREG(dest.lstat().st_mode):
            return  # a link is replaced whole, a folder refused (check_outcome_name)
    except FileNotFoundError:
        return
    if written_stamp(dest) == unless or not shows_sent(dest, limits=limits):
        return
    kept = keep_aside(dest)
    log.info(
        "%s: %s, which this file's record did not write (an earlier file's of that name, or "
        "one from before a journal rebuild), shows invoices sent; it is kept as %s%s",
        printable(path.name),
        printable(dest.name),
        printable(str(kept.relative_to(dest.parent))),
        " (beside it: archive is not a folder filedrop may use, a link or a file)"
        if kept.parent == dest.parent
        else "",
        extra=fields("outcome_kept", inbox=inbox, file=path.name, kept=str(kept)),
    )


def _gone_told(counts: dict[str, int], outcome: Path | None) -> str:
    """What a gone file's outcome from the journal holds: rows whose batch never reached Amili
    (NOT_SENT) are listed, but not counted as sent."""
    if outcome is None:
        return "nothing was sent from it"
    sent = {status: rows for status, rows in counts.items() if status != RowStatus.NOT_SENT}
    unsent = counts.get(RowStatus.NOT_SENT, 0)
    return (
        f"{_counts_text(sent)} sent from it, listed in {printable(str(outcome))}"
        + (f" with {unsent} NOT_SENT" if unsent else "")
        + f"; rows {'NOT_SENT or ' if unsent else ''}not listed there were never sent, and go"
        " when the same file is dropped again"
    )


def _counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{rows} {status}" for status, rows in sorted(counts.items())) or "no rows"
