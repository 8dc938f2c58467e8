"""Poll many batches from one thread, each on its own copy of the guide's schedule.

Waiting is not work: a file of 50 batches must neither wait 50 times in a row nor hold 50 blocked
threads. One scheduler thread keeps a heap of due times and hands the GETs to a small pool.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from filedrop.api.client import (
    AmiliClient,
    ApiError,
    ApiUnavailable,
    AuthError,
    BatchResult,
    PollSchedule,
    StillPending,
)
from filedrop.api.types import KNOWN_STATUSES, MIN_POLL_INTERVAL_S
from filedrop.logs import fields, plural

log = logging.getLogger("filedrop.api.poller")

T = TypeVar("T")


_Call = tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]


class DaemonPool:
    """At most ``workers`` calls at once, each on a daemon thread, and at most ``queued`` more
    waiting for a thread.

    Unlike ``ThreadPoolExecutor`` (whose workers the interpreter joins at exit), a request hanging
    until its read timeout cannot hold a stopping daemon past its deadline; the journal already
    records such a batch so that it is never resent blindly. ``submit`` blocks while every thread
    is busy and the queue is full, which is the back-pressure we want.

    A thread that finished its call takes the next queued one instead of ending: starting a
    thread per call cost more CPU than the request it made. With calls queued it needs nobody
    to wake for it, so a POST answered is followed by the next at once. One left without a call
    for ``idle_exit_s`` ends, so a pool nobody uses holds no threads.
    """

    def __init__(
        self, *, workers: int, name: str, queued: int = 0, idle_exit_s: float = 10.0
    ) -> None:
        self._slots = threading.BoundedSemaphore(workers + queued)  # calls submitted, not ended
        self._workers = workers
        self._name = name
        self._idle_exit_s = idle_exit_s
        self._ready = threading.Condition()
        self._calls: deque[_Call] = deque()
        self._threads = 0  # alive, busy or waiting
        self._waiting = 0  # threads waiting in _next_call

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        future: Future[T] = Future()
        self._slots.acquire()
        with self._ready:
            self._calls.append((future, fn, args))
            # Each waiting thread takes one queued call before it may end, so a new thread is
            # started only while the waiting ones cannot take every queued call.
            if self._waiting >= len(self._calls):
                self._ready.notify()
            elif self._threads < self._workers:
                self._threads += 1
                threading.Thread(target=self._work, name=self._name, daemon=True).start()
        return future

    def _work(self) -> None:
        # Calls come from the queue, never as the thread's ``args``: a Thread keeps those until
        # it ends, and this one may live on for many calls, holding the first one's batch.
        while (call := self._next_call()) is not None:
            self._run(*call)
            del call  # its arguments (a batch of invoices) are not held while waiting
            self._slots.release()

    @staticmethod
    def _run(future: Future[Any], fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        """One call, unless its future was cancelled."""
        if not future.set_running_or_notify_cancel():
            return
        try:
            result = fn(*args)
        except BaseException as exc:  # handed to whoever waits on the future
            future.set_exception(exc)
        else:
            future.set_result(result)

    def _next_call(self) -> _Call | None:
        """The next queued call, waiting for one; None once none came for ``idle_exit_s``, and
        the thread no longer counts."""
        with self._ready:
            self._waiting += 1
            try:
                while not self._calls:
                    if not self._ready.wait(timeout=self._idle_exit_s) and not self._calls:
                        self._threads -= 1
                        return None
                return self._calls.popleft()
            finally:
                self._waiting -= 1


@dataclass(order=True)
class _Job:
    due: float
    seq: int
    batch_id: str = field(compare=False)
    delays: Iterator[float] = field(compare=False)
    started: float = field(compare=False)
    future: Future[BatchResult | StillPending] = field(compare=False)
    last: BatchResult | None = field(default=None, compare=False)
    warned: bool = field(default=False, compare=False)
    failure: str | None = field(default=None, compare=False)  # the last poll's, if it failed
    timeout_s: float | None = field(default=None, compare=False)  # the schedule's, if None


class Poller:
    """Tracks batches until each is terminal or its schedule runs out.

    ``track`` returns a future that resolves to the terminal ``BatchResult`` or to
    ``StillPending`` (the batch id is never lost). ``close`` resolves every open future with
    ``StillPending`` so a stopping daemon leaves them resumable. ``timed`` hears how many seconds
    each poll took, retries included, whatever its result (for the metrics).
    """

    def __init__(
        self,
        client: AmiliClient,
        *,
        schedule: PollSchedule,
        workers: int = 4,
        clock: Callable[[], float] = time.monotonic,
        timed: Callable[[float], None] | None = None,
    ) -> None:
        self._client = client
        self._timed = timed
        self._schedule = schedule
        self._clock = clock
        self._heap: list[_Job] = []
        self._seq = itertools.count()
        self._wake = threading.Condition()
        self._closed = False
        self._pool = DaemonPool(workers=workers, name="filedrop-poll")
        self._thread = threading.Thread(target=self._loop, name="filedrop-poller", daemon=True)
        self._thread.start()

    def track(
        self, batch_id: str, *, timeout_s: float | None = None
    ) -> Future[BatchResult | StillPending]:
        """Poll ``batch_id`` on the schedule, for at most ``timeout_s`` (default: the
        schedule's timeout) since now."""
        future: Future[BatchResult | StillPending] = Future()
        now = self._clock()
        delays = self._schedule.delays()
        first = next(delays, None)
        if first is None:
            future.set_result(StillPending(batch_id=batch_id, waited_s=0.0, last=None))
            return future
        with self._wake:
            if self._closed:
                future.set_result(StillPending(batch_id=batch_id, waited_s=0.0, last=None))
                return future
            job = _Job(
                now + first, next(self._seq), batch_id, delays, now, future, timeout_s=timeout_s
            )
            self._schedule_job(job)
        return future

    def close(self) -> None:
        """Stop polling; every batch still tracked resolves to ``StillPending``."""
        with self._wake:
            self._closed = True
            pending, self._heap = self._heap, []
            self._wake.notify()
        for job in pending:
            self._give_up(job)
        self._thread.join(timeout=5)

    def _schedule_job(self, job: _Job) -> None:
        """Put ``job`` on the heap (``_wake`` held); wake the scheduler only if it is now the
        first due, since the scheduler already sleeps until the first due time."""
        heapq.heappush(self._heap, job)
        if self._heap[0] is job:
            self._wake.notify()

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._closed:
                    wait_s = self._heap[0].due - self._clock() if self._heap else None
                    if wait_s is not None and wait_s <= 0:
                        break
                    self._wake.wait(timeout=wait_s)
                if self._closed:
                    return
                job = heapq.heappop(self._heap)
            self._pool.submit(self._poll, job)

    def _left_s(self, job: _Job) -> float:
        """How long ``job``'s batch may still be polled: its timeout, or the schedule's."""
        timeout_s = self._schedule.timeout_s if job.timeout_s is None else job.timeout_s
        return timeout_s - (self._clock() - job.started)

    def _poll(self, job: _Job) -> None:
        started = time.perf_counter()
        try:
            # Its retries keep to the time the batch has left, and one poll is had at least.
            result = self._client.get_batch(job.batch_id, within_s=max(self._left_s(job), 0.0))
        except (ApiUnavailable, ApiError, AuthError) as exc:
            # A poll that fails says nothing about the batch; keep to the schedule until it ends.
            # Refused credentials too: the batch was taken, and its rows wait for the next
            # run's polls (PENDING), where ending the file made no outcome and said nothing
            # was sent. Said in the poll's words, without a sending request's advice.
            job.failure = _poll_failure(exc)
            log.warning(
                "batch %s: poll failed (%s); trying again",
                job.batch_id,
                job.failure,
                extra=fields("poll_failed", **self._client.log_fields, batch_id=job.batch_id),
            )
            result = None
        except Exception as exc:  # the future carries it to the file's thread
            job.future.set_exception(exc)
            return
        finally:
            if self._timed is not None:
                self._timed(time.perf_counter() - started)
        if result is not None and result.terminal:
            job.future.set_result(result)
            return
        if result is not None and result.status not in KNOWN_STATUSES and not job.warned:
            job.warned = True  # once per batch: it may answer so for minutes
            log.warning(
                "batch %s: Amili answered status %r, which filedrop does not know; its rows "
                "stay PENDING and it is polled again",
                job.batch_id,
                result.status,
                extra=fields("status_unknown", **self._client.log_fields, batch_id=job.batch_id),
            )
        if result is not None:
            job.last, job.failure = result, None
        delay = next(job.delays, None)
        # The timeout is wall time since tracking began, not the sum of the planned waits: with
        # the API down, each poll spends its own retries, and "give up after 5 minutes" must
        # still mean five minutes (a cron job must not hang for hours).
        # A last poll sooner than the floor would break it: give up instead.
        left_s = self._left_s(job)
        if delay is not None and left_s < MIN_POLL_INTERVAL_S:
            delay = None
        elif delay is not None:
            delay = min(delay, left_s)
        with self._wake:
            if delay is None or self._closed:
                closed = True
            else:
                closed = False
                job.due = self._clock() + delay
                self._schedule_job(job)
        if closed:
            self._give_up(job)

    def _give_up(self, job: _Job) -> None:
        if not job.future.done():
            job.future.set_result(
                StillPending(
                    batch_id=job.batch_id,
                    waited_s=self._clock() - job.started,
                    last=job.last,
                    failure=job.failure,
                )
            )


def _poll_failure(exc: ApiUnavailable | ApiError | AuthError) -> str:
    """Why a poll learnt nothing, for a batch's rows: without the advice meant for a request
    that sends ("try again later", "send again"), which would invite a second send."""
    if isinstance(exc, AuthError):
        return (
            f"Amili refused the credentials of client id {exc.client_id!r} (HTTP {exc.status} "
            f"on {exc.where}); check FILEDROP_CLIENT_ID and FILEDROP_CLIENT_SECRET"
        )
    if isinstance(exc, ApiError):
        unknown = " (Amili does not know this batch id)" if exc.status == 404 else ""
        # An answer of 2xx failed on what it held: say what, as its status says nothing.
        said = f": {exc.excerpt}" if 200 <= exc.status < 300 and exc.excerpt else ""
        return f"Amili answered {exc.method} {exc.path} with HTTP {exc.status}{unknown}{said}"
    tries = plural(exc.attempts, "attempt")
    # The token's request, when a poll needed a new token: said, as the poll itself never went.
    where = "" if exc.where.startswith("GET ") else f" on {exc.where}"
    return f"Amili was not available ({exc.reason}{where}) after {tries}"
