"""From settings to a finished run: build the client, journal and context, then process the inbox.

``run_inbox`` is what ``filedrop run`` does and what ``filedrop demo`` does on the sandbox; the CLI
only prints its report and exits with the code the report computes. Here too: several files at
once, each behind one guard (``process_guarded``), and the batches earlier runs left behind
(``settle_leftovers``), which the watch daemon uses as well.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from filedrop.api.client import (
    AmiliClient,
    ApiError,
    ApiUnavailable,
    AuthError,
    ClientEvents,
    Credentials,
    PollSchedule,
)
from filedrop.errors import ClaimLostError, ConfigError, FiledropError
from filedrop.inbox import (
    LEFT_FOR_A_PERSON,
    NOT_THERE,
    Readiness,
    StabilityTracker,
    content_hash,
    recorded_in,
    scan,
    snapshot,
    why_left,
)
from filedrop.inflight import MarkFolderError, MarkHeldError
from filedrop.journal import Journal, owner_alive
from filedrop.journal.location import open_journal
from filedrop.logs import fields, printable
from filedrop.mapping import load_mappings
from filedrop.metrics import InboxMetrics, Metrics, inbox_label
from filedrop.outcome import remove_stray_temps
from filedrop.pipeline import (
    Context,
    FileReport,
    Setback,
    close_gone_file,
    process_file,
    record_polls,
    resume_batches,
)
from filedrop.progress import Progress
from filedrop.read import EXCEL_SUFFIXES
from filedrop.read.isolated import drop_read_ahead, reading_ahead, start_reader
from filedrop.settings import DEFAULT_INBOX_NAME, Settings
from filedrop.states import (
    UNFINISHED_BATCH_STATES,
    BatchState,
    ExitCode,
    FileState,
    RowStatus,
    exit_code_for,
)

log = logging.getLogger("filedrop")

#: The organisation id the demo and the sandbox examples use (the API guide's example).
DEMO_ORG_ID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"


def poll_schedule(settings: Settings) -> PollSchedule:
    """How batches are polled, from the ``poll_*`` settings."""
    return PollSchedule(
        initial_s=settings.poll_initial_s,
        max_interval_s=settings.poll_max_interval_s,
        timeout_s=settings.poll_timeout_s,
    )


def make_client(
    settings: Settings,
    *,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], object] = time.sleep,
    events: ClientEvents | None = None,
    log_fields: dict[str, str] | None = None,
    stopping: Callable[[], bool] = lambda: False,
) -> AmiliClient:
    """The API client for these settings; every setting it needs must already be checked."""
    auth_url, api_url = settings.urls()
    return AmiliClient(
        auth_url=auth_url,
        api_url=api_url,
        credentials=Credentials(
            client_id=settings.client_id or "", client_secret=settings.secret()
        ),
        connect_timeout_s=settings.connect_timeout_s,
        read_timeout_s=settings.read_timeout_s,
        clock=clock,
        sleep=sleep,
        url_origins=settings.url_origins(),
        events=events,
        log_fields=log_fields,
        stopping=stopping,
    )


@contextmanager
def open_context(
    settings: Settings,
    *,
    stop: threading.Event | None = None,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], object] | None = None,
    metrics: Metrics | None = None,
    inbox_name: str | None = None,
    sharing: tuple[Path, ...] = (),
) -> Iterator[Context]:
    """Check the settings, the mappings and the credentials, then yield a ready ``Context``.

    The one way a ``Context`` is built (tests use it too). Everything that can make a run
    useless is checked here, before anything is sent: a missing setting or a broken mapping is
    a ``ConfigError``/``MappingError``, refused credentials an ``AuthError``, and an API out of
    reach ``ApiUnavailable``. ``clock`` and ``sleep`` (wall time) are for tests; by default a
    wait (a retry's, the stability window's) ends as soon as ``stop`` is set, so a SIGTERM is
    not held up by a 60 s ``Retry-After`` past a container's grace period.

    The context counts into ``metrics`` (the process's; by default one of its own) under the
    label ``inbox_name`` (by default the inbox folder's name). ``sharing``: the config's other
    inboxes with this journal and target (``inboxes_sharing``).
    """
    settings.require_for_sending()
    assert settings.mapping is not None  # checked by require_for_sending
    mappings = load_mappings(settings.mapping, invoice_types=settings.invoice_types)
    counted = inbox_metrics(settings, metrics or Metrics(), inbox_name=inbox_name)
    stop = stop or threading.Event()
    sleep = sleep or stop.wait
    client = make_client(
        settings,
        clock=clock,
        sleep=sleep,
        events=counted,
        log_fields={"inbox": counted.name},
        stopping=stop.is_set,
    )
    try:
        client.authenticate()
        journal = open_journal(
            settings.journal_path,
            inbox=settings.require_inbox(),
            allow_network=settings.allow_network_journal,
            clock=clock,
        )
    except BaseException:
        client.close()
        raise
    ctx = Context(
        client=client,
        journal=journal,
        mappings=mappings,
        environment=settings.env or "custom",
        org_id=settings.org_id or "",
        inbox=settings.require_inbox(),
        inbox_name=settings.name,
        batch_size=settings.batch_size,
        concurrent_batches=settings.concurrent_batches,
        concurrent_files=settings.concurrent_files,
        stability_s=settings.stability_s,
        claim_stale_s=settings.claim_stale_s,
        schedule=poll_schedule(settings),
        archive=settings.archive,
        read_limits=settings.read_limits(),
        metrics=counted,
        sharing=sharing,
        clock=clock,
        sleep=sleep,
        stop=stop,
        progress=progress or Progress(),
    )
    stop_renewing = keep_claims(
        journal, owner=ctx.owner, every_s=settings.heartbeat_s, inbox=ctx.metrics.name
    )
    try:
        yield ctx
    finally:
        stop_renewing()
        ctx.progress.close()
        ctx.close()
        journal.close()
        client.close()


def inbox_metrics(
    settings: Settings, metrics: Metrics, *, inbox_name: str | None = None
) -> InboxMetrics:
    """The series of the inbox these settings name, labelled ``inbox_name``, else the name the
    config gives the inbox, else its folder's name."""
    named = settings.name if settings.name != DEFAULT_INBOX_NAME else None
    return metrics.inbox(inbox_name or named or inbox_label(settings.inbox or ""))


def keep_claims(journal: Journal, *, owner: str, every_s: float, inbox: str) -> Callable[[], None]:
    """Renew ``owner``'s claims every ``every_s`` seconds in the background; returns the stop.
    ``inbox`` names the inbox whose files they are, in the log.

    The heartbeat of the lease: while this runs, no other process or replica takes this one's
    files; once it stops (the process died, its host was lost), they are free ``claim_stale_s``
    after the last renewal.
    """
    done = threading.Event()

    def renew() -> None:
        while not done.wait(every_s):
            try:
                journal.renew_claims(owner)
            except journal.errors as exc:  # a busy or unreachable journal: try at the next beat
                log.warning(
                    "cannot renew this process's claims in the journal (%s)",
                    exc,
                    extra=fields("journal_unwritable", inbox=inbox),
                )

    thread = threading.Thread(target=renew, name="filedrop-lease", daemon=True)
    thread.start()

    def stop() -> None:
        done.set()
        thread.join(timeout=5.0)

    return stop


#: How long each earlier batch of a moved or replaced file is polled before a run reads the inbox.
_SETTLE_FIRST_S = 5.0


def run_inbox(ctx: Context) -> RunReport:
    """Process every ready file in the inbox once, waiting for its batches (``filedrop run``)."""
    clear_stray_temps(ctx)
    candidates, ignored = scan(ctx.inbox)
    for path, reason in ignored:
        log.log(
            logging.WARNING if reason in LEFT_FOR_A_PERSON else logging.INFO,
            "%s: ignored (%s)",
            printable(path.name),
            reason,
            extra=fields("file_ignored", inbox=ctx.metrics.name, file=path.name, reason=reason),
        )
    if ctx.read_limits.read_in_subprocess and any(
        path.suffix.lower() in EXCEL_SUFFIXES and not reading_ahead(path) for path in candidates
    ):
        # Its imports overlap the stability wait and the first file's claim. A workbook whose
        # read the command line began needs no server: started anyway, its interpreter would
        # take CPU from that very parse.
        start_reader()
    ready, changing = ready_files(
        candidates,
        stability_s=ctx.stability_s,
        clock=ctx.clock,
        sleep=ctx.sleep,
        inbox=ctx.metrics.name,
    )
    if ctx.stop.is_set():
        # Stopped during the wait for files to settle: none is taken, none was "changing". One
        # line, as the wait had.
        if candidates:
            log.info(
                "%s: left for the next run, as filedrop is stopping",
                _files_named(candidates),
                extra=fields(
                    "files_left",
                    inbox=ctx.metrics.name,
                    file=candidates[0].name,
                    counts={"files": len(candidates)},
                ),
            )
        return RunReport([], stopped_early=bool(candidates))
    for path in changing:
        log.info(
            "%s: %s",
            printable(path.name),
            why_left(path),
            extra=fields("file_changing", inbox=ctx.metrics.name, file=path.name),
        )
    with _polls_end_at_stop(ctx):
        # Earlier batches of files moved or replaced are settled first: a file renamed while
        # its batches were pending holds the same invoices, and its rows then tell what became
        # of them (DUPLICATE of a success with its case, or sent again after a failure) rather
        # than "pending" for good. A batch Amili has not ended yet holds the new files back a
        # few seconds at most; it is polled again after them, as long as any batch is, and so
        # is a file replaced during this run.
        gone = settle_leftovers(ctx, timeout_s=_SETTLE_FIRST_S)
        if ctx.stop.is_set():
            return RunReport(gone, stopped_early=bool(ready))
        processed = process_files(ready, ctx)
        report = replace(
            processed,
            files=[*gone, *processed.files],
            changing=tuple(changing),
            unread=tuple((path, why) for path, why in ignored if why in LEFT_FOR_A_PERSON),
        )
        if not ctx.stop.is_set():
            # A file left as it was (held back by its mark) is found so again: in the summary
            # once, as in the log.
            settled = [each for each in settle_leftovers(ctx) if each not in gone]
            report = replace(report, files=[*report.files, *settled])
    if measure_backlog(ctx):
        ctx.metrics.cycle_succeeded()
    return report


@dataclass(frozen=True)
class InboxRun:
    """How one inbox of a ``run`` went: its report, or why it could not start.

    ``failure`` is the one sentence that stopped the inbox before any file (refused credentials,
    Amili out of reach, a missing folder, a broken mapping); ``failure_code`` what it means.
    """

    settings: Settings
    report: RunReport | None = None
    failure: str | None = None
    failure_code: ExitCode = ExitCode.SETUP

    @property
    def exit_code(self) -> ExitCode:
        return self.report.exit_code if self.report is not None else self.failure_code


def run_inboxes(
    settings: Settings,
    *,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], object] | None = None,
    metrics: Metrics | None = None,
    stop: threading.Event | None = None,
) -> list[InboxRun]:
    """``filedrop run`` over every inbox the config lists, in the config's order.

    Each inbox runs in a thread of its own with its own context (its client and token, its
    organisation), so one whose setup fails, or whose Amili is slow to answer, neither stops
    nor delays the others; its failure is logged and reported under its name. Every inbox
    counts into ``metrics`` under its own name.
    """
    inboxes = settings.each_inbox()
    counted = metrics or Metrics()

    def one(inbox: Settings) -> InboxRun:
        sharing = inboxes_sharing(inbox, inboxes)
        return _run_one(
            inbox, clock=clock, sleep=sleep, metrics=counted, stop=stop, sharing=sharing
        )

    with ThreadPoolExecutor(max_workers=len(inboxes), thread_name_prefix="filedrop-inbox") as pool:
        return list(pool.map(one, inboxes))


