"""The journal keeps the promises across threads, processes and restarts, on both engines: a real
SQLite file and a real PostgreSQL database."""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import Logged, drop_connections

from filedrop.errors import ClaimLostError, ConfigError
from filedrop.journal import Journal, NotSettledError, owner_alive, this_owner
from filedrop.journal.engines import (
    MIGRATIONS,
    SCHEMA_VERSION,
    LogUnreachableError,
    PostgresLocation,
    SqliteEngine,
)
from filedrop.journal.store import FileRecord, FinishedBatch, RebuiltBatch
from filedrop.logs import mask_ids
from filedrop.settings import load_settings
from filedrop.states import BatchState, FileState, InvoiceState

TARGET = "sandbox:org-1"


@pytest.fixture
def journal(journal_location: Path | PostgresLocation) -> Iterator[Journal]:
    with Journal(journal_location) as journal:
        yield journal


def _claim(journal: Journal, name: str = "a.csv", sha: str = "abc", owner: str | None = None):
    return journal.claim_file(
        path=Path(name), sha256=sha, target=TARGET, owner=owner or this_owner(), stale_s=900.0
    )


def test_journal_is_a_wal_sqlite_file(tmp_path: Path) -> None:
    """The journal is SQLite in WAL mode, so status can read while a run writes."""
    Journal(tmp_path / "state.db").close()
    with sqlite3.connect(tmp_path / "state.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def _traced_commits(db: sqlite3.Connection, events: list[tuple[object, ...]]) -> None:
    """Note in ``events`` each commit of ``db`` with the synchronous level it committed at
    (1 NORMAL, 2 FULL) and the kinds of statement it held."""
    level = {"value": db.execute("PRAGMA synchronous").fetchone()[0]}
    statements: list[str] = []

    def trace(sql: str) -> None:
        if sql.startswith("PRAGMA synchronous="):
            level["value"] = {"NORMAL": 1, "FULL": 2}[sql.partition("=")[2]]
        elif sql == "BEGIN IMMEDIATE":
            statements.clear()
        elif sql == "COMMIT":
            events.append(("commit", level["value"], [s.split()[0] for s in statements]))
        else:
            statements.append(sql)

    db.set_trace_callback(trace)


_LINUX_ONLY = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/fd")


def _noted_syncs(
    monkeypatch: pytest.MonkeyPatch, journal: Journal, events: list[tuple[object, ...]]
) -> None:
    """Note in ``events`` each fdatasync and fsync: the file's path, and whether the journal's
    lock was held."""

    def noted(sync: Callable[[int], None]) -> Callable[[int], None]:
        def noted_sync(fd: int) -> None:
            where = os.readlink(f"/proc/self/fd/{fd}")
            events.append(("sync", where, journal._file_lock._is_owned()))
            sync(fd)

        return noted_sync

    monkeypatch.setattr(os, "fdatasync", noted(os.fdatasync))
    monkeypatch.setattr(os, "fsync", noted(os.fsync))


@_LINUX_ONLY
def test_a_durable_record_is_synced_after_the_lock_and_the_others_are_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite a claim (like every durable record) is on the disk before the call returns:
    its commit is followed by an fdatasync of the journal's write-ahead log, made once the
    journal's lock is let go, so that a slow disk holds no other thread. A submitted batch and
    finished batches are not synced; the connection is FULL again after each, also when
    recording fails."""
    journal = Journal(tmp_path / "state.db")
    db = journal._db
    events: list[tuple[object, ...]] = []
    _traced_commits(db, events)

    _noted_syncs(monkeypatch, journal, events)
    file_id = _claim(journal).id
    batch, _ = journal.claim_batch(file_id=file_id, target=TARGET, invoice_numbers=["1"])
    journal.batch_submitted(batch, batch_id="b")
    journal.batch_finished(batch, api_status="SUCCESS", succeeded=[("1", "i", "c", "C")], failed=[])
    with pytest.raises(TypeError):  # a batch the journal does not know
        journal.batch_finished(batch + 99, api_status="SUCCESS", succeeded=[], failed=[])
    journal.claim_batch(file_id=file_id, target=TARGET, invoice_numbers=["2"])
    db.set_trace_callback(None)
    log_file = ("sync", f"{(tmp_path / 'state.db').resolve()}-wal", False)
    # The log's folder is synced once, after the first record: the name of a log SQLite has
    # just made is then on the disk too.
    folder = ("sync", str(tmp_path.resolve()), False)
    assert events.index(folder) == 2 and events.count(folder) == 1
    events.remove(folder)
    assert [event[:2] if event[0] == "commit" else event for event in events] == [
        ("commit", 1),  # the file's claim
        log_file,
        ("commit", 1),  # the batch's claim
        log_file,
        ("commit", 1),  # submitted
        ("commit", 1),  # finished
        ("commit", 1),  # the next batch's claim
        log_file,
    ]
    assert "WITH" in events[5][2] and "UPDATE" in events[4][2]
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2
    assert journal.invoices(target=TARGET, numbers=["1"])["1"].status == "SUCCEEDED"
    journal.close()


def test_a_log_that_cannot_be_synced_by_its_path_is_synced_by_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, logged: Logged
) -> None:
    """Where the log's file cannot be opened by its path, each durable record is followed by a
    write SQLite commits FULL, which syncs the file it writes to; said once, not per record."""
    journal = Journal(tmp_path / "state.db")
    events: list[tuple[object, ...]] = []
    _traced_commits(journal._db, events)

    def no_log_file() -> None:
        raise LogUnreachableError(13, "Permission denied", f"{tmp_path / 'state.db'}-wal")

    monkeypatch.setattr(journal._engine, "sync_log", no_log_file)
    file_id = _claim(journal).id
    journal.claim_batch(file_id=file_id, target=TARGET, invoice_numbers=["1"])
    journal._db.set_trace_callback(None)
    assert [event[:3] for event in events] == [
        ("commit", 1, ["INSERT"]),
        ("commit", 2, ["INSERT"]),
        ("commit", 1, events[2][2]),
        ("commit", 2, ["INSERT"]),
    ]
    assert "WITH" in events[2][2]  # the batch's claim
    # Each of them wrote a row: SQLite syncs only a commit that wrote something.
    syncs = journal._db.execute("SELECT value FROM facts WHERE name = 'log_syncs'").fetchone()
    assert syncs[0] == "2"
    assert logged.count("the log of the journal") == 1
    journal.close()


@_LINUX_ONLY
def test_a_journal_reached_through_a_link_syncs_the_log_beside_the_file_linked_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, logged: Logged
) -> None:
    """SQLite names the log after the journal's real path: that is the file synced, and no
    stale log beside the link is."""
    (tmp_path / "real").mkdir()
    (tmp_path / "state.db").symlink_to(tmp_path / "real" / "journal.db")
    (tmp_path / "state.db-wal").write_bytes(b"a stale log beside the link")
    journal = Journal(tmp_path / "state.db")
    events: list[tuple[object, ...]] = []
    _noted_syncs(monkeypatch, journal, events)
    _claim(journal)
    real_log = f"{(tmp_path / 'real' / 'journal.db').resolve()}-wal"
    assert ("sync", real_log, False) in events
    assert not [event for event in events if "state.db" in str(event[1])]
    assert logged.count("the log of the journal") == 0
    journal.close()


def test_a_claim_whose_sync_the_disk_failed_is_not_sent_and_frees_its_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fails the sync after the claim was committed: the claim raises one of the
    journal's errors, so nothing is POSTed, and the batch is NOT_SENT rather than left to
    become UNKNOWN; a later claim takes the same numbers. A failed sync is not tried again
    another way (a page whose write-back failed may be marked clean)."""
    journal = Journal(tmp_path / "state.db")
    file_id = _claim(journal).id
    sync = os.fdatasync
    failures = iter([OSError(5, "Input/output error")])

    def failing_once(fd: int) -> None:
        if (failure := next(failures, None)) is not None:
            raise failure
        sync(fd)

    monkeypatch.setattr(os, "fdatasync", failing_once)
    with pytest.raises(journal.errors, match="the disk failed to sync its log"):
        journal.claim_batch(file_id=file_id, target=TARGET, invoice_numbers=["1", "2"])
    [failed] = journal.batches(file_id=file_id)
    assert failed.state == BatchState.REJECTED
    invoices = journal.invoices(target=TARGET, numbers=["1", "2"])
    assert {record.status for record in invoices.values()} == {InvoiceState.NOT_SENT}
    batch, claimed = journal.claim_batch(file_id=file_id, target=TARGET, invoice_numbers=["1", "2"])
    assert claimed == ["1", "2"] and batch != failed.id
    journal.close()


def test_a_folder_that_cannot_be_synced_is_passed_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, logged: Logged
) -> None:
    """Some file systems refuse to sync a folder: the log itself is synced, nothing falls
    back to SQLite's slower sync, and nothing is said."""
    journal = Journal(tmp_path / "state.db")
    sync = os.fsync

    def no_folders(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(22, "Invalid argument")
        sync(fd)

    monkeypatch.setattr(os, "fsync", no_folders)
    file_id = _claim(journal).id
    journal.claim_batch(file_id=file_id, target=TARGET, invoice_numbers=["1"])
    assert logged.count("the log of the journal") == 0
    assert not journal._db.execute("SELECT 1 FROM facts WHERE name = 'log_syncs'").fetchall()
    journal.close()


def test_same_content_is_claimed_once(journal: Journal) -> None:
    """A file done with the same name and bytes is not claimed again; new bytes are."""
    record = _claim(journal)
    assert record is not None
    journal.finish_file(record.id, state="done", counts={"SUCCEEDED": 1}, mapping="m", outcome=None)
    assert _claim(journal) is None
    assert _claim(journal, sha="def") is not None


def test_an_error_is_final_only_under_what_it_was_found_under(
    journal: Journal, tmp_path: Path
) -> None:
    """Other mappings or limits take an ERROR again where it was (named relatively or through a
    link too); the same ones do not. While another inbox holds the file too, it is not that
    inbox's (whose mappings may differ: the two would take it in turn at every rescan); moved
    there, it is. A done file is never taken again."""
    first_inbox, other_inbox = tmp_path / "in", tmp_path / "other"
    for folder in (first_inbox, other_inbox):
        folder.mkdir()
        (folder / "a.csv").write_text("x")
    (tmp_path / "link").symlink_to(first_inbox)

    def claim(path: Path, under: str | None) -> FileRecord | None:
        return journal.claim_file(
            path=path,
            sha256="abc",
            target=TARGET,
            owner=this_owner(),
            stale_s=900.0,
            read_under=under,
        )

    def error(under: str | None) -> None:
        journal.finish_file(
            record.id, state="error", counts={}, mapping=None, outcome=None, read_under=under
        )

    record = claim(first_inbox / "a.csv", "first")
    assert record is not None
    error("first")
    assert claim(first_inbox / "a.csv", "first") is None
    assert claim(other_inbox / "a.csv", "second") is None
    assert claim(tmp_path / "link" / "a.csv", "second").id == record.id
    error("first")
    (first_inbox / "a.csv").unlink()  # moved to the other inbox
    assert claim(other_inbox / "a.csv", "second").id == record.id
    # An ERROR recorded before filedrop knew what it was found under is taken again once.
    error(None)
    assert claim(other_inbox / "a.csv", "second") is not None
    journal.finish_file(record.id, state="done", counts={}, mapping="m", outcome=None)
    assert claim(other_inbox / "a.csv", "third") is None


def test_zero_twins_are_the_same_digits_with_zeros_in_front_held_back(journal: Journal) -> None:
    """777 finds 000777 and the other way round, by both indexes; a number held exactly as
    asked, one with letters, one that failed, or one at another target has no twin."""
    record = _claim(journal)
    batch, _ = journal.claim_batch(
        file_id=record.id, target=TARGET, invoice_numbers=["000777", "888", "0A12", "0042"]
    )
    journal.batch_not_sent(batch, message="down")
    journal.claim_batch(file_id=record.id, target=TARGET, invoice_numbers=["000777", "888", "0A12"])
    twins = journal.zero_twins(
        target=TARGET, numbers=["777", "0777", "000777", "0888", "A12", "42", "5", "x"]
    )
    assert {number: twin.invoice_number for number, twin in twins.items()} == {
        "777": "000777",
        "0777": "000777",
        "0888": "888",
    }
    assert journal.zero_twins(target="production:other", numbers=["777", "0888"]) == {}
    # The claim itself leaves a twin out, whatever was looked at before it.
    other = _claim(journal, name="b.csv")
    _, claimed = journal.claim_batch(
        file_id=other.id, target=TARGET, invoice_numbers=["777", "0888", "42", "999"]
    )
    assert claimed == ["42", "999"]


def test_a_number_sent_as_a_text_formula_before_is_the_same_invoice(
    journal_location: Path | PostgresLocation,
) -> None:
    """An older filedrop sent a CSV cell written ="000781" as it was; it now reads 000781. A
    journal that holds such a number says so once migrated, and 000781 is its twin there: not
    claimed again, whatever file it comes from."""
    with Journal(journal_location) as journal:
        record = _claim(journal)
        journal.claim_batch(file_id=record.id, target=TARGET, invoice_numbers=['="000781"'])
        with journal._write() as db:
            db.execute("DELETE FROM facts WHERE name = 'wrapped_numbers'")
            db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION - 1,))
    with Journal(journal_location) as journal:
        twins = journal.zero_twins(target=TARGET, numbers=["000781", "000782"])
        assert {n: twin.invoice_number for n, twin in twins.items()} == {"000781": '="000781"'}
        other = _claim(journal, name="b.csv")
        _, claimed = journal.claim_batch(
            file_id=other.id, target=TARGET, invoice_numbers=["000781", "000782"]
        )
        assert claimed == ["000782"]


