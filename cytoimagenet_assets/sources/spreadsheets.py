"""Spreadsheet metadata (BBBC017's ``.xls``, BBBC038's ``.xlsx``) read like the CSV tables: every
value a string, blanks kept as '', the first non-empty row the header.

``.xls`` is read with xlrd, ``.xlsx``/``.xlsm`` with openpyxl (cached values of formulas; error
cells such as ``#N/A`` are blank). Numbers that are whole print without a decimal point (Excel
stores BBBC017's plate numbers as 1.0), other numbers with up to 15 significant digits; dates
print in ISO format; booleans as TRUE/FALSE. Any other suffix is read as CSV/TSV by
:func:`read_table`.
"""

from __future__ import annotations

import datetime
import warnings
from pathlib import Path
from typing import Iterable

import pandas as pd

from cytoimagenet_assets.catalog import Source
from cytoimagenet_assets.sources.common import read_table
from cytoimagenet_assets.sources.table import ParseError


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
        raise ParseError(
            f"{source.dir_name}: {path.name} lacks column(s) {', '.join(map(repr, absent))}; it has {', '.join(table.columns)}"
        )
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


def _xlsx_cell(cell) -> str:
    value = cell.value
    if value is None or getattr(cell, "data_type", None) == "e":  # empty, or an error such as #N/A
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    return str(value)


def _xlsx_rows(source: Source, path: Path, sheet: str | int | None) -> list[list[str]]:
    import openpyxl

    try:
        with warnings.catch_warnings():  # "no default style", unsupported extensions: noise for reading values
            warnings.simplefilter("ignore", UserWarning)
            book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl signals broken files with BadZipFile, InvalidFileException, KeyError, XML errors ...
        raise ParseError(f"{source.dir_name}: cannot read {path}: {type(exc).__name__}: {exc}") from exc
    try:
        index = _pick(source, path, book.sheetnames, sheet)
        data = book[book.sheetnames[index]]
        if not hasattr(data, "iter_rows"):
            raise ParseError(f"{source.dir_name}: sheet {book.sheetnames[index]!r} of {path.name} is a chart, not a table")
        try:
            data.reset_dimensions()  # the stored dimension can be missing or wrong: read every row there is
            rows = [[_xlsx_cell(cell) for cell in row] for row in data.iter_rows()]
        except Exception as exc:
            raise ParseError(f"{source.dir_name}: cannot read sheet {index} of {path}: {type(exc).__name__}: {exc}") from exc
    finally:
        book.close()
    width = max((len(row) for row in rows), default=0)
    return [row + [""] * (width - len(row)) for row in rows]
