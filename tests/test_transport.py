"""The client's own HTTP/1.1 (filedrop/api/transport.py) against a server on 127.0.0.1 that writes
whatever bytes each test scripts: the answers real servers give besides the plain one (chunked,
compressed, ended by closing, preceded by 100 Continue) and the broken ones, each read as what it
means for a POST that may have arrived."""

from __future__ import annotations

import contextlib
import functools
import gzip
import json
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import ORG_ID
from urllib3.exceptions import ProtocolError

from filedrop.api import transport
from filedrop.api.client import (
    AmbiguousSubmission,
    AmiliClient,
    ApiError,
    ApiUnavailable,
    Credentials,
)
from filedrop.api.transport import DirectPool

TOKEN = json.dumps({"access_token": "tok-1", "expires_in": 3600}).encode()
ACCEPTED = json.dumps({"data": {"batchId": "b-1"}}).encode()
BATCH = json.dumps(
    {"data": {"batchId": "b-1", "status": "SUCCESS", "invoices": [], "failedInvoices": []}}
).encode()

#: What a script writes for one request: the answer's raw bytes, and whether to close after it.
Script = Callable[[str, bytes], tuple[bytes, bool]]


def answer(status: int, body: bytes, *headers: str, version: str = "HTTP/1.1") -> bytes:
    """An answer with a Content-Length, unless a header given says how its end is known."""
    lines = [f"{version} {status} X", *headers]
    if not any(h.lower().startswith(("transfer-encoding", "content-length")) for h in headers):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chunked(body: bytes, size: int = 7) -> bytes:
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    out = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in pieces)
    return out + b"0\r\nX-Trailer: t\r\n\r\n"


class Trickle(bytes):
    """An answer a script wants sent ``size`` bytes every ``gap_s`` seconds, then the
    connection closed (a slow-loris server)."""

    gap_s = 0.2
    size = 1

    @property
    def data(self) -> bytes:
        return bytes(self)


class Steady(Trickle):
    """A long answer coming steadily over a slow link: 20 KB every 0.1 s."""

    gap_s = 0.1
    size = 20_000


