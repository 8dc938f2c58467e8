"""`filedrop run` over a folder that is not trusted: links, pipes, names that hold control
characters or are too long, outcome names two inputs would share, empty files, and the temporary
files a killed outcome write leaves. Real files, the real sandbox, the real journal."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
import xlsxwriter
from builders import ERP_HEADER, erp_row, filedrop, run_env, write_erp_csv
from conftest import FakeTime

from filedrop.pipeline import Context, process_file
from filedrop.runner import ready_files
from filedrop.sandbox import Sandbox
from filedrop.states import FileState

FORGED = "12:00:00 INFO    a.csv: 999 SUCCEEDED"
LONG_OLD = 1_000_000_000  # an mtime older than any window


def outcome_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep=";", encoding="cp1252", dtype=str, keep_default_na=False)


def error_outcome(path: Path) -> pd.DataFrame:
    """An ERROR outcome (UTF-8 CSV with commas, or the first sheet of an xlsx)."""
    if path.suffix == ".xlsx":
        return pd.read_excel(
            path, sheet_name=0, dtype=str, keep_default_na=False, engine="calamine"
        )
    return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")


def write_erp_xlsx(path: Path, rows: Sequence[str], *, far_cell: bool = False) -> Path:
    """The ERP layout as a workbook; ``far_cell`` adds a cell in column XFD (the last one)."""
    workbook = xlsxwriter.Workbook(str(path))
    sheet = workbook.add_worksheet()
    for r, line in enumerate([ERP_HEADER, *rows]):
        for c, text in enumerate(line.split(";")):
            if text:
                sheet.write_string(r, c, text)
    if far_cell:
        sheet.write_string(1, 16383, "x")
    workbook.close()
    os.utime(path, (LONG_OLD, LONG_OLD))
    return path


def everything_written(root: Path) -> bytes:
    """The bytes of every regular file under ``root`` (outcomes, journal, logs), links skipped."""
    found = b""
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            if path.is_file() and not path.is_symlink():
                found += path.read_bytes()
    return found


# -- links, pipes and archive/ -----------------------------------------------------------------


def test_a_link_to_a_config_holding_a_secret_is_never_read(
    tmp_path: Path, inbox: Path, sandbox: Sandbox
) -> None:
    """`ln -s filedrop.toml inbox/config.csv`: no outcome, and the secret is printed nowhere."""
    config = tmp_path / "filedrop.toml"
    config.write_text('client_secret = "s3cr3t"\n', encoding="utf-8")
    (inbox / "config.csv").symlink_to(config)
    _, out, err = filedrop("run", "--debug", environ=run_env(inbox, sandbox.url))
    assert not (inbox / "config.outcome.csv").exists()
    assert "s3cr3t" not in out + err
    written = everything_written(inbox)
    assert b"s3cr3t" not in written
    assert "config.csv: ignored (symbolic link, never followed)" in err
    assert out == "No files were ready in the inbox.\n"


def test_links_pipes_and_dangling_links_are_ignored_with_one_line_each(
    tmp_path: Path, inbox: Path, sandbox: Sandbox
) -> None:
    """A link to a good spreadsheet outside, one to a file inside, a dangling one and a named
    pipe: nothing of theirs is sent, each is logged once, and the real file goes through."""
    outside = write_erp_csv(tmp_path / "outside.csv", [erp_row("6101")])
    real = write_erp_csv(inbox / "real.csv", [erp_row("6102")])
    (inbox / "outside-link.csv").symlink_to(outside)
    (inbox / "inside-link.csv").symlink_to(real)
    (inbox / "dangling.csv").symlink_to(tmp_path / "nowhere.csv")
    os.mkfifo(inbox / "pipe.csv")
    _, out, err = filedrop("run", environ=run_env(inbox, sandbox.url))
    assert out == "SANDBOX run: nothing was sent to Amili.\nreal.csv: 1 SUCCEEDED\n" + (
        f"  outcome: {inbox / 'real.outcome.csv'}\n"
    )
    for name in ("outside-link.csv", "inside-link.csv", "dangling.csv"):
        assert err.count(f"{name}: ignored (symbolic link, never followed)") == 1
    assert err.count("pipe.csv: ignored (not a regular file)") == 1
    assert sorted(sandbox.received_invoice_numbers()) == ["6102"]
    assert sorted(p.name for p in inbox.iterdir() if "outcome" in p.name) == ["real.outcome.csv"]


def test_a_link_put_in_place_of_a_file_after_the_scan_is_refused(
    tmp_path: Path, inbox: Path, sandbox: Sandbox, make_context: Callable[..., Context]
) -> None:
    """The file was regular when scanned, a link when processed: not read, no outcome, no POST."""
    outside = write_erp_csv(tmp_path / "outside.csv", [erp_row("6201")])
    swapped = inbox / "swapped.csv"
    swapped.symlink_to(outside)
    report = process_file(swapped, make_context())
    assert (report.state, report.message) == (
        FileState.SKIPPED,
        "ignored (a symbolic link, never followed)",
    )
    assert not (inbox / "swapped.outcome.csv").exists()
    assert sandbox.counters().posts == 0


def test_an_archive_folder_that_is_a_link_is_not_followed(
    tmp_path: Path, inbox: Path, sandbox: Sandbox
) -> None:
    """archive/ links elsewhere: nothing is moved there, files stay, and the log says so once."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (inbox / "archive").symlink_to(elsewhere, target_is_directory=True)
    write_erp_csv(inbox / "a.csv", [erp_row("6301")])
    write_erp_csv(inbox / "b.csv", [erp_row("6302")])
    _, _, err = filedrop("run", environ=run_env(inbox, sandbox.url, FILEDROP_ARCHIVE="true"))
    assert list(elsewhere.iterdir()) == []
    assert sorted(p.name for p in inbox.iterdir() if p.is_file() and not p.is_symlink()) == [
        "a.csv",
        "a.outcome.csv",
        "b.csv",
        "b.outcome.csv",
    ]
    assert (
        err.count("is not a folder filedrop may use (a symbolic link, which it never follows") == 1
    )


