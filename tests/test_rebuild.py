"""A lost journal is loud, and `filedrop journal rebuild` reads the outcomes back into it."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import socket
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import pytest
from builders import ORG_ID, erp_row, filedrop, run_env, write_erp_csv
from conftest import journal_file, one_sent_one_not

from filedrop.journal import Journal, rebuild
from filedrop.read import ReadLimits
from filedrop.sandbox import Sandbox, SandboxOptions
from filedrop.states import RESOLVE_ADVICE


def statuses(path: Path) -> list[str]:
    frame = pd.read_csv(path, sep=";", encoding="cp1252", dtype=str, keep_default_na=False)
    return list(frame["outcome_status"])


def delete_journal(inbox: Path) -> None:
    """What `rm` of the journal does: the file and its write-ahead log are gone."""
    journal = journal_file(inbox)
    for path in (journal, journal.with_name(journal.name + "-wal")):
        path.unlink(missing_ok=True)
    journal.with_name(journal.name + "-shm").unlink(missing_ok=True)


def copy_journal(inbox: Path, to: Path) -> None:
    """A backup of the journal as SQLite's backup API takes it, write-ahead log included."""
    with sqlite3.connect(journal_file(inbox)) as live, sqlite3.connect(to) as copy:
        live.backup(copy)


def put_back(backup: Path, inbox: Path) -> None:
    """The journal replaced by an older copy of it."""
    delete_journal(inbox)
    backup.replace(journal_file(inbox))


def copy_database(url: str) -> None:
    """A copy of the PostgreSQL journal at ``url``, taken on its server beside it as ``CREATE
    DATABASE ... TEMPLATE`` takes one (every table and sequence as it is)."""
    import psycopg

    server, _, name = url.rpartition("/")
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}_copy TEMPLATE {name}")


def put_back_database(url: str) -> None:
    """The PostgreSQL journal at ``url`` replaced by the older copy ``copy_database`` took: the
    database dropped and the copy given its name, so ``url`` names the copy now."""
    import psycopg

    server, _, name = url.rpartition("/")
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f"DROP DATABASE {name}")
        admin.execute(f"ALTER DATABASE {name}_copy RENAME TO {name}")


class OlderCopy(NamedTuple):
    """A journal as ``FILEDROP_STATE`` names it, how a copy of it is taken, and how that copy,
    older by then, is put back in its place."""

    state: str
    take: Callable[[], None]
    put_back: Callable[[], None]


@pytest.fixture(params=["sqlite", "postgresql"])
def older_copy(request: pytest.FixtureRequest, inbox: Path, tmp_path: Path) -> OlderCopy:
    """The inbox's journal, once for each engine: a SQLite file beside the inbox, copied with
    SQLite's backup API; a PostgreSQL database, copied on its server."""
    if request.param == "sqlite":
        backup = tmp_path / "backup.db"
        return OlderCopy(
            str(journal_file(inbox)),
            lambda: copy_journal(inbox, backup),
            lambda: put_back(backup, inbox),
        )
    url = request.getfixturevalue("postgres_url")
    return OlderCopy(url, lambda: copy_database(url), lambda: put_back_database(url))


def two_inboxes(
    tmp_path: Path, sandbox_url: str
) -> tuple[Path, Path, dict[str, str], dict[str, str]]:
    """Two inboxes side by side and their run environments: one journal beside both."""
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    assert journal_file(first) == journal_file(second)
    return first, second, run_env(first, sandbox_url), run_env(second, sandbox_url)


def lost_sentence(name: str, inbox: Path) -> str:
    return (
        f"{name}: its outcome {inbox / name.replace('.csv', '.outcome.csv')} shows invoices sent "
        f"that the journal {journal_file(inbox)} does not know were sent, so the journal was lost, "
        "replaced or put back from an older copy; nothing in this inbox is sent until 'filedrop "
        "journal rebuild' has read the outcomes back into it (or FILEDROP_STATE points at the "
        "journal in use)"
    )


def test_lost_journal_sends_nothing_until_rebuilt_and_pending_batches_complete(
    inbox: Path,
) -> None:
    """Run; delete the journal; run (nothing sent, one sentence, exit 2); rebuild; run (nothing
    resent, the batch that was PENDING completes)."""
    shift_s = [0.0]  # the sandbox's clock, moved on so the slow batch ends between runs
    with Sandbox(SandboxOptions(delay_s=(0, 0)), clock=lambda: time.time() + shift_s[0]) as api:
        write_erp_csv(inbox / "a.csv", [erp_row("7001"), erp_row("7002"), erp_row("7003")])
        env = run_env(inbox, api.url, FILEDROP_BATCH_SIZE="2", FILEDROP_POLL_TIMEOUT_S="0.2")
        filedrop("run", environ=env)
        api.options.delay_s = (60, 60)
        write_erp_csv(inbox / "p.csv", [erp_row("7101")])
        filedrop("run", environ=env, expect=3)
        assert statuses(inbox / "p.outcome.csv") == ["PENDING"]
        delete_journal(inbox)

        # One file at a time, so the sentence names the first file of the inbox.
        _, out, err = filedrop("run", environ={**env, "FILEDROP_CONCURRENT_FILES": "1"}, expect=2)
        # One log line for the run, whatever the number of files it stops.
        assert [line.split(" ERROR   ")[-1] for line in err.splitlines() if "journal" in line] == [
            lost_sentence("a.csv", inbox)
        ]
        assert (
            "a.csv: skipped (not sent: its outcome shows invoices sent that the journal does not "
            "know were sent" in out
        )
        assert api.counters().invoices_received == 4
        assert statuses(inbox / "a.outcome.csv") == ["SUCCEEDED"] * 3

        _, out, _ = filedrop("journal", "rebuild", environ=env)
        assert out.splitlines() == [
            f"Read 2 outcome files back into the journal {journal_file(inbox)}: 2 files and 4 "
            "invoice numbers recorded; 1 PENDING batches are polled again by the next run or "
            "watch, and 0 UNKNOWN batches wait for 'filedrop resolve'.",
            "The next run takes again 1 file whose input is in the inbox (perhaps a newer "
            "version): nothing an outcome shows sent is sent again, anything new is, and every "
            "row gets its status.",
        ]
        shift_s[0] = 120.0
        filedrop("run", environ=env)
        assert statuses(inbox / "p.outcome.csv") == ["SUCCEEDED"]
        assert statuses(inbox / "a.outcome.csv") == ["SUCCEEDED"] * 3
        assert api.counters().invoice_numbers_repeated == ()
        assert sorted(api.received_invoice_numbers()) == ["7001", "7002", "7003", "7101"]


def test_a_rebuilt_file_is_judged_due_on_the_day_its_outcome_held_invoices_on(
    inbox: Path, sandbox: Sandbox
) -> None:
    """An outcome holds an invoice back as not due yet (skip.not_due) on the day its file was
    first taken. Rebuilt, the file's record was taken "now", and the next run took the file
    again and sent that invoice from the old export, due by then. The record now says the day
    the outcome names, and the invoice stays SKIPPED. (The day is made ten days ago by telling
    the journal so, as no test waits ten days.)"""
    five_ago = f"{dt.date.today() - dt.timedelta(days=5):%d.%m.%Y}"
    write_erp_csv(inbox / "gammel.csv", [erp_row("3201"), erp_row("3202", Forfallsdato=five_ago)])
    env = run_env(inbox, sandbox.url)
    sandbox.fail_next(503, count=6, retry_after="0", route="invoices")
    filedrop("run", environ=env, expect=3)
    ten_days_ago = time.time() - 10 * 86_400
    with sqlite3.connect(journal_file(inbox)) as db:
        db.execute("UPDATE files SET created_at = ?", (ten_days_ago,))
    db.close()
    filedrop("run", environ=env)
    assert statuses(inbox / "gammel.outcome.csv") == ["SUCCEEDED", "SKIPPED"]
    delete_journal(inbox)
    filedrop("journal", "rebuild", environ=env)
    with Journal(journal_file(inbox)) as journal:
        (record,) = journal.recent_files()
    assert dt.date.fromtimestamp(record.created_at) == dt.date.fromtimestamp(ten_days_ago)
    filedrop("run", environ=env)
    assert statuses(inbox / "gammel.outcome.csv") == ["SUCCEEDED", "SKIPPED"]
    assert sandbox.counters().invoices_received == 1


