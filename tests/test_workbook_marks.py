"""What a workbook's XML says that its values do not: cells holding an Excel error, and hidden
rows. calamine reads an error cell as empty, and knows nothing of hidden rows; both used to send
wrong invoices without a word."""

from __future__ import annotations

import os
import warnings
import zipfile
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
from builders import ERP_HEADER, EXAMPLES, erp_row, filedrop, run_env

from filedrop.mapping import load_mapping
from filedrop.mapping.prepare import prepare
from filedrop.read import ReadLimits, read_table
from filedrop.read.limits import inspect_workbook
from filedrop.sandbox import Sandbox

OPEN_ITEMS = EXAMPLES / "apne-poster-mars.xlsx"  # invoice 24-1001 is rows 5-7: 4500 + 70 + 35.5


def edited_open_items(dest: Path, edit: object) -> Path:
    """The shipped open-items workbook, changed by ``edit(sheet)``, saved as ``dest``."""
    book = openpyxl.load_workbook(OPEN_ITEMS)
    edit(book.active)  # type: ignore[operator]
    book.save(dest)
    old = 1_000_000_000
    os.utime(dest, (old, old))
    return dest


def set_error(sheet: object, ref: str, code: str) -> None:
    sheet[ref] = code  # type: ignore[index]
    sheet[ref].data_type = "e"  # type: ignore[index]


def outcome_rows(path: Path) -> pd.DataFrame:
    return pd.read_excel(path, header=3, dtype=str, keep_default_na=False, engine="openpyxl")


def test_an_error_cell_in_a_claim_line_keeps_its_invoice_from_being_sent(
    inbox: Path, sandbox: Sandbox
) -> None:
    """The reminder fee of 24-1001 reads #N/A: the line was dropped as empty and the invoice
    sent for 4,535.50 instead of 4,605.50. Now its rows are INVALID, the cell named, and the
    outcome shows #N/A where the file has it; a row of nothing but errors gets a status too."""

    def edit(sheet: object) -> None:
        set_error(sheet, "C6", "#N/A")
        for column in "ABC":
            set_error(sheet, f"{column}21", "#REF!")

    edited_open_items(inbox / "apne-poster-mars.xlsx", edit)
    filedrop("run", environ=run_env(inbox, sandbox.url), expect=1)
    outcome = outcome_rows(inbox / "apne-poster-mars.outcome.xlsx")
    first = outcome[outcome["Invoice no"] == "24-1001"]
    assert list(first["outcome_status"]) == ["INVALID"] * 3
    assert 'Amount "#N/A" shows an Excel error, not a value' in first["outcome_message"].iloc[1]
    assert first["Amount"].iloc[1] == "#N/A"
    assert "24-1001" not in sandbox.received_invoice_numbers()
    assert "24-1002" in sandbox.received_invoice_numbers()
    last = outcome[outcome["Invoice no"] == "#REF!"]
    assert list(last["outcome_status"]) == ["INVALID"]


def test_an_error_in_a_csv_saved_from_excel_is_named_too(tmp_path: Path) -> None:
    """Excel writes an error cell into a CSV as its text: the same sentence, not 'not a number'."""
    from builders import ERP_HEADER, erp_row

    source = tmp_path / "f.csv"
    source.write_bytes(("\r\n".join([ERP_HEADER, erp_row("1", amount="#DIV/0!")])).encode("cp1252"))
    mapping = EXAMPLES.parent / "mappings" / "norwegian-erp.toml"
    _, out, _ = filedrop("validate", str(source), "--mapping", str(mapping), environ={}, expect=1)
    assert 'row 2: Beløp "#DIV/0!" shows an Excel error, not a value' in out
    assert "not a number" not in out


