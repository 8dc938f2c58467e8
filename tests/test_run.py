"""`filedrop run` end to end: real files, real HTTP to the sandbox, a real SQLite journal."""

from __future__ import annotations

import datetime as dt
import gc
import io
import json
import os
import shutil
import socket
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openpyxl
import pandas as pd
import pytest
from builders import (
    ERP_HEADER,
    EXAMPLES,
    erp_row,
    filedrop,
    run_env,
    write_erp_csv,
    write_erp_workbook,
)
from conftest import (
    MAPPINGS,
    ORG_ID,
    TEST_CLIENT_ID,
    FakeTime,
    drop_connections,
    journal_file,
    refuse_reading,
    sandbox_settings,
    wait_until,
)

from filedrop import cli
from filedrop import pipeline as pipeline_module
from filedrop.journal import Journal
from filedrop.journal.engines import PostgresLocation
from filedrop.journal.store import FinishedBatch
from filedrop.mapping import load_mapping
from filedrop.mapping import prepare as prepare_module
from filedrop.mapping.prepare import Prepared, prepare
from filedrop.outcome import OUTCOME_COLUMNS, SANDBOX_COLUMN
from filedrop.pipeline import (
    Context,
    Setback,
    _chunk_outcomes,
    _outcome_decider,
    _OutcomeDraft,
    _outcomes,
    process_file,
)
from filedrop.read import read_table
from filedrop.runner import (
    RunReport,
    open_context,
    process_guarded,
    ready_files,
    run_inbox,
)
from filedrop.sandbox import Sandbox, SandboxOptions
from filedrop.states import ExitCode, FileState


def outcome_csv(path: Path, *, encoding: str = "cp1252") -> pd.DataFrame:
    return pd.read_csv(path, sep=";", encoding=encoding, dtype=str, keep_default_na=False)


