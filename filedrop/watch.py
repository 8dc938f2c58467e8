"""``filedrop watch``: process the backlog, then every file that lands, until told to stop.

Events are hints; the folder is the truth. The watchdog handler only queues paths (an
exception inside a handler kills its observer thread for good, so it catches everything), a rescan
every ``rescan_s`` finds whatever an observer missed (Windows buffer overflows, remounts, inotify
limits), and a dead observer is replaced. A file is taken only when the stability tracker says it
is whole, and only once: the journal's claim decides, whatever duplicate events arrive. A file
another process holds is looked at again, never counted as done, and at each rescan the journal
names the files of this inbox that another process left unfinished, so the daemon finishes them.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from filedrop.api.client import ApiUnavailable
from filedrop.errors import FiledropError
from filedrop.inbox import (
    LEFT_FOR_A_PERSON,
    Readiness,
    Snapshot,
    StabilityTracker,
    ignore_reason,
    is_outcome_file,
    recorded_in,
    scan,
    snapshot,
)
from filedrop.journal import owner_alive
from filedrop.logs import fields, plural, printable
from filedrop.metrics import Metrics, MetricsServer
from filedrop.outcome import is_own_temp
from filedrop.pipeline import Context, FileReport, Setback
from filedrop.runner import (
    about_inbox,
    clear_stray_temps,
    inbox_metrics,
    inboxes_sharing,
    measure_backlog,
    open_context,
    process_guarded,
    settle_leftovers,
)
from filedrop.settings import DEFAULT_INBOX_NAME, Settings, in_archive_of
from filedrop.states import FileState, resolve_command

log = logging.getLogger("filedrop.watch")


#: How many heartbeats may be missed before ``filedrop status --health`` calls the daemon dead.
MISSED_HEARTBEATS = 6


def heartbeat_stale_s(heartbeat_s: float) -> float:
    """How old the last heartbeat may be while the daemon still counts as alive."""
    return MISSED_HEARTBEATS * heartbeat_s


@dataclass(frozen=True, kw_only=True)
class WatchOptions:
    """How the daemon looks at the inbox; all times in seconds. Built from ``Settings`` by
    ``from_settings`` (the stability window and file concurrency are the ``Context``'s)."""

    rescan_s: float
    polling: bool
    """Use watchdog's polling observer (SMB/CIFS/NFS/SSHFS, Docker Desktop bind mounts)."""
    observer_poll_s: float
    """How often the polling observer lists the folder (only with ``polling``)."""
    heartbeat_s: float
    retry_initial_s: float
    """First wait before a file whose batches were QUEUED, or that failed, is taken again."""
    retry_max_s: float
    shutdown_s: float
    """At a stop, how long in-flight files get to finish or leave themselves resumable. Below the
    10 s a container runtime waits between SIGTERM and SIGKILL, with room for the exit itself."""
    tick_s: float = 0.25
    """How often the loop wakes to check stability when no event arrives (not a setting: the
    loop also wakes at once on every event)."""

    @classmethod
    def from_settings(cls, settings: Settings, *, tick_s: float = 0.25) -> WatchOptions:
        return cls(
            rescan_s=settings.rescan_s,
            polling=settings.polling,
            observer_poll_s=settings.observer_poll_s,
            heartbeat_s=settings.heartbeat_s,
            retry_initial_s=settings.retry_initial_s,
            retry_max_s=settings.retry_max_s,
            shutdown_s=settings.shutdown_s,
            tick_s=tick_s,
        )


def watch_through_outages(
    settings: Settings,
    *,
    stop: threading.Event,
    pause: Callable[[float], bool] | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], object] | None = None,
    on_report: Callable[[FileReport], None] | None = None,
) -> None:
    """``filedrop watch``: watch every inbox until ``stop`` is set, outliving API outages.

    When Amili cannot be reached at start, wait ``retry_initial_s``, doubling up to
    ``retry_max_s``, and try again, never giving up: a daemon outlives an outage. With one inbox,
    refused credentials (``AuthError``) and bad settings are raised, since waiting cannot fix
    them. When the config lists inboxes, each is watched in a thread of its own with its own
    context and token, and whatever stops one inbox (refused credentials, a missing folder, a
    broken mapping) is logged under its name and retried on the same backoff, so that it never
    stops or slows the others, and a fixed secret or a created folder is picked up.
    ``pause(seconds)`` waits and returns True if the daemon was told to stop meanwhile (by
    default ``stop.wait``); ``clock`` and ``sleep`` are the client's and the journal's;
    ``on_report`` gets each file's report (on its inbox's thread).

    With ``metrics_port`` set, ``/metrics``, ``/healthz`` and ``/readyz`` are served for every
    inbox from the start (an outage at start is alive but not ready) until the daemon returns.
    """
    metrics = Metrics()
    server = (
        MetricsServer(
            metrics,
            host=settings.metrics_host,
            port=settings.metrics_port,
            setting=settings.where("metrics_port"),
        )
        if settings.metrics_port is not None
        else None
    )
    try:
        _watch_every_inbox(
            settings,
            partial(
                _watch_one,
                stop=stop,
                pause=pause or stop.wait,
                clock=clock,
                sleep=sleep,
                on_report=on_report,
                metrics=metrics,
            ),
            stop=stop,
        )
    finally:
        if server is not None:
            server.close()


