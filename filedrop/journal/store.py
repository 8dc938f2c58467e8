"""The journal: what filedrop has seen, claimed, sent and learnt, in SQLite or PostgreSQL.

It is what makes the promises hold across crashes, restarts and re-drops:

* a batch is written down *before* its POST, together with the invoice numbers it claims, so a
  process killed mid-request leaves a ``posting`` batch that the next start marks ``UNKNOWN``
  instead of sending again;
* an invoice number is claimed with an upsert inside a write transaction, on a unique key of
  target and number, so two threads, processes or replicas on one journal can never both send it;
* a file is claimed by (name, content hash) for its owner (host, pid and a random token) under a
  lease: the owner renews all its claims with each heartbeat, and a claim whose heartbeats
  stopped (or whose process on this host is gone) is taken over by the next process that wants
  the file.

Where SQLite and PostgreSQL differ is in ``engines``; the SQL here is written once for both.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from types import EllipsisType
from typing import Any, NamedTuple

from filedrop.errors import ClaimLostError, ConfigError
from filedrop.journal.engines import (
    Engine,
    JournalDisplaced,
    LogNotSyncedError,
    LogUnreachableError,
    PostgresLocation,
    engine_for,
)
from filedrop.logs import mask_ids
from filedrop.states import (
    BLOCKING_INVOICE_STATES,
    FINAL_FILE_STATES,
    UNFINISHED_BATCH_STATES,
    WENT_INVOICE_STATES,
    BatchState,
    FileState,
    InvoiceState,
    resolve_command,
)


def _sql_list(states: Iterable[str]) -> str:
    """An SQL list of state names, built from the enums in ``filedrop.states`` (never input)."""
    return ", ".join(f"'{state}'" for state in states)


_BLOCKING_SQL = _sql_list(BLOCKING_INVOICE_STATES)
_WENT_SQL = _sql_list(WENT_INVOICE_STATES)
#: The message of a file's record made by ``journal rebuild`` from an outcome: its invoices are
#: the outcome's, its hash the input's found beside it, which may be a newer export's.
REBUILT = "rebuilt from its outcome by 'filedrop journal rebuild'"
#: The message of a batch made by ``journal rebuild`` from an outcome's rows: its numbers are as
#: the outcome read back, which a spreadsheet program that saved it may have changed.
REBUILT_BATCH = "rebuilt from an outcome"
_UNFINISHED_BATCHES_SQL = _sql_list(UNFINISHED_BATCH_STATES)


def _new_token() -> str:
    return secrets.token_hex(4)


_TOKEN = _new_token()


def _renew_token() -> None:
    global _TOKEN  # noqa: PLW0603 - one token per process, and a forked child is a new one
    _TOKEN = _new_token()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renew_token)


def _pid_namespace() -> str:
    """This process's pid namespace (Linux: the inode of ``/proc/self/ns/pid``), else "".

    In hexadecimal: its ten decimal digits (4026531836) were masked in every message that named
    a claim's holder, as a national id would be. An owner a filedrop before this wrote in
    decimal reads as another namespace's, so only its lease decides, as is safe."""
    try:
        link = str(Path("/proc/self/ns/pid").readlink())
    except OSError:
        return ""
    inode = link.removeprefix("pid:[").removesuffix("]")
    return f"{int(inode):x}" if inode.isdigit() else inode


_PID_NAMESPACE = _pid_namespace()


def this_owner() -> str:
    """``host:pid:token:namespace``: who holds a claim. The random token tells apart two
    processes that share a host name and a pid (two containers, each filedrop being pid 1); the
    pid namespace tells whether its pid is one this process can look up."""
    return f"{socket.gethostname()}:{os.getpid()}:{_TOKEN}:{_PID_NAMESPACE}"


def owner_alive(owner: str | None, *, heartbeat: float | None, now: float, stale_s: float) -> bool:
    """Whether the process named ``owner`` may still be working: its lease is fresh.

    The lease is ``stale_s`` from its last heartbeat (``claim_stale_s``). A process on this host
    and in this pid namespace that is gone frees its claims at once, without waiting for the
    lease to run out. One in another namespace (a container sharing the host's name, as with
    ``--network host``) has a pid that means nothing here, so only its lease can tell; so has a
    pid equal to ours with another token. An owner named before namespaces were is taken to
    share ours.
    """
    if not owner:
        return False
    if owner == this_owner():
        return True
    parts = owner.split(":")
    pid_text = parts[1] if len(parts) > 1 else ""
    namespace = parts[3] if len(parts) > 3 else _PID_NAMESPACE
    if parts[0] == socket.gethostname() and namespace == _PID_NAMESPACE and pid_text.isdigit():
        pid = int(pid_text)
        if pid != os.getpid() and not _pid_running(pid):
            return False
    return heartbeat is not None and now - heartbeat < stale_s


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


#: What a process that lost its claim on a file says (``ClaimLostError``).
CLAIM_LOST = (
    "another filedrop process took this file over while this one was held up past its claim "
    "(FILEDROP_CLAIM_STALE_S), or found it gone; that one finishes it, and this one sends "
    "nothing more from it and writes no outcome"
)


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
    heartbeat: float | None = None
    """The owner's last renewal of its claim (only meaningful while ``claimed``)."""
    outcome_written: str | None = None
    """The outcome file this record wrote last, as ``outcome.written_stamp`` gives it."""
    read_under: str | None = None
    """For an ``error``: the mappings and limits it was found under (``Context.read_under``)."""


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


class InvoiceRecord(NamedTuple):
    """What the journal knows of one invoice number at one target.

    A named tuple rather than a frozen dataclass: a file's outcome reads one per invoice, and a
    tuple is built several times faster.
    """

    invoice_number: str
    status: InvoiceState
    file_id: int
    batch: int | None
    invoice_id: str | None
    case_id: str | None
    case_number: str | None
    message: str | None


class RebuiltBatch(NamedTuple):
    """A batch as an outcome names it: its API id (``""`` when never learnt) and the journal
    number its rows' advice gives ('filedrop resolve 17'), if any."""

    batch_id: str
    number: int | None


class FinishedBatch(NamedTuple):
    """A terminal batch's results, as ``Journal.batch_finished`` takes them."""

    batch: int
    api_status: str
    succeeded: Iterable[tuple[str, str, str, str]]
    """(number, invoice id, case id, case number) each."""
    failed: Iterable[tuple[str, str]]
    """(number, message) each."""


log = logging.getLogger("filedrop.journal")

#: How long a journal whose server was out of reach waits before it tries to connect again.
_RECONNECT_PAUSE_S = 5.0

_FILE_LOCKS: dict[Path, threading.RLock] = {}
_FILE_LOCKS_GUARD = threading.Lock()


def _file_lock(location: Path | PostgresLocation) -> threading.RLock:
    """The lock the journals of this process on one SQLite file write under (one per inbox
    served); a server's journals each have their own, as the server keeps them apart."""
    if isinstance(location, PostgresLocation):
        return threading.RLock()
    key = location.resolve()
    with _FILE_LOCKS_GUARD:
        return _FILE_LOCKS.setdefault(key, threading.RLock())