def test_hidden_data_rows_refuse_the_workbook_and_nothing_is_sent(
    inbox: Path, sandbox: Sandbox
) -> None:
    """Someone filters the export down to the invoices to collect and drops it: every row was
    sent, shown or hidden. Now the file is an ERROR naming the hidden rows, and nothing goes."""

    def edit(sheet: object) -> None:
        for row in (9, 10):
            sheet.row_dimensions[row].hidden = True  # type: ignore[attr-defined]
        sheet.auto_filter.ref = "A4:Q20"  # type: ignore[attr-defined]

    edited_open_items(inbox / "apne-poster-mars.xlsx", edit)
    filedrop("run", environ=run_env(inbox, sandbox.url), expect=1)
    book = openpyxl.load_workbook(inbox / "apne-poster-mars.outcome.xlsx")
    header, row = (list(r) for r in book.worksheets[0].iter_rows(max_row=2, values_only=True))
    assert row[header.index("outcome_status")] == "ERROR"
    assert row[header.index("outcome_message")] == (
        'apne-poster-mars.xlsx: sheet "Åpne poster" hides rows 9, 10 (by a filter, or by hand), '
        "and filedrop would send every row, shown or hidden; show all rows, delete those that "
        "are not to be sent, and save the file again"
    )
    assert sandbox.received_invoice_numbers() == []


def test_hidden_rows_without_data_or_above_the_header_are_no_reason_to_refuse(
    tmp_path: Path,
) -> None:
    """A hidden title line, or a hidden empty row below the data, hides no invoice."""

    def edit(sheet: object) -> None:
        sheet.row_dimensions[2].hidden = True  # type: ignore[attr-defined]
        sheet.row_dimensions[40].hidden = True  # type: ignore[attr-defined]

    table = read_table(edited_open_items(tmp_path / "apne-poster-mars.xlsx", edit))
    assert len(table) == 16


def test_error_cells_are_found_across_the_chunks_the_sheet_is_inflated_in(
    tmp_path: Path,
) -> None:
    """The sheet's XML is looked at a megabyte at a time: an error cell anywhere in a long sheet,
    one cut between two chunks included, is found, at its row and column."""
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["Fakturanr", "Beløp", "Tekst"])
    for n in range(40_000):
        sheet.append([f"{n:06d}", n + 1, "x" * (n % 7)])
    for row in range(2, 40_002, 997):
        set_error(sheet, f"C{row}", "#VALUE!")
    book.save(tmp_path / "long.xlsx")
    marks = inspect_workbook(tmp_path / "long.xlsx", 0, ReadLimits())
    assert marks is not None
    assert marks.errors == {(row, 2): "#VALUE!" for row in range(2, 40_002, 997)}
    assert marks.hidden_rows == frozenset()


def test_a_cell_or_row_cut_between_two_chunks_is_found_wherever_the_cut_falls() -> None:
    """Every place the inflated XML can be cut in two, inside the error cell (with its formula)
    and inside the hidden row's tag included."""
    from filedrop.read.limits import _SheetScan

    xml = (
        b'<sheetData><row r="7" spans="1:3" hidden="1"><c r="A7" t="s"><v>0</v></c>'
        b'<c r="AB7" s="2" t="e"><f>VLOOKUP(A7,Kunder!A:B,2,FALSE)</f><v>#N/A</v></c></row>'
        b"</sheetData>"
    )
    for cut in range(1, len(xml)):
        scan = _SheetScan()
        scan.feed(xml[:cut])
        scan.feed(xml[cut:])
        assert scan.errors == {(7, 27): "#N/A"}, cut
        assert scan.hidden_rows == {7}, cut


def test_crafted_tags_without_an_end_are_read_past_in_one_pass() -> None:
    """A sheet of "<c " and "<row " that never close, or of a shared formula's attribute and no
    tag (made to make a search try every one to the end of the chunk, which took hours a
    megabyte), is read past, and the real marks after it are found."""
    from filedrop.read.limits import _SheetScan

    junk = b"<c " * 100_000 + b'<row hidden="1" ' * 50_000 + b"<c t=" * 50_000
    junk += b'si="1" ' * 150_000 + b'f t="shared" ' * 80_000
    real = b'<row r="9" hidden="1"><c r="B9" t="e"><v>#REF!</v></c><c r="C9"><f>1</f></c></row>'
    scan = _SheetScan()
    scan.feed(junk + real)
    assert scan.errors == {(9, 1): "#REF!"}
    assert scan.hidden_rows == {9}
    assert unsaved_of(scan) == {(9, 2): "=1"}


