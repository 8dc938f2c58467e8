"""Realistic inputs for end-to-end tests: ERP CSVs in the shipped norwegian-erp layout."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path

import openpyxl
from conftest import MAPPINGS, ORG_ID, ROOT, TEST_CLIENT_ID, TEST_CLIENT_SECRET, journal_file
from stdnum.no import fodselsnummer

from filedrop.cli import main

EXAMPLES = ROOT / "inbox-example"

ERP_HEADER = (
    "Fakturanr;Fakturadato;Forfallsdato;Beløp;Valuta;KID;Kundenr;Kundetype;Fornavn;Etternavn;"
    "Fødselsnr;Orgnr;E-post;Mobil;Adresse;Postnr;Poststed"
)


@cache
def national_id(n: int) -> str:
    """The n-th synthetic fødselsnummer with valid check digits (born in the 1980s, never real)."""
    found = -1
    for serial in range(100, 1000):
        base = f"{1 + serial % 28:02d}{1 + serial % 12:02d}8{serial % 10}{serial:03d}"
        k1 = fodselsnummer.calc_check_digit1(base)
        candidate = base + k1 + fodselsnummer.calc_check_digit2(base + k1) if len(k1) == 1 else ""
        if candidate and fodselsnummer.is_valid(candidate):
            found += 1
            if found == n:
                return candidate
    raise AssertionError("ran out of synthetic ids")


def erp_row(number: str, *, amount: str = "1 234,50", email: str | None = None, **over: str) -> str:
    """One valid invoice row; keyword arguments replace cells by header name."""
    cells = {
        "Fakturanr": number,
        "Fakturadato": "01.03.2024",
        "Forfallsdato": "15.03.2024",
        "Beløp": amount,
        "Valuta": "NOK",
        "KID": "",
        "Kundenr": "10001",
        "Kundetype": "P",
        "Fornavn": "Åse",
        "Etternavn": "Kristiansen",
        "Fødselsnr": national_id(int("".join(c for c in number if c.isdigit()) or 0) % 50),
        "Orgnr": "",
        "E-post": email if email is not None else f"kunde{number}@example.no",
        "Mobil": "912 34 567",
        "Adresse": "Storgata 12",
        "Postnr": "0155",
        "Poststed": "Oslo",
    }
    cells.update(over)
    return ";".join(cells[name] for name in ERP_HEADER.split(";"))


def write_erp_csv(path: Path, rows: Sequence[str], *, encoding: str = "cp1252") -> Path:
    """Write a semicolon CSV as a Norwegian ERP exports it (cp1252 unless told otherwise)."""
    path.write_bytes(("\r\n".join([ERP_HEADER, *rows]) + "\r\n").encode(encoding))
    old = 1_000_000_000  # older than any stability window
    os.utime(path, (old, old))
    return path


def write_erp_workbook(
    path: Path,
    rows: Sequence[str],
    *,
    typed: Mapping[str, object] | None = None,
    formats: Mapping[str, str] | None = None,
) -> Path:
    """The ERP rows as an .xlsx, every cell text but those in ``typed`` (Excel references such
    as "F3" -> a number typed there), each column in ``formats`` (its letter -> a number format)
    so formatted on every data row: what a user who typed numbers into the sheet saves."""
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(ERP_HEADER.split(";"))
    for line in rows:
        sheet.append(line.split(";"))
    for ref, value in (typed or {}).items():
        sheet[ref] = value
    for letter, number_format in (formats or {}).items():
        for (cell,) in sheet[f"{letter}2:{letter}{len(rows) + 1}"]:
            cell.number_format = number_format
    book.save(path)
    return path


def run_env(inbox: Path, sandbox_url: str, **extra: str) -> dict[str, str]:
    """The environment of a `filedrop run` against the in-process sandbox."""
    env = {
        "FILEDROP_ENV": "sandbox",
        "FILEDROP_AUTH_URL": sandbox_url,
        "FILEDROP_API_URL": sandbox_url,
        "FILEDROP_CLIENT_ID": TEST_CLIENT_ID,
        "FILEDROP_CLIENT_SECRET": TEST_CLIENT_SECRET,
        "FILEDROP_ORG_ID": ORG_ID,
        "FILEDROP_INBOX": str(inbox),
        "FILEDROP_MAPPING": str(MAPPINGS),
        "FILEDROP_STATE": str(journal_file(inbox)),
        "FILEDROP_STABILITY_S": "0",
        "FILEDROP_POLL_INITIAL_S": "0.05",
        "FILEDROP_POLL_MAX_INTERVAL_S": "0.2",
        "FILEDROP_POLL_TIMEOUT_S": "10",
    }
    env.update(extra)
    return env


def config_head(
    sandbox_url: str,
    state: Path,
    *,
    org_id: str | None = ORG_ID,
    client_secret: str | None = TEST_CLIENT_SECRET,
    **settings: object,
) -> str:
    """The top of a config TOML against the sandbox at ``sandbox_url``: its URLs, the test
    client, the shipped mappings and the journal ``state``; ``org_id`` and ``client_secret`` None
    leave them to each [[inbox]]; ``settings`` are more keys (text quoted, numbers as they are).
    The [[inbox]] tables follow it."""
    values: dict[str, object] = {
        "env": "sandbox",
        "auth_url": sandbox_url,
        "api_url": sandbox_url,
        "client_id": TEST_CLIENT_ID,
        "client_secret": client_secret,
        "org_id": org_id,
        "mapping": MAPPINGS,
        "state": state,
        **settings,
    }
    return "".join(
        f'{key} = "{value}"\n' if isinstance(value, str | Path) else f"{key} = {value}\n"
        for key, value in values.items()
        if value is not None
    )


def filedrop(
    *args: str, environ: Mapping[str, str], expect: int | None = 0
) -> tuple[int, str, str]:
    """Run the CLI in-process; an unexpected exit code fails the test with what it printed."""
    out, err = io.StringIO(), io.StringIO()
    code = main(list(args), environ=environ, stdout=out, stderr=err)
    if expect is not None and code != expect:
        sys.stderr.write(err.getvalue())
        raise AssertionError(
            f"filedrop {' '.join(args)} exited {code}, expected {expect}:\n"
            f"{out.getvalue()}\n{err.getvalue()}"
        )
    return code, out.getvalue(), err.getvalue()


def mountinfo(*mounts: tuple[str, str]) -> str:
    """``/proc/self/mountinfo`` text with these (mount point, filesystem type) lines."""
    lines = [
        f"{20 + n} 1 0:{n} / {point} rw,relatime shared:{n} - {fs_type} server:/x rw"
        for n, (point, fs_type) in enumerate([("/", "ext4"), *mounts])
    ]
    return "\n".join(lines) + "\n"
