"""The sandbox's HTTP plumbing: a threaded HTTP/1.1 server that hands every request to one
function and sends the `Reply` it returns back as JSON.

Kept apart from sandbox.py so that the API's behaviour reads without socket details. A reply may
also be dropped (processed, then the connection closed unanswered) or stalled (answered late): the
two ways a real network leaves a client unsure whether its POST arrived.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

__all__ = ["Answer", "JsonServer", "Reply", "error_reply"]

log = logging.getLogger("filedrop.sandbox")  # one logger for the whole sandbox
_MAX_BODY_BYTES = 50 * 1024 * 1024


@dataclass
class Reply:
    """One answer: status, JSON body and headers, or a drop or a stall of it."""

    status: int
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # processed, but close the connection without answering
    stall_s: float = 0.0  # processed, answer this much later


class Answer(Protocol):
    """What the server calls for each request (headers with lower-case names)."""

    def __call__(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes,
        *,
        reused_connection: bool,
    ) -> Reply: ...


def error_reply(status: int, message: str) -> Reply:
    """An error answer with the ``{"message": ...}`` body the API routes use."""
    return Reply(status, {"message": message})


class JsonServer(ThreadingHTTPServer):
    """Serves ``answer`` on ``address``; ``stopping`` set cuts short any stalled reply."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], *, answer: Answer, stopping: threading.Event
    ) -> None:
        self.answer = answer
        self.stopping = stopping
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s ended abruptly", client_address, exc_info=True)

    def close_connections(self) -> None:
        """End keep-alive connections too, so a stopped sandbox answers nothing at all."""
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real API: exercises the client's pool
    server_version = "filedrop-sandbox"
    disable_nagle_algorithm = True  # else each answer waits ~40 ms for a delayed ACK
    wbufsize = 64 * 1024  # headers and body leave in one write (flushed after each request)
    server: JsonServer
    requests_served = 0  # on this connection (one handler instance per connection)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY_BYTES:
            self.close_connection = True
            self._send(error_reply(413, "Request body too large"))
            return
        body = self.rfile.read(length) if length else b""
        headers = {key.lower(): value for key, value in self.headers.items()}
        try:
            self.requests_served += 1
            reply = self.server.answer(
                method, self.path, headers, body, reused_connection=self.requests_served > 1
            )
        except Exception:
            log.exception("sandbox failed on %s %s", method, self.path)
            reply = error_reply(500, "Internal sandbox error")
        if reply.stall_s and self.server.stopping.wait(reply.stall_s):
            reply.drop = True
        if reply.drop:
            self.close_connection = True
            return
        self._send(reply)

    def _send(self, reply: Reply) -> None:
        payload = json.dumps(reply.body).encode() if reply.body is not None else b""
        try:
            self.send_response(reply.status)
            for key, value in reply.headers.items():
                self.send_header(key, value)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            if self.close_connection:  # the client asked; say so, or it may reuse a dead socket
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(payload)
            self.wfile.flush()
        except OSError:  # the client gave up (e.g. its read timeout): nothing to answer
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)