def _watch_every_inbox(
    settings: Settings, watch: Callable[..., None], *, stop: threading.Event
) -> None:
    """One inbox on this thread; the inboxes of a config list each on a thread of its own."""
    if not settings.inboxes:
        watch(settings, isolated=False)
        return
    # Daemon threads: at a stop each inbox gets its shutdown_s to leave its work resumable, and
    # one still waiting on an unreachable Amili must not hold the process past that.
    threads = [
        threading.Thread(
            target=watch,
            args=(inbox,),
            kwargs={
                "isolated": True,
                "sharing": inboxes_sharing(inbox, settings.inboxes),
                "others": _other_folders(inbox, settings.inboxes),
            },
            name=f"filedrop-inbox-{inbox.name}",
            daemon=True,
        )
        for inbox in settings.inboxes
    ]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads) and not stop.wait(timeout=1.0):
        pass
    deadline = time.monotonic() + max(inbox.shutdown_s for inbox in settings.inboxes) + 1.0
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))


def _watch_one(
    settings: Settings,
    *,
    isolated: bool,
    stop: threading.Event,
    pause: Callable[[float], bool],
    clock: Callable[[], float],
    sleep: Callable[[float], object] | None,
    on_report: Callable[[FileReport], None] | None,
    metrics: Metrics,
    sharing: tuple[Path, ...] = (),
    others: tuple[tuple[str, Path], ...] = (),
) -> None:
    """Watch one inbox until ``stop``; an outage (and, ``isolated``, any failure) is waited out.
    ``sharing``: the config's other inboxes with its journal and target; ``others``: every
    other inbox's name and real folder (``watch_inbox``)."""
    options = WatchOptions.from_settings(settings)
    delay_s = settings.retry_initial_s
    prefix = f"inbox {settings.name}: " if isolated else ""
    while True:
        # Each context stops with the daemon: its waits (a retry's, the token request's at
        # start) end at the daemon's stop, and then its own stop is set, so nothing is tried
        # again. With the context's own alone, a daemon told to stop while Amili was down at
        # start went through every retry of the token request first, 14 s, past the 10 s a
        # container is given. Not the daemon's event itself: an inbox whose watch ends sets
        # its context's, which must not stop the config's other inboxes.
        own_stop = threading.Event()

        def waits(seconds: float, own_stop: threading.Event = own_stop) -> bool:
            if stop.wait(seconds):
                own_stop.set()
                return True
            return False

        try:
            with open_context(
                settings,
                stop=own_stop,
                clock=clock,
                sleep=sleep or waits,
                metrics=metrics,
                sharing=sharing,
            ) as ctx:
                ctx.metrics.start_failed(None)
                watch_inbox(ctx, options=options, stop=stop, on_report=on_report, others=others)
            return
        except ApiUnavailable as exc:
            problem = str(exc)
        except FiledropError as exc:
            if not isolated:
                raise
            problem = str(exc)
        except Exception as exc:  # one inbox's bug must not end the daemon's other inboxes
            if not isolated:
                raise
            log.debug("%sunexpected error", prefix, exc_info=True)
            problem = f"unexpected error ({exc!r})"
        problem = printable(problem).rstrip(".")
        if stop.is_set():  # not tried again: the daemon stops
            log.error("%s; stopping", about_inbox(settings, problem) if isolated else problem)
            return
        waiting = inbox_metrics(settings, metrics)
        waiting.start_failed(f"{problem}; trying again in {delay_s:.0f} s")
        log.error(
            "%s; trying again in %.0f s",
            about_inbox(settings, problem) if isolated else problem,
            delay_s,
        )
        # Alive, not ready: the loop beats again when the wait is over.
        waiting.loop_beat(next_within_s=delay_s + heartbeat_stale_s(options.heartbeat_s))
        if pause(delay_s):
            return
        delay_s = min(delay_s * 2, settings.retry_max_s)


