"""A local stand-in for Amili's collection API, for trying mappings and for tests.

Nothing sent here reaches Amili. It serves the three documented routes on one base URL (auth base
== API base), keeps every batch QUEUED for a random delay, then ends it SUCCESS, PARTIAL or FAILED
by per-invoice validation close to what Amili does (sandbox_rules.py). Knobs let tests make it
misbehave: random ``429``/``503`` answers, POSTs processed whose answer is never sent, and
deterministic `Sandbox.fail_next` / `Sandbox.lose_next_response` / `Sandbox.stall_next`. The HTTP
server itself is in sandbox_http.py.

Where the guide is silent we chose (and tests pin): a created batch answers ``202``; error bodies
are ``{"message": ...}`` (OAuth-style ``{"error": ...}`` at /token); ``orgId`` must be a UUID;
faults and rates apply to the API routes, not to /token, unless ``fail_next(..., route="token")``.
The choices about invoices themselves are listed in sandbox_rules.py.
"""

from __future__ import annotations

import hmac
import json
import logging
import random
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlsplit

from filedrop.sandbox.rules import CURRENCIES, DEBTOR_TYPES, validate_invoice
from filedrop.sandbox.transport import JsonServer, Reply, error_reply

__all__ = [
    "CURRENCIES",
    "DEBTOR_TYPES",
    "Counters",
    "Sandbox",
    "SandboxOptions",
    "serve",
    "validate_invoice",
]

log = logging.getLogger("filedrop.sandbox")

_TOKEN_PATH = re.compile(r"^/token$")
_INVOICES_PATH = re.compile(r"^/collection/v1/orgs/([^/]+)/invoices$")
_BATCH_PATH = re.compile(r"^/collection/v1/batches/([^/]+)$")
_ROUTES = ("api", "invoices", "batches", "token")


@dataclass(kw_only=True)
class SandboxOptions:
    """How the sandbox behaves; tests may change these while it runs."""

    client_id: str | None = None
    """Accept only this client id at /token (None: any)."""
    client_secret: str | None = field(default=None, repr=False)
    """Accept only this secret at /token (None: any)."""
    delay_s: tuple[float, float] = (0.5, 3.0)
    """A batch stays QUEUED for a random time in this range; (0, 0): terminal at the first poll."""
    token_lifetime_s: float = 3600
    rate_429: float = 0
    """Share of API requests answered 429 (not processed), with ``Retry-After: retry_after_s``."""
    rate_503: float = 0
    """Share of API requests answered 503 (not processed), with ``Retry-After: retry_after_s``."""
    rate_lost_response: float = 0
    """Share of invoice POSTs processed whose answer is never sent (the connection is dropped)."""
    retry_after_s: float = 1
    seed: int | None = None
    """Seed for delays, faults and ids, for reproducible runs."""
    max_invoices_per_batch: int | None = None
    """Refuse bigger batches with 400 (None: no limit; the guide names none)."""


@dataclass(frozen=True)
class Counters:
    """What reached the sandbox: requests (faulted ones too) and invoices it processed."""

    token_requests: int
    posts: int
    polls: int
    invoices_received: int
    invoice_numbers_repeated: tuple[str, ...]


@dataclass
class _Fault:
    kind: str  # "fail": answer status unprocessed; "stall": answer late; "lose": never answer
    route: str
    count: int
    status: int = 0
    retry_after: str | None = None
    stall_s: float = 0.0


@dataclass
class _Batch:
    batch_id: str
    org_id: str
    created_by: str
    created_at: float
    ready_at: float
    succeeded: list[dict[str, Any]]
    failed: list[dict[str, Any]]