def _run_one(
    settings: Settings,
    *,
    clock: Callable[[], float],
    sleep: Callable[[float], object] | None,
    metrics: Metrics,
    stop: threading.Event | None,
    sharing: tuple[Path, ...] = (),
) -> InboxRun:
    """One inbox of ``run_inboxes``; whatever stops it becomes its ``InboxRun``'s failure."""
    try:
        with open_context(
            settings, clock=clock, sleep=sleep, metrics=metrics, stop=stop, sharing=sharing
        ) as ctx:
            return InboxRun(settings, report=run_inbox(ctx))
    except ApiUnavailable as exc:  # nothing was sent; the next run starts over
        failure, code = str(exc), ExitCode.UNFINISHED
    except FiledropError as exc:  # settings, mapping, credentials, organisation
        failure, code = str(exc), ExitCode.SETUP
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        failure, code = f"{exc.strerror or exc}{where}", ExitCode.SETUP
    except Exception as exc:  # a bug must not take the other inboxes down with this one
        log.debug("inbox %s: unexpected error", settings.name, exc_info=True)
        failure, code = f"unexpected error ({exc!r})", ExitCode.SETUP
    failure = printable(failure)
    log.error("%s", about_inbox(settings, failure))
    return InboxRun(settings, failure=failure, failure_code=code)