class _Hints(FileSystemEventHandler):
    """Queues the paths events name; never raises (that would kill the observer thread)."""

    def __init__(self, inbox: Path, wake: Callable[[Path], None]) -> None:
        self._inbox = inbox
        self._wake = wake
        self.inbox_removed = False  # the watched folder itself was: this observer sees no more

    def on_any_event(self, event: FileSystemEvent) -> None:
        try:
            if event.is_directory:
                raw = event.src_path
                folder = Path(raw.decode() if isinstance(raw, bytes) else raw)
                if event.event_type == "deleted" and folder == self._inbox:
                    self.inbox_removed = True
                return
            for raw in (event.src_path, getattr(event, "dest_path", "")):
                if not raw:
                    continue
                path = Path(raw.decode() if isinstance(raw, bytes) else raw)
                if path.parent == self._inbox:
                    # Rebuilt from the inbox and the name: the same key as the rescan's path.
                    self._wake(self._inbox / path.name)
        except Exception:  # a handler that raises kills its observer for good
            log.exception("error while handling a file event; the rescan will catch up")


@dataclass
class _State:
    """What the daemon remembers between ticks (only the loop thread touches it)."""

    watching: set[Path] = field(default_factory=set)
    settled: dict[Path, Snapshot] = field(default_factory=dict)
    ignored_logged: set[str] = field(default_factory=set)
    in_progress: dict[Path, threading.Thread] = field(default_factory=dict)
    started_with: dict[Path, Snapshot] = field(default_factory=dict)  # as processing began
    waiting: set[Path] = field(default_factory=set)  # files whose batches were still queued
    retry_at: dict[Path, tuple[float, float]] = field(default_factory=dict)  # due, delay
    elsewhere: set[Path] = field(default_factory=set)  # last skipped: another process held it
    # The journal record (id, updated_at) last taken up for each path: one that nobody has
    # touched since is not taken up again at every rescan.
    taken_up: dict[Path, tuple[int, float]] = field(default_factory=dict)
    rescan_failing: bool = False
    lent: str | None = None  # why the inbox's folder is not its own now (``_lent_folder``)
    inbox_name: str = ""  # the inbox's label in log fields and metrics


def watch_inbox(
    ctx: Context,
    *,
    options: WatchOptions,
    stop: threading.Event,
    clock: Callable[[], float] = time.monotonic,
    on_report: Callable[[FileReport], None] | None = None,
    others: tuple[tuple[str, Path], ...] = (),
) -> None:
    """Run until ``stop`` is set; then stop taking files and return once in-flight work is
    finished or left resumable (``ctx.stop`` tells the pipeline to send no new batch).

    ``on_report`` is called on this thread with each file's report as it is collected. The
    context's poller is closed on return, so ``ctx`` serves one watch only. ``others``: the
    config's other inboxes (name, real folder); while this inbox's folder leads to one of
    theirs, no file is taken (``_lent_folder``).
    """
    # Absolute once, here: with a relative FILEDROP_INBOX the observer reports relative paths,
    # which never matched the inbox, so every event was dropped and only rescans found files.
    inbox = ctx.inbox.resolve()
    state = _State(inbox_name=ctx.metrics.name)
    tracker = StabilityTracker(window_s=ctx.stability_s, clock=clock)
    hints = _HintQueue()
    reports: list[FileReport] = []
    observer = _Supervisor(inbox, _Hints(inbox, hints.put), options, name=state.inbox_name)
    next_rescan = 0.0
    next_beat = 0.0
    settling: threading.Thread | None = None
    log.info(
        "watching %s (%s)%s",
        inbox,
        "polling" if options.polling else "events",
        f" for inbox {ctx.inbox_name}" if ctx.inbox_name != DEFAULT_INBOX_NAME else "",
    )
    clear_stray_temps(ctx)
    try:
        while not stop.is_set():
            now = clock()
            # Alive while each turn comes within the heartbeats that status --health allows.
            ctx.metrics.loop_beat(next_within_s=heartbeat_stale_s(options.heartbeat_s))
            if observer.keep_running(now):
                next_rescan = now  # what happened while no observer ran is in the folder
            if now >= next_beat:
                _beat(ctx)
                next_beat = now + options.heartbeat_s
            if _lent_folder(inbox, others, state):
                # Another inbox's files: theirs to send, to their organisation.
                hints.take()
                state.watching.clear()
                ctx.metrics.inbox_listed(state.lent)
            elif now >= next_rescan:
                listed = _rescan(inbox, state, tracker)
                ctx.metrics.inbox_listed(listed)
                _take_up_left_files(ctx, inbox, state)
                if listed is None and measure_backlog(ctx):
                    ctx.metrics.cycle_succeeded()
                next_rescan = now + options.rescan_s
                settling = _settle_in_background(ctx, settling)
            for path in hints.take():
                _consider(path, state)
            _collect(state, reports, on_report, options, clock)
            _start_ready(
                state,
                tracker,
                ctx=ctx,
                options=options,
                clock=clock,
                reports=reports,
                wake=hints.wake,
            )
            hints.wake.wait(timeout=options.tick_s)
            hints.wake.clear()
    finally:
        _say_stopping(ctx, state)
        ctx.stop.set()
        ctx.poller.close()  # open polls resolve to "still pending" at once
        observer.stop()
        deadline = time.monotonic() + options.shutdown_s
        _wait_for_files(ctx, state, deadline=deadline)
        _collect(state, reports, on_report, options, clock)
        observer.join(timeout_s=max(0.1, deadline - time.monotonic()))
        _forget(ctx)
        ctx.metrics.loop_stopped()