def test_a_sandbox_trial_does_not_count_for_production(journal: Journal) -> None:
    """The same file done on the sandbox is processed again for another environment."""
    record = _claim(journal)
    journal.finish_file(record.id, state="done", counts={}, mapping="m", outcome=None)
    again = journal.claim_file(
        path=Path("a.csv"), sha256="abc", target="production:o", owner=this_owner(), stale_s=900.0
    )
    assert again is not None and again.id != record.id


def test_a_live_owner_keeps_its_claim(journal: Journal) -> None:
    """A file claimed by a live process is not taken by another."""
    other_live = f"{socket.gethostname()}:1:token"  # pid 1 is always alive
    assert _claim(journal, owner=other_live) is not None
    assert _claim(journal) is None


def test_a_dead_owners_claim_is_taken_over(journal: Journal) -> None:
    """A file claimed by a process that died is resumed by the next one."""
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = f"{socket.gethostname()}:{child.stdout.strip()}:token"
    assert not owner_alive(dead, heartbeat=None, now=0, stale_s=60)
    first = _claim(journal, owner=dead)
    again = _claim(journal)
    assert first is not None and again is not None and again.id == first.id


def test_claimed_numbers_are_never_claimed_twice(journal: Journal) -> None:
    """An invoice number sending, pending, succeeded or unknown is left out of a later batch."""
    file_id = _claim(journal).id
    batch, claimed = journal.claim_batch(file_id=file_id, target=TARGET, invoice_numbers=["1", "2"])
    assert claimed == ["1", "2"]
    other, again = journal.claim_batch(file_id=file_id, target=TARGET, invoice_numbers=["2", "3"])
    assert again == ["3"]
    assert journal.find_batch(f"#{other}").invoice_count == 1, "only what it really claimed"
    journal.batch_submitted(batch, batch_id="b-1")
    journal.batch_finished(
        batch, api_status="PARTIAL", succeeded=[("1", "i", "c", "C-1")], failed=[("2", "bad email")]
    )
    records = journal.invoices(target=TARGET, numbers=["1", "2", "3"])
    assert (records["1"].status, records["1"].case_number) == ("SUCCEEDED", "C-1")
    assert (records["2"].status, records["2"].message) == ("FAILED", "bad email")
    _, retry = journal.claim_batch(file_id=file_id, target=TARGET, invoice_numbers=["1", "2"])
    assert retry == ["2"], "a FAILED number may be sent again, a SUCCEEDED one never"