def inboxes_sharing(inbox: Settings, inboxes: Iterable[Settings]) -> tuple[Path, ...]:
    """The folders of the other ``inboxes`` whose journal and target are ``inbox``'s: one
    journal knows what went to one organisation from all of them, so the evidence that it was
    lost, found in any, holds them all back. An inbox whose settings lack either shares none."""
    try:
        ours = (inbox.journal_path, inbox.require_target())
    except ConfigError:
        return ()
    shared = []
    for other in inboxes:
        if other is inbox or other.inbox is None:
            continue
        try:
            if (other.journal_path, other.require_target()) == ours:
                shared.append(other.inbox)
        except ConfigError:
            continue
    return tuple(shared)


def about_inbox(settings: Settings, text: str) -> str:
    """``inbox NAME: text``, the inbox named once: a config error about it names it already."""
    if f'inbox "{settings.name}"' in text:
        return text
    return f"inbox {settings.name}: {text}"


def combined_exit_code(codes: Iterable[ExitCode]) -> ExitCode:
    """The one code of several inboxes' runs, by the same precedence as one run's: 2, 1, 3, 0."""
    seen = set(codes)
    return exit_code_for(
        {RowStatus.ERROR} if ExitCode.ATTENTION in seen else set(),
        setup_problem=ExitCode.SETUP in seen,
        unfinished=ExitCode.UNFINISHED in seen,
    )


