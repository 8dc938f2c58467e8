"""`filedrop report`: a digest of a period across files and inboxes, from a real journal and the
outcomes real runs wrote, as an HTML page and an xlsx workbook."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
from builders import EXAMPLES, erp_row, filedrop, national_id, run_env, write_erp_csv

from filedrop.sandbox import Sandbox
from filedrop.states import ExitCode

HOSTILE_NAME = f"<img src=x onerror=alert(1)> & {national_id(1)}.csv"
MASKED_ID = national_id(1)[:6] + "*****"
HOSTILE_DUE_DATE = "<script>alert(1)</script>"


@dataclass(frozen=True)
class Setup:
    """Two inboxes sharing one journal, after real runs against the sandbox."""

    first: Path
    second: Path
    env: dict[str, str]
    out: Path


@pytest.fixture
def two_inboxes(inbox: Path, sandbox: Sandbox, tmp_path: Path) -> Setup:
    """The first inbox: SUCCEEDED, INVALID and FAILED rows in two files, one with a hostile name.
    The second: an UNKNOWN row (the answer to its POST was lost) and two NOT_SENT rows."""
    second = tmp_path / "second"
    second.mkdir()
    state = {"FILEDROP_STATE": str(tmp_path / "journal.db")}
    write_erp_csv(
        inbox / "mars.csv",
        [
            erp_row("1001"),
            erp_row("1002", amount="980"),
            erp_row("1003", amount="500", Forfallsdato="31.02.2024"),
            erp_row("1004", amount="2 000,00", email="kunde..1004@example.no"),
        ],
    )
    write_erp_csv(
        inbox / HOSTILE_NAME,
        [
            erp_row("1101", amount="100"),
            erp_row("1102", amount="50", Forfallsdato=HOSTILE_DUE_DATE),
        ],
    )
    filedrop("run", environ=run_env(inbox, sandbox.url, **state), expect=ExitCode.ATTENTION)

    write_erp_csv(second / "lost.csv", [erp_row("2001", amount="300")])
    sandbox.lose_next_response()
    filedrop("run", environ=run_env(second, sandbox.url, **state), expect=ExitCode.ATTENTION)
    write_erp_csv(
        second / "down.csv", [erp_row("2101", amount="400"), erp_row("2102", amount="450")]
    )
    sandbox.fail_next(503, count=6, retry_after="0", route="invoices")
    filedrop("run", environ=run_env(second, sandbox.url, **state), expect=ExitCode.UNFINISHED)
    return Setup(
        first=inbox,
        second=second,
        env=run_env(inbox, sandbox.url, **state),
        out=tmp_path / "reports",
    )


def report(setup: Setup, *args: str) -> tuple[str, Path, Path]:
    """Run `filedrop report --out ...`; what it printed, and the page and workbook it wrote."""
    _, out, _ = filedrop("report", "--out", str(setup.out), *args, environ=setup.env)
    page, book = (Path(line.strip()) for line in out.splitlines()[1:3])
    return out, page, book


def summary_of(book: Path) -> dict[str, dict[str, tuple[int, int, float | None]]]:
    """The Summary sheet: inbox folder -> status -> (files, rows, amount)."""
    sheet = openpyxl.load_workbook(book)["Summary"]
    found: dict[str, dict[str, tuple[int, int, float | None]]] = {}
    current: dict[str, tuple[int, int, float | None]] = {}
    for label, files, rows, amount in sheet.iter_rows(min_col=1, max_col=4, values_only=True):
        if isinstance(label, str) and label.startswith("Inbox "):
            current = found.setdefault(label.removeprefix("Inbox "), {})
        elif isinstance(files, int) and label:
            current[label] = (files, rows, amount)
    return found


def needs_a_person(book: Path) -> list[tuple[object, ...]]:
    """The rows of the "Needs a person" sheet, without its header: (inbox, file, row, invoice
    number, status, message), the target left out."""
    sheet = openpyxl.load_workbook(book)["Needs a person"]
    rows = list(sheet.iter_rows(min_row=2, values_only=True))
    return [(r[0], r[2], r[3], r[4], r[5], r[6]) for r in rows]


def outcome_message(path: Path, row: int) -> str:
    """The outcome_message of data row ``row`` (1-based, as the report counts: header is 1)."""
    frame = pd.read_csv(path, sep=";", encoding="cp1252", dtype=str, keep_default_na=False)
    return frame["outcome_message"][row - 2]


def test_digest_counts_files_rows_and_amounts_per_inbox_and_status(two_inboxes: Setup) -> None:
    """Per inbox: files and rows per status, amounts from the mapping's amount column, a total."""
    out, _, book = report(two_inboxes)
    assert out.splitlines()[0].endswith(": 4 files in 2 inboxes, 4 rows need a person.")
    assert summary_of(book) == {
        str(two_inboxes.first): {
            "SUCCEEDED": (2, 3, 2314.5),
            "FAILED": (1, 1, 2000.0),
            "INVALID": (2, 2, 550.0),
            "Total": (2, 6, 4864.5),
        },
        str(two_inboxes.second): {
            "NOT_SENT": (1, 2, 850.0),
            "UNKNOWN": (1, 1, 300.0),
            "Total": (2, 3, 1150.0),
        },
    }


