"""Amili collection API client: token, create invoices, poll batches.

It knows nothing of spreadsheets. Its errors answer the one question the pipeline must ask after a
POST fails: could Amili have received these invoices? After `AuthError`, `ApiError` or
`ApiUnavailable` certainly not; after `AmbiguousSubmission` maybe, so the rows become UNKNOWN and
are never resent automatically. Those errors and the typed results live in client_types.py and are
importable from here too.

Retries are one explicit loop rather than urllib3's ``Retry``: the rules differ for a POST whose
fate is unknown, ``Retry-After`` must be honoured for POST too, and sleeping must be injectable so
that tests take milliseconds. urllib3 is left with retries off.

Connections: every request, invoice POSTs included, rides a kept-alive connection from one pool
(`_RetiringPool`). A connection is checked just before use (readable while idle means the server
closed it or sent junk: it is discarded), is closed rather than used once it has been idle longer
than ``max_idle_s`` (15 s, below the idle timeouts of common load balancers, so an idle connection
is not silently dropped under a POST) or, on direct connections, than a second less than the
server's own ``Keep-Alive: timeout``, and new connections are opened one at a time, each proven
by a full answer before the next is opened. A fresh connection per POST would be the worst choice:
a busy server with a small listen backlog resets such a connection after the request was written,
which by the rules above makes the POST ambiguous, and each would cost a TLS handshake. A request
whose writing failed never reached the server whole, so it is retried like a failed connect.

Requests straight to Amili go through transport.py's own HTTP/1.1 pool: ``requests``, and then
urllib3 with http.client under it, each cost more CPU per batch than the HTTP itself, and filedrop
needs a small part of HTTP (transport.py says which). Requests through a proxy go through urllib3's
pools, which know proxies' tunnels and authentication. What filedrop took from ``requests``, the
proxy and the CA bundle the environment names, is read once per base URL when the client is built
(`_Route`), the same way.
"""

from __future__ import annotations

import email.utils
import functools
import http.client
import ipaddress
import json
import logging
import math
import os
import re
import ssl
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any, NamedTuple, Protocol, Self
from urllib.parse import quote, unquote, urlencode, urlsplit

import certifi
import orjson
from urllib3 import BaseHTTPResponse, PoolManager, ProxyManager, Timeout
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NameResolutionError,
    NewConnectionError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.util import make_headers, parse_url
from urllib3.util.ssl_ import create_urllib3_context

from filedrop import __version__
from filedrop.api.transport import Answer, DirectPool, RequestNotSentError
from filedrop.api.types import (
    TERMINAL_STATUSES,
    AmbiguousSubmission,
    ApiError,
    ApiUnavailable,
    AuthError,
    BatchResult,
    Credentials,
    FailedInvoice,
    PollSchedule,
    StillPending,
    SucceededInvoice,
    parse_batch,
)
from filedrop.errors import ConfigError
from filedrop.logs import fields

__all__ = [
    "MAX_IDLE_S",
    "TERMINAL_STATUSES",
    "AmbiguousSubmission",
    "AmiliClient",
    "ApiError",
    "ApiUnavailable",
    "AuthError",
    "BatchResult",
    "ClientEvents",
    "Credentials",
    "EncodedInvoices",
    "FailedInvoice",
    "PollSchedule",
    "StillPending",
    "SucceededInvoice",
    "default_user_agent",
    "encode_invoices",
]

log = logging.getLogger("filedrop.api.client")

_RETRY_LATER = frozenset({429, 503})  # the server says it did not process the request
_POOL_SIZE = 16
_POOL_OPTIONS: dict[str, Any] = {
    "num_pools": 4,
    "maxsize": _POOL_SIZE,
    "block": True,  # more threads than connections wait for one rather than churn
    "retries": False,  # retries are ours (module docstring): urllib3 resends nothing itself
}
_JSON = "application/json; charset=utf-8"
#: A batch id as filedrop keeps one: the guide's UUID, or any id of that kind's characters (a
#: test server's, a future format's), never control characters or a page of text.
_BATCH_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z._:-]{0,127}")
_FORM = "application/x-www-form-urlencoded"
_EXCERPT_CHARS = 200
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
MAX_IDLE_S = 15.0
"""A kept-alive connection idle longer than this is closed rather than used (load balancers
commonly drop idle connections after 60 s or more, some after 30 s)."""


# ---------------------------------------------------------------------------------------- client


@dataclass(frozen=True)
class _Again:
    """Why one attempt deserves another: a transient failure, or a 401 to renew the token for.

    ``kind`` is the reason as a short fixed name (``http_503``, ``read_timeout``), for counting.
    """

    reason: str
    kind: str
    retry_after_s: float | None = None
    renew_token: bool = False


