"""The Amili client against the real sandbox over HTTP on 127.0.0.1."""

from __future__ import annotations

import base64
import contextlib
import copy
import http.client
import importlib.metadata
import json
import logging
import os
import shutil
import socket
import ssl
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import EXAMPLE_INVOICE, ORG_ID, TEST_CLIENT_SECRET
from hypothesis import example, given
from hypothesis import strategies as st

import filedrop
from filedrop.api.client import (
    MAX_IDLE_S,
    AmbiguousSubmission,
    AmiliClient,
    ApiError,
    ApiUnavailable,
    AuthError,
    BatchResult,
    Credentials,
    EncodedInvoices,
    FailedInvoice,
    PollSchedule,
    StillPending,
    SucceededInvoice,
    encode_invoices,
    encode_json,
)
from filedrop.api.poller import Poller
from filedrop.api.types import parse_batch
from filedrop.errors import ConfigError
from filedrop.sandbox import Sandbox

GUIDE_SCHEDULE = [1.0, 2.0, 4.0, 8.0, 16.0] + [30.0] * 8  # 271 s; one more 30 s would pass 300 s


def client_at(
    url: str,
    *,
    api_url: str | None = None,
    secret: str = "s",
    credentials: Credentials | None = None,
    **options: Any,
) -> AmiliClient:
    """A client of ``url`` (auth and API, unless ``api_url``) with the tests' short timeouts."""
    return AmiliClient(
        auth_url=url,
        api_url=api_url or url,
        credentials=credentials or Credentials(client_id="c", client_secret=secret),
        connect_timeout_s=2.0,
        read_timeout_s=5.0,
        **options,
    )


def numbered(invoice: dict[str, Any], number: str) -> dict[str, Any]:
    other = copy.deepcopy(invoice)
    other["invoiceNumber"] = number
    return other


# ------------------------------------------------------------------------------------ the token


def test_token_is_reused_across_calls(client, sandbox, example_invoice):
    """One token serves a POST and several GETs."""
    batch_id = client.create_invoices(ORG_ID, [example_invoice])
    for _ in range(3):
        client.get_batch(batch_id)
    counters = sandbox.counters()
    assert (counters.token_requests, counters.posts, counters.polls) == (1, 1, 3)


def test_eight_threads_starting_at_once_make_one_token_request(client, sandbox, example_invoice):
    """Concurrent first calls wait for one shared token instead of asking eight times."""
    sandbox.stall_next(0.2, route="token")  # a slow token answer: all eight are waiting for it
    barrier = threading.Barrier(8)
    batch_ids: list[str] = []
    errors: list[BaseException] = []

    def submit(n: int) -> None:
        barrier.wait()
        try:
            batch_ids.append(client.create_invoices(ORG_ID, [numbered(example_invoice, f"T-{n}")]))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(batch_ids)) == 8
    assert sandbox.counters().token_requests == 1
    assert sandbox.counters().posts == 8


def test_token_is_renewed_a_margin_before_it_expires(
    make_client, sandbox, fake_time, example_invoice
):
    """With a 3600 s token and a 60 s margin, 3539 s later it is reused, 3541 s later renewed."""
    client = make_client(token_margin_s=60)
    batch_id = client.create_invoices(ORG_ID, [example_invoice])
    fake_time.now += 3539
    client.get_batch(batch_id)
    assert sandbox.counters().token_requests == 1
    fake_time.now += 2
    client.get_batch(batch_id)
    assert sandbox.counters().token_requests == 2


def test_short_lived_token_is_kept_for_half_its_life(
    make_client, sandbox, fake_time, example_invoice
):
    """A margin longer than the token's life does not mean a new token for every call."""
    sandbox.options.token_lifetime_s = 10
    client = make_client(token_margin_s=60)
    batch_id = client.create_invoices(ORG_ID, [example_invoice])
    fake_time.now += 4
    client.get_batch(batch_id)
    assert sandbox.counters().token_requests == 1
    fake_time.now += 2
    client.get_batch(batch_id)
    assert sandbox.counters().token_requests == 2


@pytest.mark.parametrize("status", [500, 503])
def test_token_request_is_retried_on_server_errors(client, sandbox, fake_time, status):
    """Asking for a token twice is harmless, so a failed token request is simply repeated."""
    sandbox.fail_next(status, route="token", retry_after="2")
    with pytest.raises(ApiError):  # the token works; the made-up batch id does not
        client.get_batch(str(uuid.uuid4()))
    assert sandbox.counters().token_requests == 2
    assert fake_time.sleeps == ([2.0] if status == 503 else [0.5])


def test_authenticate_checks_credentials_before_anything_is_sent(make_client, sandbox):
    """authenticate() fetches the token the next call reuses, and fails on refused credentials."""
    make_client().authenticate()
    sandbox.options.client_secret = "another"
    with pytest.raises(AuthError):
        make_client().authenticate()
    counters = sandbox.counters()
    assert (counters.token_requests, counters.posts, counters.polls) == (2, 0, 0)


