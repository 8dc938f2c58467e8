"""The one place where a SQLite journal and a PostgreSQL journal differ.

``Journal`` writes its SQL once, with ``?`` placeholders and portable statements (``INSERT ... ON
CONFLICT``, ``RETURNING``). An engine supplies what cannot be portable: how to connect, the
placeholder style, how a write transaction starts (``BEGIN IMMEDIATE`` takes SQLite's single
write lock; PostgreSQL locks rows, and ``FOR UPDATE SKIP LOCKED`` lets a worker pass over a row
another worker is deciding), the column types, and the schema's migrations, which carry a version
in ``schema_version`` on both.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import secrets
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from itertools import chain
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from filedrop.errors import ConfigError
from filedrop.files import sync_folder

POSTGRES_SCHEMES = ("postgresql", "postgres")

#: Each migration, in order: the schema's version is the number of them applied. ``{ID}``,
#: ``{FLOAT}`` and ``{SEQ}`` are the engine's column types; never edit one that has shipped.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE IF NOT EXISTS files (
        id          {ID},
        target      TEXT NOT NULL,      -- environment:org id, as for invoices
        name        TEXT NOT NULL,
        path        TEXT NOT NULL,
        sha256      TEXT NOT NULL,
        state       TEXT NOT NULL,      -- claimed, waiting, done, error, retry, gone
        owner       TEXT,               -- host:pid:token of the process working on it
        heartbeat   {FLOAT},            -- the owner's last renewal of its claim
        created_at  {FLOAT} NOT NULL,
        updated_at  {FLOAT} NOT NULL,
        mapping     TEXT,
        counts      TEXT,               -- JSON object: rows per status
        outcome     TEXT,
        message     TEXT,
        UNIQUE (target, name, sha256)
    );
    CREATE TABLE IF NOT EXISTS batches (
        id            {ID},
        file_id       INTEGER NOT NULL REFERENCES files(id),
        target        TEXT NOT NULL,    -- environment:org id
        state         TEXT NOT NULL,    -- posting, queued, done, unknown, rejected, resolved
        batch_id      TEXT,
        api_status    TEXT,
        invoice_count INTEGER NOT NULL,
        message       TEXT,
        created_at    {FLOAT} NOT NULL,
        submitted_at  {FLOAT},
        finished_at   {FLOAT}
    );
    CREATE TABLE IF NOT EXISTS invoices (
        {SEQ}
        target         TEXT NOT NULL,
        invoice_number TEXT NOT NULL,
        status         TEXT NOT NULL,   -- SENDING, PENDING, SUCCEEDED, FAILED, UNKNOWN, NOT_SENT
        file_id        INTEGER NOT NULL REFERENCES files(id),
        batch          INTEGER REFERENCES batches(id),
        invoice_id     TEXT,
        case_id        TEXT,
        case_number    TEXT,
        message        TEXT,
        updated_at     {FLOAT} NOT NULL,
        PRIMARY KEY (target, invoice_number)
    );
    CREATE INDEX IF NOT EXISTS invoices_by_batch ON invoices (batch);
    CREATE INDEX IF NOT EXISTS batches_by_file ON batches (file_id, state);
    CREATE TABLE IF NOT EXISTS heartbeat (
        id    INTEGER PRIMARY KEY CHECK (id = 1),
        owner TEXT NOT NULL,
        at    {FLOAT} NOT NULL
    )
    """,
    # Several replicas each keep their own heartbeat, and claims are found by their owner.
    """
    DROP TABLE IF EXISTS heartbeat;
    CREATE TABLE IF NOT EXISTS replicas (
        owner      TEXT PRIMARY KEY,    -- host:pid:token
        started_at {FLOAT} NOT NULL,
        beat_at    {FLOAT} NOT NULL
    );
    CREATE INDEX IF NOT EXISTS files_by_owner ON files (owner)
    """,
    # Facts about the journal itself, such as when 'journal rebuild --fresh' started it over.
    """
    CREATE TABLE IF NOT EXISTS facts (
        name  TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )
    """,
    # Which outcome file a file's record wrote last (device, inode, size, time): one found at
    # its place that is not that one is another version's, and is kept, never overwritten.
    """
    ALTER TABLE files ADD COLUMN outcome_written TEXT
    """,
    # Outcome files no record wrote (from before version 4, or from a journal lost since) that
    # were read and found to show nothing sent that this journal does not know at the target:
    # each is read once, not at every run (invoice numbers are never forgotten).
    """
    CREATE TABLE IF NOT EXISTS outcomes_checked (
        target     TEXT NOT NULL,
        stamp      TEXT NOT NULL,
        checked_at {FLOAT} NOT NULL,
        PRIMARY KEY (target, stamp)
    )
    """,
    # An organisation id is a UUID, the same in capitals: targets are kept in small letters,
    # as the settings now give them, or a journal would take 3FA85F64-... and 3fa85f64-... for
    # two organisations and let an invoice go to each. Of an invoice recorded under both, the
    # record that holds its number back stays (then the small letters'). The index only makes
    # finding the twins quick on a large journal.
    """
    CREATE INDEX invoices_by_number_once ON invoices (invoice_number);
    DELETE FROM invoices WHERE invoice_number IN (
        SELECT invoice_number FROM invoices WHERE target <> lower(target)
    ) AND EXISTS (
        SELECT 1 FROM invoices AS twin
        WHERE twin.invoice_number = invoices.invoice_number
        AND twin.target <> invoices.target AND lower(twin.target) = lower(invoices.target)
        AND (
            CASE WHEN twin.status IN ('SENDING', 'PENDING', 'SUCCEEDED', 'UNKNOWN') THEN 1
            ELSE 0 END,
            twin.target
        ) > (
            CASE WHEN invoices.status IN ('SENDING', 'PENDING', 'SUCCEEDED', 'UNKNOWN') THEN 1
            ELSE 0 END,
            invoices.target
        )
    );
    DROP INDEX invoices_by_number_once;
    UPDATE invoices SET target = lower(target) WHERE target <> lower(target);
    UPDATE files SET target = lower(target) WHERE target <> lower(target) AND NOT EXISTS (
        SELECT 1 FROM files AS twin
        WHERE twin.target = lower(files.target)
        AND twin.name = files.name AND twin.sha256 = files.sha256
    );
    UPDATE batches SET target = lower(target) WHERE target <> lower(target);
    DELETE FROM outcomes_checked WHERE EXISTS (
        SELECT 1 FROM outcomes_checked AS twin
        WHERE twin.stamp = outcomes_checked.stamp
        AND lower(twin.target) = lower(outcomes_checked.target)
        AND twin.target > outcomes_checked.target
    );
    UPDATE outcomes_checked SET target = lower(target) WHERE target <> lower(target)
    """,
    # What a file's ERROR was found under (Context.read_under): the same bytes are taken again
    # once the mappings or read limits differ. An ERROR recorded before has none, and is taken
    # again once.
    """
    ALTER TABLE files ADD COLUMN read_under TEXT
    """,
    # Invoice numbers of digits that start with a zero, by their digits without those zeros:
    # 000777 and 777 are one invoice, its zeros dropped by a spreadsheet program that opened
    # and saved the export (Journal.zero_twins). Only such numbers are in it, so an ERP that
    # never pads its numbers pays nothing for it.
    """
    CREATE INDEX IF NOT EXISTS invoices_zero_led ON invoices (target, ltrim(invoice_number, '0'))
    WHERE invoice_number >= '0' AND invoice_number < '1'
    """,
    # A journal that recorded an invoice number written ="000781" (a CSV cell so written, sent
    # as it was before filedrop read it as the text Excel shows) says so, once: only such a
    # journal looks for them (Journal.zero_twins), and no new one is recorded.
    """
    INSERT INTO facts (name, value) SELECT 'wrapped_numbers', 'yes'
    WHERE EXISTS (SELECT 1 FROM invoices WHERE invoice_number LIKE '="%')
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass(frozen=True)
class PostgresLocation:
    """A ``postgresql://`` URL; prints with its password hidden, so it is safe in any log.

    ``password_file`` (``FILEDROP_STATE_PASSWORD_FILE``) supplies a password the URL lacks; libpq's
    own sources (``PGPASSWORD``, ``~/.pgpass``) work as usual.
    """

    url: str = field(repr=False)
    password_file: Path | None = None
    password_file_setting: str = "FILEDROP_STATE_PASSWORD_FILE"  # noqa: S105 - a setting's name

    @classmethod
    def parse(cls, text: str) -> PostgresLocation:
        problem = "expected a path, or a URL like postgresql://user@host:5432/db"
        try:
            parts = urlsplit(text)
            _ = parts.port  # a port that is not a number raises here
        except ValueError:
            raise ValueError(problem) from None
        if parts.scheme.lower() not in POSTGRES_SCHEMES:
            raise ValueError(problem)
        return cls(text)

    def with_password_file(self, path: Path | None, *, setting: str) -> PostgresLocation:
        return replace(self, password_file=path, password_file_setting=setting)

    def exists(self) -> bool:
        """A server's database is there to be opened (whether it answers, opening tells)."""
        return True

    def __str__(self) -> str:
        return redact(self.url)

    def __repr__(self) -> str:
        return f"PostgresLocation({redact(self.url)!r})"