class ClientEvents(Protocol):
    """What the client tells whoever counts its work (the metrics); it needs no answer.

    Each call returns at once and never raises: counting must not change what is sent.
    """

    def retrying(self, reason: str) -> None:
        """A request is tried again; ``reason`` is a short fixed name: ``http_429``,
        ``http_503``, ``http_502``, ``read_timeout``, ``connect``, ``connect_timeout``, ``tls``,
        ``not_sent`` (the connection closed before the request was written) or ``connection_lost``.
        """

    def token_obtained(self, lifetime_s: float) -> None:
        """A new access token was obtained, valid ``lifetime_s`` from now."""

    def token_failed(self, reason: str) -> None:
        """No token could be obtained; ``reason`` is the error's sentence (no secret in it)."""

    def unavailable(self, reason: str) -> None:
        """A request was given up: Amili could not be reached or kept failing (``reason``,
        the ``ApiUnavailable`` sentence)."""

    def answered(self) -> None:
        """Amili answered a request (whatever it said): it can be reached."""


class _NoEvents:
    """``ClientEvents`` for a client nobody counts."""

    def retrying(self, reason: str) -> None:
        pass

    def token_obtained(self, lifetime_s: float) -> None:
        pass

    def token_failed(self, reason: str) -> None:
        pass

    def unavailable(self, reason: str) -> None:
        pass

    def answered(self) -> None:
        pass


def default_user_agent() -> str:
    """``filedrop/<version> python/<x.y>``, so Amili can tell who calls (and which release)."""
    return f"filedrop/{__version__} python/{sys.version_info[0]}.{sys.version_info[1]}"