def clear_stray_temps(ctx: Context) -> None:
    """Remove outcome temporary files that a killed process left in the inbox (at each start).

    Only those older than ``claim_stale_s``: the time after which another process's work is no
    longer trusted to be going on, so a ``run`` beside ``watch`` never removes a file that the
    other is writing at that very moment.
    """
    for name in remove_stray_temps(ctx.inbox, older_than_s=ctx.claim_stale_s, now=ctx.clock()):
        log.info(
            "%s: removed (left by an outcome write that was interrupted)",
            printable(name),
            extra=fields("temp_removed", inbox=ctx.metrics.name, file=name),
        )


def find_examples(start: Path | None = None) -> tuple[Path, Path]:
    """The ``inbox-example`` and ``mappings`` folders for the demo: from ``start`` when given,
    else the copies inside the installed package (in a checkout, links to the top-level ones)."""
    root = start if start is not None else Path(__file__).resolve().parent / "examples"
    if (root / "inbox-example").is_dir() and (root / "mappings").is_dir():
        return root / "inbox-example", root / "mappings"
    if start is not None:
        raise ConfigError(
            f"--examples {start} holds no inbox-example/ and mappings/ folders; "
            "pass the folder that holds both."
        )
    raise ConfigError(
        f"The demo examples are missing from this installation ({root}); "
        "reinstall filedrop, or pass --examples DIR with inbox-example/ and mappings/ in it."
    )


def prepare_demo_inbox(examples: Path) -> Path:
    """Copy the example drops into a fresh folder, so the demo never touches the originals."""
    work = Path(tempfile.mkdtemp(prefix="filedrop-demo-"))
    inbox = work / "inbox"
    inbox.mkdir()
    for path in sorted(examples.iterdir()):
        if path.is_file() and not path.name.startswith("."):
            shutil.copy2(path, inbox / path.name)
    return inbox


