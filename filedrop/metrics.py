"""Metrics, liveness and readiness: served over HTTP by ``watch``, written to a file by ``run``.

Every series is labelled by inbox, never by file name, invoice number or batch id: each of those
would add series without bound, and Prometheus keeps every series it ever saw. Each process has a
registry of its own rather than prometheus_client's global one, so two daemons in one test
process never share a count.

Liveness and readiness are facts the daemon's own loop reports as it works (a beat each turn, the
heartbeat it wrote to the journal, the inbox it listed, the token it got): a probe never touches
the journal, the inbox or Amili itself, so a hung share or a locked journal cannot hang a probe.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from filedrop.errors import ConfigError
from filedrop.files import write_atomically
from filedrop.logs import mask_ids, printable
from filedrop.states import FINAL_FILE_STATES, FileState, RowStatus

log = logging.getLogger("filedrop.metrics")

#: Seconds; a POST may take a read timeout (30 s) and its retries, a poll rarely more than 1 s.
LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

#: What came of one batch's POST (``filedrop_batches_total``'s ``result``).
BATCH_SUBMITTED = "submitted"
BATCH_UNKNOWN = "unknown"
BATCH_REFUSED = "refused"
BATCH_NOT_SENT = "not_sent"
BATCH_RESULTS = (BATCH_SUBMITTED, BATCH_UNKNOWN, BATCH_REFUSED, BATCH_NOT_SENT)

#: The row statuses that wait for a later pass (``filedrop_rows_waiting``).
WAITING_ROWS = (RowStatus.PENDING, RowStatus.NOT_SENT)


def inbox_label(inbox: Path | str) -> str:
    """The inbox's label when its configuration gives it no name: its folder's name."""
    return Path(inbox).absolute().name or "/"


class Metrics:
    """Every metric of one process, and what its probes answer; one ``InboxMetrics`` per inbox.

    ``clock`` is wall time in seconds, injected so that tests of staleness take no time.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.registry = CollectorRegistry(auto_describe=True)
        self._inboxes: dict[str, InboxMetrics] = {}
        self._lock = threading.Lock()
        by_inbox = ["inbox"]
        r = self.registry
        self.rows = Counter(
            "filedrop_rows",
            "Rows of finished files (done or error), by their outcome status.",
            ["inbox", "status"],
            registry=r,
        )
        self.files = Counter(
            "filedrop_files",
            "Files processed, by how each pass over a file ended (a file waiting on its batches "
            "is taken again, and counted again).",
            ["inbox", "result"],
            registry=r,
        )
        self.batches = Counter(
            "filedrop_batches",
            "Batches POSTed, by what came of the POST: submitted, unknown (maybe received), "
            "refused (for its content) or not_sent (certainly not received).",
            ["inbox", "result"],
            registry=r,
        )
        self.post_seconds = Histogram(
            "filedrop_post_duration_seconds",
            "Time to POST one batch, retries included.",
            by_inbox,
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.poll_seconds = Histogram(
            "filedrop_poll_duration_seconds",
            "Time to poll one batch once, retries included.",
            by_inbox,
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.retries = Counter(
            "filedrop_retries",
            "Requests to Amili tried again, by reason (http_429, http_503, read_timeout, ...).",
            ["inbox", "reason"],
            registry=r,
        )
        self.token_renewals = Counter(
            "filedrop_token_renewals",
            "Access tokens obtained (the first one and every renewal).",
            by_inbox,
            registry=r,
        )
        self.unknown_batches = Gauge(
            "filedrop_unknown_batches",
            "Batches UNKNOWN in the journal, waiting for 'filedrop resolve'.",
            by_inbox,
            registry=r,
        )
        self.rows_waiting = Gauge(
            "filedrop_rows_waiting",
            "Rows of unfinished files waiting for a later pass (PENDING, NOT_SENT).",
            ["inbox", "status"],
            registry=r,
        )
        self.oldest_waiting = Gauge(
            "filedrop_oldest_waiting_file_age_seconds",
            "Age of the oldest file not finished (claimed, waiting or retry); 0 when none.",
            by_inbox,
            registry=r,
        )
        self.last_cycle = Gauge(
            "filedrop_last_successful_cycle_timestamp_seconds",
            "Unix time of the last cycle that listed the inbox and read the journal (a rescan "
            "of watch, or a whole run).",
            by_inbox,
            registry=r,
        )

    def inbox(self, name: str) -> InboxMetrics:
        """The metrics of the inbox labelled ``name``; the same object for the same name."""
        with self._lock:
            if name not in self._inboxes:
                self._inboxes[name] = InboxMetrics(name, self)
            return self._inboxes[name]

    def exposition(self) -> bytes:
        """Every metric in Prometheus' text format."""
        return generate_latest(self.registry)

    def liveness_problems(self) -> list[str]:
        """Why the daemon is not alive; empty while every inbox's loop beats in time."""
        now = self.clock()
        with self._lock:
            inboxes = list(self._inboxes.values())
        return [problem for inbox in inboxes if (problem := inbox.liveness_problem(now))]

    def readiness_problems(self) -> list[str]:
        """Why the daemon is not ready; empty once every inbox is."""
        now = self.clock()
        with self._lock:
            inboxes = list(self._inboxes.values())
        if not inboxes:
            return ["no inbox is being watched yet"]
        return [problem for inbox in inboxes for problem in inbox.readiness_problems(now)]


#: How long a journal write may wait before readiness says so: the daemon waits up to the
#: journal's busy timeout (30 s) for another program's lock, answering "ready" meanwhile.
JOURNAL_WAIT_READY_S = 5.0


@dataclass
class _Facts:
    """What the loop last reported of one inbox, for the probes (under ``InboxMetrics._lock``)."""

    beat_at: float | None = None
    beat_within_s: float = 0.0
    stopped: bool = False
    stopping: bool = False  # told to stop: no new file is taken while the last ones finish
    journal_problem: str | None = None
    journal_checked: bool = False
    inbox_problem: str | None = None
    inbox_checked: bool = False
    token_until: float | None = None
    token_problem: str | None = None
    api_problem: str | None = None  # the last request given up, until Amili answers again
    start_problem: str | None = None  # why the inbox's watch could not start, the last time
    journal_writing_since: float | None = None  # a journal write the loop waits on, begun then


@dataclass
class InboxMetrics:
    """One inbox's series and health facts; what the pipeline, the poller and the API client
    report to (the client and poller through plain callbacks: they know nothing of metrics)."""

    name: str
    metrics: Metrics
    _facts: _Facts = field(default_factory=_Facts)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        # Every known series starts at 0, so that a rate over the first file is not lost.
        m = self.metrics
        for state in FileState:
            m.files.labels(self.name, state.value)
        for status in RowStatus:
            m.rows.labels(self.name, status.value)
        for result in BATCH_RESULTS:
            m.batches.labels(self.name, result)
        for status in WAITING_ROWS:
            m.rows_waiting.labels(self.name, status.value)
        for metric in (m.post_seconds, m.poll_seconds, m.token_renewals):
            metric.labels(self.name)
        for gauge in (m.unknown_batches, m.oldest_waiting):
            gauge.labels(self.name)

    # -- what happened ----------------------------------------------------------------------

    def file_finished(self, state: FileState, counts: Mapping[str, int]) -> None:
        """One pass over a file ended in ``state``; its rows count once the file is final."""
        self.metrics.files.labels(self.name, state.value).inc()
        if state in FINAL_FILE_STATES:
            for status, rows in counts.items():
                self.metrics.rows.labels(self.name, status).inc(rows)

    def batch_posted(self, result: str, *, seconds: float) -> None:
        """A batch's POST ended with ``result`` (one of ``BATCH_RESULTS``) after ``seconds``."""
        self.metrics.batches.labels(self.name, result).inc()
        self.metrics.post_seconds.labels(self.name).observe(seconds)

    def poll_took(self, seconds: float) -> None:
        self.metrics.poll_seconds.labels(self.name).observe(seconds)

    def retrying(self, reason: str) -> None:
        """The API client tries a request again (``ClientEvents``)."""
        self.metrics.retries.labels(self.name, reason).inc()

    def token_obtained(self, lifetime_s: float) -> None:
        """The API client got a token valid ``lifetime_s`` from now (``ClientEvents``)."""
        self.metrics.token_renewals.labels(self.name).inc()
        with self._lock:
            self._facts.token_until = self.metrics.clock() + lifetime_s
            self._facts.token_problem = None

    def token_failed(self, reason: str) -> None:
        """The API client could not get a token (``ClientEvents``)."""
        with self._lock:
            self._facts.token_problem = printable(mask_ids(reason.rstrip(".")))

    def unavailable(self, reason: str) -> None:
        """The API client gave a request up (``ClientEvents``): not ready until Amili answers."""
        with self._lock:
            self._facts.api_problem = printable(mask_ids(reason.rstrip(".")))

    def answered(self) -> None:
        """Amili answered a request (``ClientEvents``); each request calls it, so the lock is
        taken only when there is a problem to clear."""
        if self._facts.api_problem is not None:
            with self._lock:
                self._facts.api_problem = None

    def backlog(
        self, *, unknown_batches: int, rows_waiting: Mapping[str, int], oldest_waiting_s: float
    ) -> None:
        """What the journal holds unfinished for this inbox, as last read."""
        m = self.metrics
        m.unknown_batches.labels(self.name).set(unknown_batches)
        for status in WAITING_ROWS:
            m.rows_waiting.labels(self.name, status.value).set(rows_waiting.get(status.value, 0))
        m.oldest_waiting.labels(self.name).set(oldest_waiting_s)

    def cycle_succeeded(self) -> None:
        self.metrics.last_cycle.labels(self.name).set(self.metrics.clock())

    # -- health -----------------------------------------------------------------------------

    def loop_beat(self, *, next_within_s: float) -> None:
        """The inbox's loop is alive and promises its next beat within ``next_within_s``."""
        with self._lock:
            self._facts.beat_at = self.metrics.clock()
            self._facts.beat_within_s = next_within_s
            # A loop begun again (after a failure ended the last) is neither.
            self._facts.stopped = self._facts.stopping = False

    def loop_stopping(self) -> None:
        """The loop was told to stop: it takes no new file while in-flight work finishes,
        which may take the shutdown's grace period; not ready meanwhile."""
        with self._lock:
            self._facts.stopping = True

    def loop_stopped(self) -> None:
        with self._lock:
            self._facts.stopped = True

    def journal_writing(self) -> None:
        """The loop begins a write to the journal (``journal_written`` tells how it ended): one
        that waits on a lock another program holds blocks for the journal's busy timeout."""
        with self._lock:
            self._facts.journal_writing_since = self.metrics.clock()

    def journal_written(self, problem: str | None) -> None:
        """The loop's last write to the journal: None when it worked, else why not."""
        with self._lock:
            self._facts.journal_problem = problem
            self._facts.journal_checked = True
            self._facts.journal_writing_since = None

    def start_failed(self, problem: str | None) -> None:
        """Why the inbox's watch could not start (a broken mapping, a missing folder), or None
        once it has: readiness then says that alone, not the checks it never got to."""
        with self._lock:
            self._facts.start_problem = problem

    def inbox_listed(self, problem: str | None) -> None:
        """The loop's last listing of the inbox: None when it worked, else why not."""
        with self._lock:
            self._facts.inbox_problem = problem
            self._facts.inbox_checked = True

    def liveness_problem(self, now: float) -> str | None:
        with self._lock:
            facts = self._facts
            if facts.stopped:
                return f"inbox {self.name}: the watch loop has stopped"
            if facts.beat_at is None:
                return None  # still starting (checking the settings, getting a first token)
            silent_s = now - facts.beat_at
            if silent_s > facts.beat_within_s:
                return f"inbox {self.name}: the watch loop has not moved for {silent_s:.0f} s"
            return None

    def readiness_problems(self, now: float) -> list[str]:
        with self._lock:
            facts = self._facts
            if facts.start_problem:
                return [f"inbox {self.name}: cannot start: {facts.start_problem}"]
            problems: list[str] = []
            if facts.stopping and not facts.stopped:
                problems.append("stopping: no new files are taken")
            if facts.stopped or facts.beat_at is None:
                problems.append("the watch loop is not running")
            waited_s = now - (facts.journal_writing_since or now)
            if waited_s > JOURNAL_WAIT_READY_S:
                problems.append(
                    f"the journal has not answered a write for {waited_s:.0f} s (locked by "
                    "another program, or a slow disk)"
                )
            elif facts.journal_problem:
                problems.append(facts.journal_problem)
            elif not facts.journal_checked:
                problems.append("the journal has not been written yet")
            if facts.inbox_problem:
                problems.append(facts.inbox_problem)
            elif not facts.inbox_checked:
                problems.append("the inbox has not been listed yet")
            if facts.api_problem and not facts.token_problem:
                problems.append(facts.api_problem)
            if facts.token_problem:
                problems.append(f"no access token: {facts.token_problem}")
            elif facts.token_until is None:
                problems.append("no access token obtained yet")
            elif now >= facts.token_until:
                problems.append(
                    f"the access token expired {now - facts.token_until:.0f} s ago "
                    "and no new one was obtained"
                )
        return [f"inbox {self.name}: {problem}" for problem in problems]


# -- the HTTP endpoints ------------------------------------------------------------------------


#: The header by which ``/healthz`` proves which process answers (see ``health_token_path``).
HEALTH_TOKEN_HEADER = "X-Filedrop-Health-Token"  # noqa: S105 - a header name, no secret


def health_token_path(port: int) -> Path:
    """Where the daemon serving health on ``port`` keeps its token, in its own temporary folder.

    A container's health check reads it from its own filesystem and compares it with what
    ``/healthz`` answers: on a host network, 127.0.0.1:port may be another container's daemon,
    which must never make this one (or a container running something else) look healthy.
    """
    return Path(tempfile.gettempdir()) / f"filedrop-health-{port}"


def probe_health(port: int, *, timeout_s: float = 5.0) -> str | None:
    """Why the daemon of this filesystem serving on 127.0.0.1:``port`` is not alive, or None.

    Uses http.client, which (unlike urllib) never sends a loopback request through a proxy.
    """
    import http.client

    token_file = health_token_path(port)
    try:
        token = token_file.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return f"no filedrop watch serves health here ({token_file} does not exist)"
    except OSError as exc:
        return (
            f"{token_file} cannot be read ({exc.strerror or exc}); run the check as the user "
            "the daemon runs as"
        )
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        connection.request("GET", "/healthz")
        answer = connection.getresponse()
        body = answer.read().decode("utf-8", "replace").strip()
        answered_by = answer.getheader(HEALTH_TOKEN_HEADER)
    except OSError as exc:
        return f"127.0.0.1:{port}/healthz does not answer ({exc})"
    finally:
        connection.close()
    if answered_by != token:
        return f"127.0.0.1:{port} is served by another process, not this filedrop watch"
    if answer.status != HTTPStatus.OK:
        return f"/healthz answered {answer.status}: {body}"
    return None


class MetricsServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` on a thread of their own, until ``close``."""

    def __init__(self, metrics: Metrics, *, host: str, port: int, setting: str) -> None:
        token = os.urandom(16).hex()
        self.metrics = metrics
        handler = type("_Handler", (_Handler,), {"metrics": metrics, "token": token})
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise ConfigError(
                f"{setting} is {port}, which cannot be served on {host} "
                f"({exc.strerror or exc}); choose a free port, or 0 for any."
            ) from exc
        self._server.daemon_threads = True
        self.host = host
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="filedrop-metrics", daemon=True
        )
        self._thread.start()
        token_file = health_token_path(self.port)
        self._token_file: Path | None = token_file  # None: not ours, left as it is at close
        try:
            # Its name in the shared temporary folder is known in advance: written by name, a
            # link at it had the token written through it, over the file linked to, wherever
            # the kernel follows such a link (``fs.protected_symlinks`` stops only another
            # user's). Renamed into place, a new file replaces the link itself; another user's
            # file there is kept and refuses the rename, as the folder's sticky bit says.
            write_atomically(token_file, lambda out: out.write(token.encode("ascii")))
        except OSError as exc:  # the health check then says why; the daemon itself runs on
            self._token_file = None
            log.warning(
                "cannot write %s (%s); its health check will fail",
                token_file,
                exc.strerror or exc,
            )
        log.info("serving /metrics, /healthz and /readyz on %s:%d", host, self.port)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5.0)
        if self._token_file is not None:
            with contextlib.suppress(OSError):  # gone already, or its folder made read-only
                self._token_file.unlink(missing_ok=True)


class _Handler(BaseHTTPRequestHandler):
    metrics: Metrics
    token: str
    server_version = "filedrop"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._answer(HTTPStatus.OK, self.metrics.exposition(), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            self._verdict(self.metrics.liveness_problems(), ok="alive")
        elif path == "/readyz":
            self._verdict(self.metrics.readiness_problems(), ok="ready")
        else:
            self._answer(HTTPStatus.NOT_FOUND, b"not found; try /metrics, /healthz or /readyz\n")

    def _verdict(self, problems: list[str], *, ok: str) -> None:
        if problems:
            body = "".join(f"{problem}\n" for problem in problems)
            self._answer(HTTPStatus.SERVICE_UNAVAILABLE, body.encode("utf-8"))
        else:
            self._answer(HTTPStatus.OK, f"{ok}\n".encode())

    def _answer(
        self, status: HTTPStatus, body: bytes, content_type: str = "text/plain; charset=utf-8"
    ) -> None:
        self.send_response(status)
        self.send_header(HEALTH_TOKEN_HEADER, self.token)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Probes every few seconds are not worth a log line each."""


# -- the textfile collector -------------------------------------------------------------------


def write_textfile(metrics: Metrics, path: Path) -> None:
    """Write every metric to ``path`` for node_exporter's textfile collector, atomically.

    A temporary file in the same folder, renamed over ``path``: the collector never reads half a
    file. Its name does not end in ``.prom``, so the collector skips it while it is written.
    Raises ``OSError`` when the folder cannot be written.
    """
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(metrics.exposition())
            out.flush()
            os.fsync(out.fileno())
        Path(temp).chmod(0o644)  # mkstemp's 0600 would hide it from a collector of another user
        Path(temp).replace(path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