def test_rows_that_need_a_person_name_file_row_invoice_number_and_message(
    two_inboxes: Setup,
) -> None:
    """INVALID, FAILED and UNKNOWN rows are listed; NOT_SENT rows of a file seen today are not."""
    _, _, book = report(two_inboxes)
    first, second = str(two_inboxes.first), str(two_inboxes.second)
    hostile = HOSTILE_NAME.replace(national_id(1), MASKED_ID)
    assert needs_a_person(book) == [
        (
            first,
            hostile,
            3,
            "1102",
            "INVALID",
            f'Forfallsdato "{HOSTILE_DUE_DATE}" is not a date (expected dd.mm.yyyy or dd.mm.yy)',
        ),
        (
            first,
            "mars.csv",
            4,
            "1003",
            "INVALID",
            'Forfallsdato "31.02.2024" is not a date (expected dd.mm.yyyy or dd.mm.yy)',
        ),
        (
            first,
            "mars.csv",
            5,
            "1004",
            "FAILED",
            'Debtor email "kunde..1004@example.no" is invalid',
        ),
        (
            second,
            "lost.csv",
            2,
            "2001",
            "UNKNOWN",
            outcome_message(two_inboxes.second / "lost.outcome.csv", 2),
        ),
    ]


def test_rows_not_sent_for_more_than_a_day_need_a_person(two_inboxes: Setup) -> None:
    """A period ending more than a day after the file was first seen lists its NOT_SENT rows,
    and the files are named after the period."""
    now = dt.datetime.now().astimezone().replace(second=0, microsecond=0)
    since, until = now - dt.timedelta(hours=1), now + dt.timedelta(days=2)
    _, page, book = report(
        two_inboxes, "--since", f"{since:%Y-%m-%dT%H:%M}", "--until", f"{until:%Y-%m-%dT%H:%M}"
    )
    stem = f"filedrop-report-{since:%Y-%m-%dT%H%M}_{until:%Y-%m-%dT%H%M}"
    assert (page.name, book.name) == (f"{stem}.html", f"{stem}.xlsx")
    message = "not sent: Amili was not available (HTTP 503, 6 attempts); the next run sends it"
    second = str(two_inboxes.second)
    listed = [row for row in needs_a_person(book) if row[0] == second]
    assert [row[1:5] for row in listed] == [
        ("down.csv", 2, "2101", "NOT_SENT"),
        ("down.csv", 3, "2102", "NOT_SENT"),
        ("lost.csv", 2, "2001", "UNKNOWN"),
    ]
    assert [row[5] for row in listed[:2]] == [message, message]