# -- many files, and what earlier runs left behind -------------------------------------------


@dataclass(frozen=True)
class RunReport:
    """Every file a run touched, and the exit code that sums them up."""

    files: list[FileReport]
    stopped_early: bool = False  # told to stop before every ready file was taken: 3, not 0
    changing: tuple[Path, ...] = ()  # still being written: left for the next run, and said so
    unread: tuple[tuple[Path, str], ...] = ()  # spreadsheets filedrop cannot take, and why

    @property
    def statuses(self) -> set[RowStatus]:
        """Row statuses over every file."""
        return set().union(*(report.statuses for report in self.files)) if self.files else set()

    @property
    def exit_code(self) -> ExitCode:
        """2 if a file stopped on the setup (its NOT_SENT rows wait for the operator), 1 if a
        row or file needs a person (a gone file's NOT_SENT rows do), 3 if work is left for the
        next run (rows PENDING, NOT_SENT because Amili was unavailable, or a file still being
        written), else 0.

        A file another live process holds is that process's work, and says nothing of this
        run: two runs sharing an inbox both exit 0 when it all went. A copy of an export left
        unfinished in another folder is 3: nothing of it went yet."""
        setbacks = {report.setback for report in self.files}
        faults = {RowStatus.ERROR} if Setback.FAULT in setbacks else set()
        # A gone file's rows never sent go only once a person drops the file again.
        stranded = any(
            report.state is FileState.GONE and RowStatus.NOT_SENT in report.statuses
            for report in self.files
        )
        return exit_code_for(
            self.statuses | faults,
            attention=stranded,
            setup_problem=Setback.SETUP in setbacks,
            unfinished=self.stopped_early
            or bool(self.changing)
            or Setback.UNAVAILABLE in setbacks
            or Setback.CHANGING in setbacks
            or Setback.ELSEWHERE in setbacks
            or any(report.state is FileState.WAITING for report in self.files),
        )


def ready_files(
    candidates: list[Path],
    *,
    stability_s: float,
    clock: Callable[[], float],
    sleep: Callable[[float], object],
    inbox: str | None = None,
) -> tuple[list[Path], list[Path]]:
    """Split candidates into (ready, still changing) for a one-shot run.

    The same rule as the watch daemon's (``StabilityTracker``): unchanged for the stability
    window, and it opens. A file that stayed empty that long is ready too, to get its ``ERROR``.
    A one-shot run looks once, waits one window if some file is not ready yet, and looks again;
    what is still not ready is left for the next run. The wait is said as it begins: without
    it, a run showed nothing for those seconds.
    """
    tracker = StabilityTracker(window_s=stability_s, clock=clock)
    ready = [path for path in candidates if _takes(tracker, path)]
    taken = set(ready)
    waiting = [path for path in candidates if path not in taken and snapshot(path) is not None]
    if not waiting:
        return ready, []
    # One line for the one wait, true of every file in it: the first look cannot tell an old
    # file from one still being written (a copy keeping its source's time), so each waits.
    log.info(
        "waiting %g s (FILEDROP_STABILITY_S) before taking %s, to see that %s being written",
        stability_s,
        _files_named(waiting),
        "it is no longer" if len(waiting) == 1 else "none is still",
        extra=fields(
            "files_settling", inbox=inbox, file=waiting[0].name, counts={"files": len(waiting)}
        ),
    )
    sleep(stability_s)
    changing: list[Path] = []
    for path in waiting:
        if _takes(tracker, path):
            ready.append(path)
        elif snapshot(path) is not None:
            changing.append(path)
    return ready, changing


def _files_named(paths: list[Path]) -> str:
    """A file by its name, or several in one phrase ("40 files (such as a.csv)"), for the
    one line said of them all."""
    first = printable(paths[0].name)
    return first if len(paths) == 1 else f"{len(paths)} files (such as {first})"


def _takes(tracker: StabilityTracker, path: Path) -> bool:
    return tracker.readiness(path) is not Readiness.CHANGING