def test_a_formula_whose_result_was_never_saved_keeps_its_invoice_from_being_sent(
    inbox: Path, sandbox: Sandbox
) -> None:
    """A workbook made by a program (openpyxl here) holds formulas without their results, and
    calamine reads each as empty: the reminder fee of 24-1001 computed as =60+10 was "empty",
    its line dropped and the invoice sent for less (an optional KID or email would be left out
    without a word). Now its rows are INVALID, the formula named with the cure, once; the
    other invoices go."""

    def edit(sheet: object) -> None:
        sheet["C6"] = "=60+10"  # type: ignore[index]

    edited_open_items(inbox / "apne-poster-mars.xlsx", edit)
    filedrop("run", environ=run_env(inbox, sandbox.url), expect=1)
    outcome = outcome_rows(inbox / "apne-poster-mars.outcome.xlsx")
    first = outcome[outcome["Invoice no"] == "24-1001"]
    assert list(first["outcome_status"]) == ["INVALID"] * 3
    assert first["outcome_message"].iloc[1] == (
        'Amount holds the formula "=60+10", whose result Excel or LibreOffice never calculated '
        "and saved (the file was written by another program), so it has no value; open the file "
        "in Excel or LibreOffice and save it, then drop it again"
    )
    assert "24-1001" not in sandbox.received_invoice_numbers()
    assert "24-1002" in sandbox.received_invoice_numbers()


def erp_workbook(path: Path, rows: list[list[object]]) -> Path:
    """A workbook of the norwegian-erp layout, written by openpyxl (formulas without results),
    with a helper column "Notat" after the mapped ones."""
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Fakturaer"
    sheet.append([*ERP_HEADER.split(";"), "Notat"])
    for row in rows:
        sheet.append(row)
    book.save(path)
    return path


def erp_cells(number: str, **over: object) -> list[object]:
    cells: list[object] = list(erp_row(number).split(";"))
    header = ERP_HEADER.split(";")
    for name, value in over.items():
        cells[header.index(name)] = value
    return cells


def validate(path: Path, *, expect: int) -> list[str]:
    mapping = EXAMPLES.parent / "mappings" / "norwegian-erp.toml"
    _, out, err = filedrop(
        "validate", str(path), "--mapping", str(mapping), environ={}, expect=expect
    )
    return (out + err).splitlines()


def test_an_unsaved_formula_is_refused_where_the_mapping_reads_it_and_nowhere_else(
    tmp_path: Path,
) -> None:
    """Read through a template ({Kundenr}-{Fakturanr}) as through its own column, the formula
    makes the row INVALID: sent, its text went out inside the template. In a column the mapping
    does not read, or on a row of nothing else, it is no row's business."""
    path = erp_workbook(
        tmp_path / "f.xlsx",
        [
            [*erp_cells("5001"), "=1+1"],  # a helper formula nobody reads: the row is fine
            [*erp_cells("5002", Kundenr='="100"&"02"'), None],
            # A company's Orgnr, the default where Fødselsnr is empty, and one where it is not.
            erp_cells("5004", Kundetype="B", Fødselsnr="", Orgnr='="9"&"88077917"'),
            erp_cells("5005", Orgnr="=1"),
            [None] * 17 + ['=IF(A4="","",1)'],  # blank but for the helper: an empty row
            erp_cells("5003"),
        ],
    )
    lines = validate(path, expect=1)
    assert lines[1] == "5 rows, 3 invoices to send, 3 rows valid, 2 invalid, 0 duplicate"
    cure = (
        "whose result Excel or LibreOffice never calculated and saved (the file was written by "
        "another program), so it has no value; open the file in Excel or LibreOffice and save "
        "it, then drop it again"
    )
    assert lines[2:] == [
        f'  error: row 3: Kundenr holds the formula "="100"&"02"", {cure}',
        f'  error: row 4: Orgnr holds the formula "="9"&"88077917"", {cure}',
    ]


@pytest.mark.parametrize("where", ["a row of formulas", "the grouping column"])
def test_an_unsaved_formula_no_row_can_answer_for_refuses_the_workbook(
    tmp_path: Path, where: str
) -> None:
    """A row of nothing but formulas reads as an empty row and was left out without a word; a
    line whose invoice number (the grouping column) is =A5 made an invoice of its own, and its
    invoice went for less. Either refuses the file, naming the first cell."""
    if where == "a row of formulas":
        rows = [erp_cells("6001"), ['=A2&"b"', *(["=B2"] * 16)]]
        mapping = EXAMPLES.parent / "mappings" / "norwegian-erp.toml"
        expected = 'row 3: Fakturanr holds the formula "=A2&"b"", whose result Excel'
    else:
        rows = [erp_cells("6001"), erp_cells("=A2")]
        text = (EXAMPLES.parent / "mappings" / "norwegian-erp.toml").read_text()
        mapping = tmp_path / "grouped.toml"
        mapping.write_text(text + '\n[group]\nby = "Fakturanr"\n', encoding="utf-8")
        expected = 'row 3: Fakturanr holds the formula "=A2", whose result Excel'
    path = erp_workbook(tmp_path / "f.xlsx", rows)
    _, _, err = filedrop("validate", str(path), "--mapping", str(mapping), environ={}, expect=2)
    assert expected in err, err
    assert "open the file in Excel or LibreOffice and save it" in err


