"""`filedrop init`: a mapping drafts itself from a sample export, and validates that export.

Each layout (the shipped Tripletex-like and Visma-like examples, and three made here) gets a draft
that `filedrop validate` accepts with no error: every row valid or skipped.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import openpyxl
import pytest
from builders import EXAMPLES, filedrop
from exports import (
    TRIPLETEX_EXAMPLE,
    VISMA_EXAMPLE,
    write_combined_id_export,
    write_english_export,
    write_sep_line_export,
    write_tripletex_export,
    write_visma_export,
)

from filedrop.read import ReadOptions, read_table

LAYOUTS: dict[str, tuple[Callable[[Path], Path], str, list[str]]] = {
    # layout: (writer, file name, lines the draft must hold)
    "tripletex": (
        write_tripletex_export,
        TRIPLETEX_EXAMPLE,
        [
            "# header_row = 4  # found below the title rows, and found again in every file",
            'decimal = ","  # detected from 4 amounts typed as text',
            'dates = ["dd.mm.yyyy"]  # detected from 8 dates typed as text',
            '# row 20 (Kunde "Sum") is a totals row: the built-in rule skip.totals leaves it out',
            'credit_notes = { column = "Beløp", at_most = 0 }  # zero or negative amounts (row 18)'
            " are credit notes",
            'currency = { constant = "NOK" }  # no currency column: every invoice in NOK',
            "type = { from_id = true }  # no type column: 9 digits COMPANY, 11 PRIVATE",
            'full_name = "Kunde"  # exact synonym',
            'identificationNumber = { column = "Org.nr/Personnr", pad = 11 }  # exact synonym',
            'emails = "K"  # guessed from values: 9 of 9 cells are email addresses',
            'zipCode = { column = "Postnr", pad = 4 }  # exact synonym',
        ],
    ),
    "visma": (
        write_visma_export,
        VISMA_EXAMPLE,
        [
            '# encoding = "cp1252"  # detected, and again for every file',
            'delimiter = ";"  # detected',
            'credit_notes = { column = "Beløp", at_most = 0 }  # zero or negative amounts (row 13)'
            " are credit notes",
            'identificationNumber = { column = "Fødselsnr", pad = 11, default = { column = "Orgnr"'
            " } }  # Fødselsnr: exact synonym; Orgnr: exact synonym",
            'remainingAmount = "Restbeløp"  # exact synonym',
        ],
    ),
    "english headers": (
        write_english_export,
        "customers.csv",
        [
            'delimiter = ","  # detected',
            'decimal = "."  # detected from 8 amounts typed as text',
            'dates = ["mm/dd/yyyy"]  # detected from 16 dates typed as text',
            'currency = { column = "Currency", default = "NOK" }  # exact synonym',
            'type = { column = "Customer type", map = { "Company" = "COMPANY", "Person" = '
            '"PRIVATE" } }  # exact synonym',
            'firstname = "First name"  # exact synonym',
        ],
    ),
    "combined id column": (
        write_combined_id_export,
        "reskontro.csv",
        [
            'thousands = [" ", "."]',
            "type = { from_id = true }  # no type column: 9 digits COMPANY, 11 PRIVATE",
            'full_name = "Kundenavn"  # exact synonym',
            'identificationNumber = { column = "Fødselsnr eller orgnr", pad = 11 }  # partial'
            " match: a fødselsnummer and an organisation number",
        ],
    ),
    "sep line": (
        write_sep_line_export,
        "excel.csv",
        [
            "# header_row = 2  # found below the title rows, and found again in every file",
            'identificationNumber = { column = "Personnr", pad = 11 }  # exact synonym',
        ],
    ),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_init_drafts_a_mapping_that_validates_its_own_file(tmp_path: Path, layout: str) -> None:
    """The draft marks how sure each line is, and `validate` finds no error with it (exit 0)."""
    write, name, expected = LAYOUTS[layout]
    path = write(tmp_path / name)
    out = tmp_path / "mappings" / "draft.toml"
    filedrop("init", str(path), "--out", str(out), environ={})
    lines = out.read_text(encoding="utf-8").splitlines()
    assert [line for line in expected if line not in lines] == []
    assert not [line for line in lines if "# QUESTION:" in line]
    filedrop("validate", str(path), "--mapping", str(out), environ={}, expect=0)


def test_init_drafts_from_the_first_visible_sheet_and_names_it(tmp_path: Path) -> None:
    """An export whose first sheet is hidden (an old copy): the draft is of the sheet Excel
    shows first, names it in read.sheet, and validates the file."""
    path = write_tripletex_export(tmp_path / TRIPLETEX_EXAMPLE)
    book = openpyxl.load_workbook(path)
    old = book.create_sheet("Gammel", 0)
    old.append(["Nothing", "to", "see"])
    old.sheet_state = "hidden"
    book.active = 1
    book.save(path)
    out = tmp_path / "tripletex.toml"
    filedrop("init", str(path), "--out", str(out), environ={})
    assert 'sheet = "Åpne poster"  # the first sheet is hidden in Excel' in out.read_text("utf-8")
    filedrop("validate", str(path), "--mapping", str(out), environ={}, expect=0)


def test_init_prints_the_summary_of_validate(tmp_path: Path) -> None:
    """After writing the draft, init prints what `validate` prints for the file, and next steps."""
    path = write_tripletex_export(tmp_path / TRIPLETEX_EXAMPLE)
    out = tmp_path / "tripletex.toml"
    _, printed, _ = filedrop("init", str(path), "--out", str(out), environ={})
    assert printed.splitlines() == [
        f"Wrote {out}. Validating {TRIPLETEX_EXAMPLE} with it:",
        f"{TRIPLETEX_EXAMPLE}: mapping tripletex-apne-poster; sheet 'Åpne poster'; header on row 4",
        "14 rows, 12 invoices to send, 12 rows valid, 0 invalid, 0 duplicate, 2 skipped (not "
        "invoices to send)",
        '  skipped: row 18: rule skip.credit_notes: Beløp "-500" is 0 or less',
        '  skipped: row 20: rule skip.totals: Kunde "Sum" marks a totals row',
        f"Edit {out}, then check it: filedrop validate {path} --mapping {out}",
    ]


def test_a_control_character_in_the_export_name_reaches_neither_the_draft_nor_the_screen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name is data: the draft stays valid TOML, its file name has no control character, and
    what init prints is one line per line."""
    import tomllib

    monkeypatch.chdir(tmp_path)
    export = tmp_path / "x\nINFO fake.csv"
    export.write_text("Fakturanr;Beløp\n1;100\n", encoding="utf-8")
    _, out, _ = filedrop("init", str(export), environ={}, expect=1)
    draft = tmp_path / "x_INFO fake.toml"
    assert tomllib.loads(draft.read_text(encoding="utf-8"))["name"] == "x\nINFO fake"
    assert out.splitlines()[0] == "Wrote x_INFO fake.toml. Validating x\\nINFO fake.csv with it:"
    assert not any(line.startswith("INFO") for line in out.splitlines())