def _say_stopping(ctx: Context, state: _State) -> None:
    """Say that the loop stops, in the log and on ``/readyz`` (not ready while the last files
    finish: it answered "ready" until its port closed, taking no file)."""
    log.info(
        "stopping: no new files are taken; in-flight work finishes or stays resumable",
        extra=fields("watch_stopping", inbox=state.inbox_name),
    )
    ctx.metrics.loop_stopping()


class _HintQueue:
    """Paths named by events, handed from the observer thread to the loop; ``wake`` ends the
    loop's wait early (an event, or a worker that finished)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._paths: list[Path] = []
        self.wake = threading.Event()

    def put(self, path: Path) -> None:
        with self._lock:
            self._paths.append(path)
        self.wake.set()

    def take(self) -> list[Path]:
        """Every queued path once (modified fires 2-3 times per write), in arrival order."""
        with self._lock:
            paths, self._paths = self._paths, []
        return list(dict.fromkeys(paths))


class _Supervisor:
    """Keeps one folder observer running: a dead one is replaced, a failed start retried."""

    def __init__(
        self, inbox: Path, handler: _Hints, options: WatchOptions, *, name: str = ""
    ) -> None:
        self._inbox = inbox
        self._name = name  # the inbox's label, for the log
        self._handler = handler
        self._options = options
        self._observer: BaseObserver | None = None
        self._watched: tuple[int, int] | None = None  # (device, inode) of the folder watched
        self._next_try = float("-inf")

    def keep_running(self, now: float) -> bool:
        """Start an observer if none runs (at most once per rescan interval); True if started.

        One whose folder was removed or moved away (a share remounted, a folder deleted or
        renamed and made again) is replaced as soon as a folder is there again: it would see
        nothing more, and files would wait for the next rescan. Its own event tells a removal
        (the new folder often gets the old one's inode number); the folder's identity tells a
        move."""
        if self._observer is not None and not self._observer.is_alive():
            log.warning(
                "the folder observer stopped; starting a new one",
                extra=fields("observer_restarted", inbox=self._name),
            )
            self._replace(now)
        elif self._observer is not None and self._inbox_replaced():
            log.warning(
                "the inbox %s was removed or moved, and made again; watching the new one",
                self._inbox,
                extra=fields("inbox_replaced", inbox=self._name),
            )
            self._replace(now)
        if self._observer is not None or now < self._next_try:
            return False
        self._handler.inbox_removed = False
        self._watched = _folder_identity(self._inbox)
        self._observer = _start_observer(self._inbox, self._handler, options=self._options)
        self._next_try = now + self._options.rescan_s
        return self._observer is not None

    def _inbox_replaced(self) -> bool:
        now = _folder_identity(self._inbox)
        return now is not None and (self._handler.inbox_removed or now != self._watched)

    def _replace(self, now: float) -> None:
        if self._observer is not None:
            _dispose(self._observer)
        self._observer, self._next_try = None, now

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()

    def join(self, *, timeout_s: float) -> None:
        if self._observer is not None and self._observer.is_alive():
            self._observer.join(timeout=timeout_s)


def _start_observer(inbox: Path, handler: _Hints, *, options: WatchOptions) -> BaseObserver | None:
    """A running observer on ``inbox``, or None (then rescans alone find files until a retry).

    A native observer that cannot start (inotify watch or instance limits, a filesystem without
    change notification) falls back to polling rather than ending the daemon.
    """
    kinds = ["polling"] if options.polling else ["events", "polling"]
    for kind in kinds:
        observer: BaseObserver = (
            PollingObserver(timeout=options.observer_poll_s) if kind == "polling" else Observer()
        )
        try:
            observer.schedule(handler, str(inbox), recursive=False)
            observer.daemon = True
            observer.start()
        except OSError as exc:
            _dispose(observer)
            log.warning("cannot watch %s with %s (%s)", inbox, kind, exc)
            continue
        if kind == "polling" and not options.polling:
            log.warning("watching %s by polling instead; new files may take longer to show", inbox)
        return observer
    log.warning("no folder observer for %s; relying on rescans every %g s", inbox, options.rescan_s)
    return None


def _folder_identity(folder: Path) -> tuple[int, int] | None:
    """Which folder is at ``folder`` (device, inode); None while there is none."""
    try:
        found = folder.stat()
    except OSError:
        return None
    return found.st_dev, found.st_ino


def _dispose(observer: BaseObserver) -> None:
    """Stop an observer and its emitters (a dead dispatcher leaves its inotify watch running)."""
    try:
        observer.stop()
        if observer.is_alive():
            observer.join(timeout=1.0)
    except Exception:  # best effort: a broken observer must not take the daemon down with it
        log.debug("while stopping an observer", exc_info=True)


def _beat(ctx: Context) -> None:
    # Its write puts a deleted journal back first, as every write does.
    ctx.metrics.journal_writing()
    try:
        ctx.journal.beat(ctx.owner)
    except (*ctx.journal.errors, OSError) as exc:  # a busy journal is no reason to die
        log.warning(
            "cannot write the heartbeat to the journal (%s); trying again",
            exc,
            extra=fields("journal_unwritable", inbox=ctx.metrics.name),
        )
        ctx.metrics.journal_written(f"the journal cannot be written ({exc})")
    else:
        ctx.metrics.journal_written(None)


def _wait_for_files(ctx: Context, state: _State, *, deadline: float) -> None:
    """Let the files in progress finish until ``deadline`` (monotonic), then say the POSTs
    left without an answer."""
    for thread in list(state.in_progress.values()):
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    if any(thread.is_alive() for thread in state.in_progress.values()):
        _say_posts_left(ctx)


def _say_posts_left(ctx: Context) -> None:
    """Say each POST of this daemon's still without its answer as it leaves, and what to do:
    the next start makes its batch UNKNOWN, and only that start or 'filedrop status' said so
    (found by a hostile review: the last line was 'stopping')."""
    try:
        held = ctx.journal.files_in_states(target=ctx.target, states=(FileState.CLAIMED,))
        left = [
            (record, batch)
            for record in held
            if record.owner == ctx.owner
            for batch in ctx.journal.postings_of(record.id)
        ]
    except (*ctx.journal.errors, OSError):
        return  # the journal says it at the next start
    for record, batch in left:
        log.warning(
            "%s: batch #%d (%s) was still waiting for its answer as filedrop stopped, so "
            "whether Amili received it cannot be told; the next start makes it UNKNOWN: check "
            "with Amili, then run '%s --sent' or '--not-sent'",
            printable(record.name),
            batch.id,
            plural(batch.invoice_count, "invoice"),
            resolve_command(batch.id),
            extra=fields(
                "batch_unanswered", inbox=ctx.metrics.name, file=record.name, batch=batch.id
            ),
        )


def _forget(ctx: Context) -> None:
    """A clean stop takes this daemon off ``status``'s list of replicas."""
    try:
        ctx.journal.forget_replica(ctx.owner)
    except (*ctx.journal.errors, OSError) as exc:
        log.warning(
            "cannot remove this daemon from the journal's replicas (%s)",
            exc,
            extra=fields("journal_unwritable", inbox=ctx.metrics.name),
        )


def _settle_in_background(ctx: Context, running: threading.Thread | None) -> threading.Thread:
    """Poll batches of replaced or moved files (``settle_leftovers``) without holding the loop."""
    if running is not None and running.is_alive():
        return running

    def settle() -> None:
        try:
            # Renewed before it runs out even while no file comes, so that /readyz reports
            # refused credentials or an unreachable Amili without waiting for a drop.
            ctx.client.authenticate()
            settle_leftovers(ctx)
        except FiledropError as exc:
            log.warning(
                "%s; trying again at the next rescan",
                str(exc).rstrip("."),
                extra=fields("settle_failed", inbox=ctx.metrics.name),
            )
        except (*ctx.journal.errors, OSError) as exc:  # a busy journal, as _beat's: one line
            log.warning(
                "cannot settle earlier batches: the journal failed (%s); trying again at the "
                "next rescan",
                printable(str(exc)),
                extra=fields("settle_failed", inbox=ctx.metrics.name),
            )
        except Exception:  # the daemon never dies on one bad batch; the next rescan tries again
            log.exception(
                "settling earlier batches failed; trying again at the next rescan",
                extra=fields("settle_failed", inbox=ctx.metrics.name),
            )

    thread = threading.Thread(target=settle, name="filedrop-settle", daemon=True)
    thread.start()
    return thread


def _other_folders(inbox: Settings, inboxes: tuple[Settings, ...]) -> tuple[tuple[str, Path], ...]:
    """The other inboxes of the config, each by name and real folder, as the config check
    found them distinct at start (``settings._own_folder``)."""
    return tuple(
        (other.name, Path(os.path.realpath(other.inbox)))
        for other in inboxes
        if other is not inbox and other.inbox is not None
    )


def _lent_folder(inbox: Path, others: tuple[tuple[str, Path], ...], state: _State) -> bool:
    """Whether this inbox's folder leads now to another inbox's folder (or its archive): replaced
    by a symbolic link while the daemon ran, it took every file of that inbox and sent it
    again, to this inbox's organisation, writing its outcomes over theirs. The config check at
    start refuses such a folder (``settings._own_folder``, by the same two tests); here it is
    looked at before each turn. Said once, as an
    error, and once again when the folder is its own again; meanwhile readiness names it."""
    real = Path(os.path.realpath(inbox))
    lent = next(
        (
            f"the inbox folder {printable(str(inbox))} leads now to {printable(str(real))}, "
            f'inbox "{printable(name)}"\'s folder; no file of it is taken until it is a folder '
            "of this inbox's own again (it was replaced by a link while filedrop ran?)"
            for name, folder in others
            if real == folder or in_archive_of(real, folder)
        ),
        None,
    )
    if lent != state.lent:
        if lent is not None:
            log.error("%s", lent, extra=fields("inbox_lent", inbox=state.inbox_name))
        else:
            log.info(
                "the inbox folder %s is its own again; taking its files",
                inbox,
                extra=fields("inbox_own_again", inbox=state.inbox_name),
            )
        state.lent = lent
    return lent is not None


def _rescan(inbox: Path, state: _State, tracker: StabilityTracker) -> str | None:
    """List the inbox and take note of what is there; returns why it could not be listed."""
    try:
        candidates, ignored = scan(inbox)
    except OSError as exc:
        # A share being remounted, or the folder briefly gone: keep running, try again next time
        # (the readiness probe reports an unreadable inbox meanwhile).
        if not state.rescan_failing:
            log.warning(
                "cannot list the inbox %s (%s); trying again",
                inbox,
                exc,
                extra=fields("inbox_unlistable", inbox=state.inbox_name),
            )
        state.rescan_failing = True
        return f"the inbox {printable(str(inbox))} cannot be listed ({exc.strerror or exc})"
    if state.rescan_failing:
        log.info(
            "the inbox %s can be listed again",
            inbox,
            extra=fields("inbox_listable", inbox=state.inbox_name),
        )
        state.rescan_failing = False
    for path, reason in ignored:
        _log_ignored(path, reason, state)
    for path in candidates:
        _consider(path, state)
    # Forget what is gone, so a daemon that runs for months does not grow without bound (and a
    # lock file that comes back later is logged again).
    present = {path.name for path in candidates} | {path.name for path, _ in ignored}
    state.ignored_logged &= present
    for path in [p for p in state.settled if p.name not in present]:
        del state.settled[path]
        tracker.forget(path)
    for path in [p for p in state.retry_at if p.name not in present]:
        del state.retry_at[path]
    state.elsewhere = {path for path in state.elsewhere if path.name in present}
    for path in [p for p in state.taken_up if p.name not in present]:
        del state.taken_up[path]
    return None


def _take_up_left_files(ctx: Context, inbox: Path, state: _State) -> None:
    """Watch the files of this inbox that the journal says are unfinished and nobody works on.

    Another process (a ``run`` beside the daemon, an earlier daemon) may have left a file
    ``waiting`` on its batches or ``retry``, or died holding its claim, after this daemon met the
    file and found it taken, or without the daemon meeting it at all. Taking it here is safe:
    the claim decides who works on it. A file this daemon left itself keeps its retry backoff.
    """
    try:
        records = ctx.journal.files_in_states(
            target=ctx.target, states=(FileState.WAITING, FileState.RETRY, FileState.CLAIMED)
        )
    except (*ctx.journal.errors, OSError) as exc:  # a busy journal is no reason to die
        log.warning(
            "cannot read unfinished files from the journal (%s); trying again",
            exc,
            extra=fields("journal_unreadable", inbox=ctx.metrics.name),
        )
        return
    now = ctx.clock()
    in_inbox = recorded_in(inbox)
    for record in records:
        path = inbox / record.name
        mark = (record.id, record.updated_at)
        if path in state.in_progress or state.taken_up.get(path) == mark:
            continue
        if record.state is FileState.CLAIMED and owner_alive(
            record.owner, heartbeat=record.heartbeat, now=now, stale_s=ctx.claim_stale_s
        ):
            continue  # its owner is at work on it (this daemon's own failed files too)
        recorded = Path(record.path)
        if recorded.name != record.name or snapshot(path) is None:
            continue  # gone: settle_leftovers learns its batches' fate
        if not in_inbox(recorded):
            continue  # another inbox sharing this journal
        state.taken_up[path] = mark
        if path in state.retry_at and path not in state.elsewhere:
            continue  # left by this daemon: its backoff decides when
        state.retry_at.pop(path, None)
        state.elsewhere.discard(path)
        state.settled.pop(path, None)
        if record.state is FileState.WAITING:
            state.waiting.add(path)
        why = (
            "claimed by a filedrop process that is gone"
            if record.state is FileState.CLAIMED
            else f"left {record.state} by another filedrop process"
        )
        log.info(
            "%s: %s; taking it up",
            printable(path.name),
            why,
            extra=fields("file_taken_up", inbox=state.inbox_name, file=path.name),
        )
        state.watching.add(path)


def _log_ignored(path: Path, reason: str, state: _State) -> None:
    if path.name in state.ignored_logged:
        return
    state.ignored_logged.add(path.name)
    # filedrop's own outcomes and their temporary files: ignored like any other, but at DEBUG
    # only, so that every processed file does not add a line of noise.
    extra = fields("file_ignored", inbox=state.inbox_name, file=path.name, reason=reason)
    if is_outcome_file(path) or is_own_temp(path.name):
        log.debug("%s: ignored (%s)", printable(path.name), reason, extra=extra)
    elif reason in LEFT_FOR_A_PERSON:
        log.warning("%s: ignored (%s)", printable(path.name), reason, extra=extra)
    else:
        log.info("%s: ignored (%s)", printable(path.name), reason, extra=extra)


def _consider(path: Path, state: _State) -> None:
    """Start watching ``path`` unless it is ignored or settled with these very bytes."""
    reason = ignore_reason(path)
    if reason is not None:
        if os.path.lexists(path):  # a dangling link is logged too
            _log_ignored(path, reason, state)
        return
    current = snapshot(path)
    if current is None:
        state.watching.discard(path)
        return
    if state.settled.get(path) == current:
        return
    if path not in state.watching:
        log.info(
            "%s: seen",
            printable(path.name),
            extra=fields("file_seen", inbox=state.inbox_name, file=path.name),
        )
        state.watching.add(path)


def _start_ready(
    state: _State,
    tracker: StabilityTracker,
    *,
    ctx: Context,
    options: WatchOptions,
    clock: Callable[[], float],
    reports: list[FileReport],
    wake: threading.Event,
) -> None:
    """Hand ready files to worker threads, oldest first, at most ``concurrent_files`` at once.

    Files taken again because their batches were still queued have a budget of their own: they
    may be polled for minutes, and must never keep new drops waiting.
    """
    now = clock()
    for path in sorted(state.watching, key=_age_key):
        resumed = sum(1 for busy in state.in_progress if busy in state.waiting)
        budget_used = resumed if path in state.waiting else len(state.in_progress) - resumed
        if budget_used >= ctx.concurrent_files:
            continue
        if path in state.in_progress or state.retry_at.get(path, (0.0, 0.0))[0] > now:
            continue
        if snapshot(path) is None:
            state.watching.discard(path)
            tracker.forget(path)
            continue
        if tracker.readiness(path) is Readiness.CHANGING:
            continue  # an empty file that stayed empty is taken too: it gets its ERROR once
        log.info(
            "%s: ready",
            printable(path.name),
            extra=fields("file_ready", inbox=state.inbox_name, file=path.name),
        )

        def work(path: Path = path) -> None:
            try:  # the daemon never dies on one bad file
                reports.append(process_guarded(path, ctx))
            finally:
                wake.set()  # collect it now, and start the next file, rather than at the next tick

        # Daemon threads: a POST hanging at shutdown must not hold the process past its
        # deadline; the journal leaves that batch UNKNOWN-safe either way.
        thread = threading.Thread(target=work, name=f"filedrop-{path.name}", daemon=True)
        state.in_progress[path] = thread
        started = snapshot(path)
        if started is not None:
            state.started_with[path] = started
        thread.start()


def _collect(
    state: _State,
    reports: list[FileReport],
    on_report: Callable[[FileReport], None] | None,
    options: WatchOptions,
    clock: Callable[[], float],
) -> None:
    """Settle finished files; schedule a capped-backoff retry for transient failures."""
    for path, thread in list(state.in_progress.items()):
        if not thread.is_alive():
            del state.in_progress[path]
    while reports:
        report = reports.pop(0)
        path = report.path
        _tell(on_report, report)
        # A report WAITING without counts is a file left resumable at a stop: nothing to redo.
        stopped = report.state is FileState.WAITING and not report.counts
        if stopped:
            continue
        if report.state is FileState.WAITING:
            state.waiting.add(path)
        else:
            state.waiting.discard(path)
        # Held by another live process, which may yet leave it waiting or die, or the same
        # export unfinished in another folder: looked at again every heartbeat (and at a rescan
        # once the journal shows it left), never settled.
        if report.held_by is not None:
            state.elsewhere.add(path)
            _look_again(report, state, due=clock() + options.heartbeat_s)
            continue
        state.elsewhere.discard(path)
        # Held back (a journal that does not know what was sent), or not to be opened (its
        # permissions): looked at again, as the operator's fix (the journal pointed at or
        # rebuilt, a mark deleted, a chmod) changes no byte of the file.
        held_back = (report.state is FileState.SKIPPED and report.setback is Setback.SETUP) or (
            report.state is FileState.ERROR and report.setback is Setback.FAULT
        )
        if report.state in (FileState.RETRY, FileState.WAITING) or held_back:
            _, delay = state.retry_at.get(path, (0.0, options.retry_initial_s / 2))
            delay = min(options.retry_max_s, delay * 2)
            state.retry_at[path] = (clock() + delay, delay)
            log.info(
                "%s: %s%s; trying again in %g s",
                printable(path.name),
                report.state,
                f" ({printable(report.message)})" if report.message else "",
                delay,
                extra=fields(
                    "file_retry_scheduled",
                    inbox=state.inbox_name,
                    file=path.name,
                    status=report.state,
                    delay_s=delay,
                ),
            )
            continue
        if report.state is FileState.SKIPPED:
            _log_skipped(report, state)
        _settle(path, state)


def _settle(path: Path, state: _State) -> None:
    """Stop watching a finished file, unless bytes were written while it was processed."""
    state.retry_at.pop(path, None)
    started, current = state.started_with.pop(path, None), snapshot(path)
    if current is None:
        state.watching.discard(path)
        return
    # Settled as it was when processing began: bytes written meanwhile (a re-export, an
    # upload that paused longer than the window) make it a new file to take.
    state.settled[path] = started or current
    if started is not None and current != started:
        log.info(
            "%s: changed while it was processed; taking it again",
            printable(path.name),
            extra=fields("file_changed", inbox=state.inbox_name, file=path.name),
        )
        return
    state.watching.discard(path)


def _tell(on_report: Callable[[FileReport], None] | None, report: FileReport) -> None:
    if on_report is not None:
        try:
            on_report(report)
        except Exception:  # a caller's callback must not end the daemon either
            log.exception("%s: error in the report callback", printable(report.path.name))


def _look_again(report: FileReport, state: _State, *, due: float) -> None:
    """Another replica works on this file, or another folder's copy of it is unfinished: look
    again at ``due`` (each heartbeat), to take it over once that replica's lease runs out (it
    died, or its host was lost), or to find it done."""
    if report.path not in state.retry_at:
        _log_skipped(report, state)
    state.retry_at[report.path] = (due, due)
    state.started_with.pop(report.path, None)


def _log_skipped(report: FileReport, state: _State) -> None:
    log.info(
        "%s: skipped (%s)",
        printable(report.path.name),
        report.message,
        extra=fields(
            "file_skipped",
            inbox=state.inbox_name,
            file=report.path.name,
            status=FileState.SKIPPED,
            reason=report.message,
        ),
    )


def _age_key(path: Path) -> tuple[float, str]:
    current = snapshot(path)
    return (current.mtime_ns if current else 0, path.name)