def unsaved_of(scan: object) -> dict[tuple[int, int], str]:
    """A sheet scan's unsaved formulas, (row, column) -> formula; each cell found once."""
    cells = list(zip(scan.unsaved_rows, scan.unsaved_columns, strict=True))  # type: ignore[attr-defined]
    assert len(cells) == len(set(cells)), cells
    return {cell: scan.formulas.get(cell, "?") for cell in cells}  # type: ignore[attr-defined]


def test_formulas_are_results_where_a_spreadsheet_saved_them_and_nowhere_else(
    tmp_path: Path,
) -> None:
    """A formula saved with its result, as Excel saves every one (a text result "" with
    t="str"), reads as that result and is no one's business; one above the header neither. A
    workbook that asks to be calculated when opened (xlsxwriter, which pandas writes with,
    puts 0 or a guess in each formula) has no result it can vouch for: its formulas count as
    unsaved, whatever they hold."""
    import xlsxwriter

    path = tmp_path / "written.xlsx"
    book = xlsxwriter.Workbook(path)
    sheet = book.add_worksheet("Fakturaer")
    sheet.write_formula("A1", '="Rapport "&"mars"')  # a title
    sheet.write_row("A3", ["Fakturanr", "Beløp", "Tekst"])
    sheet.write_row("A4", ["1001", 100])
    sheet.write_formula("B5", "=60+10", None, 70)
    sheet.write_string("A5", "1002")
    sheet.write_formula("C5", '=IF(B5>0,"","x")', None, "")
    book.close()
    written = read_table(path)
    assert {c: rows.tolist() for c, rows in written.unsaved.items()} == {1: [5], 2: [5]}
    assert written.formulas[5, 1] == "=60+10"

    saved = tmp_path / "saved.xlsx"  # as Excel saves it: no recalculation asked, t="str"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(saved, "w") as out:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "xl/workbook.xml":
                data = data.replace(b' fullCalcOnLoad="1"', b"")
            if item.filename == "xl/worksheets/sheet1.xml":
                data = data.replace(b'<c r="C5">', b'<c r="C5" t="str">')
            out.writestr(item, data)
    table = read_table(saved)
    assert table.unsaved == {}
    assert table.cells[1].tolist() == ["100", "70"]
    assert table.cells[2].tolist() == ["", ""]


def test_a_skip_rule_does_not_decide_on_a_formula_without_its_result(tmp_path: Path) -> None:
    """A "paid" column made by a formula read as empty: the skip rule for paid invoices let the
    invoice go. Now the rule cannot decide there, and the row is INVALID, naming the cell; a
    row the rule can read is skipped as before."""
    path = erp_workbook(
        tmp_path / "f.xlsx",
        [
            [*erp_cells("7001"), "Betalt"],
            [*erp_cells("7002"), '=IF(1,"Betalt","Åpen")'],
            [*erp_cells("7003"), "Åpen"],
        ],
    )
    text = (EXAMPLES.parent / "mappings" / "norwegian-erp.toml").read_text()
    mapping = tmp_path / "paid.toml"
    mapping.write_text(text + '\n[skip]\npaid = { column = "Notat", is = ["Betalt"] }\n')
    _, out, _ = filedrop("validate", str(path), "--mapping", str(mapping), environ={}, expect=1)
    lines = out.splitlines()
    assert lines[1] == (
        "3 rows, 1 invoice to send, 1 row valid, 1 invalid, 0 duplicate, 1 skipped"
        " (not invoices to send)"
    )
    assert 'row 3: Notat holds the formula "=IF(1,"Betalt","Åpen")", whose result' in out
    # A rule that skips empty cells does not take the formula for one ("" made it skip a real
    # invoice silently).
    blank = tmp_path / "blank.toml"
    blank.write_text(text + '\n[skip]\nno_note = { column = "Notat", is = [""] }\n')
    path = erp_workbook(tmp_path / "g.xlsx", [erp_cells("7101"), [*erp_cells("7102"), "=A2"]])
    _, out, _ = filedrop("validate", str(path), "--mapping", str(blank), environ={}, expect=1)
    assert out.splitlines()[1] == (
        "2 rows, 0 invoices to send, 0 rows valid, 1 invalid, 0 duplicate, 1 skipped"
        " (not invoices to send)"
    )
    assert 'row 3: Notat holds the formula "=A2", whose result' in out