def test_401_renews_the_token_once_and_repeats_the_request(client, sandbox, example_invoice):
    """A refused token is replaced and the POST is sent again (a 401 means it was not processed)."""
    sandbox.fail_next(401, route="invoices")
    batch_id = client.create_invoices(ORG_ID, [example_invoice])
    assert client.get_batch(batch_id).status == "SUCCESS"
    counters = sandbox.counters()
    assert (counters.token_requests, counters.posts, counters.invoices_received) == (2, 2, 1)


def test_second_401_in_a_row_raises_auth_error(client, sandbox, example_invoice):
    """A fresh token refused too is an authentication problem, not a loop."""
    sandbox.fail_next(401, count=2, route="invoices")
    with pytest.raises(AuthError) as caught:
        client.create_invoices(ORG_ID, [example_invoice])
    assert "FILEDROP_CLIENT_ID" in str(caught.value)
    assert sandbox.counters().posts == 2
    assert sandbox.counters().invoices_received == 0


def test_bad_credentials_name_the_settings_and_hide_the_secret(make_client, sandbox):
    """AuthError says which settings to check and never repeats the secret."""
    sandbox.options.client_id = "test-client"
    sandbox.options.client_secret = "the-right-secret"
    client = make_client()
    with pytest.raises(AuthError) as caught:
        client.get_batch(str(uuid.uuid4()))
    message = str(caught.value)
    assert "FILEDROP_CLIENT_ID" in message
    assert "FILEDROP_CLIENT_SECRET" in message
    assert "'test-client'" in message
    assert TEST_CLIENT_SECRET not in message + repr(caught.value)
    assert caught.value.status == 401
    assert sandbox.counters().token_requests == 1  # a refusal is not retried
    assert sandbox.counters().polls == 0


# --------------------------------------------------------------------------- retries and errors


@pytest.mark.parametrize("status", [429, 503])
def test_post_answered_retry_later_is_retried_after_retry_after_seconds(
    client, sandbox, fake_time, example_invoice, status
):
    """429/503 mean "not processed": the POST is sent again after Retry-After seconds."""
    sandbox.fail_next(status, retry_after="3", route="invoices")
    batch_id = client.create_invoices(ORG_ID, [example_invoice])
    assert fake_time.sleeps == [3.0]
    assert client.get_batch(batch_id).status == "SUCCESS"
    counters = sandbox.counters()
    assert (counters.posts, counters.invoices_received) == (2, 1)


def test_retry_after_as_http_date_is_honoured(client, sandbox, fake_time, example_invoice):
    """A Retry-After date 7 s after the client's clock means a 7 s wait."""
    sandbox.fail_next(503, retry_after=formatdate(fake_time.now + 7, usegmt=True))
    client.create_invoices(ORG_ID, [example_invoice])
    assert fake_time.sleeps == [7.0]
    assert sandbox.counters().posts == 2


def test_retry_after_is_capped(make_client, sandbox, fake_time, example_invoice):
    """A Retry-After of a day waits retry_after_max_s, not a day."""
    client = make_client(retry_after_max_s=45)
    sandbox.fail_next(429, retry_after="86400")
    client.create_invoices(ORG_ID, [example_invoice])
    assert fake_time.sleeps == [45.0]


def test_retry_later_without_retry_after_backs_off_exponentially(
    client, sandbox, fake_time, example_invoice
):
    """No Retry-After header: waits double from backoff_initial_s."""
    sandbox.fail_next(503, count=3)
    client.create_invoices(ORG_ID, [example_invoice])
    assert fake_time.sleeps == [0.5, 1.0, 2.0]


@pytest.mark.parametrize("stop_during_the_wait", [False, True])
def test_a_stopping_client_tries_a_refused_post_no_more(
    make_client, sandbox, fake_time, example_invoice, stop_during_the_wait: bool
):
    """503 while filedrop is stopping: no further attempt (at once, or after the wait already
    begun), so a backoff of minutes cannot outlast a grace period; nothing was processed."""
    stop = threading.Event()
    if not stop_during_the_wait:
        stop.set()

    def sleep_then_stop(seconds: float) -> None:
        fake_time.sleep(seconds)
        stop.set()  # SIGTERM comes during the wait

    client = make_client(stopping=stop.is_set, sleep=sleep_then_stop)
    sandbox.fail_next(503, count=10, retry_after="30")
    with pytest.raises(ApiUnavailable, match="not tried again, as filedrop is stopping"):
        client.create_invoices(ORG_ID, [example_invoice])
    assert fake_time.sleeps == ([30.0] if stop_during_the_wait else [])
    assert sandbox.counters().posts == 1


def test_post_still_refused_after_the_retries_raises_unavailable(
    make_client, sandbox, example_invoice
):
    """429 every time: ApiUnavailable after max_retries, and nothing was processed."""
    client = make_client(max_retries=2)
    sandbox.fail_next(429, count=10, retry_after="1")
    with pytest.raises(ApiUnavailable) as caught:
        client.create_invoices(ORG_ID, [example_invoice])
    assert "HTTP 429" in str(caught.value)
    assert "try again later" in str(caught.value)
    assert caught.value.attempts == 3
    assert sandbox.counters().posts == 3
    assert sandbox.counters().invoices_received == 0