def test_a_line_break_in_the_sheet_name_does_not_break_the_draft(tmp_path: Path) -> None:
    """The draft's first comment named the sheet as it was: a workbook whose sheet name holds a
    line break (Excel cannot type one, other writers can) got a draft that was no TOML, and its
    next line could be any setting the name spelled."""
    import tomllib

    path = tmp_path / "export.xlsx"
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Ark\nencoding = 'x'"
    sheet.append(["Fakturanr", "Beløp"])
    sheet.append(["1", 100])
    book.save(path)
    out = tmp_path / "export.toml"
    filedrop("init", str(path), "--out", str(out), environ={}, expect=1)
    text = out.read_text(encoding="utf-8")
    assert text.splitlines()[0].startswith(
        "# Drafted by `filedrop init` from export.xlsx (sheet \"Ark\\nencoding = 'x'\", header"
    )
    assert "encoding" not in tomllib.loads(text).get("read", {})


def test_init_takes_the_encoding_of_an_export_it_will_not_guess(tmp_path: Path) -> None:
    """An old DOS program's export is refused unguessed, and the refusal said to set the
    encoding in the mapping's [read], which is what init was to write: a dead end. init names
    the way instead, takes --encoding, and the draft sets it, so validate reads the names."""
    export = tmp_path / "dos.csv"
    lines = ["Fakturanr;Fakturadato;Forfallsdato;Beløp;Fornavn;Etternavn;Fødselsnr;Adresse;"
             "Postnr;Poststed", "1001;01.03.2024;15.03.2024;1234,50;Bjørn;Sæther;01058211237;"
             "Storgata 1;0150;Oslo"]  # fmt: skip
    export.write_bytes(("\r\n".join(lines) + "\r\n").encode("cp865"))
    out = tmp_path / "dos.toml"
    _, _, err = filedrop("init", str(export), "--out", str(out), environ={}, expect=2)
    assert err == (
        f'filedrop: {export}: line 1 holds "Bel›p", which is "Beløp" in the Nordic DOS code page '
        "(865), an old DOS program's; names would reach Amili garbled, so no mapping is drafted "
        f"from it. To read it so: filedrop init {export} --out {out} --encoding cp865 (or "
        "--encoding cp1252 if it was read right)\n"
    )
    assert not out.exists()
    filedrop("init", str(export), "--out", str(out), "--encoding", "cp865", environ={}, expect=None)
    assert 'encoding = "cp865"  # as given to filedrop init' in out.read_text(encoding="utf-8")
    _, printed, _ = filedrop(
        "validate", str(export), "--mapping", str(out), "--json", environ={}, expect=None
    )
    assert '"Bjørn"' in printed and '"Sæther"' in printed
    # The name as a shell takes it; an encoding the file's own bytes contradict; a workbook.
    spaced = export.rename(tmp_path / "Faktura mars (DOS).csv")
    _, _, err = filedrop("init", str(spaced), environ={}, expect=2)
    assert f"To read it so: filedrop init '{spaced}' --encoding cp865 (or" in err
    spaced_out = tmp_path / "my mapping.toml"
    _, said, _ = filedrop(
        "init",
        str(spaced),
        "--out",
        str(spaced_out),
        "--encoding",
        "cp865",
        environ={},
        expect=None,
    )
    assert said.splitlines()[-1] == (
        f"Edit {spaced_out}, then check it: filedrop validate '{spaced}' --mapping '{spaced_out}'"
    )
    utf8 = tmp_path / "utf8.csv"
    utf8.write_text("Nr;Navn\r\n1;Bjørn\r\n", encoding="utf-8")
    _, _, err = filedrop("init", str(utf8), "--encoding", "cp1252", environ={}, expect=2)
    assert err == (
        f'filedrop: {utf8}: the file is UTF-8 text (line 2 holds "ø"), but --encoding cp1252 was '
        "given; leave --encoding out (filedrop tells the encodings apart)\n"
    )
    # An encoding by its codec's name, whatever was typed; one unknown, said so in one line.
    typed = tmp_path / "typed.toml"
    filedrop(
        "init", str(spaced), "--out", str(typed), "--encoding", "CP865\n", environ={}, expect=None
    )
    assert 'encoding = "cp865"  # as given to filedrop init' in typed.read_text(encoding="utf-8")
    _, _, err = filedrop("init", str(spaced), "--encoding", "x" * 3000, environ={}, expect=2)
    assert err == (
        f'filedrop: --encoding "{"x" * 40}…" is not an encoding filedrop knows; use e.g. cp1252, '
        "cp865 or mac-roman.\n"
    )
    book = EXAMPLES / "apne-poster-mars.xlsx"
    _, _, err = filedrop("init", str(book), "--encoding", "cp865", environ={}, expect=2)
    assert err == (
        "filedrop: --encoding is for CSV files; apne-poster-mars.xlsx is a workbook, whose text "
        "says its own encoding. Leave --encoding out.\n"
    )