def test_filedrops_own_folder_a_link_stops_the_file_until_it_is_moved_away(
    tmp_path: Path, inbox: Path, sandbox: Sandbox
) -> None:
    """.filedrop links elsewhere: nothing is sent or written there, the run exits 2 (setup),
    and its summary says the file waits for that to be fixed, not for the next run alone."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (inbox / ".filedrop").symlink_to(elsewhere, target_is_directory=True)
    write_erp_csv(inbox / "a.csv", [erp_row("6301")])
    _, out, _ = filedrop("run", environ=run_env(inbox, sandbox.url), expect=2)
    assert (
        "a.csv: not finished; the next run once this is fixed resumes it\n"
        f"  {inbox / '.filedrop'} is a symbolic link, not a folder filedrop may use"
    ) in out
    assert list(elsewhere.iterdir()) == []
    assert sandbox.counters().posts == 0
    (inbox / ".filedrop").unlink()
    filedrop("run", environ=run_env(inbox, sandbox.url))
    assert sandbox.received_invoice_numbers() == ["6301"]


# -- names are data -----------------------------------------------------------------------------


def test_a_name_holding_a_newline_forges_no_line_in_logs_summary_or_status(
    inbox: Path, sandbox: Sandbox
) -> None:
    """Newlines and an escape character in names show as \\n and \\x1b on the file's own line,
    for an ignored name, a processed one, in the log, the run's summary and `status`."""
    ignored = f"x.csv\n{FORGED}"  # not a spreadsheet by its suffix: logged as ignored
    taken = f"x\n{FORGED}\n.csv"
    write_erp_csv(inbox / ignored, [erp_row("6400")])
    write_erp_csv(inbox / taken, [erp_row("6401")])
    write_erp_csv(inbox / "\x1b[31mred.csv", [erp_row("6402")])
    env = run_env(inbox, sandbox.url)
    _, out, err = filedrop("run", environ=env)
    _, status, _ = filedrop("status", environ=env)
    for text in (out, err, status):
        assert not any(line.startswith("12:00:00 INFO") for line in text.splitlines())
        assert "\x1b" not in text
    shown = f"x\\n{FORGED}\\n.csv"
    assert f"{shown}: 1 SUCCEEDED" in out.splitlines()
    assert "\\x1b[31mred.csv: 1 SUCCEEDED" in out.splitlines()
    assert sum(line.endswith(f"INFO    {shown}: claimed") for line in err.splitlines()) == 1
    ignored_line = f"INFO    x.csv\\n{FORGED}: ignored (not a spreadsheet)"
    assert sum(line.endswith(ignored_line) for line in err.splitlines()) == 1
    assert sum(f"  {shown}  done  1 SUCCEEDED" in line for line in status.splitlines()) == 1
    assert sorted(sandbox.received_invoice_numbers()) == ["6401", "6402"]


