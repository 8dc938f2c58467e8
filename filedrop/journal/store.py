"""The journal: what filedrop has seen, claimed, sent and learnt, in one SQLite file.

It is what makes the promises hold across crashes, restarts and re-drops:

* a batch is written down *before* its POST, together with the invoice numbers it claims, so a
  process killed mid-request leaves a ``posting`` batch that the next start marks ``UNKNOWN``
  instead of sending again;
* an invoice number is claimed with an upsert inside ``BEGIN IMMEDIATE``, so two threads or two
  processes on one journal can never both send it;
* a file is claimed by (name, content hash) with its owner's pid, so a second process or a
  duplicate event skips it while its owner lives, and takes it over once the owner is dead.

WAL mode lets ``filedrop status`` read while a run writes; ``synchronous=FULL`` because losing the
record of a sent batch to a power cut would mean sending it twice.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path

from filedrop.errors import ConfigError
from filedrop.logs import mask_ids
from filedrop.states import (
    BLOCKING_INVOICE_STATES,
    FINAL_FILE_STATES,
    UNFINISHED_BATCH_STATES,
    BatchState,
    FileState,
    InvoiceState,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id          INTEGER PRIMARY KEY,
    target      TEXT NOT NULL,      -- environment:org id, as for invoices
    name        TEXT NOT NULL,
    path        TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    state       TEXT NOT NULL,      -- claimed, waiting, done, error, retry
    owner       TEXT,               -- host:pid of the process working on it
    heartbeat   REAL,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL,
    mapping     TEXT,
    counts      TEXT,               -- JSON {status: rows}
    outcome     TEXT,
    message     TEXT,
    UNIQUE (target, name, sha256)
);
CREATE TABLE IF NOT EXISTS batches (
    id            INTEGER PRIMARY KEY,
    file_id       INTEGER NOT NULL REFERENCES files(id),
    target        TEXT NOT NULL,    -- environment:org id
    state         TEXT NOT NULL,    -- posting, queued, done, unknown, rejected, resolved
    batch_id      TEXT,
    api_status    TEXT,
    invoice_count INTEGER NOT NULL,
    message       TEXT,
    created_at    REAL NOT NULL,
    submitted_at  REAL,
    finished_at   REAL
);
CREATE TABLE IF NOT EXISTS invoices (
    target         TEXT NOT NULL,
    invoice_number TEXT NOT NULL,
    status         TEXT NOT NULL,   -- SENDING, PENDING, SUCCEEDED, FAILED, UNKNOWN, NOT_SENT
    file_id        INTEGER NOT NULL REFERENCES files(id),
    batch          INTEGER REFERENCES batches(id),
    invoice_id     TEXT,
    case_id        TEXT,
    case_number    TEXT,
    message        TEXT,
    updated_at     REAL NOT NULL,
    PRIMARY KEY (target, invoice_number)
);
CREATE INDEX IF NOT EXISTS invoices_by_batch ON invoices (batch);
CREATE INDEX IF NOT EXISTS batches_by_file ON batches (file_id, state);
CREATE TABLE IF NOT EXISTS heartbeat (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    owner TEXT NOT NULL,
    at    REAL NOT NULL
);
"""


def _sql_list(states: Iterable[str]) -> str:
    """An SQL list of state names, built from the enums in ``filedrop.states`` (never input)."""
    return ", ".join(f"'{state}'" for state in states)


_BLOCKING_SQL = _sql_list(BLOCKING_INVOICE_STATES)
_UNFINISHED_BATCHES_SQL = _sql_list(UNFINISHED_BATCH_STATES)


def this_owner() -> str:
    """``host:pid``, enough to tell whether a claim's owner is still alive on this machine."""
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_alive(owner: str | None, *, heartbeat: float | None, now: float, stale_s: float) -> bool:
    """Whether the process named ``owner`` may still be working.

    On this host the pid answers exactly; for another host (a shared journal on a network share)
    only a fresh heartbeat does.
    """
    if not owner:
        return False
    host, _, pid_text = owner.rpartition(":")
    if host == socket.gethostname() and pid_text.isdigit():
        pid = int(pid_text)
        if pid == os.getpid():
            return True
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return heartbeat is not None and now - heartbeat < stale_s