_INVOICE_STATES = {state.value: state for state in InvoiceState}
_SUCCEEDED, _FAILED = InvoiceState.SUCCEEDED.value, InvoiceState.FAILED.value
_UNKNOWN = InvoiceState.UNKNOWN.value


class NotSettledError(Exception):
    """``resolve_batch`` changed nothing; the message ends a sentence saying why."""


class Journal:
    """A journal shared by the threads of one process (one connection under a lock).

    ``location`` is a SQLite file or a ``PostgresLocation``. Several processes, or replicas on
    several hosts with PostgreSQL, may open the same journal: every write that decides something
    runs in one transaction, which the engine makes safe against the others.
    """

    def __init__(
        self, location: Path | PostgresLocation, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = location
        self._clock = clock
        self._lock = threading.RLock()
        self._engine: Engine = engine_for(location)
        self._db = self._engine.connect()
        self._closed = False
        self._reconnect_after = 0.0  # monotonic time before which a lost server is not retried
        self._file_lock = _file_lock(location)
        self._displaced: str | None = None  # why nothing more may be recorded, once it is so
        self._said_unsynced = False  # the log's file could not be synced by its path (said once)

    @property
    def engine(self) -> str:
        """``SQLite`` or ``PostgreSQL``."""
        return self._engine.name

    @property
    def errors(self) -> tuple[type[BaseException], ...]:
        """What the database raises when it fails (a busy file, a lost connection)."""
        return self._engine.errors

    def close(self) -> None:
        with self._lock:
            self.put_back_if_deleted()  # else its records end with this process
            self._closed = True
            self._db.close()

    def put_back_if_deleted(self) -> None:
        """A SQLite journal whose file was deleted while open (a clean-up script, a folder
        removed by mistake) is written back from the open connection, which still holds all of
        it: else this process would go on recording into a file nobody else sees, lost when it
        exits, and the next start would find an empty journal.

        Every journal of this process on that file (one per inbox) writes under one lock and
        looks first: the first to find the file gone puts it back, and the others then find
        another file there and open it, so none records into the deleted one meanwhile."""
        with self._lock, self._file_lock, contextlib.suppress(*self._engine.errors):
            self._keep_in_place()  # what it raises it has said

    def _keep_in_place(self) -> None:
        """``put_back_if_deleted``; called with both locks held. Raises one of the engine's
        errors when the journal cannot be kept in place: nothing may be recorded then."""
        if self._displaced is not None:
            raise self._engine.failure(self._displaced)
        if self._closed:
            return
        moved = self._engine.moved()
        if moved is None:
            return
        try:
            if moved == "deleted":
                self._db = self._engine.put_back(self._db)
            else:
                self._db = self._engine.reopen(self._db)
        except JournalDisplaced as exc:
            self._displaced = str(exc)
            log.error("%s", exc)
            raise
        except (OSError, ConfigError, *self._engine.errors) as exc:
            log.error(
                "the journal %s was deleted while filedrop had it open, and cannot be put back "
                "yet (%s); it is tried again before the next record",
                self.path,
                exc,
            )
            raise self._engine.failure(f"the journal {self.path} cannot be put back") from exc
        if moved == "deleted":
            log.warning(
                "the journal %s was deleted while filedrop had it open; it was put back from "
                "the open copy, with nothing lost",
                self.path,
            )

    def _connection(self) -> Any:
        """The connection, opened again if the server dropped it (PostgreSQL restarted or failed
        over): the statement that found it gone failed, and the next one goes through, so a
        daemon carries on by itself. Called with the lock held.

        A server still out of reach is not tried again for ``_RECONNECT_PAUSE_S``: each try may
        take the connect timeout, and every thread waits for the lock meanwhile. A closed
        journal stays closed."""
        if self._closed or not self._engine.lost(self._db):
            return self._db
        if time.monotonic() < self._reconnect_after:
            raise self._engine.failure(
                f"the journal is out of reach; connecting again within {_RECONNECT_PAUSE_S:g} s"
            )
        try:
            self._db = self._engine.reconnect()
        except self._engine.errors:
            self._reconnect_after = time.monotonic() + _RECONNECT_PAUSE_S
            raise
        log.warning("the journal %s lost its connection; connected again", self.path)
        return self._db

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self, *, durable: bool = True) -> Iterator[_Db]:
        """One write transaction; on SQLite it holds the write lock from its first statement.

        Durable unless the caller shows that losing it to a power cut is safe (``Engine.write``):
        then it is on the disk before the caller goes on, synced after the locks are let go
        where the engine can (``Engine.syncs_log_apart``), so other threads write meanwhile.
        """
        apart = durable and self._engine.syncs_log_apart
        with self._lock, self._file_lock:
            self._keep_in_place()
            db = self._connection()
            with self._engine.write(db, durable=durable and not apart):
                yield _Db(db, self._engine)
        if apart:
            self._sync_log()

    def _sync_log(self) -> None:
        """Put the commits made so far on the disk; where the log's file cannot be opened by
        its path, a durable write of SQLite's own syncs the file it writes to (one that changes
        a row: SQLite writes nothing, and syncs nothing, for a row set to what it holds).

        A sync the disk failed raises ``LogNotSyncedError``, not tried again another way: a page
        whose write-back failed may be marked clean, and a second sync would prove nothing.
        """
        try:
            self._engine.sync_log()
        except LogUnreachableError as exc:
            if not self._said_unsynced:
                self._said_unsynced = True
                log.warning(
                    "the log of the journal %s cannot be synced by its path (%s); each record "
                    "is synced by SQLite instead, which holds the other threads meanwhile",
                    self.path,
                    exc,
                )
            with self._lock, self._file_lock:
                db = self._connection()
                with self._engine.write(db, durable=True):
                    db.execute(
                        "INSERT INTO facts (name, value) VALUES ('log_syncs', '1')"
                        " ON CONFLICT (name) DO UPDATE SET value = CAST(facts.value AS INTEGER) + 1"
                    )
        except OSError as exc:
            raise LogNotSyncedError(
                f"the journal {self.path} recorded, but the disk failed to sync its log ({exc})"
            ) from exc

    def _read(self, sql: str, args: Iterable[object] = ()) -> list[Any]:
        with self._lock:
            return self._connection().execute(self._engine.sql(sql), tuple(args)).fetchall()

    # -- files ---------------------------------------------------------------------------------

    def claim_file(
        self,
        *,
        path: Path,
        sha256: str,
        target: str,
        owner: str,
        stale_s: float,
        read_under: str | None = None,
        taken_at: float | None = None,
    ) -> FileRecord | None:
        """Claim ``path`` with this content for ``owner``, or ``None`` if it is not ours to do.

        Not ours: already ``done`` at this target (the same bytes are not processed twice; a
        sandbox trial does not count for staging or production), or ``error`` there under these
        mappings and limits (``read_under``; an ERROR under others is taken again where it was,
        or anywhere once it is gone from there: while two inboxes hold it, it is the first's),
        claimed by a process
        whose lease is fresh, or being claimed by another process at this very moment. A file
        ``waiting`` for pending batches, marked ``retry`` after a transient failure, or claimed by
        a process whose lease ran out (``stale_s`` after its last heartbeat) is claimed again
        (resumed). ``holder`` says who has a file this returned ``None`` for.

        ``taken_at``: when a file this journal has no record of was first taken, if earlier
        than now (its outcome's day, ``held_day_unrecorded``); recorded only with a new record.
        """
        now = self._clock()
        with self._write() as db:
            inserted = db.execute(
                "INSERT INTO files (target, name, path, sha256, state, owner, heartbeat,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (target, name, sha256) DO NOTHING RETURNING id",
                (
                    *(target, path.name, str(path), sha256, FileState.CLAIMED, owner, now),
                    now if taken_at is None else min(taken_at, now),
                    now,
                ),
            ).fetchone()
            if inserted is not None:
                file_id = inserted[0]
            else:
                row = db.execute(
                    # The suffix is the engine's constant, never input.
                    "SELECT id, state, owner, heartbeat, path, read_under FROM files"  # noqa: S608
                    " WHERE target = ? AND name = ? AND sha256 = ?" + self._engine.pick_suffix,
                    (target, path.name, sha256),
                ).fetchone()
                if row is None:  # another replica is deciding about it right now
                    return None
                if row["state"] in FINAL_FILE_STATES and not (
                    row["state"] == FileState.ERROR
                    and row["read_under"] != read_under
                    and _found_there(row["path"], path)
                ):
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

    def holder(self, *, path: Path, sha256: str, target: str) -> str | None:
        """Who holds the claim on this file now (``host:pid:token:namespace``), if anyone does."""
        rows = self._read(
            "SELECT owner FROM files WHERE target = ? AND name = ? AND sha256 = ? AND state = ?",
            (target, path.name, sha256, FileState.CLAIMED),
        )
        return rows[0]["owner"] if rows else None

    def renew_claims(self, owner: str) -> int:
        """``owner``'s heartbeat: every file it holds stays its own for another lease.

        Returns how many claims were renewed.
        """
        with self._write() as db:
            return db.execute(
                "UPDATE files SET heartbeat = ? WHERE owner = ? AND state = ?",
                (self._clock(), owner, FileState.CLAIMED),
            ).rowcount

    def claims(self) -> list[FileRecord]:
        """Every file claimed now (with its owner's last heartbeat), oldest claim first."""
        rows = self._read(
            "SELECT * FROM files WHERE state = ? ORDER BY updated_at, id", (FileState.CLAIMED,)
        )
        return [_file_record(row) for row in rows]

    def finish_file(
        self,
        file_id: int,
        *,
        state: FileState,
        counts: dict[str, int],
        mapping: str | None,
        outcome: Path | None,
        message: str | None = None,
        written: str | None = None,
        claim: str | EllipsisType | None = ...,
        read_under: str | None = None,
    ) -> None:
        """Record how a file ended: ``done``, ``waiting`` (on batches), ``error`` or ``retry``;
        ``written``: the stamp of the outcome it has just written (else the last stays);
        ``read_under``: for an ``error``, what it was found under (``Context.read_under``).

        ``claim``: for a caller that holds no claim of its own (``filedrop resolve``), the
        claim's owner it saw, whose run is gone (None: there was none); a file claimed by
        anyone else now is left to that run. The run holding the file gives none.
        """
        guard, guard_args = "", ()
        if claim is not ...:
            guard, guard_args = " AND (state != ? OR owner = ?)", (FileState.CLAIMED, claim)
        with self._write() as db:
            db.execute(
                # The guard is one of two constants, never input.
                "UPDATE files SET state = ?, counts = ?, mapping = ?, outcome = ?, message = ?,"  # noqa: S608
                " outcome_written = COALESCE(?, outcome_written), read_under = ?, owner = NULL,"
                " updated_at = ? WHERE id = ?" + guard,
                (
                    state,
                    json.dumps(counts),
                    mapping,
                    str(outcome) if outcome else None,
                    mask_ids(message) if message else None,
                    written,
                    read_under,
                    self._clock(),
                    file_id,
                    *guard_args,
                ),
            )

    def let_go(self, file_id: int, *, owner: str | None = None) -> None:
        """Give up this process's claim on a file as if it had never been taken up: forgotten
        if nothing was ever sent from it (the same bytes are then new again, and other bytes
        leave no record behind), else left ``retry`` for the next run to resume. With ``owner``,
        only while that owner still holds the claim (no other process took it over)."""
        with self._write() as db:
            if owner is not None and not self._held(db, file_id, owner):
                return
            forgotten = db.change(
                "DELETE FROM files WHERE id = ? AND NOT EXISTS"
                " (SELECT 1 FROM batches WHERE file_id = ?)"
                " AND NOT EXISTS (SELECT 1 FROM invoices WHERE file_id = ?)",
                (file_id, file_id, file_id),
            )
            if not forgotten:
                db.execute(
                    "UPDATE files SET state = ?, owner = NULL, updated_at = ? WHERE id = ?",
                    (FileState.RETRY, self._clock(), file_id),
                )

    def file(self, file_id: int) -> FileRecord:
        return _file_record(self._read("SELECT * FROM files WHERE id = ?", (file_id,))[0])

    def leave_waiting(self, file_id: int) -> None:
        """Have the next run of a finished file (the same bytes) take it up again, as one left
        waiting on its batches: its outcome is out of date (a batch was resolved since)."""
        with self._write() as db:
            db.execute(
                "UPDATE files SET state = ?, updated_at = ? WHERE id = ? AND state IN (?, ?)",
                (FileState.WAITING, self._clock(), file_id, FileState.DONE, FileState.WAITING),
            )

    def find_file(self, *, target: str, name: str, sha256: str) -> FileRecord | None:
        """The record of these bytes under this name at ``target``, if there is one."""
        rows = self._read(
            "SELECT * FROM files WHERE target = ? AND name = ? AND sha256 = ?",
            (target, name, sha256),
        )
        return _file_record(rows[0]) if rows else None

    def later_with_outcome(self, record: FileRecord) -> FileRecord | None:
        """The newest file recorded after ``record`` that names its outcome (another version of
        the file under its name, processed since), if any."""
        if record.outcome is None:
            return None
        rows = self._read(
            "SELECT * FROM files WHERE target = ? AND outcome = ? AND id > ? ORDER BY id DESC"
            " LIMIT 1",
            (record.target, record.outcome, record.id),
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
        self, *, file_id: int, target: str, invoice_numbers: list[str], owner: str | None = None
    ) -> tuple[int, list[str]]:
        """Write a batch down before its POST and claim its invoice numbers.

        Returns the batch's journal id and the numbers it really claimed, in the given order: a
        number another batch holds (sending, pending, succeeded or unknown) is left out, so it
        cannot be sent twice even if two runs race. A number that ``FAILED`` earlier may be sent
        again. With ``owner``, ``ClaimLostError`` (nothing written) when the file is no longer
        claimed by that owner: another process took it over, or found it gone.
        """
        now = self._clock()
        # A number given twice is claimed once (a statement may not upsert one row twice).
        unique = list(dict.fromkeys(invoice_numbers))
        batch: int | None = None
        try:
            with self._write() as db:
                if owner is not None and not self._held(db, file_id, owner):
                    raise ClaimLostError(CLAIM_LOST)
                # A number whose twin with zeros in front dropped or added another batch holds
                # is left out too (zero_twins), decided here with the claims of the others kept
                # out: two files of one run, each checked before the other claimed, sent both.
                if any(map(_digits_only, unique)):
                    self._engine.claim_digits(db, target)
                twins = self._twin_numbers(
                    lambda sql, args: db.execute(sql, args).fetchall(),
                    target=target,
                    numbers=unique,
                )
                unique = [number for number in unique if number not in twins]
                batch = db.execute(
                    "INSERT INTO batches (file_id, target, state, invoice_count, created_at)"
                    " VALUES (?, ?, ?, ?, ?) RETURNING id",
                    (file_id, target, BatchState.POSTING, len(unique), now),
                ).fetchone()[0]
                # The whole batch in one upsert; a row it skips is one another batch holds.
                # Its count of rows written tells whether every number was claimed, so only a
                # batch that lost some to another reads back which.
                numbers, numbers_args = self._engine.rows("numbers", ("invoice_number",), unique)
                written = db.change(
                    # The status list is built from the enum, the rest from the engine.
                    f"WITH {numbers}"  # noqa: S608
                    " INSERT INTO invoices"
                    " (target, invoice_number, status, file_id, batch, updated_at)"
                    # SQLite needs a WHERE to tell the upsert's ON from a join's.
                    " SELECT ?, invoice_number, ?, ?, ?, ? FROM numbers WHERE true"
                    " ON CONFLICT (target, invoice_number) DO UPDATE SET"
                    " status = excluded.status, file_id = excluded.file_id,"
                    " batch = excluded.batch,"
                    " invoice_id = NULL, case_id = NULL, case_number = NULL, message = NULL,"
                    " updated_at = excluded.updated_at"
                    f" WHERE invoices.status NOT IN ({_BLOCKING_SQL})",
                    (*numbers_args, target, InvoiceState.SENDING, file_id, batch, now),
                )
                if written == len(unique) == len(set(invoice_numbers)):
                    return batch, list(invoice_numbers)
                taken = {
                    row[0]
                    for row in db.execute(
                        "SELECT invoice_number FROM invoices WHERE batch = ? AND status = ?",
                        (batch, InvoiceState.SENDING),
                    )
                }
                db.execute("UPDATE batches SET invoice_count = ? WHERE id = ?", (len(taken), batch))
                return batch, [number for number in invoice_numbers if number in taken]
        except LogNotSyncedError as exc:
            # Committed but perhaps not on the disk: nothing goes, and its numbers are left
            # free for a later claim rather than UNKNOWN (a power cut can only take this back
            # to the claim itself, which the next start makes UNKNOWN: never sent twice).
            if batch is not None:
                with contextlib.suppress(*self._engine.errors):
                    self.batch_not_sent(batch, message=f"not sent: {exc}")
            raise

    def holds(self, file_id: int, owner: str) -> bool:
        """Whether ``owner`` still holds its claim on the file (no other process took it over)."""
        with self._write() as db:
            return self._held(db, file_id, owner)

    def _held(self, db: _Db, file_id: int, owner: str) -> bool:
        return (
            db.execute(
                # The suffix is the engine's constant, never input.
                "SELECT 1 FROM files WHERE id = ? AND state = ? AND owner = ?"  # noqa: S608
                + self._engine.lock_suffix,
                (file_id, FileState.CLAIMED, owner),
            ).fetchone()
            is not None
        )

    def drop_empty_batch(self, batch: int) -> None:
        """Forget a batch that claimed nothing (every number was taken by a racing run)."""
        with self._write() as db:
            db.execute("DELETE FROM batches WHERE id = ? AND invoice_count = 0", (batch,))

    def batch_submitted(self, batch: int, *, batch_id: str) -> bool:
        """The API accepted the batch: its invoices are ``PENDING`` until it ends. False when the
        batch is no longer ``posting``: another process, taking over a file it thought
        abandoned, made it UNKNOWN meanwhile, and that stands.

        Not waited for on the disk, like recorded results: this runs between two POSTs, and a
        sync here held the journal's lock, and with it every posting thread, for a disk's
        round trip per batch. A power cut can take it back only until the next durable commit
        (the next batch's claim, milliseconds later, or the file's end); the batch then reads
        ``posting``, which the next start turns UNKNOWN: never sent again, as for a crash
        during its POST. The claim before the POST is what must be on disk, and it is.
        """
        now = self._clock()
        with self._write(durable=False) as db:
            if not db.change(
                "UPDATE batches SET state = ?, batch_id = ?, api_status = 'QUEUED',"
                " submitted_at = ? WHERE id = ? AND state = ?",
                (BatchState.QUEUED, batch_id, now, batch, BatchState.POSTING),
            ):
                return False
            db.execute(
                "UPDATE invoices SET status = ?, updated_at = ? WHERE batch = ?",
                (InvoiceState.PENDING, now, batch),
            )
        return True

    def batch_accepted_after_all(self, batch: int, *, batch_id: str) -> int | None:
        """The API's answer to a POST came after another process, taking over the file, made
        the batch UNKNOWN (and perhaps after an operator resolved it): Amili has it, as
        ``batch_id``. So it is ``queued`` again and its invoices ``PENDING``, polled like any
        other batch, rather than left for a person to look up, and blocked again if they were
        resolved as not sent. A file finished meanwhile is left ``waiting``, so the next run
        polls the batch and rewrites the outcome if this process does not.

        Returns how many of its invoices another batch holds now (resolved as not sent and
        sent again: twice at Amili), or None when the batch is in neither state.
        """
        now = self._clock()
        with self._write() as db:
            row = db.execute(
                # The suffix is the engine's constant, never input.
                "SELECT invoice_count FROM batches WHERE id = ? AND state IN (?, ?)"  # noqa: S608
                + self._engine.lock_suffix,
                (batch, BatchState.UNKNOWN, BatchState.RESOLVED),
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE batches SET state = ?, batch_id = ?, api_status = 'QUEUED', message = NULL,"
                " submitted_at = ?, finished_at = NULL WHERE id = ?",
                (BatchState.QUEUED, batch_id, now, batch),
            )
            still_here = db.change(
                "UPDATE invoices SET status = ?, message = NULL, updated_at = ? WHERE batch = ?",
                (InvoiceState.PENDING, now, batch),
            )
            db.execute(
                "UPDATE files SET state = ?, updated_at = ?"
                " WHERE id = (SELECT file_id FROM batches WHERE id = ?) AND state IN (?, ?)",
                (FileState.WAITING, now, batch, FileState.DONE, FileState.ERROR),
            )
        return row[0] - still_here

    def batch_still_queued(self, batch: int, *, failure: str | None) -> None:
        """The batch's polls ran out and it stays QUEUED, as Amili last said (``failure`` None),
        or not known, as its last poll failed with ``failure``: then ``api_status`` is empty and
        the message says why, for the outcome. Not waited for on the disk: lost, the next poll
        tells again."""
        with self._write(durable=False) as db:
            db.execute(
                "UPDATE batches SET api_status = ?, message = ? WHERE id = ? AND state = ?",
                (None if failure else "QUEUED", failure, batch, BatchState.QUEUED),
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
        self.batches_finished([FinishedBatch(batch, api_status, succeeded, failed)])

    def batches_finished(self, finished: Iterable[FinishedBatch]) -> None:
        """Record several terminal batches in one transaction, as ``batch_finished`` does each.

        Batches that end together share one commit: fewer syncs to disk, and the invoices'
        pages, which neighbouring batches share, written once instead of once a batch.

        Not waited for on the disk (on SQLite, where the sync is the commit's system CPU and, on
        a slow disk, a wait that holds the journal's lock against every other thread): a power
        cut can take back only the last results recorded, and then their batches read
        ``queued`` again, with their API ids, and their invoices ``PENDING``, still blocked;
        the next run polls those batches and learns the same results. Whatever is written
        durably later (the next claim, the file's end) makes these durable as well.
        """
        now = self._clock()
        with self._write(durable=False) as db:
            for batch, api_status, succeeded, failed in finished:
                self._record_finished(db, batch, api_status, succeeded, failed, now=now)

    def _record_finished(
        self,
        db: _Db,
        batch: int,
        api_status: str,
        succeeded: Iterable[tuple[str, str, str, str]],
        failed: Iterable[tuple[str, str]],
        *,
        now: float,
    ) -> None:
        target, claimed = db.execute(
            "SELECT target, invoice_count FROM batches WHERE id = ?", (batch,)
        ).fetchone()
        # A number named twice the same way takes its last result. One named both succeeded
        # and failed is UNKNOWN: FAILED let the next file holding it send it again, though
        # Amili may have made its case.
        successes = {row[0]: row for row in succeeded}
        failures = {
            number: (number, mask_ids(message, keep=(number,))) for number, message in failed
        }
        both = [number for number in successes if number in failures]
        for number in both:
            del successes[number], failures[number]
        said_both = (
            f"the batch ended {api_status} naming this invoice both succeeded and failed, so "
            f"whether Amili has it is not known: check with Amili, then '{resolve_command(batch)} "
            "--sent' or '--not-sent'"
        )
        this_batch = {"target": target, "batch": batch, "now": now}
        messages = {"columns": ("message",), "set_sql": "message = results.message"}
        both_rows = [(number, said_both) for number in both]
        named_both = self._update_results(db, both_rows, status=_UNKNOWN, **messages, **this_batch)
        mentioned = named_both + self._update_results(
            db,
            successes.values(),
            columns=("invoice_id", "case_id", "case_number"),
            set_sql="invoice_id = results.invoice_id, case_id = results.case_id,"
            " case_number = results.case_number, message = NULL",
            status=_SUCCEEDED,
            **this_batch,
        )
        mentioned += self._update_results(
            db, failures.values(), status=_FAILED, **messages, **this_batch
        )
        unknown = named_both > 0  # a number not in the batch, named both ways, is none of its
        # The batch holds ``claimed`` invoices at most (fewer if a number moved on to a later
        # batch), so a result for each of them leaves none unmentioned, and nothing to look up.
        if mentioned < claimed:
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
            unknown = bool(
                db.execute(
                    "SELECT COUNT(*) FROM invoices WHERE batch = ? AND status = ?",
                    (batch, InvoiceState.UNKNOWN),
                ).fetchone()[0]
            )
        # A batch that left invoices UNKNOWN stays listed by status, and resolve takes it.
        db.execute(
            "UPDATE batches SET state = ?, api_status = ?, finished_at = ? WHERE id = ?",
            (BatchState.UNKNOWN if unknown else BatchState.DONE, api_status, now, batch),
        )

    def _update_results(
        self,
        db: _Db,
        results: Iterable[tuple[str, ...]],
        *,
        columns: tuple[str, ...],
        set_sql: str,
        status: str,
        target: str,
        batch: int,
        now: float,
    ) -> int:
        """Write one kind of result ((number, *columns) each) to the batch's invoices, joined
        on the number; returns how many invoices it found.

        ``status`` is plain text, never the enum's member: sqlite3 binds a str subclass, and
        ``None``, through its adapter lookup, which costs more than the rest of the row. For
        the same reason a column that is always NULL is written as such by ``set_sql``.
        """
        rows = list(results)
        where, where_args = self._engine.batch_invoice(target=target, batch=batch)
        found = 0
        step = self._engine.rows_per_statement
        for start in range(0, len(rows), step):
            values, values_args = self._engine.rows(
                "results", ("invoice_number", *columns), rows[start : start + step]
            )
            found += db.change(
                # The text comes from the engine and the journal's constants, never from input.
                f"WITH {values}"  # noqa: S608
                f" UPDATE invoices SET status = ?, {set_sql}, updated_at = ? FROM results"
                f" WHERE {where}",
                (*values_args, status, now, *where_args),
            )
        return found

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
        number = ref.lstrip("#")
        # ASCII digits that fit a journal number: '٣' or 5,000 digits name no batch.
        if not rows and number.isascii() and number.isdigit() and len(number) <= 18:
            rows = self._read("SELECT * FROM batches WHERE id = ?", (int(number),))
        return _batch_record(rows[0]) if rows else None

    def resolve_batch(self, batch: int, *, sent: bool, note: str, holder: str | None = None) -> int:
        """An operator checked with Amili: the batch's invoices exist there (``sent``) or do not.

        ``sent`` keeps the numbers blocked for good; not sent releases them so that the next run
        of their file sends them (the file is set to ``retry``, unless it is ``gone``). Returns
        how many invoices changed. ``NotSettledError``, changing nothing, when the batch is no
        longer UNKNOWN (or POSTING, by a process that is gone), or its file is claimed by
        another owner than ``holder`` (the claim's owner as the caller saw it, whose run is
        gone; None: the file was not claimed): a run took it up since, and what it writes would
        not show this.
        """
        now = self._clock()
        with self._write() as db:
            # Read under the write's lock (PostgreSQL: the rows'), which a claim waits for or
            # passes over: no run takes the file up between this look and the change.
            seen = db.execute(
                # The suffix is the engine's constant, never input.
                "SELECT batches.state, files.state, files.owner FROM batches"  # noqa: S608
                " JOIN files ON files.id = batches.file_id WHERE batches.id = ?"
                + self._engine.lock_suffix,
                (batch,),
            ).fetchone()
            # POSTING: its process is gone (the caller saw to it), so its fate is unknown too.
            if seen is not None and seen[0] not in (BatchState.UNKNOWN, BatchState.POSTING):
                raise NotSettledError(f"it was settled meanwhile: it is {seen[0]} now")
            if seen is not None and seen[1] == FileState.CLAIMED and seen[2] != holder:
                raise NotSettledError(
                    "a filedrop process took up its file just now; resolve it once that has "
                    "finished"
                )
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
                # A file that is gone stays so: the same bytes dropped again are taken up
                # anyway, and its outcome, from the journal alone, is rewritten by the caller.
                db.execute(
                    "UPDATE files SET state = ?, updated_at = ?"
                    " WHERE id = (SELECT file_id FROM batches WHERE id = ?) AND state != ?",
                    (FileState.RETRY, now, batch, FileState.GONE),
                )
        return changed

    def sent_numbers_of(self, file_id: int) -> set[str]:
        """The invoice numbers this file's batches hold sent, or perhaps sent (a blocking
        status); a number another file sent since is that file's."""
        rows = self._read(
            # The status list is built from the enum, never from input.
            "SELECT invoices.invoice_number FROM batches"  # noqa: S608
            " JOIN invoices ON invoices.batch = batches.id"
            f" WHERE batches.file_id = ? AND invoices.status IN ({_BLOCKING_SQL})",
            (file_id,),
        )
        return {row[0] for row in rows}

    def sent_from(self, file_id: int) -> list[InvoiceRecord]:
        """Every invoice whose last batch is one of this file's, batch by batch in the order
        claimed: what a file that is gone had sent (``pipeline.close_gone_file``). A number
        another file sent since is that file's."""
        order = f"batches.id, invoices.{self._engine.insertion_order}"
        rows = self._read(
            # Column names come from the record, the order from the engine.
            f"SELECT {', '.join(f'invoices.{name}' for name in InvoiceRecord._fields)}"  # noqa: S608
            " FROM batches JOIN invoices ON invoices.batch = batches.id"
            f" WHERE batches.file_id = ? ORDER BY {order}",
            (file_id,),
        )
        return [
            InvoiceRecord(
                row["invoice_number"],
                _INVOICE_STATES[row["status"]],
                row["file_id"],
                row["batch"],
                row["invoice_id"],
                row["case_id"],
                row["case_number"],
                row["message"],
            )
            for row in rows
        ]

    def unknown_invoice_numbers(self, batch: int) -> list[str]:
        """The invoice numbers of a batch whose fate is unknown: what to look up with Amili."""
        rows = self._read(
            # The column is the engine's constant, never input.
            "SELECT invoice_number FROM invoices WHERE batch = ? AND status IN (?, ?)"  # noqa: S608
            f" ORDER BY {self._engine.insertion_order}",
            (batch, InvoiceState.UNKNOWN, InvoiceState.SENDING),
        )
        return [row[0] for row in rows]

    def invoices(self, *, target: str, numbers: Iterable[str]) -> dict[str, InvoiceRecord]:
        """What the journal knows of these invoice numbers (absent ones are left out)."""
        return {
            record.invoice_number: record
            for record in self.each_invoice(target=target, numbers=numbers)
        }

    def zero_twins(self, *, target: str, numbers: Iterable[str]) -> dict[str, InvoiceRecord]:
        """For each of ``numbers`` made of digits alone, another invoice held back at ``target``
        (sending, pending, succeeded or unknown) whose number is the same digits with more or
        fewer zeros in front: ``777`` for ``000777``, and the other way round; and for any
        number, the same sent as ``="000781"`` (``_wrapped_twins``).

        A spreadsheet program that opens and saves an export drops those zeros, and an invoice
        sent from last week's export would go again from this week's, saved so. Numbers with
        no such twin, and those the journal holds exactly as asked, are left out.
        """
        twin_of = self._twin_numbers(self._read, target=target, numbers=numbers)
        records = self.invoices(target=target, numbers=twin_of.values())
        return {number: records[twin] for number, twin in twin_of.items() if twin in records}

    def _twin_numbers(
        self,
        read: _Read,
        *,
        target: str,
        numbers: Iterable[str],
    ) -> dict[str, str]:
        """``zero_twins``' numbers (asked -> held), read with ``read`` (in a write transaction,
        for ``claim_batch``)."""
        numbers = list(dict.fromkeys(numbers))
        twins = self._wrapped_twins(read, target=target, numbers=numbers)
        asked = [n for n in numbers if _digits_only(n) and n not in twins]
        if not asked:
            return twins
        # Twins differ by zeros in front, so one of them starts with a zero: when neither the
        # file nor the journal has such a number (most ERPs never pad), nothing is looked up.
        zero_led = " AND invoice_number >= '0' AND invoice_number < '1'"
        if not any(n.startswith("0") for n in asked) and not list(
            read("SELECT 1 FROM invoices WHERE target = ?" + zero_led + " LIMIT 1", (target,))  # noqa: S608
        ):
            return twins
        keys = list(dict.fromkeys(n.lstrip("0") for n in asked))
        wanted, args = self._engine.rows("keys", ("k",), keys)
        # Numbers first, records only for the twins: in a padded file sent before, every number
        # finds itself, and a record for each cost ten times the lookup.
        held: dict[str, list[str]] = {}
        for by_digits, condition in (
            # Without zeros in front, by the primary key; with them, by the index of those.
            (False, " WHERE target = ?"),
            (True, f"{self._engine.zero_led_index} WHERE target = ?{zero_led}"),
        ):
            key = "ltrim(invoice_number, '0')" if by_digits else "invoice_number"
            for (number,) in read(
                # The text comes from the engine and constants, never from input.
                f"SELECT invoice_number FROM invoices{condition}"  # noqa: S608
                f" AND status IN ({_BLOCKING_SQL}) AND {key} IN (WITH {wanted} SELECT k FROM keys)",
                (target, *args),
            ):
                if _digits_only(number):
                    held.setdefault(number.lstrip("0"), []).append(number)
        return twins | {
            number: others[0]
            for number in asked
            if (others := held.get(number.lstrip("0"))) and number not in others
        }

    def _wrapped_twins(
        self,
        read: _Read,
        *,
        target: str,
        numbers: list[str],
    ) -> dict[str, str]:
        """Numbers held back as ="000781": filedrop before 2026-12-06 sent a CSV cell so written
        as it was, where it now reads the text Excel shows. Looked for only in a journal that
        held such a number when it was migrated (the fact ``wrapped_numbers``)."""
        if not list(read("SELECT 1 FROM facts WHERE name = 'wrapped_numbers'", ())):
            return {}
        forms = {f'="{number}"': number for number in numbers}
        wanted, args = self._engine.rows("keys", ("k",), list(forms))
        rows = read(
            # The text comes from the engine and constants, never from input.
            f"SELECT invoice_number FROM invoices WHERE target = ? AND status IN ({_BLOCKING_SQL})"  # noqa: S608
            f" AND invoice_number IN (WITH {wanted} SELECT k FROM keys)",
            (target, *args),
        )
        return {forms[held]: held for (held,) in rows}

    def each_invoice(self, *, target: str, numbers: Iterable[str]) -> Iterator[InvoiceRecord]:
        """The same, one record at a time, for files too big to hold them all at once.

        Holds the journal's lock until exhausted; consume it fully before other journal calls
        from other threads are expected to proceed.
        """
        # A chunk's records made in one comprehension, by tuple.__new__ itself: a call of the
        # record's own __new__ per row cost a third of reading it.
        new, state = tuple.__new__, _INVOICE_STATES.__getitem__
        for chunk in self.invoice_rows(target=target, numbers=numbers):
            yield from [
                new(InvoiceRecord, (n, state(s), file_id, batch, invoice_id, case, cn, m))
                for n, s, file_id, batch, invoice_id, case, cn, m in chunk
            ]

    def invoice_rows(
        self, *, target: str, numbers: Iterable[str]
    ) -> Iterator[list[tuple[Any, ...]]]:
        """The same as rows of ``InvoiceRecord``'s fields with the status as text, a thousand at
        a time: for a file's outcome, which works a column at a time and needs no record per
        invoice. Holds the journal's lock until exhausted, as ``each_invoice`` does."""
        with self._lock:
            # A number asked for twice is read once.
            wanted, wanted_args = self._engine.invoices_named(
                target=target, numbers=list(dict.fromkeys(numbers))
            )
            cursor = self._engine.tuples(self._connection())
            try:
                cursor.execute(
                    # Column names come from the record, the rest from the engine.
                    self._engine.sql(
                        f"SELECT {', '.join(f'invoices.{name}' for name in InvoiceRecord._fields)}"  # noqa: S608
                        f" FROM {wanted}"
                    ),
                    wanted_args,
                )
                del wanted_args
                while chunk := cursor.fetchmany(1000):
                    yield chunk
            finally:
                cursor.close()

    def status_counts(self) -> dict[str, int]:
        """Invoices per status, over the whole journal."""
        rows = self._read("SELECT status, COUNT(*) FROM invoices GROUP BY status ORDER BY status")
        return {row[0]: row[1] for row in rows}

    # -- replicas' heartbeats ------------------------------------------------------------------

    def beat(self, owner: str) -> None:
        """Record that the daemon ``owner`` is alive (``status`` and ``--health`` read it)."""
        now = self._clock()
        with self._write() as db:
            db.execute(
                "INSERT INTO replicas (owner, started_at, beat_at) VALUES (?, ?, ?)"
                " ON CONFLICT (owner) DO UPDATE SET beat_at = excluded.beat_at",
                (owner, now, now),
            )

    def forget_replica(self, owner: str) -> None:
        """A daemon that stopped cleanly is no longer listed."""
        with self._write() as db:
            db.execute("DELETE FROM replicas WHERE owner = ?", (owner,))

    def replicas(self) -> list[tuple[str, float, float]]:
        """Every daemon that beat and did not stop cleanly: (owner, started at, last beat),
        the freshest first."""
        rows = self._read("SELECT owner, started_at, beat_at FROM replicas ORDER BY beat_at DESC")
        return [(row[0], row[1], row[2]) for row in rows]

    # -- lost and rebuilt journals --------------------------------------------------------------

    def knows_file_name(self, name: str) -> bool:
        """Whether any file of this name was ever recorded, at any target, in any case of its
        ASCII letters: an outcome is matched to its input that way (``INVOICES.CSV`` has
        ``INVOICES.outcome.csv``, which a rebuild records as ``INVOICES.csv``)."""
        return bool(self._read("SELECT 1 FROM files WHERE lower(name) = lower(?) LIMIT 1", (name,)))

    def known_outcomes(self, *, target: str, stamps: Iterable[str]) -> set[str]:
        """Which of these outcome files (``outcome.written_stamp``) this journal knows all of:
        a record of it wrote the file, or it was checked at ``target`` (``outcome_checked``)."""
        wanted = list(dict.fromkeys(stamps))
        if not wanted:
            return set()
        stamp_rows, args = self._engine.rows("stamps", ("stamp",), wanted)
        rows = self._read(
            # The text comes from ``rows``, never from input.
            f"WITH {stamp_rows} SELECT outcome_written FROM files"  # noqa: S608
            " WHERE outcome_written IN (SELECT stamp FROM stamps)"
            " UNION SELECT stamp FROM outcomes_checked"
            " WHERE target = ? AND stamp IN (SELECT stamp FROM stamps)",
            (*args, target),
        )
        return {row[0] for row in rows}

    def outcome_checked(self, *, target: str, stamp: str) -> None:
        """Remember that the outcome file ``stamp`` shows nothing sent that this journal does
        not know at ``target``: it need not be read again while it stays unchanged."""
        with self._write(durable=False) as db:
            db.execute(
                "INSERT INTO outcomes_checked (target, stamp, checked_at) VALUES (?, ?, ?)"
                " ON CONFLICT (target, stamp) DO NOTHING",
                (target, stamp, self._clock()),
            )

    def known_names(self) -> set[str]:
        """Every file name and outcome file name ever recorded, at any target."""
        rows = self._read("SELECT DISTINCT name, outcome FROM files")
        return {row[0] for row in rows} | {Path(row[1]).name for row in rows if row[1]}

    def mark_started_fresh(self) -> None:
        """Record that this journal was started empty on purpose (``journal rebuild --fresh``)."""
        with self._write() as db:
            db.execute(
                "INSERT INTO facts (name, value) VALUES ('started_fresh_at', ?)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (repr(self._clock()),),
            )

    def identity(self) -> str:
        """This journal's own id, made when it was created: it tells the journal from any
        other, a new one at the same path or URL included (``inflight``)."""
        rows = self._read("SELECT value FROM facts WHERE name = 'journal_id'")
        if rows:
            return str(rows[0][0])
        with self._write() as db:  # a PostgreSQL journal makes its id on first asking
            db.execute(
                "INSERT INTO facts (name, value) VALUES ('journal_id', ?) ON CONFLICT DO NOTHING",
                (secrets.token_hex(8),),
            )
            return str(
                db.execute("SELECT value FROM facts WHERE name = 'journal_id'").fetchone()[0]
            )

    def started_fresh_at(self) -> float | None:
        """When this journal was started empty on purpose, or ``None`` if it never was."""
        rows = self._read("SELECT value FROM facts WHERE name = 'started_fresh_at'")
        return float(rows[0][0]) if rows else None

    def record_rebuilt_file(
        self,
        *,
        target: str,
        name: str,
        path: Path,
        sha256: str,
        state: FileState,
        counts: dict[str, int],
        outcome: Path,
        batches: Mapping[RebuiltBatch, BatchState],
        invoices: Sequence[tuple[str, InvoiceState, RebuiltBatch | None, str, str, str, str]],
        draw_above: int = 0,
        created_at: float | None = None,
    ) -> tuple[int, list[tuple[int, int]]]:
        """Record a file read back from its outcome, with its batches and invoices, at once.

        ``batches`` maps each batch, as the outcome names it, to its state; ``invoices`` are
        (number, status, batch or None, invoice id, case id, case number, message). A batch
        keeps the number its outcome's advice names ('filedrop resolve 17'), so that advice
        still settles this batch and no other. A batch whose number is taken, or that names
        none, gets one above ``draw_above`` (the largest any outcome read back names) and
        above every batch's. What the journal already knows wins: a known file keeps its
        state and batches, a known API batch id is not added again, and a known invoice
        number is left as it is, so rebuilding twice adds nothing the second time. But a
        number the journal would let go again (``FAILED``: an older copy of the journal, from
        before a corrected export sent it) takes what the outcome shows when that blocks it,
        and so does one it holds UNKNOWN that the outcome shows went (``SUCCEEDED``,
        ``PENDING``: an older copy, from before that batch was resolved as not sent and the
        invoice sent again), with its batch, known file or not; an UNKNOWN batch left with
        none of its invoices is then resolved, naming the outcome. ``created_at``, when given,
        is the time a new file record says it was taken (the day its outcome held invoices not
        due yet on), else now.

        Returns how many invoice numbers were new or now blocked, and each batch that could not
        keep the number its outcome names, as (that number, the batch's number now); its invoices'
        advice names the new number.
        """
        now = self._clock()
        renumbered: list[tuple[int, int]] = []
        with self._write() as db:
            row = db.execute(
                "SELECT id FROM files WHERE target = ? AND name = ? AND sha256 = ?",
                (target, name, sha256),
            ).fetchone()
            known_file = row is not None
            file_id = row[0] if known_file else db.execute(
                "INSERT INTO files (target, name, path, sha256, state, created_at, updated_at,"
                " counts, outcome, message) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (
                    target, name, str(path), sha256, state,
                    now if created_at is None else created_at, now, json.dumps(counts),
                    str(outcome), REBUILT,
                ),
            ).fetchone()[0]  # fmt: skip
            sizes = Counter(batch for _, _, batch, *_ in invoices if batch is not None)
            held = self.invoices(target=target, numbers=[number for number, *_ in invoices])
            # The journal's UNKNOWN batches of the invoices the outcome shows went: behind.
            behind = {
                number: held[number].batch
                for number, status, *_ in invoices
                if status in WENT_INVOICE_STATES
                and number in held
                and held[number].status is InvoiceState.UNKNOWN
            }
            taking = {batch for number, _, batch, *_ in invoices if number in behind}
            journal_ids: dict[RebuiltBatch, int] = {}
            for batch, batch_state in batches.items():
                known = db.execute(
                    "SELECT id FROM batches WHERE target = ? AND batch_id = ?",
                    (target, batch.batch_id),
                ).fetchone()
                if known is not None:
                    journal_ids[batch] = known[0]
                    continue
                if known_file and not (batch.batch_id and batch in taking):
                    continue  # its batches, with an API id or without, are known already
                number = batch.number
                if (
                    number is None
                    or db.execute("SELECT 1 FROM batches WHERE id = ?", (number,)).fetchone()
                ):
                    # Drawn above every number an outcome names, so no other batch takes one.
                    largest = db.execute("SELECT COALESCE(MAX(id), 0) FROM batches").fetchone()[0]
                    number = max(largest, draw_above) + 1
                db.execute(
                    "INSERT INTO batches (id, file_id, target, state, batch_id, api_status,"
                    " invoice_count, message, created_at, submitted_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        number, file_id, target, batch_state, batch.batch_id or None,
                        "QUEUED" if batch_state is BatchState.QUEUED else None,
                        sizes[batch], REBUILT_BATCH, now, now,
                    ),
                )  # fmt: skip
                journal_ids[batch] = number
                if batch.number not in (None, number):
                    renumbered.append((batch.number, number))
            if journal_ids:
                db.ids_given("batches")
            added = 0
            for number, status, batch, invoice_id, case_id, case_number, message in invoices:
                added += db.execute(
                    # The status lists are built from the enum.
                    "INSERT INTO invoices (target, invoice_number, status, file_id, batch,"  # noqa: S608
                    " invoice_id, case_id, case_number, message, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    # Known already: left as it is, unless the journal would let it go again
                    # (FAILED, or never sent) while this outcome shows it went for good, or
                    # holds it UNKNOWN while this outcome shows it went.
                    " ON CONFLICT (target, invoice_number) DO UPDATE SET"
                    " status = excluded.status, file_id = excluded.file_id,"
                    " batch = excluded.batch, invoice_id = excluded.invoice_id,"
                    " case_id = excluded.case_id, case_number = excluded.case_number,"
                    " message = excluded.message, updated_at = excluded.updated_at"
                    f" WHERE (invoices.status NOT IN ({_BLOCKING_SQL})"
                    f" AND excluded.status IN ({_BLOCKING_SQL}))"
                    f" OR (invoices.status = '{InvoiceState.UNKNOWN}'"
                    f" AND excluded.status IN ({_WENT_SQL}))",
                    (
                        target, number, status, file_id,
                        journal_ids.get(batch) if batch is not None else None,
                        invoice_id or None, case_id or None, case_number or None,
                        mask_ids(_advice_renumbered(message, batch, journal_ids)) or None, now,
                    ),
                ).rowcount  # fmt: skip
            if known_file and behind:  # its counts are the outcome's, which knows more
                db.execute(
                    "UPDATE files SET counts = ?, outcome = ?, updated_at = ? WHERE id = ?",
                    (json.dumps(counts), str(outcome), now, file_id),
                )
            for batch_no in set(behind.values()) - {None}:
                db.execute(
                    "UPDATE batches SET state = ?, message = ?, finished_at = ?"
                    " WHERE id = ? AND state = ? AND NOT EXISTS"
                    " (SELECT 1 FROM invoices WHERE batch = ? AND status = ?)",
                    (
                        BatchState.RESOLVED,
                        f"settled by 'filedrop journal rebuild': {outcome.name} shows its "
                        "invoices sent in another batch",
                        now, batch_no, BatchState.UNKNOWN, batch_no, InvoiceState.UNKNOWN,
                    ),
                )  # fmt: skip
        return added, renumbered

    def files_changed_between(self, *, since: float, until: float) -> list[FileRecord]:
        """Files whose last change falls in [``since``, ``until``) (Unix times), oldest first."""
        rows = self._read(
            "SELECT * FROM files WHERE updated_at >= ? AND updated_at < ? ORDER BY updated_at, id",
            (since, until),
        )
        return [_file_record(row) for row in rows]