def test_an_error_message_about_such_a_name_escapes_it_in_the_outcome(
    inbox: Path, sandbox: Sandbox
) -> None:
    """An empty file named with a newline: its ERROR outcome's message shows the name escaped."""
    (inbox / "tom\nfil.csv").write_bytes(b"")
    filedrop("run", environ=run_env(inbox, sandbox.url), expect=1)
    error = error_outcome(inbox / "tom\nfil.outcome.csv")
    assert list(error["outcome_message"]) == ["tom\\nfil.csv: the file is empty; export it again"]


# -- nothing is sent for a file whose outcome cannot be written ----------------------------------


def test_a_name_too_long_for_its_outcome_is_refused_before_anything_is_sent(
    inbox: Path, sandbox: Sandbox
) -> None:
    """251 characters: `<stem>.outcome.csv` cannot exist, so ERROR, no POST, and a rerun too."""
    name = "f" * 247 + ".csv"
    write_erp_csv(inbox / name, [erp_row("6501")])
    env = run_env(inbox, sandbox.url)
    _, out, _ = filedrop("run", environ=env, expect=1)
    assert out.splitlines()[1:] == [
        f"{name}: 1 ERROR",
        f"  {name}: the name is too long for its outcome file {'f' * 247}.outcome.csv next to "
        "it; rename it shorter and drop it again",
    ]
    _, again, _ = filedrop("run", environ=env)
    assert again.splitlines()[1:] == [f"{name}: skipped (already processed)"]
    assert sandbox.counters().posts == 0


def test_a_name_whose_outcome_could_not_be_kept_in_archive_is_refused_before_sending(
    inbox: Path, sandbox: Sandbox
) -> None:
    """227 characters: its outcome fits, but not under an archive stamp, so a later version of
    the file could never keep it aside and would stay unsent for good: refused now, unsent."""
    name = "g" * 223 + ".csv"
    write_erp_csv(inbox / name, [erp_row("6502")])
    _, out, _ = filedrop("run", environ=run_env(inbox, sandbox.url), expect=1)
    assert out.splitlines()[2] == (
        f"  {name}: the name is too long for its outcome file {'g' * 223}.outcome.csv next to "
        "it; rename it shorter and drop it again"
    )
    assert sandbox.counters().posts == 0


def test_a_workbook_using_column_xfd_is_refused_before_anything_is_sent(
    inbox: Path, sandbox: Sandbox
) -> None:
    """No room for the six outcome columns after column XFD: ERROR outcome saying so, no POST."""
    write_erp_xlsx(inbox / "wide.xlsx", [erp_row("6601")], far_cell=True)
    # Allowed to be read (the read limits refuse such a sheet by default), so that the outcome's
    # own limit is what stops it.
    env = run_env(inbox, sandbox.url, FILEDROP_MAX_COLUMNS="16384")
    _, out, _ = filedrop("run", environ=env, expect=1)
    message = (
        "wide.xlsx: 16384 columns leave no room for the 7 outcome columns in an xlsx outcome "
        "(at most 16,384); remove the empty or unused columns, or save the sheet as CSV, and "
        "drop it again"
    )
    assert out.splitlines()[1:3] == ["wide.xlsx: 1 ERROR", f"  {message}"]
    assert list(error_outcome(inbox / "wide.outcome.xlsx")["outcome_message"]) == [message]
    assert sandbox.counters().posts == 0


def test_report_xlsx_and_report_xls_each_keep_their_own_outcome(
    inbox: Path, sandbox: Sandbox
) -> None:
    """report.xlsx keeps report.outcome.xlsx; report.xls (unreadable here) gets
    report.xls.outcome.xlsx, and neither overwrites the other."""
    write_erp_xlsx(inbox / "report.xlsx", [erp_row("6701")])
    (inbox / "report.xls").write_bytes(b"not a workbook")
    os.utime(inbox / "report.xls", (LONG_OLD - 10, LONG_OLD - 10))  # taken first
    filedrop("run", environ=run_env(inbox, sandbox.url), expect=1)
    good = pd.read_excel(inbox / "report.outcome.xlsx", sheet_name=0, dtype=str, engine="calamine")
    assert list(good["outcome_status"]) == ["SUCCEEDED"]
    bad = error_outcome(inbox / "report.xls.outcome.xlsx")
    assert list(bad["file"]) == ["report.xls"]
    assert list(bad["outcome_status"]) == ["ERROR"]
    assert sandbox.received_invoice_numbers() == ["6701"]