def _iso_time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Sandbox:
    """The sandbox server, in-process: ``with Sandbox(options) as sandbox: ... sandbox.url``."""

    def __init__(
        self,
        options: SandboxOptions | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.options = options or SandboxOptions()
        self._host = host
        self._requested_port = port
        self._clock = clock
        self._lock = threading.Lock()
        self._rng = random.Random(self.options.seed)  # noqa: S311 - test data, not crypto
        self._tokens: dict[str, tuple[str, float]] = {}  # token -> (client id, expires at)
        self._batches: dict[str, _Batch] = {}
        self._cases: dict[str, set[str]] = {}  # org id -> invoice numbers with a case
        self._received: list[str] = []
        self._received_by_org: dict[str, list[str]] = {}
        self._invoices_received = 0
        self._token_requests = self._posts = self._polls = 0
        self._case_seq = 0
        self._posts_on_reused_connections = 0
        self._faults: list[_Fault] = []
        self._user_agents: set[str] = set()
        self._stopping = threading.Event()
        self._server: JsonServer | None = None
        self._port: int | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------- lifecycle

    def start(self) -> Self:
        """Listen (port 0 picks a free port) and serve in a daemon thread."""
        if self._server is not None:  # already serving: ``with Sandbox().start() as s`` is fine
            return self
        self._server = JsonServer(
            (self._host, self._requested_port), answer=self._handle, stopping=self._stopping
        )
        self._port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"filedrop-sandbox-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, drop open connections, and join the thread."""
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port it listens on (still known after ``stop``, for "nothing there" tests)."""
        if self._port is None:
            msg = "the sandbox was never started"
            raise RuntimeError(msg)
        return self._port

    @property
    def url(self) -> str:
        """Base URL of both auth and API, e.g. ``http://127.0.0.1:54321``."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    # ------------------------------------------------------------------------ what tests read

    def counters(self) -> Counters:
        with self._lock:
            seen: set[str] = set()
            repeated: dict[str, None] = {}
            for number in self._received:
                if number in seen:
                    repeated[number] = None
                seen.add(number)
            return Counters(
                token_requests=self._token_requests,
                posts=self._posts,
                polls=self._polls,
                invoices_received=self._invoices_received,
                invoice_numbers_repeated=tuple(repeated),
            )

    def received_invoice_numbers(self) -> list[str]:
        """Every invoice number processed, in order, repeats included."""
        with self._lock:
            return list(self._received)

    def received_by_org(self) -> dict[str, list[str]]:
        """Every invoice number processed, by the organisation it was posted to, in order."""
        with self._lock:
            return {org: list(numbers) for org, numbers in self._received_by_org.items()}

    def issued_tokens(self) -> list[str]:
        """Every access token handed out (so tests can check none leaks)."""
        with self._lock:
            return list(self._tokens)

    def posts_on_reused_connections(self) -> int:
        """Invoice POSTs that arrived on a kept-alive connection rather than a new one."""
        with self._lock:
            return self._posts_on_reused_connections

    def user_agents(self) -> set[str]:
        with self._lock:
            return set(self._user_agents)

    # ----------------------------------------------------------------------- fault injection

    def fail_next(
        self, status: int, *, count: int = 1, retry_after: str | None = None, route: str = "api"
    ) -> None:
        """Answer the next ``count`` requests on ``route`` with ``status``, unprocessed.

        ``route``: "api" (invoice POSTs and batch GETs alike), "invoices", "batches" or "token".
        """
        fault = _Fault("fail", route, count, status=status, retry_after=retry_after)
        self._add_fault(fault)

    def lose_next_response(self, *, count: int = 1) -> None:
        """Process the next ``count`` invoice POSTs, then drop the connection unanswered."""
        self._add_fault(_Fault("lose", "invoices", count))

    def stall_next(self, seconds: float, *, count: int = 1, route: str = "api") -> None:
        """Process the next ``count`` API requests on ``route``, but answer ``seconds`` later."""
        self._add_fault(_Fault("stall", route, count, stall_s=seconds))

    def clear_faults(self) -> None:
        """Take back every fault not used up yet: the API behaves again."""
        with self._lock:
            self._faults.clear()

    def _add_fault(self, fault: _Fault) -> None:
        if fault.route not in _ROUTES:
            msg = f"route must be one of {', '.join(_ROUTES)}, not {fault.route!r}"
            raise ValueError(msg)
        with self._lock:
            self._faults.append(fault)

    def _take_fault(self, route: str, *, kind: str) -> _Fault | None:
        """Use up one count of the oldest fault of ``kind`` for ``route``. Caller holds the lock."""
        for fault in self._faults:
            if fault.kind != kind:
                continue
            if fault.route == route or (fault.route == "api" and route != "token"):
                fault.count -= 1
                if fault.count <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    # ----------------------------------------------------------------------------- requests

    def _handle(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes,
        *,
        reused_connection: bool = False,
    ) -> Reply:
        """Answer one request (the HTTP handler is a thin shell over this)."""
        path = unquote(urlsplit(target).path)
        host = headers.get("host") or f"{self._host}:{self.port}"  # batchUrl as the client sees us
        with self._lock:
            if agent := headers.get("user-agent"):
                self._user_agents.add(agent)
        if _TOKEN_PATH.match(path):
            return self._token(body) if method == "POST" else error_reply(405, "Use POST")
        if match := _INVOICES_PATH.match(path):
            if method != "POST":
                return error_reply(405, "Use POST")
            org_id = match[1]
            if reused_connection:
                with self._lock:
                    self._posts_on_reused_connections += 1
            return self._api(
                "invoices", headers, lambda client: self._create(org_id, body, client, host=host)
            )
        if match := _BATCH_PATH.match(path):
            if method != "GET":
                return error_reply(405, "Use GET")
            return self._api("batches", headers, lambda _client_id: self._read(match[1]))
        return error_reply(404, f"No route for {method} {path}")

    def _token(self, body: bytes) -> Reply:
        with self._lock:
            self._token_requests += 1
            fault = self._take_fault("token", kind="fail")
            stall = self._take_fault("token", kind="stall")
        if fault:
            return _fault_reply(fault)
        reply = self._issue_token(body)
        reply.stall_s = stall.stall_s if stall else 0.0
        return reply

    def _issue_token(self, body: bytes) -> Reply:
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        if form.get("grant_type") != "client_credentials":
            return _oauth(400, "unsupported_grant_type", "grant_type must be client_credentials")
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        if not client_id or not secret:
            return _oauth(400, "invalid_request", "client_id and client_secret are required")
        want_id, want_secret = self.options.client_id, self.options.client_secret
        if (want_id is not None and not _same(client_id, want_id)) or (
            want_secret is not None and not _same(secret, want_secret)
        ):
            return _oauth(401, "invalid_client", "Client authentication failed")
        now = self._clock()
        lifetime_s = self.options.token_lifetime_s
        token = "sbx." + secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = (client_id, now + lifetime_s)
        data = {
            "access_token": token,
            "token_type": "Bearer",
            "not_before": int(now),
            "expires_in": int(lifetime_s),
            "expires_on": int(now + lifetime_s),
            "resource": "04468334-ec11-4ef8-9e7c-e124bacbd5c1",
        }
        return Reply(200, data)

    def _api(self, route: str, headers: dict[str, str], work: Callable[[str], Reply]) -> Reply:
        """Count, inject faults, check the bearer token, then do ``work(client_id)``."""
        opts = self.options
        with self._lock:
            if route == "invoices":
                self._posts += 1
            else:
                self._polls += 1
            fault = self._take_fault(route, kind="fail")
            roll = self._rng.random()
            stall = self._take_fault(route, kind="stall")
        if fault:
            return _fault_reply(fault)
        if roll < opts.rate_429 + opts.rate_503:
            status = 429 if roll < opts.rate_429 else 503
            return _fault_reply(_Fault("fail", route, 0, status, f"{opts.retry_after_s:g}"))
        scheme, _, token = headers.get("authorization", "").partition(" ")
        with self._lock:
            client_id, expires_at = self._tokens.get(token, ("", 0.0))
        if scheme.lower() != "bearer" or not client_id or self._clock() >= expires_at:
            reply = error_reply(401, "A valid Bearer access token is required")
            reply.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
            return reply
        reply = work(client_id)
        if stall:
            reply.stall_s = stall.stall_s
        return reply

    def _create(self, org_id: str, body: bytes, client_id: str, *, host: str) -> Reply:
        try:
            uuid.UUID(org_id)
        except ValueError:
            return error_reply(400, f"orgId {org_id!r} is not a UUID")
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return error_reply(400, "Request body is not valid JSON")
        invoices = payload.get("invoices") if isinstance(payload, dict) else None
        if not isinstance(invoices, list) or not invoices:
            return error_reply(
                400, 'Request body must be {"invoices": [...]} with at least one invoice'
            )
        if not all(isinstance(invoice, dict) for invoice in invoices):
            return error_reply(400, "Each entry of invoices must be an object")
        limit = self.options.max_invoices_per_batch
        if limit is not None and len(invoices) > limit:
            return error_reply(400, f"A batch holds at most {limit} invoices, not {len(invoices)}")
        now = self._clock()
        with self._lock:
            batch = self._process(org_id, invoices, client_id=client_id, now=now)
            lose = self._take_fault("invoices", kind="lose") is not None
            lose = lose or self._rng.random() < self.options.rate_lost_response
        url = f"http://{host}/collection/v1/batches/{batch.batch_id}"
        return Reply(202, {"data": {"batchId": batch.batch_id, "batchUrl": url}}, drop=lose)

    def _process(
        self, org_id: str, invoices: list[dict[str, Any]], *, client_id: str, now: float
    ) -> _Batch:
        """Judge every invoice now (cases exist from here on). Caller holds the lock."""
        cases = self._cases.setdefault(org_id, set())
        succeeded: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        for invoice in invoices:
            number = invoice.get("invoiceNumber")
            self._invoices_received += 1
            if number is not None:
                self._received.append(str(number))
                self._received_by_org.setdefault(org_id, []).append(str(number))
            errors = validate_invoice(invoice)
            if isinstance(number, str) and number in cases:
                errors.append(f"Invoice number {number} already exists")
            if errors:
                failed.append({"type": "INVOICE", "invoiceNumber": number, "errors": errors})
                continue
            cases.add(number)
            self._case_seq += 1
            year = datetime.fromtimestamp(now, UTC).year
            succeeded.append(
                {
                    "type": "INVOICE",
                    "invoiceId": self._uuid(),
                    "invoiceNumber": number,
                    "caseId": self._uuid(),
                    "caseNumber": f"CASE-{year}-{self._case_seq:05d}",
                }
            )
        low, high = self.options.delay_s
        batch = _Batch(
            batch_id=self._uuid(),
            org_id=org_id,
            created_by=str(uuid.uuid5(uuid.NAMESPACE_URL, f"sandbox-client:{client_id}")),
            created_at=now,
            ready_at=now + self._rng.uniform(low, high),
            succeeded=succeeded,
            failed=failed,
        )
        self._batches[batch.batch_id] = batch
        return batch

    def _read(self, batch_id: str) -> Reply:
        with self._lock:
            batch = self._batches.get(batch_id)
        if batch is None:
            return error_reply(404, f"Batch {batch_id} was not found")
        done = self._clock() >= batch.ready_at
        if not done:
            status = "QUEUED"
        elif not batch.failed:
            status = "SUCCESS"
        elif not batch.succeeded:
            status = "FAILED"
        else:
            status = "PARTIAL"
        data = {
            "batchId": batch.batch_id,
            "type": "INVOICE",
            "status": status,
            "createdAt": _iso_time(batch.created_at),
            "finishedAt": _iso_time(batch.ready_at) if done else None,
            "organizationId": batch.org_id,
            "createdBy": batch.created_by,
            "succeeded": batch.succeeded if done else [],
            "failed": batch.failed if done else [],
        }
        return Reply(200, {"data": data})

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))