@pytest.mark.parametrize("day", ["01.01.0001", "31.12.9999"])
def test_a_held_day_no_run_can_have_judged_on_is_passed_over(
    inbox: Path, sandbox: Sandbox, day: str
) -> None:
    """An outcome edited by hand names a day before 1970 or after today as the one its invoice
    was held on: the rebuild stopped with "year 0 is out of range" on the first. Such a day is
    passed over, and the file's record is taken now."""
    later = f"{dt.date.today() + dt.timedelta(days=3):%d.%m.%Y}"
    write_erp_csv(inbox / "rar.csv", [erp_row("3401"), erp_row("3402", Forfallsdato=later)])
    env = run_env(inbox, sandbox.url)
    filedrop("run", environ=env)
    outcome = inbox / "rar.outcome.csv"
    today = f"{dt.date.today():%d.%m.%Y}"
    text = outcome.read_bytes().decode("cp1252")
    assert f"has not passed on {today}:" in text
    outcome.write_bytes(text.replace(f"has not passed on {today}:", f"has not passed on {day}:")
                        .encode("cp1252"))  # fmt: skip
    delete_journal(inbox)
    before = time.time()
    filedrop("journal", "rebuild", environ=env)
    with Journal(journal_file(inbox)) as journal:
        (record,) = journal.recent_files()
    assert before <= record.created_at <= time.time()


def test_after_a_lost_journal_a_re_export_under_a_new_name_is_not_sent(
    inbox: Path, sandbox: Sandbox
) -> None:
    """a.csv was sent, then the journal deleted; a re-export of the same invoices and one more
    comes as a-2.csv, with no outcome of its own. Nothing in the inbox is sent until the journal
    is rebuilt, whichever file is looked at first; then only the new invoice goes out."""
    write_erp_csv(inbox / "a.csv", [erp_row("9101"), erp_row("9102")])
    env = run_env(inbox, sandbox.url)
    filedrop("run", environ=env)
    delete_journal(inbox)
    write_erp_csv(inbox / "a-2.csv", [erp_row("9101"), erp_row("9102"), erp_row("9103")])
    _, out, err = filedrop("run", environ=env, expect=2)
    assert sandbox.received_invoice_numbers() == ["9101", "9102"]
    assert (
        "a-2.csv: skipped (not sent: the outcome a.outcome.csv shows invoices sent from a.csv "
        "that the journal does not know were sent (lost, replaced or an older copy); run "
        "'filedrop journal rebuild')"
    ) in out
    assert "nothing in this inbox is sent until 'filedrop journal rebuild'" in err + out
    assert not (inbox / "a-2.outcome.csv").exists()
    filedrop("journal", "rebuild", environ=env)
    filedrop("run", environ=env)
    assert sandbox.received_invoice_numbers() == ["9101", "9102", "9103"]
    assert statuses(inbox / "a-2.outcome.csv") == ["DUPLICATE", "DUPLICATE", "SUCCEEDED"]


@pytest.mark.parametrize(
    ("first", "then"),
    [
        ("20240301-120000-invoices.csv", None),  # a name like an archived one, in the inbox
        ("DATA.CSV", "gone"),  # its input deleted; the outcome's name is spelt otherwise
        ("a.csv", "a-feb.outcome.csv"),  # its outcome renamed by hand
    ],
)
def test_a_whole_journal_does_not_hold_back_an_inbox_with_odd_outcome_names(
    inbox: Path, sandbox: Sandbox, first: str, then: str | None
) -> None:
    """Outcomes whose names do not say their input plainly are no evidence of a lost journal
    when the journal knows them, or knows every invoice they show sent: the next file goes."""
    path = write_erp_csv(inbox / first, [erp_row("9201")])
    env = run_env(inbox, sandbox.url)
    filedrop("run", environ=env)
    if then == "gone":
        path.unlink()
    elif then is not None:
        outcome = next(inbox.glob("*.outcome.*"))
        outcome.rename(inbox / then)
    write_erp_csv(inbox / "20240302-120000-invoices.csv", [erp_row("9202")])
    filedrop("run", environ=env)
    assert sandbox.received_invoice_numbers() == ["9201", "9202"]


def test_junk_named_like_an_outcome_does_not_hold_back_the_inbox(
    inbox: Path, sandbox: Sandbox
) -> None:
    """Anyone who can drop a file could otherwise stop an inbox: a file of no outcome's shape,
    one with a control character in its name, and a link to a secret, all named like outcomes,
    show no invoice sent, so the file beside them goes."""
    (inbox / "notes\x1b[31m.outcome.csv").write_bytes(b"not an outcome at all\n")
    (inbox / "big.outcome.csv").write_bytes(b"x" * 2_000_000)
    (inbox / "link.outcome.csv").symlink_to("/etc/passwd")
    write_erp_csv(inbox / "a.csv", [erp_row("9301")])
    filedrop("run", environ=run_env(inbox, sandbox.url))
    assert sandbox.received_invoice_numbers() == ["9301"]


def test_rebuild_blocks_unknown_invoices_for_resolve(inbox: Path, sandbox: Sandbox) -> None:
    """An UNKNOWN row comes back as an UNKNOWN batch that status lists and resolve settles."""
    sandbox.options.rate_lost_response = 1.0  # processed, never answered: UNKNOWN
    write_erp_csv(inbox / "u.csv", [erp_row("7201")])
    env = run_env(inbox, sandbox.url, FILEDROP_READ_TIMEOUT_S="0.5")
    filedrop("run", environ=env, expect=1)
    assert statuses(inbox / "u.outcome.csv") == ["UNKNOWN"]
    delete_journal(inbox)
    sandbox.options.rate_lost_response = 0.0

    filedrop("journal", "rebuild", environ=env)
    write_erp_csv(inbox / "again.csv", [erp_row("7201")])
    filedrop("run", environ=env, expect=1)  # u.csv, taken again, is still UNKNOWN
    # again.csv's row waits for the resolve as well: not sent, nor called a DUPLICATE.
    assert statuses(inbox / "again.outcome.csv") == ["UNKNOWN"]
    assert statuses(inbox / "u.outcome.csv") == ["UNKNOWN"]
    assert sandbox.counters().invoice_numbers_repeated == ()
    _, out, _ = filedrop("status", environ=env)
    lines = out.splitlines()
    looked_up = lines.index("    invoice numbers to look up: 7201")
    # Read back from an outcome a spreadsheet program may have saved: zeros in front dropped,
    # the number looked up at Amili was not the one sent, and '--not-sent' sent it twice (a
    # hostile review of operator flows). Said where the numbers are.
    assert lines[looked_up + 1] == (
        "    (as an outcome read back shows them: a spreadsheet program that saved it drops "
        "zeros in front of a number, so look each up with zeros in front too, as the input "
        "file has it)"
    )