def test_a_journal_that_does_not_exist_is_one_sentence_not_an_empty_digest(
    tmp_path: Path,
) -> None:
    """A mistyped FILEDROP_STATE must not mail "nothing needs a person" every day."""
    missing = tmp_path / "no-such-journal.db"
    _, _, err = filedrop(
        "report", "--out", str(tmp_path), environ={"FILEDROP_STATE": str(missing)}, expect=2
    )
    assert err == (
        f"filedrop: No journal at {missing}; check FILEDROP_STATE (filedrop run and watch write "
        "it).\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_an_out_that_is_a_file_is_one_sentence(two_inboxes: Setup) -> None:
    """--out naming a file (or a path through one) said "unexpected error: [Errno 17]"."""
    taken = two_inboxes.out.parent / "filedrop.toml"
    taken.write_text("", encoding="utf-8")
    for out in (taken, taken / "reports"):
        _, _, err = filedrop("report", "--out", str(out), environ=two_inboxes.env, expect=2)
        assert err == (
            f"filedrop: --out {out} is a file, not a folder; give the folder to write the "
            "report into.\n"
        )


def test_a_period_without_files_says_so(two_inboxes: Setup) -> None:
    """A period before any run: no inboxes, said in both formats."""
    out, page, book = report(two_inboxes, "--until", "2020-01-02", "--days", "1")
    assert out.splitlines()[0] == (
        "2020-01-01 00:00 to 2020-01-02 00:00: 0 files in 0 inboxes, 0 rows need a person."
    )
    assert page.name == "filedrop-report-2020-01-01_2020-01-02.html"
    assert "<p>No files were processed in this period.</p>" in page.read_text(encoding="utf-8")
    assert summary_of(book) == {}
    assert needs_a_person(book) == []


class _Tags(HTMLParser):
    """Every tag and attribute of a page, and its text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.attributes: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attributes.update(name for name, _ in attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_the_page_is_self_contained_with_hostile_names_escaped_and_ids_masked(
    two_inboxes: Setup,
) -> None:
    """No script, link or image of its own: the hostile file name and cell show as text, the
    national id in the name masked, in the page and in the workbook."""
    _, page, book = report(two_inboxes)
    html = page.read_text(encoding="utf-8")
    parsed = _Tags()
    parsed.feed(html)
    assert parsed.tags <= {
        "html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "table", "tr",
        "th", "td", "br", "span",
    }  # fmt: skip
    assert parsed.attributes == {"lang", "charset", "class", "style"}
    text = "".join(parsed.text)
    assert HOSTILE_NAME.replace(national_id(1), MASKED_ID) in text
    assert f'Forfallsdato "{HOSTILE_DUE_DATE}" is not a date' in text
    assert national_id(1) not in html
    cells = [
        str(cell)
        for sheet in openpyxl.load_workbook(book)
        for row in sheet.iter_rows(values_only=True)
        for cell in row
        if cell is not None
    ]
    assert not any(national_id(1) in cell for cell in cells)
    assert sum(cell == HOSTILE_NAME.replace(national_id(1), MASKED_ID) for cell in cells) == 2


def test_an_excel_outcome_gives_amounts_per_line_and_the_rows_of_the_sheet(
    inbox: Path, sandbox: Sandbox, tmp_path: Path
) -> None:
    """The example workbook groups lines into invoices: amounts are the lines' claims, rows are
    the rows of the sheet (below its title lines)."""
    shutil.copy(EXAMPLES / "apne-poster-mars.xlsx", inbox)
    env = run_env(inbox, sandbox.url)
    filedrop("run", environ=env, expect=ExitCode.ATTENTION)
    _, out, _ = filedrop("report", "--out", str(tmp_path), environ=env)
    book = Path(out.splitlines()[2].strip())
    assert summary_of(book) == {
        str(inbox): {
            "SUCCEEDED": (1, 8, 25447.9),
            "FAILED": (1, 2, 960.0),
            "INVALID": (1, 6, 6975.0),
            "Total": (1, 16, 33382.9),
        }
    }
    listed = [(row, number, status) for _, _, row, number, status, _ in needs_a_person(book)]
    assert listed == [
        (9, "24-1003", "FAILED"),
        (10, "24-1003", "FAILED"),
        (11, "24-1004", "INVALID"),
        (12, "24-1004", "INVALID"),
        (13, "24-1005", "INVALID"),
        (14, "24-1006", "INVALID"),
        (15, "24-1007", "INVALID"),
        (16, "24-1008", "INVALID"),
    ]


def test_a_file_whose_outcome_is_gone_is_counted_from_the_journal(two_inboxes: Setup) -> None:
    """Its rows still count, without amounts, and the file says why."""
    (two_inboxes.first / "mars.outcome.csv").unlink()
    _, _, book = report(two_inboxes)
    assert summary_of(book)[str(two_inboxes.first)] == {
        "SUCCEEDED": (2, 3, 100.0),
        "FAILED": (1, 1, None),
        "INVALID": (2, 2, 50.0),
        "Total": (2, 6, 150.0),
    }
    files = openpyxl.load_workbook(book)["Files"]
    notes = {row[2]: row[10] for row in files.iter_rows(min_row=2, values_only=True)}
    assert notes["mars.csv"].startswith("its outcome could not be read (")
    assert notes["mars.csv"].endswith("); counts from the journal")


@pytest.mark.parametrize(
    ("args", "sentence"),
    [
        (
            ["--since", "1st of March"],
            '--since is "1st of March"; give a date or a time as YYYY-MM-DD or YYYY-MM-DDTHH:MM '
            "(local time), e.g. 2024-03-01 or 2024-03-01T07:00.",
        ),
        (["--days", "0"], "--days is 0; give a number of days above 0, e.g. 7."),
        (
            ["--since", "2024-03-02", "--until", "2024-03-01"],
            "the period starts at 2024-03-02 00:00 and ends at 2024-03-01 00:00; give a --since "
            "before --until.",
        ),
        *(
            (
                args,
                "the period reaches outside the years 1 to 9999 (--since, --until or --days); "
                "give one within them, e.g. --days 7.",
            )
            for args in (
                ["--days", "1e9"],
                ["--days", "3000000"],
                ["--since", "0001-01-01"],
                ["--since", "0001-01-01T00:00+14:00"],
                ["--until", "9999-12-31T23:59-12:00"],
            )
        ),
    ],
)
def test_a_wrong_period_is_one_sentence(tmp_path: Path, args: list[str], sentence: str) -> None:
    """Exit 2 with the option and the value as typed; nothing written."""
    env = {"FILEDROP_STATE": str(tmp_path / "journal.db")}
    _, _, err = filedrop("report", "--out", str(tmp_path / "out"), *args, environ=env, expect=2)
    assert err == f"filedrop: {sentence}\n"
    assert not (tmp_path / "out").exists()


@pytest.fixture
def chromium() -> str:
    """Debian's chromium; skipped where it is missing, except in CI, which must have it."""
    found = shutil.which("chromium")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; CI must install it (apt-get install chromium)")
        pytest.skip("chromium is not installed")
    return found


def test_the_page_renders_in_a_headless_browser(
    chromium: str, two_inboxes: Setup, tmp_path: Path
) -> None:
    """Chromium opens the page and draws it: a screenshot of more than a blank window."""
    _, page, _ = report(two_inboxes)
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'chromium'}",
            f"--screenshot={shot}",
            "--window-size=1200,900",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    png = shot.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    # A blank 1200x900 page compresses to a few kilobytes; tables and coloured cells do not.
    assert len(png) > 30_000