def test_every_result_of_a_large_batch_is_recorded(journal: Journal) -> None:
    """2,500 results (more than one statement holds) all land, each with its own values, and
    the other invoices of the batch are untouched by another batch's results."""
    file_id = _claim(journal).id
    numbers = [f"N{n:05d}" for n in range(2600)]
    batch, _ = journal.claim_batch(file_id=file_id, target=TARGET, invoice_numbers=numbers[:2550])
    other, _ = journal.claim_batch(file_id=file_id, target=TARGET, invoice_numbers=numbers[2550:])
    journal.batch_submitted(batch, batch_id="b-1")
    journal.batch_submitted(other, batch_id="b-2")
    journal.batch_finished(
        batch,
        api_status="PARTIAL",
        succeeded=[(n, f"i-{n}", f"c-{n}", f"C-{n}") for n in numbers[:2500]],
        failed=[(n, f"bad {n}") for n in [*numbers[2500:2550], numbers[2599]]],
    )
    records = journal.invoices(target=TARGET, numbers=numbers)
    assert {
        n: (records[n].status, records[n].invoice_id, records[n].case_id, records[n].case_number)
        for n in numbers[:2500]
    } == {n: ("SUCCEEDED", f"i-{n}", f"c-{n}", f"C-{n}") for n in numbers[:2500]}
    assert {n: (records[n].status, records[n].message) for n in numbers[2500:2550]} == {
        n: ("FAILED", f"bad {n}") for n in numbers[2500:2550]
    }
    assert records[numbers[2599]].status == "PENDING", "another batch's invoice"


def test_a_number_reported_twice_keeps_its_last_result(journal: Journal) -> None:
    """The API naming one invoice twice: its last mention wins, as it always did."""
    file_id = _claim(journal).id
    batch, _ = journal.claim_batch(file_id=file_id, target=TARGET, invoice_numbers=["1", "2"])
    journal.batch_submitted(batch, batch_id="b-1")
    journal.batch_finished(
        batch,
        api_status="PARTIAL",
        succeeded=[("1", "i-a", "c-a", "C-a"), ("1", "i-b", "c-b", "C-b")],
        failed=[("2", "first"), ("2", "second")],
    )
    records = journal.invoices(target=TARGET, numbers=["1", "2"])
    assert (records["1"].invoice_id, records["1"].case_number) == ("i-b", "C-b")
    assert records["2"].message == "second"


def test_numbers_of_any_text_are_claimed_recorded_and_read_back_as_given(
    journal: Journal,
) -> None:
    """Numbers travel to the database as one array per batch: quotes, separators, the word
    NULL, non-ASCII letters and emoji come back exactly as they were claimed."""
    numbers = ['q"1', "b\\2", "a,b", "{x}", "NULL", "ø-3", "😀4", " sp ace ", "[1]"]
    file_id = _claim(journal).id
    batch, claimed = journal.claim_batch(file_id=file_id, target=TARGET, invoice_numbers=numbers)
    assert claimed == numbers
    journal.batch_submitted(batch, batch_id="b")
    journal.batch_finished(
        batch,
        api_status="PARTIAL",
        succeeded=[(n, f"i{n}", f"c{n}", f"C{n}") for n in numbers[:-1]],
        failed=[(numbers[-1], "bad, 'quoted'")],
    )
    records = journal.invoices(target=TARGET, numbers=[*numbers, "absent"])
    assert {n: (r.status, r.case_number, r.message) for n, r in records.items()} == {
        **{n: ("SUCCEEDED", f"C{n}", None) for n in numbers[:-1]},
        numbers[-1]: ("FAILED", None, "bad, 'quoted'"),
    }
    assert journal.find_batch(f"#{batch}").state == "done"
    assert journal.claim_batch(file_id=file_id, target=TARGET, invoice_numbers=numbers)[1] == [
        numbers[-1]
    ]


def test_a_number_given_twice_in_one_batch_is_claimed_once(journal: Journal) -> None:
    """One statement claims the whole batch; a number in it twice is still one claim."""
    file_id = _claim(journal).id
    batch, claimed = journal.claim_batch(
        file_id=file_id, target=TARGET, invoice_numbers=["1", "2", "1"]
    )
    assert claimed == ["1", "2", "1"]
    assert journal.find_batch(f"#{batch}").invoice_count == 2
    assert list(journal.invoices(target=TARGET, numbers=["1", "1", "2"])) == ["1", "2"]


def test_each_invoice_yields_every_known_number_once_and_whole(journal: Journal) -> None:
    """Read back number by number: a number asked for twice comes once, an absent one and one
    known only at another target not at all, and every column arrives in its place."""
    file_id = _claim(journal).id
    batch, _ = journal.claim_batch(file_id=file_id, target=TARGET, invoice_numbers=["1", "2"])
    journal.claim_batch(file_id=file_id, target="production:other", invoice_numbers=["3"])
    journal.batch_submitted(batch, batch_id="b")
    journal.batch_finished(
        batch, api_status="PARTIAL", succeeded=[("1", "i1", "c1", "C1")], failed=[("2", "bad")]
    )
    records = list(journal.each_invoice(target=TARGET, numbers=["2", "1", "2", "3", "absent"]))
    assert sorted(records) == [
        ("1", "SUCCEEDED", file_id, batch, "i1", "c1", "C1", None),
        ("2", "FAILED", file_id, batch, None, None, None, "bad"),
    ]
    assert {type(record.status) for record in records} == {InvoiceState}


@pytest.mark.parametrize("left_out", [False, True], ids=["all-named", "one-left-out"])
def test_a_number_reported_both_succeeded_and_failed_is_unknown_and_nothing_is_missed(
    journal: Journal, left_out: bool
) -> None:
    """Named both succeeded and failed, an invoice is UNKNOWN, saying so, and its batch waits
    for resolve: it ended FAILED, which let the next file holding the number send it again
    though Amili may have made its case. The double mention never hides an invoice the API
    left out, nor spoils one it named once."""
    file_id = _claim(journal).id
    numbers = ["1", "2", "3"]
    batch, _ = journal.claim_batch(file_id=file_id, target=TARGET, invoice_numbers=numbers)
    journal.batch_submitted(batch, batch_id="b")
    named = [("1", "i", "c", "C"), ("2", "i2", "c2", "C2"), ("3", "i3", "c3", "C3")]
    named = named[:2] if left_out else named
    journal.batch_finished(batch, api_status="PARTIAL", succeeded=named, failed=[("1", "bad")])
    records = journal.invoices(target=TARGET, numbers=numbers)
    assert (records["1"].status, records["1"].case_id, records["1"].message) == (
        "UNKNOWN",
        None,
        "the batch ended PARTIAL naming this invoice both succeeded and failed, so whether "
        f"Amili has it is not known: check with Amili, then 'filedrop resolve {batch} --sent' "
        "or '--not-sent'",
    )
    assert records["2"].status == "SUCCEEDED"
    assert records["3"].status == ("UNKNOWN" if left_out else "SUCCEEDED")
    assert journal.find_batch(f"#{batch}").state == "unknown"