def test_all_valid_rows_succeed_and_exit_0(inbox: Path, sandbox: Sandbox) -> None:
    """Every row SUCCEEDED: exit 0, outcome next to the file with case ids, originals unchanged."""
    source = write_erp_csv(inbox / "mars.csv", [erp_row("1001"), erp_row("1002", amount="980")])
    _, out, _ = filedrop("run", environ=run_env(inbox, sandbox.url))
    outcome = outcome_csv(inbox / "mars.outcome.csv")
    assert list(outcome["outcome_status"]) == ["SUCCEEDED", "SUCCEEDED"]
    assert all(outcome["outcome_case_number"].str.startswith("CASE-"))
    assert list(outcome["Beløp"]) == ["1 234,50", "980"]
    original = pd.read_csv(source, sep=";", encoding="cp1252", dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(outcome[original.columns], original)
    assert "mars.csv: 2 SUCCEEDED" in out
    assert sandbox.counters().invoices_received == 2


def test_an_upload_stopped_inside_the_last_row_sends_nothing_until_the_file_is_whole(
    inbox: Path, sandbox: Sandbox
) -> None:
    """An SFTP upload stops inside the last row's amount and resumes later: the file sat
    unchanged as long as the inbox waits, and its last row went out with an amount of 1. The
    file is an ERROR saying why, nothing of it sent; the whole file, once there, sends it all."""
    whole = write_erp_csv(inbox / "mai.csv", [erp_row("1001"), erp_row("1002", amount="1 395")])
    data = whole.read_bytes()
    whole.write_bytes(data[: data.index(b"1 395") + len(b"1 ")])
    os.utime(whole, (1_000_000_000, 1_000_000_000))
    code, _, _ = filedrop("run", environ=run_env(inbox, sandbox.url), expect=None)
    assert code == ExitCode.ATTENTION
    first = outcome_csv(inbox / "mai.outcome.csv")
    assert list(first["outcome_status"]) == ["ERROR"]
    assert first["outcome_message"][0].startswith(
        "mai.csv: line 3: the file ends inside this row, 4 of the header's 17 fields in and with "
        "no line end after it, as an upload stopped partway leaves a file, so nothing of it is sent"
    )
    assert sandbox.received_invoice_numbers() == []

    whole.write_bytes(data)  # the upload resumed and ended
    os.utime(whole, (1_000_000_000, 1_000_000_000))
    filedrop("run", environ=run_env(inbox, sandbox.url))
    again = outcome_csv(inbox / "mai.outcome.csv")
    assert list(again["outcome_status"]) == ["SUCCEEDED", "SUCCEEDED"]
    assert list(again["Beløp"]) == ["1 234,50", "1 395"]
    assert sandbox.received_invoice_numbers() == ["1001", "1002"]


def test_a_run_leaves_nothing_frozen_out_of_the_garbage_collector(
    inbox: Path, sandbox: Sandbox
) -> None:
    """Objects are kept out of the collector's scans only while a file is sent: a daemon that
    kept them frozen would never collect the cycles among a finished file's objects."""
    write_erp_csv(inbox / "mars.csv", [erp_row("1001"), erp_row("1002")])
    frozen_before = gc.get_freeze_count()
    code, _, _ = filedrop("run", environ=run_env(inbox, sandbox.url))
    assert code == ExitCode.OK
    assert gc.get_freeze_count() == frozen_before


def test_a_utf8_export_of_the_same_layout_is_read_too(inbox: Path, sandbox: Sandbox) -> None:
    """The shipped ERP mapping detects the encoding: a UTF-8 export keeps its æøå and maps."""
    write_erp_csv(inbox / "utf8.csv", [erp_row("1101", Fornavn="Åsmund")], encoding="utf-8")
    filedrop("run", environ=run_env(inbox, sandbox.url))
    outcome = pd.read_csv(inbox / "utf8.outcome.csv", sep=";", dtype=str, encoding="utf-8")
    assert list(outcome["outcome_status"]) == ["SUCCEEDED"]
    assert outcome["Fornavn"][0] == "Åsmund"


def test_partial_batch_maps_to_the_right_rows_grouped_rows_included(
    inbox: Path, sandbox: Sandbox
) -> None:
    """The example xlsx: each row, grouped lines included, gets its own invoice's result."""
    shutil.copy(EXAMPLES / "apne-poster-mars.xlsx", inbox)
    filedrop("run", environ=run_env(inbox, sandbox.url), expect=1)
    sheet = openpyxl.load_workbook(inbox / "apne-poster-mars.outcome.xlsx").worksheets[0]
    rows = list(sheet.iter_rows(values_only=True))
    at = next(i for i, row in enumerate(rows) if "Invoice no" in row)  # below the title lines
    header = rows[at]
    number, status = header.index("Invoice no"), header.index("outcome_status")
    by_invoice: dict[str, set[str]] = {}
    for row in rows[at + 1 :]:
        if row[number] is not None:
            by_invoice.setdefault(row[number], set()).add(row[status])
    assert all(len(statuses) == 1 for statuses in by_invoice.values()), by_invoice
    assert by_invoice["24-1001"] == {"SUCCEEDED"}  # three lines, one invoice
    assert by_invoice["24-1003"] == {"FAILED"}  # the sandbox refuses its email
    assert by_invoice["24-1004"] == {"INVALID"}  # 31.02.2024, never sent
    received = set(sandbox.received_invoice_numbers())
    assert "24-1003" in received and "24-1004" not in received


def test_xlsx_outcome_rows_keep_the_row_numbers_messages_name(
    inbox: Path, sandbox: Sandbox
) -> None:
    """'row N' in validate's output and in messages is row N of the outcome sheet too."""
    source = EXAMPLES / "apne-poster-mars.xlsx"
    shutil.copy(source, inbox)
    _, out, _ = filedrop("validate", str(source), environ=run_env(inbox, sandbox.url), expect=1)
    row_number = int(
        next(line for line in out.splitlines() if "31.02.2024" in line)
        .split("row ", 1)[1]
        .split(":", 1)[0]
    )
    filedrop("run", environ=run_env(inbox, sandbox.url), expect=1)
    sheet = openpyxl.load_workbook(inbox / "apne-poster-mars.outcome.xlsx").worksheets[0]
    cells = [cell.value for cell in sheet[row_number]]
    assert "31.02.2024" in cells and "INVALID" in cells


def test_second_run_sends_nothing(inbox: Path, sandbox: Sandbox) -> None:
    """The same file seen again is not processed again: no POST, same outcome."""
    write_erp_csv(inbox / "a.csv", [erp_row("2001")])
    env = run_env(inbox, sandbox.url)
    filedrop("run", environ=env)
    posts = sandbox.counters().posts
    _, out, _ = filedrop("run", environ=env)
    assert sandbox.counters().posts == posts
    assert out == "SANDBOX run: nothing was sent to Amili.\na.csv: skipped (already processed)\n"


def test_an_invoice_not_due_yet_waits_for_a_later_export_and_is_then_sent(
    inbox: Path, sandbox: Sandbox
) -> None:
    """A daily export of open items: an invoice due in ten days is SKIPPED (the run exits 0,
    nothing is wrong), and nothing of it is kept: the export in which its day has passed sends
    it, where a number the journal held would have been a DUPLICATE for good."""
    later = f"{dt.date.today() + dt.timedelta(days=10):%d.%m.%Y}"
    write_erp_csv(inbox / "dag1.csv", [erp_row("3001"), erp_row("3002", Forfallsdato=later)])
    code, out, _ = filedrop("run", environ=run_env(inbox, sandbox.url))
    outcome = outcome_csv(inbox / "dag1.outcome.csv")
    assert code == 0
    assert list(outcome["outcome_status"]) == ["SUCCEEDED", "SKIPPED"]
    assert outcome["outcome_message"][1] == (
        f'rule skip.not_due: Forfallsdato "{later}" has not passed on '
        f"{dt.date.today():%d.%m.%Y}: the invoice is not overdue yet, and is not sent"
    )
    assert "dag1.csv: 1 SKIPPED, 1 SUCCEEDED" in out
    assert sandbox.counters().invoices_received == 1
    # Ten days on, the ERP's export holds it again, overdue (here: its due date moved back).
    write_erp_csv(inbox / "dag11.csv", [erp_row("3002")])
    code, _, _ = filedrop("run", environ=run_env(inbox, sandbox.url))
    assert code == 0
    assert list(outcome_csv(inbox / "dag11.outcome.csv")["outcome_status"]) == ["SUCCEEDED"]
    assert sandbox.counters().invoices_received == 2


def test_an_invoice_sent_before_and_exported_again_not_due_is_a_duplicate(
    inbox: Path, sandbox: Sandbox
) -> None:
    """An invoice already sent from an earlier file, exported again with its due date moved
    later, was SKIPPED as not due yet: the row hid that the invoice is with Amili under a case.
    It is DUPLICATE of it, as it would be once due; a new invoice not due stays SKIPPED."""
    write_erp_csv(inbox / "a.csv", [erp_row("3301")])
    env = run_env(inbox, sandbox.url)
    filedrop("run", environ=env)
    later = f"{dt.date.today() + dt.timedelta(days=20):%d.%m.%Y}"
    rows = [erp_row("3301", Forfallsdato=later), erp_row("3302", Forfallsdato=later)]
    write_erp_csv(inbox / "b.csv", rows)
    code, out, _ = filedrop("run", environ=env)
    outcome = outcome_csv(inbox / "b.outcome.csv")
    assert code == 0
    assert list(outcome["outcome_status"]) == ["DUPLICATE", "SKIPPED"]
    assert outcome["outcome_message"][0].startswith(
        "invoice 3301 was already sent from a.csv (succeeded, case CASE-"
    )
    assert "b.csv: 1 DUPLICATE, 1 SKIPPED" in out
    assert sandbox.counters().invoices_received == 1


def test_a_file_taken_again_is_judged_due_on_the_day_it_was_first_taken(
    inbox: Path, sandbox: Sandbox
) -> None:
    """A file whose rows were NOT_SENT (Amili down) is read again by a later run, days later
    perhaps: an invoice that was not due on the day the file was first taken stays SKIPPED,
    and is not sent from that old export, whose invoice may have been paid since. Here the
    journal is told the file came ten days ago, when the invoice due five days ago was not
    due yet."""
    five_ago = f"{dt.date.today() - dt.timedelta(days=5):%d.%m.%Y}"
    write_erp_csv(inbox / "gammel.csv", [erp_row("3101"), erp_row("3102", Forfallsdato=five_ago)])
    env = run_env(inbox, sandbox.url)
    sandbox.fail_next(503, count=6, retry_after="0", route="invoices")
    filedrop("run", environ=env, expect=ExitCode.UNFINISHED)
    outcome = outcome_csv(inbox / "gammel.outcome.csv")
    assert list(outcome["outcome_status"]) == ["NOT_SENT", "NOT_SENT"]
    ten_days_ago = time.time() - 10 * 86_400
    with sqlite3.connect(journal_file(inbox)) as db:
        db.execute("UPDATE files SET created_at = ?", (ten_days_ago,))
    db.close()
    filedrop("run", environ=env)
    outcome = outcome_csv(inbox / "gammel.outcome.csv")
    assert list(outcome["outcome_status"]) == ["SUCCEEDED", "SKIPPED"]
    day = dt.date.fromtimestamp(ten_days_ago)
    assert outcome["outcome_message"][1] == (
        f'rule skip.not_due: Forfallsdato "{five_ago}" has not passed on {day:%d.%m.%Y}: the '
        "invoice is not overdue yet, and is not sent"
    )
    assert sandbox.counters().invoices_received == 1


def _held_ten_days_ago(inbox: Path, sandbox: Sandbox, env: dict[str, str], name: str) -> str:
    """``name`` in the inbox, taken ten days ago (as the journal is told): its invoice due five
    days ago was held back then, and its other row is INVALID, so nothing of it was sent.
    Returns that day as the outcome writes it."""
    five_ago = f"{dt.date.today() - dt.timedelta(days=5):%d.%m.%Y}"
    rows = [erp_row("3401", Forfallsdato="31.02.2024"), erp_row("3402", Forfallsdato=five_ago)]
    write_erp_csv(inbox / name, rows)
    sandbox.fail_next(503, count=6, retry_after="0", route="invoices")
    filedrop("run", environ=env, expect=1)  # an INVALID row: a person should look
    ten_days_ago = time.time() - 10 * 86_400
    with sqlite3.connect(journal_file(inbox)) as db:
        db.execute("UPDATE files SET created_at = ?", (ten_days_ago,))
    db.close()
    filedrop("run", environ=env, expect=1)
    return f"{dt.date.fromtimestamp(ten_days_ago):%d.%m.%Y}"


def _lose_journal(inbox: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{journal_file(inbox)}{suffix}").unlink(missing_ok=True)


def test_a_file_whose_journal_was_lost_is_judged_on_the_day_its_outcome_held_invoices_on(
    inbox: Path, sandbox: Sandbox
) -> None:
    """The journal is lost while an export whose outcome held an invoice back as not due (and
    sent nothing, so no evidence of a lost journal) stays in the inbox. Taken as new, the file
    was judged on the day of that run, and the invoice, due since, went to collection from an
    export ten days old. It is judged on the day its outcome names, as with its journal (which
    would not read those bytes again at all), and the log says so."""
    env = run_env(inbox, sandbox.url)
    day = _held_ten_days_ago(inbox, sandbox, env, "gammel.csv")
    _lose_journal(inbox)
    _, _, err = filedrop("run", environ=env, expect=1)
    outcome = outcome_csv(inbox / "gammel.outcome.csv")
    assert list(outcome["outcome_status"]) == ["INVALID", "SKIPPED"]
    assert f"has not passed on {day}:" in outcome["outcome_message"][1]
    assert (
        f"gammel.csv: judged on {day}, the day its outcome gammel.outcome.csv was written with "
        "a journal that is gone, so every invoice due on or after that day is SKIPPED" in err
    )
    assert sandbox.counters().invoices_received == 0


def test_a_new_export_under_the_name_of_one_that_held_invoices_is_judged_today(
    inbox: Path, sandbox: Sandbox
) -> None:
    """With its journal, the next export under a fixed name beside the outcome of one that held
    an invoice back ten days ago is judged today: that outcome is the journal's own, and gives
    no day to other bytes. The invoice, due since, is sent. Also when the outcome was opened
    and saved since (a new file in its place): told by the outcome's file, ede4988 took it for
    another journal's, and the export was judged on the old day (a hostile review, helper-133)."""
    env = run_env(inbox, sandbox.url)
    _held_ten_days_ago(inbox, sandbox, env, "reskontro.csv")
    outcome = inbox / "reskontro.outcome.csv"
    saved = outcome.read_bytes()
    outcome.unlink()
    outcome.write_bytes(saved)  # as a spreadsheet program saves: a new file, a new time
    five_ago = f"{dt.date.today() - dt.timedelta(days=5):%d.%m.%Y}"
    write_erp_csv(inbox / "reskontro.csv", [erp_row("3402", Forfallsdato=five_ago)])
    _, _, err = filedrop("run", environ=env)
    assert "judged on" not in err
    assert sandbox.received_invoice_numbers() == ["3402"]


def test_an_export_for_another_organisation_under_a_known_name_is_judged_today(
    inbox: Path, sandbox: Sandbox
) -> None:
    """The same inbox and journal go live for another target (staging to production here, two
    organisations): its first export under a known name took the day the other target's
    outcome beside it held invoices on, and was SKIPPED with a warning of a lost journal (a
    hostile review, helper-137). A journal that took a file of the name, at any target, reads
    no day from an outcome."""
    _held_ten_days_ago(inbox, sandbox, run_env(inbox, sandbox.url), "reskontro.csv")
    other = run_env(inbox, sandbox.url, FILEDROP_ORG_ID="3fa85f64-5717-4562-b3fc-2c963f66afa7")
    five_ago = f"{dt.date.today() - dt.timedelta(days=5):%d.%m.%Y}"
    write_erp_csv(inbox / "reskontro.csv", [erp_row("3601", Forfallsdato=five_ago)])
    _, _, err = filedrop("run", environ=other)
    assert "judged on" not in err
    assert sandbox.received_invoice_numbers() == ["3601"]


@pytest.mark.parametrize("dropped", ["a new export", "the old export again"])
def test_after_a_lost_journal_an_archived_outcome_gives_its_day_only_to_its_own_bytes(
    inbox: Path, sandbox: Sandbox, dropped: str
) -> None:
    """With the archive, every earlier export of a name lies there with its outcome. After the
    journal was lost, a new export under that name was judged on the day an old one's outcome
    held invoices on, months back perhaps, and an invoice long overdue was SKIPPED for good (a
    hostile review, helper-131). Only the archived outcome whose archived input has the file's
    very bytes gives its day: a new export is judged today, the old one on its own day."""
    env = run_env(inbox, sandbox.url, FILEDROP_ARCHIVE="true")
    day = _held_ten_days_ago(inbox, sandbox, env, "reskontro.csv")
    archived = sorted(p.name for p in (inbox / "archive").iterdir())
    assert [n.split("-", 2)[2] for n in archived] == ["reskontro.csv", "reskontro.outcome.csv"]
    _lose_journal(inbox)
    if dropped == "a new export":
        five_ago = f"{dt.date.today() - dt.timedelta(days=5):%d.%m.%Y}"
        write_erp_csv(inbox / "reskontro.csv", [erp_row("3501", Forfallsdato=five_ago)])
        _, _, err = filedrop("run", environ=env)
        assert "judged on" not in err
        assert sandbox.received_invoice_numbers() == ["3501"]
    else:
        shutil.copy(inbox / "archive" / archived[0], inbox / "reskontro.csv")
        _, _, err = filedrop("run", environ=env, expect=1)
        assert f"reskontro.csv: judged on {day}, the day its outcome archive/" in err
        assert sandbox.received_invoice_numbers() == []


def test_a_deleted_outcome_is_said_missing_and_nothing_is_sent(
    inbox: Path, sandbox: Sandbox
) -> None:
    """The user deletes an outcome: the next run says the file is processed and its outcome
    missing, and sends nothing (it does not rewrite it: today's mapping might read other rows)."""
    write_erp_csv(inbox / "d.csv", [erp_row("3101"), erp_row("3102", Forfallsdato="31.02.2024")])
    env = run_env(inbox, sandbox.url)
    filedrop("run", environ=env, expect=1)
    (inbox / "d.outcome.csv").unlink()
    _, out, err = filedrop("run", environ=env)
    assert "d.csv: skipped (already processed; its outcome d.outcome.csv is missing)" in out
    assert "its outcome d.outcome.csv is gone" in err
    assert sandbox.received_invoice_numbers() == ["3101"]


def test_a_journal_whose_disk_is_full_is_named_and_nothing_is_sent_twice(
    inbox: Path, sandbox: Sandbox, make_context: Callable[..., Context]
) -> None:
    """SQLite says "database or disk is full" (here its page count capped, a real SQLITE_FULL):
    the file's sentence names the journal and what to check, and the next run, with room
    again, sends each invoice once."""
    path = write_erp_csv(inbox / "full.csv", [erp_row(str(8100 + n)) for n in range(300)])
    ctx = make_context(batch_size=10)
    db = sqlite3.connect(journal_file(inbox))
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.close()
    ctx.journal._connection().execute(f"PRAGMA max_page_count = {pages + 2}")
    report = process_guarded(path, ctx)
    assert report.state is FileState.RETRY
    assert report.message == (
        f"the journal {journal_file(inbox)} could not be written (database or disk is full); "
        "check FILEDROP_STATE and the space on its disk; the next run resumes it, and never "
        "sends again what went (a batch Amili took that the journal could not note becomes "
        "UNKNOWN, for 'filedrop resolve'; the log names it)"
    )
    ctx.journal.close()
    filedrop("run", environ=run_env(inbox, sandbox.url), expect=None)
    received = sandbox.received_invoice_numbers()
    assert len(received) == len(set(received))


def test_a_file_still_being_written_is_named_in_the_summary(
    inbox: Path, sandbox: Sandbox, make_context: Callable[..., Context]
) -> None:
    """A partner's upload still growing through the stability window: the run sends the ready
    file, and its summary names the other as left for the next run (not only the log)."""
    write_erp_csv(inbox / "ready.csv", [erp_row("3201")])
    growing = write_erp_csv(inbox / "growing.csv", [erp_row("3202")])

    shift_s = [0.0]

    def upload_goes_on(seconds: float) -> None:  # the wait for the window: more bytes land
        shift_s[0] += seconds
        with growing.open("ab") as upload:
            upload.write(erp_row("3203").encode("cp1252") + b"\r\n")

    ctx = make_context(
        stability_s=5.0, clock=lambda: time.time() + shift_s[0], sleep=upload_goes_on
    )
    report = run_inbox(ctx)
    assert report.changing == (growing,)
    assert report.exit_code is ExitCode.UNFINISHED  # its rows have no status yet: not 0
    printed = io.StringIO()
    cli._print_report(report, cli.Io({}, printed, io.StringIO()), environment="sandbox")
    assert printed.getvalue().splitlines()[:2] == [
        "SANDBOX run: nothing was sent to Amili.",
        "growing.csv: still being written; left for the next run",
    ]
    assert sandbox.received_invoice_numbers() == ["3201"]


def test_a_copy_under_a_new_name_gives_duplicates_and_sends_nothing(
    inbox: Path, sandbox: Sandbox
) -> None:
    """Re-dropping the same invoices under another name: every row DUPLICATE, naming the file."""
    write_erp_csv(inbox / "first.csv", [erp_row("3001"), erp_row("3002")])
    env = run_env(inbox, sandbox.url)
    filedrop("run", environ=env)
    shutil.copy(inbox / "first.csv", inbox / "copy.csv")
    received = sandbox.counters().invoices_received
    filedrop("run", environ=env)
    outcome = outcome_csv(inbox / "copy.outcome.csv")
    assert list(outcome["outcome_status"]) == ["DUPLICATE", "DUPLICATE"]
    assert "already sent from first.csv" in outcome["outcome_message"][0]
    assert "CASE-" in outcome["outcome_message"][0]
    assert sandbox.counters().invoices_received == received
    assert sandbox.counters().invoice_numbers_repeated == ()


def test_the_organisation_id_in_capitals_names_the_same_organisation(
    inbox: Path, sandbox: Sandbox
) -> None:
    """FILEDROP_ORG_ID retyped in capitals between two runs: a UUID is the same id either way,
    so the same invoices in another file are DUPLICATE, not sent to "another" organisation."""
    write_erp_csv(inbox / "first.csv", [erp_row("3011"), erp_row("3012")])
    filedrop("run", environ=run_env(inbox, sandbox.url, FILEDROP_ORG_ID=ORG_ID.upper()))
    shutil.copy(inbox / "first.csv", inbox / "copy.csv")
    filedrop("run", environ=run_env(inbox, sandbox.url, FILEDROP_ORG_ID=ORG_ID.lower()))
    outcome = outcome_csv(inbox / "copy.outcome.csv")
    assert list(outcome["outcome_status"]) == ["DUPLICATE", "DUPLICATE"]
    assert sandbox.counters().invoices_received == 2


def test_an_invoice_number_formatted_with_zeros_goes_out_as_excel_shows_it(
    inbox: Path, sandbox: Sandbox
) -> None:
    """Fakturanr typed as the number 3351 in a column formatted 0000000 reads 0003351 in Excel,
    on the invoice and in the CSV Excel saves of the sheet: that is the number sent, so the CSV
    dropped later is DUPLICATE. Sent as 3351, the same invoice went out twice, as two numbers."""
    book = write_erp_workbook(
        inbox / "mars.xlsx",
        [erp_row("x"), erp_row("55")],  # A3 holds the text 55: shown as typed, never padded
        typed={"A2": 3351},
        formats={"A": "0000000"},
    )
    os.utime(book, (1_000_000_000, 1_000_000_000))
    env = run_env(inbox, sandbox.url)
    filedrop("run", environ=env)
    assert sandbox.received_invoice_numbers() == ["0003351", "55"]
    write_erp_csv(inbox / "mars-kopi.csv", [erp_row("0003351")])
    filedrop("run", environ=env)
    outcome = outcome_csv(inbox / "mars-kopi.outcome.csv")
    assert list(outcome["outcome_status"]) == ["DUPLICATE"]
    assert "already sent from mars.xlsx" in outcome["outcome_message"][0]
    assert sandbox.received_invoice_numbers() == ["0003351", "55"]
    cell = openpyxl.load_workbook(inbox / "mars.outcome.xlsx").active["A2"]
    assert (cell.value, cell.number_format) == (3351, "0000000")  # the original, as it was


def test_a_number_shown_by_its_own_cell_format_is_shown_so_in_the_outcome(
    inbox: Path, sandbox: Sandbox
) -> None:
    """Fakturanr formatted 0000000 but for one General cell (3306 on screen, sent as 3306), and
    Kundenr General but for one cell formatted 000000 below the rows that decide the column's
    format (001234 on screen): the outcome's cells take their column's format, so they showed
    0003306 and 1234, numbers the user never saw and filedrop never sent. They are written as
    the text shown; the others stay numbers in their column's format."""
    rows = [erp_row("x") for _ in range(25)]
    book = write_erp_workbook(
        inbox / "egne.xlsx",
        rows,
        typed={
            **{f"A{r}": 3300 + r for r in range(2, 27)},
            **{f"G{r}": 1000 + r for r in range(2, 27)},
        },
        formats={"A": "0000000"},
    )
    sheet_book = openpyxl.load_workbook(book)
    sheet_book.active["A6"].number_format = "General"
    sheet_book.active["G25"].number_format = "000000"
    sheet_book.active["G25"] = 1234
    sheet_book.save(book)
    os.utime(book, (1_000_000_000, 1_000_000_000))
    filedrop("run", environ=run_env(inbox, sandbox.url))
    assert sandbox.received_invoice_numbers()[3:6] == ["0003305", "3306", "0003307"]
    outcome = openpyxl.load_workbook(inbox / "egne.outcome.xlsx").active
    assert [outcome[f"A{r}"].value for r in (5, 6, 7)] == [3305, "3306", 3307]
    assert outcome["A5"].number_format == "0000000"
    assert [outcome[f"G{r}"].value for r in (24, 25, 26)] == [1024, "001234", 1026]
    statuses = [outcome[f"R{r}"].value for r in range(2, 27)]
    assert statuses == ["SUCCEEDED"] * 25


def test_the_summary_sums_amounts_typed_as_text_too(inbox: Path, sandbox: Sandbox) -> None:
    """A workbook whose amounts are partly text ('1 234,50, as Tripletex exports some): the
    Summary, there to check against the export's totals, summed only the cells that are
    numbers (100 where 1 334,50 was sent). It sums every amount as the mapping reads it."""
    book = write_erp_workbook(
        inbox / "apne.xlsx", [erp_row("5001"), erp_row("5002")], typed={"D3": 100.0}
    )
    os.utime(book, (1_000_000_000, 1_000_000_000))
    filedrop("run", environ=run_env(inbox, sandbox.url))
    summary = openpyxl.load_workbook(inbox / "apne.outcome.xlsx")["Summary"]
    sums = {row[0]: row[2] for row in summary.iter_rows(values_only=True) if row and len(row) > 2}
    assert sums["SUCCEEDED"] == 1334.5


def test_a_number_with_invisible_characters_is_the_number_already_sent(
    inbox: Path, sandbox: Sandbox
) -> None:
    """A later export whose invoice numbers hold characters nobody can see (a zero-width space,
    a word joiner, a direction mark pasted from a web page) names the invoices already sent:
    compared as typed, they went out a second time under numbers that look the same."""
    write_erp_csv(inbox / "first.csv", [erp_row("3101"), erp_row("3102"), erp_row("3103")])
    env = run_env(inbox, sandbox.url)
    filedrop("run", environ=env)
    numbers = ("31\u200b01", "\u20603102", "3103\u200e")
    write_erp_csv(
        inbox / "again.csv",
        [erp_row(number, Fornavn="\u202e\u00c5se\u200b") for number in numbers],
        encoding="utf-8",
    )
    filedrop("run", environ=env)
    outcome = outcome_csv(inbox / "again.outcome.csv", encoding="utf-8")
    assert list(outcome["outcome_status"]) == ["DUPLICATE"] * 3
    assert sandbox.received_invoice_numbers() == ["3101", "3102", "3103"]
    # What is sent holds none of them either, in a name as in a number.
    _, out, _ = filedrop(
        "validate", str(inbox / "again.csv"), "--mapping", env["FILEDROP_MAPPING"], "--json",
        environ={},
    )  # fmt: skip
    sent = json.loads(out)
    assert [invoice["invoiceNumber"] for invoice in sent] == ["3101", "3102", "3103"]
    assert {invoice["debtors"][0]["firstname"] for invoice in sent} == {"\u00c5se"}


def test_a_control_character_in_a_value_makes_its_row_invalid(
    inbox: Path, sandbox: Sandbox
) -> None:
    """A control character (binary junk, or cp1252 read as Latin-1) is never sent on to a
    letter: the row is INVALID, naming the column, the value and the character."""
    write_erp_csv(
        inbox / "c.csv",
        [erp_row("3201", Fornavn="Bj\x07rn"), erp_row("3202", Adresse="Gate\x85 1")],
        encoding="utf-8",
    )
    filedrop("run", environ=run_env(inbox, sandbox.url), expect=1)
    outcome = outcome_csv(inbox / "c.outcome.csv", encoding="utf-8")
    assert list(outcome["outcome_status"]) == ["INVALID", "INVALID"]
    assert list(outcome["outcome_message"]) == [
        'Fornavn "Bj\x07rn" holds a control character (U+0007), which no letter can show; '
        "remove it in the export",
        'Adresse "Gate\x85 1" holds a control character (U+0085), which no letter can show; '
        "remove it in the export",
    ]
    assert sandbox.received_invoice_numbers() == []


def test_a_repeated_number_in_one_file_is_sent_once(inbox: Path, sandbox: Sandbox) -> None:
    """The later row with the same invoice number is DUPLICATE, naming the first row."""
    write_erp_csv(inbox / "d.csv", [erp_row("4001"), erp_row("4001")])
    filedrop("run", environ=run_env(inbox, sandbox.url))
    outcome = outcome_csv(inbox / "d.outcome.csv")
    assert list(outcome["outcome_status"]) == ["SUCCEEDED", "DUPLICATE"]
    assert "row 2" in outcome["outcome_message"][1]
    assert sandbox.received_invoice_numbers() == ["4001"]


def test_an_ambiguous_post_gives_unknown_rows_and_is_never_resent(
    inbox: Path, sandbox: Sandbox
) -> None:
    """A POST answered by a dropped connection: UNKNOWN, exit 1, and no resend until resolved."""
    write_erp_csv(inbox / "u.csv", [erp_row("5001"), erp_row("5002")])
    env = run_env(inbox, sandbox.url)
    sandbox.lose_next_response()
    filedrop("run", environ=env, expect=1)
    outcome = outcome_csv(inbox / "u.outcome.csv")
    assert list(outcome["outcome_status"]) == ["UNKNOWN", "UNKNOWN"]
    assert "filedrop resolve" in outcome["outcome_message"][0]
    assert sandbox.counters().posts == 1

    _, out, _ = filedrop("status", environ=env)
    assert "UNKNOWN" in out and "filedrop resolve" in out
    (inbox / "u.csv").touch()
    filedrop("run", environ=env)
    assert sandbox.counters().posts == 1, "an UNKNOWN batch must never be resent by itself"

    _, out, _ = filedrop("resolve", "1", "--sent", environ=env)
    assert "2 invoices will never be sent again" in out
    filedrop("run", environ=env)
    assert sandbox.counters().posts == 1


def test_a_file_saved_over_while_it_is_sent_says_so_and_the_run_exits_3(inbox: Path) -> None:
    """A corrected re-export saved under the same name while the first version's batch is under
    way: the outcome is the sent version's, and the run says so and exits 3 (the new version is
    the next run's), which then sends only its new invoice. Before, the run exited 0 without a
    word, and the outcome beside the new file left out its new invoice (from a hostile
    review)."""
    write_erp_csv(inbox / "f.csv", [erp_row("7001"), erp_row("7002")])
    new_version = write_erp_csv(inbox.parent / "f.csv.new", [erp_row("7003"), erp_row("7001")])
    with Sandbox(SandboxOptions(delay_s=(1.0, 1.0), seed=1)) as sandbox:
        env = run_env(inbox, sandbox.url)

        def save_over() -> None:
            wait_until(lambda: sandbox.counters().posts, what="the first version's POST")
            os.replace(new_version, inbox / "f.csv")

        saver = threading.Thread(target=save_over)
        saver.start()
        _, out, _ = filedrop("run", environ=env, expect=ExitCode.UNFINISHED)
        saver.join()
        assert out.splitlines()[1:3] == [
            "f.csv: 2 SUCCEEDED",
            "  it changed while it was sent: its outcome shows the version that was sent, and the "
            "next run takes the new one",
        ]
        assert sorted(sandbox.received_invoice_numbers()) == ["7001", "7002"]

        filedrop("run", environ=env, expect=ExitCode.OK)
        assert sorted(sandbox.received_invoice_numbers()) == ["7001", "7002", "7003"]
    assert list(outcome_csv(inbox / "f.outcome.csv")["outcome_status"]) == [
        "SUCCEEDED",
        "DUPLICATE",
    ]


@pytest.mark.parametrize("what", ["deleted", "moved away", "made a link", "touched"])
def test_a_file_gone_or_touched_while_it_is_sent_is_not_called_changed(
    inbox: Path, what: str
) -> None:
    """Only a new version standing at the file's name is 'changed while it was sent': a file
    deleted, moved away or replaced by a link leaves no new version for the next run, and a
    touched one holds the same bytes. Each said it changed, and the run exited 3 (from a
    review of 33901ce)."""
    source = write_erp_csv(inbox / "f.csv", [erp_row("7101")])
    elsewhere = inbox.parent / "f-kept.csv"
    with Sandbox(SandboxOptions(delay_s=(1.0, 1.0), seed=1)) as sandbox:

        def meddle() -> None:
            wait_until(lambda: sandbox.counters().posts, what="the POST")
            if what == "deleted":
                source.unlink()
            elif what == "moved away":
                source.rename(elsewhere)
            elif what == "made a link":
                source.rename(elsewhere)
                source.symlink_to(elsewhere)
            else:
                os.utime(source)

        meddler = threading.Thread(target=meddle)
        meddler.start()
        _, out, _ = filedrop("run", environ=run_env(inbox, sandbox.url), expect=ExitCode.OK)
        meddler.join()
    assert "changed while it was sent" not in out
    assert out.splitlines()[1] == "f.csv: 1 SUCCEEDED"


def test_the_same_invoice_in_a_csv_and_a_workbook_of_one_run_ends_settled(inbox: Path) -> None:
    """faktura.csv and faktura.xlsx hold the same invoice and are taken at once: one sends it,
    the other waits for that batch. The run takes the waiting file once more after both, so it
    says the invoice went from the other (DUPLICATE) and the run exits 0. Before, it said the
    batch had not ended (PENDING), and the run exited 3 for an invoice that had its case (from a
    hostile review)."""
    write_erp_csv(inbox / "faktura.csv", [erp_row("240301")])
    write_erp_workbook(inbox / "faktura.xlsx", [erp_row("240301")])
    # Each batch stays QUEUED for a second: the other file decides while it is under way.
    with Sandbox(SandboxOptions(delay_s=(1.0, 1.0), seed=1)) as sandbox:
        _, out, _ = filedrop("run", environ=run_env(inbox, sandbox.url), expect=ExitCode.OK)
        assert sandbox.received_invoice_numbers() == ["240301"]
    workbook = openpyxl.load_workbook(inbox / "faktura.outcome.xlsx", read_only=True)
    (xlsx_status,) = [
        row[0]
        for row in workbook.worksheets[0].iter_rows(
            min_row=2, min_col=len(ERP_HEADER.split(";")) + 1, values_only=True
        )
    ]
    statuses = sorted([xlsx_status, *outcome_csv(inbox / "faktura.outcome.csv")["outcome_status"]])
    assert statuses == ["DUPLICATE", "SUCCEEDED"]
    assert "wait for another file's batch" not in out


def test_a_zero_twin_held_back_in_one_run_is_settled_in_that_run(inbox: Path) -> None:
    """a.csv sends 000777 while b.csv holds it as 777 (its zeros dropped): b.csv's row waits for
    a.csv's batch, which ends within the run, so the run takes b.csv again and it says the
    invoice went from a.csv (from a review: the twin's wait was not counted, and b.csv said the
    batch had not ended, exit 3)."""
    write_erp_csv(inbox / "a.csv", [erp_row("000777")])
    write_erp_csv(inbox / "b.csv", [erp_row("777")])
    with Sandbox(SandboxOptions(delay_s=(1.0, 1.0), seed=1)) as sandbox:
        filedrop("run", environ=run_env(inbox, sandbox.url), expect=ExitCode.OK)
        assert len(sandbox.received_invoice_numbers()) == 1
    statuses = [
        *outcome_csv(inbox / "a.outcome.csv")["outcome_status"],
        *outcome_csv(inbox / "b.outcome.csv")["outcome_status"],
    ]
    assert sorted(statuses) == ["DUPLICATE", "SUCCEEDED"]


def test_a_waiting_file_saved_over_while_it_is_sent_is_left_for_the_next_run(inbox: Path) -> None:
    """b.xlsx waits for a.csv's batch and is saved over while its own batch is under way: it is
    the next run's, as the run says, not taken again at once by the run that said so (from a
    review: the second pass sent the new version, then called the first one moved away)."""
    write_erp_csv(inbox / "a.csv", [erp_row("6701"), erp_row("6702")])
    write_erp_workbook(inbox / "b.xlsx", [erp_row("6701"), erp_row("6703")])
    new_version = write_erp_workbook(inbox.parent / "b.xlsx", [erp_row("6701"), erp_row("6704")])
    # a.csv's batch ends last: b.xlsx is written while it waits for it.
    options = SandboxOptions(delay_s=(2.0, 2.0), seed=1)
    with Sandbox(options) as sandbox:

        def save_over() -> None:
            wait_until(lambda: sandbox.counters().posts, what="a.csv's POST")
            options.delay_s = (0.3, 0.3)
            wait_until(lambda: sandbox.counters().posts >= 2, what="b.xlsx's POST")
            os.replace(new_version, inbox / "b.xlsx")

        saver = threading.Thread(target=save_over)
        saver.start()
        _, out, err = filedrop("run", environ=run_env(inbox, sandbox.url), expect=3)
        saver.join()
        assert sorted(sandbox.received_invoice_numbers()) == ["6701", "6702", "6703"]
    assert sum(line.endswith("b.xlsx: claimed") for line in err.splitlines()) == 1
    assert "it changed while it was sent" in out


def test_another_files_setback_does_not_keep_a_waiting_file_unsettled(inbox: Path) -> None:
    """One file refused for the setup (its batch too large) keeps the run's exit 2, but a file
    that only waited for another's batch, which ended SUCCESS, is still taken again: it sends
    nothing, it reads what became of its invoice (from a review)."""
    write_erp_csv(inbox / "a.csv", [erp_row("240301")])
    write_erp_workbook(inbox / "b.xlsx", [erp_row("240301")])
    write_erp_csv(inbox / "d.csv", [erp_row(str(n)) for n in range(6601, 6604)])
    options = SandboxOptions(delay_s=(1.0, 1.0), seed=1, max_invoices_per_batch=2)
    env = {"FILEDROP_CONCURRENT_FILES": "3"}
    with Sandbox(options) as sandbox:
        _, out, _ = filedrop(
            "run", environ=run_env(inbox, sandbox.url, **env), expect=ExitCode.SETUP
        )
        assert sandbox.received_invoice_numbers() == ["240301"]
    # Whichever of the two claimed the invoice first sent it; the other waited for it.
    lines = set(out.splitlines())
    assert {"a.csv: 1 SUCCEEDED", "b.xlsx: 1 DUPLICATE"} <= lines or {
        "a.csv: 1 DUPLICATE",
        "b.xlsx: 1 SUCCEEDED",
    } <= lines
    assert "wait for another file's batch" not in out


def test_a_file_waiting_on_a_batch_that_cannot_end_in_the_run_is_not_taken_twice(
    inbox: Path, sandbox: Sandbox
) -> None:
    """A run takes a waiting file again only for batches that ended within it: not for an
    UNKNOWN batch an earlier run left (nothing in this run settles it), nor while Amili is
    down (what the file would send would fail the same way). Each of those read and wrote the
    waiting file twice, and the outage retried it whole a second time (from a review)."""
    env = run_env(inbox, sandbox.url, FILEDROP_CONCURRENT_FILES="1")
    write_erp_csv(inbox / "a.csv", [erp_row("6401")])
    sandbox.lose_next_response()
    filedrop("run", environ=env, expect=ExitCode.ATTENTION)  # a.csv's batch: UNKNOWN
    write_erp_csv(inbox / "b.csv", [erp_row("6401"), erp_row("6402")])
    write_erp_csv(inbox / "c.csv", [erp_row("6403")])
    _, _, err = filedrop("run", environ=env, expect=ExitCode.ATTENTION)
    assert [line.split()[2] for line in err.splitlines() if line.endswith(": claimed")] == [
        "b.csv:",
        "c.csv:",
    ]

    write_erp_csv(inbox / "d.csv", [erp_row("6501")])
    write_erp_csv(inbox / "e.csv", [erp_row("6501")])
    sandbox.fail_next(503, count=60, retry_after="0", route="invoices")
    _, _, err = filedrop("run", environ=env, expect=ExitCode.ATTENTION)  # b.csv's UNKNOWN row
    claimed = [line.split()[2] for line in err.splitlines() if line.endswith(": claimed")]
    assert sorted(claimed) == ["b.csv:", "d.csv:", "e.csv:"]
    # a.csv, b.csv and c.csv; then d.csv's batch and e.csv's own (d's was not sent), 6 tries each
    assert sandbox.counters().posts == 1 + 2 + 6 + 6


@pytest.mark.parametrize("sent", [False, True], ids=["not-sent", "sent"])
def test_a_file_re_exported_while_its_batch_is_unknown_waits_for_the_resolve(
    inbox: Path, sandbox: Sandbox, sent: bool
) -> None:
    """a.csv's batch is lost in its POST (UNKNOWN), then the ERP exports a.csv again with one
    more row. The new version's rows of the lost batch wait for the resolve (UNKNOWN, exit 1)
    rather than call themselves DUPLICATEs of what may never have arrived; once resolved, the
    next run calls them DUPLICATEs (--sent) or sends them from the new version (--not-sent),
    the old one being gone. Found by a crash fuzz: they stayed NOT_SENT for good while the
    outcome said DUPLICATE, and every run exited 0."""
    env = run_env(inbox, sandbox.url, FILEDROP_CONCURRENT_BATCHES="1")
    write_erp_csv(inbox / "a.csv", [erp_row("6301"), erp_row("6302")])
    with socket.create_server(("127.0.0.1", 0)) as silent:  # takes a POST, never answers it
        lost = {"FILEDROP_API_URL": f"http://127.0.0.1:{silent.getsockname()[1]}"}
        filedrop("run", environ=env | lost | {"FILEDROP_READ_TIMEOUT_S": "0.3"}, expect=1)
    assert list(outcome_csv(inbox / "a.outcome.csv")["outcome_status"]) == ["UNKNOWN"] * 2

    write_erp_csv(inbox / "a.csv", [erp_row("6301"), erp_row("6302"), erp_row("6303")])
    filedrop("run", environ=env, expect=1)
    outcome = outcome_csv(inbox / "a.outcome.csv")
    assert list(outcome["outcome_status"]) == ["UNKNOWN", "UNKNOWN", "SUCCEEDED"]
    assert outcome["outcome_message"][0] == (
        "invoice 6301 was being sent from a.csv (batch #1), and whether Amili has it is not "
        "known: check with Amili, then 'filedrop resolve 1 --sent' or "
        "'--not-sent'; the next run then tells, or sends it from this file"
    )
    _, out, _ = filedrop("run", environ=env, expect=1)  # taken again, and still waiting
    assert (
        "  some rows wait for another file's batch, which their messages name; every run takes "
        "this file again until that batch is settled" in out.splitlines()
    )
    assert sandbox.received_invoice_numbers() == ["6303"]

    filedrop("resolve", "1", "--sent" if sent else "--not-sent", environ=env)
    filedrop("run", environ=env)
    outcome = outcome_csv(inbox / "a.outcome.csv")
    if sent:
        assert list(outcome["outcome_status"]) == ["DUPLICATE", "DUPLICATE", "SUCCEEDED"]
        assert sandbox.received_invoice_numbers() == ["6303"]
    else:
        assert list(outcome["outcome_status"]) == ["SUCCEEDED"] * 3
        assert sandbox.received_invoice_numbers() == ["6303", "6301", "6302"]
    _, out, _ = filedrop("run", environ=env)
    assert "a.csv: skipped (already processed)" in out
    assert sandbox.counters().invoice_numbers_repeated == ()


def test_a_number_another_file_holds_in_no_batch_is_a_duplicate_for_good(
    inbox: Path, sandbox: Sandbox
) -> None:
    """A journal rebuilt from a DUPLICATE row holds its number UNKNOWN in no batch: nothing will
    ever settle it, so a row of another file holding it is a DUPLICATE and that file is done,
    not taken again by every run naming a batch #0 to resolve."""
    env = run_env(inbox, sandbox.url)
    write_erp_csv(inbox / "a.csv", [erp_row("6401")])
    filedrop("run", environ=env)
    with sqlite3.connect(journal_file(inbox)) as db:
        db.execute(
            "UPDATE invoices SET status = 'UNKNOWN', batch = NULL, invoice_id = NULL,"
            " case_id = NULL, case_number = NULL"
        )
    write_erp_csv(inbox / "b.csv", [erp_row("6401"), erp_row("6402")])
    filedrop("run", environ=env)
    outcome = outcome_csv(inbox / "b.outcome.csv")
    assert list(outcome["outcome_status"]) == ["DUPLICATE", "SUCCEEDED"]
    assert outcome["outcome_message"][0] == (
        "invoice 6401 was already sent from a.csv (unknown); not sent again"
    )
    _, out, _ = filedrop("run", environ=env)
    assert "b.csv: skipped (already processed)" in out


def test_an_amount_json_cannot_hold_is_invalid_and_the_rest_is_sent(
    inbox: Path, sandbox: Sandbox
) -> None:
    """An amount of 400 digits is an infinite float, which JSON cannot hold: the row is INVALID
    and says so, the other row is sent as usual, and the file is done (nothing is left to fail
    on every run)."""
    write_erp_csv(inbox / "h.csv", [erp_row("5051", amount="9" * 400), erp_row("5052")])
    env = run_env(inbox, sandbox.url, FILEDROP_BATCH_SIZE="1")
    filedrop("run", environ=env, expect=None)
    outcome = outcome_csv(inbox / "h.outcome.csv")
    assert list(outcome["outcome_status"]) == ["INVALID", "SUCCEEDED"]
    assert "is too large to be an amount" in outcome["outcome_message"][0]
    assert sandbox.received_invoice_numbers() == ["5052"]
    filedrop("run", environ=env, expect=None)
    assert sandbox.received_invoice_numbers() == ["5052"]


def test_resolving_not_sent_lets_the_next_run_send(inbox: Path, sandbox: Sandbox) -> None:
    """After checking with Amili, --not-sent releases the invoices to the next run."""
    write_erp_csv(inbox / "r.csv", [erp_row("5101")])
    env = run_env(inbox, sandbox.url)
    sandbox.fail_next(502)
    filedrop("run", environ=env, expect=1)
    filedrop("resolve", "1", "--not-sent", environ=env)
    filedrop("run", environ=env)
    assert list(outcome_csv(inbox / "r.outcome.csv")["outcome_status"]) == ["SUCCEEDED"]


def test_a_batch_outliving_the_poll_timeout_is_pending_then_completed(
    inbox: Path, tmp_path: Path
) -> None:
    """Still QUEUED at the timeout: rows PENDING with the batch id, exit 3; next run completes."""
    shift_s = [0.0]  # the sandbox's clock, moved on so that the batch ends between the runs
    options = SandboxOptions(delay_s=(60, 60))
    with Sandbox(options, clock=lambda: time.time() + shift_s[0]) as slow:
        write_erp_csv(inbox / "p.csv", [erp_row("6001")])
        env = run_env(inbox, slow.url, FILEDROP_POLL_TIMEOUT_S="0.3")
        filedrop("run", environ=env, expect=3)
        outcome = outcome_csv(inbox / "p.outcome.csv")
        assert list(outcome["outcome_status"]) == ["PENDING"]
        assert outcome["outcome_batch_id"][0]
        shift_s[0] = 120.0
        slow.options.delay_s = (0, 0)  # batches sent from now on end at once
        filedrop("run", environ=run_env(inbox, slow.url))
        assert list(outcome_csv(inbox / "p.outcome.csv")["outcome_status"]) == ["SUCCEEDED"]
        assert slow.counters().posts == 1


def test_a_file_deleted_while_its_outcome_shows_rows_pending_gets_how_they_ended(
    inbox: Path,
) -> None:
    """Rows PENDING at the poll timeout, then the input is moved away and the batch ends: the
    earlier outcome said the file would be rewritten, which no run can do without it, so the
    journal's outcome, with the case numbers, is written beside it in archive/, and said."""
    shift_s = [0.0]  # the sandbox's clock, moved on so that the batch ends between the runs
    with Sandbox(SandboxOptions(delay_s=(60, 60)), clock=lambda: time.time() + shift_s[0]) as slow:
        write_erp_csv(inbox / "p.csv", [erp_row("6011"), erp_row("6012", amount="x")])
        filedrop("run", environ=run_env(inbox, slow.url, FILEDROP_POLL_TIMEOUT_S="0.3"), expect=1)
        earlier = (inbox / "p.outcome.csv").read_bytes()
        (inbox / "p.csv").unlink()
        shift_s[0] = 120.0
        _, out, _ = filedrop("run", environ=run_env(inbox, slow.url))
        (archived,) = (inbox / "archive").glob("*-p.outcome.csv")
        assert (
            "p.csv: 1 SUCCEEDED\n  gone: 1 SUCCEEDED sent from it, listed in "
            f"{archived.relative_to(inbox)}; rows not listed there were never sent"
        ) in out
        ended = pd.read_csv(archived, encoding="utf-8-sig", dtype=str, keep_default_na=False)
        assert list(ended["outcome_status"]) == ["SUCCEEDED"]
        assert ended["outcome_case_number"][0].startswith("CASE-")
        assert (inbox / "p.outcome.csv").read_bytes() == earlier  # every row, as it was
        _, status, _ = filedrop("status", environ=run_env(inbox, slow.url))
        assert "p.csv  gone  1 SUCCEEDED" in status
        assert slow.counters().posts == 1


def test_a_file_finished_from_another_inbox_is_skipped_naming_where_and_its_mark_goes(
    inbox: Path, sandbox: Sandbox, tmp_path: Path
) -> None:
    """The same file begun in one inbox and finished from another sharing the journal: the
    first inbox's run says where it was processed and where its outcome is, rather than a bare
    "already processed" beside no outcome; the mark begun there goes, as that outcome shows
    what went (it held the inbox back once the journal was lost)."""
    from filedrop.inbox import content_hash
    from filedrop.inflight import Sending, sending_marks

    other = tmp_path / "other"
    other.mkdir()
    rows = [erp_row("6021"), erp_row("6022")]
    write_erp_csv(inbox / "f.csv", rows)
    write_erp_csv(other / "f.csv", rows)
    filedrop("run", environ=run_env(other, sandbox.url))
    sha, target = content_hash(inbox / "f.csv"), f"sandbox:{ORG_ID}"
    with Journal(journal_file(inbox)) as journal:
        begun = Sending(inbox / "f.csv", sha, journal=journal.identity(), target=target, now=0)
        begun.before_post(1)  # the batch the journal holds, as if posted from here first
    assert sending_marks(inbox)

    _, out, _ = filedrop("run", environ=run_env(inbox, sandbox.url))
    assert (
        f"f.csv: skipped (already processed as {other / 'f.csv'}; its outcome is "
        f"{other / 'f.outcome.csv'})"
    ) in out
    assert sending_marks(inbox) == []
    assert sandbox.counters().invoices_received == 2


def test_a_lost_journal_names_the_sending_mark_beside_the_outcomes(
    inbox: Path, sandbox: Sandbox
) -> None:
    """The journal is lost while one file was done and another was being sent: status and the
    run asked for a rebuild only, after which the mark, which a rebuild does not read, still
    held the inbox back under another reason. Both are named from the start."""
    from filedrop.inflight import Sending

    write_erp_csv(inbox / "d.csv", [erp_row("6031")])
    filedrop("run", environ=run_env(inbox, sandbox.url))
    write_erp_csv(inbox / "f.csv", [erp_row("6032")])
    sending = Sending(
        inbox / "f.csv", "ab" * 32, journal="lost", target=f"sandbox:{ORG_ID}", now=time.time()
    )
    sending.before_post(7)
    for lost in journal_file(inbox).parent.glob("journal.db*"):
        lost.unlink()

    _, status, _ = filedrop("status", environ=run_env(inbox, sandbox.url), expect=1)
    assert (
        f"; a file was being sent too (filedrop's mark of it is {sending.path}), which a "
        "rebuild does not read: see what 'filedrop run' says of that mark."
    ) in status
    _, out, err = filedrop("run", environ=run_env(inbox, sandbox.url), expect=2)
    assert "run 'filedrop journal rebuild'; a sending mark holds it back too (see the log)" in out
    assert ". And besides: f.csv: the journal " in err
    assert sandbox.received_invoice_numbers() == ["6031"]


def test_a_file_whose_inbox_is_taken_away_mid_send_is_let_go_and_closed_as_gone(
    inbox: Path, sandbox: Sandbox
) -> None:
    """The inbox is removed and made again while a file's first batch awaits its answer: the
    next batch's mark cannot be written, and the file stops. It stayed claimed by its own
    process: a daemon, which retries only files it finds, held it for as long as it ran, its
    sent batch never polled. It is let go, so the same run polls that batch and writes the
    outcome the file never got into the new folder."""
    write_erp_csv(inbox / "f.csv", [erp_row(str(6041 + n)) for n in range(4)])
    sandbox.stall_next(1.0, route="invoices")
    env = run_env(inbox, sandbox.url, FILEDROP_BATCH_SIZE="2", FILEDROP_CONCURRENT_BATCHES="1")

    def take_inbox_away() -> None:
        wait_until(lambda: sandbox.counters().posts >= 1, what="the first POST")
        shutil.rmtree(inbox)
        inbox.mkdir()

    remover = threading.Thread(target=take_inbox_away)
    remover.start()
    _, out, err = filedrop("run", environ=env, expect=1)
    remover.join()
    assert "f.csv: filedrop's sending mark was taken away while the file was being sent" in err
    outcome = pd.read_csv(inbox / "f.outcome.csv", encoding="utf-8-sig", dtype=str)
    assert list(outcome["outcome_status"]) == ["SUCCEEDED"] * 2 + ["NOT_SENT"] * 2
    assert "gone: 2 SUCCEEDED sent from it" in out
    with Journal(journal_file(inbox)) as journal:
        assert [(r.state, r.owner) for r in journal.recent_files()] == [(FileState.GONE, None)]
    assert sandbox.received_invoice_numbers() == ["6041", "6042"]


def test_a_batch_whose_polls_fail_is_pending_with_why_not_still_queued(
    inbox: Path, sandbox: Sandbox
) -> None:
    """Amili takes the batch, then answers its poll 404: the rows are PENDING, and the outcome
    and the log say the poll failed and how, not that Amili said QUEUED; once a poll answers,
    the next run completes the file."""
    sandbox.fail_next(404, count=2, route="batches")  # this run's polls; the next run's answers
    write_erp_csv(inbox / "q.csv", [erp_row("6101")])
    env = run_env(inbox, sandbox.url, FILEDROP_POLL_TIMEOUT_S="1.5")
    _, _, err = filedrop("run", environ=env, expect=3)
    outcome = outcome_csv(inbox / "q.outcome.csv")
    batch_id = outcome["outcome_batch_id"][0]
    failure = (
        f"Amili answered GET /collection/v1/batches/{batch_id} with HTTP 404 (Amili does not "
        "know this batch id)"
    )
    assert list(outcome["outcome_status"]) == ["PENDING"]
    assert outcome["outcome_message"][0] == (
        f"whether its batch ended is not known: its last poll failed ({failure}); it is polled "
        "again and this file rewritten"
    )
    assert f"q.csv: batch {batch_id} not learnt: its last poll failed ({failure})" in err
    filedrop("run", environ=env)
    outcome = outcome_csv(inbox / "q.outcome.csv")
    assert list(outcome["outcome_status"]) == ["SUCCEEDED"]
    assert sandbox.counters().posts == 1


def test_a_batch_whose_polls_are_refused_the_credentials_is_pending_not_unsent(
    inbox: Path, sandbox: Sandbox
) -> None:
    """Amili takes the batch, then refuses the credentials on its polls, a renewed token too:
    the run ended the file without an outcome, saying "Nothing was sent" of invoices that went.
    The rows are PENDING, saying why, and the next run completes the file."""
    sandbox.fail_next(401, count=4, route="batches")  # each poll and its renewed token's
    write_erp_csv(inbox / "q.csv", [erp_row("6111")])
    env = run_env(inbox, sandbox.url, FILEDROP_POLL_TIMEOUT_S="1.5")
    _, out, err = filedrop("run", environ=env, expect=3)
    outcome = outcome_csv(inbox / "q.outcome.csv")
    batch_id = outcome["outcome_batch_id"][0]
    assert list(outcome["outcome_status"]) == ["PENDING"]
    assert outcome["outcome_message"][0] == (
        "whether its batch ended is not known: its last poll failed (Amili refused the "
        f"credentials of client id '{TEST_CLIENT_ID}' (HTTP 401 on GET "
        f"/collection/v1/batches/{batch_id}); check FILEDROP_CLIENT_ID and "
        "FILEDROP_CLIENT_SECRET); it is polled again and this file rewritten"
    )
    assert "Nothing was sent" not in out + err
    filedrop("run", environ=env)
    assert list(outcome_csv(inbox / "q.outcome.csv")["outcome_status"]) == ["SUCCEEDED"]
    assert sandbox.counters().posts == 1


def test_a_file_that_cannot_be_read_gets_an_error_outcome_and_others_go_on(
    inbox: Path, sandbox: Sandbox
) -> None:
    """A broken file gets one ERROR row saying why; the good file beside it is processed."""
    (inbox / "broken.xlsx").write_bytes(b"this is not a spreadsheet")
    write_erp_csv(inbox / "good.csv", [erp_row("7001")])
    filedrop("run", environ=run_env(inbox, sandbox.url), expect=1)
    error = openpyxl.load_workbook(inbox / "broken.outcome.xlsx").worksheets[0]
    values = [cell.value for cell in error[2]]
    assert "ERROR" in values
    assert list(outcome_csv(inbox / "good.outcome.csv")["outcome_status"]) == ["SUCCEEDED"]


def test_a_file_no_mapping_fits_gets_an_error_outcome(inbox: Path, sandbox: Sandbox) -> None:
    """Headers no mapping knows: ERROR naming the file's headers; nothing sent. The outcome is
    delimited as the input is, so Excel in a Norwegian locale shows its cells apart."""
    (inbox / "other.csv").write_text("Foo;Bar\n1;2\n", encoding="utf-8")
    filedrop("run", environ=run_env(inbox, sandbox.url), expect=1)
    assert (
        (inbox / "other.outcome.csv").read_bytes().startswith(b"\xef\xbb\xbffile;outcome_status;")
    )
    outcome = pd.read_csv(inbox / "other.outcome.csv", sep=";", dtype=str, encoding="utf-8-sig")
    assert outcome["outcome_status"][0] == "ERROR"
    # Named by its bare name, as every other line about a file in the inbox is.
    assert outcome["outcome_message"][0].startswith("other.csv: no mapping fits this file: ")
    assert outcome["outcome_message"][0].endswith("(the file's headers: Foo, Bar).")
    assert sandbox.counters().posts == 0


@pytest.mark.parametrize(
    ("first", "again", "why"),
    [
        ("000777", "777", ", which a spreadsheet program drops when it opens and saves an export"),
        ("777", "000777", ", which a spreadsheet program drops"),
        ("0777", "00777", ""),
    ],
    ids=["dropped", "added", "padded-otherwise"],
)
def test_an_invoice_number_with_its_zeros_in_front_dropped_is_not_sent_again(
    inbox: Path, sandbox: Sandbox, first: str, again: str, why: str
) -> None:
    """Last week's export sent 000777; this week's was opened and saved by a spreadsheet
    program, which made it 777 (or the other way round): the same invoice, DUPLICATE, and the
    sentence names the number it went as. A new invoice in the same file still goes. The
    spreadsheet is named as the cause only where one number has no zeros left: it drops them
    all, so this export was saved only when its own number has none, and 0777 against 00777
    (an ERP padding to another width) is none of its doing."""
    write_erp_csv(inbox / "uke48.csv", [erp_row(first)])
    filedrop("run", environ=run_env(inbox, sandbox.url))
    write_erp_csv(inbox / "uke49.csv", [erp_row(again), erp_row("0778")])
    filedrop("run", environ=run_env(inbox, sandbox.url))
    outcome = outcome_csv(inbox / "uke49.outcome.csv")
    assert list(outcome["outcome_status"]) == ["DUPLICATE", "SUCCEEDED"]
    assert outcome["outcome_message"][0] == (
        f"invoice {again} (as {first}: the same number but for zeros in front{why}) was already "
        "sent from uke48.csv (succeeded, case "
        f"{outcome_csv(inbox / 'uke48.outcome.csv')['outcome_case_number'][0]}); not sent again"
    )
    assert sandbox.received_invoice_numbers() == [first, "0778"]


def test_two_files_of_one_run_with_the_same_invoices_zeros_dropped_send_each_once(
    inbox: Path, sandbox: Sandbox
) -> None:
    """Two files taken at once (FILEDROP_CONCURRENT_FILES=2), one with 000001..000300 and one
    with 1..300, each checked before the other claimed anything: each invoice goes once, as the
    claims themselves leave a twin out, and no row says filedrop stopped. Once settled, every row
    is SUCCEEDED or DUPLICATE of the one sent."""
    write_erp_csv(inbox / "a.csv", [erp_row(f"{n:06d}") for n in range(1, 301)])
    write_erp_csv(inbox / "b.csv", [erp_row(str(n)) for n in range(1, 301)])
    environ = run_env(inbox, sandbox.url, FILEDROP_BATCH_SIZE="20")
    filedrop("run", environ=environ, expect=None)
    received = sandbox.received_invoice_numbers()
    assert sorted(int(number) for number in received) == list(range(1, 301))
    for name in ("a", "b"):
        messages = outcome_csv(inbox / f"{name}.outcome.csv")["outcome_message"].fillna("")
        assert not messages.str.contains("filedrop stopped first").any()
    filedrop("run", environ=environ)
    statuses = [
        *outcome_csv(inbox / "a.outcome.csv")["outcome_status"],
        *outcome_csv(inbox / "b.outcome.csv")["outcome_status"],
    ]
    assert Counter(statuses) == {"SUCCEEDED": 300, "DUPLICATE": 300}
    assert sandbox.received_invoice_numbers() == received


def test_the_twin_of_an_unknown_invoice_waits_for_it_and_goes_once_it_was_not_sent(
    inbox: Path, sandbox: Sandbox
) -> None:
    """000777's answer was lost (UNKNOWN); the re-export holds 777. Its row is UNKNOWN with the
    resolve advice, not DUPLICATE of an invoice that may never have arrived; resolved as not
    sent, the next run sends it from the re-export."""
    environ = run_env(inbox, sandbox.url)
    write_erp_csv(inbox / "a.csv", [erp_row("000777")])
    sandbox.lose_next_response()
    filedrop("run", environ=environ, expect=1)
    (inbox / "a.csv").unlink()
    write_erp_csv(inbox / "b.csv", [erp_row("777")])
    filedrop("run", environ=environ, expect=1)
    outcome = outcome_csv(inbox / "b.outcome.csv")
    assert list(outcome["outcome_status"]) == ["UNKNOWN"]
    assert "'filedrop resolve 1 --sent' or '--not-sent'" in outcome["outcome_message"][0]
    filedrop("resolve", "1", "--not-sent", environ=environ, expect=None)
    filedrop("run", environ=environ)
    assert list(outcome_csv(inbox / "b.outcome.csv")["outcome_status"]) == ["SUCCEEDED"]
    assert sandbox.received_invoice_numbers()[-1] == "777"


def test_one_file_with_an_invoice_number_with_and_without_its_zeros_sends_it_once(
    inbox: Path, sandbox: Sandbox
) -> None:
    """Within one file the second is DUPLICATE of the first row, which the sentence names."""
    write_erp_csv(inbox / "blandet.csv", [erp_row("000781"), erp_row("781"), erp_row("78")])
    filedrop("run", environ=run_env(inbox, sandbox.url))
    outcome = outcome_csv(inbox / "blandet.outcome.csv")
    assert list(outcome["outcome_status"]) == ["SUCCEEDED", "DUPLICATE", "SUCCEEDED"]
    assert outcome["outcome_message"][1].startswith(
        "invoice number 781 (as 000781: the same number but for zeros in front, which a "
        "spreadsheet program drops) already appears on row 2"
    )
    assert sorted(sandbox.received_invoice_numbers()) == ["000781", "78"]


def test_a_file_no_mapping_fitted_is_taken_again_once_the_mappings_change(
    inbox: Path, sandbox: Sandbox, tmp_path: Path
) -> None:
    """The user adds the mapping the file needed: the next run sends it, rather than skipping it
    as processed and exiting 0. Under the same mappings its ERROR stays final (one outcome, no
    new read), and once sent, a change of mappings sends nothing again."""
    write_erp_csv(inbox / "faktura.csv", [erp_row("7101"), erp_row("7102")])
    only_example = tmp_path / "mappings"
    only_example.mkdir()
    shutil.copy(MAPPINGS / "example.toml", only_example)
    filedrop(
        "run", environ=run_env(inbox, sandbox.url, FILEDROP_MAPPING=str(only_example)), expect=1
    )
    _, out, _ = filedrop(
        "run", environ=run_env(inbox, sandbox.url, FILEDROP_MAPPING=str(only_example)), expect=0
    )
    assert "faktura.csv: skipped (already processed)" in out
    assert sandbox.counters().posts == 0

    shutil.copy(MAPPINGS / "norwegian-erp.toml", only_example)
    environ = run_env(inbox, sandbox.url, FILEDROP_MAPPING=str(only_example))
    filedrop("run", environ=environ, expect=0)
    outcome = outcome_csv(inbox / "faktura.outcome.csv")
    assert list(outcome["outcome_status"]) == ["SUCCEEDED", "SUCCEEDED"]
    assert sandbox.counters().posts == 1

    (only_example / "example.toml").unlink()
    _, out, _ = filedrop(
        "run", environ=run_env(inbox, sandbox.url, FILEDROP_MAPPING=str(only_example))
    )
    assert "faktura.csv: skipped (already processed)" in out
    assert sandbox.counters().posts == 1


def test_a_file_over_a_read_limit_is_taken_again_once_the_limit_is_raised(
    inbox: Path, sandbox: Sandbox
) -> None:
    """A limit the operator raises is a changed setup as a mapping is: the ERROR is not final."""
    write_erp_csv(inbox / "stor.csv", [erp_row("7201")])
    filedrop("run", environ=run_env(inbox, sandbox.url, FILEDROP_MAX_FILE_BYTES="10"), expect=1)
    assert (
        outcome_csv(inbox / "stor.outcome.csv", encoding="utf-8-sig")["outcome_status"][0]
        == "ERROR"
    )
    filedrop("run", environ=run_env(inbox, sandbox.url), expect=0)
    assert list(outcome_csv(inbox / "stor.outcome.csv")["outcome_status"]) == ["SUCCEEDED"]


def test_a_file_refused_after_it_was_read_gets_an_outcome_delimited_as_it_was_read(
    inbox: Path, sandbox: Sandbox
) -> None:
    """Title lines full of commas above a ";" table that names a column twice: refused after
    the read, its ERROR outcome takes the delimiter the file was read with, not one sniffed
    again from its first lines (commas)."""
    titles = ["Fakturaliste, Firma AS, Oslo", "Utskrevet 01.12.2026, Kari, side 1"]
    rows = [f"{erp_row(number)};5,00" for number in ("9041", "9042")]
    lines = [*titles, *titles, f"{ERP_HEADER};Beløp", *rows]
    (inbox / "titler.csv").write_bytes(("\r\n".join(lines) + "\r\n").encode("cp1252"))
    filedrop("run", environ=run_env(inbox, sandbox.url), expect=1)
    outcome = inbox / "titler.outcome.csv"
    assert outcome.read_bytes().startswith(b"\xef\xbb\xbffile;outcome_status;")
    assert sandbox.received_invoice_numbers() == []


def test_a_csv_outcome_keeps_the_lines_above_the_header(inbox: Path, sandbox: Sandbox) -> None:
    """Excel's sep=; line and a report's title were written as empty lines, though the outcome
    keeps the input's rows (and the xlsx outcome its title rows); without sep=;, Excel where
    the list separator is a comma opened the outcome in one column. Each line keeps its number,
    and a title line that Excel would run as a formula is neutralised as a cell is."""
    above = ["sep=;", "Kundereskontro;;", "=1+1;Utskrevet 31.03.2024", ""]
    lines = [*above, ERP_HEADER, erp_row("9051"), erp_row("9052")]
    (inbox / "titler.csv").write_bytes(("\r\n".join(lines) + "\r\n").encode("cp1252"))
    filedrop("run", environ=run_env(inbox, sandbox.url))
    written = (inbox / "titler.outcome.csv").read_bytes().decode("cp1252").split("\r\n")
    assert written[:4] == ["sep=;", "Kundereskontro;;", "'=1+1;Utskrevet 31.03.2024", ""]
    assert written[4].startswith(ERP_HEADER.split(";", 1)[0])
    assert [line.split(";", 1)[0] for line in written[5:7]] == ["9051", "9052"]
    assert sandbox.received_invoice_numbers() == ["9051", "9052"]


def test_formula_like_text_stays_text(inbox: Path, sandbox: Sandbox) -> None:
    """An address typed as =HYPERLINK(...) is written as text in the outcome, not a formula."""
    write_erp_csv(inbox / "f.csv", [erp_row("8001", Adresse="=HYPERLINK(1)")])
    filedrop("run", environ=run_env(inbox, sandbox.url))
    text = (inbox / "f.outcome.csv").read_text(encoding="cp1252")
    assert ";'=HYPERLINK(1);" in text


def test_invalid_rows_exit_1_and_are_never_sent(inbox: Path, sandbox: Sandbox) -> None:
    """A locally invalid row: INVALID naming column and value, exit 1, not sent."""
    write_erp_csv(inbox / "i.csv", [erp_row("9001"), erp_row("9002", Forfallsdato="31.02.2024")])
    filedrop("run", environ=run_env(inbox, sandbox.url), expect=1)
    outcome = outcome_csv(inbox / "i.outcome.csv")
    assert list(outcome["outcome_status"]) == ["SUCCEEDED", "INVALID"]
    assert 'Forfallsdato "31.02.2024" is not a date' in outcome["outcome_message"][1]
    assert sandbox.received_invoice_numbers() == ["9001"]


def _erp_xlsx(path: Path, rows: list[str]) -> None:
    """The ERP layout as a workbook of text cells."""
    book = openpyxl.Workbook()
    for line in [ERP_HEADER, *rows]:
        book.active.append(line.split(";"))
    book.save(path)


def test_an_xlsx_outcome_is_written_whole_when_its_rows_could_not_be_made_ahead(
    inbox: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Making an xlsx outcome's rows while the last polls are awaited is a head start only:
    when it fails, a warning says so, and the outcome is made at the end, as it would be."""
    attempts: list[int] = []

    def failing(table: object, *args: object, **kwargs: object) -> None:
        attempts.append(len(table))  # type: ignore[arg-type]
        raise MemoryError("no room for the rows")

    monkeypatch.setattr(pipeline_module, "rows_ahead", failing)
    _erp_xlsx(inbox / "i.xlsx", [erp_row(f"{9100 + i}") for i in range(3)])
    _, _, err = filedrop("run", environ=run_env(inbox, sandbox.url))

    assert attempts == [3]
    assert "i.xlsx: the outcome's rows could not be made ahead: no room for the rows" in err
    sheet = openpyxl.load_workbook(inbox / "i.outcome.xlsx").worksheets[0]
    table = [[cell.value for cell in row] for row in sheet.iter_rows()]
    assert [row[table[0].index("outcome_status")] for row in table[1:]] == ["SUCCEEDED"] * 3


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_a_corrected_outcome_dropped_in_again_gets_one_set_of_outcome_columns(
    inbox: Path, sandbox: Sandbox, suffix: str
) -> None:
    """The user fixes the INVALID row in the outcome and drops it in under a new name: its
    outcome replaces the earlier outcome columns (the sandbox's included) rather than adding a
    second set, so each row shows one status; what was sent is not sent again."""
    rows = [erp_row("9011"), erp_row("9012", Forfallsdato="31.02.2024")]
    env = run_env(inbox, sandbox.url)
    if suffix == ".csv":
        write_erp_csv(inbox / "i.csv", rows)
        filedrop("run", environ=env, expect=1)
        text = (inbox / "i.outcome.csv").read_bytes().replace(b"31.02.2024", b"15.03.2024")
        (inbox / "i-fixed.csv").write_bytes(text)
    else:
        _erp_xlsx(inbox / "i.xlsx", rows)
        filedrop("run", environ=env, expect=1)
        book = openpyxl.load_workbook(inbox / "i.outcome.xlsx")
        sheet = book.worksheets[0]
        for row in sheet.iter_rows():
            for cell in row:
                if cell.value == "31.02.2024":
                    cell.value = "15.03.2024"
        book.save(inbox / "i-fixed.xlsx")
    (inbox / "i-fixed.outcome.csv").unlink(missing_ok=True)
    filedrop("run", environ=env)

    if suffix == ".csv":
        outcome = outcome_csv(inbox / "i-fixed.outcome.csv")
        headers, statuses = list(outcome.columns), list(outcome["outcome_status"])
    else:
        sheet = openpyxl.load_workbook(inbox / "i-fixed.outcome.xlsx").worksheets[0]
        table = [[cell.value for cell in row] for row in sheet.iter_rows()]
        headers = table[0]
        statuses = [row[headers.index("outcome_status")] for row in table[1:]]
    assert [h for h in headers if str(h).startswith("outcome_")] == [
        *OUTCOME_COLUMNS,
        SANDBOX_COLUMN,
    ]
    assert headers[: len(ERP_HEADER.split(";"))] == ERP_HEADER.split(";")
    assert statuses == ["DUPLICATE", "SUCCEEDED"]
    assert sandbox.received_invoice_numbers() == ["9011", "9012"]


def test_outcome_columns_before_the_inputs_own_are_refused_and_nothing_is_sent(
    inbox: Path, sandbox: Sandbox
) -> None:
    """An earlier outcome's status and message columns moved in front of the invoice columns:
    the file is an ERROR saying which and what to do, as its outcome could not show one status
    a row."""
    lines = [f"outcome_status;outcome_message;{line}" for line in [ERP_HEADER, erp_row("9021")]]
    (inbox / "moved.csv").write_bytes(("\r\n".join(lines) + "\r\n").encode("cp1252"))
    _, out, _ = filedrop("run", environ=run_env(inbox, sandbox.url), expect=1)
    assert (
        "its columns outcome_status, outcome_message came from an earlier outcome and stand "
        "before columns of its own; remove them (or move them to the end) and drop it again"
    ) in out
    assert sandbox.received_invoice_numbers() == []
    outcome = pd.read_csv(inbox / "moved.outcome.csv", sep=";", dtype=str, encoding="utf-8-sig")
    assert list(outcome["outcome_status"]) == ["ERROR"]


@pytest.mark.parametrize("where", ["first", "last"])
def test_an_inputs_own_column_named_like_an_outcome_column_is_kept(
    inbox: Path, sandbox: Sandbox, where: str
) -> None:
    """A column of the input's own that happens to be called outcome_status (alone, not as
    filedrop writes its columns) is the input's: kept in the outcome, the file sent."""

    def placed(line: str, extra: str) -> str:
        return f"{extra};{line}" if where == "first" else f"{line};{extra}"

    lines = [placed(ERP_HEADER, "outcome_status"), placed(erp_row("9031"), "betalt")]
    (inbox / "own.csv").write_bytes(("\r\n".join(lines) + "\r\n").encode("cp1252"))
    filedrop("run", environ=run_env(inbox, sandbox.url))
    outcome = pd.read_csv(
        inbox / "own.outcome.csv", sep=";", encoding="cp1252", dtype=str, keep_default_na=False
    )
    assert list(outcome.iloc[0]).count("betalt") == 1
    assert "SUCCEEDED" in list(outcome.iloc[0])
    assert sandbox.received_invoice_numbers() == ["9031"]


@pytest.mark.parametrize(
    ("drop", "message"),
    [
        ("FILEDROP_ENV", "FILEDROP_ENV is not set; set it to sandbox, staging or production."),
        ("FILEDROP_ORG_ID", "FILEDROP_ORG_ID is not set"),
        ("FILEDROP_MAPPING", "FILEDROP_MAPPING is not set"),
    ],
)
def test_a_missing_setting_exits_2_naming_it(
    inbox: Path, sandbox: Sandbox, drop: str, message: str
) -> None:
    """A missing setting: one sentence naming it, exit 2, nothing sent."""
    write_erp_csv(inbox / "x.csv", [erp_row("9101")])
    env = run_env(inbox, sandbox.url)
    del env[drop]
    if drop == "FILEDROP_ENV":
        del env["FILEDROP_AUTH_URL"]
    _, _, err = filedrop("run", environ=env, expect=2)
    assert message in err
    assert "Traceback" not in err
    assert sandbox.counters().posts == 0


def test_refused_credentials_exit_2_and_send_nothing(inbox: Path) -> None:
    """Wrong credentials: exit 2 naming the settings to check, no secret printed, nothing sent."""
    options = SandboxOptions(delay_s=(0, 0), client_id="right", client_secret="right-secret")
    with Sandbox(options).start() as strict:
        write_erp_csv(inbox / "c.csv", [erp_row("9201")])
        env = run_env(inbox, strict.url, FILEDROP_CLIENT_SECRET="wrong-secret-value")
        _, out, err = filedrop("run", environ=env, expect=2)
        assert "FILEDROP_CLIENT_ID" in err and "FILEDROP_CLIENT_SECRET" in err
        assert "wrong-secret-value" not in out + err
        assert strict.counters().posts == 0
    assert not (inbox / "c.outcome.csv").exists()


def test_journal_records_files_batches_and_invoices(inbox: Path, sandbox: Sandbox) -> None:
    """The journal (a real SQLite file) holds the file, its batch id and each invoice's case."""
    write_erp_csv(inbox / "j.csv", [erp_row("9301"), erp_row("9302")])
    filedrop("run", environ=run_env(inbox, sandbox.url, FILEDROP_BATCH_SIZE="1"))
    with sqlite3.connect(journal_file(inbox)) as db:
        assert db.execute("SELECT name, state FROM files").fetchall() == [("j.csv", "done")]
        batches = db.execute("SELECT state, api_status, batch_id FROM batches").fetchall()
        assert len(batches) == 2 and all(b[0] == "done" and b[2] for b in batches)
        cases = db.execute("SELECT invoice_number, status, case_number FROM invoices").fetchall()
        assert sorted(c[:2] for c in cases) == [("9301", "SUCCEEDED"), ("9302", "SUCCEEDED")]


def test_a_run_says_a_file_its_permissions_keep_from_being_read(
    inbox: Path, make_context: Callable[..., Context], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file the run's user may not read was left as "still being written", exit 3, by every
    run for ever (found by a hostile review). It is the file's ERROR naming the cause, exit 1:
    a person must act. (Refused by hand: the tests run as root, whom no mode refuses.)"""
    write_erp_csv(inbox / "private.csv", [erp_row("7501")])
    refuse_reading(monkeypatch, "private.csv")
    report = run_inbox(make_context(stability_s=0.0))
    assert report.changing == ()
    said = "private.csv: cannot be opened (Permission denied); check its permissions"
    assert [(r.state, r.message) for r in report.files] == [(FileState.ERROR, said)]
    assert report.exit_code is ExitCode.ATTENTION


def test_a_file_that_cannot_even_be_opened_still_gets_an_error_outcome(
    inbox: Path, make_context: Callable[..., Context]
) -> None:
    """No bytes readable (here: a folder where a file was expected): ERROR outcome saying so."""
    locked = inbox / "locked.csv"
    locked.mkdir()  # reading it fails like a file another program holds locked
    report = process_file(locked, make_context())
    assert report.state is FileState.ERROR
    assert report.counts == {"ERROR": 1}
    outcome = pd.read_csv(inbox / "locked.outcome.csv", dtype=str, encoding="utf-8-sig")
    assert outcome["outcome_message"][0].startswith("locked.csv: cannot be opened (")
    # Again, with that outcome there: nothing tells whose it is, so it stays, said so.
    written = (inbox / "locked.outcome.csv").stat()
    report = process_file(locked, make_context())
    assert (inbox / "locked.outcome.csv").stat().st_ino == written.st_ino
    assert report.message is not None
    assert report.message.endswith("; the outcome locked.outcome.csv beside it is left as it was")


def test_an_earlier_version_back_under_its_name_says_its_outcome_is_another_versions(
    inbox: Path, sandbox: Sandbox
) -> None:
    """x.csv, then another x.csv, then the first again: the first's bytes are done, and it was
    skipped as "already processed" beside the second's outcome, whose rows it does not hold:
    a user read rows the file does not have. The skip says whose the outcome is, and where the
    file's own went; nothing is sent again."""
    env = run_env(inbox, sandbox.url)
    first = [erp_row("7101"), erp_row("7102")]
    write_erp_csv(inbox / "x.csv", first)
    filedrop("run", environ=env)
    write_erp_csv(inbox / "x.csv", [erp_row("7201")])
    filedrop("run", environ=env)
    write_erp_csv(inbox / "x.csv", first)
    _, out, err = filedrop("run", environ=env)
    assert (
        "x.csv: already processed (these very bytes), but its outcome x.outcome.csv is that of "
        in err
    )
    assert (
        "this one's, if it showed invoices sent, was moved to archive/ under a stamped name" in err
    )
    assert (
        "x.csv: skipped (already processed; its outcome x.outcome.csv is another version's)"
        in out + err
    )
    assert list(outcome_csv(inbox / "x.outcome.csv")["Fakturanr"]) == ["7201"]
    (kept,) = (inbox / "archive").glob("*-x.outcome.csv")
    assert list(outcome_csv(kept)["Fakturanr"]) == ["7101", "7102"]
    assert sandbox.received_invoice_numbers() == ["7101", "7102", "7201"]


def test_batches_of_a_replaced_file_are_still_settled(inbox: Path) -> None:
    """A PENDING file re-exported with more rows: the old batch's fate is learnt anyway."""
    shift_s = [0.0]  # the sandbox's clock, moved on so that the first batch ends between runs
    options = SandboxOptions(delay_s=(60, 60))
    with Sandbox(options, clock=lambda: time.time() + shift_s[0]) as slow:
        write_erp_csv(inbox / "x.csv", [erp_row("6101")])
        filedrop("run", environ=run_env(inbox, slow.url, FILEDROP_POLL_TIMEOUT_S="0.2"), expect=3)
        write_erp_csv(inbox / "x.csv", [erp_row("6101"), erp_row("6102")])
        shift_s[0] = 120.0
        slow.options.delay_s = (0, 0)  # batches sent from now on end at once
        env = run_env(inbox, slow.url)
        filedrop("run", environ=env)
        outcome = outcome_csv(inbox / "x.outcome.csv")
        assert list(outcome["outcome_status"]) == ["DUPLICATE", "SUCCEEDED"]
        with sqlite3.connect(journal_file(inbox)) as db:
            states = db.execute("SELECT state FROM batches ORDER BY id").fetchall()
            first = db.execute("SELECT status FROM invoices WHERE invoice_number = '6101'")
            assert states == [("done",), ("done",)]
            assert first.fetchone() == ("SUCCEEDED",)
        _, out, _ = filedrop("status", environ=env)
        assert "still pending" not in out
        assert slow.received_invoice_numbers() == ["6101", "6102"]


def test_a_file_renamed_while_its_batch_was_pending_tells_what_became_of_it(
    inbox: Path,
) -> None:
    """p.csv is PENDING at the poll timeout, then renamed q.csv: the next run settles the earlier
    batch before it reads q.csv, so q.csv's rows tell what became of each invoice (the success a
    DUPLICATE with its case, the failure sent again and FAILED, exit 1) rather than "pending"
    for good with exit 0."""
    shift_s = [0.0]  # the sandbox's clock, moved on so that the first batch ends between runs
    with Sandbox(SandboxOptions(delay_s=(60, 60)), clock=lambda: time.time() + shift_s[0]) as slow:
        rows = [erp_row("6201"), erp_row("6202", email="ola..nordmann@example.no")]
        write_erp_csv(inbox / "p.csv", rows)
        filedrop("run", environ=run_env(inbox, slow.url, FILEDROP_POLL_TIMEOUT_S="0.3"), expect=3)
        (inbox / "p.csv").rename(inbox / "q.csv")
        shift_s[0] = 120.0
        slow.options.delay_s = (0, 0)  # batches sent from now on end at once
        filedrop("run", environ=run_env(inbox, slow.url), expect=1)
        outcome = outcome_csv(inbox / "q.outcome.csv")
        assert list(outcome["outcome_status"]) == ["DUPLICATE", "FAILED"]
        assert "already sent from p.csv" in outcome["outcome_message"][0]
        assert "CASE-" in outcome["outcome_message"][0]
        assert "pending" not in outcome["outcome_message"][0]
        assert slow.received_invoice_numbers() == ["6201", "6202", "6202"]


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('invoiceNumber = "Fakturanr"', 'invoiceNumber = { template = "X{Fakturanr}" }'),
        ("[rules]", '[skip]\nsmall = { column = "Beløp", at_most = 100 }\n\n[rules]'),
    ],
    ids=["renumbered", "now-skipped"],
)
def test_a_file_resumed_with_a_mapping_that_reads_it_otherwise_sends_nothing(
    inbox: Path, tmp_path: Path, old: str, new: str
) -> None:
    """p.csv is PENDING at the poll timeout; then its mapping is changed so that the invoice
    number reads otherwise (or a row that was sent is now skipped). Resumed so, its rows would
    go again under other numbers: the run refuses, in one sentence, and sends nothing; with
    the mapping put back, the next run completes it, each invoice sent once."""
    erp = (MAPPINGS / "norwegian-erp.toml").read_text(encoding="utf-8")
    changed = tmp_path / "mappings" / "norwegian-erp.toml"
    changed.parent.mkdir()
    assert old in erp
    changed.write_text(erp.replace(old, new, 1), encoding="utf-8")
    shift_s = [0.0]  # the sandbox's clock, moved on so that the batch ends between the runs
    with Sandbox(SandboxOptions(delay_s=(60, 60)), clock=lambda: time.time() + shift_s[0]) as slow:
        write_erp_csv(inbox / "p.csv", [erp_row("6301"), erp_row("6302", amount="50,00")])
        filedrop("run", environ=run_env(inbox, slow.url, FILEDROP_POLL_TIMEOUT_S="0.3"), expect=3)
        shift_s[0] = 120.0
        slow.options.delay_s = (0, 0)
        _, out, _ = filedrop(
            "run", environ=run_env(inbox, slow.url, FILEDROP_MAPPING=str(changed)), expect=1
        )
        assert "p.csv: not finished; the next run resumes it" in out
        assert "the mapping now leaves out " in out and " this file sent before (such as 630" in out
        assert slow.received_invoice_numbers() == ["6301", "6302"]
        filedrop("run", environ=run_env(inbox, slow.url))
        assert list(outcome_csv(inbox / "p.outcome.csv")["outcome_status"]) == ["SUCCEEDED"] * 2
        assert slow.received_invoice_numbers() == ["6301", "6302"]


def test_a_post_refused_for_the_settings_is_sent_by_the_next_run(
    inbox: Path, sandbox: Sandbox
) -> None:
    """A 404 on POST (wrong org id or URL) is not the invoices' fault: FAILED 'not sent' now,
    exit 2 (fix the setup), and the next run, with the setting fixed, sends them."""
    write_erp_csv(inbox / "n.csv", [erp_row("6201")])
    env = run_env(inbox, sandbox.url)
    sandbox.fail_next(404, route="invoices")
    filedrop("run", environ=env, expect=2)
    assert "not sent" in outcome_csv(inbox / "n.outcome.csv")["outcome_message"][0]
    filedrop("run", environ=env)
    assert list(outcome_csv(inbox / "n.outcome.csv")["outcome_status"]) == ["SUCCEEDED"]
    assert sandbox.received_invoice_numbers() == ["6201"]


# -- exit codes: the run report decides ---------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403, 404])
def test_a_post_refused_for_who_or_where_we_are_exits_2(
    inbox: Path, sandbox: Sandbox, status: int
) -> None:
    """401, 403 or 404 on the POST: the setup is wrong (exit 2), whatever else the rows say."""
    write_erp_csv(inbox / "s.csv", [erp_row("6301"), erp_row("6302", Forfallsdato="31.02.2024")])
    sandbox.fail_next(status, count=10, route="invoices")
    filedrop("run", environ=run_env(inbox, sandbox.url), expect=ExitCode.SETUP)
    assert sandbox.received_invoice_numbers() == []


def test_the_api_down_at_start_exits_3_saying_nothing_was_sent(
    inbox: Path, sandbox: Sandbox
) -> None:
    """Amili out of reach before anything is sent: one sentence, exit 3 (the next run goes on),
    not 2 (nothing is wrong with the setup)."""
    write_erp_csv(inbox / "t.csv", [erp_row("6401")])
    sandbox.fail_next(503, count=6, retry_after="0", route="token")
    _, out, err = filedrop("run", environ=run_env(inbox, sandbox.url), expect=ExitCode.UNFINISHED)
    assert out == ""
    assert err.splitlines()[-1] == (
        "filedrop: Amili was not available for POST /token (HTTP 503) after 6 attempts; "
        "nothing was processed, so try again later."
    )
    assert sandbox.counters().posts == 0


def test_the_api_down_mid_run_leaves_the_file_for_the_next_run_and_exits_3(
    inbox: Path, sandbox: Sandbox
) -> None:
    """Every POST answered 503: the rows are not sent, the file is left RETRY, exit 3; the next
    run sends them."""
    write_erp_csv(inbox / "m.csv", [erp_row("6501")])
    env = run_env(inbox, sandbox.url)
    sandbox.fail_next(503, count=6, retry_after="0", route="invoices")
    filedrop("run", environ=env, expect=ExitCode.UNFINISHED)
    assert outcome_csv(inbox / "m.outcome.csv")["outcome_message"][0].startswith("not sent: ")
    filedrop("run", environ=env)
    assert list(outcome_csv(inbox / "m.outcome.csv")["outcome_status"]) == ["SUCCEEDED"]
    assert sandbox.received_invoice_numbers() == ["6501"]


def test_the_api_down_mid_run_with_an_invalid_row_exits_1(inbox: Path, sandbox: Sandbox) -> None:
    """A row a person must fix (INVALID) outranks rows merely not sent yet: exit 1."""
    write_erp_csv(inbox / "v.csv", [erp_row("6601"), erp_row("6602", Forfallsdato="31.02.2024")])
    sandbox.fail_next(503, count=6, retry_after="0", route="invoices")
    filedrop("run", environ=run_env(inbox, sandbox.url), expect=ExitCode.ATTENTION)


def test_a_batch_accepted_while_postgresql_restarts_is_recorded_once_the_journal_is_back(
    inbox: Path, sandbox: Sandbox, postgres_url: str
) -> None:
    """PostgreSQL drops its connections while a POST is on its way (its answer held 1.5 s): the
    journal cannot record the batch Amili accepted at first, is tried again, connects anew and
    records it; the batch is polled and its row SUCCEEDED, not left UNKNOWN."""
    write_erp_csv(inbox / "pg.csv", [erp_row("6701")])
    sandbox.stall_next(1.5, route="invoices")

    def drop_during_the_post() -> None:
        deadline = time.monotonic() + 10
        while not sandbox.counters().posts and time.monotonic() < deadline:
            time.sleep(0.01)
        drop_connections(postgres_url)

    dropper = threading.Thread(target=drop_during_the_post)
    dropper.start()
    env = run_env(inbox, sandbox.url, FILEDROP_STATE=postgres_url)
    _, _, err = filedrop("run", environ=env)
    dropper.join()
    assert list(outcome_csv(inbox / "pg.outcome.csv")["outcome_status"]) == ["SUCCEEDED"]
    assert "but the journal cannot record that" in err
    assert sandbox.received_invoice_numbers() == ["6701"]


class _CountingSandbox(Sandbox):
    """A sandbox whose invoice POSTs take 50 ms, counting how many are answered at once."""

    def __init__(self) -> None:
        super().__init__(SandboxOptions(delay_s=(0, 0), seed=1))
        self.posts_at_once = self.most_posts_at_once = 0
        self._count_lock = threading.Lock()

    def _handle(self, method: str, target: str, *args: Any, **kwargs: Any) -> Any:
        if method != "POST" or not target.endswith("/invoices"):
            return super()._handle(method, target, *args, **kwargs)
        with self._count_lock:
            self.posts_at_once += 1
            self.most_posts_at_once = max(self.most_posts_at_once, self.posts_at_once)
        try:
            time.sleep(0.05)
            return super()._handle(method, target, *args, **kwargs)
        finally:
            with self._count_lock:
                self.posts_at_once -= 1


def test_no_more_posts_in_flight_than_concurrent_batches(inbox: Path) -> None:
    """Twice as many posting threads as POSTs in flight build JSON and record answers, but only
    ``concurrent_batches`` POSTs reach the API at once; all of them do, for every batch once."""
    write_erp_csv(inbox / "many.csv", [erp_row(f"71{n:02}") for n in range(12)])
    with _CountingSandbox() as api:
        settings = sandbox_settings(inbox, api.url, batch_size=1, concurrent_batches=3)
        with open_context(settings) as ctx:
            assert process_file(inbox / "many.csv", ctx).counts == {"SUCCEEDED": 12}
        assert api.most_posts_at_once == 3
        assert sorted(api.received_invoice_numbers()) == [f"71{n:02}" for n in range(12)]


def test_a_file_given_up_waits_for_the_posts_on_their_way(
    inbox: Path, make_context: Callable[..., Context], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One batch fails at once (say its claim found the journal gone) while the other's POST is
    still on its way: the file is given up only once that POST is answered and recorded, so no
    thread writes behind the next attempt's back; that attempt sends the rest, once."""
    write_erp_csv(inbox / "two.csv", [erp_row("6801"), erp_row("6802")])
    ctx = make_context(batch_size=1, concurrent_batches=2)
    submit = pipeline_module._submit_batch

    def slow_or_failing(invoices: list[Any], *args: Any, **kwargs: Any) -> Any:
        if invoices[0].invoice_number == "6802":
            raise RuntimeError("the journal went away")
        time.sleep(1.0)
        return submit(invoices, *args, **kwargs)

    monkeypatch.setattr(pipeline_module, "_submit_batch", slow_or_failing)
    with pytest.raises(RuntimeError, match="the journal went away"):
        process_file(inbox / "two.csv", ctx)
    states = [b.state for b in ctx.journal.batches(file_id=1)]
    assert states == ["queued"]  # answered and recorded before the file was given up
    monkeypatch.setattr(pipeline_module, "_submit_batch", submit)
    assert process_file(inbox / "two.csv", make_context(batch_size=1)).counts == {"SUCCEEDED": 2}


def test_a_file_replaced_while_it_was_processed_is_not_archived_for_the_first(
    inbox: Path, make_context: Callable[..., Context], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With archiving, a file replaced by another of the same name while the first was sent
    stays in the inbox: only the first's outcome is archived, and the new rows are sent when the
    file is taken again, none lost."""
    path = write_erp_csv(inbox / "big.csv", [erp_row("6901"), erp_row("6902")])
    write = pipeline_module.write_outcome

    def replaced_meanwhile(*args: Any, **kwargs: Any) -> Any:
        write_erp_csv(path, [erp_row("6903")])
        return write(*args, **kwargs)

    monkeypatch.setattr(pipeline_module, "write_outcome", replaced_meanwhile)
    first = process_file(path, make_context(archive=True))
    assert first.counts == {"SUCCEEDED": 2}
    assert path.exists()
    archived = sorted(p.name.split("-", 2)[-1] for p in (inbox / "archive").iterdir())
    assert archived == ["big.outcome.csv"]
    monkeypatch.setattr(pipeline_module, "write_outcome", write)
    assert process_file(path, make_context(archive=True)).counts == {"SUCCEEDED": 1}
    assert not path.exists()


@pytest.mark.parametrize("case", ["csv", "xlsx in the reader's child", "xlsx in process"])
def test_a_file_rewritten_in_place_while_it_is_read_is_sent_once_it_settles(
    inbox: Path,
    sandbox: Sandbox,
    make_context: Callable[..., Context],
    monkeypatch: pytest.MonkeyPatch,
    case: str,
) -> None:
    """Rewritten in place (the same file, half its bytes) while it is read, then settled back
    to the bytes hashed: nothing is read of the half, no ERROR is kept against the bytes, and
    the file is sent whole when taken again (before, it stayed refused for good)."""
    name, in_child = f"inplace.{case[:4].strip()}", not case.endswith("in process")
    path = inbox / name
    if name.endswith(".csv"):
        write_erp_csv(path, [erp_row("7401"), erp_row("7402")])
    else:
        _erp_xlsx(path, [erp_row("7401"), erp_row("7402")])
    original = path.read_bytes()
    read = pipeline_module.read_table

    def half_written(*args: Any, **kwargs: Any) -> Any:
        with path.open("r+b") as same_file:  # the same inode: only the bytes tell
            same_file.truncate(len(original) // 2)
        try:
            return read(*args, **kwargs)
        finally:
            path.write_bytes(original)

    monkeypatch.setattr(pipeline_module, "read_table", half_written)
    first = process_file(path, make_context(read_in_subprocess=in_child))
    assert (first.state, first.setback) == (FileState.RETRY, Setback.CHANGING)
    assert (
        first.message == f"{name}: it changed while it was read; it is read again once it settles"
    )
    assert RunReport([first]).exit_code is ExitCode.UNFINISHED
    assert not list(inbox.glob("*.outcome.*"))
    assert sandbox.received_invoice_numbers() == []
    monkeypatch.setattr(pipeline_module, "read_table", read)
    assert process_file(path, make_context(read_in_subprocess=in_child)).counts == {"SUCCEEDED": 2}
    assert sorted(sandbox.received_invoice_numbers()) == ["7401", "7402"]


def test_an_outcome_that_cannot_be_written_is_named_not_its_temporary_file(
    inbox: Path, sandbox: Sandbox
) -> None:
    """A folder stands where the outcome goes: nothing is sent, the sentence names that outcome,
    and the next run, once the folder is gone, sends the file and writes it."""
    write_erp_csv(inbox / "d.csv", [erp_row("7201")])
    (inbox / "d.outcome.csv").mkdir()
    env = run_env(inbox, sandbox.url)
    _, out, _ = filedrop("run", environ=env, expect=ExitCode.ATTENTION)
    assert (
        f"a folder has the outcome's name ({inbox / 'd.outcome.csv'}); nothing is lost, the next "
        "run resumes it"
    ) in out
    assert sandbox.received_invoice_numbers() == []
    (inbox / "d.outcome.csv").rmdir()
    filedrop("run", environ=env)
    assert list(outcome_csv(inbox / "d.outcome.csv")["outcome_status"]) == ["SUCCEEDED"]
    assert sandbox.received_invoice_numbers() == ["7201"]


def test_a_stop_while_earlier_batches_are_settled_ends_their_polls(
    inbox: Path, sandbox: Sandbox, make_context: Callable[..., Context]
) -> None:
    """A run whose only work is polling a batch of a file moved away (Amili slow to end it)
    is told to stop: it ends the poll at once, leaving the batch QUEUED for the next run,
    rather than waiting out a poll timeout of ten minutes past any grace period."""
    sandbox.options.delay_s = (600.0, 600.0)
    path = write_erp_csv(inbox / "moved.csv", [erp_row("7301")])
    assert process_file(path, make_context(poll_timeout_s=0.5)).state is FileState.WAITING
    path.unlink()  # moved away: only the settling of earlier batches polls its batch now
    ctx = make_context(poll_timeout_s=600.0)
    threading.Timer(1.0, ctx.stop.set).start()
    running = threading.Thread(target=run_inbox, args=(ctx,), daemon=True)
    running.start()
    running.join(timeout=30)
    assert not running.is_alive(), "the run waited out the poll instead of stopping"
    assert [b.state for b in ctx.journal.batches(file_id=1)] == ["queued"]


# -- a long file: its first batches go while the rest is prepared --------------------------------


@pytest.fixture
def short_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    """A file of more than 4 rows is prepared in parts, as one of 10,000 is: 4 rows, then 6."""
    monkeypatch.setattr(prepare_module, "FIRST_PART_ROWS", 4)
    monkeypatch.setattr(prepare_module, "PART_ROWS", 6)


def later_parts_wait_for_a_post(
    monkeypatch: pytest.MonkeyPatch, sandbox: Sandbox, then: Callable[[], None] = lambda: None
) -> None:
    """Prepare a file's later parts only once the sandbox has had a POST, and call ``then``
    first (once): a run that prepared every part before it sent would fail here."""
    prepare_one = prepare_module._prepare
    called: list[bool] = []

    def after_a_post(table: Any, mapping: Any, **given: Any) -> Any:
        if given.get("offset") and not called:
            called.append(True)
            wait_until(lambda: sandbox.counters().posts, what="a POST before the later parts")
            then()
        return prepare_one(table, mapping, **given)

    monkeypatch.setattr(prepare_module, "_prepare", after_a_post)


def long_file(inbox: Path) -> Path:
    """16 rows, in three parts: a number of the first part repeated in the second, and an
    invalid amount in the third; 14 invoices to send."""
    rows = [erp_row(f"{2000 + i}") for i in range(16)]
    rows[6] = erp_row("2001")
    rows[12] = erp_row("2012", amount="x")
    return write_erp_csv(inbox / "long.csv", rows)


def test_a_long_files_first_batches_go_out_while_its_later_parts_are_prepared(
    inbox: Path,
    sandbox: Sandbox,
    short_parts: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The later parts are prepared only after a POST here; the run still ends every row as one
    go would, and a batch runs on across parts: 14 invoices in 5 POSTs of 3 (not 6 POSTs, one
    partial batch a part). The line telling the plan comes once every part is in."""
    later_parts_wait_for_a_post(monkeypatch, sandbox)
    long_file(inbox)
    env = run_env(inbox, sandbox.url, FILEDROP_BATCH_SIZE="3")
    _, _, err = filedrop("run", environ=env, expect=ExitCode.ATTENTION)  # the invalid row
    statuses = list(outcome_csv(inbox / "long.outcome.csv")["outcome_status"])
    assert (
        statuses
        == ["SUCCEEDED"] * 6 + ["DUPLICATE"] + ["SUCCEEDED"] * 5 + ["INVALID"] + ["SUCCEEDED"] * 3
    )
    counters = sandbox.counters()
    assert (counters.posts, counters.invoices_received) == (5, 14)
    assert counters.invoice_numbers_repeated == ()
    assert "long.csv: 14 invoices in 5 batches to send" in err


@pytest.mark.parametrize("batch_size", [1, 2, 5, 100])
@pytest.mark.parametrize("first_part_sendable", [True, False])
def test_a_long_files_batches_run_on_across_its_parts(
    inbox: Path,
    sandbox: Sandbox,
    short_parts: None,
    batch_size: int,
    first_part_sendable: bool,
) -> None:
    """Whatever the batch size, and with a first part of nothing to send: each invoice goes
    once, in ceil(invoices / size) POSTs, and each row has one status."""
    rows = [erp_row(f"{3000 + i}") for i in range(17)]
    if not first_part_sendable:
        rows[:4] = [erp_row(f"{3000 + i}", amount="x") for i in range(4)]
    write_erp_csv(inbox / "long.csv", rows)
    env = run_env(inbox, sandbox.url, FILEDROP_BATCH_SIZE=str(batch_size))
    filedrop("run", environ=env, expect=None)
    statuses = list(outcome_csv(inbox / "long.outcome.csv")["outcome_status"])
    sendable = 17 if first_part_sendable else 13
    assert statuses == ["INVALID"] * (17 - sendable) + ["SUCCEEDED"] * sendable
    counters = sandbox.counters()
    assert (counters.posts, counters.invoices_received) == (-(-sendable // batch_size), sendable)
    assert counters.invoice_numbers_repeated == ()


def test_a_stop_before_a_long_file_is_all_prepared_leaves_it_for_the_next_run(
    inbox: Path,
    sandbox: Sandbox,
    short_parts: None,
    monkeypatch: pytest.MonkeyPatch,
    make_context: Callable[..., Context],
) -> None:
    """Stopped after its first POST, with parts still to prepare: the file is WAITING, though
    every invoice of the part prepared was sent (no outcome of rows never looked at), and the
    next run sends the rest, nothing twice."""
    ctx = make_context(batch_size=4)
    later_parts_wait_for_a_post(monkeypatch, sandbox, then=ctx.stop.set)
    path = long_file(inbox)
    assert process_file(path, ctx).state is FileState.WAITING
    assert not (inbox / "long.outcome.csv").exists()
    assert sandbox.counters().invoices_received == 4  # the first part, in one batch
    assert process_file(path, make_context(batch_size=4)).state is FileState.DONE
    assert sandbox.counters().invoices_received == 14
    assert sandbox.counters().invoice_numbers_repeated == ()
    assert list(outcome_csv(inbox / "long.outcome.csv")["outcome_status"]).count("SUCCEEDED") == 14


def test_a_later_part_that_fails_stops_the_sending_and_the_next_run_ends_the_file(
    inbox: Path,
    sandbox: Sandbox,
    short_parts: None,
    monkeypatch: pytest.MonkeyPatch,
    make_context: Callable[..., Context],
) -> None:
    """A later part that raises (a bug) once some batches went: the POSTs on their way end and
    are recorded, the file is taken again, and the next run, which prepares the whole file
    before it sends (it sent before), sends the rest and nothing twice."""

    def fail() -> None:
        raise RuntimeError("a bug in a later part")

    later_parts_wait_for_a_post(monkeypatch, sandbox, then=fail)
    path = long_file(inbox)
    report = process_guarded(path, make_context(batch_size=3))
    assert report.state is FileState.RETRY
    assert "a bug in a later part" in (report.message or "")
    assert 0 < sandbox.counters().invoices_received < 14
    assert process_file(path, make_context(batch_size=3)).state is FileState.DONE
    assert sandbox.counters().invoices_received == 14
    assert sandbox.counters().invoice_numbers_repeated == ()


# -- what the run prints -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("numbers", "batch_size", "line"),
    [
        (["7101"], "100", "x.csv: 1 invoice in 1 batch to send"),
        (["7101", "7102"], "100", "x.csv: 2 invoices in 1 batch to send"),
        (["7101", "7102"], "1", "x.csv: 2 invoices in 2 batches to send"),
    ],
)
def test_the_log_counts_invoices_and_batches_in_words_that_agree(
    inbox: Path, sandbox: Sandbox, numbers: list[str], batch_size: str, line: str
) -> None:
    """The log line before sending names the file once, and its nouns agree with the counts."""
    write_erp_csv(inbox / "x.csv", [erp_row(number) for number in numbers])
    env = run_env(inbox, sandbox.url, FILEDROP_BATCH_SIZE=batch_size)
    _, _, err = filedrop("run", environ=env)
    messages = [text.split(maxsplit=2)[2] for text in err.splitlines()]  # after time and level
    assert line in messages


# -- readiness: the same rule as watch -------------------------------------------------------


def test_run_waits_one_window_and_takes_only_files_that_stay_unchanged(inbox: Path) -> None:
    """A file is ready after one unchanged stability window; one that grew meanwhile is not."""
    clock = FakeTime()
    steady = write_erp_csv(inbox / "steady.csv", [erp_row("7201")])
    growing = write_erp_csv(inbox / "growing.csv", [erp_row("7202")])

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        growing.write_bytes(growing.read_bytes() + b"7203;\r\n")

    ready, changing = ready_files(
        [steady, growing], stability_s=5.0, clock=clock.clock, sleep=sleep
    )
    assert (ready, changing) == ([steady], [growing])
    assert clock.sleeps == [5.0]


@pytest.mark.parametrize("files", [1, 3])
def test_run_says_it_waits_to_see_the_files_are_written(
    inbox: Path, sandbox: Sandbox, files: int
) -> None:
    """`filedrop run` waits out the stability window before it takes a file: it says so, in one
    line for the one wait, where it showed nothing for those seconds; then it sends them."""
    for k in range(files):
        write_erp_csv(inbox / f"f{k}.csv", [erp_row(str(7211 + k))])
    env = run_env(inbox, sandbox.url, FILEDROP_STABILITY_S="0.5")
    _, _, err = filedrop("run", environ=env)
    said = [line.split(maxsplit=2)[2] for line in err.splitlines()]
    which = (
        "f0.csv, to see that it is no longer"
        if files == 1
        else "3 files (such as f0.csv), to see that none is still"
    )
    waiting = f"waiting 0.5 s (FILEDROP_STABILITY_S) before taking {which} being written"
    assert [line for line in said if line.startswith("waiting")] == [waiting]
    assert said.index(waiting) < said.index("f0.csv: claimed")
    assert sandbox.counters().invoices_received == files


def test_run_does_not_take_a_file_that_does_not_open(inbox: Path) -> None:
    """Readiness includes opening the file: something that cannot be read is left alone."""
    clock = FakeTime()
    folder = inbox / "a.csv"
    folder.mkdir()
    (folder / "inside.csv").write_text("x", encoding="utf-8")
    ready, changing = ready_files([folder], stability_s=0.0, clock=clock.clock, sleep=clock.sleep)
    assert ready == []
    assert changing == [folder]


@pytest.mark.parametrize("stopped_before_the_first", [False, True])
def test_the_outcome_puts_each_invoice_record_on_its_own_row(
    tmp_path: Path, journal_location: Path | PostgresLocation, stopped_before_the_first: bool
) -> None:
    """The journal's records stream back in chunks: on SQLite in the order asked until one
    number has none (its run stopped before it), on PostgreSQL in any order. Either way each
    row gets its own invoice's outcome, and the one never written down is NOT_SENT."""
    path = write_erp_csv(tmp_path / "o.csv", [erp_row(f"{7000 + i}") for i in range(2500)])
    mapping = load_mapping(EXAMPLES.parent / "mappings" / "norwegian-erp.toml")
    prepared = prepare(read_table(path, mapping.read), mapping)
    numbers = [invoice.invoice_number for invoice in prepared.invoices]
    sent = numbers[1:] if stopped_before_the_first else numbers
    with Journal(journal_location) as journal:
        file = journal.claim_file(path=path, sha256="00", target="t", owner="me", stale_s=60)
        assert file is not None
        for at in range(0, len(sent), 100):
            batch, claimed = journal.claim_batch(
                file_id=file.id, target="t", invoice_numbers=sent[at : at + 100]
            )
            journal.batch_submitted(batch, batch_id=f"b-{at}")
            results = [(n, f"i-{n}", f"c-{n}", f"C-{n}") for n in claimed]
            journal.batches_finished([FinishedBatch(batch, "SUCCESS", results, [])])
        outcomes, _ = _outcomes(prepared, journal, target="t", file_id=file.id)
    first = "NOT_SENT" if stopped_before_the_first else "SUCCEEDED"
    assert outcomes["outcome_status"].tolist() == [first] + ["SUCCEEDED"] * 2499
    ids = [f"i-{7000 + i}" for i in range(2500)]
    ids[0] = "" if stopped_before_the_first else ids[0]
    assert outcomes["outcome_invoice_id"].tolist() == ids
    assert outcomes["outcome_case_number"].tolist()[1:] == [f"C-{n}" for n in numbers[1:]]
    assert outcomes["outcome_batch_id"].tolist()[-1] == "b-2400"


def test_the_outcome_is_drafted_while_the_last_polls_are_awaited(
    inbox: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once every POST is answered, the second until the first poll is spent reading the
    journal for the outcome: the draft is read with every batch sent and none polled, and
    again once all were, so the outcome tells how each batch ended."""
    seen: list[tuple[int, int]] = []
    read = _OutcomeDraft.read

    def counting(draft: _OutcomeDraft, journal: Journal) -> None:
        counters = sandbox.counters()
        seen.append((counters.posts, counters.polls))
        read(draft, journal)

    monkeypatch.setattr(_OutcomeDraft, "read", counting)
    write_erp_csv(inbox / "a.csv", [erp_row(f"{5000 + i}") for i in range(7)])
    env = run_env(inbox, sandbox.url, FILEDROP_BATCH_SIZE="3", FILEDROP_POLL_INITIAL_S="1")
    filedrop("run", environ=env)
    assert seen == [(3, 0), (3, 3)]
    assert list(outcome_csv(inbox / "a.outcome.csv")["outcome_status"]) == ["SUCCEEDED"] * 7


@pytest.mark.parametrize("grouped", [False, True])
def test_an_outcome_drafted_while_the_last_polls_wait_ends_as_if_read_at_the_end(
    tmp_path: Path, journal_location: Path | PostgresLocation, grouped: bool
) -> None:
    """A run drafts its outcome once every POST is answered and reads again only what could
    still change: batches still in flight (claimed or pending, with or without a failed poll),
    numbers another file holds, numbers not yet written down. After those change, the draft
    must end as the outcome read at the end would, row for row, grouped lines included."""
    if grouped:  # five invoices over sixteen rows, one of them refused before sending
        mapping = load_mapping(EXAMPLES.parent / "mappings" / "example.toml")
        path = EXAMPLES / "apne-poster-mars.xlsx"
    else:
        mapping = load_mapping(EXAMPLES.parent / "mappings" / "norwegian-erp.toml")
        path = write_erp_csv(tmp_path / "d.csv", [erp_row(f"{6000 + i}") for i in range(12)])

    def prepared_now() -> Prepared:
        return prepare(read_table(path, mapping.read), mapping)

    prepared = prepared_now()
    numbers = [invoice.invoice_number for invoice in prepared.invoices]
    # Five invoices at least; with more, some also in a batch still being posted.
    other, resolved, settled, queued, failed_poll, claimed, unrecorded = (
        numbers[:1],
        numbers[1:2],
        numbers[2:3],
        numbers[3:4],
        numbers[4:5] if len(numbers) > 5 else [],
        numbers[5:-1],
        numbers[-1:],
    )
    with Journal(journal_location) as journal:
        earlier = journal.claim_file(
            path=tmp_path / "e.csv", sha256="01", target="t", owner="me", stale_s=60
        )
        now = journal.claim_file(path=path, sha256="02", target="t", owner="me", stale_s=60)
        assert earlier is not None and now is not None

        def claim(file_id: int, few: list[str], *, submit: bool = True) -> int:
            batch, taken = journal.claim_batch(file_id=file_id, target="t", invoice_numbers=few)
            assert taken == few
            if submit:
                journal.batch_submitted(batch, batch_id=f"b-{batch}")
            return batch

        def finish(batch: int, few: list[str]) -> None:
            results = [(n, f"i-{n}", f"c-{n}", f"C-{n}") for n in few]
            journal.batches_finished([FinishedBatch(batch, "SUCCESS", results, [])])

        ending = {claim(file, few): few for file, few in [(earlier.id, other), (now.id, queued)]}
        if failed_poll:
            batch = claim(now.id, failed_poll)
            journal.batch_still_queued(batch, failure="timed out")
            ending[batch] = failed_poll
        # Another file's number whose POST may not have arrived, settled as far as that file
        # goes, until an operator resolves it while this file's last polls wait.
        unknown = claim(earlier.id, resolved)
        journal.batch_unknown(unknown, message="the POST timed out")
        finish(claim(now.id, settled), settled)
        posting = claim(now.id, claimed, submit=False) if claimed else None
        draft = _OutcomeDraft(prepared, target="t", file_id=now.id)
        draft.read(journal)
        provisional, settled_rows = draft.provisional()
        # What the last polls bring: every batch ends, and the one being posted too.
        for batch, few in ending.items():
            finish(batch, few)
        if posting is not None:
            journal.batch_submitted(posting, batch_id="b-late")
            finish(posting, claimed)
        finish(claim(now.id, unrecorded), unrecorded)
        # As resolve does when the run's lease ran out (its claim's owner judged gone).
        holder = journal.file(now.id).owner
        journal.resolve_batch(unknown, sent=True, note="Amili has it", holder=holder)
        draft.read(journal)
        drafted = draft.frame()
        at_the_end, _ = _outcomes(prepared_now(), journal, target="t", file_id=now.id)
    pd.testing.assert_frame_equal(drafted, at_the_end)
    statuses = set(at_the_end["outcome_status"])
    assert "DUPLICATE" in statuses and "SUCCEEDED" in statuses
    assert "PENDING" not in statuses and "NOT_SENT" not in statuses
    assert ("INVALID" in statuses) is grouped
    # The rows the draft called settled (whose outcome rows are made ahead) ended as it said.
    assert settled_rows.any() and not settled_rows.all()
    for name in OUTCOME_COLUMNS:
        assert list(provisional[name][settled_rows]) == list(at_the_end[name][settled_rows])


@pytest.mark.parametrize("change", ["resolved not sent", "resolved sent", "taken", "failed"])
def test_a_drafted_outcome_reads_again_what_an_operator_or_another_file_changes(
    tmp_path: Path, journal_location: Path | PostgresLocation, change: str
) -> None:
    """Between the draft and the end, ``filedrop resolve`` may settle this file's UNKNOWN batch
    (the run advised it), and another file may send a number this one holds NOT_SENT or FAILED:
    the outcome must say what the journal says at the end, or a resolved row is lost."""
    mapping = load_mapping(EXAMPLES.parent / "mappings" / "norwegian-erp.toml")
    path = write_erp_csv(tmp_path / "d.csv", [erp_row(f"{6000 + i}") for i in range(4)])

    def prepared_now() -> Prepared:
        return prepare(read_table(path, mapping.read), mapping)

    def succeed(batch: int, few: list[str]) -> None:
        results = [(n, f"i-{n}", f"c-{n}", f"C-{n}") for n in few]
        journal.batches_finished([FinishedBatch(batch, "SUCCESS", results, [])])

    prepared = prepared_now()
    numbers = [invoice.invoice_number for invoice in prepared.invoices]
    with Journal(journal_location) as journal:
        now = journal.claim_file(path=path, sha256="02", target="t", owner="me", stale_s=60)
        other = journal.claim_file(
            path=tmp_path / "o.csv", sha256="03", target="t", owner="x", stale_s=60
        )
        assert now is not None and other is not None
        first, _ = journal.claim_batch(file_id=now.id, target="t", invoice_numbers=numbers[:1])
        if change.startswith("resolved"):
            journal.batch_unknown(first, message="the POST timed out")
        elif change == "taken":
            journal.batch_not_sent(first, message="not sent: 503")
        else:
            journal.batch_refused(first, message="refused: bad JSON")
        done, _ = journal.claim_batch(file_id=now.id, target="t", invoice_numbers=numbers[1:3])
        journal.batch_submitted(done, batch_id="b-done")
        succeed(done, numbers[1:3])
        last, _ = journal.claim_batch(file_id=now.id, target="t", invoice_numbers=numbers[3:])
        journal.batch_submitted(last, batch_id="b-last")
        draft = _OutcomeDraft(prepared, target="t", file_id=now.id)
        draft.read(journal)
        if change.startswith("resolved"):
            holder = journal.file(now.id).owner  # as resolve does once the run's lease ran out
            assert journal.resolve_batch(
                first, sent=change.endswith(" sent"), note="asked Amili", holder=holder
            )
        else:
            taken, claimed = journal.claim_batch(
                file_id=other.id, target="t", invoice_numbers=numbers[:1]
            )
            assert claimed == numbers[:1]
            journal.batch_submitted(taken, batch_id="b-other")
        succeed(last, numbers[3:])
        draft.read(journal)
        drafted = draft.frame()
        at_the_end, _ = _outcomes(prepared_now(), journal, target="t", file_id=now.id)
    pd.testing.assert_frame_equal(drafted, at_the_end)
    assert drafted["outcome_status"].tolist()[1:] == ["SUCCEEDED"] * 3


def test_a_chunk_of_outcomes_is_each_invoices_own_outcome(
    tmp_path: Path, journal_location: Path | PostgresLocation
) -> None:
    """The outcome is built a column at a time from the journal's rows; it must say for every
    state what the one-invoice-at-a-time rule says: sent from another file, still pending with
    and without a failed poll, refused, unknown, not sent, failed with its message, claimed."""
    numbers = [f"{8000 + i}" for i in range(50)]
    with Journal(journal_location) as journal:

        def claim(file_id: int, few: list[str], at: int) -> int:
            batch, claimed = journal.claim_batch(file_id=file_id, target="t", invoice_numbers=few)
            assert claimed == few
            journal.batch_submitted(batch, batch_id=f"b-{at}")
            return batch

        def finish(batch: int, few: list[str]) -> None:
            succeeded = [(n, f"i-{n}", f"c-{n}", f"C-{n}") for n in few[::2]]
            failed = [(n, f"amount {n} is not a number") for n in few[1::2]]
            journal.batches_finished([FinishedBatch(batch, "SUCCESS", succeeded, failed)])

        earlier = journal.claim_file(
            path=tmp_path / "earlier.csv", sha256="01", target="t", owner="me", stale_s=60
        )
        now = journal.claim_file(
            path=tmp_path / "now.csv", sha256="02", target="t", owner="me", stale_s=60
        )
        assert earlier is not None and now is not None
        finish(claim(earlier.id, numbers[0:6], 0), numbers[0:6])
        claim(earlier.id, numbers[6:10], 6)  # still PENDING, in the other file
        finish(claim(now.id, numbers[10:20], 10), numbers[10:20])
        journal.batch_still_queued(claim(now.id, numbers[20:25], 20), failure="timed out")
        journal.batch_still_queued(claim(now.id, numbers[25:30], 25), failure=None)
        journal.batch_unknown(claim(now.id, numbers[30:35], 30), message="the POST timed out")
        journal.batch_not_sent(claim(now.id, numbers[35:40], 35), message="not sent: 503")
        journal.batch_refused(claim(now.id, numbers[40:45], 40), message="refused: bad JSON")
        journal.claim_batch(file_id=now.id, target="t", invoice_numbers=numbers[45:])
        decide, batch_ids = _outcome_decider(journal, file_id=now.id)
        rows = [row for chunk in journal.invoice_rows(target="t", numbers=numbers) for row in chunk]
        records = list(journal.each_invoice(target="t", numbers=numbers))
        own = [number for number, *_ in rows]
        by_column = _chunk_outcomes(rows, own, decide, file_id=now.id, batch_ids=batch_ids)
        one_by_one = [decide(record.invoice_number, record) for record in records]
    assert len(records) == 50
    assert [list(row) for row in zip(*by_column, strict=True)] == [list(o) for o in one_by_one]
    statuses = {status for status, *_ in one_by_one}
    assert statuses >= {"DUPLICATE", "SUCCEEDED", "FAILED", "PENDING", "UNKNOWN", "NOT_SENT"}


def sent_with_another_journal(tmp_path: Path, sandbox: Sandbox, *, first: int) -> Path:
    """The outcome of a.csv, three invoices from ``first`` on, sent from another inbox with
    another journal (another host's, say)."""
    elsewhere = tmp_path / "old-inbox"
    elsewhere.mkdir()
    sent = write_erp_csv(elsewhere / "a.csv", [erp_row(str(first + n)) for n in range(3)])
    settings = sandbox_settings(elsewhere, sandbox.url, state=tmp_path / "old.db")
    with open_context(settings) as old:
        assert process_guarded(sent, old).state is FileState.DONE
    return elsewhere / "a.outcome.csv"


def test_an_outcome_of_another_journal_dropped_in_is_seen_at_once(
    tmp_path: Path, inbox: Path, sandbox: Sandbox, make_context: Callable[..., Context]
) -> None:
    """A daemon looked over its inbox for outcomes that show invoices sent that its journal
    does not know, found none, and kept that for 30 s: an old inbox copied in within them, its
    outcome and a re-export of its invoices under a new name, had the re-export sent again (a
    hostile review, helper-140). The look is made again as soon as an outcome comes."""
    outcome = sent_with_another_journal(tmp_path, sandbox, first=8300)
    ctx = make_context()
    assert ctx.lost_journal_elsewhere() is None
    shutil.copy(outcome, inbox / "a.outcome.csv")
    again = write_erp_csv(inbox / "b.csv", [erp_row(str(8300 + n)) for n in range(3)])
    assert ctx.lost_journal_elsewhere() == ("a.csv", inbox / "a.outcome.csv")
    report = process_guarded(again, ctx)
    assert report.state is FileState.SKIPPED and "a.outcome.csv" in (report.message or "")
    assert len(sandbox.received_invoice_numbers()) == 3


def test_an_outcome_of_another_journal_that_lands_while_a_file_is_read_stops_it(
    tmp_path: Path,
    inbox: Path,
    sandbox: Sandbox,
    make_context: Callable[..., Context],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A re-export is taken, and while it is read another host's outcome of the same invoices,
    sent under another name with another journal, lands in the inbox: the look before its
    first batch saw this file's own claimed batch as invoices known, and all went twice (a
    hostile review, helper-141). The look is made before the first batch is claimed."""
    outcome = sent_with_another_journal(tmp_path, sandbox, first=8400)
    rows = [erp_row(str(8400 + n)) for n in range(3)] + [erp_row(str(8500 + n)) for n in range(3)]
    again = write_erp_csv(inbox / "b.csv", rows)
    real = pipeline_module.prepare_parts

    def landing(*args: Any, **kwargs: Any) -> Any:
        shutil.copy(outcome, inbox / "a.outcome.csv")
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline_module, "prepare_parts", landing)
    report = process_guarded(again, make_context())
    assert report.state is FileState.RETRY and "a.outcome.csv" in (report.message or "")
    assert len(sandbox.received_invoice_numbers()) == 3
