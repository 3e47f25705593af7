"""Spreadsheet metadata (BBBC017's ``.xls``, BBBC038's ``.xlsx``) read like the CSV tables: every
value a string, blanks kept as '', the first non-empty row the header.

``.xls`` is read with xlrd; ``.xlsx`` with the standard library (it is a zip of XML parts), so no
extra dependency is needed. Numbers that are whole print without a decimal point (Excel stores
BBBC017's plate numbers as 1.0), other numbers with up to 15 significant digits; ``.xls`` dates
print in ISO format (``.xlsx`` dates, which need the styles part, stay serial numbers). Any other
suffix is read as CSV/TSV by :func:`read_table`.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path, PurePosixPath
from typing import Iterable
from xml.etree import ElementTree

import pandas as pd

from cytoimagenet_assets.catalog import Source
from cytoimagenet_assets.sources.common import read_table
from cytoimagenet_assets.sources.table import ParseError

MAIN = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
RELATIONSHIP = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"
CELL_REF = re.compile(r"^([A-Z]+)(\d+)$")


def read_spreadsheet(source: Source, path: Path, required: Iterable[str] = (), sheet: str | int | None = None) -> pd.DataFrame:
    """The table on ``sheet`` (a name or 0-based index; default the first) of an .xls/.xlsx file.

    Data rows keep their order and count (trailing empty rows dropped), so "data row N" means the
    N-th row below the header, as for the CSV tables.
    """
    suffix = path.suffix.lower()
    if suffix == ".xls":
        rows = _xls_rows(source, path, sheet)
    elif suffix in (".xlsx", ".xlsm"):
        rows = _xlsx_rows(source, path, sheet)
    else:
        return read_table(source, path, required=required)
    while rows and not any(rows[0]):
        rows.pop(0)
    while rows and not any(rows[-1]):
        rows.pop()
    if not rows:
        raise ParseError(f"{source.dir_name}: {path.name} holds no table (the sheet is empty)")
    header: list[str] = []
    for i, name in enumerate(rows[0]):
        name = name.strip() or f"Unnamed: {i}"
        base, n = name, 1
        while name in header:
            name, n = f"{base}.{n}", n + 1
        header.append(name)
    width = len(header)
    body = [(row + [""] * width)[:width] for row in rows[1:]]
    table = pd.DataFrame(body, columns=header, dtype=str)
    absent = [c for c in required if c not in table.columns]
    if absent:
        raise ParseError(f"{source.dir_name}: {path.name} lacks column(s) {', '.join(map(repr, absent))}; it has {', '.join(table.columns)}")
    return table


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.15g}"


def _pick(source: Source, path: Path, names: list[str], sheet: str | int | None) -> int:
    if sheet is None:
        if not names:
            raise ParseError(f"{source.dir_name}: {path.name} has no sheet")
        return 0
    if isinstance(sheet, int) and 0 <= sheet < len(names):
        return sheet
    if sheet in names:
        return names.index(sheet)
    raise ParseError(f"{source.dir_name}: {path.name} has no sheet {sheet!r}; its sheets: {', '.join(names)}")


def _xls_rows(source: Source, path: Path, sheet: str | int | None) -> list[list[str]]:
    import xlrd

    try:
        book = xlrd.open_workbook(str(path), on_demand=True)
    except Exception as exc:  # xlrd signals broken files with XLRDError, struct/Index/Assertion errors ...
        raise ParseError(f"{source.dir_name}: cannot read {path}: {type(exc).__name__}: {exc}") from exc
    try:
        index = _pick(source, path, book.sheet_names(), sheet)
        try:
            data = book.sheet_by_index(index)
        except Exception as exc:
            raise ParseError(f"{source.dir_name}: cannot read sheet {index} of {path}: {type(exc).__name__}: {exc}") from exc
        rows = []
        for r in range(data.nrows):
            row = []
            for cell in data.row(r):
                if cell.ctype == xlrd.XL_CELL_TEXT:
                    row.append(cell.value)
                elif cell.ctype == xlrd.XL_CELL_NUMBER:
                    row.append(_number(cell.value))
                elif cell.ctype == xlrd.XL_CELL_DATE:
                    try:
                        row.append(xlrd.xldate.xldate_as_datetime(cell.value, book.datemode).isoformat())
                    except (ValueError, OverflowError, xlrd.xldate.XLDateError):
                        row.append(_number(cell.value))
                elif cell.ctype == xlrd.XL_CELL_BOOLEAN:
                    row.append("TRUE" if cell.value else "FALSE")
                else:  # empty, blank, error
                    row.append("")
            rows.append(row)
        return rows
    finally:
        book.release_resources()


def _column(letters: str) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + ord(ch) - 64
    return n - 1


def _text(element) -> str:
    """The text of a shared or inline string: its <t>, or the <t> of each rich-text run (no phonetics)."""
    direct = element.find(f"{MAIN}t")
    if direct is not None:
        return direct.text or ""
    return "".join(t.text or "" for run in element.findall(f"{MAIN}r") for t in run.findall(f"{MAIN}t"))


def _xlsx_rows(source: Source, path: Path, sheet: str | int | None) -> list[list[str]]:
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            workbook = ElementTree.fromstring(archive.read("xl/workbook.xml"))
            sheets = [(s.get("name"), s.get(RELATIONSHIP)) for s in workbook.iter(f"{MAIN}sheet")]
            index = _pick(source, path, [name for name, _ in sheets], sheet)
            relations = ElementTree.fromstring(archive.read("xl/_rels/workbook.xml.rels"))
            targets = {r.get("Id"): r.get("Target") for r in relations}
            target = targets[sheets[index][1]]
            part = target.lstrip("/") if target.startswith("/") else str(PurePosixPath("xl") / target)
            shared = []
            if "xl/sharedStrings.xml" in names:
                shared = [_text(si) for si in ElementTree.fromstring(archive.read("xl/sharedStrings.xml")).findall(f"{MAIN}si")]
            root = ElementTree.fromstring(archive.read(part))
            rows: dict[int, dict[int, str]] = {}
            for n, row in enumerate(root.iter(f"{MAIN}row")):
                r = int(row.get("r", n + 1)) - 1
                cells = rows.setdefault(r, {})
                for k, cell in enumerate(row.findall(f"{MAIN}c")):
                    ref = CELL_REF.match(cell.get("r", ""))
                    c = _column(ref.group(1)) if ref else k
                    kind, value = cell.get("t", "n"), cell.find(f"{MAIN}v")
                    text = value.text if value is not None and value.text is not None else ""
                    if kind == "s":
                        cells[c] = shared[int(text)] if text else ""
                    elif kind == "inlineStr":
                        inline = cell.find(f"{MAIN}is")
                        cells[c] = _text(inline) if inline is not None else ""
                    elif kind == "b":
                        cells[c] = "TRUE" if text == "1" else "FALSE"
                    elif kind == "n" and text:
                        cells[c] = _number(float(text))
                    elif kind == "e":
                        cells[c] = ""
                    else:
                        cells[c] = text
    except (zipfile.BadZipFile, KeyError, IndexError, ValueError, ElementTree.ParseError, OSError) as exc:
        raise ParseError(f"{source.dir_name}: cannot read {path}: {type(exc).__name__}: {exc}") from exc
    if not rows:
        return []
    width = max((max(cells) + 1 for cells in rows.values() if cells), default=0)
    return [[rows.get(r, {}).get(c, "") for c in range(width)] for r in range(max(rows) + 1)]