class ScriptedServer:
    """Accepts connections on 127.0.0.1 and answers each request as ``script`` says; counts
    the connections it accepted and the requests it read, by request line."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.requests: list[str] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn: socket.socket) -> None:
        buffer = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                length = next(
                    (int(v) for k, _, v in (x.partition(":") for x in lines[1:])
                     if k.lower() == "content-length"),
                    0,
                )  # fmt: skip
                while len(buffer) < length:
                    buffer += conn.recv(65536)
                body, buffer = buffer[:length], buffer[length:]
                self.requests.append(lines[0])
                raw, close = self.script(lines[0], body)
                if isinstance(raw, Trickle):  # a piece at a time, slowly
                    with contextlib.suppress(OSError):  # the client gave up on it
                        for at in range(0, len(raw), raw.size):
                            conn.sendall(raw.data[at : at + raw.size])
                            time.sleep(raw.gap_s)
                    return
                conn.sendall(raw)
                if close:
                    return

    def close(self) -> None:
        self._listener.close()


@pytest.fixture
def serve() -> Iterator[Callable[[Script], ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(script: Script) -> ScriptedServer:
        servers.append(ScriptedServer(script))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def client_of(server: ScriptedServer, **options: Any) -> AmiliClient:
    values: dict[str, Any] = {
        "connect_timeout_s": 2.0,
        "read_timeout_s": 2.0,
        "sleep": lambda _s: None,
        "max_retries": 2,
    }
    return AmiliClient(
        auth_url=server.url,
        api_url=server.url,
        credentials=Credentials(client_id="c", client_secret="s"),
        **(values | options),
    )


def pool_of(
    server: ScriptedServer,
    *,
    opening_wait_s: float,
    monotonic: Callable[[], float] = time.monotonic,
) -> DirectPool:
    """A transport pool of ``server`` alone, without the client around it."""
    port = int(server.url.rsplit(":", 1)[1])
    return DirectPool(host="127.0.0.1", port=port, tls=None, max_idle_s=15,
                      monotonic=monotonic, opening_wait_s=opening_wait_s, size=16)  # fmt: skip


def api(token: bytes = TOKEN, **routes: bytes) -> Script:
    """A script answering the token request with ``token``, invoice POSTs with
    ``routes['post']`` and batch GETs with ``routes['get']`` (raw answers), keeping each
    connection open unless an answer says ``Connection: close``."""

    def script(line: str, _body: bytes) -> tuple[bytes, bool]:
        if "/token" in line:
            raw = answer(200, token)
        elif line.startswith("POST"):
            raw = routes["post"]
        else:
            raw = routes["get"]
        return raw, b"connection: close" in raw.lower()

    return script


# ------------------------------------------------------------------------- answers that are fine


def test_a_chunked_gzipped_poll_answer_is_read_whole(serve):
    """Chunked with extensions and a trailer, gzip inside: the batch reads as the plain one."""
    poll = answer(200, chunked(gzip.compress(BATCH)), "Transfer-Encoding: chunked",
                  "Content-Encoding: gzip")  # fmt: skip
    server = serve(api(post=answer(201, ACCEPTED), get=poll))
    with client_of(server) as client:
        batch_id = client.create_invoices(ORG_ID, [{"invoiceNumber": "1"}])
        assert client.get_batch(batch_id).status == "SUCCESS"
    assert server.connections == 1  # token, POST and GET on one kept-alive connection


@pytest.mark.parametrize("raw", [zlib.compress(ACCEPTED), zlib.compress(ACCEPTED)[2:-4]])
def test_deflate_with_or_without_its_zlib_header_is_read(serve, raw):
    server = serve(api(post=answer(201, raw, "Content-Encoding: deflate")))
    with client_of(server) as client:
        assert client.create_invoices(ORG_ID, [{"invoiceNumber": "1"}]) == "b-1"


def test_an_answer_ended_by_closing_is_read_and_its_connection_not_used_again(serve):
    """HTTP/1.0 without a length: the body is what came before the close; the next request
    opens a new connection."""
    raw = b"HTTP/1.0 201 Created\r\nContent-Type: application/json\r\n\r\n" + ACCEPTED
    server = serve(api(post=raw + b"", get=answer(200, BATCH)))
    server.script = _closing_after_posts(server.script)
    with client_of(server) as client:
        client.create_invoices(ORG_ID, [{"invoiceNumber": "1"}])
        client.create_invoices(ORG_ID, [{"invoiceNumber": "2"}])
    assert server.connections == 2


def _closing_after_posts(script: Script) -> Script:
    def closing(line: str, body: bytes) -> tuple[bytes, bool]:
        raw, close = script(line, body)
        return raw, close or line.startswith("POST /collection")

    return closing


def test_interim_answers_before_the_real_one_are_skipped(serve):
    raw = b"HTTP/1.1 100 Continue\r\n\r\n" + answer(201, ACCEPTED)
    server = serve(api(post=raw))
    with client_of(server) as client:
        assert client.create_invoices(ORG_ID, [{"invoiceNumber": "1"}]) == "b-1"


def test_header_names_are_read_in_any_case(serve):
    """``retry-after`` in lower case is still the wait Amili asked for."""
    waits: list[float] = []
    busy = answer(503, b"", "retry-after: 7")
    calls = iter([busy, answer(201, ACCEPTED)])
    server = serve(api(post=b""))
    server.script = lambda line, _b: (
        (answer(200, TOKEN) if "/token" in line else next(calls)),
        False,
    )
    with client_of(server, sleep=waits.append) as client:
        assert client.create_invoices(ORG_ID, [{"invoiceNumber": "1"}]) == "b-1"
    assert waits == [7.0]


def test_answers_with_bare_line_feeds_are_read(serve):
    """Line feeds without carriage returns, which the standard lets a client take and some
    servers send: the POST's answer is Amili taking the batch, not an answer to doubt (which
    would leave its invoices UNKNOWN), and a chunked poll reads whole."""
    body = gzip.compress(BATCH)
    pieces = b"".join(b"%x\n%s\n" % (len(p), p) for p in (body[:9], body[9:])) + b"0\n\n"
    poll = b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\nContent-Encoding: gzip\n\n" + pieces
    post = b"HTTP/1.1 201 Created\nContent-Length: %d\r\n\n%s" % (len(ACCEPTED), ACCEPTED)
    server = serve(api(post=post, get=poll))
    with client_of(server) as client:
        batch_id = client.create_invoices(ORG_ID, [{"invoiceNumber": "1"}])
        assert client.get_batch(batch_id).status == "SUCCESS"
        assert client.get_batch(batch_id).status == "SUCCESS"  # the connection kept in step
    assert server.connections == 1


# ------------------------------------------------------------------------ answers that are broken


BROKEN = {
    "cut short": b"HTTP/1.1 201 Created\r\nContent-Length: 500\r\nConnection: close\r\n\r\n{}",
    "not http": b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
    "bad length": b"HTTP/1.1 201 Created\r\nContent-Length: -5\r\n\r\n",
    "bad chunk": b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    "bad gzip": answer(201, b"not gzip at all", "Content-Encoding: gzip"),
    "unknown coding": answer(201, ACCEPTED, "Content-Encoding: br"),
    "header without colon": b"HTTP/1.1 201 Created\r\nbroken header\r\n\r\n",
    # Digits that are not ASCII: str.isdigit takes them, int() does not.
    "superscript status": b"HTTP/1.1 2\xb20 Created\r\nContent-Length: 2\r\n\r\n{}",
    "two-digit status": b"HTTP/1.1 20\r\nContent-Length: 2\r\n\r\n{}",
    "superscript length": b"HTTP/1.1 201 Created\r\nContent-Length: \xb9\r\n\r\n{",
    "chunk size with underscore": b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"1_0\r\n",
}


@pytest.mark.parametrize("raw", BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_answer_to_a_post_is_ambiguous_and_it_is_not_resent(serve, raw):
    """The request went out whole: Amili may have taken the invoices, whatever came back."""
    server = serve(api(post=raw + b"", get=b""))
    server.script = _closing_after_posts(server.script)
    with client_of(server) as client, pytest.raises(AmbiguousSubmission):
        client.create_invoices(ORG_ID, [{"invoiceNumber": "1"}])
    assert sum(line.startswith("POST /collection") for line in server.requests) == 1


def test_an_answer_trickled_a_byte_at_a_time_is_bound_by_the_read_timeout(serve):
    """Each read came within the read timeout, so a server sending a byte every 0.2 s held a
    POST for as long as it liked (minutes, in a hostile review), and a stop waited for it. The
    whole answer must come within the read timeout: else the POST is maybe received."""
    server = serve(api(post=Trickle(answer(201, ACCEPTED)), get=b""))
    with (
        client_of(server, read_timeout_s=0.6) as client,
        pytest.raises(AmbiguousSubmission) as caught,
    ):
        client.create_invoices(ORG_ID, [{"invoiceNumber": "1"}])
    assert "no answer within 0.6 s" in str(caught.value)
    assert sum(line.startswith("POST /collection") for line in server.requests) == 1


@pytest.mark.parametrize("charset", ["ISO-8859-1", None], ids=["named", "not-named"])
def test_an_answer_in_the_charset_its_content_type_names_is_read(serve, charset):
    """A 202 whose body is in ISO-8859-1, as its Content-Type says (an "å" in its text), was
    read as no batch id: its invoices UNKNOWN though Amili had said which batch. Not UTF-8 and
    naming no other charset, it is still no readable answer."""
    body = '{"data": {"batchId": "b-1", "status": "QUEUED", "message": "Mottatt på kø"}}'
    kind = [f"Content-Type: application/json; charset={charset}"] if charset else []
    accepted = answer(202, body.encode("latin-1"), *kind)
    server = serve(api(post=accepted, get=b""))
    with client_of(server) as client:
        if charset is None:
            with pytest.raises(AmbiguousSubmission):
                client.create_invoices(ORG_ID, [{"invoiceNumber": "1"}])
        else:
            assert client.create_invoices(ORG_ID, [{"invoiceNumber": "1"}]) == "b-1"


def test_a_poll_needing_a_token_keeps_the_token_s_retries_to_its_time(serve):
    """A poll that needs a new token while the token's endpoint answers 503 ran that request's
    full retries, whatever time its batch had left (a 5 s poll timeout lasted 157 s over 10
    batches); its rows say it was the token's request that failed."""
    from filedrop.api.poller import _poll_failure

    def script(line: str, _body: bytes) -> tuple[bytes, bool]:
        return answer(503, b"", "retry-after: 2"), False

    server = serve(script)
    with client_of(server, max_retries=5) as client, pytest.raises(ApiUnavailable) as caught:
        client.get_batch("b-1", within_s=1.0)
    assert server.requests == ["POST /token HTTP/1.1"]
    assert _poll_failure(caught.value) == (
        "Amili was not available (HTTP 503 on POST /token) after 1 attempt"
    )