def test_unsaved_formulas_are_found_in_every_form_and_wherever_the_chunk_is_cut() -> None:
    """No <v>, an empty one, a shared formula's <f .../>, a namespace prefix: each is found, once,
    at its cell, wherever the XML is cut in two. A saved result, and an empty text saved as the
    result of a text formula (t="str"), are not."""
    from filedrop.read.limits import _SheetScan

    xml = (
        b'<sheetData><row r="2"><c r="A2"><f>1+1</f><v>2</v></c><c r="B2"><f>1&lt;2</f></c>'
        b'<c r="C2" s="1"><f>1+1</f><v /></c><c r="D2" t="str"><f>""&amp;""</f><v/></c>'
        b'<c r="E2"><f>1&lt;2</f><v></v></c></row><row r="3"><c r="F3">'
        b'<f t="shared" ref="F3:F4" si="0">A3*2</f><v>4</v></c></row><row r="4"><c r="F4">'
        b'<f t="shared" si="0"/></c><x:c r="AA4"><x:f>2*2</x:f></x:c><c r="AB4">'
        b'<f si="0" t="shared" /><v/></c><c r="AC4"><f>"&lt;"</f><v xml:space="preserve"/></c>'
        b"</row></sheetData>"
    )
    expected = {
        (2, 1): "=1<2",
        (2, 2): "=1+1",
        (2, 4): "=1<2",
        (4, 5): "=…",
        (4, 26): "=2*2",
        (4, 27): "=…",
        (4, 28): '="<"',
    }
    for cut in range(1, len(xml)):
        scan = _SheetScan()
        scan.feed(xml[:cut])
        scan.feed(xml[cut:])
        assert unsaved_of(scan) == expected, cut


def test_every_unsaved_formula_is_placed_and_the_first_ones_shown() -> None:
    """However many there are, each unsaved formula's cell is kept (8 bytes each), so one in a
    column the mapping reads is never missed; the formula itself only for the first 10,000."""
    from filedrop.read.limits import _FORMULAS_KEPT, _SheetScan

    rows = "".join(f'<row r="{r}"><c r="B{r}"><f>{r}+1</f><v/></c></row>' for r in range(2, 30_002))
    scan = _SheetScan()
    xml = f"<sheetData>{rows}</sheetData>".encode()
    for start in range(0, len(xml), 1 << 20):  # as inflated: a megabyte at a time
        scan.feed(xml[start : start + (1 << 20)])
    assert list(scan.unsaved_rows) == list(range(2, 30_002))
    assert set(scan.unsaved_columns) == {1}
    assert len(scan.formulas) == _FORMULAS_KEPT
    assert scan.formulas[2, 1] == "=2+1"


def test_a_formula_xlsxwriter_wrote_is_named_not_its_placeholder_0(tmp_path: Path) -> None:
    """xlsxwriter (pandas' writer) saves 0 for a formula and asks for it to be calculated when
    the file is opened: the amount read as 0 and was "not a positive amount", the KID "0" "not
    a valid KID". Now each such cell says what it is, once."""
    import xlsxwriter

    path = tmp_path / "pandas.xlsx"
    book = xlsxwriter.Workbook(path)
    sheet = book.add_worksheet("Fakturaer")
    sheet.write_row(0, 0, ERP_HEADER.split(";"))
    sheet.write_row(1, 0, erp_cells("8001"))
    sheet.write_row(2, 0, erp_cells("8002"))
    sheet.write_formula("D3", "=1000+234.5")  # Beløp
    sheet.write_formula("F3", '="0000"')  # KID
    book.close()
    lines = validate(path, expect=1)
    assert lines[1] == "2 rows, 1 invoice to send, 1 row valid, 1 invalid, 0 duplicate"
    assert [line.split(", whose")[0] for line in lines[2:]] == [
        '  error: row 3: Beløp holds the formula "=1000+234.5"',
        '  error: row 3: KID holds the formula "="0000""',
    ]