def is_postgres_url(text: str) -> bool:
    return text.partition("://")[0].lower() in POSTGRES_SCHEMES


def redact(text: str) -> str:
    """``text`` with every password of a connection URL or ``password=`` option hidden."""
    text = re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)
    return re.sub(r"(password=)[^&\s]*", r"\1***", text, flags=re.IGNORECASE)


class _Row(tuple):
    """A PostgreSQL row read by position or by column name, like ``sqlite3.Row``."""

    names: dict[str, int]

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            return tuple.__getitem__(self, self.names[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self.names)


def _row_factory(cursor: Any) -> Callable[[Any], _Row]:
    return _row_type(tuple(column.name for column in cursor.description or ()))


@functools.lru_cache(maxsize=256)
def _row_type(columns: tuple[str, ...]) -> type[_Row]:
    """One row class per list of columns, made once: making a class is dearer than the
    statement that needs it."""
    names = {name: index for index, name in enumerate(columns)}
    return type("Row", (_Row,), {"names": names})


class Engine:
    """What a journal needs from its database; subclasses differ only where they must."""

    name: str
    #: Appended to the ``SELECT`` with which a worker picks a row it means to change.
    pick_suffix: str = ""
    #: Appended to the ``SELECT`` of a row a write must see unchanged until it commits (SQLite's
    #: write lock already keeps every other writer out).
    lock_suffix: str = ""
    #: After ``FROM invoices`` where invoice numbers with zeros in front are looked up by their
    #: digits (``Journal.zero_twins``): SQLite, without statistics, walks every such number by
    #: the primary key instead of taking their own index (0.37 s for 20,000 against 200,000).
    zero_led_index: str = ""
    #: The most rows of several columns that ``rows`` takes in one statement.
    rows_per_statement: int = sys.maxsize
    #: The column that keeps the order in which invoice numbers were first written down.
    insertion_order: str
    errors: tuple[type[BaseException], ...]
    types: dict[str, str]

    #: Whether a durable write's commit is left to ``sync_log``, which ``Journal`` calls once
    #: it has let go of its locks.
    syncs_log_apart: bool = False

    def connect(self) -> Any:
        raise NotImplementedError

    def sync_log(self) -> None:
        """Put on the disk every commit made so far (``syncs_log_apart``). Raises
        ``LogUnreachableError`` when the log cannot be opened (then a durable write of the
        engine's own must do it), ``OSError`` when the disk failed the sync."""

    def lost(self, db: Any) -> bool:
        """Whether ``db`` can no longer be used (a server that restarted); a file never is."""
        return False

    def reconnect(self) -> Any:
        """A new connection for one that was lost, its schema known to be current; raises one of
        ``errors`` when the server is still out of reach."""
        raise NotImplementedError

    def failure(self, message: str) -> Exception:
        """One of ``errors``, saying ``message``, for a failure found without the database."""
        raise NotImplementedError

    def moved(self) -> str | None:
        """``deleted`` when the journal's file was deleted while open, ``replaced`` when another
        file is at its path now (put back by another connection of this process, say); None
        while it is where it was (a server's always is)."""
        return None

    def reopen(self, db: Any) -> Any:
        """A connection to the file now at the journal's path, for ``db`` (closed)."""
        raise NotImplementedError

    def put_back(self, db: Any) -> Any:
        """Write the journal that ``db`` still holds back where it was; returns the connection
        to use from now on. Raises ``OSError`` or one of ``errors`` when it cannot."""
        raise NotImplementedError

    def sql(self, statement: str) -> str:
        return statement

    @contextmanager
    def write(self, db: Any, *, durable: bool = True) -> Iterator[None]:
        """One write transaction. ``durable=False`` lets the commit return before it reaches the
        disk, for a caller whose record a power cut may take back (it says why that is safe);
        it still commits whole and in order with the rest."""
        raise NotImplementedError
        yield

    def lock_for_migration(self, db: Any) -> None:
        """Make concurrent starts migrate one after the other (inside ``write``)."""

    def migrate(self, db: Any, *, where: str) -> None:
        """Create the schema, or bring it to ``SCHEMA_VERSION``; refuse a newer one."""
        with self.write(db):
            self.lock_for_migration(db)
            db.execute(self.sql("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER)"))
            row = db.execute(self.sql("SELECT MAX(version) FROM schema_version")).fetchone()
            version = row[0] or 0
            if version > SCHEMA_VERSION:
                raise ConfigError(
                    f"The journal {where} has schema version {version}, newer than this filedrop "
                    f"knows ({SCHEMA_VERSION}); upgrade filedrop."
                )
            for number in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[number].format(**self.types).split(";"):
                    if statement.strip():
                        db.execute(self.sql(statement))
            if version < SCHEMA_VERSION:
                db.execute(self.sql("DELETE FROM schema_version"))
                db.execute(
                    self.sql("INSERT INTO schema_version (version) VALUES (?)"), (SCHEMA_VERSION,)
                )

    def rows(
        self, name: str, columns: tuple[str, ...], rows: Sequence[Any]
    ) -> tuple[str, tuple[object, ...]]:
        """``name (columns) AS (...)``, to follow ``WITH``, holding ``rows`` (texts when there
        is one column, else tuples of texts or ``None``), and its parameters.

        A whole batch's numbers or results go in one statement, not one statement each.
        Several columns: at most ``rows_per_statement`` rows at a time.
        """
        raise NotImplementedError

    def change(self, db: Any, sql: str, args: tuple[object, ...]) -> int:
        """Run a statement that writes; returns how many rows it wrote."""
        return db.execute(sql, args).rowcount

    def claim_digits(self, db: Any, target: str) -> None:
        """Keep every other claim of invoice numbers of digits at ``target`` out until this
        transaction ends, so that its look for twins (``Journal.zero_twins``) sees theirs. SQLite's
        write lock does so already."""

    def batch_invoice(self, *, target: str, batch: int) -> tuple[str, tuple[object, ...]]:
        """The condition that finds the invoice of ``batch`` (at ``target``) named in
        ``results``, and its parameters: the quickest way there differs by engine."""
        raise NotImplementedError

    def invoices_named(self, *, target: str, numbers: list[str]) -> tuple[str, tuple[object, ...]]:
        """What follows ``FROM`` to read the invoices at ``target`` named in ``numbers`` (each
        named once), and its parameters."""
        wanted, wanted_args = self.rows("numbers", ("invoice_number",), numbers)
        return (
            # The text comes from ``rows``, never from input.
            "invoices WHERE invoices.target = ? AND invoices.invoice_number IN"  # noqa: S608
            f" (WITH {wanted} SELECT invoice_number FROM numbers)",
            (target, *wanted_args),
        )

    def tuples(self, db: Any) -> Any:
        """A cursor whose rows are plain tuples: the cheapest rows, for the journal's hot reads."""
        raise NotImplementedError

    def ids_given(self, db: Any, table: str) -> None:
        """After rows of ``table`` were inserted with their ``id`` given, not drawn: make the
        ids drawn from now on follow them. SQLite draws the largest id plus one already."""


class SqliteEngine(Engine):
    """One file; ``BEGIN IMMEDIATE`` serialises writers across threads and processes.

    WAL mode lets ``filedrop status`` read while a run writes. Every durable record is on the
    disk before its caller goes on, because losing the record of a sent batch to a power cut
    would mean sending it twice: ``Journal`` syncs the log after the commit (``sync_log``), and
    a write made here directly (the schema's) commits with ``synchronous=FULL``.
    """

    name = "SQLite"
    insertion_order = "rowid"
    # A durable commit's sync, done by SQLite inside the commit, holds the journal's lock, and
    # with it every posting thread, for as long as the disk takes: now and then 30-220 ms on
    # this kind of host. Synced after the lock is let go instead, it holds only the thread whose
    # record it is, which waits for it before going on (before a batch's POST, for a claim).
    # Where folders cannot be opened to sync them (Windows), SQLite's own sync stays.
    syncs_log_apart = os.name == "posix"
    zero_led_index = " INDEXED BY invoices_zero_led"
    # 6 placeholders a row stays far below SQLite's limit of 32,766 a statement.
    rows_per_statement = 1000
    errors = (sqlite3.Error,)

    def failure(self, message: str) -> Exception:
        return sqlite3.OperationalError(message)

    def moved(self) -> str | None:
        try:
            now = _file_identity(self.path)
        except FileNotFoundError:
            return "deleted"
        except OSError:
            return None  # cannot tell (a folder briefly unreadable): as it was
        return None if now == self._identity else "replaced"

    def sync_log(self) -> None:
        # In WAL mode a commit is its frames written to the log file; fdatasync of that file by
        # any descriptor puts them on the disk with every frame written before. Should the log
        # be restarted meanwhile, SQLite first checkpointed those frames into the database
        # file and synced it. The log is named after the journal's real path, as SQLite names
        # it (a journal reached through a link has its log beside the file linked to); a link
        # in the log's own place is not followed.
        try:
            fd = os.open(self._log_path, os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0))
        except OSError as exc:
            raise LogUnreachableError(exc.errno, exc.strerror, self._log_path) from exc
        try:
            getattr(os, "fdatasync", os.fsync)(fd)  # macOS has no fdatasync
        finally:
            os.close(fd)
        if not self._log_entry_synced:
            self._log_entry_synced = True
            # The log's name must outlast a power cut as its frames do. SQLite syncs the folder
            # of a log it has just made at the log's first sync of its header; once more here
            # costs one sync a connection. A folder that cannot be synced (some file systems
            # refuse) is passed over, as SQLite passes it over.
            with contextlib.suppress(OSError):
                sync_folder(self._log_path.parent)

    def reopen(self, db: sqlite3.Connection) -> sqlite3.Connection:
        was = self._journal_id
        reopened = self.connect()
        if self._journal_id != was:
            reopened.close()
            self._journal_id = was
            raise self._displaced(db)
        db.close()
        return reopened

    def put_back(self, db: sqlite3.Connection) -> sqlite3.Connection:
        # The open connection still reads the whole journal, write-ahead log included, from the
        # deleted file: copied to a new file, which is then linked in, never over a file that
        # somebody put there meanwhile. Then that copy is kept beside it, and the user told.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        copy_path = self._copy(db, f".{self.path.name}.put-back-{secrets.token_hex(4)}")
        try:
            os.link(copy_path, self.path)
        except FileExistsError:
            pass  # put back by another process first, or another journal: ``reopen`` tells
        finally:
            copy_path.unlink(missing_ok=True)
        return self.reopen(db)

    def _copy(self, db: sqlite3.Connection, name: str) -> Path:
        copy_path = self.path.with_name(name)
        copy = sqlite3.connect(copy_path)
        try:
            db.backup(copy)
        finally:
            copy.close()
        return copy_path

    def _displaced(self, db: sqlite3.Connection) -> JournalDisplaced:
        """Another journal is at this one's path: what ``db`` still holds is saved beside it,
        and the error says where and what to do."""
        saved = self._copy(db, f"{self.path.name}.saved-{time.strftime('%Y%m%d-%H%M%S')}")
        return JournalDisplaced(
            f"the journal {self.path} was deleted or replaced while filedrop had it open, and "
            f"another journal is there now; this process records nothing more. What it held "
            f"was saved as {saved}. Stop filedrop, run 'filedrop journal rebuild' to read every "
            "outcome into the journal that is there, and start it again"
        )

    types = {"ID": "INTEGER PRIMARY KEY", "FLOAT": "REAL", "SEQ": ""}  # noqa: RUF012

    def __init__(self, path: Path) -> None:
        self.path = path
        self._identity: tuple[int, int] | None = None  # (device, inode) of the file opened
        self._journal_id: str | None = None  # which journal that file holds (``facts``)
        # The write-ahead log, by the journal's real path, and whether its folder was synced:
        # both as of the last connect (the path may be a link made to point elsewhere since).
        self._log_path = Path(f"{path}-wal")
        self._log_entry_synced = False

    def connect(self) -> sqlite3.Connection:
        self._log_entry_synced = False
        self._log_path = Path(f"{self.path.resolve()}-wal")
        if self.path.is_dir():  # SQLite says only "unable to open database file"
            raise ConfigError(
                f"The journal {self.path} is a folder, not a file: point the state setting "
                "(FILEDROP_STATE, --state, or state in the config file) at the journal's file, "
                f"such as {self.path / 'journal.db'}, or move the folder away."
            )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"The journal {self.path} cannot be opened ({exc}); check FILEDROP_STATE "
                "and that its folder is writable."
            ) from exc
        db.row_factory = sqlite3.Row
        try:
            self._identity = _file_identity(self.path)
            self._switch_to_wal(db, timeout_s=30.0)
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            self.migrate(db, where=str(self.path))
            # Tells this journal from a fresh one put at its path (``reopen``).
            db.execute(
                "INSERT INTO facts (name, value) VALUES ('journal_id', ?) ON CONFLICT DO NOTHING",
                (secrets.token_hex(8),),
            )
            self._journal_id = db.execute(
                "SELECT value FROM facts WHERE name = 'journal_id'"
            ).fetchone()[0]
        except ConfigError:
            db.close()
            raise
        except sqlite3.Error as exc:
            db.close()
            raise ConfigError(
                f"The journal {self.path} cannot be used ({exc}); check FILEDROP_STATE, that its "
                "folder is writable, and that it is not on a network share that breaks locking."
            ) from exc
        return db

    @staticmethod
    def _switch_to_wal(db: sqlite3.Connection, *, timeout_s: float) -> None:
        """Turn on WAL, retrying while another process is creating the same new journal.

        SQLite can answer this pragma with "database is locked" at once, without its busy
        timeout, when two processes open a brand-new journal together (two pods, or cron and a
        person, starting at the same moment).
        """
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def rows(
        self, name: str, columns: tuple[str, ...], rows: Sequence[Any]
    ) -> tuple[str, tuple[object, ...]]:
        head = f"{name} ({', '.join(columns)}) AS"
        if len(columns) == 1:
            # One JSON array, whatever its length (a file's 200,000 numbers at once).
            # ensure_ascii=False: the text goes in as it is, with no escapes to undo. For an IN
            # or an INSERT's SELECT only: joined to a table, SQLite, which cannot tell how many
            # rows json_each holds, would walk the table and read the array once a row.
            text = json.dumps(rows, ensure_ascii=False)
            return f"{head} (SELECT value FROM json_each(?))", (text,)  # noqa: S608
        # Several columns ride as placeholders: measured cheaper than pulling each value out of
        # a JSON array of arrays, and the planner knows how many rows a VALUES list holds.
        placeholder = f"({', '.join('?' * len(columns))})"
        values = ", ".join([placeholder] * len(rows))
        return f"{head} (VALUES {values})", tuple(chain.from_iterable(rows))

    def change(self, db: sqlite3.Connection, sql: str, args: tuple[object, ...]) -> int:
        # Python's sqlite3 gives no rowcount for a statement that starts with WITH; SQLite's
        # own count of the connection's changes does.
        before = db.total_changes
        db.execute(sql, args)
        return db.total_changes - before

    def batch_invoice(self, *, target: str, batch: int) -> tuple[str, tuple[object, ...]]:
        # By primary key (target, number), then checked against the batch: by the batch alone
        # SQLite, which has no hash join, walks the whole batch for every result.
        return (
            "invoices.target = ? AND invoices.invoice_number = results.invoice_number"
            " AND invoices.batch = ?",
            (target, batch),
        )

    def invoices_named(self, *, target: str, numbers: list[str]) -> tuple[str, tuple[object, ...]]:
        # Each number looked up by primary key in the array's order (CROSS JOIN fixes that
        # order in SQLite), rather than IN, which first copies every number into a temporary
        # index: measured an eighth cheaper per invoice read.
        text = json.dumps(numbers, ensure_ascii=False)
        return (
            "json_each(?) AS numbers CROSS JOIN invoices"
            " ON invoices.target = ? AND invoices.invoice_number = numbers.value",
            (text, target),
        )

    def tuples(self, db: sqlite3.Connection) -> sqlite3.Cursor:
        cursor = db.cursor()
        cursor.row_factory = None
        return cursor

    @contextmanager
    def write(self, db: sqlite3.Connection, *, durable: bool = True) -> Iterator[None]:
        if not durable:
            # In WAL mode NORMAL skips the sync at commit and nothing else: a power cut can
            # lose only the last commits, never tear one or reorder them, and the next sync of
            # the log (a FULL commit's, or ``sync_log``) takes every commit before it along.
            db.execute("PRAGMA synchronous=NORMAL")
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            if not durable:
                db.execute("PRAGMA synchronous=FULL")