def setback_of(exc: BaseException) -> Setback:
    """What an error that stopped a file means for the run's exit code."""
    if isinstance(exc, ApiUnavailable):
        return Setback.UNAVAILABLE
    if isinstance(exc, AuthError | MarkFolderError | MarkHeldError) or (
        isinstance(exc, ApiError) and exc.status in (401, 403, 404)
    ):
        return Setback.SETUP
    return Setback.FAULT


#: What a file taken over by another process while this one was held up says in the summary.
TAKEN_OVER = (
    "taken over by another filedrop process while this one was held up, or found gone by it "
    "(see the log); this one sends nothing more from it"
)


def process_guarded(path: Path, ctx: Context) -> FileReport:
    """``process_file``, turning any failure into a report and one log sentence.

    One file's failure never stops the others. The file is left ``retry`` (``process_file``
    lets its claim go), so the next run (or the watch daemon's retry) resumes it from the
    journal, and one moved away meanwhile is closed as gone once its batches end. The traceback
    of an unexpected error shows with --debug.
    """
    try:
        report = process_file(path, ctx)
    except ClaimLostError as exc:
        # Held up past its claim (a frozen VM, a laptop asleep), another process took the file
        # over and finishes it: this one's part is over, and its exit code says nothing of it,
        # as for a file another process is at work on (it said "the next run resumes it").
        log.warning("%s: %s", printable(path.name), exc)
        taken = FileReport(
            path, FileState.SKIPPED, {}, message=TAKEN_OVER, held_by="another process"
        )
        return _counted(taken, ctx)
    except FiledropError as exc:
        message, setback = str(exc), setback_of(exc)
    except OSError as exc:  # disk full, permissions, an outcome held open on a share
        where = f" ({exc.filename})" if exc.filename else ""
        message = f"{exc.strerror or exc}{where}; nothing is lost, the next run resumes it"
        setback = Setback.FAULT
        log.debug("%s: %s", printable(path.name), message, exc_info=True)
    except ctx.journal.errors as exc:  # the journal's disk full, its server gone
        message = (
            f"the journal {ctx.journal.path} could not be written ({exc}); check FILEDROP_STATE "
            "and the space on its disk; the next run resumes it, and never sends again what "
            "went (a batch Amili took that the journal could not note becomes UNKNOWN, for "
            "'filedrop resolve'; the log names it)"
        )
        setback = Setback.FAULT
        log.debug("%s: %s", printable(path.name), message, exc_info=True)
    except Exception as exc:
        message = f"unexpected error ({exc!r}); the next run resumes it"
        setback = Setback.FAULT
        log.debug("%s: %s", printable(path.name), message, exc_info=True)
    else:
        return _counted(report, ctx)
    finally:
        drop_read_ahead(path)  # begun for a file that was then skipped, not read
    message = printable(message)
    log.error(
        "%s: %s",
        printable(path.name),
        message,
        extra=fields("file_retry", inbox=ctx.metrics.name, file=path.name, status=FileState.RETRY),
    )
    return _counted(FileReport(path, FileState.RETRY, {}, message=message, setback=setback), ctx)


def _counted(report: FileReport, ctx: Context) -> FileReport:
    """Count a file's pass in the metrics, and read again what waits in the journal."""
    ctx.metrics.file_finished(report.state, report.counts)
    if report.state is not FileState.SKIPPED:
        measure_backlog(ctx)
    return report


def measure_backlog(ctx: Context) -> bool:
    """Set the metrics of what waits in the journal for this inbox: UNKNOWN batches, rows
    PENDING or NOT_SENT, the oldest unfinished file. False when the journal could not be read.

    The journal is shared by every inbox and may be by several organisations: only the files
    recorded in this inbox's folder count.
    """
    now = ctx.clock()
    try:
        unfinished = ctx.journal.files_in_states(
            target=ctx.target, states=(FileState.CLAIMED, FileState.WAITING, FileState.RETRY)
        )
        unknown = ctx.journal.batches(states=(BatchState.UNKNOWN,))
        in_inbox = recorded_in(ctx.inbox.resolve())
        mine = [record for record in unfinished if in_inbox(record.path)]
        unknown_here = sum(
            1
            for batch in unknown
            if batch.target == ctx.target and in_inbox(ctx.journal.file(batch.file_id).path)
        )
    except (*ctx.journal.errors, OSError) as exc:  # a busy journal: measured again next time
        log.warning(
            "cannot read the journal for the metrics (%s); trying again",
            exc,
            extra=fields("journal_unreadable", inbox=ctx.metrics.name),
        )
        return False
    waiting = {
        status.value: sum(record.counts.get(status.value, 0) for record in mine)
        for status in (RowStatus.PENDING, RowStatus.NOT_SENT)
    }
    oldest = min((record.created_at for record in mine), default=now)
    ctx.metrics.backlog(
        unknown_batches=unknown_here, rows_waiting=waiting, oldest_waiting_s=max(0.0, now - oldest)
    )
    return True