class AmiliClient:
    """Talks to Amili's collection API; safe to share between threads (one token, one pool).

    Every request has a connect and a read timeout. A ``429``/``503`` is retried (POST too)
    after ``Retry-After`` (capped at ``retry_after_max_s``) or an exponential backoff from
    ``backoff_initial_s``; other 5xx, lost connections and read timeouts are retried for GET
    only; a failed connect is retried for both, since nothing was sent. ``max_retries`` counts
    retries after the first attempt. The token renewal after a ``401`` is not one of them.

    ``url_origins`` says where the two base URLs came from (its caller knows, the client does
    not); a refused token or an unknown path adds it to its message.

    Connections are kept alive and shared by all requests; one idle longer than ``max_idle_s``
    (default `MAX_IDLE_S`) on the ``monotonic`` clock is closed instead of used (module docstring).

    ``events`` hears of every retry and every token, obtained or refused (``ClientEvents``);
    ``log_fields`` (such as the inbox) are added to the fields of its log lines. Once
    ``stopping`` says so, nothing is tried again: a request Amili refused (429, 503) ends as
    ``ApiUnavailable`` at once, or after the wait under way, so a stopping run is not held past
    its grace period by a backoff of minutes.
    """

    def __init__(
        self,
        *,
        auth_url: str,
        api_url: str,
        credentials: Credentials,
        connect_timeout_s: float,
        read_timeout_s: float,
        token_margin_s: float = 60.0,
        max_retries: int = 5,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], object] = time.sleep,
        user_agent: str | None = None,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        retry_after_max_s: float = 60.0,
        url_origins: str = "",
        max_idle_s: float = MAX_IDLE_S,
        monotonic: Callable[[], float] = time.monotonic,
        events: ClientEvents | None = None,
        log_fields: dict[str, str] | None = None,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self._events: ClientEvents = events or _NoEvents()
        self._stopping = stopping
        self._log_fields = dict(log_fields or {})
        self._auth_url = _base_url(auth_url, setting="FILEDROP_AUTH_URL")
        self._api_url = _base_url(api_url, setting="FILEDROP_API_URL")
        self._credentials = credentials
        self._timeout = Timeout(connect=connect_timeout_s, read=read_timeout_s)
        self._token_margin_s = token_margin_s
        self._max_retries = max_retries
        self._clock = clock
        self._sleep = sleep
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._retry_after_max_s = retry_after_max_s
        self._url_origins = url_origins

        self._token_lock = threading.Lock()
        self._token: str | None = None
        self._token_renew_at = 0.0

        self._headers = {
            "User-Agent": user_agent or default_user_agent(),
            "Accept": "application/json",
            "Accept-Encoding": "gzip, deflate",
        }
        self._pools = _Pools(
            max_idle_s=max_idle_s,
            monotonic=monotonic,
            opening_wait_s=connect_timeout_s + read_timeout_s,
        )
        self._auth = _Route(self._auth_url, self._pools)
        self._api = _Route(self._api_url, self._pools)

        for url in (self._auth_url, self._api_url):
            parts = urlsplit(url)
            if parts.scheme == "http" and parts.hostname not in _LOOPBACK_HOSTS:
                log.warning(
                    "%s is plain http: credentials and invoices travel unencrypted",
                    url,
                    extra=fields("plain_http", **self._log_fields),
                )

    @property
    def log_fields(self) -> dict[str, str]:
        """What every log line about this client's work carries (such as its inbox)."""
        return self._log_fields

    def __repr__(self) -> str:
        return (
            f"AmiliClient(auth_url={self._auth_url!r}, api_url={self._api_url!r}, "
            f"client_id={self._credentials.client_id!r})"
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections."""
        self._pools.close()

    # ------------------------------------------------------------------------------ public calls

    def authenticate(self) -> None:
        """Get (or reuse) a token now, so that refused credentials fail before anything is sent.

        Raises `AuthError` for refused credentials and `ApiUnavailable` when Amili is out of reach.
        """
        self._get_token()

    def create_invoices(self, org_id: str, invoices: list[dict[str, Any]] | EncodedInvoices) -> str:
        """POST one batch of invoices (as dicts, or already `encode_invoices`-d); return its
        batch id.

        Raises `AmbiguousSubmission` when the invoices may have reached Amili without us learning
        the batch id; every other error means they certainly did not.
        """
        # Encoded before anything is sent: a NaN amount must fail locally, not as bad JSON.
        encoded = invoices if isinstance(invoices, EncodedInvoices) else encode_invoices(invoices)
        path = f"/collection/v1/orgs/{quote(org_id, safe='')}/invoices"
        resp = self._call(
            "POST", self._api, path, may_resend=False, body=encoded.body, content_type=_JSON
        )
        try:
            batch_id = _json_of(resp)["data"]["batchId"]
        except (ValueError, KeyError, TypeError):
            batch_id = None
        # An id of control characters or of a page's length is no batch id: kept, it went
        # into outcomes and 'filedrop status' as it was (an escape sequence, a forged line).
        if not isinstance(batch_id, str) or not _BATCH_ID.fullmatch(batch_id):
            raise AmbiguousSubmission(
                method="POST",
                path=path,
                reason=f"Amili answered HTTP {resp.status} without a readable batchId",
            )
        log.debug("POST %s: %d invoices accepted as batch %s", path, encoded.count, batch_id)
        return batch_id

    def get_batch(self, batch_id: str, *, within_s: float | None = None) -> BatchResult:
        """Read a batch once (retried on transient errors, as a GET may be); ``within_s``
        bounds the retries' waits, so that a poll keeps to the time its batch has left."""
        path = f"/collection/v1/batches/{quote(batch_id, safe='')}"
        resp = self._call("GET", self._api, path, may_resend=True, within_s=within_s)
        try:
            result = parse_batch(_json_of(resp)["data"])
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ApiError(
                "GET", path, resp.status, "the answer is not the documented batch JSON"
            ) from None
        # Another batch's results, taken for this one's, would settle its invoices wrongly. A
        # UUID in other capitals or with spaces around it is the same one.
        named = result.batch_id.strip()
        if named and named.lower() != batch_id.strip().lower():
            shown = named if len(named) <= 60 else f"{named[:40]}..."
            raise ApiError("GET", path, resp.status, f"the answer is about batch {shown}")
        log.debug("GET %s: %s", path, result.status)
        return result

    # --------------------------------------------------------------------------------- the token

    def _get_token(self, *, within_s: float | None = None) -> str:
        """The cached token, fetched under the lock so that concurrent callers share one request;
        ``within_s`` bounds a fetch's retries, as the caller's own are (a poll's)."""
        with self._token_lock:
            if self._token is None or self._clock() >= self._token_renew_at:
                try:
                    self._token, self._token_renew_at = self._fetch_token(within_s=within_s)
                except (AuthError, ApiError, ApiUnavailable) as exc:
                    self._events.token_failed(str(exc))
                    raise
            return self._token

    def _forget_token(self, token: str) -> None:
        """Drop a token the API refused, unless another thread already replaced it."""
        with self._token_lock:
            if self._token == token:
                self._token = None

    def _fetch_token(self, *, within_s: float | None = None) -> tuple[str, float]:
        url = self._auth_url + "/token"
        form = {
            "grant_type": "client_credentials",
            "client_id": self._credentials.client_id,
            "client_secret": self._credentials.client_secret,
        }
        # Asking for a token twice is harmless, so this POST may be resent like a GET.
        resp = self._call(
            "POST",
            self._auth,
            "/token",
            may_resend=True,
            body=urlencode(form).encode("ascii"),
            content_type=_FORM,
            authorize=False,
            within_s=within_s,
        )
        if resp.status in (400, 401):
            raise AuthError(
                where=f"POST {url}",
                status=resp.status,
                client_id=self._credentials.client_id,
                detail=_oauth_error(resp, redact=self._redact),
                urls=self._url_origins,
            )
        path = self._auth.prefix + "/token"
        if not 200 <= resp.status < 300:
            raise ApiError("POST", path, resp.status, self._excerpt(resp), urls=self._url_origins)
        try:
            data = orjson.loads(resp.data)
            token = data["access_token"]
        except (ValueError, KeyError, TypeError):
            token = None
        if not isinstance(token, str) or not token:
            raise ApiError("POST", path, resp.status, "the answer has no access_token")
        if not token.isascii() or not token.isprintable() or " " in token:
            # It goes into every request's Authorization header, as it is.
            raise ApiError("POST", path, resp.status, "the access_token holds spaces or symbols")
        now = self._clock()
        # expires_in is relative, so a skewed local clock cannot make us keep a dead token or
        # drop a live one; expires_on (absolute) is the fallback.
        lifetime_s = _number(data.get("expires_in"))
        if lifetime_s is None and (expires_on := _number(data.get("expires_on"))) is not None:
            lifetime_s = expires_on - now
        if lifetime_s is None:
            log.debug("token answer gave no lifetime; assuming 300 s")
            lifetime_s = 300.0
        lifetime_s = max(lifetime_s, 0.0)  # 0: use it for this request, fetch anew next time
        # A margin larger than half the lifetime would fetch a new token on every call.
        margin_s = min(self._token_margin_s, lifetime_s / 2)
        log.info(
            "obtained an access token valid for %.0f s",
            lifetime_s,
            extra=fields("token_obtained", **self._log_fields),
        )
        self._events.token_obtained(lifetime_s)
        return token, now + lifetime_s - margin_s

    # ---------------------------------------------------------------------------- the HTTP loop

    def _call(
        self,
        method: str,
        route: _Route,
        path: str,
        *,
        may_resend: bool,
        authorize: bool = True,
        body: bytes | None = None,
        content_type: str | None = None,
        within_s: float | None = None,
    ) -> Answer | BaseHTTPResponse:
        """Send ``path`` under ``route``'s base URL with the retry rules; return a 2xx answer
        (for /token also a 3xx/4xx one), its body read.

        ``may_resend`` is False for a POST that creates something: once it may have been
        received it must not be sent again. ``within_s``: no retry is begun after that long.
        """
        give_up_at = None if within_s is None else time.monotonic() + within_s
        headers = dict(self._headers)
        if content_type is not None:
            headers["Content-Type"] = content_type
        attempt = 1
        renewed = False
        while True:
            left_s = None if give_up_at is None else max(give_up_at - time.monotonic(), 0.0)
            token = self._get_token(within_s=left_s) if authorize else None
            outcome = self._attempt(
                method, route, path, token=token, may_resend=may_resend, body=body, headers=headers
            )
            if not isinstance(outcome, _Again):
                self._events.answered()
                return outcome
            path_shown = route.prefix + path
            if outcome.renew_token and token is not None:
                if renewed:
                    raise AuthError(
                        where=f"{method} {path_shown}",
                        status=401,
                        client_id=self._credentials.client_id,
                        detail="a freshly issued access token was refused",
                        urls=self._url_origins,
                    )
                log.info(
                    "%s %s: HTTP 401, renewing the access token once",
                    method,
                    path_shown,
                    extra=fields("token_refused", **self._log_fields),
                )
                self._forget_token(token)
                renewed = True
                continue
            if attempt > self._max_retries:
                where = f"{method} {path_shown}"
                raise self._unavailable(where, outcome.reason, attempt)
            if self._stopping():
                raise self._given_up(method, path_shown, outcome.reason, attempt)
            if outcome.retry_after_s is not None:
                delay_s = min(outcome.retry_after_s, self._retry_after_max_s)
            else:
                delay_s = min(self._backoff_initial_s * 2 ** (attempt - 1), self._backoff_max_s)
            if give_up_at is not None and time.monotonic() + delay_s >= give_up_at:
                where = f"{method} {path_shown}"
                raise self._unavailable(where, outcome.reason, attempt)
            log.warning(
                "%s %s: %s; retrying in %.1f s (attempt %d of %d)",
                method,
                path_shown,
                outcome.reason,
                delay_s,
                attempt + 1,
                self._max_retries + 1,
                extra=fields(
                    "retry",
                    **self._log_fields,
                    method=method,
                    path=path_shown,
                    reason=outcome.kind,
                    attempt=attempt + 1,
                    delay_s=delay_s,
                ),
            )
            self._events.retrying(outcome.kind)
            self._sleep(delay_s)
            if self._stopping():
                raise self._given_up(method, path_shown, outcome.reason, attempt)
            attempt += 1

    def _unavailable(self, where: str, reason: str, attempts: int) -> ApiUnavailable:
        """The error of a request given up, told to the events first: a daemon whose every
        POST failed for an hour said it was ready all along, its token still valid."""
        exc = ApiUnavailable(where=where, reason=reason, attempts=attempts)
        self._events.unavailable(str(exc))
        return exc

    @staticmethod
    def _given_up(method: str, path: str, reason: str, attempts: int) -> ApiUnavailable:
        return ApiUnavailable(
            where=f"{method} {path}",
            reason=f"{reason}; not tried again, as filedrop is stopping",
            attempts=attempts,
        )

    def _attempt(
        self,
        method: str,
        route: _Route,
        path: str,
        *,
        token: str | None,
        may_resend: bool,
        body: bytes | None,
        headers: dict[str, str],
    ) -> Answer | BaseHTTPResponse | _Again:
        """One request: its final answer, a reason to try again, or an error raised."""
        if token is not None:
            headers = {**headers, "Authorization": f"Bearer {token}"}
        started = time.monotonic()
        _written.whole = False
        try:
            resp = route.open(method, path, body=body, headers=headers, timeout=self._timeout)
        except (HTTPError, OSError) as exc:
            sent, reason, kind = self._classify(exc)
            if sent and not may_resend:
                shown = route.prefix + path
                raise AmbiguousSubmission(method=method, path=shown, reason=reason) from None
            return _Again(reason, kind)
        path = route.prefix + path  # as the messages show it
        status = resp.status
        log.debug("%s %s -> HTTP %d in %.3f s", method, path, status, time.monotonic() - started)
        if status in _RETRY_LATER:
            header = resp.headers.get("Retry-After")
            return _Again(
                f"HTTP {status}", f"http_{status}", _retry_after_s(header, now=self._clock())
            )
        if 300 <= status < 400 and not may_resend:
            # A 302/303 after a POST usually means it was processed: never assume it was not.
            reason = f"Amili answered HTTP {status}, a redirect (check FILEDROP_API_URL)"
            raise AmbiguousSubmission(method=method, path=path, reason=reason)
        if status >= 500:
            if not may_resend:
                reason = f"Amili answered HTTP {status}"
                raise AmbiguousSubmission(method=method, path=path, reason=reason)
            return _Again(f"HTTP {status}", f"http_{status}")
        if status == 401 and token is not None:
            return _Again("HTTP 401", "http_401", renew_token=True)
        if 200 <= status < 300 or token is None:
            return resp  # /token tells AuthError from ApiError itself
        raise ApiError(method, path, status, self._excerpt(resp), urls=self._url_origins)

    def _classify(self, exc: HTTPError | OSError) -> tuple[bool, str, str]:
        """(may the request have been sent?, reason in words, its short name) for a transport
        failure, as urllib3 raises it with its retries off.

        A proxy that could not be reached (urllib3's ``ProxyError``) counts as a lost connection,
        the cautious reading.
        """
        if isinstance(exc, ReadTimeoutError):
            return True, f"no answer within {self._timeout.read_timeout:g} s", "read_timeout"
        # urllib3 calls any TLS error an SSLError, also one while reading the answer to a
        # request written whole (through a proxy): that request may have been acted on.
        if isinstance(exc, SSLError) and not getattr(_written, "whole", False):
            return False, "the TLS handshake failed", "tls"
        if RequestNotSentError.found_in(exc):
            return False, "the connection was closed before the request was sent", "not_sent"
        if isinstance(exc, NewConnectionError):  # before its base class ConnectTimeoutError
            if isinstance(exc, NameResolutionError):
                why = "the host name could not be resolved"
            else:
                os_error = exc.__cause__ or exc.__context__
                why = str(getattr(os_error, "strerror", None) or "no connection").lower()
            return False, f"could not connect: {why}", "connect"
        if isinstance(exc, ConnectTimeoutError):
            connect_s = self._timeout.connect_timeout
            return False, f"no connection within {connect_s:g} s", "connect_timeout"
        return True, "the connection was lost", "connection_lost"

    def _redact(self, text: str) -> str:
        """Remove the secret and the current token from text that came from the network."""
        for secret in (self._credentials.client_secret, self._token):
            if secret:
                text = text.replace(secret, "***")
        return text

    def _excerpt(self, resp: Answer | BaseHTTPResponse) -> str:
        text = self._redact(" ".join(_body_text(resp).split()))  # before cutting: no half secret
        if len(text) > _EXCERPT_CHARS:
            text = text[: _EXCERPT_CHARS - 1] + "…"
        return text


# ------------------------------------------------------------------------------------- transport


#: Whether this thread's request under way was written whole (``whole``): set by the
#: write-aware connections urllib3 uses for proxied requests, read when a failure is classified.
_written = threading.local()


class _WriteAwareMixin:
    """A connection that remembers whether writing its request failed, and since when it idles.

    urllib3 swallows a failed write and reads on, because a server may answer early and close;
    that answer is kept. When no answer comes either, the failure is `RequestNotSentError` instead
    of a lost connection: an incomplete request cannot have been acted on, so it may be resent.
    (For the proxied requests urllib3 sends; transport.py does the same for the rest.)
    """

    idle_since: float | None = None  # monotonic seconds when it went back to the pool
    _write_error: OSError | None = None

    def request(self, *args: Any, **kwargs: Any) -> None:
        self._write_error = None
        try:
            super().request(*args, **kwargs)  # type: ignore[misc]
        except OSError as exc:
            self._write_error = exc
        else:
            _written.whole = True

    def getresponse(self) -> Any:
        try:
            return super().getresponse()  # type: ignore[misc]
        except (OSError, http.client.HTTPException) as exc:
            if self._write_error is not None:
                raise RequestNotSentError(
                    f"writing the request failed: {self._write_error}"
                ) from exc
            raise


class _WriteAwareHTTPConnection(_WriteAwareMixin, HTTPConnection):
    pass


class _WriteAwareHTTPSConnection(_WriteAwareMixin, HTTPSConnection):
    pass


class EncodedInvoices(NamedTuple):
    """A batch's POST body, encoded ahead of `AmiliClient.create_invoices`, and how many
    invoices it holds.

    Encoding first lets the caller drop the batch's dicts as soon as they are bytes, and learn of
    a value JSON cannot hold (NaN) before it hands anything to the client.
    """

    body: bytes
    count: int


def encode_invoices(invoices: list[dict[str, Any]]) -> EncodedInvoices:
    """The body that POSTs ``invoices`` as one batch; ``ValueError`` for none, or for a NaN or
    an infinity in them (`encode_json`)."""
    if not invoices:
        msg = "a batch needs at least one invoice"
        raise ValueError(msg)
    return EncodedInvoices(encode_json({"invoices": invoices}), len(invoices))


def encode_json(document: Any) -> bytes:
    """``document`` as compact UTF-8 JSON; ``ValueError`` for NaN or an infinity.

    orjson does the work (several times faster than ``json`` for a batch of invoices) and writes
    every float as its shortest round-trip form, as ``json`` does, so amounts stay exact. It
    silently writes NaN and infinities as ``null`` and refuses what it does not know (numpy
    scalars, huge integers, lone surrogates): a body holding ``null``, or one orjson refused,
    is encoded again by ``json``, which raises for non-finite numbers and what cannot be UTF-8,
    as before. Invoice bodies seldom hold ``null``, so that second pass is rare.
    """
    try:
        body = orjson.dumps(document)
    except orjson.JSONEncodeError:
        body = b"null"
    if b"null" not in body:
        return body
    text = json.dumps(document, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8")


class _RetiringPoolMixin:
    """A connection pool that retires idle connections and opens new ones one at a time.

    urllib3's own check before reuse discards a connection that is readable while idle (closed by
    the server, or junk). On top of it, one idle longer than ``max_idle_s`` is closed before use.
    A new connection is opened only by the thread holding ``_opening``, which it keeps until the
    connection's first exchange ends: a burst of simultaneous connects overflows a small listen
    backlog, and the server then resets connections after the request was written.
    """

    def __init__(
        self,
        *args: Any,
        max_idle_s: float,
        monotonic: Callable[[], float],
        opening_wait_s: float,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]
        self._max_idle_s = max_idle_s
        self._monotonic = monotonic
        self._opening_wait_s = opening_wait_s
        self._opening = threading.Lock()
        self._opener: int | None = None  # the thread holding _opening

    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)  # type: ignore[misc]
        idle_since = getattr(conn, "idle_since", None)
        if conn.sock is not None and idle_since is not None:
            idle_s = self._monotonic() - idle_since
            if idle_s > self._max_idle_s:
                log.debug("closing a connection idle for %.1f s instead of using it", idle_s)
                conn.close()
        # Bounded, so that a lock somehow never released costs a wait, not a hang.
        if conn.sock is None and self._opening.acquire(timeout=self._opening_wait_s):
            self._opener = threading.get_ident()
        return conn

    def _put_conn(self, conn: Any) -> None:
        if conn is not None:
            conn.idle_since = self._monotonic()
        if self._opener == threading.get_ident():
            self._opener = None
            self._opening.release()
        super()._put_conn(conn)  # type: ignore[misc]


class _RetiringHTTPPool(_RetiringPoolMixin, HTTPConnectionPool):
    ConnectionCls = _WriteAwareHTTPConnection


class _RetiringHTTPSPool(_RetiringPoolMixin, HTTPSConnectionPool):
    ConnectionCls = _WriteAwareHTTPSConnection


@functools.cache
def _socks_pools() -> tuple[type, type]:
    """The retiring pools of write-aware connections through a SOCKS proxy, (http, https):
    without them, urllib3's own would leave a TLS error after a POST went out whole reading as
    a failed handshake, and the POST would go again. Made on first use: PySocks is optional."""
    from urllib3.contrib.socks import (
        SOCKSConnection,
        SOCKSHTTPConnectionPool,
        SOCKSHTTPSConnection,
        SOCKSHTTPSConnectionPool,
    )

    class Plain(_WriteAwareMixin, SOCKSConnection):
        pass

    class Tls(_WriteAwareMixin, SOCKSHTTPSConnection):
        pass

    class PlainPool(_RetiringPoolMixin, SOCKSHTTPConnectionPool):
        ConnectionCls = Plain

    class TlsPool(_RetiringPoolMixin, SOCKSHTTPSConnectionPool):
        ConnectionCls = Tls

    return PlainPool, TlsPool


class _Pools:
    """The client's connection pools: transport.py's `DirectPool` per server reached directly,
    one urllib3 manager per proxy.

    Every manager makes `_RetiringPoolMixin` pools of write-aware connections, a SOCKS proxy's
    too (its own classes, made when PySocks is there). ``close`` closes them all.
    """

    def __init__(
        self,
        *,
        max_idle_s: float,
        monotonic: Callable[[], float],
        opening_wait_s: float,
    ) -> None:
        self._pool_options = {
            "max_idle_s": max_idle_s,
            "monotonic": monotonic,
            "opening_wait_s": opening_wait_s,
        }
        self._tls: dict[str, Any] | None = None
        self._direct_tls: ssl.SSLContext | None = None
        self._proxied: dict[str, PoolManager] = {}
        self._direct: dict[tuple[str, str, int], DirectPool] = {}

    def tls(self, *, url: str) -> dict[str, Any]:
        """urllib3 pool options that check HTTPS certificates against `_ca_bundle`, loaded once
        rather than for every new connection; ``url`` is named if the bundle cannot be read."""
        if self._tls is None:
            self._tls = {"ssl_context": _load_ca_bundle(create_urllib3_context(), url=url)}
        return self._tls

    def direct(self, url: str) -> DirectPool:
        """The pool for requests straight to ``url``'s server, shared by the base URLs on it."""
        parts = urlsplit(url)
        scheme, host = parts.scheme, parts.hostname or ""
        port = parts.port or (443 if scheme == "https" else 80)
        key = (scheme, host, port)
        if key not in self._direct:
            tls = None
            if scheme == "https":
                if self._direct_tls is None:
                    # Certificates and host names checked by the ssl module itself, TLS 1.2 at
                    # least, as urllib3 would.
                    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                    context.minimum_version = ssl.TLSVersion.TLSv1_2
                    self._direct_tls = _load_ca_bundle(context, url=url)
                tls = self._direct_tls
            self._direct[key] = DirectPool(
                host=host,
                port=port,
                tls=tls,
                size=_POOL_SIZE,
                **self._pool_options,
            )
        return self._direct[key]

    def through(self, proxy: str, *, url: str) -> PoolManager:
        """The manager for requests through ``proxy`` (an HTTP(S) or SOCKS proxy URL)."""
        if proxy in self._proxied:
            return self._proxied[proxy]
        tls = self.tls(url=url) if url.startswith("https:") else {}
        parts = urlsplit(proxy)
        username = unquote(parts.username or "")
        password = unquote(parts.password or "")
        if parts.scheme.lower().startswith("socks"):
            try:
                from urllib3.contrib.socks import SOCKSProxyManager
            except ImportError:
                msg = (
                    f"The environment names the SOCKS proxy {parts.hostname}:{parts.port} for "
                    f"{url}, which needs PySocks (pip install pysocks); install it, or name the "
                    "host in NO_PROXY to connect directly."
                )
                raise ConfigError(msg) from None
            manager: PoolManager = self._retiring(
                SOCKSProxyManager(
                    proxy,
                    username=username or None,
                    password=password or None,
                    **_POOL_OPTIONS,
                    **tls,
                ),
                _socks_pools(),
            )
        else:
            auth = make_headers(proxy_basic_auth=f"{username}:{password}") if username else None
            manager = self._retiring(
                ProxyManager(proxy, proxy_headers=auth, **_POOL_OPTIONS, **tls)
            )
        self._proxied[proxy] = manager
        return manager

    def close(self) -> None:
        for pool in self._direct.values():
            pool.close()
        for manager in self._proxied.values():
            manager.clear()

    def _retiring(
        self,
        manager: PoolManager,
        pools: tuple[type, type] = (_RetiringHTTPPool, _RetiringHTTPSPool),
    ) -> PoolManager:
        http_pool, https_pool = pools
        manager.pool_classes_by_scheme = {  # type: ignore[assignment]
            "http": functools.partial(http_pool, **self._pool_options),
            "https": functools.partial(https_pool, **self._pool_options),
        }
        return manager


class _Route:
    """How the requests under one base URL travel: straight to its pool, or through the proxy the
    environment names for it. Both are decided once, when the client is built.

    ``prefix`` is the base URL's own path (often empty), which every request path follows.
    """

    def __init__(self, base: str, pools: _Pools) -> None:
        self._base = base
        parts = parse_url(base)  # urllib3's reading: what it would send for this URL
        self.prefix = (parts.path or "").rstrip("/")
        proxy = _environment_proxy(base)
        self._manager: PoolManager | None = None
        self._pool: DirectPool | None = None
        if proxy is not None:
            self._manager = pools.through(proxy, url=base)
        else:
            self._pool = pools.direct(base)

    def open(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None,
        headers: dict[str, str],
        timeout: Timeout,
    ) -> Answer | BaseHTTPResponse:
        """Send one request for ``path`` and read its whole answer; redirects are not followed."""
        if self._pool is not None:
            return self._pool.exchange(
                method,
                self.prefix + path,
                body=body,
                headers=headers,
                connect_timeout_s=timeout.connect_timeout,
                read_timeout_s=timeout.read_timeout,
            )
        assert self._manager is not None
        return self._manager.urlopen(
            method, self._base + path, body=body, headers=headers, timeout=timeout, redirect=False
        )


def _load_ca_bundle(context: ssl.SSLContext, *, url: str) -> ssl.SSLContext:
    """``context``, checking certificates against `_ca_bundle`; ``url`` is named if the
    bundle cannot be read."""
    variable, bundle = _ca_bundle()
    try:
        if Path(bundle).is_dir():
            context.load_verify_locations(capath=bundle)
        else:
            context.load_verify_locations(cafile=bundle)
    except OSError as exc:  # ssl.SSLError too
        msg = (
            f"{variable} is {bundle!r}, which holds no readable certificates for {url} "
            f"({exc}); point it at a PEM file or folder, or unset it to use certifi's."
        )
        raise ConfigError(msg) from None
    return context


def _ca_bundle() -> tuple[str, str]:
    """(where it came from, path): ``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE`` (a file or a
    folder), as requests read them, else certifi's bundle."""
    for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        if path := os.environ.get(variable):
            return variable, path
    return "certifi's bundle", certifi.where()


def _environment_proxy(url: str) -> str | None:
    """The proxy URL the environment names for ``url`` (``HTTPS_PROXY``, ``HTTP_PROXY``,
    ``ALL_PROXY``, lower case first; the system's settings on Windows and macOS), or None when
    there is none or ``NO_PROXY`` exempts the host. Read as requests read it."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if _proxy_bypassed(host, parts.port):
        return None
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy:
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


def _proxy_bypassed(host: str, port: int | None) -> bool:
    """Whether ``NO_PROXY`` exempts ``host``: a host name or one of its parent domains (with or
    without the port), as the standard library decides, or for an IP address also a network
    it lies in (``10.0.0.0/8``), which the standard library does not know."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        no_proxy = os.environ.get("no_proxy") or os.environ.get("NO_PROXY") or ""
        for entry in filter(None, no_proxy.replace(" ", "").split(",")):
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
    try:
        return bool(urllib.request.proxy_bypass(f"{host}:{port}" if port else host))
    except (TypeError, OSError):
        return False


def _charset_of(resp: Answer | BaseHTTPResponse) -> str | None:
    """The charset the answer's Content-Type names, if any."""
    for parameter in (resp.headers.get("Content-Type") or "").split(";")[1:]:
        key, _, value = parameter.partition("=")
        if key.strip().lower() == "charset" and value.strip(" \"'"):
            return value.strip(" \"'")
    return None


def _body_text(resp: Answer | BaseHTTPResponse) -> str:
    """The answer's body as text, in the charset it declares (UTF-8 when none or unknown)."""
    try:
        return resp.data.decode(_charset_of(resp) or "utf-8", errors="replace")
    except LookupError:
        return resp.data.decode("utf-8", errors="replace")


# --------------------------------------------------------------------------------------- helpers


def _base_url(url: str, *, setting: str) -> str:
    """The base URL without its trailing slash; anything that could not be sent to is refused
    here, before a request, so that no invoice is ever left in doubt by a typo."""
    if any(char.isspace() or not char.isprintable() for char in url):
        msg = f"{setting} is {url!r}, which holds a space or control character; remove it."
        raise ConfigError(msg)
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises for a port that is not a number from 0 to 65535
    except ValueError:
        parts = parts._replace(netloc="")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        msg = f"{setting} is {url!r}, which is not an http(s) URL; set it to e.g. https://api.amili.no."
        raise ConfigError(msg)
    if parts.query or parts.fragment:
        msg = f"{setting} is {url!r}; a base URL takes no query or fragment."
        raise ConfigError(msg)
    return url.rstrip("/")


def _number(value: object) -> float | None:
    """A JSON number, or a numeric string (some token services send strings)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _retry_after_s(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or HTTP date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    seconds = _number(value)
    if seconds is None:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - now
    return max(0.0, seconds)


def _json_of(resp: Answer | BaseHTTPResponse) -> Any:
    """An answer's JSON: UTF-8, as JSON is, or else the charset its Content-Type names. A 202
    whose batch id came in ISO-8859-1 (an "å" in its status text) was read as no batch id,
    and its invoices UNKNOWN. Raises ValueError when it is neither."""
    try:
        return orjson.loads(resp.data)
    except ValueError:
        named = _charset_of(resp)
        if named is None or named.lower().replace("_", "-") in ("utf-8", "utf8"):
            raise
        try:
            text = resp.data.decode(named)
        except (LookupError, UnicodeDecodeError):
            raise ValueError(named) from None
        return orjson.loads(text)


def _oauth_error(resp: Answer | BaseHTTPResponse, *, redact: Callable[[str], str]) -> str:
    """The OAuth ``error`` code of a refused token request, e.g. ``invalid_client``."""
    try:
        code = orjson.loads(resp.data).get("error")
    except (ValueError, AttributeError):
        return ""
    return redact(str(code))[:60] if code else ""