def test_a_file_whose_mapping_is_not_configured_shows_rows_without_amounts(
    two_inboxes: Setup,
) -> None:
    """Statuses and messages still come from the outcome; amounts and invoice numbers need the
    mapping, and the file says which one is missing."""
    env = {**two_inboxes.env, "FILEDROP_MAPPING": str(EXAMPLES.parent / "mappings/example.toml")}
    _, out, _ = filedrop("report", "--out", str(two_inboxes.out), environ=env)
    book = Path(out.splitlines()[2].strip())
    assert summary_of(book)[str(two_inboxes.first)] == {
        "SUCCEEDED": (2, 3, None),
        "FAILED": (1, 1, None),
        "INVALID": (2, 2, None),
        "Total": (2, 6, None),
    }
    assert [row[1:5] for row in needs_a_person(book)][:3] == [
        (HOSTILE_NAME.replace(national_id(1), MASKED_ID), 3, "", "INVALID"),
        ("mars.csv", 4, "", "INVALID"),
        ("mars.csv", 5, "", "FAILED"),
    ]
    files = openpyxl.load_workbook(book)["Files"]
    notes = {row[2]: row[10] for row in files.iter_rows(min_row=2, values_only=True)}
    assert notes["mars.csv"] == (
        'mapping "Norwegian ERP export" is not among the configured mappings: no amounts or '
        "invoice numbers"
    )