@pytest.mark.parametrize("line", ["Delsum", "Reminder fee"])
def test_a_grouping_formula_refuses_the_file_unless_its_row_is_skipped(
    tmp_path: Path, line: str
) -> None:
    """A line whose invoice number (the grouping column) is =A5 refuses the file: it would make
    an invoice of its own, and its invoice go for less. On a subtotal line the mapping skips,
    it is no line of any invoice: the file is read, the line SKIPPED (here by the built-in
    totals rule, as the formula reads as an empty invoice number)."""

    def edit(sheet: object) -> None:
        sheet.append(["=A20", line, 70])  # type: ignore[attr-defined]

    path = edited_open_items(tmp_path / "apne-poster-mars.xlsx", edit)
    mapping = EXAMPLES.parent / "mappings" / "example.toml"
    if line == "Delsum":
        _, out, _ = filedrop("validate", str(path), "--mapping", str(mapping), environ={}, expect=1)
        assert '  skipped: row 21: rule skip.totals: Line "Delsum" marks a totals row' in out
    else:
        _, _, err = filedrop("validate", str(path), "--mapping", str(mapping), environ={}, expect=2)
        assert 'row 21: Invoice no holds the formula "=A20", whose result' in err
        assert "which invoice the line belongs to cannot be told" in err


def test_a_sheet_of_nothing_but_unsaved_formulas_says_so(tmp_path: Path) -> None:
    """Every data row made of formulas with no saved result read as empty: "no data rows below
    it" sent the user looking for rows Excel shows. Now the sentence names the formulas, the
    first one's place, and the cure."""
    path = erp_workbook(tmp_path / "f.xlsx", [["=1001", "=B1", None, "=100+1"]])
    mapping = EXAMPLES.parent / "mappings" / "norwegian-erp.toml"
    _, _, err = filedrop("validate", str(path), "--mapping", str(mapping), environ={}, expect=2)
    assert err.endswith(
        'sheet "Fakturaer" has a header on row 1, and below it nothing but formulas whose '
        "results Excel or LibreOffice never calculated and saved (the file was written by "
        "another program; the first: Fakturanr on row 2), so its rows read as empty; open the "
        "file in Excel or LibreOffice and save it, then drop it again\n"
    )


def test_a_long_unsaved_formula_is_cut_as_any_value_with_its_real_length(tmp_path: Path) -> None:
    """The formula is kept whole and cut by the message as any long value is, so the length it
    names is the formula's (it named that of a copy already cut to 200 characters)."""
    formula = '="A"&"' + "B" * 20_000 + '"'
    path = erp_workbook(tmp_path / "f.xlsx", [erp_cells("9101", Kundenr=formula)])
    lines = validate(path, expect=1)
    assert f"({len(formula):,} characters), whose result" in lines[2]


def test_an_unsaved_formula_in_a_required_template_is_said_once(tmp_path: Path) -> None:
    """The formula is why the invoice number has no value: the template's field does not say
    "is empty" as well (its cells are not empty)."""
    text = (EXAMPLES.parent / "mappings" / "norwegian-erp.toml").read_text(encoding="utf-8")
    mapping = tmp_path / "m.toml"
    mapping.write_text(
        text.replace(
            'invoiceNumber = "Fakturanr"', 'invoiceNumber = { template = "{notat}-{Fakturanr}" }'
        ),
        encoding="utf-8",
    )
    path = erp_workbook(
        tmp_path / "f.xlsx", [[*erp_cells("5001"), '="A"&"B"'], [*erp_cells("5002"), "A"]]
    )
    _, out, err = filedrop("validate", str(path), "--mapping", str(mapping), environ={}, expect=1)
    problems = [line for line in (out + err).splitlines() if line.startswith("  ")]
    assert problems == [
        '  error: row 2: Notat holds the formula "="A"&"B"", whose result Excel or LibreOffice '
        "never calculated and saved (the file was written by another program), so it has no "
        "value; open the file in Excel or LibreOffice and save it, then drop it again"
    ]