def test_a_poll_answered_about_another_batch_is_a_failed_poll_saying_so(serve):
    """An answer naming another batch id was taken for the batch polled: its results would
    settle this batch's invoices. It is a poll that failed, and its rows say why."""
    from filedrop.api.poller import _poll_failure

    other = json.dumps({"data": {"batchId": "b-2", "status": "SUCCESS", "succeeded": []}})
    server = serve(api(post=answer(201, ACCEPTED), get=answer(200, other.encode())))
    with client_of(server) as client, pytest.raises(ApiError) as caught:
        client.get_batch("b-1")
    assert _poll_failure(caught.value) == (
        "Amili answered GET /collection/v1/batches/b-1 with HTTP 200: the answer is about batch b-2"
    )


def test_a_poll_answer_naming_its_batch_in_other_capitals_is_that_batch_s(serve):
    """A UUID is the same in capitals or with spaces around it: such an answer failed every
    poll, and its rows stayed PENDING for good."""
    same = json.dumps({"data": {"batchId": " D290F1EE-6C54 ", "status": "SUCCESS"}})
    server = serve(api(post=answer(201, ACCEPTED), get=answer(200, same.encode())))
    with client_of(server) as client:
        assert client.get_batch("d290f1ee-6c54").status == "SUCCESS"