def test_amounts_too_large_to_add_up_are_said_so_and_the_digest_is_written(
    inbox: Path, sandbox: Sandbox, tmp_path: Path
) -> None:
    """Two amounts of 1e308 (INVALID rows, never sent) add up past any float: the digest says
    so where their sum goes, in the page and the workbook (xlsxwriter refused the infinity and
    the command ended in "unexpected error")."""
    huge = "1" + "0" * 308
    write_erp_csv(
        inbox / "big.csv",
        [erp_row("5001", amount=huge), erp_row("5002", amount=huge), erp_row("5003", amount="75")],
    )
    env = run_env(inbox, sandbox.url)
    filedrop("run", environ=env, expect=ExitCode.ATTENTION)
    _, out, _ = filedrop("report", "--out", str(tmp_path / "r"), environ=env)
    page, book = (Path(line.strip()) for line in out.splitlines()[1:3])

    assert summary_of(book) == {
        str(inbox): {
            "SUCCEEDED": (1, 1, 75.0),
            "INVALID": (1, 2, "too large to add up"),
            "Total": (1, 3, "too large to add up"),
        }
    }
    assert page.read_text(encoding="utf-8").count("too large to add up") == 2


def test_an_outcome_that_is_a_link_or_a_pipe_is_not_read(
    inbox: Path, sandbox: Sandbox, tmp_path: Path
) -> None:
    """An outcome replaced by a link (to another file's outcome, or anywhere) or by a pipe is
    not read: the link could count another file's rows, or show any file's lines; the pipe
    waited for a writer for ever. The file is counted from the journal, and the digest says so."""
    write_erp_csv(inbox / "mars.csv", [erp_row("1301"), erp_row("1302")])
    env = run_env(inbox, sandbox.url)
    filedrop("run", environ=env)
    outcome = inbox / "mars.outcome.csv"
    elsewhere = tmp_path / "elsewhere.csv"
    shutil.copy(outcome, elsewhere)
    for kind in ("link", "pipe"):
        outcome.unlink()
        if kind == "link":
            outcome.symlink_to(elsewhere)
        else:
            os.mkfifo(outcome)
        _, out, _ = filedrop("report", "--out", str(tmp_path / kind), environ=env)
        book = Path(out.splitlines()[2].strip())
        assert summary_of(book)[str(inbox)]["SUCCEEDED"] == (1, 2, None)
        files = openpyxl.load_workbook(book)["Files"]
        notes = [row[-1] for row in files.iter_rows(min_row=2, values_only=True)]
        assert notes == ["mars.outcome.csv is not a regular file; counts from the journal"]


def test_a_file_replaced_by_a_new_version_is_counted_once(
    inbox: Path, sandbox: Sandbox, tmp_path: Path
) -> None:
    """The daily export under the same name: the first version's outcome goes to archive/ and
    the new one takes its name. Each version is counted once, the first from the journal (its
    rows were counted twice, from the new version's outcome)."""
    env = run_env(inbox, sandbox.url, FILEDROP_STATE=str(tmp_path / "journal.db"))
    write_erp_csv(inbox / "mars.csv", [erp_row("1401", amount="100"), erp_row("1402")])
    filedrop("run", environ=env)
    later = [erp_row("1501", amount="5000"), erp_row("1502", Forfallsdato="31.02.2024")]
    write_erp_csv(inbox / "mars.csv", later)
    filedrop("run", environ=env, expect=ExitCode.ATTENTION)

    _, out, _ = filedrop("report", "--out", str(tmp_path / "r"), environ=env)
    book = Path(out.splitlines()[2].strip())
    summary = summary_of(book)[str(inbox)]
    assert summary["SUCCEEDED"][:2] == (2, 3) and summary["INVALID"][:2] == (1, 1)
    assert summary["Total"][:2] == (2, 4)
    assert [row[3] for row in needs_a_person(book)] == ["1502"]


