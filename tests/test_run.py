"""`filedrop run` end to end: real files, real HTTP to the sandbox, a real SQLite journal."""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
from builders import EXAMPLES, MAPPINGS, ORG_ID, erp_row, filedrop, run_env, write_erp_csv

from filedrop.sandbox import Sandbox, SandboxOptions


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    folder = tmp_path / "inbox"
    folder.mkdir()
    return folder


def outcome_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep=";", encoding="cp1252", dtype=str, keep_default_na=False)


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
    assert "No files were ready" in out or "already processed" in out


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
    with Sandbox(SandboxOptions(delay_s=(1.5, 1.5))).start() as slow:
        write_erp_csv(inbox / "p.csv", [erp_row("6001")])
        env = run_env(inbox, slow.url, FILEDROP_POLL_TIMEOUT_S="0.3")
        filedrop("run", environ=env, expect=3)
        outcome = outcome_csv(inbox / "p.outcome.csv")
        assert list(outcome["outcome_status"]) == ["PENDING"]
        assert outcome["outcome_batch_id"][0]
        time.sleep(1.5)
        filedrop("run", environ=run_env(inbox, slow.url))
        assert list(outcome_csv(inbox / "p.outcome.csv")["outcome_status"]) == ["SUCCEEDED"]
        assert slow.counters().posts == 1


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
    """Headers no mapping knows: ERROR naming the file's headers; nothing sent."""
    (inbox / "other.csv").write_text("Foo;Bar\n1;2\n", encoding="utf-8")
    filedrop("run", environ=run_env(inbox, sandbox.url), expect=1)
    outcome = pd.read_csv(inbox / "other.outcome.csv", dtype=str, encoding="utf-8-sig")
    assert outcome["outcome_status"][0] == "ERROR"
    assert "Foo" in outcome["outcome_message"][0]
    assert sandbox.counters().posts == 0


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
    with sqlite3.connect(inbox / ".filedrop" / "state.db") as db:
        assert db.execute("SELECT name, state FROM files").fetchall() == [("j.csv", "done")]
        batches = db.execute("SELECT state, api_status, batch_id FROM batches").fetchall()
        assert len(batches) == 2 and all(b[0] == "done" and b[2] for b in batches)
        cases = db.execute("SELECT invoice_number, status, case_number FROM invoices").fetchall()
        assert sorted(c[:2] for c in cases) == [("9301", "SUCCEEDED"), ("9302", "SUCCEEDED")]


def test_a_file_that_cannot_even_be_opened_still_gets_an_error_outcome(
    inbox: Path, sandbox: Sandbox
) -> None:
    """No bytes readable (here: a folder where a file was expected): ERROR outcome saying so."""
    from filedrop.api.client import AmiliClient, Credentials
    from filedrop.journal import Journal
    from filedrop.mapping import load_mappings
    from filedrop.pipeline import Context, process_file

    locked = inbox / "locked.csv"
    locked.mkdir()  # reading it fails like a file another program holds locked
    client = AmiliClient(
        auth_url=sandbox.url,
        api_url=sandbox.url,
        credentials=Credentials(client_id="c", client_secret="s"),
    )
    with Journal(inbox / "state.db") as journal:
        ctx = Context(
            client=client,
            journal=journal,
            mappings=load_mappings(MAPPINGS),
            environment="sandbox",
            org_id=ORG_ID,
        )
        try:
            report = process_file(locked, ctx)
        finally:
            ctx.close()
            client.close()
    assert report.state == "error"
    assert report.counts == {"ERROR": 1}
    outcome = pd.read_csv(inbox / "locked.outcome.csv", dtype=str, encoding="utf-8-sig")
    assert "locked.csv: cannot be opened" in outcome["outcome_message"][0]


def test_batches_of_a_replaced_file_are_still_settled(inbox: Path) -> None:
    """A PENDING file re-exported with more rows: the old batch's fate is learnt anyway."""
    with Sandbox(SandboxOptions(delay_s=(1.0, 1.0))).start() as slow:
        write_erp_csv(inbox / "x.csv", [erp_row("6101")])
        filedrop("run", environ=run_env(inbox, slow.url, FILEDROP_POLL_TIMEOUT_S="0.2"), expect=3)
        write_erp_csv(inbox / "x.csv", [erp_row("6101"), erp_row("6102")])
        time.sleep(1.0)
        env = run_env(inbox, slow.url)
        filedrop("run", environ=env)
        outcome = outcome_csv(inbox / "x.outcome.csv")
        assert list(outcome["outcome_status"]) == ["DUPLICATE", "SUCCEEDED"]
        with sqlite3.connect(inbox / ".filedrop" / "state.db") as db:
            states = db.execute("SELECT state FROM batches ORDER BY id").fetchall()
            first = db.execute("SELECT status FROM invoices WHERE invoice_number = '6101'")
            assert states == [("done",), ("done",)]
            assert first.fetchone() == ("SUCCEEDED",)
        _, out, _ = filedrop("status", environ=env)
        assert "still pending" not in out
        assert slow.received_invoice_numbers() == ["6101", "6102"]


def test_a_post_refused_for_the_settings_is_sent_by_the_next_run(
    inbox: Path, sandbox: Sandbox
) -> None:
    """A 404 on POST (wrong org id or URL) is not the invoices' fault: FAILED 'not sent' now,
    and the next run, with the setting fixed, sends them."""
    write_erp_csv(inbox / "n.csv", [erp_row("6201")])
    env = run_env(inbox, sandbox.url)
    sandbox.fail_next(404, route="invoices")
    filedrop("run", environ=env, expect=1)
    assert "not sent" in outcome_csv(inbox / "n.outcome.csv")["outcome_message"][0]
    filedrop("run", environ=env)
    assert list(outcome_csv(inbox / "n.outcome.csv")["outcome_status"]) == ["SUCCEEDED"]
    assert sandbox.received_invoice_numbers() == ["6201"]