def test_a_file_taken_again_after_a_rebuild_from_its_saved_outcome_keeps_its_own_rows(
    inbox: Path, sandbox: Sandbox
) -> None:
    """a.csv sent 000781; its outcome was opened and saved by a spreadsheet program, which
    dropped the zeros, and the journal was then lost and rebuilt from it, so it holds 781. a.csv,
    taken again, called its own row a DUPLICATE of itself ("already sent from a.csv") and lost its
    case. The row is its invoice's, SUCCEEDED with its case, as the journal records it; nothing is
    sent again, and another file's 000781 is still that invoice's DUPLICATE."""
    write_erp_csv(inbox / "a.csv", [erp_row("000781"), erp_row("9102")])
    env = run_env(inbox, sandbox.url)
    filedrop("run", environ=env)
    outcome = inbox / "a.outcome.csv"
    read = pd.read_csv(outcome, sep=";", encoding="cp1252", dtype=str, keep_default_na=False)
    case = read["outcome_case_number"][0]
    outcome.write_bytes(outcome.read_bytes().replace(b"000781", b"781"))
    delete_journal(inbox)
    filedrop("journal", "rebuild", environ=env)
    filedrop("run", environ=env)
    read = pd.read_csv(outcome, sep=";", encoding="cp1252", dtype=str, keep_default_na=False)
    assert list(read["outcome_status"]) == ["SUCCEEDED", "SUCCEEDED"]
    assert list(read["outcome_message"]) == ["", ""]
    assert read["outcome_case_number"][0] == case != ""
    write_erp_csv(inbox / "b.csv", [erp_row("000781")])
    filedrop("run", environ=env)
    assert statuses(inbox / "b.outcome.csv") == ["DUPLICATE"]
    assert sandbox.received_invoice_numbers() == ["000781", "9102"]


def test_rows_that_wait_for_another_files_batch_never_speak_for_it(inbox: Path) -> None:
    """b.csv's row of 7001 waits for a.csv's batch (PENDING there, then UNKNOWN): rebuilt, the
    batch is a.csv's as its own outcome tells, never b.csv's (the newer outcome, which knows
    neither the batch's id nor its other invoices). Found by a review: b.csv won, 7001 was
    PENDING with no batch to poll for good, and an UNKNOWN batch was split between the files."""
    shift_s = [0.0]  # the sandbox's clock, moved on so that a.csv's batch ends between runs
    with Sandbox(SandboxOptions(delay_s=(60, 60)), clock=lambda: time.time() + shift_s[0]) as slow:
        # One file at a time, oldest first: b.csv's row of 7001 is written once a.csv's batch
        # is polled (side by side, b.csv may finish first, its row PENDING until the next run).
        env = run_env(inbox, slow.url, FILEDROP_POLL_TIMEOUT_S="0.2", FILEDROP_CONCURRENT_FILES="1")
        write_erp_csv(inbox / "a.csv", [erp_row("7001")])
        filedrop("run", environ=env, expect=3)
        write_erp_csv(inbox / "b.csv", [erp_row("7001"), erp_row("7003")])
        filedrop("run", environ=env, expect=3)
        assert statuses(inbox / "b.outcome.csv") == ["PENDING", "PENDING"]
        delete_journal(inbox)
        filedrop("journal", "rebuild", environ=env)
        shift_s[0] = 120.0
        filedrop("run", environ=env)
        assert statuses(inbox / "a.outcome.csv") == ["SUCCEEDED"]
        assert statuses(inbox / "b.outcome.csv") == ["DUPLICATE", "SUCCEEDED"]
        assert slow.counters().invoice_numbers_repeated == ()


def test_an_unknown_batch_rebuilt_stays_the_file_s_that_sent_it(
    inbox: Path, sandbox: Sandbox
) -> None:
    """a.csv's POST of 7001 and 7002 is lost (UNKNOWN batch #1), and b.csv holds 7001 too: after
    a rebuild, status lists batch #1 as a.csv's with both numbers, and resolving it settles
    both files."""
    env = run_env(inbox, sandbox.url, FILEDROP_CONCURRENT_BATCHES="1")
    write_erp_csv(inbox / "a.csv", [erp_row("7001"), erp_row("7002")])
    with socket.create_server(("127.0.0.1", 0)) as silent:  # takes a POST, never answers it
        lost = {"FILEDROP_API_URL": f"http://127.0.0.1:{silent.getsockname()[1]}"}
        filedrop("run", environ=env | lost | {"FILEDROP_READ_TIMEOUT_S": "0.3"}, expect=1)
    write_erp_csv(inbox / "b.csv", [erp_row("7001"), erp_row("7003")])
    filedrop("run", environ=env, expect=1)
    assert statuses(inbox / "b.outcome.csv") == ["UNKNOWN", "SUCCEEDED"]
    delete_journal(inbox)
    filedrop("journal", "rebuild", environ=env)
    _, out, _ = filedrop("status", environ=env)
    assert "  #1  a.csv  " in out and "    invoice numbers to look up: 7001, 7002" in out
    filedrop("resolve", "1", "--sent", environ=env)
    filedrop("run", environ=env)
    assert statuses(inbox / "b.outcome.csv") == ["DUPLICATE", "SUCCEEDED"]
    assert sandbox.received_invoice_numbers() == ["7003"]


def test_a_batch_rebuilt_unknown_and_resolved_not_sent_is_sent_by_the_next_run(
    inbox: Path, sandbox: Sandbox
) -> None:
    """After a rebuild, 'resolve --not-sent' keeps the outcome it rewrites aside (the journal
    did not write it), and that outcome calls the batch UNKNOWN: the very batch the operator has
    settled since, so it is no sign of a lost journal, and the next run sends the batch. Every
    run took it for one, and sent nothing in the inbox (exit 2; found by a review)."""
    env = run_env(inbox, sandbox.url)
    write_erp_csv(inbox / "a.csv", [erp_row("7101"), erp_row("7102")])
    with socket.create_server(("127.0.0.1", 0)) as silent:  # takes a POST, never answers it
        lost = {"FILEDROP_API_URL": f"http://127.0.0.1:{silent.getsockname()[1]}"}
        filedrop("run", environ=env | lost | {"FILEDROP_READ_TIMEOUT_S": "0.3"}, expect=1)
    delete_journal(inbox)
    filedrop("journal", "rebuild", environ=env)
    filedrop("resolve", "1", "--not-sent", environ=env)
    filedrop("run", environ=env)
    assert statuses(inbox / "a.outcome.csv") == ["SUCCEEDED", "SUCCEEDED"]
    assert sandbox.received_invoice_numbers() == ["7101", "7102"]


def test_an_unknown_row_is_settled_only_by_its_own_batch(inbox: Path, sandbox: Sandbox) -> None:
    """The outcome calls 7111 UNKNOWN in batch #1; a journal that holds it NOT_SENT under any
    other batch (an older copy, say) would let a maybe-sent invoice go again: that is still a
    lost journal, and nothing in the inbox is sent."""
    env = run_env(inbox, sandbox.url)
    write_erp_csv(inbox / "a.csv", [erp_row("7111")])
    with socket.create_server(("127.0.0.1", 0)) as silent:  # takes a POST, never answers it
        lost = {"FILEDROP_API_URL": f"http://127.0.0.1:{silent.getsockname()[1]}"}
        filedrop("run", environ=env | lost | {"FILEDROP_READ_TIMEOUT_S": "0.3"}, expect=1)
    with sqlite3.connect(journal_file(inbox)) as db:
        db.execute("UPDATE files SET outcome_written = NULL")  # an outcome it did not write
        db.execute("UPDATE invoices SET status = 'NOT_SENT', batch = 7")
        db.execute("UPDATE batches SET id = 7, state = 'resolved'")
    write_erp_csv(inbox / "b.csv", [erp_row("7112")])
    _, _, err = filedrop("run", environ=env, expect=2)
    assert "shows invoices sent that the journal" in err
    assert sandbox.received_invoice_numbers() == []