def test_a_long_answer_coming_steadily_is_read_past_the_read_timeout(serve):
    """The time an answer has grows with what has come: a poll of 1,000 invoices (some 200 KB)
    over a slow link was cut at the read timeout each time, its rows PENDING for good."""
    succeeded = [
        {"invoiceNumber": f"{k}", "invoiceId": f"i{k}", "caseId": f"c{k}", "caseNumber": f"C{k}"}
        for k in range(1_000)
    ]
    big = json.dumps(
        {
            "data": {
                "batchId": "b-1",
                "status": "SUCCESS",
                "succeeded": succeeded,
                "pad": "x" * 10**5,
            }
        }
    )
    server = serve(api(post=answer(201, ACCEPTED), get=Steady(answer(200, big.encode()))))
    with client_of(server, read_timeout_s=0.5) as client:
        result = client.get_batch("b-1")
    assert len(result.succeeded) == 1_000
    assert sum(line.startswith("GET") for line in server.requests) == 1


def test_a_poll_s_retries_keep_to_the_time_its_batch_has_left(serve):
    """A poll answered 503 is asked again on the backoff, but not past the time the batch has
    left to be polled: polls answered 429 with Retry-After: 3600 made a 5 s poll timeout last
    five minutes."""
    server = serve(api(post=answer(201, ACCEPTED), get=answer(503, b"", "retry-after: 30")))
    with client_of(server, max_retries=5) as client, pytest.raises(ApiUnavailable) as caught:
        client.get_batch("b-1", within_s=1.0)
    assert caught.value.attempts == 1
    assert sum(line.startswith("GET") for line in server.requests) == 1