@pytest.mark.parametrize("status", [500, 502, 504])
def test_post_answered_5xx_is_ambiguous_and_not_resent(
    client, sandbox, fake_time, example_invoice, status
):
    """A 500/502/504 to a POST may hide a processed batch: raise, never resend."""
    sandbox.fail_next(status, route="invoices")
    with pytest.raises(AmbiguousSubmission) as caught:
        client.create_invoices(ORG_ID, [example_invoice])
    assert f"HTTP {status}" in str(caught.value)
    assert "/collection/v1/orgs/" in str(caught.value)
    assert sandbox.counters().posts == 1
    assert fake_time.sleeps == []


def test_lost_response_to_post_is_ambiguous_and_not_resent(client, sandbox, example_invoice):
    """The sandbox processes the POST and hangs up: the client must not send it again."""
    sandbox.lose_next_response()
    with pytest.raises(AmbiguousSubmission) as caught:
        client.create_invoices(ORG_ID, [example_invoice])
    assert "the connection was lost" in str(caught.value)
    assert sandbox.counters().posts == 1
    assert sandbox.received_invoice_numbers() == ["INV-2024-00123"]


def test_post_read_timeout_is_ambiguous_and_not_resent(make_client, sandbox, example_invoice):
    """No answer within the read timeout: the POST may have been processed; not resent."""
    client = make_client(read_timeout_s=0.2)
    sandbox.stall_next(2.0, route="invoices")
    with pytest.raises(AmbiguousSubmission) as caught:
        client.create_invoices(ORG_ID, [example_invoice])
    assert "no answer within 0.2 s" in str(caught.value)
    assert sandbox.counters().posts == 1


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_get_is_retried_on_5xx(client, sandbox, example_invoice, status):
    """A GET changes nothing, so any 5xx is retried."""
    batch_id = client.create_invoices(ORG_ID, [example_invoice])
    sandbox.fail_next(status, route="batches")
    assert client.get_batch(batch_id).status == "SUCCESS"
    assert sandbox.counters().polls == 2


def test_get_is_retried_after_a_read_timeout(make_client, sandbox, example_invoice):
    """A GET that times out is asked again."""
    client = make_client(read_timeout_s=0.2)
    batch_id = client.create_invoices(ORG_ID, [example_invoice])
    sandbox.stall_next(2.0, route="batches")
    assert client.get_batch(batch_id).status == "SUCCESS"
    assert sandbox.counters().polls == 2


def test_get_gives_up_after_max_retries(make_client, sandbox, fake_time):
    """A GET failing every time ends in ApiUnavailable after max_retries + 1 attempts."""
    client = make_client(max_retries=2)
    sandbox.fail_next(502, count=10, route="batches")
    with pytest.raises(ApiUnavailable):
        client.get_batch(str(uuid.uuid4()))
    assert sandbox.counters().polls == 3
    assert fake_time.sleeps == [0.5, 1.0]


def test_unreachable_api_raises_unavailable_after_retries(fake_time, example_invoice):
    """Connection refused: nothing was sent, retried, then ApiUnavailable naming the cause."""
    with Sandbox() as gone:
        url = gone.url
    client = client_at(
        url,
        secret=TEST_CLIENT_SECRET,
        max_retries=2,
        clock=fake_time.clock,
        sleep=fake_time.sleep,
    )
    with client, pytest.raises(ApiUnavailable) as caught:
        client.create_invoices(ORG_ID, [example_invoice])
    assert "could not connect" in str(caught.value)
    assert "/token" in str(caught.value)
    assert len(fake_time.sleeps) == 2


@pytest.mark.parametrize("no_proxy", ["", "127.0.0.1", "example.org, 127.0.0.0/8"])
def test_proxies_from_the_environment_are_used(
    sandbox, make_client, monkeypatch, example_invoice, no_proxy
):
    """HTTP_PROXY and NO_PROXY, read when the client is built, decide where requests go: through
    a proxy (here one that is not there, so nothing connects) unless NO_PROXY names the host or
    a network holding it."""
    with Sandbox() as gone:
        monkeypatch.setenv("HTTP_PROXY", gone.url)
    monkeypatch.setenv("NO_PROXY", no_proxy)
    client = make_client(max_retries=0)
    if no_proxy:
        assert client.create_invoices(ORG_ID, [example_invoice])
        return
    with pytest.raises(ApiUnavailable) as caught:
        client.create_invoices(ORG_ID, [example_invoice])
    assert str(caught.value) == (
        "Amili was not available for POST /token (the connection was lost) after 1 attempt; "
        "nothing was processed, so try again later."
    )
    assert sandbox.counters().token_requests == 0


class ForwardingProxy(BaseHTTPRequestHandler):
    """A plain HTTP proxy: it forwards each absolute-form request to its target and relays the
    answer. ``seen`` holds each request line and its Proxy-Authorization header."""

    seen: ClassVar[list[tuple[str, str | None]]] = []

    def do_GET(self) -> None:
        self.forward()

    def do_POST(self) -> None:
        self.forward()

    def forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).seen.append(
            (f"{self.command} {self.path}", self.headers.get("Proxy-Authorization"))
        )
        target = urlsplit(self.path)
        headers = {
            name: value
            for name, value in self.headers.items()
            if name.lower() not in ("proxy-authorization", "connection", "proxy-connection")
        }
        upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=5)
        upstream.request(self.command, target.path, body=body or None, headers=headers)
        answer = upstream.getresponse()
        data = answer.read()
        upstream.close()
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.getheader("Content-Type", "application/json"))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


