"""Hostile workbooks, built on demand in a test's folder (no binary is kept in the repository).

Each is small on disk and cheap to build; what makes it hostile is what a reader would do with it.
"""

from __future__ import annotations

import os
import struct
import zipfile
from collections.abc import Iterable
from pathlib import Path

import xlsxwriter
from builders import ERP_HEADER

HEADERS = ERP_HEADER.split(";")
SHEET_PART = "xl/worksheets/sheet1.xml"
_OLD = 1_000_000_000  # older than any stability window


def far_cell_workbook(path: Path, *, row: int, column: int) -> Path:
    """The ERP headers in row 1 and one "x" at a far cell (0-based ``row``, ``column``)."""
    workbook = xlsxwriter.Workbook(str(path))
    sheet = workbook.add_worksheet("Sheet1")
    sheet.write_row(0, 0, HEADERS)
    sheet.write_string(row, column, "x")
    workbook.close()
    return _aged(path)


def bomb_workbook(path: Path, *, inflated_bytes: int) -> Path:
    """A workbook whose one sheet is ``inflated_bytes`` of the same tiny cells, packed ~1000x."""
    row = b"<row>" + b'<c t="n"><v>1</v></c>' * 50 + b"</row>"
    head = (
        b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
    )
    tail = b"</sheetData></worksheet>"
    block = row * (1_000_000 // len(row))

    def chunks() -> Iterable[bytes]:
        yield head
        for _ in range(inflated_bytes // len(block)):
            yield block
        yield tail

    return _with_sheet(path, chunks())


def lying_header_workbook(path: Path, *, declared_bytes: int, inflated_bytes: int) -> Path:
    """A bomb whose zip headers (local and central) claim the sheet is ``declared_bytes``."""
    bomb_workbook(path, inflated_bytes=inflated_bytes)
    data = bytearray(path.read_bytes())
    name = SHEET_PART.encode()
    with zipfile.ZipFile(path) as archive:
        local = archive.getinfo(SHEET_PART).header_offset
    struct.pack_into("<I", data, local + 22, declared_bytes)  # local header: uncompressed size
    central = data.find(b"PK\x01\x02")
    while central >= 0:
        (name_len,) = struct.unpack_from("<H", data, central + 28)
        if data[central + 46 : central + 46 + name_len] == name:
            struct.pack_into("<I", data, central + 24, declared_bytes)
        central = data.find(b"PK\x01\x02", central + 4)
    path.write_bytes(bytes(data))
    return _aged(path)


def overstated_range_workbook(path: Path, *, ref: str) -> Path:
    """The ERP headers and one row, with the used range recorded as ``ref``: a program's
    export whose ``<dimension>`` reaches far past the cells it wrote."""
    far_cell_workbook(path, row=1, column=0)
    with zipfile.ZipFile(path) as archive:
        sheet = archive.read(SHEET_PART)
    start = sheet.index(b'<dimension ref="') + len(b'<dimension ref="')
    end = sheet.index(b'"', start)
    return _with_sheet(path, [sheet[:start], ref.encode(), sheet[end:]])


def _with_sheet(path: Path, sheet: Iterable[bytes]) -> Path:
    """A real xlsxwriter workbook whose first sheet's XML is replaced by ``sheet``, streamed."""
    template = path.with_name(f".template-{path.name}")
    far_cell_workbook(template, row=1, column=0)
    with (
        zipfile.ZipFile(template) as source,
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dest,
    ):
        for entry in source.infolist():
            with dest.open(entry.filename, "w") as part:
                if entry.filename == SHEET_PART:
                    for chunk in sheet:
                        part.write(chunk)
                else:
                    part.write(source.read(entry))
    template.unlink()
    return _aged(path)


def _aged(path: Path) -> Path:
    os.utime(path, (_OLD, _OLD))
    return path