def test_an_amount_near_the_float_s_limit_is_refused_without_numpy_s_warning(
    tmp_path: Path,
) -> None:
    """A claim of 1e308 makes an invoice whose sum no amount can be: its rows are refused, and
    the terminal shows filedrop's sentences only, not numpy's overflow warning."""
    path = edited_open_items(tmp_path / "f.xlsx", lambda sheet: sheet.__setitem__("C5", 1e308))
    mapping = EXAMPLES.parent / "mappings" / "example.toml"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning would end the command: expect=1 fails
        _, out, err = filedrop(
            "validate", str(path), "--mapping", str(mapping), environ={}, expect=1
        )
    assert "row 5: Amount" in out
    assert "overflow" not in err + out


@pytest.mark.parametrize("in_child", [True, False], ids=["reader-child", "in-process"])
def test_merged_cells_below_the_header_hold_their_value_on_every_row(
    tmp_path: Path, in_child: bool
) -> None:
    """Invoice 24-1001's number merged over its three lines (A5:A7), as report layouts have it:
    Excel shows it on each line. The lines below the first were read without a number, INVALID
    ("Invoice no is empty"), and the principal sent alone. A merge across columns in a data row
    repeats its value too; the title merged above the header is left as it was."""

    def edit(sheet: object) -> None:
        sheet["A6"] = sheet["A7"] = None  # type: ignore[index]
        sheet.merge_cells("A5:A7")  # type: ignore[attr-defined]
        sheet.merge_cells("A1:F1")  # type: ignore[attr-defined]  the title, above the header
        sheet["E9"] = None  # type: ignore[index]
        sheet.merge_cells("D9:E9")  # type: ignore[attr-defined]  a date over both date columns

    path = edited_open_items(tmp_path / "apne-poster-mars.xlsx", edit)
    table = read_table(path, limits=ReadLimits(read_in_subprocess=in_child))
    numbers = table.cells[0].tolist()
    assert numbers[:3] == ["24-1001", "24-1001", "24-1001"]
    assert table.values[0].tolist()[:3] == ["24-1001", "24-1001", "24-1001"]
    assert table.cells[3][4] == table.cells[4][4] != ""  # row 9: D9's date in E9 as well
    assert table.values[3][4] == table.values[4][4]
    title = table.layout.titles[0][1]
    assert title[0].startswith("Åpne poster per") and title[1] is None
    prepared = prepare(table, load_mapping(EXAMPLES.parent / "mappings" / "example.toml"))
    first = next(i for i in prepared.invoices if i.invoice_number == "24-1001")
    assert [c["remainingAmount"] for c in first.payload["claims"]] == [4500.0, 70.0, 35.5]


@pytest.mark.parametrize("in_child", [True, False], ids=["reader-child", "in-process"])
def test_an_amount_merged_beside_several_rows_is_sent_with_none(
    tmp_path: Path, in_child: bool
) -> None:
    """One amount shown once beside two invoices (C8:C9, 24-1002's 12 300 over 24-1003's
    principal) went with each in full, and one beside the principal and fee of 24-1001 (C5:C6)
    was claimed on both lines (found by a hostile review: 6 000 sent where the sheet showed
    3 000). Those invoices are INVALID, naming the merged cells; the others go."""

    def edit(sheet: object) -> None:
        sheet["C6"] = sheet["C9"] = None  # type: ignore[index]
        sheet.merge_cells("C5:C6")  # type: ignore[attr-defined]
        sheet.merge_cells("C8:C9")  # type: ignore[attr-defined]

    path = edited_open_items(tmp_path / "apne-poster-mars.xlsx", edit)
    table = read_table(path, limits=ReadLimits(read_in_subprocess=in_child))
    assert dict(table.merged_down) == {2: ((5, 6), (8, 9))}
    prepared = prepare(table, load_mapping(EXAMPLES.parent / "mappings" / "example.toml"))
    sent = {invoice.invoice_number for invoice in prepared.invoices}
    assert not sent & {"24-1001", "24-1002", "24-1003"}
    assert "24-1009" in sent
    said = {prepared.table.row_numbers[r]: text for r, (_, text) in prepared.rejected.items()}
    lines = (
        'Amount "4500" is one merged cell (C5:C6) beside 2 lines of one invoice, and would be '
        "sent in full with each line; give each row its own amount"
    )
    assert (said[5], said[6]) == (lines, f"row 5: {lines}")
    invoices = (
        'Amount "12300" is one merged cell (C8:C9) beside 2 invoices, and would be sent in '
        "full with each invoice; give each row its own amount"
    )
    assert (said[8], said[9]) == (invoices, invoices)