def _advice_renumbered(
    message: str, batch: RebuiltBatch | None, numbers: dict[RebuiltBatch, int]
) -> str:
    """``message`` with its 'filedrop resolve N' naming the batch's number in this journal,
    where it had to take another than its outcome names."""
    now = numbers.get(batch) if batch is not None else None
    if batch is None or batch.number is None or now is None or now == batch.number:
        return message
    return message.replace(f"{resolve_command(batch.number)} --", f"{resolve_command(now)} --")


class _Db:
    """A connection that speaks the journal's portable SQL through its engine."""

    def __init__(self, db: Any, engine: Engine) -> None:
        self._db = db
        self._engine = engine

    def execute(self, sql: str, args: Iterable[object] = ()) -> Any:
        return self._db.execute(self._engine.sql(sql), tuple(args))

    def change(self, sql: str, args: Iterable[object] = ()) -> int:
        """Run a statement that writes; returns how many rows it wrote (any statement, one that
        starts with ``WITH`` too)."""
        return self._engine.change(self._db, self._engine.sql(sql), tuple(args))

    def ids_given(self, table: str) -> None:
        self._engine.ids_given(self._db, table)


#: How the twin lookups read: ``Journal._read``, or a write transaction's own statements.
_Read = Callable[[str, tuple[object, ...]], Iterable[Any]]


def _found_there(recorded: str, path: Path) -> bool:
    """Whether a file recorded at ``recorded`` is the one at ``path`` (however either is named:
    relative, through a link), or gone from there: moved to ``path``'s inbox, say."""
    return os.path.realpath(recorded) == os.path.realpath(path) or not os.path.lexists(recorded)


def _digits_only(number: str) -> bool:
    """Whether an invoice number is ASCII digits alone, which a spreadsheet takes for a number."""
    return number.isascii() and number.isdigit()


def _file_record(row: Any) -> FileRecord:
    values = {name: row[name] for name in _FILE_FIELDS}
    values["counts"] = json.loads(values["counts"]) if values["counts"] else {}
    values["state"] = FileState(values["state"])
    return FileRecord(**values)


def _batch_record(row: Any) -> BatchRecord:
    values = dict(row)
    values["state"] = BatchState(values["state"])
    return BatchRecord(**values)


_FILE_FIELDS = tuple(field.name for field in fields(FileRecord))