@pytest.mark.parametrize("raw", BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_answer_to_a_poll_is_asked_again(serve, raw):
    server = serve(api(post=answer(201, ACCEPTED), get=raw))
    server.script = _closing_after_gets(server.script)
    with client_of(server, max_retries=2) as client, pytest.raises(ApiUnavailable):
        client.get_batch("b-1")
    assert sum(line.startswith("GET") for line in server.requests) == 3


def _closing_after_gets(script: Script) -> Script:
    def closing(line: str, body: bytes) -> tuple[bytes, bool]:
        raw, close = script(line, body)
        return raw, close or line.startswith("GET")

    return closing


def test_a_compressed_answer_too_big_once_inflated_is_refused(serve, monkeypatch):
    """A small gzip that inflates past the limit is not inflated whole (a bomb)."""
    monkeypatch.setattr(transport, "MAX_BODY", 100_000)
    bomb = gzip.compress(b"0" * 1_000_000)
    server = serve(api(post=answer(201, bomb, "Content-Encoding: gzip")))
    pool = pool_of(server, opening_wait_s=5)
    with pytest.raises(ProtocolError, match="decompressed"):
        pool.exchange("POST", "/x", body=b"{}", headers={}, connect_timeout_s=2,
                      read_timeout_s=2)  # fmt: skip


def test_a_token_holding_a_line_break_is_refused_before_it_is_sent(serve):
    """It would go into every request's header as it is, and end that header early."""
    token = json.dumps({"access_token": "tok\r\nX-Evil: 1", "expires_in": 3600}).encode()
    server = serve(api(token=token, post=answer(201, ACCEPTED)))
    with client_of(server) as client, pytest.raises(ApiError, match="access_token"):
        client.create_invoices(ORG_ID, [{"invoiceNumber": "1"}])
    assert not any(line.startswith("POST /collection") for line in server.requests)


# ------------------------------------------------------------------------------- the pool


def test_a_caller_waiting_to_open_a_connection_takes_one_that_went_idle_meanwhile(serve):
    """Connections are opened one at a time, each after the last one's first answer; a caller
    waiting for that takes a connection another caller has finished with instead, rather than
    waiting for the opener's (slow) answer. Before, it then also kept the right to open one
    while it used it, and the requests took turns: 0.3-0.6 s a POST, against an API 90 ms away,
    for the first seconds of every file."""
    held = {path: threading.Event() for path in ("/a", "/a2", "/b")}
    arrived = {path: threading.Event() for path in held}

    def script(line: str, _body: bytes) -> tuple[bytes, bool]:
        path = line.split()[1]
        if path in held:
            arrived[path].set()
            held[path].wait(timeout=20)
        return answer(200, b"{}"), False

    server = serve(script)
    pool = pool_of(server, opening_wait_s=20)

    def request(path: str) -> threading.Thread:
        thread = threading.Thread(
            target=pool.exchange,
            args=("GET", path),
            kwargs={"body": None, "headers": {}, "connect_timeout_s": 2, "read_timeout_s": 20},
        )
        thread.start()
        return thread

    first = request("/a")  # opens the first connection
    assert arrived["/a"].wait(timeout=10)
    held["/a"].set()
    first.join(timeout=10)  # the first connection is proven, and idle
    first = request("/a2")  # takes it; its answer is held
    assert arrived["/a2"].wait(timeout=10)
    second = request("/b")  # none idle: opens the second; its answer is held
    assert arrived["/b"].wait(timeout=10)
    third = request("/c")  # none idle, one being opened: waits
    time.sleep(0.3)  # (lets it start waiting; without, it finds the first idle and proves less)
    held["/a2"].set()
    first.join(timeout=10)  # the first connection is idle again
    third.join(timeout=10)  # /c took it, without waiting for /b's answer
    answered_while_b_held = not third.is_alive()
    held["/b"].set()
    second.join(timeout=10)
    third.join(timeout=10)
    pool.close()
    assert answered_while_b_held
    assert server.connections == 2


def test_four_callers_have_four_requests_in_the_server_at_once(serve):
    """Four threads, three requests each: by the third, each has a connection of its own, and
    the server holds all four requests at the same time (what four POSTs in flight need)."""
    gate = threading.Barrier(4, timeout=10)
    reached: list[bool] = []

    def script(line: str, _body: bytes) -> tuple[bytes, bool]:
        if line.startswith("GET /third"):
            try:
                gate.wait()  # all four requests in the server at the same time
                reached.append(True)
            except threading.BrokenBarrierError:
                reached.append(False)
        return answer(200, b"{}"), False

    server = serve(script)
    pool = pool_of(server, opening_wait_s=10)

    def caller() -> None:
        for path in ("/first", "/second", "/third"):
            pool.exchange("GET", path, body=None, headers={}, connect_timeout_s=2,
                          read_timeout_s=15)  # fmt: skip

    threads = [threading.Thread(target=caller) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    pool.close()
    assert reached == [True] * 4
    assert server.connections == 4


def test_a_closed_pool_keeps_no_connection_open(serve):
    """After close, a connection whose exchange ends is closed, not kept idle (its socket would
    stay open for nobody); the pool still answers, each time on a new connection."""
    server = serve(lambda _line, _body: (answer(200, b"{}"), False))
    pool = pool_of(server, opening_wait_s=5)
    exchange = functools.partial(
        pool.exchange, "GET", "/x", body=None, headers={}, connect_timeout_s=2, read_timeout_s=5
    )
    exchange()
    pool.close()
    exchange()
    exchange()
    assert server.connections == 3


@pytest.mark.parametrize(
    ("timeout", "used_after_s", "not_used_after_s"), [(5, 3.5, 4.5), (1, 0.4, 0.6)]
)
def test_a_connection_is_not_used_once_the_servers_keep_alive_timeout_nears(
    serve, timeout, used_after_s, not_used_after_s
):
    """The server says it closes idle connections after 5 s (Apache, Node and uvicorn do): one
    idle 3.5 s is used, one idle 4.5 s is not, for a POST sent as the server closes it may have
    arrived (UNKNOWN rows). After 1 s: half of it to spare, so a busy connection is still used."""
    now = [0.0]
    keep_alive = f"Keep-Alive: timeout={timeout}, max=100"
    server = serve(lambda _line, _body: (answer(200, b"{}", keep_alive), False))
    pool = pool_of(server, opening_wait_s=5, monotonic=lambda: now[0])
    exchange = functools.partial(
        pool.exchange, "POST", "/x", body=b"{}", headers={}, connect_timeout_s=2, read_timeout_s=5
    )
    exchange()
    now[0] += used_after_s
    exchange()
    assert server.connections == 1
    now[0] += not_used_after_s
    exchange()
    assert server.connections == 2
    pool.close()