def _same(given: str, wanted: str) -> bool:
    return hmac.compare_digest(given.encode(), wanted.encode())  # str form takes ASCII only


def _oauth(status: int, code: str, description: str) -> Reply:
    return Reply(status, {"error": code, "error_description": description})


def _fault_reply(fault: _Fault) -> Reply:
    reply = error_reply(fault.status, f"Injected HTTP {fault.status} from the filedrop sandbox")
    if fault.retry_after is not None:
        reply.headers["Retry-After"] = fault.retry_after
    if fault.status == 401:
        reply.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    return reply


def serve(options: SandboxOptions, *, host: str, port: int, stop: threading.Event) -> None:
    """Serve until ``stop`` is set (the CLI's ``filedrop sandbox``)."""
    with Sandbox(options, host=host, port=port) as sandbox:
        log.info(
            "filedrop sandbox listening on %s (auth and API base URL): a local test server; "
            "nothing sent here reaches Amili",
            sandbox.url,
        )
        log.info(
            "batches stay QUEUED %g-%g s; tokens live %g s; credentials %s; "
            "rates: 429 %g, 503 %g, lost response %g",
            *options.delay_s,
            options.token_lifetime_s,
            "checked" if options.client_id or options.client_secret else "not checked",
            options.rate_429,
            options.rate_503,
            options.rate_lost_response,
        )
        while not stop.wait(0.2):
            pass
    log.info("filedrop sandbox stopped")
