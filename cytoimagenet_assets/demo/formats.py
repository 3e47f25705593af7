"""Every file format the fake world writes, byte for byte: tables (CSV, zipped CSV, Excel 97 and
2007), images (TIFF, PNG, BMP, JPEG through Pillow, DeltaVision) and archives (zip, tar.gz), each
deterministic (fixed timestamps and owners), so the same seed gives the same bytes.

The demo's generators and the rehearsal mirror both write through these. They live in demo/
because the dependencies run one way: download/ imports the demo, the rehearsal imports download/.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import struct
import tarfile
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import tifffile
from PIL import Image

ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


# --- archives -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Blob:
    """File bytes with their CRC and, for formats deflate shrinks, their raw deflate stream,
    computed once so a pooled image goes into many zips without being compressed again."""

    data: bytes
    crc: int
    deflated: bytes | None

    @classmethod
    def of(cls, data: bytes, compress: bool = True) -> "Blob":
        packer = zlib.compressobj(6, zlib.DEFLATED, -15)
        deflated = packer.compress(data) + packer.flush() if compress and data else None
        return cls(data, zlib.crc32(data), deflated)


class Zip:
    """A zip being written: members with fixed timestamps, each deflated once per pooled image."""

    def __init__(self, path: Path):
        self.file = zipfile.ZipFile(path, "w", allowZip64=True)

    def add(self, name: str, content: Blob | bytes) -> None:
        blob = content if isinstance(content, Blob) else Blob.of(content)
        info = zipfile.ZipInfo(name, ZIP_TIME)
        info.external_attr = 0o644 << 16
        info.compress_type = zipfile.ZIP_DEFLATED if blob.deflated is not None else zipfile.ZIP_STORED
        payload = blob.deflated if blob.deflated is not None else blob.data
        info.file_size, info.compress_size, info.CRC = len(blob.data), len(payload), blob.crc
        # What ZipFile.writestr does, with the stream computed beforehand; close() writes the directory.
        info.header_offset = self.file.fp.tell()
        self.file.fp.write(info.FileHeader(zip64=info.file_size > zipfile.ZIP64_LIMIT))
        self.file.fp.write(payload)
        self.file.start_dir = self.file.fp.tell()
        self.file.filelist.append(info)
        self.file.NameToInfo[name] = info


class TarGz:
    """A .tar.gz being written: fixed times and owners, so the same seed gives the same bytes."""

    def __init__(self, path: Path):
        self.raw = open(path, "wb")
        self.gz = gzip.GzipFile(filename="", mode="wb", fileobj=self.raw, mtime=0)
        self.file = tarfile.open(fileobj=self.gz, mode="w", format=tarfile.GNU_FORMAT)

    def add(self, name: str, content: Blob | bytes) -> None:
        data = content.data if isinstance(content, Blob) else content
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), 0o644, 0
        self.file.addfile(info, io.BytesIO(data))

    def close(self) -> None:
        self.file.close()
        self.gz.close()
        self.raw.close()


# --- tables -------------------------------------------------------------------------------------------


def csv_bytes(header: list[str], rows: list[list], line_end: str = "\n", quoting: int = csv.QUOTE_MINIMAL) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator=line_end, quoting=quoting)
    writer.writerow(header)
    writer.writerows(rows)
    return text.getvalue().encode()


def csv_zip(member: str, data: bytes) -> bytes:
    """A one-member .csv.zip (IDR's large annotations), fixed timestamp."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(zipfile.ZipInfo(member, ZIP_TIME), data, compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def repacked(data: bytes, fix: Callable[[str, bytes], bytes]) -> bytes:
    """A zip's members in the same order with fixed timestamps (openpyxl stamps the current time)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(zipfile.ZipInfo(info.filename, ZIP_TIME), fix(info.filename, source.read(info)), zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def xlsx_bytes(header: list[str], rows: list[list]) -> bytes:
    """An Excel 2007 workbook (BBBC038's metadata.xlsx), deterministic."""
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(header)
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    stamp = re.compile(rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*")
    return repacked(
        buffer.getvalue(), lambda name, body: stamp.sub(rb"\g<1>2018-01-16T00:00:00Z", body) if name.endswith("core.xml") else body
    )


# Excel 97: a BIFF8 workbook stream inside an OLE2 compound file (what xlrd and Excel read as .xls).
ENDOFCHAIN, FREESECT, FATSECT, NOSTREAM = 0xFFFFFFFE, 0xFFFFFFFF, 0xFFFFFFFD, 0xFFFFFFFF


def _record(kind: int, data: bytes) -> bytes:
    return struct.pack("<HH", kind, len(data)) + data


def _biff_text(text: str, length_bytes: int) -> bytes:
    return struct.pack("<H" if length_bytes == 2 else "<B", len(text)) + b"\x01" + text.encode("utf-16-le")


def biff8(rows: list[list], sheet: str = "Sheet1") -> bytes:
    """The workbook stream: one sheet of number and text cells."""

    def bof(kind: int) -> bytes:
        return _record(0x0809, struct.pack("<HHHHII", 0x0600, kind, 0x0DBB, 1997, 0, 0x0600))

    cells = []
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                cells.append(_record(0x0203, struct.pack("<HHHd", r, c, 0, float(value))))
            elif value:
                cells.append(_record(0x0204, struct.pack("<HHH", r, c, 0) + _biff_text(str(value), 2)))
    name = _biff_text(sheet, 1)
    globals_size = len(bof(5)) + 4 + 6 + len(name) + 4
    boundsheet = _record(0x0085, struct.pack("<IBB", globals_size, 0, 0) + name)
    return bof(0x0005) + boundsheet + _record(0x000A, b"") + bof(0x0010) + b"".join(cells) + _record(0x000A, b"")


def _directory_entry(name: str, kind: int, child: int = NOSTREAM, start: int = 0, size: int = 0) -> bytes:
    encoded = (name + "\0").encode("utf-16-le") if name else b""
    return (
        encoded.ljust(64, b"\0")
        + struct.pack("<HBB", len(encoded), kind, 1 if kind else 0)
        + struct.pack("<III", NOSTREAM, NOSTREAM, child)
        + bytes(16 + 4 + 16)  # class id, state bits, creation and modification times
        + struct.pack("<IQ", start, size)
    )


def compound_file(stream: bytes, name: str = "Workbook") -> bytes:
    """An OLE2 compound file (version 3, 512-byte sectors) holding one stream, padded to the
    mini-stream cutoff so that it lives in regular sectors."""
    stream = stream.ljust(4096, b"\0")
    sectors = -(-len(stream) // 512)
    fat_sectors = 1
    while sectors + 1 + fat_sectors > 128 * fat_sectors:
        fat_sectors += 1
    if fat_sectors > 109:
        raise ValueError(f"a {len(stream)}-byte stream needs DIFAT sectors, which this writer does not write")
    fat = [*range(1, sectors), ENDOFCHAIN, ENDOFCHAIN] + [FATSECT] * fat_sectors
    fat += [FREESECT] * (128 * fat_sectors - len(fat))
    first_fat = sectors + 1
    header = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(16) + struct.pack("<HHHHH", 0x3E, 3, 0xFFFE, 9, 6) + bytes(6)
    header += struct.pack("<9I", 0, fat_sectors, sectors, 0, 4096, ENDOFCHAIN, 0, ENDOFCHAIN, 0)
    header += struct.pack("<109I", *range(first_fat, first_fat + fat_sectors), *[FREESECT] * (109 - fat_sectors))
    directory = _directory_entry("Root Entry", 5, child=1, start=ENDOFCHAIN) + _directory_entry(name, 2, size=len(stream))
    directory += _directory_entry("", 0) * 2
    return header + stream.ljust(sectors * 512, b"\0") + directory + struct.pack(f"<{len(fat)}I", *fat)


def xls_bytes(rows: list[list], sheet: str = "Sheet1") -> bytes:
    """An Excel 97 .xls (BBBC017's metadata): no maintained library writes the format."""
    return compound_file(biff8(rows, sheet))


# --- images -------------------------------------------------------------------------------------------


def pillow_bytes(array: np.ndarray, fmt: str, **options) -> bytes:
    """An image in one of Pillow's formats (PNG, JPEG, BMP, DIB), with Pillow's defaults unless ``options`` say."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt, **options)
    return buffer.getvalue()


def tiff_bytes(array: np.ndarray, **options) -> bytes:
    """A TIFF written by tifffile (``options``: compression, photometric, imagej, metadata)."""
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array, **options)
    return buffer.getvalue()


def deltavision_bytes(stack: np.ndarray) -> bytes:
    """A DeltaVision .dv (wavelengths x sections x Y x X, uint16), written by mrc: idr0021's and idr0067's files."""
    import mrc

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "image.dv"
        mrc.imsave(str(path), stack.astype(np.uint16))
        return path.read_bytes()