def test_requests_go_through_the_environments_proxy_with_its_credentials(
    sandbox, make_client, monkeypatch, example_invoice
):
    """HTTP_PROXY with a user and a password: every request, the token's too, goes to the proxy
    in absolute form with Basic proxy credentials, and the answers come back through it."""
    ForwardingProxy.seen = []
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), ForwardingProxy)
    thread = threading.Thread(target=proxy.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        monkeypatch.setenv("HTTP_PROXY", f"http://filedrop:p%40ss@127.0.0.1:{proxy.server_port}")
        monkeypatch.setenv("NO_PROXY", "")
        client = make_client()
        batch_id = client.create_invoices(ORG_ID, [example_invoice])
        assert client.get_batch(batch_id).status == "SUCCESS"
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join()
    credentials = "Basic " + base64.b64encode(b"filedrop:p@ss").decode()
    assert ForwardingProxy.seen == [
        (f"POST {sandbox.url}/token", credentials),
        (f"POST {sandbox.url}/collection/v1/orgs/{ORG_ID}/invoices", credentials),
        (f"GET {sandbox.url}/collection/v1/batches/{batch_id}", credentials),
    ]


def test_a_ca_bundle_that_is_not_there_is_a_config_error_naming_the_variable(monkeypatch, tmp_path):
    """REQUESTS_CA_BUNDLE naming a missing file stops an HTTPS client before anything is sent."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigError, match=r"REQUESTS_CA_BUNDLE is '.*missing\.pem'"):
        client_at(
            "https://auth.example.org",
            api_url="https://api.example.org",
        )


@pytest.fixture
def tls_api(tmp_path) -> Iterator[tuple[str, str]]:
    """(URL, CA file) of an HTTPS server on 127.0.0.1 with a self-signed certificate, answering
    as `HostileHandler` (secret "good" gets a token)."""
    cert, key = _self_signed(tmp_path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), HostileHandler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}", str(cert)
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.mark.parametrize("trusted", [True, False])
def test_https_certificates_are_checked_against_the_environments_ca_bundle(
    tls_api, monkeypatch, fake_time, trusted
):
    """With REQUESTS_CA_BUNDLE naming the server's CA the token is fetched over TLS; without it
    the self-signed certificate is refused, which counts as not sent (retried, then
    unavailable)."""
    url, ca_file = tls_api
    if trusted:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_file)
    else:
        monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
        monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    client = client_at(
        url,
        secret="good",
        max_retries=1,
        clock=fake_time.clock,
        sleep=fake_time.sleep,
    )
    with client:
        if trusted:
            client.authenticate()
            return
        with pytest.raises(ApiUnavailable, match="the TLS handshake failed"):
            client.authenticate()
    assert fake_time.sleeps == [0.5]


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """(certificate, key) for 127.0.0.1, made by the openssl command."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def _serve(listener: socket.socket, talk: Callable[[socket.socket], None]) -> None:
    """Accept on ``listener`` until it is closed, each connection talked to on a thread."""
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=talk, args=(conn,), daemon=True).start()


def _read_request(conn: socket.socket) -> tuple[str, bytes]:
    """(request line, body) of the next request on ``conn``."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(
        int(v) for k, _, v in (x.partition(":") for x in lines) if k.lower() == "content-length"
    )
    while len(body) < length:
        body += conn.recv(65536)
    return lines[0], body


def _relay(a: socket.socket, b: socket.socket) -> None:
    """Copy what ``a`` sends to ``b`` until either closes, then close both ways."""
    with contextlib.suppress(OSError):
        while data := a.recv(65536):
            b.sendall(data)
    for end in (a, b):
        with contextlib.suppress(OSError):
            end.shutdown(socket.SHUT_RDWR)


def _received(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        data += conn.recv(size - len(data))
    return data


def _connect_tunnel(conn: socket.socket) -> None:
    """An HTTP proxy's CONNECT: a tunnel to the host and port asked for."""
    line, _ = conn.recv(65536).decode("latin-1").split("\r\n", 1)
    host, port = line.split()[1].rsplit(":", 1)
    upstream = socket.create_connection((host, int(port)))
    conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
    threading.Thread(target=_relay, args=(upstream, conn), daemon=True).start()
    _relay(conn, upstream)


def _socks5_tunnel(conn: socket.socket) -> None:
    """A SOCKS5 proxy without authentication: a tunnel to the IPv4 address or name asked for."""
    _, methods = _received(conn, 2)
    _received(conn, methods)
    conn.sendall(b"\x05\x00")
    _, _, _, kind = _received(conn, 4)
    host = (
        socket.inet_ntoa(_received(conn, 4))
        if kind == 1
        else _received(conn, _received(conn, 1)[0]).decode()
    )
    port = int.from_bytes(_received(conn, 2), "big")
    upstream = socket.create_connection((host, port))
    conn.sendall(b"\x05\x00\x00\x01" + socket.inet_aton("127.0.0.1") + port.to_bytes(2, "big"))
    threading.Thread(target=_relay, args=(upstream, conn), daemon=True).start()
    _relay(conn, upstream)