def test_rebuild_reads_the_archive(inbox: Path, sandbox: Sandbox) -> None:
    """Archived outcomes count: the same file dropped again after a rebuild is not sent."""
    env = run_env(inbox, sandbox.url, FILEDROP_ARCHIVE="true")
    rows = [erp_row("7301"), erp_row("7302")]
    write_erp_csv(inbox / "m.csv", rows)
    filedrop("run", environ=env)
    assert not (inbox / "m.csv").exists()
    delete_journal(inbox)
    write_erp_csv(inbox / "m.csv", rows)
    filedrop("run", environ=env, expect=2)  # its archived outcome shows it was sent

    filedrop("journal", "rebuild", environ=env)
    _, out, _ = filedrop("run", environ=env)
    (archived,) = (inbox / "archive").glob("*-m.csv")
    (outcome,) = (inbox / "archive").glob("*-m.outcome.csv")
    assert out.splitlines() == [
        "SANDBOX run: nothing was sent to Amili.",
        f"m.csv: skipped (already processed as {archived}; its outcome is {outcome})",
    ]
    assert sandbox.received_invoice_numbers() == ["7301", "7302"]


def test_an_outcome_that_shows_nothing_sent_is_no_evidence(inbox: Path, sandbox: Sandbox) -> None:
    """A file whose outcome only says INVALID goes through a new journal as a new file."""
    write_erp_csv(inbox / "i.csv", [erp_row("7401", amount="abc")])
    env = run_env(inbox, sandbox.url)
    filedrop("run", environ=env, expect=1)
    delete_journal(inbox)
    filedrop("run", environ=env, expect=1)
    assert statuses(inbox / "i.outcome.csv") == ["INVALID"]


def test_rebuild_says_how_many_rows_of_old_outcomes_it_cannot_read_back(
    inbox: Path, sandbox: Sandbox
) -> None:
    """Outcomes from before outcome_invoice_number: their sent rows are counted, exit 1."""
    write_erp_csv(inbox / "o.csv", [erp_row("7501"), erp_row("7502")])
    env = run_env(inbox, sandbox.url)
    filedrop("run", environ=env)
    outcome = inbox / "o.outcome.csv"
    old = pd.read_csv(outcome, sep=";", encoding="cp1252", dtype=str, keep_default_na=False)
    old.drop(columns="outcome_invoice_number").to_csv(
        outcome, sep=";", encoding="cp1252", index=False
    )
    delete_journal(inbox)

    _, out, _ = filedrop("journal", "rebuild", environ=env, expect=1)
    assert out.splitlines()[-1] == (
        "2 rows that were sent could not be rebuilt: their outcomes were written before filedrop "
        "recorded each row's invoice number in them (outcome_invoice_number), so a new file with "
        "those numbers would send them again; check them with Amili."
    )
    _, out, _ = filedrop("run", environ=env)  # the file itself is known again
    assert out.splitlines()[-1] == "o.csv: skipped (already processed)"
    assert sandbox.counters().invoices_received == 2


def test_rebuild_fresh_keeps_the_old_journal_and_starts_over(inbox: Path, sandbox: Sandbox) -> None:
    """--fresh: the old journal is kept aside, and the files already processed go again."""
    write_erp_csv(inbox / "f.csv", [erp_row("7601")])
    env = run_env(inbox, sandbox.url)
    filedrop("run", environ=env)

    _, out, _ = filedrop("journal", "rebuild", "--fresh", environ=env)
    backups = list(journal_file(inbox).parent.glob("journal.db.before-fresh-*"))
    assert len(backups) == 1
    with sqlite3.connect(backups[0]) as db:
        assert db.execute("SELECT name FROM files").fetchall() == [("f.csv",)]
    assert out.splitlines() == [
        f"The journal {journal_file(inbox)} is kept as {backups[0]}.",
        f"Started an empty journal at {journal_file(inbox)}: the files in {inbox} are processed "
        "again as new by the next run, and every invoice in them is sent again.",
    ]
    filedrop("run", environ=env, expect=1)  # sent again on purpose; Amili refuses the number
    assert sandbox.received_invoice_numbers() == ["7601", "7601"]


def test_rebuilding_twice_adds_nothing(inbox: Path, sandbox: Sandbox) -> None:
    """A second rebuild finds everything known: no file, batch or invoice twice."""
    write_erp_csv(inbox / "t.csv", [erp_row("7701"), erp_row("7702")])
    env = run_env(inbox, sandbox.url)
    filedrop("run", environ=env)
    delete_journal(inbox)
    filedrop("journal", "rebuild", environ=env)
    _, out, _ = filedrop("journal", "rebuild", environ=env)
    assert "0 files and 0 invoice numbers recorded" in out  # nothing new: nothing said new
    assert "takes again" not in out
    with sqlite3.connect(journal_file(inbox)) as db:
        assert db.execute("SELECT COUNT(*) FROM files").fetchone() == (1,)
        assert db.execute("SELECT COUNT(*) FROM batches").fetchone() == (1,)
        assert db.execute("SELECT COUNT(*) FROM invoices").fetchone() == (2,)


def test_after_a_rebuild_an_outcome_s_resolve_advice_settles_its_own_batch(
    inbox: Path, sandbox: Sandbox
) -> None:
    """z.csv's batch was #1 and a.csv's #2, both UNKNOWN. Rebuilt in name order, a.csv's would
    have become #1, and z.outcome.csv's 'filedrop resolve 1 --not-sent' would send a.csv's
    invoice a second time. Each keeps its number; a copy naming a taken number is told apart."""
    sandbox.options.rate_lost_response = 1.0  # processed, never answered: UNKNOWN
    env = run_env(inbox, sandbox.url, FILEDROP_READ_TIMEOUT_S="0.5")
    write_erp_csv(inbox / "z.csv", [erp_row("7801")])
    filedrop("run", environ=env, expect=1)
    write_erp_csv(inbox / "a.csv", [erp_row("7802")])
    filedrop("run", environ=env, expect=1)
    advice = "'filedrop resolve {} --sent' or '--not-sent'"
    z_outcome = pd.read_csv(inbox / "z.outcome.csv", sep=";", encoding="cp1252", dtype=str)
    assert advice.format(1) in z_outcome["outcome_message"][0]
    # The outcome of a file from another journal, whose batch was #1 there as well.
    copy = z_outcome.assign(outcome_invoice_number="7803", invoice_number="7803")
    copy.to_csv(inbox / "zz.outcome.csv", sep=";", encoding="cp1252", index=False)
    delete_journal(inbox)
    sandbox.options.rate_lost_response = 0.0

    _, out, _ = filedrop("journal", "rebuild", environ=env, expect=1)
    assert out.splitlines()[-1] == (
        "zz.outcome.csv says to resolve its UNKNOWN rows as batch #1, but #1 is another batch "
        "in this journal: they are batch #3 now, so run 'filedrop resolve 3 --sent' or "
        "'--not-sent' for them, not 1."
    )
    _, out, _ = filedrop("resolve", "1", "--not-sent", environ=env)
    assert statuses(inbox / "z.outcome.csv") == ["NOT_SENT"]
    assert statuses(inbox / "a.outcome.csv") == ["UNKNOWN"]
    with sqlite3.connect(journal_file(inbox)) as db:
        assert db.execute(
            "SELECT invoice_number, batch FROM invoices ORDER BY invoice_number"
        ).fetchall() == [("7801", 1), ("7802", 2), ("7803", 3)]
        (message,) = db.execute("SELECT message FROM invoices WHERE batch = 3").fetchone()
    assert advice.format(3) in message  # what an outcome rewritten from it will say


