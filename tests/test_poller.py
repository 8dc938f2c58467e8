"""The poller: many batches on their own schedules, and a timeout that means wall time."""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
import logging
import socket
import threading
import time
import weakref
from collections.abc import Iterator
from concurrent.futures import Future
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from conftest import ORG_ID

from filedrop.api.client import AmiliClient, BatchResult, Credentials, PollSchedule, StillPending
from filedrop.api.poller import DaemonPool, Poller
from filedrop.api.types import MIN_POLL_INTERVAL_S
from filedrop.sandbox import Sandbox, SandboxOptions


@contextlib.contextmanager
def queued_batch(invoice: dict, schedule: PollSchedule) -> Iterator[tuple[Poller, str]]:
    """A poller on ``schedule`` and the id of a batch the sandbox keeps QUEUED for 30 s."""
    with Sandbox(SandboxOptions(delay_s=(30.0, 30.0))).start() as sandbox:
        client = AmiliClient(
            auth_url=sandbox.url,
            api_url=sandbox.url,
            credentials=Credentials(client_id="c", client_secret="s"),
            connect_timeout_s=2.0,
            read_timeout_s=5.0,
        )
        batch_id = client.create_invoices(ORG_ID, [invoice])
        poller = Poller(client, schedule=schedule)
        try:
            yield poller, batch_id
        finally:
            poller.close()
            client.close()


def test_a_batch_still_queued_at_the_timeout_resolves_pending_with_its_id(
    example_invoice: dict,
) -> None:
    """Still QUEUED when the schedule runs out: StillPending, carrying the batch id."""
    schedule = PollSchedule(initial_s=0.05, max_interval_s=0.2, timeout_s=0.3)
    with queued_batch(example_invoice, schedule) as (poller, batch_id):
        result = poller.track(batch_id).result(timeout=10)
    assert isinstance(result, StillPending)
    assert result.batch_id == batch_id


def test_a_batch_tracked_with_its_own_timeout_gives_up_at_it(example_invoice: dict) -> None:
    """``track(timeout_s=...)`` bounds one batch's polling below the schedule's timeout (a run
    looks briefly at earlier files' batches before it reads the inbox); others keep the
    schedule's."""
    schedule = PollSchedule(initial_s=0.05, max_interval_s=0.2, timeout_s=60.0)
    with queued_batch(example_invoice, schedule) as (poller, batch_id):
        started = time.monotonic()
        brief = poller.track(batch_id, timeout_s=1.5)
        long = poller.track(batch_id)
        result = brief.result(timeout=30)
        waited_s = time.monotonic() - started
        assert not long.done()
    assert isinstance(result, StillPending) and result.batch_id == batch_id
    assert waited_s < 10


def test_many_batches_end_independently(example_invoice: dict, sandbox: Sandbox) -> None:
    """Twenty batches tracked at once each resolve to their own terminal result."""
    client = AmiliClient(
        auth_url=sandbox.url,
        api_url=sandbox.url,
        credentials=Credentials(client_id="c", client_secret="s"),
        connect_timeout_s=2.0,
        read_timeout_s=5.0,
    )
    ids = []
    for n in range(20):
        invoice = dict(example_invoice, invoiceNumber=f"POLL-{n}")
        ids.append(client.create_invoices(ORG_ID, [invoice]))
    poller = Poller(client, schedule=PollSchedule(initial_s=0.02, max_interval_s=0.2, timeout_s=10))
    try:
        results = [poller.track(batch_id).result(timeout=20) for batch_id in ids]
    finally:
        poller.close()
        client.close()
    assert [r.batch_id for r in results] == ids
    assert all(isinstance(r, BatchResult) and r.status == "SUCCESS" for r in results)


