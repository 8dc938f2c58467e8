"""The one test harness: a real sandbox on 127.0.0.1, a client for it, an inbox, one fake clock,
the organisation id, and a ``Context`` built the way production builds it (``open_context``)."""

from __future__ import annotations

import copy
import errno
import itertools
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TypeVar

import pytest

from filedrop.api.client import AmiliClient, Credentials
from filedrop.journal import FileRecord, Journal, this_owner
from filedrop.journal.engines import PostgresLocation
from filedrop.pipeline import Context
from filedrop.runner import open_context
from filedrop.sandbox import Sandbox, SandboxOptions
from filedrop.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
MAPPINGS = ROOT / "mappings"

TEST_CLIENT_ID = "test-client"
TEST_CLIENT_SECRET = "test-secret-do-not-log"
ORG_ID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"  # the guide's orgId

# The example invoice of "Create invoices" in Amili's integration guide: the sandbox must take it.
EXAMPLE_INVOICE: dict[str, Any] = {
    "type": "NOTICE",
    "invoiceNumber": "INV-2024-00123",
    "originalInvoiceAmount": 4500.00,
    "currency": "NOK",
    "invoiceDate": "2024-01-15T00:00:00Z",
    "dueDate": "2024-02-15T00:00:00Z",
    "uniqueSourceInvoiceId": "erp-order-9981",
    "description": "Consulting services January 2024",
    "ocrReferenceNumber": "123456789",
    "debtors": [
        {
            "type": "PRIVATE",
            "firstname": "Kari",
            "lastname": "Nordmann",
            "customerNumber": "CUST-001",
            "identificationNumber": "12345678901",
            "emails": [{"value": "kari.nordmann@example.com"}],
            "phoneNumbers": [{"value": "+4798765432", "countryCode": "NO"}],
            "addresses": [
                {"street": "Storgata 1", "city": "Oslo", "zipCode": "0155", "countryCode": "NO"}
            ],
        }
    ],
    "claims": [
        {"type": "PRINCIPAL", "remainingAmount": 4500.00, "description": "Main invoice amount"}
    ],
}


class FakeTime:
    """The one fake clock: it moves only when ``sleep`` is called (or ``now`` is set), and
    records every sleep. ``clock`` and ``sleep`` go wherever a clock and a sleep are injected."""

    def __init__(self, start: float | None = None) -> None:
        # Whole seconds, so that an HTTP-date Retry-After maps to an exact number of seconds.
        self.now = float(int(time.time())) if start is None else start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def example_invoice() -> dict[str, Any]:
    """A fresh deep copy of the guide's example invoice."""
    return copy.deepcopy(EXAMPLE_INVOICE)


@pytest.fixture
def org_id() -> str:
    return ORG_ID


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture(autouse=True)
def no_real_state_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reaches the real user's journal: the default state folder is in ``tmp_path``."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def journal_file(inbox: Path) -> Path:
    """The journal the tests give an inbox (``FILEDROP_STATE``): beside it, never inside."""
    return inbox.parent / "journal.db"


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    """An empty inbox folder in ``tmp_path``."""
    folder = tmp_path / "inbox"
    folder.mkdir()
    return folder


