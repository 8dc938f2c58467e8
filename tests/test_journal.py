"""The journal keeps the promises across threads, processes and restarts (a real SQLite file)."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from filedrop.journal import Journal, owner_alive, this_owner

TARGET = "sandbox:org-1"


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    with Journal(tmp_path / "state.db") as journal:
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


def test_same_content_is_claimed_once(journal: Journal) -> None:
    """A file done with the same name and bytes is not claimed again; new bytes are."""
    record = _claim(journal)
    assert record is not None
    journal.finish_file(record.id, state="done", counts={"SUCCEEDED": 1}, mapping="m", outcome=None)
    assert _claim(journal) is None
    assert _claim(journal, sha="def") is not None


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
    _, again = journal.claim_batch(file_id=file_id, target=TARGET, invoice_numbers=["2", "3"])
    assert again == ["3"]
    journal.batch_submitted(batch, batch_id="b-1")
    journal.batch_finished(
        batch, api_status="PARTIAL", succeeded=[("1", "i", "c", "C-1")], failed=[("2", "bad email")]
    )
    records = journal.invoices(target=TARGET, numbers=["1", "2", "3"])
    assert (records["1"].status, records["1"].case_number) == ("SUCCEEDED", "C-1")
    assert (records["2"].status, records["2"].message) == ("FAILED", "bad email")
    _, retry = journal.claim_batch(file_id=file_id, target=TARGET, invoice_numbers=["1", "2"])
    assert retry == ["2"], "a FAILED number may be sent again, a SUCCEEDED one never"


def test_targets_are_separate(journal: Journal) -> None:
    """The same number may go to staging and to production: uniqueness is per environment+org."""
    file_id = _claim(journal).id
    assert journal.claim_batch(file_id=file_id, target="staging:o", invoice_numbers=["1"])[1]
    assert journal.claim_batch(file_id=file_id, target="production:o", invoice_numbers=["1"])[1]


def test_racing_processes_never_claim_a_number_twice(tmp_path: Path) -> None:
    """Eight threads on eight connections to one file claim each number exactly once."""
    path = tmp_path / "state.db"
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
    assert journal.resolve_batch(batch, sent=False, note="checked") == 1
    assert journal.invoices(target=TARGET, numbers=["9"])["9"].status == "NOT_SENT"
    assert journal.file(file_id).state == "retry"
    assert journal.claim_batch(file_id=file_id, target=TARGET, invoice_numbers=["9"])[1] == ["9"]


def test_resolved_sent_stays_blocked(journal: Journal) -> None:
    """Resolving an unknown batch as sent blocks its numbers for good."""
    file_id = _claim(journal).id
    batch, _ = journal.claim_batch(file_id=file_id, target=TARGET, invoice_numbers=["5"])
    journal.batch_unknown(batch, message="lost")
    journal.resolve_batch(batch, sent=True, note="checked")
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
    assert journal.last_beat() is None
    journal.beat("host:1")
    owner, _at = journal.last_beat()
    assert owner == "host:1"


def test_many_processes_can_create_one_new_journal_at_once(tmp_path: Path) -> None:
    """Processes starting together on a journal that does not exist yet all open it."""
    path = tmp_path / "new" / "state.db"
    code = (
        "import sys, time; from pathlib import Path; from filedrop.journal import Journal\n"
        "while time.time() < float(sys.argv[2]): pass\n"  # all open at the same instant
        "Journal(Path(sys.argv[1])).close()"
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


def test_the_invoice_numbers_of_an_unknown_batch_are_listed_in_file_order(
    journal: Journal,
) -> None:
    """What to look up with Amili: the batch's numbers still UNKNOWN, in the order sent."""
    file_id = _claim(journal).id
    batch, _ = journal.claim_batch(file_id=file_id, target=TARGET, invoice_numbers=["b7", "a2"])
    journal.batch_unknown(batch, message="lost")
    assert journal.unknown_invoice_numbers(batch) == ["b7", "a2"]