def test_the_timeout_is_wall_time_even_when_every_poll_spends_its_own_retries() -> None:
    """API unreachable: each poll retries for a while, yet the batch is given up on time."""
    with socket.socket() as probe:  # a port nothing listens on: connection refused
        probe.bind(("127.0.0.1", 0))
        closed_url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    client = AmiliClient(
        auth_url=closed_url,
        api_url=closed_url,
        credentials=Credentials(client_id="c", client_secret="s"),
        connect_timeout_s=2.0,
        read_timeout_s=5.0,
        max_retries=2,
        backoff_initial_s=0.2,  # each poll now spends ~0.6 s retrying before it fails
    )
    poller = Poller(client, schedule=PollSchedule(initial_s=0.01, max_interval_s=0.01, timeout_s=1))
    started = time.monotonic()
    try:
        result = poller.track("d290f1ee-6c54-4b01-90e6-d701748f0851").result(timeout=30)
    finally:
        poller.close()
        client.close()
    assert isinstance(result, StillPending)
    # The planned waits alone add up to 1 s over ~100 polls; counted that way it took a minute.
    assert time.monotonic() - started < 5


class _OddStatusApi(BaseHTTPRequestHandler):
    """A stand-in for an API release that answers a batch status the guide does not name."""

    gets: ClassVar[list[float]] = []

    def do_POST(self) -> None:  # the token
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._answer({"access_token": "t", "expires_in": 3600})

    def do_GET(self) -> None:  # the batch
        type(self).gets.append(time.monotonic())
        batch_id = self.path.rsplit("/", 1)[-1]
        self._answer({"data": {"batchId": batch_id, "status": "COMPLETED"}})

    def _answer(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def odd_status_api() -> Iterator[str]:
    """The URL of a real HTTP server on 127.0.0.1 whose batches answer status COMPLETED."""
    _OddStatusApi.gets = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OddStatusApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


#: The batch the odd-status API is polled for.
BATCH_ID = "d290f1ee-6c54-4b01-90e6-d70174800851"


def _poll_once(url: str, schedule: PollSchedule) -> BatchResult | StillPending:
    client = AmiliClient(
        auth_url=url,
        api_url=url,
        credentials=Credentials(client_id="c", client_secret="s"),
        connect_timeout_s=2.0,
        read_timeout_s=5.0,
    )
    poller = Poller(client, schedule=schedule)
    try:
        return poller.track(BATCH_ID).result(timeout=30)
    finally:
        poller.close()
        client.close()


def test_an_unknown_batch_status_is_one_warning_and_the_batch_stays_pending(
    odd_status_api: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Status COMPLETED: logged once for the batch, however often it is polled; still pending."""
    # Polls a second apart for 2.8 s: three, or two on a loaded machine (a full test run once
    # fitted only two); at least two are what "however often" needs.
    schedule = PollSchedule(initial_s=0.01, max_interval_s=1.0, timeout_s=2.8)
    with caplog.at_level(logging.WARNING, logger="filedrop"):
        result = _poll_once(odd_status_api, schedule)
    assert isinstance(result, StillPending)
    assert len(_OddStatusApi.gets) in (2, 3)
    # Only this batch's lines: an earlier test's poll, still retrying against its stopped
    # server on a pool thread, may log meanwhile (seen in CI).
    assert [r.getMessage() for r in caplog.records if BATCH_ID in r.getMessage()] == [
        f"batch {BATCH_ID}: Amili answered status 'COMPLETED', which "
        "filedrop does not know; its rows stay PENDING and it is polled again"
    ]


def test_polls_of_one_batch_are_at_least_a_second_apart_whatever_the_settings(
    odd_status_api: str,
) -> None:
    """poll_initial_s = 0.001 and a 1 ms ceiling: the first poll comes at once, then one a
    second, not hundreds."""
    schedule = PollSchedule(initial_s=0.001, max_interval_s=0.001, timeout_s=2.8)
    _poll_once(odd_status_api, schedule)
    gets = _OddStatusApi.gets
    assert len(gets) == 3
    assert all(
        later - earlier >= MIN_POLL_INTERVAL_S for earlier, later in itertools.pairwise(gets)
    )


def test_the_schedule_keeps_the_floor_between_polls() -> None:
    """The waits: the first as configured, every later one at least MIN_POLL_INTERVAL_S."""
    schedule = PollSchedule(initial_s=0.001, max_interval_s=0.001, timeout_s=5)
    assert list(schedule.delays()) == [0.001, 1.0, 1.0, 1.0, 1.0]
    assert MIN_POLL_INTERVAL_S == 1.0


# ------------------------------------------------------------------------------- the DaemonPool


def test_pool_threads_are_reused_and_never_more_than_its_workers() -> None:
    """Forty calls one after another on a pool of two run on at most two threads, not forty."""
    pool = DaemonPool(workers=2, name="test-pool")
    threads = {pool.submit(threading.current_thread).result(timeout=10) for _ in range(40)}
    assert 1 <= len(threads) <= 2


def test_a_waiting_pool_thread_holds_nothing_of_the_call_it_made() -> None:
    """Once a call returned, its arguments (a batch of invoices) are free while the thread waits
    for the next call: a long-lived thread must not keep a big file's columns alive."""

    class Batch:
        pass

    pool = DaemonPool(workers=1, name="test-pool", idle_exit_s=60)
    batch = Batch()
    gone = weakref.ref(batch)
    worker = pool.submit(lambda _: threading.current_thread(), batch).result(timeout=10)
    del batch
    gc.collect()
    assert worker.is_alive()  # waiting for its next call
    assert gone() is None


def test_an_idle_pool_thread_ends_and_the_pool_starts_another_when_needed() -> None:
    """A thread left without a call for idle_exit_s ends; the next call still runs."""
    pool = DaemonPool(workers=1, name="test-pool", idle_exit_s=0.01)
    first = pool.submit(threading.current_thread).result(timeout=10)
    first.join(timeout=10)
    assert not first.is_alive()
    second = pool.submit(threading.current_thread).result(timeout=10)
    assert second is not first


def test_queued_calls_wait_built_and_run_on_the_busy_threads_without_the_submitter() -> None:
    """With ``queued``, submit returns while every thread is busy until that many calls wait;
    the next one blocks. The waiting calls run as threads come free, on those threads, while
    the submitter is still blocked: nobody has to wake up to hand them over."""
    pool = DaemonPool(workers=2, queued=2, name="test-pool", idle_exit_s=60)
    release = threading.Event()
    running = threading.Barrier(3)

    def busy() -> threading.Thread:
        running.wait(timeout=10)
        release.wait(timeout=10)
        return threading.current_thread()

    busy_futures = [pool.submit(busy) for _ in range(2)]
    running.wait(timeout=10)  # both threads are in their calls
    waiting = [pool.submit(threading.current_thread) for _ in range(2)]  # do not block
    assert not any(future.done() for future in waiting)

    fifth: list[Future[threading.Thread]] = []
    submitter = threading.Thread(target=lambda: fifth.append(pool.submit(threading.current_thread)))
    submitter.start()
    submitter.join(timeout=0.2)
    assert submitter.is_alive()  # two running and two waiting: the fifth waits for a slot
    release.set()
    threads = {future.result(timeout=10) for future in busy_futures + waiting}
    submitter.join(timeout=10)
    threads.add(fifth[0].result(timeout=10))
    assert threads == {future.result() for future in busy_futures}  # never a third thread


@pytest.mark.parametrize("queued", [0, 3])
def test_every_call_runs_once_while_threads_come_and_go(queued: int) -> None:
    """Many submitters, threads ending as soon as they idle: no call is lost or run twice, and
    an exception reaches its own future."""
    pool = DaemonPool(workers=3, queued=queued, name="test-pool", idle_exit_s=0.0001)
    ran: list[int] = []
    lock = threading.Lock()

    def call(n: int) -> int:
        if n % 50 == 7:
            raise ValueError(n)
        with lock:
            ran.append(n)
        return n

    futures: dict[int, Future[int]] = {}

    def submit(numbers: range) -> None:
        for n in numbers:
            futures[n] = pool.submit(call, n)
            if n % 10 == 0:
                time.sleep(0.001)  # let threads run out of work and end

    submitters = [threading.Thread(target=submit, args=(range(k, 600, 4),)) for k in range(4)]
    for submitter in submitters:
        submitter.start()
    for submitter in submitters:
        submitter.join()
    for n, future in futures.items():
        if n % 50 == 7:
            with pytest.raises(ValueError):
                future.result(timeout=10)
        else:
            assert future.result(timeout=10) == n
    assert sorted(ran) == [n for n in range(600) if n % 50 != 7]