def test_a_number_not_in_the_batch_named_both_ways_leaves_the_batch_done(journal: Journal) -> None:
    """A number the batch does not hold, named both succeeded and failed, is none of its: the
    batch ended UNKNOWN with nothing to look up, and resolve changed nothing."""
    file_id = _claim(journal).id
    batch, _ = journal.claim_batch(file_id=file_id, target=TARGET, invoice_numbers=["1"])
    journal.batch_submitted(batch, batch_id="b")
    journal.batch_finished(
        batch,
        api_status="PARTIAL",
        succeeded=[("1", "i", "c", "C"), ("9", "i9", "c9", "C9")],
        failed=[("9", "bad")],
    )
    assert journal.invoices(target=TARGET, numbers=["1"])["1"].status == "SUCCEEDED"
    assert journal.find_batch(f"#{batch}").state == "done"


def test_batches_that_end_together_are_recorded_together(journal: Journal) -> None:
    """Several ended batches in one transaction: each gets its own results and its own end,
    done when every invoice was named, unknown when one was left out."""
    file_id = _claim(journal).id
    whole, _ = journal.claim_batch(file_id=file_id, target=TARGET, invoice_numbers=["1", "2"])
    short, _ = journal.claim_batch(file_id=file_id, target=TARGET, invoice_numbers=["3", "4"])
    journal.batch_submitted(whole, batch_id="b-1")
    journal.batch_submitted(short, batch_id="b-2")
    journal.batches_finished(
        [
            FinishedBatch(whole, "PARTIAL", [("1", "i1", "c1", "C1")], [("2", "bad")]),
            FinishedBatch(short, "SUCCESS", [("3", "i3", "c3", "C3")], []),
        ]
    )
    records = journal.invoices(target=TARGET, numbers=["1", "2", "3", "4"])
    assert {n: (r.status, r.batch) for n, r in records.items()} == {
        "1": ("SUCCEEDED", whole),
        "2": ("FAILED", whole),
        "3": ("SUCCEEDED", short),
        "4": ("UNKNOWN", short),
    }
    assert [(b.state, b.api_status) for b in journal.batches(file_id=file_id)] == [
        ("done", "PARTIAL"),
        ("unknown", "SUCCESS"),
    ]


def test_targets_are_separate(journal: Journal) -> None:
    """The same number may go to staging and to production: uniqueness is per environment+org."""
    file_id = _claim(journal).id
    assert journal.claim_batch(file_id=file_id, target="staging:o", invoice_numbers=["1"])[1]
    assert journal.claim_batch(file_id=file_id, target="production:o", invoice_numbers=["1"])[1]


def test_racing_processes_never_claim_a_number_twice(
    journal_location: Path | PostgresLocation,
) -> None:
    """Eight threads on eight connections to one journal claim each number exactly once."""
    path = journal_location
    with Journal(path) as setup:
        file_id = _claim(setup).id
    numbers = [str(n) for n in range(200)]
    claimed: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        with Journal(path) as journal:
            for start in range(0, 200, 20):
                _, got = journal.claim_batch(
                    file_id=file_id, target=TARGET, invoice_numbers=numbers[start : start + 20]
                )
                with lock:
                    claimed.extend(got)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed, key=int) == numbers


def test_unknown_batches_are_blocked_until_resolved(journal: Journal) -> None:
    """An ambiguous POST blocks its numbers; resolving it not-sent releases them."""
    file_id = _claim(journal).id
    batch, _ = journal.claim_batch(file_id=file_id, target=TARGET, invoice_numbers=["9"])
    assert [b.id for b in journal.postings_of(file_id)] == [batch]
    journal.batch_unknown(batch, message="connection lost")
    assert journal.claim_batch(file_id=file_id, target=TARGET, invoice_numbers=["9"])[1] == []
    assert journal.find_batch(f"#{batch}").state == "unknown"
    journal.finish_file(file_id, state=FileState.WAITING, counts={}, mapping="m", outcome=None)
    assert journal.resolve_batch(batch, sent=False, note="checked") == 1
    assert journal.invoices(target=TARGET, numbers=["9"])["9"].status == "NOT_SENT"
    assert journal.file(file_id).state == "retry"
    assert journal.claim_batch(file_id=file_id, target=TARGET, invoice_numbers=["9"])[1] == ["9"]


def test_resolving_changes_nothing_once_a_run_took_up_the_file(journal: Journal) -> None:
    """resolve names the claim it found (none, or one whose run is gone); claimed by anyone else
    when it writes, the file is a live run's, whose outcome would not show the change: nothing
    changes. Asked under the write's lock, so no claim slips in between; a batch settled
    meanwhile is not settled again the other way."""
    file_id = _claim(journal, owner="host:1:live").id
    batch, _ = journal.claim_batch(file_id=file_id, target=TARGET, invoice_numbers=["9"])
    journal.batch_unknown(batch, message="connection lost")
    for holder in (None, "host:2:gone"):
        with pytest.raises(NotSettledError, match="took up its file just now"):
            journal.resolve_batch(batch, sent=False, note="checked", holder=holder)
    assert journal.invoices(target=TARGET, numbers=["9"])["9"].status == "UNKNOWN"
    assert (journal.file(file_id).state, journal.find_batch(str(batch)).state) == (
        "claimed",
        "unknown",
    )
    assert journal.resolve_batch(batch, sent=True, note="checked", holder="host:1:live") == 1
    with pytest.raises(NotSettledError, match="settled meanwhile: it is resolved now"):
        journal.resolve_batch(batch, sent=False, note="checked", holder="host:1:live")
    assert journal.invoices(target=TARGET, numbers=["9"])["9"].status == "SUCCEEDED"


def test_on_postgresql_a_claim_committed_while_resolve_looks_stops_it(postgres_url: str) -> None:
    """Replicas share the server: a claim that holds the file's row when resolve reads it is
    waited for (the row is read FOR UPDATE), so resolve sees the claim and changes nothing,
    instead of reading the row as it was and releasing invoices under a live run."""
    import psycopg

    with Journal(PostgresLocation.parse(postgres_url)) as journal:
        file_id = _claim(journal).id
        batch, _ = journal.claim_batch(file_id=file_id, target=TARGET, invoice_numbers=["9"])
        journal.batch_unknown(batch, message="connection lost")
        journal.finish_file(file_id, state=FileState.WAITING, counts={}, mapping="m", outcome=None)
        raised: list[BaseException] = []

        def resolve() -> None:
            try:
                journal.resolve_batch(batch, sent=False, note="checked", holder=None)
            except BaseException as exc:  # looked at below
                raised.append(exc)

        with psycopg.connect(postgres_url) as replica:  # its claim, not yet committed
            replica.execute(
                "UPDATE files SET state = 'claimed', owner = 'replica:2:x' WHERE id = %s",
                (file_id,),
            )
            looking = threading.Thread(target=resolve)
            looking.start()
            time.sleep(0.5)  # resolve is waiting on the row by now (if not, it sees the claim)
            replica.commit()
        looking.join(timeout=30)
        assert [type(exc) for exc in raised] == [NotSettledError]
        assert journal.invoices(target=TARGET, numbers=["9"])["9"].status == "UNKNOWN"
        assert journal.file(file_id).owner == "replica:2:x"