def process_files(paths: list[Path], ctx: Context) -> RunReport:
    """Process files ``ctx.concurrent_files`` at a time; one file's failure never stops the
    others.

    A stop (``ctx.stop``, which ``filedrop run`` sets on SIGTERM) ends it early but whole: no
    new batch is claimed and no new file begun, the POSTs on their way are answered and
    recorded, and each file is left resumable for the next run (``_polls_end_at_stop``)."""
    with ThreadPoolExecutor(
        max_workers=ctx.concurrent_files, thread_name_prefix="filedrop-file"
    ) as pool:
        reports = list(pool.map(lambda path: process_guarded(path, ctx), paths))
        # A file whose rows waited for another file's batch that has ended since, within this
        # pass (the same invoices in a CSV and a workbook, say), is taken once more now: its
        # rows are told what became of their invoices. Left as they were, they said the batch
        # had not ended, and the run exited 3 for invoices that had their case.
        again = _settled_since(reports, ctx)
        if again:
            retaken = pool.map(lambda report: _taken_again(report, ctx), again)
            by_path = {report.path: report for report in retaken}
            reports = [by_path.get(report.path, report) for report in reports]
    return RunReport(reports)


def _settled_since(reports: list[FileReport], ctx: Context) -> list[FileReport]:
    """The reports of files whose rows wait for other files' batches that have all ended now.

    None (an empty list) while stopping. A file with a setback of its own (a new version saved
    over it, say) stays as it is: it is the next run's. A batch still under way, or UNKNOWN (one
    an earlier run left, say), keeps its file as it is: read again, it would say the same. When
    Amili was unavailable or refused the setup in this pass, a batch that ended unsent keeps it
    too: the file would send those invoices itself, and fare the same."""
    waiting = [report for report in reports if report.awaited and report.setback is None]
    if not waiting or ctx.stop.is_set():
        return []
    try:
        unended = {
            batch.id: batch.state
            for batch in ctx.journal.batches(
                states=(*UNFINISHED_BATCH_STATES, BatchState.UNKNOWN, BatchState.REJECTED)
            )
        }
    except (*ctx.journal.errors, OSError):
        return []  # the next run takes them, as ever
    troubled = {Setback.UNAVAILABLE, Setback.SETUP} & {report.setback for report in reports}
    blocking = (
        set(unended)
        if troubled
        else {batch for batch, state in unended.items() if state is not BatchState.REJECTED}
    )
    return [report for report in waiting if not report.awaited & blocking]


def _taken_again(report: FileReport, ctx: Context) -> FileReport:
    """``process_guarded`` of the file again; its first report stands if this one did nothing
    (stopped before it began, or left resumable): that report counted its rows."""
    again = process_guarded(report.path, ctx)
    return again if again.counts else report