class LogUnreachableError(OSError):
    """The journal's write-ahead log cannot be opened by its path to sync it."""


class LogNotSyncedError(sqlite3.OperationalError):
    """A durable record was committed, but the disk failed to sync the journal's log: what it
    recorded may not outlast a power cut."""


class JournalDisplaced(sqlite3.OperationalError):
    """The journal's file was replaced by another journal while open: this connection must
    record nothing more, and the message says what to do."""


def _file_identity(path: Path) -> tuple[int, int]:
    found = path.stat()
    return found.st_dev, found.st_ino


#: libpq connection parameters filedrop sets unless the journal's URL gives them.
_CONNECTION_DEFAULTS: dict[str, int] = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,  # milliseconds
}


_IDLE_IN_TRANSACTION = "idle_in_transaction_session_timeout"
_IDLE_IN_TRANSACTION_MS = 20_000


class PostgresEngine(Engine):
    """A server shared by replicas: transactions lock rows, and unique keys decide races."""

    name = "PostgreSQL"
    pick_suffix = " FOR UPDATE SKIP LOCKED"
    lock_suffix = " FOR UPDATE"
    insertion_order = "seq"
    types = {  # noqa: RUF012
        "ID": "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
        "FLOAT": "DOUBLE PRECISION",
        "SEQ": "seq BIGINT GENERATED ALWAYS AS IDENTITY,",
    }

    def __init__(self, location: PostgresLocation) -> None:
        self.location = location
        try:
            import psycopg
        except ImportError as exc:
            raise ConfigError(
                f"FILEDROP_STATE is a PostgreSQL URL ({location}), but the PostgreSQL driver is "
                "not installed; install filedrop[postgres]."
            ) from exc
        self._psycopg = psycopg
        self.errors = (psycopg.Error,)

    def connect(self) -> Any:
        try:
            db = self._open()
        except self._psycopg.Error as exc:
            # libpq names the host and the user, never the password; redact anyway, in case a
            # future version quotes the connection string.
            # libpq's message is lines, the second tab-indented: one sentence, as every other.
            said = " ".join(redact(str(exc)).split())
            check = (
                "the password (in the URL, FILEDROP_STATE_PASSWORD_FILE, PGPASSWORD or ~/.pgpass)"
                if "password" in said
                else "FILEDROP_STATE and the server"
            )
            raise ConfigError(
                f"The journal {self.location} cannot be opened ({said}); check {check}."
            ) from None
        try:
            self.migrate(db, where=str(self.location))
        except ConfigError:
            db.close()
            raise
        except self._psycopg.Error as exc:
            db.close()
            raise ConfigError(
                f"The journal {self.location} cannot be used ({redact(str(exc)).strip()}); check "
                "that its user may create tables in that database."
            ) from None
        return db

    def lost(self, db: Any) -> bool:
        # psycopg closes a connection whose server went away (a restart, a failover) the first
        # time it is used after that: the statement then fails, and the next finds it closed.
        return bool(db.closed)

    def reconnect(self) -> Any:
        try:
            return self._open()
        except ConfigError as exc:  # the password file is gone: a journal failure like the rest
            raise self.failure(str(exc)) from exc

    def failure(self, message: str) -> Exception:
        return self._psycopg.OperationalError(message)

    def claim_digits(self, db: Any, target: str) -> None:
        # Row locks cannot guard a row not yet written: one lock per target, held to the commit
        # (a claim takes milliseconds).
        db.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", ("filedrop-claim " + target,))

    def _open(self) -> Any:
        options: dict[str, Any] = {"autocommit": True, "row_factory": _row_factory}
        password = self._password()
        if password is not None:
            options["password"] = password
        # Unless the URL says otherwise: give up connecting after 10 s, find an idle connection
        # to a vanished host dead within a minute (keepalives), and fail a statement whose data
        # the host does not acknowledge for 30 s, rather than hold the journal's lock for the
        # quarter of an hour TCP would wait.
        given = self._psycopg.conninfo.conninfo_to_dict(self.location.url)
        for name, value in _CONNECTION_DEFAULTS.items():
            if name not in given:
                options[name] = value
        # A replica frozen inside a transaction (a VM paused, SIGSTOP) keeps its connection,
        # whose kernel still answers keepalives, and its row locks: the others' SKIP LOCKED took
        # its file for one being processed, for as long as it stayed frozen, lease or not. The
        # server ends such a session once idle in a transaction this long (the journal's take
        # milliseconds), and its locks go with it, before its lease runs out.
        server = given.get("options", "")
        if _IDLE_IN_TRANSACTION not in server:
            options["options"] = f"{server} -c {_IDLE_IN_TRANSACTION}={_IDLE_IN_TRANSACTION_MS}"
        return self._psycopg.connect(self.location.url, **options)

    def _password(self) -> str | None:
        path = self.location.password_file
        if path is None:
            return None
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"{self.location.password_file_setting} {path} cannot be read ({exc.strerror}); "
                "check the path and its permissions. Nothing was sent."
            ) from exc

    def sql(self, statement: str) -> str:
        # Every statement the journal writes uses ``?`` and never a literal ``%``.
        return statement.replace("?", "%s")

    def rows(
        self, name: str, columns: tuple[str, ...], rows: Sequence[Any]
    ) -> tuple[str, tuple[object, ...]]:
        # One JSON array in one text parameter: psycopg dumps a list of texts element by
        # element in Python, which costs more than the rest of the statement, where
        # json.dumps is one call in C. The statement's text is the same for any number of rows,
        # so the server prepares it once.
        if len(columns) == 1:
            values = "SELECT json_array_elements_text(?::json)"
        else:
            picks = ", ".join(f"value ->> {index}" for index in range(len(columns)))
            values = f"SELECT {picks} FROM json_array_elements(?::json)"  # noqa: S608
        table = f"{name} ({', '.join(columns)}) AS ({values})"
        return table, (json.dumps(rows, ensure_ascii=False),)

    def batch_invoice(self, *, target: str, batch: int) -> tuple[str, tuple[object, ...]]:
        # By the batch's index, joined to the results by hash. Naming the target as well lets
        # the planner of a journal whose statistics are not gathered yet combine the batch's
        # index with the primary key's, reading every invoice of the target for each batch.
        return "invoices.batch = ? AND invoices.invoice_number = results.invoice_number", (batch,)

    def tuples(self, db: Any) -> Any:
        return db.cursor(row_factory=self._psycopg.rows.tuple_row)

    @contextmanager
    def write(self, db: Any, *, durable: bool = True) -> Iterator[None]:
        # Always durable: the server's wait for its disk costs this process no CPU.
        with db.transaction():
            yield

    def lock_for_migration(self, db: Any) -> None:
        # Replicas starting together would race on CREATE TABLE: one migrates, the rest wait.
        db.execute("SELECT pg_advisory_xact_lock(4242001)")

    def ids_given(self, db: Any, table: str) -> None:
        # An identity column's sequence does not see ids given by hand: without this, a later
        # insert would draw one of them and fail on the primary key.
        db.execute(
            "SELECT setval(pg_get_serial_sequence(%s, 'id'),"  # noqa: S608 (a table of ours)
            f" (SELECT COALESCE(MAX(id), 0) + 1 FROM {table}), false)",
            (table,),
        )


def engine_for(location: Path | PostgresLocation) -> Engine:
    if isinstance(location, PostgresLocation):
        return PostgresEngine(location)
    return SqliteEngine(location)


def location_from_text(text: str) -> Path | PostgresLocation:
    """``FILEDROP_STATE`` as given: a PostgreSQL URL, else a path to a SQLite file."""
    if is_postgres_url(text):
        return PostgresLocation.parse(text)
    return Path(text).expanduser()