def test_a_file_finished_by_one_without_a_claim_is_left_to_a_run_that_took_it_up(
    journal: Journal,
) -> None:
    """``filedrop resolve`` rewrites an outcome without claiming the file: a run that claimed it
    meanwhile keeps its claim (its own outcome comes after). One whose run is gone is ended."""
    file_id = _claim(journal, owner="host:1:live").id
    journal.finish_file(file_id, state=FileState.DONE, counts={}, mapping="m", outcome=None,
                        claim=None)  # fmt: skip
    assert (journal.file(file_id).state, journal.file(file_id).owner) == ("claimed", "host:1:live")
    journal.finish_file(file_id, state=FileState.DONE, counts={}, mapping="m", outcome=None,
                        claim="host:1:live")  # fmt: skip
    assert (journal.file(file_id).state, journal.file(file_id).owner) == ("done", None)


def test_resolved_sent_stays_blocked(journal: Journal) -> None:
    """Resolving an unknown batch as sent blocks its numbers for good."""
    file_id = _claim(journal).id
    batch, _ = journal.claim_batch(file_id=file_id, target=TARGET, invoice_numbers=["5"])
    journal.batch_unknown(batch, message="lost")
    assert journal.resolve_batch(batch, sent=True, note="checked", holder=this_owner()) == 1
    assert journal.claim_batch(file_id=file_id, target=TARGET, invoice_numbers=["5"])[1] == []


def test_unmentioned_invoice_of_a_terminal_batch_is_unknown(journal: Journal) -> None:
    """A batch that ends without naming an invoice leaves it UNKNOWN, never silently lost."""
    file_id = _claim(journal).id
    batch, _ = journal.claim_batch(file_id=file_id, target=TARGET, invoice_numbers=["1", "2"])
    journal.batch_submitted(batch, batch_id="b")
    journal.batch_finished(batch, api_status="SUCCESS", succeeded=[("1", "i", "c", "n")], failed=[])
    assert journal.invoices(target=TARGET, numbers=["2"])["2"].status == "UNKNOWN"
    assert journal.find_batch(str(batch)).state == "unknown", "status must list it"


def test_heartbeat_round_trips(journal: Journal) -> None:
    """The daemon's heartbeat is stored for status --health."""
    assert journal.replicas() == []
    journal.beat("host:1")
    [(owner, _started, _at)] = journal.replicas()
    assert owner == "host:1"


def test_many_processes_can_create_one_new_journal_at_once(
    journal_location: Path | PostgresLocation,
) -> None:
    """Processes starting together on a journal that does not exist yet all open it."""
    path = (
        journal_location.url
        if isinstance(journal_location, PostgresLocation)
        else (journal_location.parent / "new" / "state.db")
    )
    code = (
        "import sys, time; from filedrop.journal import Journal\n"
        "from filedrop.journal.engines import location_from_text\n"
        "while time.time() < float(sys.argv[2]): pass\n"  # all open at the same instant
        "Journal(location_from_text(sys.argv[1])).close()"
    )
    start_at = str(time.time() + 2.0)
    children = [
        subprocess.Popen([sys.executable, "-c", code, str(path), start_at], stderr=subprocess.PIPE)
        for _ in range(8)
    ]
    for child in children:
        _, err = child.communicate(timeout=60)
        assert child.returncode == 0, err.decode()


def test_messages_are_stored_with_national_ids_masked_and_batch_ids_whole(
    journal: Journal,
) -> None:
    """An API error naming a fødselsnummer is stored masked to its real length; a UUID whose
    last group holds an 11-digit run is stored whole."""
    file_id = _claim(journal).id
    batch, _ = journal.claim_batch(file_id=file_id, target=TARGET, invoice_numbers=["1", "2"])
    journal.batch_submitted(batch, batch_id="b")
    journal.batch_finished(
        batch,
        api_status="FAILED",
        succeeded=[],
        failed=[
            ("1", "Debtor id 01017012345 is invalid"),
            ("2", "Debtor id 1017012345 is invalid (batch d290f1ee-6c54-4b01-90e6-a12345678901)"),
        ],
    )
    records = journal.invoices(target=TARGET, numbers=["1", "2"])
    assert records["1"].message == "Debtor id 010170***** is invalid"
    assert records["2"].message == (
        "Debtor id 101701**** is invalid (batch d290f1ee-6c54-4b01-90e6-a12345678901)"
    )


def test_an_invoice_number_of_ten_digits_in_its_own_message_stays_whole(journal: Journal) -> None:
    """1503247635 (a date and a sequence, a common numbering) looks like a D-number to the mask;
    in its own invoice's API message it is the number the user looks up, shown whole, while a
    national id beside it is still masked."""
    file_id = _claim(journal).id
    number = "1503247635"
    batch, _ = journal.claim_batch(file_id=file_id, target=TARGET, invoice_numbers=[number])
    journal.batch_submitted(batch, batch_id="b")
    journal.batch_finished(
        batch,
        api_status="FAILED",
        succeeded=[],
        failed=[(number, f"Invoice number {number} already exists; debtor id 01017012345")],
    )
    assert journal.invoices(target=TARGET, numbers=[number])[number].message == (
        f"Invoice number {number} already exists; debtor id 010170*****"
    )


def test_the_invoice_numbers_of_an_unknown_batch_are_listed_in_file_order(
    journal: Journal,
) -> None:
    """What to look up with Amili: the batch's numbers still UNKNOWN, in the order sent."""
    file_id = _claim(journal).id
    batch, _ = journal.claim_batch(file_id=file_id, target=TARGET, invoice_numbers=["b7", "a2"])
    journal.batch_unknown(batch, message="lost")
    assert journal.unknown_invoice_numbers(batch) == ["b7", "a2"]


def test_what_a_gone_file_sent_is_read_back_in_its_order_and_resolving_keeps_it_gone(
    journal: Journal,
) -> None:
    """``sent_from``: every invoice whose last batch is the file's, batch by batch in the order
    claimed, with what is known of each; a number another file sent since is that file's.
    Resolved not sent, a ``gone`` file stays gone (its bytes, dropped again, are taken up
    anyway), where any other is left to retry."""
    file_id = _claim(journal).id
    first, _ = journal.claim_batch(file_id=file_id, target=TARGET, invoice_numbers=["z9", "a1"])
    second, _ = journal.claim_batch(file_id=file_id, target=TARGET, invoice_numbers=["m5"])
    journal.batch_submitted(first, batch_id="api-1")
    journal.batch_finished(
        first, api_status="PARTIAL", succeeded=[("z9", "i-1", "c-1", "C-1")],
        failed=[("a1", "bad email")],
    )  # fmt: skip
    journal.batch_unknown(second, message="lost")
    other = _claim(journal, "b.csv", sha="def").id
    journal.claim_batch(file_id=other, target=TARGET, invoice_numbers=["a1"])  # sent again
    sent = journal.sent_from(file_id)
    assert [(r.invoice_number, r.status, r.batch, r.case_number) for r in sent] == [
        ("z9", InvoiceState.SUCCEEDED, first, "C-1"),
        ("m5", InvoiceState.UNKNOWN, second, None),
    ]
    journal.finish_file(file_id, state=FileState.GONE, counts={}, mapping=None, outcome=None)
    assert journal.resolve_batch(second, sent=False, note="checked") == 1
    assert journal.file(file_id).state is FileState.GONE
    assert journal.sent_from(file_id)[1].status is InvoiceState.NOT_SENT