def test_names_equal_but_for_case_get_distinct_outcomes(inbox: Path, sandbox: Sandbox) -> None:
    """Report.XLSX beside report.xlsx (one file on a share that ignores case) writes
    Report.XLSX.outcome.xlsx; both files are sent and answered."""
    write_erp_xlsx(inbox / "report.xlsx", [erp_row("6801")])
    write_erp_xlsx(inbox / "Report.XLSX", [erp_row("6802")])
    filedrop("run", environ=run_env(inbox, sandbox.url))
    for outcome, number in (("report.outcome.xlsx", "6801"), ("Report.XLSX.outcome.xlsx", "6802")):
        rows = pd.read_excel(inbox / outcome, sheet_name=0, dtype=str, engine="calamine")
        assert list(zip(rows["Fakturanr"], rows["outcome_status"], strict=True)) == [
            (number, "SUCCEEDED")
        ]


# -- empty files ----------------------------------------------------------------------------------


def test_a_file_that_stays_empty_for_the_window_is_ready(inbox: Path) -> None:
    """An empty file unchanged for the window is taken (to be told it is empty), not 'changing'."""
    clock = FakeTime()
    empty = inbox / "empty.csv"
    empty.write_bytes(b"")
    ready, changing = ready_files([empty], stability_s=5.0, clock=clock.clock, sleep=clock.sleep)
    assert (ready, changing) == ([empty], [])
    assert clock.sleeps == [5.0]


def test_an_empty_file_gets_one_error_and_is_taken_again_when_it_changes(
    inbox: Path, sandbox: Sandbox
) -> None:
    """ERROR "the file is empty" once; the next run skips it; filled, it is sent."""
    empty = inbox / "empty.csv"
    empty.write_bytes(b"")
    env = run_env(inbox, sandbox.url)
    _, out, _ = filedrop("run", environ=env, expect=1)
    assert out.splitlines()[1:3] == [
        "empty.csv: 1 ERROR",
        "  empty.csv: the file is empty; export it again",
    ]
    assert list(error_outcome(inbox / "empty.outcome.csv")["outcome_status"]) == ["ERROR"]
    _, again, _ = filedrop("run", environ=env)
    assert again.splitlines()[1:] == ["empty.csv: skipped (already processed)"]
    write_erp_csv(empty, [erp_row("6901")])
    filedrop("run", environ=env)
    assert list(outcome_csv(inbox / "empty.outcome.csv")["outcome_status"]) == ["SUCCEEDED"]
    assert sandbox.received_invoice_numbers() == ["6901"]


# -- what a killed outcome write leaves ---------------------------------------------------------


def test_stray_outcome_temporary_files_are_removed_at_the_next_start(
    tmp_path: Path, inbox: Path, sandbox: Sandbox
) -> None:
    """An old `.<outcome>.<8 hex>.tmp` goes; a fresh one (another process may be writing it), a
    link with that pattern, and other hidden temporary files stay."""
    stray = inbox / ".mars.outcome.csv.0123abcd.tmp"
    stray.write_bytes(b"Fakturanr;outcome_status\r\n1001;SUCC")
    os.utime(stray, (LONG_OLD, LONG_OLD))
    fresh = inbox / ".april.outcome.xlsx.89abcdef.tmp"
    fresh.write_bytes(b"PK")
    target = tmp_path / "keep.txt"
    target.write_text("keep", encoding="utf-8")
    link = inbox / ".mai.outcome.csv.00000000.tmp"
    link.symlink_to(target)
    os.utime(link, (LONG_OLD, LONG_OLD), follow_symlinks=False)
    other = inbox / ".notes.tmp"
    other.write_bytes(b"x")
    os.utime(other, (LONG_OLD, LONG_OLD))
    _, _, err = filedrop("run", environ=run_env(inbox, sandbox.url))
    assert not stray.exists()
    assert fresh.exists() and link.is_symlink() and other.exists() and target.exists()
    assert err.count("removed (left by an outcome write that was interrupted)") == 1
