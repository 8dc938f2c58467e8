"""HTTP/1.1 over kept-alive sockets, for the client's requests that go straight to Amili.

Why not urllib3 here: a batch is one POST and one GET, and urllib3 (with http.client under it,
which parses every answer's headers through the email package) spent more CPU per batch than
the rest of sending it: some 0.8 ms against 0.25 ms for the same exchange written out by hand,
measured on the bench's sandbox. filedrop needs a small part of HTTP: its own requests, answers
with a length, chunked or ending at close, gzip or deflate. That part is here. Proxies, whose
tunnels and authentication are not small, still go through urllib3 (client.py).

The failures it raises are urllib3's exception classes, with the same meaning (client.py's
``_classify`` reads them): a failed connect or TLS handshake, a read timeout, a connection lost
after the request went out. A request whose writing failed and that got no answer either raises
`RequestNotSentError`: the server never had all of it, so it may be sent again.

The pool's rules are those described in client.py's docstring: kept alive and reused last-in
first-out, checked before use, retired after ``max_idle_s`` idle (or a second before the server's
own ``Keep-Alive: timeout``), opened one at a time.
"""

from __future__ import annotations

import re
import select
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable
from typing import NamedTuple

from urllib3.exceptions import (
    ConnectTimeoutError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

#: The most an answer's status line and headers may take; more is not an HTTP server's answer.
_MAX_HEAD = 64 * 1024
#: The most an answer's body may take, once decompressed: a poll of a 10,000-invoice batch is a
#: few MB; a server sending more (or a compressed bomb) is not believed.
MAX_BODY = 64 * 1024 * 1024
_RECV = 256 * 1024
_NO_BODY = frozenset({204, 304})
#: Numbers in an answer's head: ASCII digits only (str.isdigit takes ² and other digits, which
#: int() then refuses or reads).
_DECIMAL = re.compile(r"[0-9]{1,12}")
_HEX = re.compile(r"[0-9A-Fa-f]{1,12}")
_STATUS = re.compile(r"[1-5][0-9]{2}")
#: The empty line that ends an answer's head: CRLF CRLF as servers write it, or bare line feeds,
#: which the standard lets a client take as line ends (RFC 9112, 2.2) and http.client takes. A
#: POST's answer refused for them would leave its invoices UNKNOWN though Amili took them.
_HEAD_END = re.compile(rb"\n\r?\n")
_KEEP_ALIVE_TIMEOUT = re.compile(r"(?i)\btimeout\s*=\s*([0-9]{1,6})\b")


class RequestNotSentError(OSError):
    """Writing the request failed and no answer came: the server never had all of it."""

    @staticmethod
    def found_in(exc: BaseException) -> bool:
        """Whether this error is among the causes urllib3 (or this module) wrapped into ``exc``."""
        pending: list[BaseException] = [exc]
        seen: set[int] = set()
        while pending:
            error = pending.pop()
            if id(error) in seen:
                continue
            seen.add(id(error))
            if isinstance(error, RequestNotSentError):
                return True
            pending += [arg for arg in error.args if isinstance(arg, BaseException)]
            pending += [cause for cause in (error.__cause__, error.__context__) if cause]
        return False


class _MalformedAnswerError(Exception):
    """What came back is not an HTTP answer (or not one this module can read)."""


class Headers(dict[str, str]):
    """An answer's headers, by lower-case name; ``get`` takes a name in any case. A header sent
    twice holds both values, joined by ", "."""

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return super().get(name.lower(), default)


class Answer(NamedTuple):
    """An answer, its body read whole and decompressed."""

    status: int
    headers: Headers
    data: bytes


class DirectPool:
    """Kept-alive connections to one ``scheme://host:port``, at most ``size`` at once (more
    callers wait for one); safe to share between threads."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        tls: ssl.SSLContext | None,
        max_idle_s: float,
        monotonic: Callable[[], float],
        opening_wait_s: float,
        size: int,
    ) -> None:
        self._host = host
        self._port = port
        self._tls = tls
        default_port = 443 if tls is not None else 80
        shown = f"[{host}]" if ":" in host else host
        self._host_header = shown if port == default_port else f"{shown}:{port}"
        self._max_idle_s = max_idle_s
        self._monotonic = monotonic
        self._opening_wait_s = opening_wait_s
        self._slots = threading.BoundedSemaphore(size)
        # Guards the idle list and ``_opening``; told when a connection goes idle or the one
        # being opened has had its first exchange.
        self._changed = threading.Condition()
        self._idle: list[_Connection] = []
        self._opening = False
        self._closed = False

    def exchange(
        self,
        method: str,
        target: str,
        *,
        body: bytes | None,
        headers: dict[str, str],
        connect_timeout_s: float,
        read_timeout_s: float,
    ) -> Answer:
        """Send one request for ``target`` (a path, query included) and read its whole answer."""
        request = self._request(method, target, headers, body)
        self._slots.acquire()
        opener = False
        try:
            connection, opener = self._connection()
            if connection is None:
                connection = self._connect(connect_timeout_s)
            try:
                answer, keep = connection.exchange(request, method, read_timeout_s)
            except BaseException:
                connection.close()
                raise
            with self._changed:
                if keep and not self._closed:
                    connection.idle_since = self._monotonic()
                    self._idle.append(connection)
                else:
                    connection.close()
                self._changed.notify_all()
            return answer
        finally:
            if opener:  # its first exchange ended, well or not: the next may open one
                with self._changed:
                    self._opening = False
                    self._changed.notify_all()
            self._slots.release()

    def _connection(self) -> tuple[_Connection | None, bool]:
        """(an idle connection that may be used, False), or (None, True) when this caller is
        to open one: the only one opening until its first exchange ends, or, after waiting
        ``opening_wait_s`` for that in vain, one more (a wait, never a hang).

        Idle ones are taken last in first out; those idle too long or readable while idle (the
        server closed them, or sent junk) are closed on the way.
        """
        deadline = self._monotonic() + self._opening_wait_s
        while True:
            with self._changed:
                while not self._idle:
                    if not self._opening:
                        self._opening = True
                        return None, True
                    left_s = deadline - self._monotonic()
                    if left_s <= 0:
                        return None, False
                    self._changed.wait(timeout=left_s)
                connection = self._idle.pop()
            idle_s = self._monotonic() - connection.idle_since
            if idle_s > min(self._max_idle_s, connection.server_idle_s) or connection.stale():
                connection.close()
                continue
            return connection, False

    def close(self) -> None:
        """Close the idle connections; one in use is closed when its exchange ends."""
        with self._changed:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def _connect(self, timeout_s: float) -> _Connection:
        try:
            sock = socket.create_connection((self._host, self._port), timeout=timeout_s)
        except socket.gaierror as exc:
            raise NameResolutionError(self._host, None, exc) from exc  # type: ignore[arg-type]
        except TimeoutError as exc:
            message = f"connection to {self._host} timed out (connect timeout={timeout_s:g})"
            raise ConnectTimeoutError(None, message) from exc
        except OSError as exc:
            message = f"failed to establish a new connection: {exc}"
            raise NewConnectionError(None, message) from exc  # type: ignore[arg-type]
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls is not None:
                sock = self._tls.wrap_socket(sock, server_hostname=self._host)
        except ssl.SSLError as exc:  # certificate errors too
            sock.close()
            raise SSLError(exc) from exc
        except TimeoutError as exc:
            sock.close()
            message = f"TLS handshake with {self._host} timed out (timeout={timeout_s:g})"
            raise ConnectTimeoutError(None, message) from exc
        except OSError as exc:
            sock.close()
            raise NewConnectionError(None, f"TLS handshake failed: {exc}") from exc  # type: ignore[arg-type]
        return _Connection(sock)

    def _request(
        self, method: str, target: str, headers: dict[str, str], body: bytes | None
    ) -> bytes:
        # Every part is filedrop's own or checked where it came from (the token); a line break
        # in one would end the header early and start another.
        if any("\r" in part or "\n" in part for part in (target, *headers.values())):
            msg = "a request header holds a line break"
            raise ValueError(msg)
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self._host_header}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        head = "\r\n".join(lines) + "\r\n\r\n"
        return head.encode("latin-1") + (body or b"")


#: The pace of an answer that earns it time beyond the read timeout: 4 KiB a second, so that a
#: poll of 1,000 invoices (176 KB) over a slow link is read whole, and a trickle is not.
_STEADY_BYTES_PER_S = 4096


class _Connection:
    """One socket and what was read from it beyond the last answer (nothing, from a server that
    keeps to HTTP/1.1 without pipelining)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = bytearray()
        self.idle_since = 0.0
        #: How long the server keeps it open while idle, less a second (half, for N under 2 s), as
        #: its last answer's ``Keep-Alive: timeout=N`` said (Apache, Node and uvicorn say 5 s);
        #: unlimited if it said nothing. A request sent as the server closes may have arrived.
        self.server_idle_s = float("inf")
        self._read_by = float("inf")  # when the answer being read must have come whole
        self._received = 0  # bytes of it so far, each buying a little more time

    def close(self) -> None:
        self._sock.close()

    def stale(self) -> bool:
        """Readable while idle: closed by the server, or something came nobody asked for."""
        if self._buffer:
            return True
        try:
            readable, _, _ = select.select([self._sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def exchange(self, request: bytes, method: str, read_timeout_s: float) -> tuple[Answer, bool]:
        """Write ``request``, read its answer: (the answer, whether the connection may be used
        again). Raises urllib3's ``ReadTimeoutError`` or ``ProtocolError`` once the request may
        have arrived, `RequestNotSentError` when it cannot have."""
        self._sock.settimeout(read_timeout_s)
        write_error: OSError | None = None
        try:
            self._sock.sendall(request)
        except OSError as exc:
            # A server may answer early and close (413, 401): that answer is still read.
            write_error = exc
        # The whole answer within the read timeout, not each read, and more time as bytes come
        # (`_STEADY_BYTES_PER_S`): a server trickling a byte a second held a POST for minutes
        # past it, and a stop waited for that; a long answer coming steadily is read whole.
        self._read_by = time.monotonic() + read_timeout_s
        self._received = 0
        try:
            return self._answer(method)
        except (OSError, _MalformedAnswerError, zlib.error) as exc:
            if write_error is not None:
                raise RequestNotSentError(f"writing the request failed: {write_error}") from exc
            if isinstance(exc, TimeoutError):
                message = f"read timed out (read timeout={read_timeout_s:g})"
                raise ReadTimeoutError(None, None, message) from exc  # type: ignore[arg-type]
            raise ProtocolError("connection aborted", exc) from exc

    # ---------------------------------------------------------------------------------- reading

    def _answer(self, method: str) -> tuple[Answer, bool]:
        while True:
            version, status, headers = self._head()
            # 1xx answers (100 Continue, 103 Early Hints) come before the real one.
            if not 100 <= status < 200:
                break
        connection = (headers.get("connection") or "").lower()
        keep = version == "HTTP/1.1" and "close" not in connection
        timeout = _KEEP_ALIVE_TIMEOUT.search(headers.get("keep-alive") or "")
        # Each answer says it again (or not); a second, or half of a very short timeout, to spare.
        seconds = float(timeout[1]) if timeout is not None else float("inf")
        self.server_idle_s = max(seconds - 1.0, seconds / 2)
        encoding = (headers.get("transfer-encoding") or "").lower()
        length = headers.get("content-length")
        if method == "HEAD" or status in _NO_BODY:
            body = b""
        elif encoding:
            if encoding.rsplit(",", 1)[-1].strip() != "chunked":
                msg = f"transfer encoding {encoding!r}"
                raise _MalformedAnswerError(msg)
            body = self._chunked()
        elif length is not None:
            lengths = {part.strip() for part in length.split(",")}
            if len(lengths) != 1 or not _DECIMAL.fullmatch(size := lengths.pop()):
                msg = f"Content-Length {length!r}"
                raise _MalformedAnswerError(msg)
            body = self._exactly(int(size))
        else:
            body = self._until_closed()
            keep = False
        return Answer(status, headers, _decoded(body, headers.get("content-encoding"))), keep

    def _head(self) -> tuple[str, int, Headers]:
        end = _HEAD_END.search(self._buffer)
        while end is None:
            if len(self._buffer) > _MAX_HEAD:
                msg = "an answer's head over 64 KiB"
                raise _MalformedAnswerError(msg)
            searched = max(0, len(self._buffer) - 2)
            self._fill(eof_ok=False)
            end = _HEAD_END.search(self._buffer, searched)
        head = bytes(self._buffer[: end.start()]).decode("latin-1")
        del self._buffer[: end.end()]
        status_line, *lines = [line.removesuffix("\r") for line in head.split("\n")]
        version, _, rest = status_line.partition(" ")
        code = rest[:3]
        if (
            not version.startswith("HTTP/1.")
            or not _STATUS.fullmatch(code)
            or rest[3:4] not in ("", " ")
        ):
            msg = f"status line {status_line[:80]!r}"
            raise _MalformedAnswerError(msg)
        headers = Headers()
        for line in lines:
            name, colon, value = line.partition(":")
            name = name.strip().lower()
            if not colon or not name:
                msg = f"header line {line[:80]!r}"
                raise _MalformedAnswerError(msg)
            value = value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        return version, int(code), headers

    def _fill(self, *, eof_ok: bool) -> bool:
        """Read what the socket has into the buffer; False at its end (an error unless
        ``eof_ok``)."""
        left_s = self._read_by + self._received / _STEADY_BYTES_PER_S - time.monotonic()
        if left_s <= 0:
            raise TimeoutError
        self._sock.settimeout(left_s)
        chunk = self._sock.recv(_RECV)
        self._received += len(chunk)
        if not chunk:
            if eof_ok:
                return False
            msg = "the server closed the connection before its answer ended"
            raise ConnectionAbortedError(msg)
        self._buffer += chunk
        if len(self._buffer) > MAX_BODY + _MAX_HEAD:
            msg = "an answer over 64 MiB"
            raise _MalformedAnswerError(msg)
        return True

    def _exactly(self, size: int) -> bytes:
        if size > MAX_BODY:
            msg = f"an answer of {size} bytes"
            raise _MalformedAnswerError(msg)
        while len(self._buffer) < size:
            self._fill(eof_ok=False)
        body = bytes(self._buffer[:size])
        del self._buffer[:size]
        return body

    def _line(self) -> str:
        """The next line, ended by CRLF or a bare line feed (as ``_HEAD_END`` says why)."""
        end = self._buffer.find(b"\n")
        while end < 0:
            if len(self._buffer) > _MAX_HEAD:
                msg = "a chunk's size line over 64 KiB"
                raise _MalformedAnswerError(msg)
            self._fill(eof_ok=False)
            end = self._buffer.find(b"\n")
        line = bytes(self._buffer[:end]).decode("latin-1").removesuffix("\r")
        del self._buffer[: end + 1]
        return line

    def _chunked(self) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            size_text = self._line().partition(";")[0].strip()
            if not _HEX.fullmatch(size_text):
                msg = f"chunk size {size_text[:20]!r}"
                raise _MalformedAnswerError(msg)
            size = int(size_text, 16)
            if size == 0:
                while self._line():  # trailers, up to the empty line
                    pass
                return b"".join(parts)
            total += size
            if total > MAX_BODY:
                msg = "an answer over 64 MiB"
                raise _MalformedAnswerError(msg)
            parts.append(self._exactly(size))
            if self._line():
                msg = "a chunk not ended by a line end"
                raise _MalformedAnswerError(msg)

    def _until_closed(self) -> bytes:
        while self._fill(eof_ok=True):
            pass
        body = bytes(self._buffer)
        self._buffer.clear()
        return body


def _decoded(body: bytes, encoding: str | None) -> bytes:
    """``body`` decompressed as its Content-Encoding says (gzip or deflate, which the client
    accepts), at most `MAX_BODY` bytes of it."""
    coding = (encoding or "").strip().lower()
    if not body or coding in ("", "identity"):
        return body
    if coding in ("gzip", "x-gzip"):
        return _inflate(body, zlib.MAX_WBITS | 16)
    if coding == "deflate":
        # Servers send it with the zlib header, as the standard says, or without (raw).
        try:
            return _inflate(body, zlib.MAX_WBITS)
        except zlib.error:
            return _inflate(body, -zlib.MAX_WBITS)
    msg = f"content encoding {coding!r}"
    raise _MalformedAnswerError(msg)


def _inflate(body: bytes, wbits: int) -> bytes:
    inflater = zlib.decompressobj(wbits)
    data = inflater.decompress(body, MAX_BODY)
    if inflater.unconsumed_tail:
        msg = "an answer over 64 MiB once decompressed"
        raise _MalformedAnswerError(msg)
    return data