@pytest.mark.parametrize(
    ("scheme", "tunnel"), [("http", _connect_tunnel), ("socks5", _socks5_tunnel)]
)
def test_a_tls_error_after_a_post_went_out_through_a_proxy_is_ambiguous(
    tmp_path, monkeypatch, scheme, tunnel
):
    """Through an HTTP or SOCKS proxy (urllib3's pools), the server reads the invoice POST
    whole, then its TLS breaks: the POST may have been acted on, so it is AmbiguousSubmission,
    sent once. urllib3 calls that an SSLError, like a failed handshake, which used to read as
    "not sent": the POST went again on every retry, four times in all."""
    cert, key = _self_signed(tmp_path)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    whole_posts: list[str] = []

    def api(conn: socket.socket) -> None:
        with server_tls.wrap_socket(conn, server_side=True) as tls:
            while True:
                line, _ = _read_request(tls)
                if "/token" in line:
                    body = b'{"access_token": "tok", "expires_in": 3600}'
                    tls.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
                    )
                    continue
                whole_posts.append(line)
                # A broken TLS record, written under the TLS layer on the same socket.
                with socket.socket(fileno=os.dup(tls.fileno())) as raw:
                    raw.sendall(b"\x17\x03\x03\x00\x20" + b"\x00" * 32)
                return

    listeners = [socket.create_server(("127.0.0.1", 0)) for _ in range(2)]
    for listener, talk in zip(listeners, (api, tunnel), strict=True):
        threading.Thread(target=_serve, args=(listener, talk), daemon=True).start()
    api_port, proxy_port = (listener.getsockname()[1] for listener in listeners)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    monkeypatch.setenv("HTTPS_PROXY", f"{scheme}://127.0.0.1:{proxy_port}")
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.delenv("no_proxy", raising=False)
    try:
        with (
            client_at(
                f"https://127.0.0.1:{api_port}", max_retries=3, sleep=lambda _s: None
            ) as client,
            pytest.raises(AmbiguousSubmission, match="the connection was lost"),
        ):
            client.create_invoices(ORG_ID, [{"invoiceNumber": "1"}])
    finally:
        for listener in listeners:
            listener.close()
    assert len(whole_posts) == 1


def test_unknown_batch_raises_api_error_naming_method_path_and_status(client):
    """A 404 is definite: ApiError with method, path, status and the body's words."""
    batch_id = str(uuid.uuid4())
    with pytest.raises(ApiError) as caught:
        client.get_batch(batch_id)
    error = caught.value
    assert (error.method, error.status) == ("GET", 404)
    assert error.path == f"/collection/v1/batches/{batch_id}"
    assert f"Amili answered GET /collection/v1/batches/{batch_id} with HTTP 404" in str(error)
    assert "was not found" in str(error)


def test_rejected_post_raises_api_error_and_was_not_processed(client, sandbox, example_invoice):
    """A 400 to a POST is definite: ApiError, sent once, nothing received."""
    with pytest.raises(ApiError) as caught:
        client.create_invoices("not-a-uuid", [example_invoice])
    assert caught.value.status == 400
    assert "is not a UUID" in caught.value.excerpt
    assert sandbox.counters().posts == 1
    assert sandbox.counters().invoices_received == 0


def test_unencodable_invoice_fails_before_anything_is_sent(client, sandbox, example_invoice):
    """A NaN amount is refused locally, so the POST is never sent."""
    example_invoice["originalInvoiceAmount"] = float("nan")
    with pytest.raises(ValueError, match="JSON"):
        client.create_invoices(ORG_ID, [example_invoice])
    assert sandbox.counters().posts == 0


def test_infinite_amount_fails_before_anything_is_sent(client, sandbox, example_invoice):
    """An infinite amount is refused locally too, as the json module refuses it."""
    example_invoice["claims"][0]["remainingAmount"] = float("-inf")
    with pytest.raises(ValueError, match="JSON"):
        client.create_invoices(ORG_ID, [example_invoice])
    assert sandbox.counters().posts == 0


def test_an_encoded_batch_is_sent_as_the_same_body(client, sandbox, example_invoice):
    """Encoded ahead (``encode_invoices``), a batch goes out byte for byte as the dicts would."""
    second = numbered(example_invoice, "E-2")
    encoded = encode_invoices([example_invoice, second])
    assert encoded == EncodedInvoices(encode_json({"invoices": [example_invoice, second]}), 2)
    batch_id = client.create_invoices(ORG_ID, encoded)
    assert poll(client, batch_id).status == "SUCCESS"
    assert sandbox.received_invoice_numbers() == [example_invoice["invoiceNumber"], "E-2"]