def test_a_replaced_file_s_outcome_is_kept_so_a_lost_journal_sends_nothing_again(
    inbox: Path, sandbox: Sandbox
) -> None:
    """a.csv is sent, then replaced by a new a.csv: the first outcome is moved to archive/,
    not overwritten, so after a lost journal and a rebuild the first version's invoices, dropped
    again under another name, are DUPLICATE rather than sent a second time."""
    env = run_env(inbox, sandbox.url)
    write_erp_csv(inbox / "a.csv", [erp_row("7901"), erp_row("7902")])
    filedrop("run", environ=env)
    write_erp_csv(inbox / "a.csv", [erp_row("7903")])
    _, _, err = filedrop("run", environ=env)
    kept = list((inbox / "archive").iterdir())
    assert [path.name[15:] for path in kept] == ["-a.outcome.csv"]
    assert (
        "a.csv: a.outcome.csv, which this file's record did not write (an earlier file's of "
        "that name, or one from before a journal rebuild), shows invoices sent; it is kept as "
        f"archive/{kept[0].name}" in err
    )
    assert statuses(kept[0]) == ["SUCCEEDED"] * 2
    assert statuses(inbox / "a.outcome.csv") == ["SUCCEEDED"]
    delete_journal(inbox)

    filedrop("journal", "rebuild", environ=env)
    write_erp_csv(inbox / "b.csv", [erp_row("7901"), erp_row("7902")])
    filedrop("run", environ=env)
    assert statuses(inbox / "b.outcome.csv") == ["DUPLICATE"] * 2
    assert sandbox.counters().invoice_numbers_repeated == ()
    assert sorted(sandbox.received_invoice_numbers()) == ["7901", "7902", "7903"]


@pytest.mark.parametrize("second", ["empty", "unmappable"])
def test_a_replacement_that_cannot_be_read_does_not_overwrite_what_was_sent(
    inbox: Path, sandbox: Sandbox, second: str
) -> None:
    """a.csv is sent; its replacement is empty or fits no mapping, and gets its ERROR outcome:
    the first outcome is kept in archive/, so a rebuild still knows what was sent."""
    env = run_env(inbox, sandbox.url)
    write_erp_csv(inbox / "a.csv", [erp_row("7921")])
    filedrop("run", environ=env)
    (inbox / "a.csv").write_text("" if second == "empty" else "x;y\n1;2\n", encoding="cp1252")
    filedrop("run", environ=env, expect=1)
    assert "ERROR" in (inbox / "a.outcome.csv").read_text(encoding="cp1252")
    (kept,) = (inbox / "archive").iterdir()
    assert statuses(kept) == ["SUCCEEDED"]
    delete_journal(inbox)
    filedrop("journal", "rebuild", environ=env)
    write_erp_csv(inbox / "b.csv", [erp_row("7921")])
    filedrop("run", environ=env, expect=1)  # a.csv is still in error
    assert statuses(inbox / "b.outcome.csv") == ["DUPLICATE"]
    assert sandbox.counters().invoices_received == 1
    assert [path.name for path in (inbox / "archive").iterdir()] == [kept.name]  # ERRORs go


def test_an_earlier_version_dropped_again_does_not_overwrite_the_later_one_s_outcome(
    inbox: Path,
) -> None:
    """v1 of a.csv waits on its batch; its own outcome is rewritten in place while it waits.
    v2 replaces it (v1's outcome goes to archive/), then v1's bytes come back and resume: v2's
    outcome goes to archive/ too, never overwritten. Every outcome is kept exactly once."""
    shift_s = [0.0]
    with Sandbox(SandboxOptions(delay_s=(60, 60)), clock=lambda: time.time() + shift_s[0]) as api:
        env = run_env(inbox, api.url, FILEDROP_POLL_TIMEOUT_S="0.2")
        first = [erp_row("7931")]
        write_erp_csv(inbox / "a.csv", first)
        filedrop("run", environ=env, expect=3)
        filedrop("run", environ=env, expect=3)  # resumed: its own outcome, rewritten in place
        assert not (inbox / "archive").exists()
        api.options.delay_s = (0, 0)
        write_erp_csv(inbox / "a.csv", [erp_row("7932")])
        filedrop("run", environ=env)  # v2 done; v1's batch, of a file gone, still waits
        write_erp_csv(inbox / "a.csv", first)
        shift_s[0] = 120.0
        filedrop("run", environ=env)
        kept = sorted((inbox / "archive").iterdir())
        assert [statuses(path) for path in kept] == [["PENDING"], ["SUCCEEDED"]]
        assert statuses(inbox / "a.outcome.csv") == ["SUCCEEDED"]
        second = pd.read_csv(kept[1], sep=";", encoding="cp1252", dtype=str)
        assert second["outcome_invoice_number"].tolist() == ["7932"]


@pytest.mark.parametrize("archive", ["file", "link"])
def test_with_archive_a_file_or_a_link_an_earlier_outcome_is_kept_beside(
    tmp_path: Path, inbox: Path, sandbox: Sandbox, archive: str
) -> None:
    """archive is a file or a link (never followed): the earlier outcome is kept in the inbox
    under a stamped name and the new version is sent; another organisation's run is not held
    back by it as a lost journal; after a lost journal a rebuild reads it, and the run after
    sends nothing twice and leaves nothing stuck."""
    env = run_env(inbox, sandbox.url)
    write_erp_csv(inbox / "a.csv", [erp_row("7941")])
    filedrop("run", environ=env)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    if archive == "file":
        (inbox / "archive").write_text("not a folder", encoding="utf-8")
    else:
        (inbox / "archive").symlink_to(elsewhere, target_is_directory=True)
    write_erp_csv(inbox / "a.csv", [erp_row("7942")])
    filedrop("run", environ=env)
    (kept,) = (path for path in inbox.iterdir() if path.name.endswith("-a.outcome.csv"))
    assert statuses(kept) == ["SUCCEEDED"]
    assert list(elsewhere.iterdir()) == []
    (inbox / "a.csv").rename(tmp_path / "a.csv")  # done with; another organisation's export
    other_org = run_env(inbox, sandbox.url, FILEDROP_ORG_ID="0e7cbd2e-61b4-4d5c-9a3e-3a4b9f1c2d10")
    write_erp_csv(inbox / "c.csv", [erp_row("7943")])
    filedrop("run", environ=other_org)
    assert statuses(inbox / "c.outcome.csv") == ["SUCCEEDED"]
    (inbox / "c.csv").unlink()
    (inbox / "c.outcome.csv").unlink()
    delete_journal(inbox)
    _, out, _ = filedrop("journal", "rebuild", environ=env)
    assert "Read 2 outcome files" in out
    filedrop("run", environ=env)
    filedrop("run", environ=env)
    assert sorted(sandbox.received_invoice_numbers()) == ["7941", "7942", "7943"]


def test_two_files_of_one_name_archived_in_one_second_are_both_kept(
    inbox: Path, sandbox: Sandbox
) -> None:
    """With FILEDROP_ARCHIVE, a.csv sent twice within a second (new bytes each time): each
    original and outcome gets a name of its own in archive/, and a rebuild reads them all."""
    env = run_env(inbox, sandbox.url, FILEDROP_ARCHIVE="true")
    for number in ("7911", "7912", "7913"):
        write_erp_csv(inbox / "a.csv", [erp_row(number)])
        filedrop("run", environ=env)
    names = sorted(path.name for path in (inbox / "archive").iterdir())
    assert len(names) == 6, names
    prefixes = {name.removesuffix("-a.outcome.csv") for name in names if "outcome" in name}
    assert prefixes == {name.removesuffix("-a.csv") for name in names if "outcome" not in name}
    delete_journal(inbox)
    _, out, _ = filedrop("journal", "rebuild", environ=env)
    assert "3 files and 3 invoice numbers recorded" in out