def test_an_amount_merged_beside_two_invoices_is_caught_through_a_default_column_too(
    tmp_path: Path,
) -> None:
    """A claim's amount read from "Rest", or where that is empty from "Amount" (``default``):
    "Amount" merged beside two invoices went with each in full, as only the columns a field
    names first were looked at (found by a review). Those invoices are INVALID as well."""

    def edit(sheet: object) -> None:
        sheet["R4"] = "Rest"  # type: ignore[index]  a column of its own, empty below
        sheet["C9"] = None  # type: ignore[index]
        sheet.merge_cells("C8:C9")  # type: ignore[attr-defined]

    path = edited_open_items(tmp_path / "apne-poster-mars.xlsx", edit)
    text = (EXAMPLES.parent / "mappings" / "example.toml").read_text(encoding="utf-8")
    assert 'remainingAmount = "Amount"' in text
    mapping_path = tmp_path / "rest.toml"
    mapping_path.write_text(
        text.replace(
            'remainingAmount = "Amount"',
            'remainingAmount = { column = "Rest", default = { column = "Amount" } }',
        ),
        encoding="utf-8",
    )
    prepared = prepare(read_table(path), load_mapping(mapping_path))
    sent = {invoice.invoice_number for invoice in prepared.invoices}
    assert not sent & {"24-1002", "24-1003"}
    assert "24-1009" in sent


def test_a_heading_merged_across_a_data_row_is_a_note_not_an_invoice(
    inbox: Path, sandbox: Sandbox
) -> None:
    """ "Avdeling Bergen" merged across the sheet between two groups of invoices: read as an
    invoice, its text stood in every column and the row was INVALID on each of them. It is
    SKIPPED as a note, and the invoices around it go. A value merged over three columns beside
    other values of its row is one of them, as any shorter merge is."""

    def edit(sheet: object) -> None:
        sheet.insert_rows(8)  # type: ignore[attr-defined]  between 24-1001 and 24-1002
        sheet["A8"] = "Avdeling Bergen"  # type: ignore[index]
        sheet.merge_cells("A8:Q8")  # type: ignore[attr-defined]
        sheet["G22"], sheet["H22"], sheet["I22"] = "372", None, None  # type: ignore[index]
        sheet["A22"], sheet["C22"] = "24-1011", 99  # type: ignore[index]
        sheet.merge_cells("G22:I22")  # type: ignore[attr-defined]

    edited_open_items(inbox / "apne-poster-mars.xlsx", edit)
    filedrop("run", environ=run_env(inbox, sandbox.url), expect=1)
    outcome = outcome_rows(inbox / "apne-poster-mars.outcome.xlsx")
    note = outcome[outcome["Invoice no"] == "Avdeling Bergen"]
    assert list(note["outcome_status"]) == ["SKIPPED"]
    assert list(note["outcome_message"]) == ["a note across the row (merged cells A8:Q8)"]
    assert {"24-1001", "24-1002"} <= set(sandbox.received_invoice_numbers())
    merged_value = outcome[outcome["Invoice no"] == "24-1011"]
    assert list(merged_value["outcome_status"]) == ["INVALID"]
    assert "a note" not in merged_value["outcome_message"].iloc[0]


def test_a_merge_over_a_hidden_empty_row_leaves_that_row_empty(tmp_path: Path) -> None:
    """24-1001's number merged over its three lines and a hidden empty row below them: the
    hidden row shows nothing, so it is not filled, and the sheet is read (filled, it held data
    the sheet hides and the sheet was refused)."""

    def edit(sheet: object) -> None:
        sheet.insert_rows(8)  # type: ignore[attr-defined]
        sheet["A6"] = sheet["A7"] = None  # type: ignore[index]
        sheet.merge_cells("A5:A8")  # type: ignore[attr-defined]
        sheet.row_dimensions[8].hidden = True  # type: ignore[attr-defined]

    table = read_table(edited_open_items(tmp_path / "apne-poster-mars.xlsx", edit))
    assert table.cells[0].tolist()[:3] == ["24-1001"] * 3
    assert 8 not in table.row_numbers.tolist()