@contextmanager
def _polls_end_at_stop(ctx: Context) -> Iterator[None]:
    """While in it, a stop resolves every poll at once: the batches stay QUEUED, and the next
    run polls them, rather than this one waiting out the poll timeout past its grace period."""
    leaving = threading.Event()

    def watch_for_stop() -> None:
        # Waiting on ``leaving``, so the run's end is not held up by the rest of a wait: it was,
        # by 0.1 s on average, when this waited on the stop instead.
        while not leaving.wait(_STOP_CHECK_S):
            if ctx.stop.is_set():
                log.info(
                    "stopping: no new batch is sent; the POSTs on their way are answered and "
                    "recorded, and the rest is left for the next run",
                    extra=fields("stopping", inbox=ctx.metrics.name),
                )
                ctx.poller.close()
                return

    watcher = threading.Thread(target=watch_for_stop, name="filedrop-stop", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        leaving.set()
        watcher.join()


#: How often a run looks whether it was told to stop.
_STOP_CHECK_S = 0.2


def _unmounted_share(ctx: Context) -> bool:
    """Whether the inbox's share is not mounted now; said each time it goes."""
    missing = ctx.share.missing()
    if missing is None:
        return False
    if missing.new:
        log.warning(
            "%s: %s is not mounted, though %s; files missing from the inbox are not taken for "
            "deleted until it is back",
            printable(str(ctx.inbox)),
            printable(str(missing.point)),
            printable(missing.why),  # it may name a unit file
            extra=fields("share_unmounted", inbox=ctx.metrics.name, mount_point=str(missing.point)),
        )
    return True


def settle_leftovers(ctx: Context, *, timeout_s: float | None = None) -> list[FileReport]:
    """Learn the fate of batches whose file is gone or was replaced, polling each for at most
    ``timeout_s`` (default: the poll timeout); then give such a file of this inbox, once none
    of its batches is pending, the outcome it never got (``close_gone_file``).

    Processing a file again resumes its batches, but a file that was moved away or re-exported
    with other content is never processed again under that hash. Its batches are recovered here
    the same way (``resume_batches``), so DUPLICATE rows elsewhere and ``filedrop status`` tell
    the truth. A file left claimed by a process that died, or left to retry, and then taken
    away, would otherwise stay so in the journal for good: unfinished in ``status`` and the
    backlog's metrics, and what was sent from it in no outcome. Returns the reports of the
    outcomes so written, for the run's summary and exit code (UNKNOWN rows in one need a person).
    """
    written: list[FileReport] = []
    now = ctx.clock()
    in_inbox = recorded_in(ctx.inbox.resolve())
    _unmounted_share(ctx)  # a look each time: the share seen mounted, or said gone, as it goes
    unsettled = ctx.journal.unfinished_files(target=ctx.target)
    left = ctx.journal.files_in_states(
        target=ctx.target, states=(FileState.CLAIMED, FileState.WAITING, FileState.RETRY)
    )
    polled_ids = {record.id for record in unsettled}
    for record in [*unsettled, *(r for r in left if r.id not in polled_ids)]:
        if record.state is FileState.CLAIMED and owner_alive(
            record.owner, heartbeat=record.heartbeat, now=now, stale_s=ctx.claim_stale_s
        ):
            continue  # its owner is at work on it
        path = Path(record.path)
        if record.id not in polled_ids and not in_inbox(path):
            continue  # another inbox's, maybe on another machine sharing the journal
        try:
            still_there = content_hash(path) == record.sha256
        except NOT_THERE:
            still_there = False
        except OSError:
            # Not to be read now (a permission changed, a share's hiccup): not gone, and not
            # closed as such; it is looked at again next time, and processed once it reads.
            continue
        if still_there:
            # Processing the file resumes it, with its outcome rewritten; that includes a file
            # whose owner is gone (the claim passes to whoever takes it). Polling it here as
            # well could race that new owner, and mark a batch it is posting right now UNKNOWN.
            continue
        pending = 0
        if record.id in polled_ids:
            polls = resume_batches(ctx, record.id, name=record.name, timeout_s=timeout_s)
            polled = len(polls)
            pending = record_polls(ctx, polls, file_id=record.id, name=record.name)
            log.info(
                "%s (replaced or moved): %d earlier batches settled, %d still QUEUED",
                printable(record.name), polled - pending, pending,
                extra=fields("file_settled", inbox=ctx.metrics.name, file=record.name),
            )  # fmt: skip
        # Only where its folder is still there, on its share: an inbox on a share that is not
        # mounted now has every file "gone". Looked at file by file, as settling one file can
        # poll for minutes.
        if not pending and in_inbox(path) and path.parent.is_dir() and not _unmounted_share(ctx):
            report = close_gone_file(
                record, ctx.journal, inbox=ctx.metrics.name, say_once=ctx.say_once
            )
            if report is not None:
                written.append(report)
    return written