def test_only_a_plausible_batch_number_is_read_from_an_outcome_s_advice() -> None:
    """A hostile outcome cannot name batch 0 or push the journal's numbers past 32 bits."""
    assert RESOLVE_ADVICE.search("then run 'filedrop resolve 17 --sent' or '--not-sent'")[1] == "17"
    for text in ("resolve 0 --", "resolve 017 --", "resolve -3 --", "resolve 1234567890 --"):
        assert RESOLVE_ADVICE.search(f"filedrop {text}sent") is None, text


def test_an_export_named_with_a_timestamp_is_rebuilt_under_its_own_name(
    inbox: Path, sandbox: Sandbox
) -> None:
    """'20240301-120000-faktura.csv' looks like an archive stamp, but in the inbox it is the
    file's name: rebuilt under it, the file is known again, not refused as a lost journal."""
    env = run_env(inbox, sandbox.url)
    write_erp_csv(inbox / "20240301-120000-faktura.csv", [erp_row("7951")])
    filedrop("run", environ=env)
    delete_journal(inbox)
    filedrop("journal", "rebuild", environ=env)
    _, out, _ = filedrop("run", environ=env)
    assert "20240301-120000-faktura.csv: 1 SUCCEEDED" in out
    assert sandbox.received_invoice_numbers() == ["7951"]


def test_after_a_rebuild_a_new_export_under_the_old_name_is_sent_whatever_its_time(
    inbox: Path, sandbox: Sandbox
) -> None:
    """Day 1's invoices.csv was sent; day 2's lands under the same name with an older time
    (cp -p, an unzip), then the journal is lost and rebuilt. Nothing tells the outcome's version
    from the input's, so the input is taken again: day 1's invoices are not sent again, day 2's
    is, and day 1's outcome is kept in archive/."""
    env = run_env(inbox, sandbox.url)
    write_erp_csv(inbox / "invoices.csv", [erp_row("7961"), erp_row("7962")])
    filedrop("run", environ=env)
    write_erp_csv(inbox / "invoices.csv", [erp_row("7963")])
    os.utime(inbox / "invoices.csv", (1_600_000_000, 1_600_000_000))
    delete_journal(inbox)
    filedrop("journal", "rebuild", environ=env)
    filedrop("run", environ=env)
    assert statuses(inbox / "invoices.outcome.csv") == ["SUCCEEDED"]
    (kept,) = (inbox / "archive").iterdir()
    assert statuses(kept) == ["SUCCEEDED"] * 2
    assert sorted(sandbox.received_invoice_numbers()) == ["7961", "7962", "7963"]


def test_rebuild_reads_an_outcome_with_a_repeated_row_and_takes_the_new_export(
    inbox: Path, sandbox: Sandbox
) -> None:
    """An outcome whose file repeated an invoice number within itself (that row DUPLICATE,
    without a number) is a whole outcome: no 'rows that could not be rebuilt', and the next
    export under the same name is taken and sent."""
    env = run_env(inbox, sandbox.url)
    write_erp_csv(inbox / "d.csv", [erp_row("7971"), erp_row("7972"), erp_row("7972")])
    filedrop("run", environ=env)
    write_erp_csv(inbox / "d.csv", [erp_row("7973")])
    os.utime(inbox / "d.csv", (1_600_000_000, 1_600_000_000))
    delete_journal(inbox)
    _, out, _ = filedrop("journal", "rebuild", environ=env)
    assert "could not be rebuilt" not in out
    filedrop("run", environ=env)
    assert sorted(sandbox.received_invoice_numbers()) == ["7971", "7972", "7973"]


def test_after_a_rebuild_a_corrected_invoice_that_failed_goes_again(
    inbox: Path, sandbox: Sandbox
) -> None:
    """Amili refused 7981 (its phone number); the next export under the same name corrects
    it. After a lost journal and a rebuild it is sent, as it would be with the journal whole."""
    env = run_env(inbox, sandbox.url)
    write_erp_csv(inbox / "f.csv", [erp_row("7981", Mobil="12"), erp_row("7982")])
    filedrop("run", environ=env, expect=1)
    assert statuses(inbox / "f.outcome.csv") == ["FAILED", "SUCCEEDED"]
    write_erp_csv(inbox / "f.csv", [erp_row("7981"), erp_row("7983")])
    delete_journal(inbox)
    filedrop("journal", "rebuild", environ=env)
    filedrop("run", environ=env)
    assert statuses(inbox / "f.outcome.csv") == ["SUCCEEDED", "SUCCEEDED"]
    # Refused once, then taken: 7982, which Amili has, was not sent again.
    assert sandbox.counters().invoice_numbers_repeated == ("7981",)


def test_a_sandbox_outcome_is_not_read_back_into_another_environment(
    inbox: Path, sandbox: Sandbox
) -> None:
    """A trial in the sandbox, then the journal is lost and rebuilt for staging: nothing in the
    trial went to staging's Amili, so its invoices are not recorded as sent there."""
    write_erp_csv(inbox / "t.csv", [erp_row("7991")])
    filedrop("run", environ=run_env(inbox, sandbox.url))
    delete_journal(inbox)
    staging = run_env(inbox, sandbox.url, FILEDROP_ENV="staging")
    _, out, _ = filedrop("journal", "rebuild", environ=staging)
    assert "1 outcome of sandbox runs not read back: nothing in them went to Amili." in out
    assert "0 invoice numbers recorded" in out


def test_a_sandbox_trial_does_not_hold_back_another_environment(
    inbox: Path, sandbox: Sandbox
) -> None:
    """After a sandbox trial and a lost journal, staging is rebuilt (the trial not read back)
    and its next run sends: the trial's outcome is no evidence, nothing in it went to Amili."""
    write_erp_csv(inbox / "t.csv", [erp_row("7992")])
    filedrop("run", environ=run_env(inbox, sandbox.url))
    delete_journal(inbox)
    staging = run_env(inbox, sandbox.url, FILEDROP_ENV="staging")
    filedrop("journal", "rebuild", environ=staging)
    write_erp_csv(inbox / "new.csv", [erp_row("7993")])
    # t.csv is new to staging too; this one test server already holds the trial's number.
    filedrop("run", environ=staging, expect=1)
    assert statuses(inbox / "new.outcome.csv") == ["SUCCEEDED"]


