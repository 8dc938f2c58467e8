"""``filedrop watch``: process the backlog, then every file that lands, until told to stop.

Events are hints; the folder is the truth. The watchdog handler only queues paths (an exception
inside a handler kills its observer thread for good, so it catches everything), a rescan every
``rescan_s`` finds whatever an observer missed (Windows buffer overflows, remounts, inotify
limits), and a dead observer is restarted. A file is taken only when the stability tracker says it
is whole, and only once: the journal's claim decides, whatever duplicate events arrive.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from filedrop.inbox import Snapshot, StabilityTracker, ignore_reason, scan, snapshot
from filedrop.pipeline import Context, FileReport, process_file

log = logging.getLogger("filedrop.watch")


@dataclass(kw_only=True)
class WatchOptions:
    """How the daemon looks at the inbox; all times in seconds."""

    stability_s: float = 5.0
    rescan_s: float = 30.0
    polling: bool = False
    concurrent_files: int = 2
    heartbeat_s: float = 10.0
    retry_initial_s: float = 10.0
    retry_max_s: float = 600.0
    tick_s: float = 0.25
    """How often the loop wakes to check stability when no event arrives."""


class _Hints(FileSystemEventHandler):
    """Queues the paths events name; never raises (that would kill the observer thread)."""

    def __init__(self, inbox: Path, wake: Callable[[Path], None]) -> None:
        self._inbox = inbox
        self._wake = wake

    def on_any_event(self, event: FileSystemEvent) -> None:
        try:
            if event.is_directory:
                return
            for raw in (event.src_path, getattr(event, "dest_path", "")):
                if not raw:
                    continue
                path = Path(raw.decode() if isinstance(raw, bytes) else raw)
                if path.parent == self._inbox:
                    self._wake(path)
        except Exception:  # a handler that raises kills its observer for good
            log.exception("error while handling a file event; the rescan will catch up")


@dataclass
class _State:
    """What the daemon remembers between ticks (only the loop thread touches it)."""

    watching: set[Path] = field(default_factory=set)
    settled: dict[Path, Snapshot] = field(default_factory=dict)
    ignored_logged: set[str] = field(default_factory=set)
    in_progress: dict[Path, threading.Thread] = field(default_factory=dict)
    retry_at: dict[Path, tuple[float, float]] = field(default_factory=dict)  # due, delay


def watch_inbox(
    inbox: Path,
    ctx: Context,
    *,
    options: WatchOptions,
    stop: threading.Event,
    clock: Callable[[], float] = time.monotonic,
    on_report: Callable[[FileReport], None] | None = None,
) -> None:
    """Run until ``stop`` is set; then stop taking files and return once in-flight work is
    finished or left resumable (``ctx.stop`` tells the pipeline to send no new batch)."""
    state = _State()
    tracker = StabilityTracker(window_s=options.stability_s, clock=clock)
    hints: list[Path] = []
    hints_lock = threading.Lock()
    wake = threading.Event()
    reports: list[FileReport] = []

    def hint(path: Path) -> None:
        with hints_lock:
            hints.append(path)
        wake.set()

    observer = _start_observer(inbox, _Hints(inbox.resolve(), hint), polling=options.polling)
    next_rescan = 0.0
    next_beat = 0.0
    log.info("watching %s (%s)", inbox, "polling" if options.polling else "events")
    try:
        while not stop.is_set():
            now = clock()
            if not observer.is_alive():
                log.warning("the folder observer stopped; starting a new one")
                observer = _start_observer(
                    inbox, _Hints(inbox.resolve(), hint), polling=options.polling
                )
                next_rescan = now
            if now >= next_beat:
                ctx.journal.beat(ctx.owner)
                next_beat = now + options.heartbeat_s
            if now >= next_rescan:
                _rescan(inbox, state)
                next_rescan = now + options.rescan_s
            with hints_lock:
                fresh, hints[:] = list(hints), []
            for path in fresh:
                _consider(path.parent / path.name, state)
            _collect(state, reports, on_report, options, clock)
            _start_ready(state, tracker, ctx=ctx, options=options, clock=clock, reports=reports)
            wake.wait(timeout=options.tick_s)
            wake.clear()
    finally:
        log.info("stopping: no new files are taken; in-flight work finishes or stays resumable")
        ctx.stop.set()
        ctx.poller.close()
        observer.stop()
        deadline = time.monotonic() + 8.0
        for thread in list(state.in_progress.values()):
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        _collect(state, reports, on_report, options, clock)
        observer.join(timeout=2.0)


def _start_observer(inbox: Path, handler: _Hints, *, polling: bool) -> BaseObserver:
    observer = PollingObserver(timeout=1.0) if polling else Observer()
    observer.schedule(handler, str(inbox), recursive=False)
    observer.daemon = True
    observer.start()
    return observer


def _rescan(inbox: Path, state: _State) -> None:
    candidates, ignored = scan(inbox)
    for path, reason in ignored:
        if path.name not in state.ignored_logged:
            state.ignored_logged.add(path.name)
            log.info("%s: ignored (%s)", path.name, reason)
    for path in candidates:
        _consider(path, state)


def _consider(path: Path, state: _State) -> None:
    """Start watching ``path`` unless it is ignored or settled with these very bytes."""
    reason = ignore_reason(path)
    if reason is not None:
        if path.exists() and path.name not in state.ignored_logged:
            state.ignored_logged.add(path.name)
            log.info("%s: ignored (%s)", path.name, reason)
        return
    current = snapshot(path)
    if current is None:
        state.watching.discard(path)
        return
    if state.settled.get(path) == current:
        return
    if path not in state.watching:
        log.info("%s: seen", path.name)
        state.watching.add(path)


def _start_ready(
    state: _State,
    tracker: StabilityTracker,
    *,
    ctx: Context,
    options: WatchOptions,
    clock: Callable[[], float],
    reports: list[FileReport],
) -> None:
    """Hand ready files to worker threads, oldest first, at most ``concurrent_files`` at once."""
    now = clock()
    for path in sorted(state.watching, key=_age_key):
        if len(state.in_progress) >= options.concurrent_files:
            return
        if path in state.in_progress or state.retry_at.get(path, (0.0, 0.0))[0] > now:
            continue
        if snapshot(path) is None:
            state.watching.discard(path)
            tracker.forget(path)
            continue
        if not tracker.is_ready(path):
            continue
        log.info("%s: ready", path.name)

        def work(path: Path = path) -> None:
            try:
                reports.append(process_file(path, ctx))
            except Exception as exc:  # the daemon never dies on one bad file
                log.exception("%s: unexpected error", path.name)
                reports.append(FileReport(path, "retry", {}, message=f"unexpected error: {exc}"))

        # Daemon threads: a POST hanging at shutdown must not hold the process past its
        # deadline; the journal leaves that batch UNKNOWN-safe either way.
        thread = threading.Thread(target=work, name=f"filedrop-{path.name}", daemon=True)
        state.in_progress[path] = thread
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
        if on_report is not None:
            on_report(report)
        if report.state in ("retry", "waiting"):
            _, delay = state.retry_at.get(path, (0.0, options.retry_initial_s / 2))
            delay = min(options.retry_max_s, delay * 2)
            state.retry_at[path] = (clock() + delay, delay)
            log.info("%s: %s; trying again in %.0f s", path.name, report.state, delay)
            continue
        if report.state == "stopped":
            continue
        state.retry_at.pop(path, None)
        state.watching.discard(path)
        current = snapshot(path)
        if current is not None:
            state.settled[path] = current


def _age_key(path: Path) -> tuple[float, str]:
    current = snapshot(path)
    return (current.mtime_ns if current else 0, path.name)