@dataclass(frozen=True)
class FileRecord:
    """One processed (or in-progress) input file."""

    id: int
    target: str
    name: str
    path: str
    sha256: str
    state: FileState
    owner: str | None
    created_at: float
    updated_at: float
    mapping: str | None
    counts: dict[str, int]
    outcome: str | None
    message: str | None


@dataclass(frozen=True)
class BatchRecord:
    """One batch of invoices, from before its POST to its terminal state."""

    id: int
    file_id: int
    target: str
    state: BatchState
    batch_id: str | None
    api_status: str | None
    invoice_count: int
    message: str | None
    created_at: float
    submitted_at: float | None
    finished_at: float | None


@dataclass(frozen=True)
class InvoiceRecord:
    """What the journal knows of one invoice number at one target."""

    invoice_number: str
    status: InvoiceState
    file_id: int
    batch: int | None
    invoice_id: str | None
    case_id: str | None
    case_number: str | None
    message: str | None


class Journal:
    """A SQLite journal shared by the threads of one process (one connection under a lock).

    Several processes may open the same file: every write that decides something runs inside
    ``BEGIN IMMEDIATE``, which SQLite serialises across processes.
    """

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._lock = threading.RLock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"The journal {path} cannot be opened ({exc}); check FILEDROP_STATE "
                "and that its folder is writable."
            ) from exc
        self._db.row_factory = sqlite3.Row
        try:
            self._switch_to_wal(timeout_s=30.0)
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            with self._write():
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
        except sqlite3.Error as exc:
            self._db.close()
            raise ConfigError(
                f"The journal {path} cannot be used ({exc}); check FILEDROP_STATE, that its "
                "folder is writable, and that it is not on a network share that breaks locking."
            ) from exc

    def _switch_to_wal(self, *, timeout_s: float) -> None:
        """Turn on WAL, retrying while another process is creating the same new journal.

        SQLite can answer this pragma with "database is locked" at once, without its busy
        timeout, when two processes open a brand-new journal together (two pods, or cron and a
        person, starting at the same moment).
        """
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction that holds SQLite's write lock from its first statement."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _read(self, sql: str, args: Iterable[object] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, tuple(args)).fetchall()

    # -- files ---------------------------------------------------------------------------------

    def claim_file(
        self, *, path: Path, sha256: str, target: str, owner: str, stale_s: float
    ) -> FileRecord | None:
        """Claim ``path`` with this content for ``owner``, or ``None`` if it is not ours to do.

        Not ours: already ``done`` or ``error`` at this target (the same bytes are not processed
        twice; a sandbox trial does not count for staging or production), or claimed by a live
        process. A file ``waiting`` for pending batches, marked ``retry`` after a transient
        failure, or claimed by a dead process is claimed again (resumed). ``stale_s``: how long
        a claim by a process on another host is trusted without news (``claim_stale_s``).
        """
        now = self._clock()
        with self._write() as db:
            row = db.execute(
                "SELECT * FROM files WHERE target = ? AND name = ? AND sha256 = ?",
                (target, path.name, sha256),
            ).fetchone()
            if row is None:
                cursor = db.execute(
                    "INSERT INTO files (target, name, path, sha256, state, owner, heartbeat,"
                    " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (target, path.name, str(path), sha256, FileState.CLAIMED, owner, now, now, now),
                )
                file_id = cursor.lastrowid
            else:
                if row["state"] in FINAL_FILE_STATES:
                    return None
                if (
                    row["state"] == FileState.CLAIMED
                    and row["owner"] != owner
                    and owner_alive(
                        row["owner"], heartbeat=row["heartbeat"], now=now, stale_s=stale_s
                    )
                ):
                    return None
                file_id = row["id"]
                db.execute(
                    "UPDATE files SET state = ?, owner = ?, heartbeat = ?, path = ?,"
                    " updated_at = ? WHERE id = ?",
                    (FileState.CLAIMED, owner, now, str(path), now, file_id),
                )
        return self.file(file_id)

    def finish_file(
        self,
        file_id: int,
        *,
        state: FileState,
        counts: dict[str, int],
        mapping: str | None,
        outcome: Path | None,
        message: str | None = None,
    ) -> None:
        """Record how a file ended: ``done``, ``waiting`` (on batches), ``error`` or ``retry``."""
        with self._write() as db:
            db.execute(
                "UPDATE files SET state = ?, counts = ?, mapping = ?, outcome = ?, message = ?,"
                " owner = NULL, updated_at = ? WHERE id = ?",
                (
                    state,
                    json.dumps(counts),
                    mapping,
                    str(outcome) if outcome else None,
                    mask_ids(message) if message else None,
                    self._clock(),
                    file_id,
                ),
            )

    def file(self, file_id: int) -> FileRecord:
        return _file_record(self._read("SELECT * FROM files WHERE id = ?", (file_id,))[0])

    def find_file(self, *, target: str, name: str, sha256: str) -> FileRecord | None:
        """The record of these bytes under this name at ``target``, if there is one."""
        rows = self._read(
            "SELECT * FROM files WHERE target = ? AND name = ? AND sha256 = ?",
            (target, name, sha256),
        )
        return _file_record(rows[0]) if rows else None

    def files_in_states(self, *, target: str, states: Iterable[FileState]) -> list[FileRecord]:
        """Files at ``target`` whose state is one of ``states``, oldest first."""
        states = tuple(states)
        rows = self._read(
            f"SELECT * FROM files WHERE target = ? AND state IN ({', '.join('?' * len(states))})"  # noqa: S608
            " ORDER BY id",
            (target, *states),
        )
        return [_file_record(row) for row in rows]

    def recent_files(self, *, limit: int = 20) -> list[FileRecord]:
        rows = self._read("SELECT * FROM files ORDER BY updated_at DESC, id DESC LIMIT ?", (limit,))
        return [_file_record(row) for row in rows]

    def unfinished_files(self, *, target: str) -> list[FileRecord]:
        """Files at ``target`` with a batch still ``queued`` or ``posting``."""
        rows = self._read(
            # The state list is built from the enum, never from input.
            "SELECT * FROM files WHERE target = ? AND id IN (SELECT file_id FROM batches"  # noqa: S608
            f" WHERE state IN ({_UNFINISHED_BATCHES_SQL})) ORDER BY id",
            (target,),
        )
        return [_file_record(row) for row in rows]

    # -- batches and invoices -------------------------------------------------------------------

    def claim_batch(
        self, *, file_id: int, target: str, invoice_numbers: list[str]
    ) -> tuple[int, list[str]]:
        """Write a batch down before its POST and claim its invoice numbers.

        Returns the batch's journal id and the numbers it really claimed, in the given order: a
        number another batch holds (sending, pending, succeeded or unknown) is left out, so it
        cannot be sent twice even if two runs race. A number that ``FAILED`` earlier may be sent
        again.
        """
        now = self._clock()
        with self._write() as db:
            batch = db.execute(
                "INSERT INTO batches (file_id, target, state, invoice_count, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (file_id, target, BatchState.POSTING, len(invoice_numbers), now),
            ).lastrowid
            db.executemany(
                # The status list is built from the enum, never from input.
                "INSERT INTO invoices (target, invoice_number, status, file_id, batch, updated_at)"  # noqa: S608
                " VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (target, invoice_number) DO UPDATE SET"
                " status = excluded.status, file_id = excluded.file_id, batch = excluded.batch,"
                " invoice_id = NULL, case_id = NULL, case_number = NULL, message = NULL,"
                " updated_at = excluded.updated_at"
                f" WHERE invoices.status NOT IN ({_BLOCKING_SQL})",
                [
                    (target, number, InvoiceState.SENDING, file_id, batch, now)
                    for number in invoice_numbers
                ],
            )
            claimed = {
                row[0]
                for row in db.execute(
                    "SELECT invoice_number FROM invoices WHERE batch = ? AND status = ?",
                    (batch, InvoiceState.SENDING),
                )
            }
            db.execute("UPDATE batches SET invoice_count = ? WHERE id = ?", (len(claimed), batch))
        return batch, [number for number in invoice_numbers if number in claimed]

    def drop_empty_batch(self, batch: int) -> None:
        """Forget a batch that claimed nothing (every number was taken by a racing run)."""
        with self._write() as db:
            db.execute("DELETE FROM batches WHERE id = ? AND invoice_count = 0", (batch,))

    def batch_submitted(self, batch: int, *, batch_id: str) -> None:
        """The API accepted the batch: its invoices are ``PENDING`` until it ends."""
        now = self._clock()
        with self._write() as db:
            db.execute(
                "UPDATE batches SET state = ?, batch_id = ?, api_status = 'QUEUED',"
                " submitted_at = ? WHERE id = ?",
                (BatchState.QUEUED, batch_id, now, batch),
            )
            db.execute(
                "UPDATE invoices SET status = ?, updated_at = ? WHERE batch = ?",
                (InvoiceState.PENDING, now, batch),
            )

    def batch_unknown(self, batch: int, *, message: str) -> None:
        """The POST may or may not have arrived: its invoices are ``UNKNOWN``, never resent."""
        self._end_batch(
            batch, state=BatchState.UNKNOWN, invoice_status=InvoiceState.UNKNOWN, message=message
        )

    def batch_not_sent(self, batch: int, *, message: str) -> None:
        """The API certainly did not take the batch: its invoices may be sent again later."""
        self._end_batch(
            batch, state=BatchState.REJECTED, invoice_status=InvoiceState.NOT_SENT, message=message
        )

    def batch_refused(self, batch: int, *, message: str) -> None:
        """The API refused the whole batch for its content: its invoices are ``FAILED``, and
        only a corrected file sends them again."""
        self._end_batch(
            batch, state=BatchState.REJECTED, invoice_status=InvoiceState.FAILED, message=message
        )

    def _end_batch(
        self, batch: int, *, state: BatchState, invoice_status: InvoiceState, message: str
    ) -> None:
        now = self._clock()
        message = mask_ids(message)
        with self._write() as db:
            db.execute(
                "UPDATE batches SET state = ?, message = ?, finished_at = ? WHERE id = ?",
                (state, message, now, batch),
            )
            db.execute(
                "UPDATE invoices SET status = ?, message = ?, updated_at = ? WHERE batch = ?",
                (invoice_status, message, now, batch),
            )

    def batch_finished(
        self,
        batch: int,
        *,
        api_status: str,
        succeeded: Iterable[tuple[str, str, str, str]],
        failed: Iterable[tuple[str, str]],
    ) -> None:
        """Record a terminal batch: ``succeeded`` as (number, invoice id, case id, case number),
        ``failed`` as (number, message). A number the API did not mention becomes ``UNKNOWN``."""
        now = self._clock()
        with self._write() as db:
            # By primary key (target, number), then checked against the batch: with the batch
            # alone SQLite walks the whole batch for every invoice (quadratic in batch size).
            (target,) = db.execute("SELECT target FROM batches WHERE id = ?", (batch,)).fetchone()
            db.executemany(
                "UPDATE invoices SET status = ?, invoice_id = ?, case_id = ?,"
                " case_number = ?, message = NULL, updated_at = ?"
                " WHERE target = ? AND invoice_number = ? AND batch = ?",
                [
                    (InvoiceState.SUCCEEDED, inv, case, case_no, now, target, num, batch)
                    for num, inv, case, case_no in succeeded
                ],
            )
            db.executemany(
                "UPDATE invoices SET status = ?, message = ?, updated_at = ?"
                " WHERE target = ? AND invoice_number = ? AND batch = ?",
                [
                    (InvoiceState.FAILED, mask_ids(message), now, target, num, batch)
                    for num, message in failed
                ],
            )
            db.execute(
                "UPDATE invoices SET status = ?, message = ?, updated_at = ?"
                " WHERE batch = ? AND status IN (?, ?)",
                (
                    InvoiceState.UNKNOWN,
                    f"the batch ended {api_status} without mentioning this invoice; "
                    "check with Amili before sending it again",
                    now,
                    batch,
                    InvoiceState.PENDING,
                    InvoiceState.SENDING,
                ),
            )
            unmentioned = db.execute(
                "SELECT COUNT(*) FROM invoices WHERE batch = ? AND status = ?",
                (batch, InvoiceState.UNKNOWN),
            ).fetchone()[0]
            # A batch that left invoices UNKNOWN stays listed by status, and resolve takes it.
            db.execute(
                "UPDATE batches SET state = ?, api_status = ?, finished_at = ? WHERE id = ?",
                (BatchState.UNKNOWN if unmentioned else BatchState.DONE, api_status, now, batch),
            )

    def postings_of(self, file_id: int) -> list[BatchRecord]:
        """Batches of a file written down before a POST that never got its answer recorded.

        Called right after claiming the file: the claim proves the previous owner is gone, so
        whether these reached Amili cannot be told.
        """
        return self.batches(file_id=file_id, states=(BatchState.POSTING,))

    def batches(
        self, *, file_id: int | None = None, states: Iterable[BatchState] = ()
    ) -> list[BatchRecord]:
        states = tuple(states)
        sql = "SELECT * FROM batches WHERE 1 = 1"
        args: list[object] = []
        if file_id is not None:
            sql += " AND file_id = ?"
            args.append(file_id)
        if states:
            sql += f" AND state IN ({', '.join('?' * len(states))})"
            args.extend(states)
        return [_batch_record(row) for row in self._read(sql + " ORDER BY id", args)]

    def find_batch(self, ref: str) -> BatchRecord | None:
        """A batch by its API batch id, or by its journal number (as ``status`` prints it)."""
        rows = self._read("SELECT * FROM batches WHERE batch_id = ?", (ref,))
        if not rows and ref.lstrip("#").isdigit():
            rows = self._read("SELECT * FROM batches WHERE id = ?", (int(ref.lstrip("#")),))
        return _batch_record(rows[0]) if rows else None

    def resolve_batch(self, batch: int, *, sent: bool, note: str) -> int:
        """An operator checked with Amili: the batch's invoices exist there (``sent``) or do not.

        ``sent`` keeps the numbers blocked for good; not sent releases them so that the next run
        of their file sends them. Returns how many invoices changed.
        """
        now = self._clock()
        with self._write() as db:
            status = InvoiceState.SUCCEEDED if sent else InvoiceState.NOT_SENT
            note = mask_ids(note)
            message = note if sent else f"not sent ({note}); the next run sends it again"
            changed = db.execute(
                "UPDATE invoices SET status = ?, message = ?, updated_at = ?"
                " WHERE batch = ? AND status IN (?, ?)",
                (status, message, now, batch, InvoiceState.UNKNOWN, InvoiceState.SENDING),
            ).rowcount
            db.execute(
                "UPDATE batches SET state = ?, message = ?, finished_at = ? WHERE id = ?",
                (BatchState.RESOLVED, message, now, batch),
            )
            if not sent:
                db.execute(
                    "UPDATE files SET state = ?, updated_at = ?"
                    " WHERE id = (SELECT file_id FROM batches WHERE id = ?)",
                    (FileState.RETRY, now, batch),
                )
        return changed

    def unknown_invoice_numbers(self, batch: int) -> list[str]:
        """The invoice numbers of a batch whose fate is unknown: what to look up with Amili."""
        rows = self._read(
            "SELECT invoice_number FROM invoices WHERE batch = ? AND status IN (?, ?)"
            " ORDER BY rowid",
            (batch, InvoiceState.UNKNOWN, InvoiceState.SENDING),
        )
        return [row[0] for row in rows]

    def invoices(self, *, target: str, numbers: Iterable[str]) -> dict[str, InvoiceRecord]:
        """What the journal knows of these invoice numbers (absent ones are left out)."""
        return {
            record.invoice_number: record
            for record in self.each_invoice(target=target, numbers=numbers)
        }

    def each_invoice(self, *, target: str, numbers: Iterable[str]) -> Iterator[InvoiceRecord]:
        """The same, one record at a time, for files too big to hold them all at once.

        Holds the journal's lock until exhausted; consume it fully before other journal calls
        from other threads are expected to proceed.
        """
        columns = ", ".join(f"i.{name}" for name in _INVOICE_FIELDS)
        with self._lock:
            db = self._db
            db.execute("CREATE TEMP TABLE IF NOT EXISTS wanted (number TEXT PRIMARY KEY)")
            db.execute("DELETE FROM wanted")
            db.executemany("INSERT OR IGNORE INTO wanted VALUES (?)", ((n,) for n in numbers))
            cursor = db.cursor()
            cursor.row_factory = None  # plain tuples: this runs for every row of a big file
            cursor.execute(
                # Column names come from the dataclass, never from input.
                f"SELECT {columns} FROM invoices i"  # noqa: S608
                " JOIN wanted w ON w.number = i.invoice_number WHERE i.target = ?",
                (target,),
            )
            try:
                while chunk := cursor.fetchmany(1000):
                    for number, status, *rest in chunk:
                        yield InvoiceRecord(number, InvoiceState(status), *rest)
            finally:
                cursor.close()
                db.execute("DELETE FROM wanted")

    def status_counts(self) -> dict[str, int]:
        """Invoices per status, over the whole journal."""
        rows = self._read("SELECT status, COUNT(*) FROM invoices GROUP BY status ORDER BY status")
        return {row[0]: row[1] for row in rows}

    # -- daemon heartbeat ----------------------------------------------------------------------

    def beat(self, owner: str) -> None:
        """Record that the daemon ``owner`` is alive (``filedrop status --health`` reads it)."""
        with self._write() as db:
            db.execute(
                "INSERT INTO heartbeat (id, owner, at) VALUES (1, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, at = excluded.at",
                (owner, self._clock()),
            )

    def last_beat(self) -> tuple[str, float] | None:
        rows = self._read("SELECT owner, at FROM heartbeat WHERE id = 1")
        return (rows[0]["owner"], rows[0]["at"]) if rows else None

    def files_changed_between(self, *, since: float, until: float) -> list[FileRecord]:
        """Files whose last change falls in [``since``, ``until``) (Unix times), oldest first."""
        rows = self._read(
            "SELECT * FROM files WHERE updated_at >= ? AND updated_at < ? ORDER BY updated_at, id",
            (since, until),
        )
        return [_file_record(row) for row in rows]


def _file_record(row: sqlite3.Row) -> FileRecord:
    values = {name: row[name] for name in _FILE_FIELDS}
    values["counts"] = json.loads(values["counts"]) if values["counts"] else {}
    values["state"] = FileState(values["state"])
    return FileRecord(**values)


def _batch_record(row: sqlite3.Row) -> BatchRecord:
    values = dict(row)
    values["state"] = BatchState(values["state"])
    return BatchRecord(**values)


_FILE_FIELDS = tuple(field.name for field in fields(FileRecord))
_INVOICE_FIELDS = tuple(field.name for field in fields(InvoiceRecord))