def test_the_files_table_shows_statuses_as_the_summary_does(
    inbox: Path, sandbox: Sandbox, tmp_path: Path
) -> None:
    """A status cell edited to hold a national id and a control character: the Files table
    masks and escapes it as the Summary does (it showed both as they were)."""
    write_erp_csv(inbox / "mars.csv", [erp_row("1601")])
    env = run_env(inbox, sandbox.url)
    filedrop("run", environ=env)
    outcome = inbox / "mars.outcome.csv"
    frame = pd.read_csv(outcome, sep=";", encoding="cp1252", dtype=str, keep_default_na=False)
    frame.loc[0, "outcome_status"] = f"FAILED {national_id(3)}\x1b[2J"
    frame.to_csv(outcome, sep=";", encoding="cp1252", index=False)
    _, out, _ = filedrop("report", "--out", str(tmp_path), environ=env)
    page, book = (Path(line.strip()) for line in out.splitlines()[1:3])
    files = openpyxl.load_workbook(book)["Files"]
    shown = " ".join(str(cell) for row in files.iter_rows(values_only=True) for cell in row)
    assert national_id(3) not in shown and "\x1b" not in shown
    assert national_id(3) not in page.read_text(encoding="utf-8")
    assert "\x1b" not in page.read_text(encoding="utf-8")


def test_a_rebuilt_file_says_why_it_has_no_amounts_and_numbers_read_as_typed(
    inbox: Path, sandbox: Sandbox, tmp_path: Path
) -> None:
    """After 'filedrop journal rebuild' the journal cannot tell which mapping read a file: the
    digest says so where the amounts are missing (it left them out without a word). Invoice
    numbers a CSV outcome guards against formulas ('=1004) read as they were typed."""
    env = run_env(inbox, sandbox.url, FILEDROP_STATE=str(tmp_path / "journal.db"))
    write_erp_csv(
        inbox / "mars.csv", [erp_row("1800"), erp_row("=1801", Forfallsdato="31.02.2024")]
    )
    filedrop("run", environ=env, expect=ExitCode.ATTENTION)
    _, out, _ = filedrop("report", "--out", str(tmp_path / "before"), environ=env)
    book = Path(out.splitlines()[2].strip())
    assert [row[3] for row in needs_a_person(book)] == ["=1801"]

    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"journal.db{suffix}").unlink(missing_ok=True)
    filedrop("journal", "rebuild", environ=env)
    _, out, _ = filedrop("report", "--out", str(tmp_path / "after"), environ=env)
    book = Path(out.splitlines()[2].strip())
    files = openpyxl.load_workbook(book)["Files"]
    notes = [row[-1] for row in files.iter_rows(min_row=2, values_only=True)]
    assert notes == [
        "the journal records no mapping for it (rebuilt): no amounts or invoice numbers"
    ]


def test_a_status_typed_over_is_marked_in_the_summary(
    inbox: Path, sandbox: Sandbox, tmp_path: Path
) -> None:
    """A status cell edited to read "Total", or emptied, is listed as what it is, not as a
    second total line (it looked like the real one)."""
    write_erp_csv(inbox / "mars.csv", [erp_row("1901"), erp_row("1902"), erp_row("1903")])
    env = run_env(inbox, sandbox.url)
    filedrop("run", environ=env)
    outcome = inbox / "mars.outcome.csv"
    frame = pd.read_csv(outcome, sep=";", encoding="cp1252", dtype=str, keep_default_na=False)
    frame.loc[0, "outcome_status"], frame.loc[1, "outcome_status"] = "Total", ""
    frame.to_csv(outcome, sep=";", encoding="cp1252", index=False)
    _, out, _ = filedrop("report", "--out", str(tmp_path), environ=env)
    book = Path(out.splitlines()[2].strip())
    assert list(summary_of(book)[str(inbox)]) == [
        "SUCCEEDED",
        "(no status)",
        "Total (not a filedrop status)",
        "Total",
    ]


def test_an_archived_file_of_a_rebuilt_journal_is_under_its_own_inbox(
    inbox: Path, sandbox: Sandbox, tmp_path: Path
) -> None:
    """With FILEDROP_ARCHIVE a rebuilt journal records a file where its outcome was found, in
    archive/: the digest lists it under the inbox it was dropped into, not under an inbox of
    its own named after the archive."""
    env = run_env(
        inbox, sandbox.url, FILEDROP_ARCHIVE="true", FILEDROP_STATE=str(tmp_path / "journal.db")
    )
    write_erp_csv(inbox / "m.csv", [erp_row("2001")])
    filedrop("run", environ=env)
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"journal.db{suffix}").unlink(missing_ok=True)
    filedrop("journal", "rebuild", environ=env)
    _, out, _ = filedrop("report", "--out", str(tmp_path / "r"), environ=env)
    book = Path(out.splitlines()[2].strip())
    assert list(summary_of(book)) == [str(inbox)]
