"""The client under load and against servers that drop connections: no POST becomes ambiguous
unless it may really have been processed."""

from __future__ import annotations

import json
import socket
import struct
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from conftest import ORG_ID, TEST_CLIENT_SECRET

from filedrop.api.client import AmbiguousSubmission, AmiliClient, Credentials


class DocumentedApi(ThreadingHTTPServer):
    """A plain standard-library server answering the documented token and invoice JSON.

    ``request_queue_size`` is its listen backlog. ``close_after_answer`` hangs up every
    connection after one answer without saying so (as a load balancer dropping an idle
    connection); ``reset_next_posts`` resets that many invoice POSTs after their headers, body
    unread and nothing processed. ``connections`` counts accepted connections, ``posts`` the
    invoice POSTs processed; ``closed`` is set whenever the server closed a connection.
    """

    daemon_threads = True

    def __init__(
        self, *, backlog: int, close_after_answer: bool = False, reset_next_posts: int = 0
    ) -> None:
        self.request_queue_size = backlog
        self.close_after_answer = close_after_answer
        self.reset_next_posts = reset_next_posts
        self.lock = threading.Lock()
        self.connections = 0
        self.posts = 0
        self.closed = threading.Event()
        super().__init__(("127.0.0.1", 0), _DocumentedHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.lock:
            self.connections += 1
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        super().shutdown_request(request)
        self.closed.set()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a connection the client gave up on is part of the test, not an error


class _DocumentedHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server: DocumentedApi

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        if self.path.endswith("/invoices"):
            with self.server.lock:
                reset = self.server.reset_next_posts > 0
                self.server.reset_next_posts -= reset
            if reset:
                linger_off = struct.pack("ii", 1, 0)  # close with a reset, body unread
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger_off)
                self.close_connection = True
                return
            self.rfile.read(length)
            with self.server.lock:
                self.server.posts += 1
            self.answer(202, {"data": {"batchId": str(uuid.uuid4())}})
        else:
            self.rfile.read(length)
            self.answer(200, {"access_token": "load-token", "expires_in": 3600})

    def answer(self, status: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()
        if self.server.close_after_answer:
            self.close_connection = True  # without a "Connection: close" header

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def start_api() -> Iterator[Any]:
    """``start_api(backlog=..., ...)`` starts a `DocumentedApi` in a thread, stopped after."""
    servers: list[DocumentedApi] = []

    def start(**options: Any) -> DocumentedApi:
        server = DocumentedApi(**options)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def client_for(server: DocumentedApi, fake_time: Any) -> AmiliClient:
    return AmiliClient(
        auth_url=server.url,
        api_url=server.url,
        credentials=Credentials(client_id="load", client_secret=TEST_CLIENT_SECRET),
        connect_timeout_s=10.0,
        read_timeout_s=10.0,
        clock=fake_time.clock,
        sleep=fake_time.sleep,
    )


def test_burst_of_concurrent_posts_at_a_backlog_of_one_is_never_ambiguous(
    start_api, fake_time, example_invoice
):
    """16 threads POSTing at once to a server with a listen backlog of 1: every POST succeeds."""
    server = start_api(backlog=1)
    barrier = threading.Barrier(16)
    ambiguous: list[AmbiguousSubmission] = []
    batch_ids: list[str] = []

    def submit() -> None:
        barrier.wait()
        for _ in range(3):
            try:
                batch_ids.append(client.create_invoices(ORG_ID, [example_invoice]))
            except AmbiguousSubmission as exc:
                ambiguous.append(exc)

    with client_for(server, fake_time) as client:
        client.authenticate()
        threads = [threading.Thread(target=submit) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert ambiguous == []
    assert (len(batch_ids), server.posts) == (48, 48)
    assert server.connections <= 16


def test_connection_the_server_closed_while_idle_is_not_used_for_a_post(
    start_api, fake_time, example_invoice
):
    """A kept-alive connection the server hung up on is noticed before use; a new one is opened."""
    server = start_api(backlog=5, close_after_answer=True)
    with client_for(server, fake_time) as client:
        # Each request goes out only once the server has hung up on the one before (the token
        # request's too): a hang-up still in flight when a POST is written is no idle connection
        # but the ambiguous case, which this test is not about.
        server.closed.clear()
        client.authenticate()
        assert server.closed.wait(timeout=10)
        for _ in range(3):
            server.closed.clear()
            client.create_invoices(ORG_ID, [example_invoice])
            assert server.closed.wait(timeout=10)
    assert server.posts == 3
    assert server.connections == 4  # the token request's, then one for each POST
    assert fake_time.sleeps == []


def test_post_whose_connection_is_reset_while_writing_is_resent(
    start_api, fake_time, example_invoice
):
    """A reset before the body was written means nothing was processed: the POST is retried."""
    server = start_api(backlog=5, reset_next_posts=1)
    # Far larger than the socket buffers, so the reset lands while the body is being written.
    invoices = [dict(example_invoice, invoiceNumber=f"BIG-{n}") for n in range(20_000)]
    with client_for(server, fake_time) as client:
        client.create_invoices(ORG_ID, invoices)
    assert server.posts == 1
    assert fake_time.sleeps == [0.5]