def sandbox_settings(inbox: Path, sandbox_url: str, **overrides: Any) -> Settings:
    """Settings for sending ``inbox`` to the sandbox at ``sandbox_url``, with short polls."""
    values: dict[str, Any] = {
        "env": "sandbox",
        "auth_url": sandbox_url,
        "api_url": sandbox_url,
        "client_id": TEST_CLIENT_ID,
        "client_secret": TEST_CLIENT_SECRET,
        "org_id": ORG_ID,
        "inbox": inbox,
        "mapping": MAPPINGS,
        "state": journal_file(inbox),
        "stability_s": 0.0,
        "poll_initial_s": 0.05,
        "poll_max_interval_s": 0.2,
        "poll_timeout_s": 10.0,
        "connect_timeout_s": 2.0,
        "read_timeout_s": 5.0,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def make_context(sandbox: Sandbox, inbox: Path) -> Iterator[Callable[..., Context]]:
    """Build a ``Context`` with ``open_context``, as ``filedrop run`` does: ``make_context(
    mapping=..., batch_size=...)`` overrides settings; ``clock=``/``sleep=`` inject time."""
    with ExitStack() as stack:

        def make(*, clock: Any = time.time, sleep: Any = time.sleep, **overrides: Any) -> Context:
            settings = sandbox_settings(inbox, sandbox.url, **overrides)
            return stack.enter_context(open_context(settings, clock=clock, sleep=sleep))

        yield make


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """A sandbox on a free port whose batches are terminal at the first poll; real clock."""
    with Sandbox(SandboxOptions(delay_s=(0, 0), seed=1)) as running:
        yield running


@pytest.fixture
def make_client(sandbox: Sandbox, fake_time: FakeTime) -> Iterator[Callable[..., AmiliClient]]:
    """Build clients against ``sandbox``; by default on ``fake_time`` (sleeps take no time)."""
    clients: list[AmiliClient] = []

    def make(**overrides: Any) -> AmiliClient:
        options: dict[str, Any] = {
            "auth_url": sandbox.url,
            "api_url": sandbox.url,
            "credentials": Credentials(client_id=TEST_CLIENT_ID, client_secret=TEST_CLIENT_SECRET),
            "clock": fake_time.clock,
            "sleep": fake_time.sleep,
            "connect_timeout_s": 2.0,
            "read_timeout_s": 5.0,
        }
        options.update(overrides)
        client = AmiliClient(**options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client: Callable[..., AmiliClient]) -> AmiliClient:
    """A client against ``sandbox`` with dummy credentials and a sleep that does not sleep."""
    return make_client()


# -- PostgreSQL: a throwaway cluster for the whole session ------------------------------------


def _postgres_bin(name: str) -> str | None:
    """``initdb`` or ``pg_ctl`` on PATH, else in Debian's versioned folder."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(candidates[-1]) if candidates else None


@pytest.fixture
def short_temp() -> Iterator[Path]:
    """An empty folder for a command's TMPDIR, on a short path: the workbook reader's server
    keeps a socket there, and a socket's path holds at most 107 bytes on Linux, which one under
    pytest's own folder (``pytest-of-<user>/pytest-N/<test name>``) can pass."""
    folder = Path(tempfile.mkdtemp(prefix="fd-", dir="/tmp" if Path("/tmp").is_dir() else None))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A real PostgreSQL on 127.0.0.1 (trust auth, nothing else listening), for the session.

    Started with ``initdb`` and ``pg_ctl`` in a temporary folder, as the ``postgres`` user when
    the tests run as root (``initdb`` refuses root). Where PostgreSQL is not installed the tests
    that need it are skipped, except in CI (the CI variable set), where they fail.
    """
    initdb, pg_ctl = _postgres_bin("initdb"), _postgres_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        message = "PostgreSQL (initdb, pg_ctl) is not installed"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must run the PostgreSQL tests")
        pytest.skip(message)
    folder = Path(tempfile.mkdtemp(prefix="filedrop-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(folder, user="postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", _free_port()

    def run(*command: str) -> None:
        done = subprocess.run([*as_user, *command], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            pytest.fail(f"{' '.join(command)} failed: {done.stdout}{done.stderr}")

    run(initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    run(pg_ctl, "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        run(pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


_databases = itertools.count(1)


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A URL to a new, empty database on the session's PostgreSQL."""
    import psycopg

    name = f"journal_{os.getpid()}_{next(_databases)}"
    with psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    return f"{postgres_server}/{name}"


def drop_connections(url: str) -> int:
    """End every connection to the database at ``url`` from the server's side, as a restart or
    a failover does; returns how many were ended."""
    import psycopg

    server, _, database = url.rpartition("/")
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        ended = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchall()
    return len(ended)


@pytest.fixture(params=["sqlite", "postgresql"])
def journal_location(request: pytest.FixtureRequest, tmp_path: Path) -> Path | PostgresLocation:
    """Where a journal lives, once for each engine: a SQLite file, and a PostgreSQL database."""
    if request.param == "sqlite":
        return tmp_path / "state.db"
    return PostgresLocation.parse(request.getfixturevalue("postgres_url"))


class Logged(logging.Handler):
    """Every message of the ``filedrop`` loggers, whatever ``propagate`` another test left."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def count(self, prefix: str) -> int:
        return sum(1 for message in list(self.messages) if message.startswith(prefix))


@pytest.fixture
def logged() -> Iterator[Logged]:
    """What the ``filedrop`` loggers say during the test, at INFO and above."""
    handler = Logged()
    logger = logging.getLogger("filedrop")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


T = TypeVar("T")


def wait_until(check: Callable[[], T], *, what: str, timeout_s: float = 20.0) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` at the deadline.

    For real processes and threads, whose progress has no event to wait on.
    """
    deadline = time.monotonic() + timeout_s
    while not (result := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.02)
    return result


def one_sent_one_not(
    journal: Journal, source: Path, *, target: str, sha256: str, numbers: tuple[str, str]
) -> FileRecord:
    """What a run of ``source`` leaves when Amili took its first batch (``numbers[0]``,
    SUCCEEDED) and was down for its second (``numbers[1]``, NOT_SENT): the file's record,
    still claimed by this process."""
    record = journal.claim_file(
        path=source, sha256=sha256, target=target, owner=this_owner(), stale_s=60
    )
    assert record is not None
    first, second = numbers
    sent, _ = journal.claim_batch(file_id=record.id, target=target, invoice_numbers=[first])
    journal.batch_submitted(sent, batch_id=f"api-{first}")
    journal.batch_finished(
        sent, api_status="SUCCESS", succeeded=[(first, "i", "c", "C-1")], failed=[]
    )
    unsent, _ = journal.claim_batch(file_id=record.id, target=target, invoice_numbers=[second])
    journal.batch_not_sent(unsent, message="Amili down")
    return record


def refuse_reading(monkeypatch: pytest.MonkeyPatch, name: str) -> threading.Event:
    """Make the file called ``name`` refuse to be read, as its mode would for another user: it
    does not open (EACCES) and ``os.access`` says it may not be read, until the event returned
    is cleared. By hand, as the tests run as root, whom no mode refuses."""
    refused = threading.Event()
    refused.set()
    real_open, real_access = os.open, os.access

    def denied(path: Any) -> bool:
        return refused.is_set() and os.path.basename(os.fspath(path)) == name

    def opened(path: Any, *args: Any, **kwargs: Any) -> int:
        if denied(path):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
        return real_open(path, *args, **kwargs)

    def access(path: Any, *args: Any, **kwargs: Any) -> bool:
        return not denied(path) and real_access(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", opened)
    monkeypatch.setattr(os, "access", access)
    return refused