def test_a_batch_amili_accepted_after_it_was_made_unknown_is_polled_and_blocks_again(
    journal: Journal,
) -> None:
    """The answer to a POST comes after a takeover made the batch UNKNOWN: it is ``queued``
    with its id and its invoices PENDING, the finished file ``waiting``. After a resolve as not
    sent, its numbers are blocked again, and one already sent again from another batch is
    counted, for the warning; a batch in another state is left alone (None)."""
    file_id = _claim(journal).id
    batch, _ = journal.claim_batch(file_id=file_id, target=TARGET, invoice_numbers=["1", "2"])
    journal.batch_unknown(batch, message="lost")
    journal.finish_file(file_id, state=FileState.DONE, counts={}, mapping="m", outcome=None)
    assert journal.batch_accepted_after_all(batch, batch_id="api-1") == 0
    assert journal.find_batch("api-1").state == BatchState.QUEUED
    assert {r.status for r in journal.sent_from(file_id)} == {InvoiceState.PENDING}
    assert journal.file(file_id).state is FileState.WAITING
    assert journal.batch_accepted_after_all(batch, batch_id="api-1") is None

    other, _ = journal.claim_batch(file_id=file_id, target=TARGET, invoice_numbers=["3", "4"])
    journal.batch_unknown(other, message="lost")
    journal.resolve_batch(other, sent=False, note="not found")
    _, claimed = journal.claim_batch(file_id=file_id, target=TARGET, invoice_numbers=["4"])
    assert claimed == ["4"]
    assert journal.batch_accepted_after_all(other, batch_id="api-2") == 1
    assert journal.claim_batch(file_id=file_id, target=TARGET, invoice_numbers=["3"])[1] == []


def test_a_live_claim_from_another_pid_namespace_of_this_host_is_kept(journal: Journal) -> None:
    """A container sharing this host's name (``--network host``) names a pid of its own pid
    namespace, which does not exist in ours: its claim stays its own while its lease runs, where
    one of our namespace whose pid is gone is free at once."""
    ours = this_owner().rsplit(":", 1)[1]
    no_such_pid = f"{socket.gethostname()}:{2**22 + 17}:token"
    assert _claim(journal, name="theirs.csv", owner=f"{no_such_pid}:{ours}1") is not None
    assert _claim(journal, name="theirs.csv") is None
    assert _claim(journal, name="ours.csv", owner=f"{no_such_pid}:{ours}") is not None
    assert _claim(journal, name="ours.csv") is not None


def test_a_claims_holder_is_named_whole_in_messages() -> None:
    """The pid namespace's ten digits were masked as a national id in every message naming a
    holder ("being processed by another filedrop process (host:12:token:402653****)")."""
    assert mask_ids(f"being processed by another filedrop process ({this_owner()})").endswith(
        f"({this_owner()})"
    )


def test_a_process_that_lost_its_claim_on_a_file_claims_no_batch_of_it(journal: Journal) -> None:
    """claim_batch with an owner writes nothing once the file is another owner's (taken over)
    or no longer claimed (found gone): ``ClaimLostError``; ``holds`` tells the same."""
    held_up = f"{socket.gethostname()}:{2**22 + 17}:token"  # no such process: its claim is free
    file_id = _claim(journal, owner=held_up).id
    assert journal.holds(file_id, held_up)
    journal.claim_batch(file_id=file_id, target=TARGET, invoice_numbers=["7"], owner=held_up)
    taker = this_owner()
    assert _claim(journal, owner=taker).id == file_id  # taken over
    assert not journal.holds(file_id, held_up)
    with pytest.raises(ClaimLostError):
        journal.claim_batch(file_id=file_id, target=TARGET, invoice_numbers=["8"], owner=held_up)
    assert journal.invoices(target=TARGET, numbers=["8"]) == {}
    journal.finish_file(file_id, state=FileState.GONE, counts={}, mapping=None, outcome=None)
    with pytest.raises(ClaimLostError):
        journal.claim_batch(file_id=file_id, target=TARGET, invoice_numbers=["8"], owner=taker)


def test_a_claim_is_free_once_its_lease_runs_out_and_heartbeats_extend_it(
    journal_location: Path | PostgresLocation,
) -> None:
    """Another host's claim holds for the lease after its last heartbeat, and no longer."""
    now = [1000.0]
    with Journal(journal_location, clock=lambda: now[0]) as journal:
        replica = "elsewhere:7:cafe"
        assert _claim(journal, owner=replica) is not None
        now[0] += 50
        assert journal.renew_claims(replica) == 1
        now[0] += 59
        assert (
            journal.claim_file(
                path=Path("a.csv"), sha256="abc", target=TARGET, owner=this_owner(), stale_s=60.0
            )
            is None
        )
        assert journal.holder(path=Path("a.csv"), sha256="abc", target=TARGET) == replica
        now[0] += 2
        taken = journal.claim_file(
            path=Path("a.csv"), sha256="abc", target=TARGET, owner=this_owner(), stale_s=60.0
        )
        assert (taken.owner, [f.owner for f in journal.claims()]) == (this_owner(), [this_owner()])


def test_two_processes_with_one_host_name_and_one_pid_are_told_apart() -> None:
    """Two containers, each filedrop being pid 1 on one host name, differ by their token."""
    twin = f"{socket.gethostname()}:{os.getpid()}:0ther"
    assert twin != this_owner()
    assert not owner_alive(twin, heartbeat=None, now=100.0, stale_s=60.0)
    assert owner_alive(twin, heartbeat=90.0, now=100.0, stale_s=60.0)


def test_the_schema_carries_its_version(journal_location: Path | PostgresLocation) -> None:
    """A new journal is created at the current schema version, on either engine."""
    with Journal(journal_location) as journal:
        rows = journal._read("SELECT version FROM schema_version")
    assert [row[0] for row in rows] == [SCHEMA_VERSION]