def test_two_inboxes_sharing_a_lost_journal_each_wait_for_their_own_rebuild(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    """Two inboxes keep one journal, and each has an x.csv. The journal is lost and only the
    first inbox is rebuilt: the journal then knows the name x.csv, but not the invoices the
    second inbox's outcome shows sent, so the second sends nothing until it is rebuilt too."""
    first, second, env_first, env_second = two_inboxes(tmp_path, sandbox.url)
    write_erp_csv(first / "x.csv", [erp_row("9201")])
    write_erp_csv(second / "x.csv", [erp_row("9301"), erp_row("9302")])
    filedrop("run", environ=env_first)
    filedrop("run", environ=env_second)
    delete_journal(first)
    filedrop("journal", "rebuild", environ=env_first)

    _, out, _ = filedrop("run", environ=env_second, expect=2)
    assert (
        "x.csv: skipped (not sent: its outcome shows invoices sent that the journal does not "
        "know were sent" in out
    )
    assert sorted(sandbox.received_invoice_numbers()) == ["9201", "9301", "9302"]
    filedrop("run", environ=env_first)  # the rebuilt inbox goes on as before

    filedrop("journal", "rebuild", environ=env_second)
    filedrop("run", environ=env_second)
    assert sandbox.counters().invoice_numbers_repeated == ()
    assert sorted(sandbox.received_invoice_numbers()) == ["9201", "9301", "9302"]
    assert statuses(second / "x.outcome.csv") == ["SUCCEEDED"] * 2


def test_a_journal_put_back_from_an_older_copy_sends_nothing_twice(
    inbox: Path, sandbox: Sandbox, older_copy: OlderCopy
) -> None:
    """a.csv is sent and the journal copied; a new a.csv with one more invoice is sent. The old
    copy is put back: it knows a file named a.csv, but not the invoice the outcome beside it
    shows sent, so nothing is sent until a rebuild, and then nothing twice. On SQLite and on
    PostgreSQL alike."""
    env = run_env(inbox, sandbox.url, FILEDROP_STATE=older_copy.state)
    write_erp_csv(inbox / "a.csv", [erp_row("9401")])
    filedrop("run", environ=env)
    older_copy.take()
    write_erp_csv(inbox / "a.csv", [erp_row("9401"), erp_row("9402")])
    filedrop("run", environ=env)
    assert sandbox.received_invoice_numbers() == ["9401", "9402"]
    older_copy.put_back()

    filedrop("run", environ=env, expect=2)
    assert sandbox.received_invoice_numbers() == ["9401", "9402"]
    filedrop("journal", "rebuild", environ=env)
    filedrop("run", environ=env)
    assert sandbox.counters().invoice_numbers_repeated == ()
    assert sorted(sandbox.received_invoice_numbers()) == ["9401", "9402"]


def test_a_journal_put_back_that_holds_an_invoice_failed_does_not_send_it_again(
    inbox: Path, sandbox: Sandbox, older_copy: OlderCopy
) -> None:
    """Amili refuses 9601 (its email), the journal is copied, and the corrected export sends
    it. The old copy, put back, holds 9601 as FAILED, which may go again, while the outcome
    beside a.csv shows it SUCCEEDED: nothing is sent until a rebuild records it as sent, and
    then it is not sent a third time. On SQLite and on PostgreSQL alike."""
    env = run_env(inbox, sandbox.url, FILEDROP_STATE=older_copy.state)
    write_erp_csv(inbox / "a.csv", [erp_row("9601", email="ola..nordmann@example.no")])
    filedrop("run", environ=env, expect=1)
    older_copy.take()
    write_erp_csv(inbox / "a.csv", [erp_row("9601")])
    filedrop("run", environ=env)
    assert statuses(inbox / "a.outcome.csv") == ["SUCCEEDED"]
    older_copy.put_back()

    _, out, _ = filedrop("run", environ=env, expect=2)
    assert "shows invoices sent that the journal" in out
    filedrop("journal", "rebuild", environ=env)
    filedrop("run", environ=env)
    assert sandbox.received_invoice_numbers() == ["9601", "9601"]  # refused, then accepted
    assert statuses(inbox / "a.outcome.csv") == ["SUCCEEDED"]


def test_a_journal_put_back_from_before_an_unknown_batch_went_sends_nothing_twice(
    inbox: Path, sandbox: Sandbox, older_copy: OlderCopy
) -> None:
    """Batch #1 of a.csv is UNKNOWN (its POST never answered) when the journal is copied; it
    is resolved as not sent and sent. The old copy, put back, holds both invoices UNKNOWN while
    the outcome shows them SUCCEEDED: status says the journal is older, the run sends nothing,
    and a rebuild records them sent and settles batch #1. Found by a hostile review: UNKNOWN
    blocks a number, so the outcome read as known, status noted it checked, and 'resolve 1
    --not-sent' on the old copy's word sent both again. On SQLite and on PostgreSQL alike."""
    env = run_env(inbox, sandbox.url, FILEDROP_STATE=older_copy.state)
    write_erp_csv(inbox / "a.csv", [erp_row("9701"), erp_row("9702")])
    with socket.create_server(("127.0.0.1", 0)) as silent:  # takes a POST, never answers it
        lost = {"FILEDROP_API_URL": f"http://127.0.0.1:{silent.getsockname()[1]}"}
        filedrop("run", environ=env | lost | {"FILEDROP_READ_TIMEOUT_S": "0.3"}, expect=1)
    older_copy.take()
    filedrop("resolve", "1", "--not-sent", environ=env)
    filedrop("run", environ=env)
    assert statuses(inbox / "a.outcome.csv") == ["SUCCEEDED", "SUCCEEDED"]
    older_copy.put_back()

    _, out, _ = filedrop("status", environ=env, expect=1)
    assert f"a.csv: its outcome {inbox / 'a.outcome.csv'} shows invoices sent that the" in out
    filedrop("run", environ=env, expect=2)
    filedrop("journal", "rebuild", environ=env)
    _, out, _ = filedrop("status", environ=env)
    assert "UNKNOWN" not in out and "a.csv  done  2 SUCCEEDED" in out
    _, _, err = filedrop("resolve", "1", "--not-sent", environ=env, expect=2)
    assert "Batch #1 is resolved, not UNKNOWN" in err
    filedrop("run", environ=env)
    assert sorted(sandbox.received_invoice_numbers()) == ["9701", "9702"]
    assert statuses(inbox / "a.outcome.csv") == ["SUCCEEDED", "SUCCEEDED"]


def test_an_outcome_the_journal_did_not_write_is_read_once(
    inbox: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An outcome no record wrote (a copy here; one from before version 4 of the journal, in
    an upgraded install) is read and checked once; then the journal knows it, and the look over
    the inbox that comes before every file does not read it again."""
    env = run_env(inbox, sandbox.url)
    write_erp_csv(inbox / "a.csv", [erp_row("9501")])
    filedrop("run", environ=env)
    shutil.copy2(inbox / "a.outcome.csv", inbox / "a-copy.outcome.csv")  # a new file
    reads: list[Path] = []
    real_read = rebuild._read_outcome

    def counted(path: Path, *, limits: ReadLimits) -> object:
        reads.append(path)
        return real_read(path, limits=limits)

    monkeypatch.setattr(rebuild, "_read_outcome", counted)
    target = f"sandbox:{ORG_ID}"
    with Journal(journal_file(inbox)) as journal:
        for _ in range(2):
            rebuild._sent_rows_once.cache_clear()  # the journal remembers, not this process
            assert (
                rebuild.inbox_lost_journal_evidence(
                    inbox, journal, target=target, limits=ReadLimits()
                )
                is None
            )
    assert [path.name for path in reads] == ["a-copy.outcome.csv"]


def test_an_upper_case_export_is_not_held_back_for_good_after_a_rebuild(
    inbox: Path, sandbox: Sandbox
) -> None:
    """INVOICES.CSV (as Windows ERPs write it) is sent twice, so its first outcome is archived;
    the user clears the inbox, the journal is lost and rebuilt, and a new INVOICES.CSV comes.
    The rebuild records the archived outcome's input as INVOICES.csv: the name still counts as
    known, so the new export is checked by invoice number and sent, not held back for good.
    (8202's outcome was deleted with the inbox: nothing can tell it was sent.)"""
    env = run_env(inbox, sandbox.url)
    write_erp_csv(inbox / "INVOICES.CSV", [erp_row("8201")])
    filedrop("run", environ=env)
    write_erp_csv(inbox / "INVOICES.CSV", [erp_row("8201"), erp_row("8202")])
    filedrop("run", environ=env)
    (inbox / "INVOICES.CSV").unlink()
    (inbox / "INVOICES.outcome.csv").unlink()
    delete_journal(inbox)
    filedrop("journal", "rebuild", environ=env)
    write_erp_csv(inbox / "INVOICES.CSV", [erp_row("8201"), erp_row("8203")])
    filedrop("run", environ=env)
    assert statuses(inbox / "INVOICES.outcome.csv") == ["DUPLICATE", "SUCCEEDED"]
    assert sandbox.counters().invoice_numbers_repeated == ()


def test_a_shared_journal_put_back_from_an_older_copy_counts_duplicate_rows(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    """The second inbox's only outcome shows 8302 as DUPLICATE (sent from the first inbox after
    the copy was taken). With the old copy put back, the second inbox sends nothing, not even
    8302 under a new name, until a rebuild."""
    first, second, env_first, env_second = two_inboxes(tmp_path, sandbox.url)
    write_erp_csv(first / "a.csv", [erp_row("8301")])
    write_erp_csv(second / "b.csv", [erp_row("8311")])
    filedrop("run", environ=env_first)
    filedrop("run", environ=env_second)
    backup = tmp_path / "backup.db"
    copy_journal(first, backup)
    write_erp_csv(first / "a2.csv", [erp_row("8302")])
    filedrop("run", environ=env_first)
    write_erp_csv(second / "b.csv", [erp_row("8311"), erp_row("8302")])
    filedrop("run", environ=env_second)
    put_back(backup, first)

    write_erp_csv(second / "c.csv", [erp_row("8302")])
    filedrop("run", environ=env_second, expect=2)
    assert sandbox.counters().invoice_numbers_repeated == ()
    filedrop("journal", "rebuild", environ=env_second)
    filedrop("run", environ=env_second)
    assert sandbox.counters().invoice_numbers_repeated == ()
    assert statuses(second / "c.outcome.csv") == ["DUPLICATE"]


def test_an_outcome_that_is_a_link_is_not_read(inbox: Path, sandbox: Sandbox) -> None:
    """x.outcome.csv beside an input, as a link to a file elsewhere, is not followed: it is no
    outcome of x.csv, so the file is sent and the link left as it is."""
    elsewhere = inbox.parent / "elsewhere.csv"
    elsewhere.write_text("secret;text\n1;2\n", encoding="utf-8")
    (inbox / "x.outcome.csv").symlink_to(elsewhere)
    write_erp_csv(inbox / "x.csv", [erp_row("9601")])
    filedrop("run", environ=run_env(inbox, sandbox.url), expect=None)
    assert sandbox.received_invoice_numbers() == ["9601"]
    assert elsewhere.read_text(encoding="utf-8") == "secret;text\n1;2\n"


def test_a_pipe_or_link_among_the_archived_outcomes_is_never_opened(
    inbox: Path, sandbox: Sandbox, tmp_path: Path
) -> None:
    """A pipe under an archived outcome's stamped name hung the next run for good (the look for
    a lost journal's evidence opened it and waited for a writer), and a link there was read
    wherever it led: neither is taken for an outcome."""
    env = run_env(inbox, sandbox.url, FILEDROP_STATE=str(tmp_path / "journal.db"))
    write_erp_csv(inbox / "mars.csv", [erp_row("1701")])
    filedrop("run", environ=env)
    archive = inbox / "archive"
    archive.mkdir()
    os.mkfifo(archive / "20240101-000000-mars.outcome.csv")
    (archive / "20240102-000000-mars.outcome.csv").symlink_to(inbox / "mars.outcome.csv")
    assert rebuild.outcomes_of(inbox / "mars.csv") == [inbox / "mars.outcome.csv"]

    # With the journal and the outcome beside the file gone, the run looks in archive/ for
    # what tells of a lost journal: it ends, and the pipe is still a pipe, never opened.
    (tmp_path / "journal.db").unlink()
    (inbox / "mars.outcome.csv").unlink()
    filedrop("run", environ=env, expect=None)
    assert (inbox / "mars.outcome.csv").is_file()


def test_rebuild_reads_statuses_typed_over_in_another_case_and_names_one_it_does_not_know(
    inbox: Path, sandbox: Sandbox
) -> None:
    """An outcome's status typed over as "succeeded" is still SUCCEEDED; a status that is none
    of filedrop's ("TRUE") makes the file one the rebuild could not read, naming the row. Both
    rows were left out without a word, and their invoices would have been sent again."""
    write_erp_csv(inbox / "a.csv", [erp_row("7801"), erp_row("7802")])
    write_erp_csv(inbox / "b.csv", [erp_row("7811")])
    env = run_env(inbox, sandbox.url)
    filedrop("run", environ=env)
    for name, status in (("a", "succeeded"), ("b", "TRUE")):
        outcome = inbox / f"{name}.outcome.csv"
        frame = pd.read_csv(outcome, sep=";", encoding="cp1252", dtype=str, keep_default_na=False)
        frame.loc[0, "outcome_status"] = status
        frame.to_csv(outcome, sep=";", encoding="cp1252", index=False)
    delete_journal(inbox)

    _, out, _ = filedrop("journal", "rebuild", environ=env, expect=None)
    assert "1 files and 2 invoice numbers recorded" in out.splitlines()[0]
    assert 'b.outcome.csv: row 2: outcome_status is "TRUE", none of filedrop\'s statuses' in out
    # Nothing is sent again: a.csv's numbers are known, and b.csv waits for its outcome.
    _, out, _ = filedrop("run", environ=env, expect=None)
    assert "b.csv: skipped (not sent: its outcome shows invoices sent" in out
    assert sorted(sandbox.received_invoice_numbers()) == ["7801", "7802", "7811"]


def test_a_gone_files_outcome_with_rows_never_sent_is_rebuilt_gone(
    inbox: Path, sandbox: Sandbox
) -> None:
    """The outcome of a file closed as gone lists rows NOT_SENT, and its input is not there:
    rebuilt, the file was to be "taken again" from an inbox that does not hold it, and the next
    run closed it as gone once more, writing a second copy. It is rebuilt gone; the same file
    dropped again sends only what never went."""
    source = write_erp_csv(inbox / "g.csv", [erp_row("7601"), erp_row("7602")])
    kept = source.read_bytes()
    env = run_env(inbox, sandbox.url)
    target = f"sandbox:{ORG_ID}"
    with Journal(journal_file(inbox)) as journal:  # one batch went, the other did not
        record = one_sent_one_not(
            journal, source, target=target, sha256="x", numbers=("7601", "7602")
        )
        journal.let_go(record.id)  # its run stopped: left to retry
    source.unlink()
    filedrop("run", environ=env, expect=1)  # closed as gone: one SUCCEEDED, one NOT_SENT
    gone = pd.read_csv(inbox / "g.outcome.csv", dtype=str)
    assert list(gone["outcome_status"]) == ["SUCCEEDED", "NOT_SENT"]
    delete_journal(inbox)

    _, out, _ = filedrop("journal", "rebuild", environ=env)
    assert "takes again" not in out
    _, out, _ = filedrop("run", environ=env)
    assert out == "No files were ready in the inbox.\n"
    assert not (inbox / "archive").exists()
    source.write_bytes(kept)
    filedrop("run", environ=env)
    assert sandbox.received_invoice_numbers() == ["7602"]


def test_an_archived_outcome_copied_over_in_place_changes_the_inboxs_stamps(tmp_path: Path) -> None:
    """``outcome_stamps`` tells a daemon when to look over its outcomes again. Made of the
    archive folder's own stamp, it missed another journal's outcome copied over an archived one
    in place (``cp`` keeps the name, the inode and the folder's time), and that copy's invoices
    went twice (a hostile review, helper-143). Each outcome counts, in the archive too."""
    inbox = tmp_path / "inbox"
    (inbox / "archive").mkdir(parents=True)
    kept = inbox / "archive" / "20261201-120000-x.outcome.csv"
    kept.write_text("Fakturanr;outcome_status\n1;SUCCEEDED\n", encoding="utf-8")
    (inbox / "x.csv").write_text("Fakturanr\n1\n", encoding="utf-8")
    before = rebuild.outcome_stamps(inbox)
    with kept.open("r+", encoding="utf-8") as same_file:  # the same inode, written over
        same_file.write("Fakturanr;outcome_status\n1;SUCCEEDED\n2;SUCCEEDED\n")
    os.utime(kept, ns=(1, 1))
    assert rebuild.outcome_stamps(inbox) != before
    assert [name for name, _ in before] == [str(kept)]  # inputs are no outcomes