def test_encoding_refuses_a_nan_amount_and_an_empty_batch(example_invoice):
    """What ``create_invoices`` would refuse, ``encode_invoices`` refuses before it is called."""
    with pytest.raises(ValueError, match="at least one invoice"):
        encode_invoices([])
    example_invoice["originalInvoiceAmount"] = float("nan")
    with pytest.raises(ValueError, match="JSON"):
        encode_invoices([example_invoice])


def test_invoice_body_is_compact_utf8_json_with_exact_amounts():
    """The body of the guide's example invoice, byte for byte."""
    body = encode_json({"invoices": [EXAMPLE_INVOICE]})
    assert body == (
        b'{"invoices":[{"type":"NOTICE","invoiceNumber":"INV-2024-00123",'
        b'"originalInvoiceAmount":4500.0,"currency":"NOK","invoiceDate":"2024-01-15T00:00:00Z",'
        b'"dueDate":"2024-02-15T00:00:00Z","uniqueSourceInvoiceId":"erp-order-9981",'
        b'"description":"Consulting services January 2024","ocrReferenceNumber":"123456789",'
        b'"debtors":[{"type":"PRIVATE","firstname":"Kari","lastname":"Nordmann",'
        b'"customerNumber":"CUST-001","identificationNumber":"12345678901",'
        b'"emails":[{"value":"kari.nordmann@example.com"}],'
        b'"phoneNumbers":[{"value":"+4798765432","countryCode":"NO"}],'
        b'"addresses":[{"street":"Storgata 1","city":"Oslo","zipCode":"0155",'
        b'"countryCode":"NO"}]}],'
        b'"claims":[{"type":"PRINCIPAL","remainingAmount":4500.0,'
        b'"description":"Main invoice amount"}]}]}'
    )


_JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.decimals(places=2, min_value=-(10**9), max_value=10**9).map(float)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(_JSON_VALUES)
@example({"amount": 1234.5, "tiny": 1e-7, "huge": 1e16, "cents": 0.1, "name": "Ødegård"})
@example({"email": "null@example.no", "street": "\u2028 \x00 \ud800"})
def test_body_reads_back_as_exactly_what_json_would_have_sent(document):
    """Any document: the body decodes to what the json module's encoding decodes to, every
    amount the same float (exact), whichever encoder wrote it."""
    try:
        expected = json.dumps(document, allow_nan=False, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        with pytest.raises(UnicodeEncodeError):
            encode_json(document)
        return
    body = encode_json(document)
    assert json.loads(body) == json.loads(expected)
    assert repr(json.loads(body)) == repr(json.loads(expected))  # -0.0 stays -0.0


def test_non_ascii_invoice_is_sent_as_utf8(client, example_invoice):
    """Norwegian letters arrive intact: the body is UTF-8 JSON."""
    example_invoice["debtors"][0]["lastname"] = "Ødegård"
    result = poll(client, client.create_invoices(ORG_ID, [example_invoice]))
    assert isinstance(result, BatchResult)
    assert result.status == "SUCCESS"


def test_base_url_that_is_not_http_is_a_config_error():
    """A base URL without scheme names the setting to fix."""
    with pytest.raises(ConfigError, match="FILEDROP_API_URL"):
        client_at(
            "https://auth.amili.no",
            api_url="api.amili.no",
        )


def test_invoice_posts_reuse_the_kept_alive_connection(client, sandbox, example_invoice):
    """One caller's token request, POSTs and polls all ride one kept-alive connection."""
    first = client.create_invoices(ORG_ID, [example_invoice])
    client.get_batch(first)
    second = client.create_invoices(ORG_ID, [numbered(example_invoice, "F-2")])
    client.get_batch(second)
    client.create_invoices(ORG_ID, [numbered(example_invoice, "F-3")])
    assert sandbox.counters().posts == 3
    assert sandbox.posts_on_reused_connections() == 3


def test_connection_idle_longer_than_max_idle_is_not_used_for_a_post(
    make_client, sandbox, fake_time, example_invoice
):
    """Idle 15.5 s (over MAX_IDLE_S): the POST opens a new connection; idle 14.5 s: it reuses."""
    client = make_client(monotonic=fake_time.clock)
    client.create_invoices(ORG_ID, [example_invoice])
    assert sandbox.posts_on_reused_connections() == 1  # after the token request
    fake_time.now += MAX_IDLE_S + 0.5
    client.create_invoices(ORG_ID, [numbered(example_invoice, "F-2")])
    assert sandbox.posts_on_reused_connections() == 1
    fake_time.now += MAX_IDLE_S - 0.5
    client.create_invoices(ORG_ID, [numbered(example_invoice, "F-3")])
    assert sandbox.posts_on_reused_connections() == 2


def test_user_agent_names_filedrop(client, sandbox, example_invoice):
    """Every request says it comes from filedrop and which version: the installed package's, as
    its metadata gives it (pyproject.toml reads it from ``filedrop.__version__``)."""
    client.create_invoices(ORG_ID, [example_invoice])
    agents = sandbox.user_agents()
    assert agents
    release = importlib.metadata.version("filedrop")
    assert release == filedrop.__version__
    assert all(agent.startswith(f"filedrop/{release} python/") for agent in agents)


# ------------------------------------------------------------------------------------- polling


def test_poll_schedule_is_the_guides():
    """1, 2, 4, 8, 16, then 30 s apart, stopping before 5 minutes would pass."""
    guide = PollSchedule(initial_s=1.0, max_interval_s=30.0, timeout_s=300.0)
    assert list(guide.delays()) == GUIDE_SCHEDULE
    short = PollSchedule(initial_s=0.5, factor=3, max_interval_s=5, timeout_s=12)
    assert list(short.delays()) == [0.5, 1.5, 4.5, 5]


def test_polling_goes_on_through_transient_errors(make_client, sandbox, example_invoice):
    """A poll that fails after its retries does not end the wait; the next one succeeds."""
    client = make_client(max_retries=1)
    batch_id = client.create_invoices(ORG_ID, [example_invoice])
    sandbox.fail_next(503, count=3, retry_after="0", route="batches")
    result = poll(client, batch_id)
    assert isinstance(result, BatchResult)
    assert result.status == "SUCCESS"
    assert sandbox.counters().polls == 4


def test_partial_batch_is_parsed_into_succeeded_and_failed(client, example_invoice):
    """PARTIAL: the good invoice with its ids, the bad one with Amili's reason."""
    bad = numbered(example_invoice, "INV-2024-00124")
    bad["currency"] = "KRONER"
    result = poll(client, client.create_invoices(ORG_ID, [example_invoice, bad]))
    assert isinstance(result, BatchResult)
    assert result.status == "PARTIAL"
    assert result.terminal
    assert result.finished_at is not None
    (good,) = result.succeeded
    assert good.invoice_number == "INV-2024-00123"
    assert uuid.UUID(good.invoice_id)
    assert uuid.UUID(good.case_id)
    assert good.case_number.startswith("CASE-")
    assert result.failed == (
        FailedInvoice(
            invoice_number="INV-2024-00124",
            errors=('Currency "KRONER" is not an ISO 4217 currency code',),
        ),
    )


def test_batch_fields_that_are_not_strings_are_read_as_text():
    """Numbers become their text, null and missing fields the empty string."""
    result = parse_batch(
        {
            "batchId": 42,
            "status": "PARTIAL",
            "succeeded": [{"invoiceId": 7, "invoiceNumber": "A-1", "caseId": None}],
            "failed": [{"invoiceNumber": 1001, "errors": ["bad", 3]}, {"invoiceNumber": "B"}],
        }
    )
    assert result.batch_id == "42"
    assert result.succeeded == (
        SucceededInvoice(invoice_number="A-1", invoice_id="7", case_id="", case_number=""),
    )
    assert result.failed == (
        FailedInvoice(invoice_number="1001", errors=("bad", "3")),
        FailedInvoice(invoice_number="B", errors=()),
    )


# --------------------------------------------------------------------------------- no secrets


class HostileHandler(BaseHTTPRequestHandler):
    """A badly behaved server: it repeats the request (form, headers) in its errors, and
    redirects invoice POSTs elsewhere. ``posts`` counts the invoice POSTs it saw."""

    posts = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        if self.path == "/token" and "client_secret=good" in body:
            self.answer(200, {"access_token": "tok-echo-123", "expires_in": 3600})
        elif self.path == "/token":
            secret = parse_qs(body)["client_secret"][0]
            self.answer(401, {"error": f"{secret} is not the secret"})
        elif self.path.endswith("/invoices") and "redirect" in body:
            type(self).posts += 1
            self.answer(307, {}, location="/collection/v1/other/invoices")
        elif self.path.endswith("/invoices") and "odd-batch-id" in body:
            type(self).posts += 1
            odd = (
                "\x1b[31m\n03:00:00 INFO    f.csv: 2 SUCCEEDED"
                if "odd-batch-id-1" in body
                else "x" * 129
            )
            self.answer(202, {"data": {"batchId": odd, "status": "QUEUED"}})
        else:
            self.answer(400, {"message": f"bad request with {self.headers['Authorization']}"})

    def answer(self, status: int, body: dict[str, Any], location: str = "") -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        if location:
            self.send_header("Location", location)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def hostile_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), HostileHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    HostileHandler.posts = 0
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_error_bodies_echoing_the_secret_or_token_are_redacted(hostile_url, example_invoice):
    """A server that repeats our secret or token in an error does not make us repeat it."""
    for secret in ("good", "bad-secret-xyz"):
        credentials = Credentials(client_id="c", client_secret=secret)
        client = client_at(
            hostile_url,
            credentials=credentials,
        )
        with client, pytest.raises((ApiError, AuthError)) as caught:
            client.create_invoices(ORG_ID, [example_invoice])
        assert "***" in str(caught.value)
        assert secret not in str(caught.value)
        assert "tok-echo-123" not in str(caught.value)


def test_redirected_post_is_not_followed(hostile_url, example_invoice):
    """A redirected POST is never followed, and counts as maybe received (often it was)."""
    credentials = Credentials(client_id="c", client_secret="good")
    example_invoice["description"] = "redirect"
    client = client_at(
        hostile_url,
        credentials=credentials,
    )
    with client, pytest.raises(AmbiguousSubmission) as caught:
        client.create_invoices(ORG_ID, [example_invoice])
    assert "HTTP 307" in str(caught.value)
    assert "FILEDROP_API_URL" in str(caught.value)
    assert HostileHandler.posts == 1