def test_init_refuses_to_overwrite_a_mapping_without_force(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --out the draft is FILE's name with .toml in the current folder; an existing file
    is kept (exit 2) unless --force."""
    monkeypatch.chdir(tmp_path)
    path = write_sep_line_export(tmp_path / "export.csv")
    (tmp_path / "export.toml").write_text("# mine\n", encoding="utf-8")
    _, _, err = filedrop("init", str(path), environ={}, expect=2)
    assert err == (
        "filedrop: export.toml already exists; pass --force to overwrite it, or choose --out.\n"
    )
    assert (tmp_path / "export.toml").read_text(encoding="utf-8") == "# mine\n"
    filedrop("init", str(path), "--force", environ={})
    assert (tmp_path / "export.toml").read_text(encoding="utf-8").startswith("# Drafted by")


def test_a_serial_date_or_a_totals_cell_does_not_cost_the_draft_its_dates(tmp_path: Path) -> None:
    """Dates typed dd.mm.yyyy, one cell an Excel serial day (46082) and a totals row's "Sum" in
    a date column: the draft wrote no dates line at all, so every row was INVALID ("not a
    date"). The serial is a date the reader takes anyway; "Sum" is the question; the dates
    line is written, and the file validates."""
    path = tmp_path / "mars.csv"
    path.write_text(
        "Fakturanr;Kunde;Orgnr;Fakturadato;Forfallsdato;Beløp\n"
        "1;Fjord AS;923609016;01.03.2026;31.03.2026;100,00\n"
        "2;Bygg AS;987654325;46082;31.03.2026;200,00\n"
        "3;Hav AS;923609016;02.03.2026;01.04.2026;300,00\n"
        ";;;;Sum;600,00\n",
        encoding="utf-8",
    )
    out = tmp_path / "mars.toml"
    filedrop("init", str(path), "--out", str(out), environ={}, expect=None)
    lines = out.read_text(encoding="utf-8").splitlines()
    assert [line for line in lines if line.startswith("dates = ")] == [
        'dates = ["dd.mm.yyyy"]  # QUESTION: "Sum" fits none of the formats drafts know'
    ]
    filedrop("validate", str(path), "--mapping", str(out), environ={}, expect=0)


def test_init_asks_about_what_it_cannot_place(tmp_path: Path) -> None:
    """A field no header or value tells is a commented QUESTION, and so is a column the draft does
    not use; init prints them, and exits 1 while the draft cannot map the file."""
    path = tmp_path / "odd.csv"
    path.write_text(
        "Fakturanr;Kunde;Fakturadato;Beløp;Prosjekt\n1;Kari Nordmann;01.02.2024;100,00;Hytte\n",
        encoding="utf-8",
    )
    out = tmp_path / "odd.toml"
    _, printed, _ = filedrop("init", str(path), "--out", str(out), environ={}, expect=1)
    lines = out.read_text(encoding="utf-8").splitlines()
    assert '# dueDate = "<column>"  # QUESTION: which column holds the due date?' in lines
    assert (
        '# type = { constant = "PRIVATE" }  # QUESTION: no column tells a person from a company;'
        " are they all PRIVATE, or all COMPANY?"
    ) in lines
    assert printed.splitlines()[1:] == [
        f'  {out}: key "invoice.dueDate" is missing; the API needs a due date (e.g. dueDate = '
        '"<column>").',
        f"Questions left in {out}:",
        "  - which column holds the due date?",
        "  - no column tells a person from a company; are they all PRIVATE, or all COMPANY?",
        '  - column "Prosjekt" is not used; which field holds it, if any?',
        f"Edit {out}, then check it: filedrop validate {path} --mapping {out}",
    ]


@pytest.mark.parametrize(
    ("name", "write"),
    [(TRIPLETEX_EXAMPLE, write_tripletex_export), (VISMA_EXAMPLE, write_visma_export)],
)
def test_the_shipped_examples_are_the_generated_ones(
    tmp_path: Path, name: str, write: Callable[[Path], Path]
) -> None:
    """inbox-example/ holds what tests/exports.py writes, cell for cell (`python tests/exports.py`
    writes them again)."""
    shipped = read_table(EXAMPLES / name, ReadOptions())
    made = read_table(write(tmp_path / name), ReadOptions())
    assert shipped.headers == made.headers
    assert shipped.cells.values.tolist() == made.cells.values.tolist()
    assert shipped.row_numbers.tolist() == made.row_numbers.tolist()


def test_a_sep_line_declares_the_delimiter_and_is_not_the_header(tmp_path: Path) -> None:
    """`sep=,` on the first line is the delimiter even where another would split more, and the
    header is looked for below it, even in a file too short to tell."""
    path = tmp_path / "x.csv"
    path.write_text("sep=,\nA;B,C;D\n1;2,3;4\n", encoding="utf-8")
    table = read_table(path, ReadOptions())
    assert (table.headers, table.info.delimiter, table.info.header_row) == (["A;B", "C;D"], ",", 2)
    path.write_text("sep=;\nFakturanr;Beløp\n1;2\n", encoding="utf-8")
    table = read_table(path, ReadOptions())
    assert (table.headers, table.cells.values.tolist()) == (["Fakturanr", "Beløp"], [["1", "2"]])


def test_init_asks_whether_three_digits_after_a_comma_are_decimals(tmp_path: Path) -> None:
    """Amounts of whole kroner written with commas between thousands ("12,500") read as well
    with a decimal comma: the draft asks which, and validate refuses the rows meanwhile rather
    than send 12,50."""
    path = tmp_path / "eksport.csv"
    path.write_text(
        "Fakturanr;Fakturadato;Kundenavn;Orgnr;Beløp;Forfallsdato\n"
        "1001;01.03.2024;Fjord AS;923609016;12,500;15.03.2024\n"
        "1002;01.03.2024;Berg AS;923609016;3,000;15.03.2024\n",
        encoding="utf-8",
    )
    out = tmp_path / "draft.toml"
    _, said, _ = filedrop("init", str(path), "--out", str(out), environ={}, expect=1)
    question = (
        'amounts such as "12,500" have three digits after the ",", so they read as decimals or '
        'as whole amounts with "," between thousands; if whole, set decimal and thousands the '
        "other way round"
    )
    assert f'decimal = ","  # QUESTION: {question}' in out.read_text("utf-8").splitlines()
    assert question in said
    _, report, _ = filedrop("validate", str(path), "--mapping", str(out), environ={}, expect=1)
    assert 'Beløp "12,500" has three digits after the decimal comma' in report


def test_amounts_in_ore_are_asked_about_not_drafted(tmp_path: Path) -> None:
    """A header "Beløp i øre" holds hundredths, and filedrop sends kroner: drafted as it was,
    every claim went out a hundred times too large. The line is left a QUESTION, so the draft
    maps no file until it is answered."""
    path = tmp_path / "ore.csv"
    path.write_text(
        "Fakturanr;Kunde;Orgnr;Fakturadato;Forfallsdato;Beløp i øre\n"
        "1;Fjord AS;923609016;01.03.2026;31.03.2026;123450\n"
        "2;Bygg AS;987654325;02.03.2026;01.04.2026;20000\n",
        encoding="utf-8",
    )
    out = tmp_path / "ore.toml"
    _, said, _ = filedrop("init", str(path), "--out", str(out), environ={}, expect=1)
    lines = out.read_text(encoding="utf-8").splitlines()
    question = (
        "Beløp i øre says its amounts are in øre, and filedrop sends kroner (a hundred times as "
        "much): export the amounts in kroner, or name such a column"
    )
    assert f'# originalInvoiceAmount = "Beløp i øre"  # QUESTION: {question}' in lines
    assert question in said


def test_dates_that_read_day_first_and_month_first_are_asked_about(tmp_path: Path) -> None:
    """Every date with a day of 12 or less ("03/04/2026") fits dd/mm and mm/dd: the draft took
    day first without a word, and a US export was read wrongly. It says which it chose and
    asks; one date after the 12th settles it, and dotted dates are Norwegian."""

    def draft(dates: tuple[str, str]) -> str:
        path = tmp_path / "datoer.csv"
        path.write_text(
            "Fakturanr;Kunde;Orgnr;Fakturadato;Forfallsdato;Beløp\n"
            f"1;Fjord AS;923609016;{dates[0]};{dates[1]};100,00\n",
            encoding="utf-8",
        )
        out = tmp_path / "datoer.toml"
        filedrop("init", str(path), "--out", str(out), "--force", environ={}, expect=None)
        return next(line for line in out.read_text("utf-8").splitlines() if "dates =" in line)

    assert draft(("03/04/2026", "12/05/2026")) == (
        'dates = ["dd/mm/yyyy"]  # QUESTION: every date such as "03/04/2026" reads as '
        "dd/mm/yyyy and as mm/dd/yyyy (no day after the 12th): which is it?"
    )
    assert "QUESTION" not in draft(("03/04/2026", "25/05/2026"))
    assert "QUESTION" not in draft(("03.04.2026", "12.05.2026"))


def _drafted(
    folder: Path, name: str, text: str, *, expect: int | None = 0
) -> tuple[list[str], str]:
    """``filedrop init`` on a UTF-8 CSV ``name`` holding ``text``: the draft's lines, and what
    init printed."""
    path = folder / name
    path.write_text(text, encoding="utf-8")
    out = path.with_suffix(".toml")
    _, said, _ = filedrop("init", str(path), "--out", str(out), environ={}, expect=expect)
    return out.read_text(encoding="utf-8").splitlines(), said


def test_a_column_of_what_was_paid_is_asked_about(tmp_path: Path) -> None:
    """An export with Innbetalt beside Beløp and nothing of what is still owed: init asked only
    which field holds the column (a hostile review, helper-130), and validate then refused the
    paid invoices. It says what the column seems to hold and the ways on; an export whose
    claim reads what is owed (Restbeløp) is not asked."""
    _, said = _drafted(
        tmp_path,
        "liste.csv",
        "Fakturanr;Kunde;Orgnr;Fakturadato;Forfallsdato;Beløp;Innbetalt\n"
        "9001;Fjord AS;923609016;01.03.2026;31.03.2026;1 200,00;0,00\n"
        "9002;Bygg AS;987654325;02.03.2026;01.04.2026;800,00;0,00\n",
    )
    assert (
        'column "Innbetalt" seems to hold what was paid on each invoice, which no field reads: '
        "an invoice showing a payment is refused, as it would go for its whole amount; export "
        "what is still owed and read it as the claim's remainingAmount, or name the column in "
        "[match] unread if it is not what was paid" in said
    )
    _, said = _drafted(
        tmp_path,
        "rest.csv",
        "Fakturanr;Kunde;Orgnr;Fakturadato;Forfallsdato;Beløp;Innbetalt;Restbeløp\n"
        "9001;Fjord AS;923609016;01.03.2026;31.03.2026;1 200,00;200,00;1 000,00\n",
    )
    assert "seems to hold what was paid" not in said
    assert "1 invoice to send" in said


def test_an_invoice_paid_since_gets_a_skip_rule(tmp_path: Path) -> None:
    """An open-items export with what is still owed in a column of its own (Restbeløp) lists
    an invoice paid since with 0,00 left: the draft had no rule for it, the row was INVALID as
    no positive amount, and every run ended in error for an invoice that is no case. A [skip]
    rule leaves it out now; a credit note (Beløp below zero) keeps its own rule."""
    lines, said = _drafted(
        tmp_path,
        "apne.csv",
        "Fakturanr;Kunde;Orgnr;Fakturadato;Forfallsdato;Beløp;Restbeløp\n"
        "9001;Fjord AS;923609016;01.03.2026;31.03.2026;1 200,00;1 200,00\n"
        "9002;Bygg AS;987654325;02.03.2026;01.04.2026;800,00;0,00\n"
        "9003;Fjord AS;923609016;05.03.2026;05.03.2026;-300,00;-300,00\n"
        "9004;Bygg AS;987654325;02.03.2026;01.04.2026;500,00;250,00\n",
    )
    assert (
        'credit_notes = { column = "Beløp", at_most = 0 }  # zero or negative amounts (row 4) '
        "are credit notes"
    ) in lines
    assert (
        'paid = { column = "Restbeløp", at_most = 0 }  # nothing left to pay (row 3): a paid '
        "invoice is not sent"
    ) in lines
    assert '  skipped: row 3: rule skip.paid: Restbeløp "0,00" is 0 or less' in said
    assert "0 invalid" in said


def test_a_second_column_of_what_is_owed_is_named_unread_and_asked_about(tmp_path: Path) -> None:
    """Restbeløp and Saldo both read as what is still owed: the draft reads the first as the
    claim's amount and must say what the other is, or no file would fit its own mapping (a
    mapping leaving such a column unread does not fit). It names it unread, as a question."""
    lines, said = _drafted(
        tmp_path,
        "apne.csv",
        # Saldo first: the more telling Restbeløp is read, whatever the columns' order.
        "Fakturanr;Kunde;Orgnr;Fakturadato;Forfallsdato;Beløp;Saldo;Restbeløp\n"
        "9001;Fjord AS;923609016;01.03.2026;31.03.2026;1 200,00;3 000,00;1 200,00\n"
        "9002;Bygg AS;987654325;02.03.2026;01.04.2026;800,00;400,00;400,00\n",
    )
    question = (
        '"Saldo" may also hold what is still owed, and "Restbeløp" is read as that; if another '
        "is, read it as the claim's remainingAmount instead"
    )
    assert f'unread = ["Saldo"]  # QUESTION: {question}' in lines
    assert 'remainingAmount = "Restbeløp"  # exact synonym' in lines
    assert f"  - {question}" in said
    assert "2 invoices to send" in said


def test_a_customer_column_of_numbers_beside_a_name_column_is_the_customer_number(
    tmp_path: Path,
) -> None:
    """Visma eAccounting's Kunde holds the customer's number beside Kundenavn (Xledger: Customer
    and Customer name): the draft took Kunde, the first exact synonym, as the name, and the
    company Vinmonopolet AS went out as "50002". A column of numbers headed as the customer is
    the customer number, and the name column the name."""
    lines, said = _drafted(
        tmp_path,
        "kunder.csv",
        "Kunde;Kundenavn;Orgnr;Fakturanr;Fakturadato;Forfallsdato;Beløp\n"
        "50001;Fjord AS;923609016;100;01.03.2026;31.03.2026;1 200,00\n"
        "50002;Vinmonopolet AS;987654325;101;02.03.2026;01.04.2026;800,00\n",
    )
    assert 'full_name = "Kundenavn"  # exact synonym' in lines
    assert (
        'customerNumber = "Kunde"  # headed as the customer, and every cell a number: the '
        "customer number"
    ) in lines
    assert "2 invoices to send" in said
    # A totals row's "Sum" under Kunde leaves it a column of numbers (a hostile review: it made
    # Kunde the name, and every row INVALID).
    lines, said = _drafted(
        tmp_path,
        "kunder-sum.csv",
        "Kunde;Kundenavn;Orgnr;Fakturanr;Fakturadato;Forfallsdato;Beløp\n"
        "50001;Fjord AS;923609016;100;01.03.2026;31.03.2026;1 200,00\n"
        "Sum;;;;;;1 200,00\n",
    )
    assert 'full_name = "Kundenavn"  # exact synonym' in lines
    assert any(line.startswith('customerNumber = "Kunde"  # headed as the') for line in lines)
    assert "1 invoice to send" in said


def test_two_columns_headed_as_one_field_are_asked_about(tmp_path: Path) -> None:
    """Kunde (the company) and Navn (its contact person) are both headed as the debtor's name:
    placed by rank, Navn was drafted and a person's name went out as the company's (a hostile
    review). The first column is drafted, as the export orders them, and the draft asks."""
    lines, said = _drafted(
        tmp_path,
        "kunder.csv",
        "Fakturanr;Kunde;Navn;Orgnr;Fakturadato;Forfallsdato;Beløp\n"
        "100;Fjord AS;Kari Nordmann;923609016;01.03.2026;31.03.2026;1 200,00\n"
        "101;Bygg AS;Ola Hansen;987654325;02.03.2026;01.04.2026;800,00\n",
    )
    question = '"Kunde" and "Navn" are both headed as it, and the first is drafted: which holds it?'
    assert f'full_name = "Kunde"  # QUESTION: {question}' in lines
    assert f"  - full_name: {question}" in said
    assert 'column "Navn" is not used' not in said


def test_a_header_holding_a_word_of_what_is_owed_is_not_drafted_as_it(tmp_path: Path) -> None:
    """ "Dager utestående" (days overdue) was drafted as the claim's amount by its word
    "utestående", and 12 days went out as the claim of an invoice of 4 500 (a hostile
    review). Only a header saying what is owed, and no more, is placed so; this one is asked
    about."""
    lines, said = _drafted(
        tmp_path,
        "apne.csv",
        "Fakturanr;Kunde;Orgnr;Fakturadato;Forfallsdato;Beløp;Dager utestående\n"
        "9001;Fjord AS;923609016;01.03.2026;31.03.2026;4 500,00;12\n"
        "9002;Bygg AS;987654325;02.03.2026;01.04.2026;800,00;40\n",
    )
    assert 'remainingAmount = "Beløp"  # exact synonym' in lines
    assert '  - column "Dager utestående" is not used; which field holds it, if any?' in said


def test_a_column_naming_credit_notes_gets_a_skip_rule(tmp_path: Path) -> None:
    """A ledger's Bilagstype says "Kreditnota" beside a positive amount, as invoice journals
    write it: the draft's only credit-note rule is for amounts of 0 or less, so the column was
    left a question and the credit note went out as a claim. It is a [skip] rule now."""
    lines, said = _drafted(
        tmp_path,
        "reskontro.csv",
        "Bilagstype;Fakturanr;Kunde;Orgnr;Fakturadato;Forfallsdato;Beløp\n"
        "Faktura;9001;Fjord AS;923609016;01.03.2026;31.03.2026;1 200,00\n"
        "KREDITNOTA;9003;Fjord AS;923609016;05.03.2026;05.03.2026;1 200,00\n"
        "Faktura;9002;Bygg AS;987654325;02.03.2026;01.04.2026;800,00\n",
    )
    assert (
        'credit_notes_by_type = { column = "Bilagstype", is = ["KREDITNOTA"] }  # Bilagstype '
        "names credit notes (row 3)"
    ) in lines
    assert '  skipped: row 3: rule skip.credit_notes_by_type: Bilagstype is "KREDITNOTA"' in said
    assert 'column "Bilagstype" is not used' not in said
    assert "2 invoices to send" in said


@pytest.mark.parametrize("kind", ["Bilagstype", "Type bilag", "Transaksjonsart", "Dokument"])
def test_a_column_naming_fees_gets_a_skip_rule_and_a_question(tmp_path: Path, kind: str) -> None:
    """Bilagstype names a reminder fee and an interest note beside the invoices they are
    charged on: the draft sent each as a case of its own, a principal of 35 kroner, and asked
    nothing. They are left out by a [skip] rule now, with a question: a fee is no principal.
    Only a column headed as a type says so: the invoice described as "Fee" in Tekst (a
    consulting fee) is sent, and a fee found first never hides the credit notes."""
    lines, said = _drafted(
        tmp_path,
        "reskontro.csv",
        f"Tekst;{kind};Fakturanr;Kunde;Orgnr;Fakturadato;Forfallsdato;Beløp\n"
        "Husleie;Faktura;9001;Fjord AS;923609016;01.03.2026;31.03.2026;1 200,00\n"
        ";Purregebyr;9002;Fjord AS;923609016;05.04.2026;19.04.2026;35,00\n"
        ";Rentenota;9003;Fjord AS;923609016;05.04.2026;19.04.2026;12,40\n"
        ";KREDITNOTA;9004;Bygg AS;987654325;05.03.2026;05.03.2026;200,00\n"
        "Fee;Faktura;9005;Bygg AS;987654325;05.03.2026;05.04.2026;9 000,00\n",
    )
    question = (
        f"{kind} names reminder fees or interest (row 3, 4), left out, as each would go as a "
        "principal of its own; add them to their invoice's claims if Amili is to collect them"
    )
    assert (
        f'fees_by_type = {{ column = "{kind}", is = ["Purregebyr", "Rentenota"] }}  # '
        f"QUESTION: {question}"
    ) in lines
    assert any(line.startswith("credit_notes_by_type = ") for line in lines)
    assert f"  - {question}" in said
    assert "2 invoices to send" in said


def test_a_currency_column_writing_kr_is_mapped_to_nok(tmp_path: Path) -> None:
    """Visma writes Valuta "kr" for kroner, which is no currency code: the draft read the column
    as it was, and every such row was refused (twice: the amount "in kr" against a currency
    "KR"). A Norwegian export's kroner are NOK, and the draft says so in a map of the column's
    values."""
    lines, said = _drafted(
        tmp_path,
        "reskontro.csv",
        "Fakturanr;Kunde;Orgnr;Fakturadato;Forfallsdato;Beløp;Valuta\n"
        "9001;Fjord AS;923609016;01.03.2026;31.03.2026;kr 1 200,00;kr\n"
        "9002;Bygg AS;987654325;02.03.2026;01.04.2026;800,00;SEK\n"
        # Spelt otherwise: a map listing "nok" and "NOK", or "kr" and "Kr", is refused.
        "9003;Bygg AS;987654325;02.03.2026;01.04.2026;800,00;Kr\n"
        "9004;Bygg AS;987654325;02.03.2026;01.04.2026;800,00;nok\n",
    )
    assert (
        'currency = { column = "Valuta", map = { "kr" = "NOK", "SEK" = "SEK", "nok" = "NOK", '
        '"DKK" = "DKK", "EUR" = "EUR", "USD" = "USD", "GBP" = "GBP" }, default = "NOK" }  # '
        "exact synonym"
    ) in lines
    assert "4 invoices to send" in said


def test_dates_with_dashes_and_two_digit_years_are_detected_and_asked_about(
    tmp_path: Path,
) -> None:
    """Uni Economy writes 15-03-24: the draft knew dd-mm-yyyy but not dd-mm-yy, and said they
    fit no format it knew. Read day first, as in Norway, it asks all the same: 01-03-26 is also
    26 March 2001 written year first, and a draft that took 25-01-15 as 25 January 2015 sent
    dates ten years off (a hostile review)."""
    lines, said = _drafted(
        tmp_path,
        "uni.csv",
        "Fakturanr;Kunde;Orgnr;Fakturadato;Forfallsdato;Beløp\n"
        "9001;Fjord AS;923609016;01-03-26;31-03-26;1 200,00\n"
        "9002;Bygg AS;987654325;02-03-26;01-04-26;800,00\n",
    )
    question = (
        'every date such as "01-03-26" reads as dd-mm-yy and as yy-mm-dd (a two-digit year may '
        "come first): which is it?"
    )
    assert f'dates = ["dd-mm-yy"]  # QUESTION: {question}' in lines
    assert f"  - {question}" in said
    assert "2 invoices to send" in said


@pytest.mark.parametrize(
    ("invoiced", "due", "formats"),
    [
        ("01.03.2026 00:00", "31.03.2026 00:00", '["dd.mm.yyyy"]'),
        ("01.03.2026 14:35:10", "31.03.2026 00:00:00", '["dd.mm.yyyy"]'),
        ("2026-03-01T00:00:00", "2026-03-31 00:00", None),  # ISO: no format needed
    ],
)
def test_dates_with_a_time_of_day_are_drafted_as_their_days(
    tmp_path: Path, invoiced: str, due: str, formats: str | None
) -> None:
    """An export of timestamps ("01.03.2026 00:00", as ERPs write a date column from a database)
    got a draft whose dates line asked a QUESTION and read yyyy-mm-dd, so every row was
    INVALID ("is not a date"). validate leaves a time of day after a date out; the draft now
    does too, and the file validates."""
    lines, said = _drafted(
        tmp_path,
        "timed.csv",
        "Fakturanr;Kunde;Orgnr;Fakturadato;Forfallsdato;Beløp\n"
        f"9001;Fjord AS;923609016;{invoiced};{due};1 200,00\n"
        f"9002;Bygg AS;987654325;{invoiced};{due};800,00\n",
    )
    dates = [line for line in lines if line.startswith("dates = ")]
    assert dates == (
        [f"dates = {formats}  # detected from 4 dates typed as text"] if formats else []
    )
    assert "QUESTION" not in "\n".join(dates)
    assert "2 invoices to send" in said


def test_a_column_of_timestamps_is_not_taken_for_the_invoice_date_by_its_values(
    tmp_path: Path,
) -> None:
    """Placed by their values, the dates are plain ones: a column of timestamps with no telling
    header (an order's moment) became the invoice date, and the real invoice date the due date,
    a month early (a hostile review). An Excel serial day with a time, which validate does not
    read, is asked about as it is written."""
    lines, _ = _drafted(
        tmp_path,
        "ordre.csv",
        "Fakturanr;Kunde;Orgnr;Ordre mottatt;Bilag dt;Betales;Beløp\n"
        "9001;Fjord AS;923609016;25.02.2026 10:15;01.03.2026;31.03.2026;1 200,00\n"
        "9002;Bygg AS;987654325;26.02.2026 14:02;02.03.2026;01.04.2026;800,00\n",
    )
    placed = [line.split("  #")[0] for line in lines if line.startswith(("invoiceDate", "dueDate"))]
    assert placed == ['invoiceDate = "Bilag dt"', 'dueDate = "Betales"']
    # The same in a workbook, the moments real date cells with their time (helper-124).
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["Fakturanr", "Kunde", "Orgnr", "Registrert", "Bilag dt", "Betales", "Beløp"])
    sheet.append(["9001", "Fjord AS", "923609016", dt.datetime(2026, 2, 25, 10, 15),
                  dt.datetime(2026, 3, 1), dt.datetime(2026, 3, 31), 1200.0])  # fmt: skip
    sheet.append(["9002", "Bygg AS", "987654325", dt.datetime(2026, 2, 26, 14, 2),
                  dt.datetime(2026, 3, 2), dt.datetime(2026, 4, 1), 800.0])  # fmt: skip
    book.save(tmp_path / "ordre.xlsx")
    out = tmp_path / "ordre-xlsx.toml"
    filedrop("init", str(tmp_path / "ordre.xlsx"), "--out", str(out), environ={})
    placed = [
        line.split("  #")[0]
        for line in out.read_text(encoding="utf-8").splitlines()
        if line.startswith(("invoiceDate", "dueDate"))
    ]
    assert placed == ['invoiceDate = "Bilag dt"', 'dueDate = "Betales"']
    lines, _ = _drafted(
        tmp_path,
        "serial.csv",
        "Fakturanr;Kunde;Orgnr;Fakturadato;Forfallsdato;Beløp\n"
        "9001;Fjord AS;923609016;46082 00:00;31.03.2026;1 200,00\n",
        expect=None,
    )
    assert 'QUESTION: "46082 00:00" fits none of the formats drafts know' in "\n".join(lines)


def test_a_cell_quoted_in_a_question_is_escaped_and_cut(tmp_path: Path) -> None:
    """A date cell holding an escape sequence was written as it is into the draft's question:
    the draft was no TOML init could read back ("Found invalid character"), and the terminal
    took the sequence. A cell of 200,000 characters filled the comment. Both are shown as a
    problem shows a cell: escaped, and cut with its length."""
    long_cell = "01.03.2026 " + "9" * 200_000
    lines, said = _drafted(
        tmp_path,
        "rar.csv",
        "Fakturanr;Kunde;Orgnr;Fakturadato;Forfallsdato;Beløp\n"
        "9001;Fjord AS;923609016;01.03.2026;31.03.2026;1 200,00\n"
        f"9002;Bygg AS;987654325;02.03.2026\x1b[31m;{long_cell};800,00\n",
        expect=None,
    )
    import tomllib

    text = "\n".join(lines)
    tomllib.loads(text)
    assert "\x1b" not in text and "\x1b" not in said
    assert '"02.03.2026\\x1b[31m" fits none of the formats drafts know' in text
    assert max(map(len, lines)) < 1_000


def test_an_amount_the_number_style_does_not_read_is_named(tmp_path: Path) -> None:
    """The draft said "check: 1 amounts typed as text do not fit", naming none to check."""
    lines, _ = _drafted(
        tmp_path,
        "odd.csv",
        "Fakturanr;Kunde;Orgnr;Fakturadato;Forfallsdato;Beløp\n"
        "9001;Fjord AS;923609016;01.03.2026;31.03.2026;1 200,00\n"
        "9002;Bygg AS;987654325;02.03.2026;01.04.2026;800 NOK 50\n",
        expect=1,  # the row it does not read is INVALID
    )
    assert 'decimal = ","  # check: an amount typed as text, "800 NOK 50", does not fit' in lines


@pytest.mark.parametrize(
    ("dates", "drafted", "other"),
    [
        # Day first, due on 14.02.2026 before its invoice; year first, 30 days apart.
        ([("26-01-15", "26-02-14"), ("26-02-03", "26-03-05")], "yy-mm-dd", "dd-mm-yy"),
        # Year first, in 2030 and due 13 months later: day first, 2019 and 30 days.
        ([("30-09-19", "30-10-19"), ("29-10-19", "29-11-19")], "dd-mm-yy", "yy-mm-dd"),
        ([("24-10-24", "25-11-24"), ("25-10-24", "26-11-24")], "dd-mm-yy", "yy-mm-dd"),
        # Both readings 31 days apart and in the past: the one nearer today, 2025 not 2003.
        ([("25-01-03", "25-02-03"), ("25-03-03", "25-04-03")], "yy-mm-dd", "dd-mm-yy"),
    ],
)
def test_dates_with_two_digit_years_are_drafted_as_claims_dates_read(
    tmp_path: Path, dates: list[tuple[str, str]], drafted: str, other: str
) -> None:
    """26-01-15 reads as 26 January 2015 and as 15 January 2026. The draft takes the reading
    whose dates a claim can have (none far ahead of today, each due date on or after its
    invoice date and within a year), day first on a tie, and asks either way: taken as the
    one nearer today, 30-09-19 went out as 19 September 2030 (a hostile review)."""
    lines, said = _drafted(
        tmp_path,
        "uni.csv",
        "Fakturanr;Kunde;Orgnr;Fakturadato;Forfallsdato;Beløp\n"
        f"9001;Fjord AS;923609016;{dates[0][0]};{dates[0][1]};1 200,00\n"
        f"9002;Bygg AS;987654325;{dates[1][0]};{dates[1][1]};800,00\n",
    )
    assert (
        f'dates = ["{drafted}"]  # QUESTION: every date such as "{dates[0][0]}" reads as '
        f"{drafted} and as {other} (a two-digit year may come first): which is it?"
    ) in lines
    assert "2 invoices to send" in said


def test_the_amount_with_vat_is_the_invoices_where_both_are_exported(tmp_path: Path) -> None:
    """Fiken exports "Beløp eks. mva" before "Beløp inkl. mva": the draft took the first for the
    invoice's amount, and the amount still owed (with VAT) went out larger than the invoice.
    An amount before VAT is drafted only where the file has no other."""
    head = "Fakturanummer;Kunde;Org.nr.;Fakturadato;Forfallsdato;Beløp eks. mva"
    row = "10001;Fjord AS;923609016;01.03.2026;31.03.2026;1 000,00"
    lines, _ = _drafted(
        tmp_path,
        "utestaende.csv",
        f"{head};Beløp inkl. mva;Utestående\n{row};1 250,00;1 250,00\n",
    )
    assert 'originalInvoiceAmount = "Beløp inkl. mva"  # partial match: "Beløp"' in lines
    drafted, _ = _drafted(tmp_path, "netto.csv", f"{head}\n{row}\n")
    assert (
        'originalInvoiceAmount = "Beløp eks. mva"  # partial match: "Beløp", before VAT'
    ) in drafted


def test_a_company_name_column_beside_first_and_last_names_fills_a_companys_name(
    tmp_path: Path,
) -> None:
    """Fornavn, Etternavn and Firmanavn, a company's row with only Firmanavn: the draft left
    Firmanavn a question, and the company went without a name (FAILED at the API). Amili takes
    a company's name as the last name, so the last name defaults to Firmanavn. Beside a full
    name alone, Firmanavn is still asked about."""
    head = "Kundetype;{names};Personnr;Org.nr;Faktura;Dato;Forfall;Beløp\n"
    rows = [
        "Privat;{person};01058211237;;6001;01.02.2024;15.02.2024;500,00\n",
        "Bedrift;{company};;923609016;6002;02.02.2024;16.02.2024;2 000,00\n",
    ]
    lines, said = _drafted(
        tmp_path,
        "kunder.csv",
        head.format(names="Fornavn;Etternavn;Firmanavn")
        + rows[0].format(person="Kari;Nordmann;")
        + rows[1].format(company=";;Fjord AS"),
    )
    assert (
        'lastname = { column = "Etternavn", default = { column = "Firmanavn" } }  # exact synonym'
    ) in lines
    assert "2 invoices to send, 2 rows valid, 0 invalid" in said
    _, said = _drafted(
        tmp_path,
        "navn.csv",
        head.format(names="Kundenavn;Firmanavn")
        + rows[0].format(person="Kari Nordmann;")
        + rows[1].format(company=";Fjord AS"),
        expect=None,
    )
    assert 'column "Firmanavn" is not used; which field holds it, if any?' in said