def test_a_journal_from_a_newer_filedrop_is_refused(tmp_path: Path) -> None:
    """A schema newer than this filedrop knows is never written to: one sentence says upgrade."""
    path = tmp_path / "state.db"
    Journal(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(ConfigError) as raised:
        Journal(path)
    assert str(raised.value) == (
        f"The journal {path} has schema version {SCHEMA_VERSION + 1}, newer than this filedrop "
        f"knows ({SCHEMA_VERSION}); upgrade filedrop."
    )


def test_a_journal_of_the_first_schema_is_migrated_in_place(tmp_path: Path) -> None:
    """A journal written before schema versions existed is taken up, its files kept."""
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as db:
        db.executescript(MIGRATIONS[0].format(**SqliteEngine.types))
        db.execute(
            "INSERT INTO files (target, name, path, sha256, state, created_at, updated_at)"
            " VALUES (?, 'a.csv', 'a.csv', 'abc', 'done', 1, 1)",
            (TARGET,),
        )
    with Journal(path) as journal:
        assert [f.name for f in journal.recent_files()] == ["a.csv"]
        journal.beat("host:1:t")
        assert [owner for owner, *_ in journal.replicas()] == ["host:1:t"]


def test_an_organisation_in_capitals_is_the_same_organisation_once_migrated(
    journal_location: Path | PostgresLocation,
) -> None:
    """A journal written while an organisation id was given in capitals in one place and small
    letters in another took them for two: its targets are put in small letters, and of an
    invoice recorded under both, the record that holds its number back stays."""
    upper = "production:3FA85F64-5717-4562-B3FC-2C963F66AFA6"
    lower = upper.lower()
    with Journal(journal_location) as journal, journal._write() as db:
        files = {}
        for target, name in ((upper, "a.csv"), (lower, "a.csv"), (upper, "b.csv")):
            files[target, name] = db.execute(
                "INSERT INTO files (target, name, path, sha256, state, created_at, updated_at)"
                " VALUES (?, ?, ?, 'same', 'done', 1, 1) RETURNING id",
                (target, name, name),
            ).fetchone()[0]
        for target, name, number, status in (
            (upper, "a.csv", "N-1", InvoiceState.SUCCEEDED),
            (lower, "a.csv", "N-1", InvoiceState.FAILED),  # sent again, and that one failed
            (upper, "a.csv", "N-2", InvoiceState.FAILED),
            (lower, "a.csv", "N-2", InvoiceState.PENDING),
            (upper, "b.csv", "N-3", InvoiceState.SUCCEEDED),
        ):
            db.execute(
                "INSERT INTO invoices (target, invoice_number, status, file_id, updated_at)"
                " VALUES (?, ?, ?, ?, 1)",
                (target, number, status, files[target, name]),
            )
        # Back to before that migration: the ones after it are undone too.
        db.execute("ALTER TABLE files DROP COLUMN read_under")
        db.execute("DROP INDEX invoices_zero_led")
        lowering = next(k for k, sql in enumerate(MIGRATIONS) if "lower(target)" in sql)
        db.execute("UPDATE schema_version SET version = ?", (lowering,))

    with Journal(journal_location) as journal:
        numbers = ["N-1", "N-2", "N-3"]
        known = journal.invoices(target=lower, numbers=numbers)
        assert {number: record.status for number, record in known.items()} == {
            "N-1": InvoiceState.SUCCEEDED,
            "N-2": InvoiceState.PENDING,
            "N-3": InvoiceState.SUCCEEDED,
        }
        assert journal.invoices(target=upper, numbers=numbers) == {}
        assert journal.find_file(target=lower, name="b.csv", sha256="same") is not None


SECRET = "s3cr3t-pw"


def test_the_journals_password_never_shows_in_settings_errors_or_reprs(
    tmp_path: Path,
) -> None:
    """A password in FILEDROP_STATE is hidden in the settings' repr, the journal's name and the
    sentence that says the server cannot be reached."""
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql://filedrop:{SECRET}@127.0.0.1:{port}/journal"
    settings = load_settings(environ={"FILEDROP_STATE": url}, config_file=None)
    assert (str(settings.journal_path), SECRET in repr(settings)) == (
        f"postgresql://filedrop:***@127.0.0.1:{port}/journal",
        False,
    )
    with pytest.raises(ConfigError) as raised:
        Journal(settings.journal_path)
    assert str(raised.value).startswith(
        f"The journal postgresql://filedrop:***@127.0.0.1:{port}/journal cannot be opened ("
    )
    assert SECRET not in str(raised.value)
    # libpq's lines and tab made one sentence, as every other message is.
    assert not any(mark in str(raised.value) for mark in ("\n", "\t", "  "))
    with pytest.raises(ConfigError) as refused:
        load_settings(environ={"FILEDROP_STATE": f"postgresql://x:{SECRET}@h:port/d"})
    assert str(refused.value) == (
        'FILEDROP_STATE is "postgresql://x:***@h:port/d", which is not valid: expected a path, '
        "or a URL like postgresql://user@host:5432/db."
    )


def test_a_postgres_url_is_never_taken_for_a_file_name(tmp_path: Path) -> None:
    """FILEDROP_STATE=postgresql://... names a server, never a SQLite file by that path."""
    settings = load_settings(environ={"FILEDROP_STATE": "postgres://u@db.example/journal"})
    assert settings.journal_path == PostgresLocation("postgres://u@db.example/journal")


def test_the_password_file_is_read_and_an_unreadable_one_named(postgres_url: str) -> None:
    """FILEDROP_STATE_PASSWORD_FILE supplies the password; one that cannot be read is named."""
    missing = Path("/nonexistent/pw")
    settings = load_settings(
        environ={"FILEDROP_STATE": postgres_url, "FILEDROP_STATE_PASSWORD_FILE": str(missing)}
    )
    with pytest.raises(ConfigError) as raised:
        Journal(settings.journal_path)
    assert str(raised.value) == (
        f"FILEDROP_STATE_PASSWORD_FILE {missing} cannot be read (No such file or directory); "
        "check the path and its permissions. Nothing was sent."
    )


def test_a_journal_whose_server_dropped_it_connects_again(
    postgres_url: str, tmp_path: Path, logged: Logged
) -> None:
    """PostgreSQL restarted or failed over: the statement that finds the connection gone fails
    (a file is then retried), the next one connects again and finds everything written before,
    without a restart of the daemon."""
    with Journal(PostgresLocation.parse(postgres_url)) as journal:
        claimed = journal.claim_file(
            path=tmp_path / "a.csv", sha256="00", target="t", owner="me", stale_s=60
        )
        assert claimed is not None
        assert drop_connections(postgres_url) == 1
        with pytest.raises(journal.errors):
            journal.status_counts()
        assert journal.file(claimed.id).name == "a.csv"
        _, numbers = journal.claim_batch(file_id=claimed.id, target="t", invoice_numbers=["7"])
        assert numbers == ["7"]
        assert journal.status_counts() == {InvoiceState.SENDING.value: 1}
    assert [m for m in logged.messages if "connect" in m] == [
        f"the journal {PostgresLocation.parse(postgres_url)} lost its connection; connected again"
    ]


def test_a_lost_server_is_not_tried_again_at_once_and_a_closed_journal_stays_closed(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server still out of reach: each try may take the connect timeout with every thread
    waiting, so the calls in the next seconds fail at once. A password file gone meanwhile is a
    journal failure like that one (which the heartbeat and the lease wait out), not a crash.
    And ``close`` is final: nothing connects again behind it."""
    password = tmp_path / "pw"
    password.write_text("unused (trust)\n", encoding="utf-8")
    location = PostgresLocation.parse(postgres_url).with_password_file(password, setting="PW")
    journal = Journal(location)
    drop_connections(postgres_url)
    password.unlink()
    with pytest.raises(journal.errors):
        journal.status_counts()  # finds the connection gone
    with pytest.raises(journal.errors, match=r"PW .* cannot be read"):
        journal.status_counts()  # connects again, and cannot
    tried: list[bool] = []
    engine = journal._engine
    monkeypatch.setattr(engine, "reconnect", lambda: tried.append(True))
    with pytest.raises(journal.errors, match="out of reach; connecting again within 5 s"):
        journal.status_counts()
    assert tried == []
    journal.close()
    with pytest.raises(journal.errors, match="closed"):
        journal.status_counts()
    assert tried == []


def test_a_batch_another_process_made_unknown_is_not_recorded_as_accepted(
    journal: Journal,
) -> None:
    """A process taking over a file it thought abandoned made the batch UNKNOWN; the answer that
    arrives after that does not turn it back into QUEUED (its outcome already says UNKNOWN)."""
    file = journal.claim_file(path=Path("f.csv"), sha256="00", target="t", owner="a", stale_s=60)
    assert file is not None
    batch, _ = journal.claim_batch(file_id=file.id, target="t", invoice_numbers=["1"])
    journal.batch_unknown(batch, message="taken over")
    assert journal.batch_submitted(batch, batch_id="late") is False
    assert journal.invoices(target="t", numbers=["1"])["1"].status is InvoiceState.UNKNOWN


def test_a_journal_file_deleted_while_open_is_put_back_with_nothing_lost(
    tmp_path: Path, logged: Logged
) -> None:
    """Its folder removed while filedrop runs: the journal is written back from the open
    connection, and recording goes on into the file the next start opens."""
    path = tmp_path / "state" / "journal.db"
    with Journal(path) as journal:
        file = journal.claim_file(path=Path("a.csv"), sha256="0", target="t", owner="a", stale_s=60)
        assert file is not None
        journal.claim_batch(file_id=file.id, target="t", invoice_numbers=["1", "2"])
        shutil.rmtree(path.parent)
        journal.put_back_if_deleted()
        assert path.exists()
        journal.claim_batch(file_id=file.id, target="t", invoice_numbers=["3"])
        shutil.rmtree(path.parent)  # and again, found this time only as filedrop stops
    with Journal(path) as reopened:
        assert sorted(reopened.invoices(target="t", numbers=["1", "2", "3"])) == ["1", "2", "3"]
    assert [m for m in logged.messages if "deleted" in m] == [
        f"the journal {path} was deleted while filedrop had it open; it was put back from the "
        "open copy, with nothing lost"
    ] * 2


def test_the_journals_of_several_inboxes_on_one_deleted_file_record_into_one_put_back(
    tmp_path: Path,
) -> None:
    """Two inboxes of one process, each with its journal on the same file: after the file is
    deleted, the first to write puts it back and the other opens that file, so what both
    record afterwards is in it (none goes into the deleted one)."""
    path = tmp_path / "state" / "journal.db"
    with Journal(path) as first, Journal(path) as second:
        file = first.claim_file(path=Path("a.csv"), sha256="0", target="t", owner="a", stale_s=60)
        assert file is not None
        shutil.rmtree(path.parent)
        first.put_back_if_deleted()  # as its inbox's next file does
        second.claim_batch(file_id=file.id, target="t", invoice_numbers=["2"])
        first.claim_batch(file_id=file.id, target="t", invoice_numbers=["3"])
        second.claim_batch(file_id=file.id, target="t", invoice_numbers=["1"])
    with Journal(path) as reopened:
        assert sorted(reopened.invoices(target="t", numbers=["1", "2", "3"])) == ["1", "2", "3"]


def test_a_fresh_journal_put_in_place_of_an_open_one_is_never_written_for_it(
    tmp_path: Path, logged: Logged
) -> None:
    """The journal is deleted under a daemon and a new run starts a fresh one there: the daemon
    records nothing into the fresh one (its batch #1 is another batch) nor into the deleted one;
    it saves what it held beside it and says so, and refuses to record from then on."""
    path = tmp_path / "journal.db"
    with Journal(path) as daemon:
        file = daemon.claim_file(path=Path("d.csv"), sha256="0", target="t", owner="d", stale_s=60)
        assert file is not None
        batch, _ = daemon.claim_batch(file_id=file.id, target="t", invoice_numbers=["D-1"])
        for gone in (path, *tmp_path.glob("journal.db-*")):  # rm journal.db*
            gone.unlink()
        with Journal(path) as fresh:
            other = fresh.claim_file(
                path=Path("r.csv"), sha256="1", target="t", owner="r", stale_s=60
            )
            assert other is not None
            fresh.claim_batch(file_id=other.id, target="t", invoice_numbers=["R-1"])
        with pytest.raises(daemon.errors, match="another journal is there now"):
            daemon.batch_submitted(batch, batch_id="API-DAEMON")
        with pytest.raises(daemon.errors, match="another journal is there now"):
            daemon.claim_batch(file_id=file.id, target="t", invoice_numbers=["D-2"])
    [saved] = tmp_path.glob("journal.db.saved-*")
    with Journal(saved) as kept:
        assert sorted(kept.invoices(target="t", numbers=["D-1", "R-1"])) == ["D-1"]
    with Journal(path) as fresh:
        assert sorted(fresh.invoices(target="t", numbers=["D-1", "R-1"])) == ["R-1"]
        assert [b.batch_id for b in fresh.batches(file_id=other.id)] == [None]
    assert sum("saved as" in m for m in logged.messages) == 1


def test_a_journal_another_process_put_back_first_is_opened_not_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, logged: Logged
) -> None:
    """Two processes had the deleted journal open, and the other put it back a moment sooner:
    this one finds the same journal there (its id) and goes on recording into it."""
    from filedrop.journal import engines

    path = tmp_path / "journal.db"
    with Journal(path) as journal:
        file = journal.claim_file(path=Path("a.csv"), sha256="0", target="t", owner="a", stale_s=60)
        assert file is not None
        for gone in (path, *tmp_path.glob("journal.db-*")):
            gone.unlink()
        link = os.link

        def the_other_was_sooner(source: Path, dest: Path) -> None:
            link(source, tmp_path / "other-copy.db")
            link(tmp_path / "other-copy.db", dest)  # the other process's copy, linked first
            link(source, dest)  # raises FileExistsError, as it would

        monkeypatch.setattr(engines.os, "link", the_other_was_sooner)
        journal.claim_batch(file_id=file.id, target="t", invoice_numbers=["1"])
    with Journal(path) as reopened:
        assert sorted(reopened.invoices(target="t", numbers=["1"])) == ["1"]
    assert not list(tmp_path.glob("journal.db.saved-*"))
    assert not [m for m in logged.messages if "another journal" in m]


def test_a_rebuilt_batch_keeps_the_number_its_outcome_names(journal: Journal) -> None:
    """'filedrop resolve 5' in an old outcome still names that outcome's batch after a rebuild;
    a number taken by another batch is not reused but drawn above every number the outcomes
    name, and so are batches that name none; batches claimed later follow them all."""

    def rebuilt(name: str, batch: RebuiltBatch, number: str) -> tuple[int, dict[int, int]]:
        unknown = batch.number is not None
        state = InvoiceState.UNKNOWN if unknown else InvoiceState.SUCCEEDED
        advice = f"'filedrop resolve {batch.number} --sent'"
        return journal.record_rebuilt_file(
            target=TARGET, name=name, path=Path(name), sha256=name, state=FileState.DONE,
            counts={}, outcome=Path(name),
            batches={batch: BatchState.UNKNOWN if unknown else BatchState.DONE},
            invoices=[(number, state, batch, "", "", "", advice)],
            draw_above=9,
        )  # fmt: skip

    assert rebuilt("z.csv", RebuiltBatch("", 5), "1") == (1, [])
    assert rebuilt("y.csv", RebuiltBatch("", 5), "2") == (1, [(5, 10)])
    assert rebuilt("x.csv", RebuiltBatch("api-1", None), "3") == (1, [])
    invoices = journal.invoices(target=TARGET, numbers=["1", "2", "3"])
    assert invoices["2"].message == "'filedrop resolve 10 --sent'"  # its advice follows it
    assert invoices["1"].message == "'filedrop resolve 5 --sent'"
    assert {number: invoice.batch for number, invoice in invoices.items()} == {
        "1": 5,
        "2": 10,
        "3": 11,
    }
    file_id = _claim(journal, "new.csv").id
    batch, _ = journal.claim_batch(file_id=file_id, target=TARGET, invoice_numbers=["4"])
    assert batch == 12


def test_known_outcomes_are_those_written_and_those_checked_at_the_target(
    journal: Journal,
) -> None:
    """An outcome a record wrote is known at any target; one checked, only at its target."""
    record = _claim(journal)
    assert record is not None
    journal.finish_file(
        record.id, state="done", counts={}, mapping="m", outcome=Path("a.outcome.csv"), written="w"
    )
    journal.outcome_checked(target=TARGET, stamp="c")
    journal.outcome_checked(target=TARGET, stamp="c")  # twice is once
    stamps = ["w", "c", "other", "w"]
    assert journal.known_outcomes(target=TARGET, stamps=stamps) == {"w", "c"}
    assert journal.known_outcomes(target="production:org-1", stamps=stamps) == {"w"}
    assert journal.known_outcomes(target=TARGET, stamps=[]) == set()


def test_a_claim_let_go_is_forgotten_unless_something_was_sent_from_it(journal: Journal) -> None:
    """A read given up (the file changed, or filedrop was stopping) leaves no record of bytes
    nothing was sent from: else they would be refused or resumed as something they are not.
    A file that sent before keeps its record, to be resumed."""
    unsent = _claim(journal, "a.csv", "aaa")
    journal.let_go(unsent.id)
    assert journal.find_file(target=TARGET, name="a.csv", sha256="aaa") is None
    assert _claim(journal, "a.csv", "aaa") is not None  # the same bytes are new again
    sent = _claim(journal, "b.csv", "bbb")
    journal.claim_batch(file_id=sent.id, target=TARGET, invoice_numbers=["1"])
    journal.let_go(sent.id)
    kept = journal.find_file(target=TARGET, name="b.csv", sha256="bbb")
    assert kept is not None
    assert (kept.state, kept.owner) == (FileState.RETRY, None)
