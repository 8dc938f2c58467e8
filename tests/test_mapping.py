"""Loading mapping files, refusing bad ones in one sentence, and picking the mapping for a file."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from filedrop.errors import ConfigError, MappingError, ReadError
from filedrop.mapping import load_mapping, load_mappings, select_mapping
from filedrop.mapping.loader import MAX_NESTING, READ_KEYS, RULES, TOP_KEYS
from filedrop.mapping.tree import OPTION_KEYS, SOURCE_KEYS, Field, Many, Obj, as_toml
from filedrop.read import ReadInfo, ReadOptions, Table
from filedrop.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
MAPPINGS = ROOT / "mappings"

BASE = """\
[read]
decimal = ","
dates = ["dd.mm.yyyy"]

[invoice]
type = { constant = "NOTICE" }
invoiceNumber = "Fakturanr"
originalInvoiceAmount = "Beløp"
currency = { constant = "NOK" }
invoiceDate = "Fakturadato"
dueDate = "Forfallsdato"

[debtor]
type = { constant = "PRIVATE" }
firstname = "Fornavn"
lastname = "Etternavn"

[[claims]]
type = { constant = "PRINCIPAL" }
remainingAmount = "Beløp"
"""
HEADERS = ["Fakturanr", "Fakturadato", "Forfallsdato", "Beløp", "Fornavn", "Etternavn"]


def write(tmp_path: Path, text: str, name: str = "erp.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def table(headers: list[str], path: str = "januar.csv") -> Table:
    cells = pd.DataFrame({i: ["x"] for i in range(len(headers))}, dtype=object)
    return Table(
        path=Path(path), headers=headers, cells=cells, values=cells,
        row_numbers=np.array([2]), info=ReadInfo(kind="csv"),
    )  # fmt: skip


def test_shipped_mappings_load() -> None:
    """mappings/*.toml load, sorted by file name, each with the read settings its files need."""
    example, erp, tripletex, visma = load_mappings(MAPPINGS)
    names = [m.path.name for m in (example, erp, tripletex, visma)]
    assert names == ["example.toml", "norwegian-erp.toml", "tripletex.toml", "visma.toml"]
    assert (tripletex.files, visma.files) == (("tripletex*.xlsx",), ("visma*.csv",))
    assert erp.read.encoding is None and erp.read.delimiter == ";"  # cp1252 or UTF-8: detected
    assert (erp.decimal, erp.date_formats) == (",", ("dd.mm.yyyy", "dd.mm.yy"))
    assert example.group_by == ("Invoice no",) and example.severity("email") == "warning"
    assert "Forfallsdato" in erp.read.expected_headers and "Forfall" in erp.read.expected_headers


def test_mapping_mirrors_the_invoice_json(tmp_path: Path) -> None:
    """Sections become objects and lists; a string is a column, a table says more."""
    m = load_mapping(
        write(tmp_path, BASE + '\n[debtor.addresses]\nzipCode = { column = "Postnr", pad = 4 }\n')
    )
    assert isinstance(m.invoice, Obj) and isinstance(m.debtors, Many) and isinstance(m.claims, Many)
    number = m.invoice.get("invoiceNumber")
    assert isinstance(number, Field) and (number.source, number.columns) == (
        "column",
        ("Fakturanr",),
    )
    (debtor,) = m.debtors.items
    addresses = debtor.get("addresses")
    assert isinstance(addresses, Many)
    zip_code = addresses.items[0].get("zipCode")
    assert isinstance(zip_code, Field) and zip_code.pad == 4
    assert m.read == ReadOptions(sheet=0, expected_headers=m.read.expected_headers)
    assert m.name == "erp"


def test_unknown_field_passes_through_but_a_near_miss_is_refused(tmp_path: Path) -> None:
    """A field the API may add is kept; one that looks like a typo of a known field is not."""
    m = load_mapping(
        write(
            tmp_path,
            BASE.replace("[debtor]", 'collectionChannel = { constant = "EMAIL" }\n[debtor]'),
        )
    )
    assert isinstance(m.invoice.get("collectionChannel"), Field)
    with pytest.raises(MappingError) as err:
        load_mapping(write(tmp_path, BASE.replace("[debtor]", 'dueDtae = "Forfall"\n[debtor]')))
    assert err.value.detail == (
        'key "invoice.dueDtae" is not a field filedrop knows (did you mean "dueDate"?); unknown '
        "fields go to the API as they are."
    )


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        (
            ("[read]", "colour = 1\n[read]"),
            'key "colour" is not a known option (known: name, match, read, rules, group, skip, '
            "invoice, debtor, debtors, claims).",
        ),
        (
            ('decimal = ","', 'decimal = ","\ndelimter = ";"'),
            'key "read.delimter" is not a known option (did you mean "delimiter"?).',
        ),
        (
            ('decimal = ","', 'decimal = ","\nheader_row = "three"'),
            'key "read.header_row" must be a whole number from 1 to 1000000, not "three".',
        ),
        (('decimal = ","', 'decimal = ";"'), 'key "read.decimal" must be "," or ".", not ";".'),
        (
            ('decimal = ","', 'decimal = ","\nencoding = "latin-9000"'),
            'key "read.encoding" is "latin-9000", which is not an encoding (try "utf-8" or '
            '"cp1252").',
        ),
        (
            ('decimal = ","', 'decimal = ","\nencoding = "hex"'),
            'key "read.encoding" is "hex", which is not a text encoding (try "utf-8" or "cp1252").',
        ),
        (
            ('decimal = ","', 'decimal = ","\ndelimiter = ";;"'),
            'key "read.delimiter" must be one character such as ";" or "," or "tab", not ";;".',
        ),
        (
            ('decimal = ","', 'decimal = ","\nthousands = [","]'),
            'key "read.thousands" cannot contain the decimal separator ",".',
        ),
        (
            ('dates = ["dd.mm.yyyy"]', 'dates = ["dd.mm.åååå"]'),
            'key "read.dates" has "dd.mm.åååå", which is not a date format (use dd, mm, yyyy or '
            'yy with . - / or a space between them, like "dd.mm.yyyy").',
        ),
        (('dates = ["dd.mm.yyyy"]', 'dates = "dd.mm.yyyy", 3'), None),  # invalid TOML, see below
        (
            ("[invoice]", '[rules]\nemail = "warn"\n[invoice]'),
            'key "rules.email" is "warn"; use "error", "warning" or "off".',
        ),
        (
            ("[invoice]", '[rules]\nemial = "off"\n[invoice]'),
            'key "rules.emial" is not a known option (did you mean "email"?).',
        ),
        (
            ('dueDate = "Forfallsdato"', ""),
            'key "invoice.dueDate" is missing; the API needs a due date (e.g. dueDate = '
            '"<column>").',
        ),
        (
            ('dueDate = "Forfallsdato"', 'dueDate = "Forfallsdato"\nfirstname = "Fornavn"'),
            'key "invoice.firstname" belongs in [debtor].',
        ),
        (
            ('dueDate = "Forfallsdato"', 'dueDate = { column = "A", constant = "B" }'),
            'key "invoice.dueDate" needs exactly one of column, constant or template, not column '
            "and constant.",
        ),
        (
            ('dueDate = "Forfallsdato"', 'dueDate = { names = ["A"] }'),
            'key "invoice.dueDate" needs exactly one of column, constant or template, not none.',
        ),
        (
            ('dueDate = "Forfallsdato"', 'dueDate = { colum = "A" }'),
            'key "invoice.dueDate.colum" is not a known option (did you mean "column"?).',
        ),
        (
            ('dueDate = "Forfallsdato"', "dueDate = { column = 7 }"),
            'key "invoice.dueDate.column" must be text in quotes, not 7.',
        ),
        (
            ('dueDate = "Forfallsdato"', 'dueDate = { column = "A", as = "text" }'),
            'key "invoice.dueDate.as" cannot be set for a field filedrop knows; it already '
            "converts it.",
        ),
        (
            ('dueDate = "Forfallsdato"', 'dueDate = { column = "A", split = ";" }'),
            'key "invoice.dueDate.split" only works for emails, phoneNumbers and other lists.',
        ),
        (
            ('dueDate = "Forfallsdato"', 'dueDate = { column = "A", trim = "yes" }'),
            'key "invoice.dueDate.trim" must be true or false, not "yes".',
        ),
        (
            (
                'lastname = "Etternavn"',
                'lastname = "Etternavn"\ncustomerNumber = { column = "K", pad = 0 }',
            ),
            'key "debtor.customerNumber.pad" must be a whole number from 1 to 64, not 0.',
        ),
        (
            (
                'lastname = "Etternavn"',
                'lastname = "Etternavn"\nphoneNumbers = { column = "Mobil", country = "Norway" }',
            ),
            'key "debtor.phoneNumbers.country" must be a country code such as "NO", for phone '
            'numbers only, not "Norway".',
        ),
        (
            ('lastname = "Etternavn"', 'lastname = "Etternavn"\naddresses = "Adresse"'),
            'key "debtor.addresses" must be a table of street, city, zipCode, countryCode, not '
            "one column.",
        ),
        (
            (
                'type = { constant = "PRIVATE" }',
                'type = { column = "T", map = { P = "PRIVATE", p = "X" } }',
            ),
            'key "debtor.type.map" has both "P" and "p", which match the same cells.',
        ),
        (
            (
                'dueDate = "Forfallsdato"',
                'dueDate = "Forfallsdato"\ndescription = { template = "Faktura" }',
            ),
            'key "invoice.description.template" is "Faktura" and names no column; use constant '
            "for a fixed value.",
        ),
        (
            (
                'dueDate = "Forfallsdato"',
                'dueDate = "Forfallsdato"\ndescription = { template = "{Nr:>5}" }',
            ),
            'key "invoice.description.template" is "{Nr:>5}"; write a column name in each { }, '
            'like "{Fakturanr}".',
        ),
        (
            (
                'dueDate = "Forfallsdato"',
                'dueDate = "Forfallsdato"\ndescription = { sum_of_claims = true }',
            ),
            'key "invoice.description.sum_of_claims" only works as invoice.originalInvoiceAmount '
            "= { sum_of_claims = true }.",
        ),
        (
            ('dueDate = "Forfallsdato"', 'dueDate = "Forfallsdato"\nextra = { map = { a = "b" } }'),
            'key "invoice.extra" has "map" but no column, constant or template to take a value '
            "from.",
        ),
    ],
)
def test_bad_mapping_is_refused_in_one_sentence(
    tmp_path: Path, change: tuple[str, str], detail: str | None
) -> None:
    """Unknown keys, wrong types and bad values name the file and the key, and say what fits."""
    path = write(tmp_path, BASE.replace(*change, 1))
    with pytest.raises(MappingError) as err:
        load_mapping(path)
    assert err.value.mapping == str(path)
    if detail is not None:
        assert err.value.detail == detail
        assert str(err.value) == f"{path}: {detail}"


def test_missing_debtor_or_claims_section_is_refused(tmp_path: Path) -> None:
    """An invoice needs a debtor and a claim; the mapping must say where they come from."""
    without_debtor = (
        BASE.split("[debtor]", maxsplit=1)[0] + BASE.split('lastname = "Etternavn"\n')[1]
    )
    with pytest.raises(MappingError) as err:
        load_mapping(write(tmp_path, without_debtor))
    assert (
        err.value.detail
        == 'key "debtor" is missing; every invoice needs a debtor (add [debtor] with type = ...).'
    )
    with pytest.raises(MappingError) as err:
        load_mapping(write(tmp_path, BASE.split("[[claims]]", maxsplit=1)[0]))
    assert (
        err.value.detail == 'key "claims" is missing; every invoice needs a claim (add [[claims]]).'
    )


def test_a_mapping_saved_by_notepad_loads_or_says_to_save_it_as_utf8(tmp_path: Path) -> None:
    """Notepad's byte order mark is dropped; a mapping saved as Windows-1252 (its "Beløp") is
    one sentence naming the line and the byte, not a codec's error."""
    bom = tmp_path / "bom.toml"
    bom.write_bytes(b"\xef\xbb\xbf" + BASE.encode("utf-8"))
    assert load_mapping(bom).invoice.get_field("originalInvoiceAmount") is not None
    ansi = tmp_path / "ansi.toml"
    ansi.write_bytes(BASE.encode("cp1252"))
    with pytest.raises(MappingError) as err:
        load_mapping(ansi)
    line = BASE[: BASE.index("ø")].count("\n") + 1
    assert str(err.value) == (
        f'{ansi}: is not UTF-8 text (line {line} holds the byte 0xF8, "ø" in Windows-1252); '
        "save it as UTF-8."
    )


def test_broken_toml_missing_file_and_empty_folder_are_refused(tmp_path: Path) -> None:
    """Syntax errors say where; a missing file or a folder without mappings says so."""
    with pytest.raises(MappingError) as err:
        load_mapping(write(tmp_path, BASE + "\n[broken\n"))
    assert err.value.detail.startswith(
        "is not valid TOML: Expected ']' at the end of a table declaration (at line 22"
    )
    with pytest.raises(MappingError) as err:
        load_mapping(tmp_path / "nope.toml")
    assert str(err.value) == f"{tmp_path / 'nope.toml'}: does not exist."
    (tmp_path / "empty").mkdir()
    with pytest.raises(MappingError) as err:
        load_mappings(tmp_path / "empty")
    assert err.value.detail == "has no *.toml mapping files; add one (see mappings/README.md)."


DEEP = 50_000
DEEP_HEADER = 5_000  # enough to overflow the stack; tomllib takes seconds on a longer header


@pytest.mark.parametrize(
    ("nested", "key"),
    [
        ("[invoice.extra]\nx = " + "{ a = " * DEEP + "1" + " }" * DEEP, "invoice.extra.x"),
        ("[invoice.x" + ".a" * DEEP_HEADER + "]\nb = 1", "invoice.x.a.a…"),
        ("[[claims.x" + ".a" * DEEP_HEADER + "]]\nb = 1", "claims.[1].x.a…"),
    ],
    ids=["inline-tables", "dotted-header", "array-of-tables"],
)
def test_a_deeply_nested_mapping_is_refused_in_one_sentence(
    tmp_path: Path, nested: str, key: str
) -> None:
    """Tables inside tables beyond any real mapping name the key, instead of a RecursionError."""
    with pytest.raises(MappingError) as err:
        load_mapping(write(tmp_path, BASE + "\n" + nested + "\n"))
    assert err.value.detail == (
        f'key "{key}" nests tables more than {MAX_NESTING} levels deep; a mapping needs only a'
        " few, like [debtor.addresses]."
    )


def test_read_options_reach_the_reader(tmp_path: Path) -> None:
    """Sheet counts from 1 for people and from 0 for the reader; tab may be written as a word."""
    text = BASE.replace(
        'decimal = ","',
        'decimal = ","\nsheet = 2\nheader_row = 3\ndelimiter = "tab"\nencoding = "latin-1"',
    )
    m = load_mapping(write(tmp_path, text))
    assert (m.read.sheet, m.read.header_row, m.read.delimiter, m.read.encoding) == (
        1,
        3,
        "\t",
        "iso8859-1",
    )
    assert (
        load_mapping(
            write(tmp_path, BASE.replace('decimal = ","', 'sheet = "Fakturaer"'))
        ).read.sheet
        == "Fakturaer"
    )


def test_file_name_globs_ignore_case(tmp_path: Path) -> None:
    """match.files patterns fit file names whatever their case; no patterns fit any name."""
    m = load_mapping(write(tmp_path, '[match]\nfiles = ["faktura*.csv"]\n' + BASE))
    assert m.matches_name(Path("inbox/FAKTURA-mars.CSV"))
    assert not m.matches_name(Path("inbox/kunder.csv"))
    assert load_mapping(write(tmp_path, BASE)).matches_name(Path("anything.xlsx"))


def test_headers_match_ignoring_case_spaces_and_unicode_spelling(tmp_path: Path) -> None:
    """ " faktura NR" finds Fakturanr; "på" typed as a + combining ring matches "på"."""
    m = load_mapping(write(tmp_path, BASE))
    headers = [" faktura NR", "FAKTURADATO", "Forfalls dato", "Bel\u00f8p", "Fornavn", "Etternavn"]
    positions = m.resolve_columns(headers, file_name="januar.csv")
    assert positions[("Fakturanr",)] == 0 and positions[("Forfallsdato",)] == 2
    decomposed = 'invoiceNumber = "Fakturanr pa\u030a"'
    aa = load_mapping(write(tmp_path, BASE.replace('invoiceNumber = "Fakturanr"', decomposed)))
    got = aa.resolve_columns(["Fakturanr pæ", "Fakturanr på", *headers[1:]], file_name="x.csv")
    assert got[("Fakturanr pa\u030a",)] == 1


def test_alternative_names_and_first_of_repeated_headers(tmp_path: Path) -> None:
    """names lists other headers for the same column; of two equal headers the first counts."""
    m = load_mapping(
        write(
            tmp_path,
            BASE.replace(
                'dueDate = "Forfallsdato"',
                'dueDate = { column = "Forfallsdato", names = ["Forfall"] }',
            ),
        )
    )
    positions = m.resolve_columns(
        ["Fakturanr", "Fakturadato", "Forfall", "Beløp", "Fornavn", "Etternavn", "Forfall"],
        file_name="x.csv",
    )
    assert positions[("Forfallsdato", "Forfall")] == 2


def test_column_the_file_lacks_is_named_with_the_files_headers(tmp_path: Path) -> None:
    """The sentence names the mapping key, the column, the file and its headers, and the fix."""
    path = write(
        tmp_path,
        BASE.replace(
            'dueDate = "Forfallsdato"',
            'dueDate = { column = "Forfallsdato", names = ["Forfall dato"] }',
        ),
    )
    with pytest.raises(MappingError) as err:
        load_mapping(path).resolve_columns(
            ["Fakturanr", "Forfall", "Beløp"], file_name="januar.xlsx"
        )
    assert str(err.value) == (
        f'{path}: key "invoice.invoiceDate" names column "Fakturadato", which januar.xlsx does '
        "not have"
        ' (its headers: Fakturanr, Forfall, Beløp); fix the header or add the name to "names".'
    )
    with pytest.raises(MappingError) as err:
        load_mapping(path).resolve_columns(
            ["Fakturanr", "Fakturadato", "Beløp"], file_name="januar.xlsx"
        )
    assert 'names column "Forfallsdato" (or "Forfall dato"), which januar.xlsx' in str(err.value)


def test_template_columns_must_exist_too(tmp_path: Path) -> None:
    """A column used only in a template is still required of the file."""
    path = write(
        tmp_path,
        BASE.replace(
            'dueDate = "Forfallsdato"',
            'dueDate = "Forfallsdato"\ndescription = { template = "{Tekst} {Fakturanr}" }',
        ),
    )
    with pytest.raises(MappingError) as err:
        load_mapping(path).resolve_columns(HEADERS, file_name="x.csv")
    assert err.value.detail.startswith(
        'key "invoice.description" uses in its template column "Tekst", which x.csv'
    )


class Reads:
    """A reader that counts its calls and serves canned headers (or fails)."""

    def __init__(self, headers: list[str] | None) -> None:
        self.headers, self.calls = headers, []

    def __call__(self, path: Path, options: ReadOptions) -> Table:
        self.calls.append(options)
        if self.headers is None:
            raise ReadError(str(path), "is not a CSV file we can read")
        return table(self.headers, str(path))


def test_select_picks_the_first_mapping_that_fits_name_and_columns(tmp_path: Path) -> None:
    """Name globs filter first; then the file must have the mapping's columns."""
    (tmp_path / "m").mkdir()
    write(tmp_path / "m", '[match]\nfiles = ["*.xlsx"]\n' + BASE, "a.toml")
    write(tmp_path / "m", '[match]\nfiles = ["*.csv"]\nheaders = ["Kundenr"]\n' + BASE, "b.toml")
    write(tmp_path / "m", '[match]\nfiles = ["*.csv"]\n' + BASE, "c.toml")
    reads = Reads(HEADERS)
    mapping, got = select_mapping(load_mappings(tmp_path / "m"), Path("mars.csv"), reads)
    assert mapping.path.name == "c.toml" and got.headers == HEADERS
    assert len(reads.calls) == 2  # b and c ask for different expected headers; a was never read


def test_select_reads_once_per_read_settings(tmp_path: Path) -> None:
    """Mappings with the same read settings share one read of the file."""
    misfit = load_mapping(write(tmp_path, '[match]\nheaders = ["Kundenr"]\n' + BASE, "a.toml"))
    reads = Reads(HEADERS)
    with pytest.raises(MappingError):
        select_mapping([misfit, misfit], Path("mars.csv"), reads)
    assert len(reads.calls) == 1


def test_no_mapping_fits_says_why_for_each(tmp_path: Path) -> None:
    """The error names the file, every mapping tried, why it did not fit, and the file's headers."""
    a = load_mapping(write(tmp_path, '[match]\nfiles = ["*.xlsx"]\n' + BASE, "a.toml"))
    b = load_mapping(write(tmp_path, BASE.replace('"Fakturanr"', '"Faktura nr."'), "b.toml"))
    with pytest.raises(MappingError) as err:
        select_mapping([a, b], Path("inbox/mars.csv"), Reads(["Nr", "Beløp", ""]))
    assert str(err.value) == (
        "inbox/mars.csv: no mapping fits this file: a.toml takes only files named *.xlsx; b.toml "
        "needs"
        ' column "Faktura nr." (key "invoice.invoiceNumber") (the file\'s headers: Nr, Beløp).'
    )


def test_a_mapping_that_leaves_what_is_owed_unread_does_not_fit(tmp_path: Path) -> None:
    """An export with Restbeløp beside Beløp, taken by a mapping that reads Beløp alone (the
    shipped norwegian-erp.toml fits it by its columns), sent a partly paid invoice to collection
    for its whole amount, and said nothing. Such a mapping does not fit, saying why; one that
    reads the column fits, and so does one that names it in [match] unread."""
    headers = [*HEADERS, "Rest beløp"]
    blind = load_mapping(write(tmp_path, BASE, "a.toml"))
    with pytest.raises(MappingError) as err:
        select_mapping([blind], Path("inbox/april.csv"), Reads(headers))
    assert err.value.detail.startswith(
        'no mapping fits this file: a.toml leaves column "Rest beløp" unread, which holds what '
        "is still owed: its invoices would go to collection for their whole amount; read it (a "
        'claim\'s remainingAmount = "Rest beløp"), or name it in [match] unread if it is not '
        "what the debtor owes (the file's headers: "
    )
    variants = ["Utestående beløp", "Restbeløp (kr)", "Rest å betale", "Amount due"]
    variants += ["Åpent beløp NOK", "Restbeløp inkl. mva", "Outstanding balance", "Restbeløp 2"]
    variants += ["Å betale", "Utestaende", "Overdue amount"]
    # And as a hostile review wrote them (helper-122): each went out for its whole amount.
    variants += ["Skyldig beløp", "Skyldig", "Restsaldo", "Åpen saldo", "Gjenstår"]
    variants += ["Amount owed", "Owed", "Rest beløp i NOK"]
    for variant in variants:
        with pytest.raises(MappingError, match=f'leaves column "{re.escape(variant)}" unread'):
            select_mapping([blind], Path("april.csv"), Reads([*HEADERS, variant]))
    # A word of what is owed beside others says something else of it: days, a date, a count.
    others = ["Dager utestående", "Saldo dato", "Rest. fakturaer antall", "Amount due date"]
    others += ["Balance sheet ref", "Rest kreditt", "Restaurant", "Remaining %", "Rest løpetid"]
    # A customer's balance, not an invoice's: Saldo, Balance and Rest count only alone.
    others += ["Saldo kunde", "Utgående saldo", "Customer balance", "Balance forward"]
    others += ["Remaining qty", "Outstanding since", "Interest beløp"]
    for other in others:
        assert select_mapping([blind], Path("a.csv"), Reads([*HEADERS, other]))[0] is blind
    # Read into a text, it is not what goes as the amount.
    text = BASE + 'description = { template = "Rest {Rest beløp}" }\n'
    with pytest.raises(MappingError, match='leaves column "Rest beløp" unread'):
        select_mapping(
            [load_mapping(write(tmp_path, text, "t.toml"))], Path("a.csv"), Reads(headers)
        )
    # Passed on in a field of the user's own as an amount, it is not what goes either
    # (helper-138: it let the file fit, each invoice going for its whole Beløp).
    own = BASE + '\n[invoice.metadata]\noutstanding = { column = "Rest beløp", as = "amount" }\n'
    with pytest.raises(MappingError, match='leaves column "Rest beløp" unread'):
        select_mapping(
            [load_mapping(write(tmp_path, own, "o.toml"))], Path("a.csv"), Reads(headers)
        )
    # A header is the file's, of any length: shown cut, as a cell is, not 200,000 characters.
    long = "Restbeløp " + "x" * 200_000
    with pytest.raises(MappingError) as err:
        select_mapping([blind], Path("a.csv"), Reads([*HEADERS, long]))
    assert len(err.value.detail) < 1_000
    assert f'leaves column "{long[:60]}...{long[-30:]}" (200,010 characters) unread' in str(
        err.value
    )
    # Read only where the invoice's amount is empty, it is not what goes (helper-130).
    fallback = BASE.replace(
        'remainingAmount = "Beløp"',
        'remainingAmount = { column = "Beløp", default = { column = "Rest beløp" } }',
    )
    assert fallback != BASE
    with pytest.raises(MappingError, match='leaves column "Rest beløp" unread'):
        select_mapping(
            [load_mapping(write(tmp_path, fallback, "f.toml"))], Path("a.csv"), Reads(headers)
        )
    # Read where another column of what is owed is empty, it is what goes (helper-132).
    other_first = BASE.replace(
        'remainingAmount = "Beløp"',
        'remainingAmount = { column = "Utest.", default = { column = "Rest beløp" } }',
    )
    chained = load_mapping(write(tmp_path, other_first, "u.toml"))
    assert select_mapping([chained], Path("a.csv"), Reads([*headers, "Utest."]))[0] is chained
    reads = BASE.replace('remainingAmount = "Beløp"', 'remainingAmount = "Rest beløp"')
    owed = load_mapping(write(tmp_path, reads, "b.toml"))
    told = load_mapping(write(tmp_path, '[match]\nunread = ["Restbeløp"]\n' + BASE, "c.toml"))
    for mapping in (owed, told):
        assert select_mapping([blind, mapping], Path("april.csv"), Reads(headers))[0] is mapping


def test_headers_of_what_was_paid_are_known_and_only_those() -> None:
    """A column of what was paid on an invoice, left unread beside its amount, lets a partly
    paid invoice go for its whole amount (``prepare`` refuses each showing a payment). Its
    headers in the words exports use are known, names written in one word (PaidToDate)
    included; one saying when, how, by or to whom, on which terms or in which currency it is
    paid, a status, a note, that it was not, or what is still owed, is not one (the lists a
    hostile review, helper-130, found missed and wrongly taken)."""
    from filedrop.mapping.loader import owed_header, paid_header

    paid = ["Innbetalt", "Betalt", "Betalt beløp", "Innbetalt beløp", "Innbetalt (kr)"]
    paid += ["Innbetalinger", "Delbetalt", "Amount paid", "Paid", "Paid amount", "Payments"]
    paid += ["Amount received", "INNBETALT NOK", "Betaltbeløp", "Sum innbetalt"]
    paid += ["Paid to date", "Innbetalt pr. dato", "Betalt pr dato", "Innbetalt a konto"]
    paid += ["Paid on account", "Betaling", "Betalinger", "Sum betalinger", "Mottatt"]
    paid += ["Mottatte betalinger", "Mottatt beløp", "Received", "Cash received", "Receipts"]
    paid += ["Innbet.", "Innbet. beløp", "Innbetalte beløp", "Betalte", "PaidToDate"]
    paid += ["TotalPaid", "PaymentAmount", "PaymentsReceived", "SumInnbetalt", "Payment 1"]
    # In capitals or small letters alone, and more words (helper-132).
    paid += ["AMOUNTPAID", "amountpaid", "PAIDAmount", "TOTALPAID", "PAIDTODATE", "Akonto"]
    paid += ["Innbetalingsbeløp", "Betalingsbeløp", "Delinnbetaling", "Innb.", "A konto"]
    paid += ["Received amount", "IsPaid", "PaidYN"]
    # Names from real exports' fields (helper-139's corpus): Fiken's sale.
    paid += ["totalPaidInCurrency", "totalPaid"]
    # Until today, with a currency, or settled against the invoice (helper-138: each went whole).
    paid += ["Innbetalt til dags dato", "Betalt til nå", "Innbetalt pr. i dag", "Betalt hittil"]
    paid += ["Mottatt NOK", "Mottatt kr", "Received (NOK)", "Utlignet beløp", "Applied amount"]
    paid += ["Settled amount", "Dekket beløp", "Utlignet", "Amount applied"]
    assert [h for h in paid if not paid_header(h)] == []
    others = ["Betalt dato", "Betalingsdato", "Payment method", "Payment terms", "Betalt av"]
    others += ["Ikke betalt", "Ubetalt", "Rest å betale", "Payment due", "Paid date", "Beløp"]
    others += ["Betalingsbetingelser", "Payment reference", "Betalt %", "Not paid", "KID"]
    others += ["Restbeløp", "Amount due", "Unpaid", "Betalingsfrist", "Payment ID"]
    others += ["Payment status", "Payment currency", "Payment notes", "Payment reminder"]
    others += ["Payment address", "Payment link", "Payment period", "Payment schedule"]
    others += ["Payment agreement", "Payments enabled", "Delbetaling tillatt", "Betalt til"]
    others += ["Paid to", "Betalt via", "Betalt med", "Betalt for", "Betalt kl", "Andel betalt"]
    others += ["Status betalt", "Betalt til konto", "Ordre mottatt", "Mottatt dato"]
    others += ["Mottatt fra", "Antall innbetalinger", "Betalingsstatus", "Betalingsmåte"]
    others += ["Payment term", "Payment means", "PaymentMeans", "Payment mode", "Paid out"]
    others += ["Payment channel", "Payment info", "Payment message", "Payment #", "Paid pct"]
    others += ["Betaling betingelse", "Payment recipient", "PaymentOverdue", "Non-paid amount"]
    others += ["NonPaid", "Un-paid"]
    # A commission paid out (24SevenOffice), a moment (JTL's paidAt) (helper-139).
    others += ["CommissionPaid", "Provisjon betalt", "paidAt", "paid_at"]
    others += ["Mottatt dato NOK", "Utlignet dato", "Received by", "Dekket av"]
    assert [h for h in others if paid_header(h)] == []
    # What is still owed, in a name written in one word, is what is owed (helper-132).
    owed = ["OutstandingAmount", "UnpaidAmount", "PaymentOverdue", "Un-paid", "NonPaid"]
    # Danish (Business Central's "Restbeløb"), e-conomic's and Sage Intacct's fields
    # (helper-139's corpus of real exports).
    owed += ["Restbeløb", "Restbeløb (RV)", "remainder", "remainderInBaseCurrency"]
    owed += ["grossRemainderInBaseCurrency", "TOTALDUE", "TRX_TOTALDUE"]
    assert [h for h in owed if not owed_header(h)] == []
    # A yes or no of whether it is overdue is no amount.
    assert [h for h in ["isOverdue", "IsOverdue"] if owed_header(h)] == []


@pytest.mark.parametrize(
    ("separator", "shown", "quote"), [(",", '","', ""), ("\t", "tab", ""), (",", '","', '"')]
)
def test_a_csv_separated_otherwise_than_the_mapping_says_is_told_so(
    tmp_path: Path, separator: str, shown: str, quote: str
) -> None:
    """A mapping that sets ";" reads a comma-separated export as one long header: the message
    says which separator the file has, rather than miss a column its headers list; also when
    every field is quoted ("Fakturanr","Beløp"), which went without the hint."""
    m = load_mapping(write(tmp_path, BASE.replace("[read]\n", '[read]\ndelimiter = ";"\n')))
    path = tmp_path / "mars.csv"
    # Fakturanr not first: the first field's quote is taken as the one-column header's own.
    lines = [HEADERS[::-1], ["d", "c", "2", "b", "a", "1"]]
    path.write_text(
        "".join(separator.join(f"{quote}{cell}{quote}" for cell in line) + "\n" for line in lines),
        encoding="utf-8",
    )
    from filedrop.read import read_table

    with pytest.raises(MappingError) as err:
        select_mapping([m], path, read_table)
    assert err.value.detail.startswith(
        'no mapping fits this file: erp.toml needs column "Fakturanr" (key '
        f'"invoice.invoiceNumber"), but the file\'s header line is separated by {shown}, not '
        'by ";" as read.delimiter says: remove read.delimiter to have it detected'
    )
    # Below a title line (the header row then is not found): said the same (it named no cause).
    titled = tmp_path / "titled.csv"
    titled.write_text("Kundereskontro pr. 31.03.2026\n" + path.read_text("utf-8"), "utf-8")
    with pytest.raises(MappingError) as err:
        select_mapping([m], titled, read_table)
    assert f"but the file's header line is separated by {shown}, not" in err.value.detail


def test_a_column_renamed_a_little_is_offered_by_its_new_name(tmp_path: Path) -> None:
    """The ERP exports "Forfall dato" where the mapping reads "Forfallsdato": the message offers
    the close header that no field reads, so the user sees which one to write."""
    from filedrop.read import read_table

    m = load_mapping(write(tmp_path, BASE))
    path = tmp_path / "mars.csv"
    renamed = [h.replace("Forfallsdato", "Forfall dato") for h in HEADERS]
    path.write_text(";".join(renamed) + "\n1;01.03.2024;15.03.2024;100,00;Åse;Berg\n", "utf-8")
    with pytest.raises(MappingError) as err:
        select_mapping([m], path, read_table)
    assert err.value.detail.startswith(
        'no mapping fits this file: erp.toml needs column "Forfallsdato" (did you mean "Forfall '
        'dato"?) (key "invoice.dueDate")'
    )


def test_no_mapping_fits_a_workbook_names_its_other_sheets(tmp_path: Path) -> None:
    """Data on the second sheet, a title on the first: the message says which sheet was read and
    names the other visible ones and the setting (hidden sheets are not offered)."""
    import xlsxwriter

    from filedrop.read import read_table

    m = load_mapping(write(tmp_path, BASE))
    path = tmp_path / "mars.xlsx"
    with xlsxwriter.Workbook(path) as book:
        info = book.add_worksheet("Info")
        info.write(0, 0, "Eksportert fra ERP 2024-03-31")
        info.write(1, 0, "Kunde: alle")
        book.add_worksheet("Gammel").hide()
        data = book.add_worksheet("Fakturaer")
        data.write_row(0, 0, HEADERS)
        data.write_row(1, 0, ["1", "01.03.2024", "15.03.2024", "100,00", "Åse", "Berg"])
    with pytest.raises(MappingError) as err:
        select_mapping([m], path, read_table)
    assert err.value.detail == (
        'no mapping fits this file: erp.toml needs column "Fakturanr" (key '
        '"invoice.invoiceNumber") (the file\'s headers: Eksportert fra ERP 2024-03-31); that is '
        'sheet "Info", and read.sheet in the mapping can name another: "Fakturaer".'
    )
    title_only = tmp_path / "april.xlsx"
    with xlsxwriter.Workbook(title_only) as book:
        book.add_worksheet("Info").write(0, 0, "Eksportert fra ERP 2024-03-31")
        book.add_worksheet("Fakturaer").write_row(0, 0, HEADERS)
    with pytest.raises(ReadError) as err:
        select_mapping([m], title_only, read_table)
    assert err.value.detail == (
        'sheet "Info" has a header on row 1 but no data rows below it; read.sheet in the '
        'mapping can name another sheet: "Fakturaer"'
    )


def test_a_code_written_as_a_column_is_told_how_to_write_a_fixed_value(tmp_path: Path) -> None:
    """currency = "NOK" reads a column called NOK; where the key takes a code, the message says
    how to write the code itself. A missing ordinary column gets no such hint."""
    m = load_mapping(write(tmp_path, BASE.replace('{ constant = "NOK" }', '"NOK"')))
    with pytest.raises(MappingError) as err:
        select_mapping([m], Path("mars.csv"), Reads(HEADERS))
    assert err.value.detail.startswith(
        'no mapping fits this file: erp.toml needs column "NOK" (key "invoice.currency"); if '
        '"NOK" is the value itself, write { constant = "NOK" } (the file\'s headers:'
    )
    with pytest.raises(MappingError) as err:
        m.resolve_columns(HEADERS, file_name="mars.csv")
    assert err.value.detail.endswith(
        'fix the header or add the name to "names"; if "NOK" is the value itself, write '
        '{ constant = "NOK" }.'
    )
    with pytest.raises(MappingError) as err:
        select_mapping([load_mapping(write(tmp_path, BASE))], Path("m.csv"), Reads(HEADERS[1:]))
    assert "constant" not in err.value.detail
    # A column with a default: the default is not the missing column's value (it suggested
    # writing the column's name as a constant).
    defaulted = BASE.replace('{ constant = "NOK" }', '{ column = "Valuta", default = "NOK" }')
    with pytest.raises(MappingError) as err:
        select_mapping([load_mapping(write(tmp_path, defaulted))], Path("m.csv"), Reads(HEADERS))
    assert err.value.detail.startswith(
        'no mapping fits this file: erp.toml needs column "Valuta" (key "invoice.currency"); '
        "its default fills the column's empty cells, and the file has no such column (the "
        "file's headers:"
    )


def test_no_mapping_fits_a_wide_file_lists_its_first_headers_only(tmp_path: Path) -> None:
    """A 10,000-column export must not make a message longer than an outcome cell can hold."""
    b = load_mapping(write(tmp_path, BASE.replace('"Fakturanr"', '"Faktura nr."'), "b.toml"))
    headers = [f"K{n}" for n in range(10_000)]
    with pytest.raises(MappingError) as err:
        select_mapping([b], Path("wide.csv"), Reads(headers))
    assert str(err.value).endswith(
        "(the file's headers: " + ", ".join(headers[:20]) + " and 9980 more)."
    )


def test_a_column_read_whose_header_repeats_with_other_values_is_refused(tmp_path: Path) -> None:
    """Two columns headed "Beløp" with different amounts (an old one kept, perhaps hidden): which
    one is to be sent is the user's to say, so the file is refused, naming both by letter, as
    Excel shows them in a sheet that begins at column B. The same values twice read as one."""
    from openpyxl import Workbook

    from filedrop.read import read_table

    m = load_mapping(write(tmp_path, '[match]\nheaders = ["Beløp"]\n' + BASE))
    rows = [
        [*HEADERS, "Beløp"],
        ["1", "01.03.2024", "15.03.2024", "100,00", "Åse", "Berg", "100,00"],
        ["2", "01.03.2024", "15.03.2024", "99 999,00", "Ola", "Dahl", "250,00"],
    ]
    book = Workbook()
    for r, row in enumerate(rows, start=1):
        for c, value in enumerate(row, start=2):
            book.active.cell(row=r, column=c, value=value)
    book.active.column_dimensions["E"].hidden = True
    book.save(tmp_path / "mars.xlsx")
    with pytest.raises(ReadError) as err:
        select_mapping([m], tmp_path / "mars.xlsx", read_table)
    assert err.value.detail == (
        'columns E and H are both headed "Beløp", which key "invoice.originalInvoiceAmount" '
        "reads, and hold different values (the first on row 3); rename or delete the one not "
        "to be sent, then drop the file again"
    )
    same = tmp_path / "same.csv"
    same.write_text("\n".join(";".join([*row[:-1], row[3]]) for row in rows), encoding="utf-8")
    mapping, got = select_mapping([m], same, read_table)
    assert mapping is m and got.headers[-1] == "Beløp"


def test_a_list_of_names_says_what_is_wrong_with_it_as_toml_writes_it(tmp_path: Path) -> None:
    """An empty name in a list was refused as "must be a list of text, like ["a", "b"], not
    ['']": it is a list of text, and the value was shown as Python writes it (a hostile review).
    The empty name is what is said now, and a list is shown as TOML writes it."""
    with pytest.raises(MappingError, match=re.escape(
        'key "match.unread" holds an empty text (""), which matches nothing; remove it from '
        '["Saldo", ""].'
    )):  # fmt: skip
        load_mapping(write(tmp_path, '[match]\nunread = ["Saldo", ""]\n' + BASE, "a.toml"))
    with pytest.raises(MappingError, match=re.escape('not ["Saldo", 3].')):
        load_mapping(write(tmp_path, '[match]\nunread = ["Saldo", 3]\n' + BASE, "b.toml"))


def test_a_value_shown_in_a_message_is_written_as_toml_would_read_it(tmp_path: Path) -> None:
    """A text holding a quote or a backslash was shown between quotes as it was ("a"b"), which
    is not TOML: pasted back it fails to parse, and the reader cannot tell where the value ends.
    Quotes, backslashes and control characters are escaped, and a key that is not bare is
    quoted, as TOML writes them."""
    text = BASE.replace('decimal = ","', "decimal = 'a\"b\\c'")
    with pytest.raises(MappingError, match=re.escape('must be "," or ".", not "a\\"b\\\\c".')):
        load_mapping(write(tmp_path, text, "a.toml"))
    shown = as_toml({"a b": "x\ty\u0007", "ok": ["\u007f"]})
    assert shown == '{ "a b" = "x\\ty\\u0007", ok = ["\\u007F"] }'
    assert tomllib.loads(f"v = {shown}")["v"] == {"a b": "x\ty\u0007", "ok": ["\u007f"]}


def test_unreadable_file_is_a_read_error_not_a_mapping_error(tmp_path: Path) -> None:
    """When no mapping can read the file at all, the reader's own sentence is the news."""
    m = load_mapping(write(tmp_path, BASE))
    with pytest.raises(ReadError):
        select_mapping([m], Path("mars.csv"), Reads(None))


def test_a_mapping_named_on_the_command_line_ignores_its_globs(tmp_path: Path) -> None:
    """ignore_names lets `--mapping x.toml` apply to a file its globs would not take."""
    m = load_mapping(write(tmp_path, '[match]\nfiles = ["*.xlsx"]\n' + BASE))
    mapping, _ = select_mapping([m], Path("mars.csv"), Reads(HEADERS), ignore_names=True)
    assert mapping is m


def test_readme_documents_every_option_and_its_example_loads(tmp_path: Path) -> None:
    """mappings/README.md names every key a mapping accepts, and its whole example is a mapping."""

    def documented(key: str) -> str:
        """How the README writes a key: a section, a source table, or an option in backticks."""
        if key in TOP_KEYS:
            return "\nname = " if key == "name" else f"[{key}]"
        if key in SOURCE_KEYS:
            return f"{{ {key} = "
        return "names = [" if key == "names" else f"`{key}"

    readme = (MAPPINGS / "README.md").read_text(encoding="utf-8")
    keys = (*TOP_KEYS, *READ_KEYS, *RULES, *OPTION_KEYS, *SOURCE_KEYS, "files", "headers", "by")
    assert [key for key in keys if documented(key) not in readme] == []
    whole = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    assert load_mapping(write(tmp_path, whole)).name == "Norwegian ERP export"


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        (
            ('type = { constant = "NOTICE" }', 'type = { constant = "NOTCE" }'),
            'key "invoice.type" is "NOTCE", which is not an invoice type filedrop knows (NOTICE,'
            " PAYMENT_REMINDER); fix it, or add it to the setting FILEDROP_INVOICE_TYPES if Amili"
            " takes it.",
        ),
        (
            ('type = { constant = "PRIVATE" }', 'type = { constant = "private" }'),
            'key "debtor.type" is "private", which is not a debtor type; use PRIVATE or COMPANY.',
        ),
        (
            ('type = { constant = "PRIVATE" }', 'type = { column = "T", map = { P = "PRIVAT" } }'),
            'key "debtor.type.map.P" is "PRIVAT", which is not a debtor type; use PRIVATE or'
            " COMPANY.",
        ),
        (
            ('type = { constant = "PRIVATE" }', 'type = { column = "T", default = "FIRMA" }'),
            'key "debtor.type.default" is "FIRMA", which is not a debtor type; use PRIVATE or'
            " COMPANY.",
        ),
        (
            ('type = { constant = "PRIVATE" }', "type = { from_id = true }"),
            'key "debtor.type" takes the type from identificationNumber, which the debtor does not'
            ' have; add identificationNumber = "<column>".',
        ),
        (
            ('type = { constant = "NOTICE" }', "type = { from_id = true }"),
            'key "invoice.type.from_id" only works as a debtor\'s type = { from_id = true }.',
        ),
        (
            ('firstname = "Fornavn"', 'full_name = "Kunde"'),
            'key "debtor.full_name" and debtor.lastname cannot both be there; full_name fills'
            " firstname and lastname.",
        ),
        (
            (
                "[invoice]",
                '[skip]\nsubtotal = { column = "Nr", is = "Delsum", at_most = 0 }\n[invoice]',
            ),
            'key "skip.subtotal" needs a column and one of "is" or "at_most", like { column ='
            ' "Fakturanr", is = ["", "Sum"] }.',
        ),
        (
            ("[invoice]", "[skip]\ncredit = false\n[invoice]"),
            'key "skip.credit" can be false only for the built-in rules skip.totals and'
            " skip.not_due.",
        ),
        (
            ("[invoice]", '[skip]\ncredit = { column = "Beløp", at_most = "0" }\n[invoice]'),
            'key "skip.credit.at_most" must be a number, like 0, not "0".',
        ),
    ],
)
def test_values_the_checks_do_not_know_are_refused_at_load(
    tmp_path: Path, change: tuple[str, str], detail: str
) -> None:
    """A type the checks do not know, a from_id or full_name out of place, a bad skip rule."""
    with pytest.raises(MappingError) as err:
        load_mapping(write(tmp_path, BASE.replace(*change, 1)))
    assert err.value.detail == detail


def test_known_values_load_and_the_setting_adds_invoice_types(tmp_path: Path) -> None:
    """PAYMENT_REMINDER and COMPANY load; another invoice type loads once the setting lists it."""
    reminder = BASE.replace('"NOTICE"', '"PAYMENT_REMINDER"').replace('"PRIVATE"', '"COMPANY"')
    assert load_mapping(write(tmp_path, reminder)).invoice.get_field("type") is not None
    other = write(tmp_path, BASE.replace('"NOTICE"', '"INVOICE_COPY"'), "other.toml")
    with pytest.raises(MappingError):
        load_mapping(other)
    assert load_mapping(other, invoice_types=("NOTICE", "INVOICE_COPY")).name == "other"


def test_the_invoice_types_setting_is_a_comma_separated_list() -> None:
    """FILEDROP_INVOICE_TYPES is read as names in capitals; anything else is one sentence."""
    settings = load_settings(environ={"FILEDROP_INVOICE_TYPES": "NOTICE, INVOICE_COPY"})
    assert settings.invoice_types == ("NOTICE", "INVOICE_COPY")
    assert load_settings(environ={}).invoice_types == ("NOTICE", "PAYMENT_REMINDER")
    with pytest.raises(ConfigError) as err:
        load_settings(environ={"FILEDROP_INVOICE_TYPES": "notice"})
    assert str(err.value) == (
        'FILEDROP_INVOICE_TYPES is "notice", which is not valid: must be names in capitals'
        " separated by commas, like NOTICE,PAYMENT_REMINDER."
    )


def test_a_headerless_column_can_be_named_by_its_letter(tmp_path: Path) -> None:
    """A mapping naming column "G" finds the column the reader named for its blank header."""
    m = load_mapping(write(tmp_path, BASE.replace('lastname = "Etternavn"', 'lastname = "G"')))
    headers = [*HEADERS[:5], "Kundetype", "G"]
    assert m.resolve_columns(headers, file_name="x.csv")[("G",)] == 6


def test_a_format_and_its_day_and_month_swapped_are_not_both_listed(tmp_path: Path) -> None:
    """dd/mm/yyyy and mm/dd/yyyy together read 03/04/2026 by the first and 25/04/2026 by the
    second: one file's dates half one way, half the other. The mapping is refused, naming both."""
    text = BASE.replace('dates = ["dd.mm.yyyy"]', 'dates = ["dd/mm/yyyy", "mm/dd/yyyy"]', 1)
    with pytest.raises(MappingError) as err:
        load_mapping(write(tmp_path, text))
    assert 'lists both "dd/mm/yyyy" and "mm/dd/yyyy": a date whose day is 12 or less' in str(
        err.value
    )