@pytest.mark.parametrize("kind", ["odd-batch-id-1", "odd-batch-id-2"], ids=["escapes", "long"])
def test_a_batch_id_of_control_characters_or_a_page_long_is_no_batch_id(
    hostile_url, example_invoice, kind
):
    """An accepted POST whose batch id holds an escape sequence and a forged log line (or runs
    to a page) may have made a batch, but not one filedrop can keep: it went into outcomes and
    'filedrop status' as it was. Maybe received, as a POST answered without a batch id is."""
    example_invoice["description"] = kind
    client = client_at(hostile_url, credentials=Credentials(client_id="c", client_secret="good"))
    with client, pytest.raises(AmbiguousSubmission) as caught:
        client.create_invoices(ORG_ID, [example_invoice])
    assert "Amili answered HTTP 202 without a readable batchId" in str(caught.value)
    assert HostileHandler.posts == 1


def test_a_failed_invoice_s_errors_are_lines_of_text_with_control_characters_escaped():
    """Errors of another shape than the guide's list of strings are read as what they say, not
    one character at a time nor as a Python repr; a NUL byte or an escape sequence in them is
    escaped (a CSV outcome holding a NUL byte could not be read back by a journal rebuild)."""
    result = parse_batch(
        {
            "batchId": "b",
            "status": "FAILED",
            "failed": [
                {"invoiceNumber": "1", "errors": "Debtor is required"},
                {"invoiceNumber": "2", "errors": [{"field": "amount", "message": "too big"}]},
                {"invoiceNumber": "3", "errors": ["bad\x00value", "\x1b[31mred\nline"]},
                {"invoiceNumber": "4", "errors": 7},
            ],
        }
    )
    assert [failed.errors for failed in result.failed] == [
        ("Debtor is required",),
        ("too big",),
        ("bad\\x00value", "\\x1b[31mred\\nline"),
        ("7",),
    ]


def test_a_succeeded_invoice_s_ids_and_the_batch_s_have_control_characters_escaped():
    """A NUL byte in a case number went into the CSV outcome as it was: a journal rebuild
    could not read that outcome back, and after a lost journal the re-export went out again."""
    result = parse_batch(
        {
            "batchId": "b\x1b[2J",
            "status": "SUCCESS\n",
            "succeeded": [
                {"invoiceNumber": "1", "invoiceId": "i", "caseId": "c", "caseNumber": "C\x00-1"},
                {"invoiceNumber": "2", "invoiceId": "i2", "caseId": "c2", "caseNumber": "C-2"},
            ],
        }
    )
    assert (result.batch_id, result.status) == ("b\\x1b[2J", "SUCCESS\\n")
    assert [s.case_number for s in result.succeeded] == ["C\\x00-1", "C-2"]


def test_secret_and_tokens_never_appear_in_logs_errors_or_reprs(
    make_client, sandbox, example_invoice, caplog
):
    """Through renewals, retries and every kind of error, no secret or token is ever shown."""
    caplog.set_level(logging.DEBUG)
    client = make_client()
    shown: list[str] = [repr(client), str(client)]
    sandbox.fail_next(401, route="invoices")
    sandbox.fail_next(503, retry_after="1", route="invoices")
    batch_id = client.create_invoices(ORG_ID, [example_invoice])
    poll(client, batch_id)
    sandbox.fail_next(502, route="invoices")
    sandbox.lose_next_response()
    for _ in range(2):
        with pytest.raises(AmbiguousSubmission) as ambiguous:
            client.create_invoices(ORG_ID, [numbered(example_invoice, "X-1")])
        shown += [str(ambiguous.value), repr(ambiguous.value)]
    with pytest.raises(ApiError) as api_error:
        client.get_batch("no-such-batch")
    shown += [str(api_error.value), repr(api_error.value)]
    sandbox.options.client_secret = "only-this-one"
    with pytest.raises(AuthError) as auth_error:
        make_client().get_batch(batch_id)
    shown += [str(auth_error.value), repr(auth_error.value)]
    credentials = Credentials(client_id="test-client", client_secret=TEST_CLIENT_SECRET)
    shown += [repr(credentials), str(credentials)]

    assert any(record.name == "filedrop.api.client" for record in caplog.records)
    tokens = sandbox.issued_tokens()
    assert len(tokens) == 2
    everything = caplog.text + "\n".join(shown)
    for secret in [TEST_CLIENT_SECRET, "only-this-one", *tokens]:
        assert secret not in everything


def poll(client: AmiliClient, batch_id: str) -> BatchResult | StillPending:
    """Poll one batch the way filedrop does (``Poller``), on a short schedule."""
    poller = Poller(
        client, schedule=PollSchedule(initial_s=0.01, max_interval_s=0.05, timeout_s=10)
    )
    try:
        return poller.track(batch_id).result(timeout=30)
    finally:
        poller.close()
