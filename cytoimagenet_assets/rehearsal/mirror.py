"""The files the real servers hold for every source of a catalog, written at a scale factor, so a
rehearsal can run the production download and parsers offline against a loopback server.

Layout: the file production fetches from ``https://<host>/<path>`` lies at ``<root>/<host>/<path>``
(:func:`mirror_path`); sources fetched by hand (download method ``manual``) get
``<root>/manual/<dir_name>/``, what a user unzips into ``raw/<dir_name>``. Each source is written in
its real distribution format as far as this repo's parsers and downloaders read it: the archive and
member names, metadata files with their real columns (CSV, gzipped or zipped CSV, Excel 97 and 2007,
JSON, TSV, LST), IDR annotations beside the study trees on EBI's mirror, Kaggle's zips at the API
path. Where SOURCES.md leaves a layout unconfirmed, the writer follows the catalog's documented
guess and says so.

Scale 1.0 writes about the real metadata rows (:data:`REAL_ROWS`: 2.5 million for pretraining, the
original's 2.7 million counting IDR screens per image where these parsers give a row per well); each source gets
``max(MIN_ROWS, round(real * scale))``. Label columns keep the real number of distinct values with
skewed frequencies, shaped (:func:`frequencies`) so that the class table at scale s, with the
catalog's threshold and target scaled by s, lands near the original's 894 classes. Images are
small (``image_px``) but in each source's real encoding; a pool of a few pre-encoded variants per
(source, channel) is reused, so writing is fast and zips deflate them. Everything is deterministic
for a seed: fixed archive timestamps, a fixed order, seeded draws.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import re
import struct
import tarfile
import tempfile
import time
import uuid
import zipfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import unquote, urlsplit

import numpy as np
import tifffile
from PIL import Image

from cytoimagenet_assets.catalog import Catalog, Source
from cytoimagenet_assets.demo.cells import stable_hash
from cytoimagenet_assets.demo.hdf5 import write_coos7, write_cyclops
from cytoimagenet_assets.download.idr import IDR_MIRROR
from cytoimagenet_assets.download.kaggle import kaggle_competition_url, kaggle_dataset_url

MANUAL = "manual"  # <root>/manual/<dir_name>: what a user puts in raw/<dir_name> by hand
MIN_ROWS = 8
THRESHOLD = 287  # the catalog's label threshold at scale 1: frequencies are shaped around it
VARIANTS = 8  # pre-encoded images per (source, channel, encoding)
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
MONTAGE_PX = 880  # BBBC045's montages are cropped to their top-left 715 x 825: they must be larger
ROWS = "ABCDEFGHIJKLMNOP"

# Metadata rows each source's parser yields at scale 1 (2.5 million for pretraining, 2.7 with the evaluation sets).
# From SOURCES.md and the landing pages it cites unless marked "estimate".
REAL_ROWS = {
    "bbbc005": 9_600,  # 19,200 files = 384 wells x 25 samples x 2 stains
    "bbbc006": 768,  # z16: 384 wells x 2 sites
    "bbbc010": 200,  # 100 wells x (brightfield row + GFP row)
    "bbbc011": 400,  # estimate: 39.9 MB of ~100 KB PNGs
    "bbbc012": 80,  # estimate: 122 MB of ~1 MB TIFFs = 40 fields x (brightfield + fluorescence)
    "bbbc013": 96,  # 96 wells, DNA channel only
    "bbbc014": 96,  # 96 wells, DAPI channel only
    "bbbc015": 672,  # estimate: 0.2 GB of ~150 KB JPEG pairs = 96 wells x 7 fields
    "bbbc017": 43_008,  # estimate: 28 plates x 384 wells x 4 fields (40 GB of 512x512 DIBs)
    "bbbc020": 25,  # 25 images
    "bbbc022": 69_120,  # 20 plates x 384 wells x 9 sites
    "bbbc025": 27_648,  # 8 plates x 384 wells x 9 sites
    "bbbc026": 864,  # 96 wells x 9 sites
    "bbbc038": 3_754,  # 670 + 65 + 3,019 images in the three splits
    "bbbc041": 85_727,  # estimate: one row per bounding box, ~63 per smear (1,364 smears)
    "bbbc045": 360,  # estimate: 5 cell types x 6 samples x 12 channels of montages
    "bbbc048": 96_798,  # 32,266 cells x (nucleus + brightfield + darkfield)
    "bbbc051": 230_000,  # ~230k nuclei
    "cil_kinome": 912,  # 456 kinases x 2 images
    "idr0003": 32_640,  # 85 plates x 384 wells, one row per well (metadata only)
    "idr0009": 370_176,  # screen A: 964 plates x 384 wells (metadata only)
    "idr0016": 158_592,  # 413 plates x 384 wells (metadata only)
    "idr0017": 36_864,  # 96 plates x 384 wells (metadata only)
    "idr0021": 414,  # 414 images
    "idr0037": 59_454,  # 3,303 wells (the fixture annotation) x 9 fields x (fluorescence + brightfield)
    "idr0041": 20_160,  # original images: a third of the 60,480 (the rest masks and concentration maps)
    "idr0067": 419,  # 419 images (metadata only)
    "idr0072": 8_064,  # estimate: screen B, 84 plates x 96 wells (metadata only)
    "idr0080": 62_208,  # 18 plates x 384 wells x 9 fields
    "idr0081": 6_144,  # screen D, 16 plates x 384 wells (metadata only)
    "idr0088": 317_430,  # annotation rows of the .csv.zip (metadata only)
    "idr0093": 31_872,  # 83 plates x 384 wells (metadata only)
    "kag_cell_cycle": 90,  # 57 interphase + 33 mitosis
    "kag_hpa_single": 87_224,  # 21,806 images x 4 channels
    "kag_hpa": 124_288,  # 31,072 images x 4 channels
    "kag_leukemia": 10_661,  # training folds: 7,272 ALL + 3,389 normal
    "rec_rxrx1": 125_510,  # sites (RxRx1 README)
    "rec_rxrx2": 131_953,  # sites ([DI] in SOURCES.md)
    "rec_rxrx19a": 305_520,  # sites (rxrx.ai)
    "rec_rxrx19b": 70_384,  # sites (rxrx.ai)
    "bbbc021": 13_200,  # evaluation: 55 plates x 60 wells x 4 sites
    "coos7": 132_209,  # evaluation: single cells in 5 splits
    "cyclops": 30_889,  # evaluation: DeepLoc's Chong train + valid + test cells (estimate)
}


@dataclass
class MirrorReport:
    """What :func:`write_mirror` wrote."""

    root: Path
    scale: float
    rows: dict[str, int]  # dir_name -> metadata rows written (what the source's parser should yield, approx)
    files: int  # files written under root
    bytes: int  # their total size
    seconds: float


def mirror_path(root: Path, url: str) -> Path:
    """Where the file of ``url`` lies in a mirror folder: ``<root>/<host>/<path>``, segments unquoted."""
    parts = urlsplit(url)
    return Path(root) / parts.netloc / unquote(parts.path).lstrip("/")


def write_mirror(
    catalog: Catalog,
    root: Path,
    *,
    scale: float,
    seed: int = 0,
    image_px: int = 160,
    progress: Callable[[str], None] | None = None,
    images: bool = True,
) -> MirrorReport:
    """Write every source of ``catalog`` (pretraining and evaluation) under ``root`` at ``scale``
    (0 < scale <= 1). ``images=False`` writes image files empty, names only: enough for the
    parsers, for calibrating labels quickly."""
    if not 0 < scale <= 1:
        raise ValueError(f"scale must be in (0, 1], got {scale}")
    if Path(root).is_dir() and any(Path(root).iterdir()):
        raise ValueError(f"{root} is not empty: a mirror is written into an empty folder, so no stale file is served")
    unknown = [s.dir_name for s in catalog.sources if s.dir_name not in WRITERS]
    if unknown:
        raise ValueError(f"no mirror writer for source(s) {', '.join(unknown)}")
    started = time.perf_counter()
    out = Out(Path(root))
    pool = Pool(seed, image_px, images)
    rows = {}
    for source in catalog.sources:
        rng = np.random.default_rng([seed, stable_hash("mirror", source.dir_name)])
        n = max(MIN_ROWS, round(REAL_ROWS[source.dir_name] * scale))
        ctx = Ctx(source, n, scale, seed, rng, out, pool)
        rows[source.dir_name] = WRITERS[source.dir_name](ctx)
        if progress:
            progress(f"{source.dir_name}: {rows[source.dir_name]:,} rows")
    return MirrorReport(
        Path(root), scale, rows, len(out.written), sum(p.stat().st_size for p in out.written), time.perf_counter() - started
    )


# --- files and archives ------------------------------------------------------------------------------


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


class Out:
    """Writes files under the mirror root and remembers them (the report counts them)."""

    def __init__(self, root: Path):
        self.root = root
        self.written: set[Path] = set()

    def _target(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.written.add(path)
        return path

    def file(self, path: Path, data: bytes) -> None:
        self._target(path).write_bytes(data)

    @contextmanager
    def zip(self, path: Path) -> Iterator[Zip]:
        archive = Zip(self._target(path))
        try:
            yield archive
        finally:
            archive.file.close()

    @contextmanager
    def targz(self, path: Path) -> Iterator[TarGz]:
        archive = TarGz(self._target(path))
        try:
            yield archive
        finally:
            archive.close()


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


def _field(rng: np.random.Generator, shape: tuple[int, int], radius: float) -> np.ndarray:
    """Cells as soft blobs covering about half the field over a faint background, quantized to 32
    levels with sparse one-level noise: not blank or dim (the quality checks drop those), yet
    deflate shrinks it several times."""
    h, w = shape
    n = int(0.6 * h * w / (2 * np.pi * radius**2)) + int(rng.integers(1, 4))
    cy, cx = rng.uniform(0, h, n).astype(np.float32), rng.uniform(0, w, n).astype(np.float32)
    r = rng.uniform(0.7, 1.3, n).astype(np.float32) * radius
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    image = np.zeros(shape, np.float32)
    for i in range(n):
        image += np.exp(-((yy - cy[i]) ** 2 + (xx - cx[i]) ** 2) / (2 * r[i] ** 2)) * np.float32(rng.uniform(0.5, 1.0))
    levels = 3 + np.round(np.clip(image, 0, 1) * 28)
    noise = (rng.random(shape) < 0.05) * rng.integers(-1, 2, shape)
    return (levels + noise).astype(np.float32) / 31


def _montage(rng: np.random.Generator) -> np.ndarray:
    """An imaging-flow-cytometry montage: one small cell per 40 px tile on a flat background."""
    tile = 40
    image = np.zeros((MONTAGE_PX, MONTAGE_PX), np.float32)
    for y in range(0, MONTAGE_PX, tile):
        for x in range(0, MONTAGE_PX, tile):
            image[y : y + tile, x : x + tile] = _field(rng, (tile, tile), radius=5.0) * 0.8
    return image


def _rgb(gray: np.ndarray, stained: bool) -> np.ndarray:
    """A gray field as 8-bit RGB: equal planes, or a purple stain on a pale background (H&E, smears)."""
    if not stained:
        return np.repeat((12 + gray * 200).astype(np.uint8)[..., None], 3, axis=2)
    background, ink = np.array([235, 215, 225], np.float32), np.array([130, 150, 60], np.float32)
    return np.clip(background - gray[..., None] * ink, 0, 255).astype(np.uint8)


def _pillow(array: np.ndarray, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt, **options)
    return buffer.getvalue()


def _tiff(array: np.ndarray, **options) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array, **options)
    return buffer.getvalue()


def _deltavision(stack: np.ndarray) -> bytes:
    """A DeltaVision .dv (wavelengths x sections x Y x X, uint16), written by mrc: idr0021's and idr0067's files."""
    import mrc

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "image.dv"
        mrc.imsave(str(path), stack.astype(np.uint16))
        return path.read_bytes()


def _u8(image: np.ndarray) -> np.ndarray:
    return (12 + image * 200).astype(np.uint8)


def _u16(image: np.ndarray, top: int = 3200) -> np.ndarray:
    return (180 + image * top).astype(np.uint16)


# Encodings by name: (encoder of a [0, 1] field, whether deflate shrinks the file).
ENCODINGS: dict[str, tuple[Callable[[np.ndarray], bytes], bool]] = {
    "tif8": (lambda f: _tiff(_u8(f)), True),
    "tif16": (lambda f: _tiff(_u16(f)), True),
    "tif12lzw": (lambda f: _tiff(_u16(f, 3800), compression="lzw"), False),  # BBBC006: LZW, values below 4096
    "tifrgb": (lambda f: _tiff(_rgb(f, True), photometric="rgb"), True),
    "png8": (lambda f: _pillow(_u8(f), "PNG"), False),
    "png16": (lambda f: _pillow(_u16(f), "PNG"), False),
    "pngrgb": (lambda f: _pillow(_rgb(f, True), "PNG"), False),
    "pngrgba": (lambda f: _pillow(np.dstack([_rgb(f, False), np.full(f.shape, 255, np.uint8)]), "PNG"), False),
    "mask": (lambda f: _pillow(np.where(f > 0.4, 255, 0).astype(np.uint8), "PNG"), False),
    "jpg": (lambda f: _pillow(_u8(f), "JPEG", quality=90), False),
    "jpg3": (lambda f: _pillow(_rgb(f, False), "JPEG", quality=90), False),  # RGB with equal planes (BBBC015)
    "jpgrgb": (lambda f: _pillow(_rgb(f, True), "JPEG", quality=90), False),
    "bmp8": (lambda f: _pillow(_u8(f), "BMP"), True),
    "bmprgb": (lambda f: _pillow(_rgb(f, True), "BMP"), True),
    "dib8": (lambda f: _pillow(_u8(f), "DIB"), True),  # Cellomics .DIB: a bitmap without the file header
    "zstack16": (lambda f: _tiff(np.stack([_u16(np.roll(f, z, axis=1)) for z in range(7)]), metadata={"axes": "ZYX"}), True),
    "zc16": (
        lambda f: _tiff(np.stack([[_u16(np.roll(f, z, 0)), _u16(f.T)] for z in range(2)]), imagej=True, metadata={"axes": "ZCYX"}),
        True,
    ),
    "flex": (lambda f: _tiff(np.stack([_u16(f), _u16(f.T)])), True),  # Opera FLEX: a TIFF, one page per channel
    "dv": (lambda f: _deltavision(np.stack([[_u16(f), _u16(np.roll(f, 1, 0))], [_u16(f.T), _u16(f.T)]])), True),
    "montage8": (lambda f: _tiff(_u8(f)), True),
}


class Pool:
    """Pre-encoded images, ``VARIANTS`` per (encoding, source channel), reused across rows."""

    def __init__(self, seed: int, px: int, images: bool):
        self.seed, self.px, self.images = seed, px, images
        self.cache: dict[tuple[str, str, int], Blob] = {}
        self.empty = Blob(b"", 0, None)

    def get(self, kind: str, key: str, i: int) -> Blob:
        if not self.images:
            return self.empty
        slot = (kind, key, i % VARIANTS)
        if slot not in self.cache:
            rng = np.random.default_rng([self.seed, stable_hash("image", kind, key), i % VARIANTS])
            encode, compress = ENCODINGS[kind]
            image = _montage(rng) if kind == "montage8" else _field(rng, (self.px, self.px), radius=self.px / rng.uniform(12, 22))
            self.cache[slot] = Blob.of(encode(image), compress)
        return self.cache[slot]


# --- label frequencies ------------------------------------------------------------------------------


def frequencies(total: float, values: int, classes: int, top: float = 0.0, threshold: float = THRESHOLD) -> np.ndarray:
    """Rows per value at scale 1, most frequent first: ``classes`` values at or above 1.3 x
    ``threshold`` (the first holding ``top`` of all rows when given, as DMSO does), the other
    ``values - classes`` Zipf-like below 0.7 x ``threshold``. Scaled with the data and the
    threshold, the same values stay above and below it."""
    low = 1.3 * threshold
    head = low * 3 ** (np.arange(classes)[::-1] / max(classes - 1, 1)) if classes else np.zeros(0)
    shape = (np.arange(values - classes) + 1.0) ** -0.5
    cap = 0.7 * threshold * shape
    if classes and top:
        head[0] = max(low, top * total)
    if head.sum() > total - cap.sum():
        head[1 if top else 0 :] = low  # many classes for the rows: all near the threshold
    rest = total - head.sum()
    if rest <= cap.sum():
        tail = shape * max(rest, 0) / shape.sum() if len(shape) else shape
        if rest < 0:
            head *= total / head.sum()
    elif classes:
        tail = cap
        grow = slice(1, None) if top and classes > 1 else slice(None)
        head[grow] *= (total - tail.sum() - head.sum() + head[grow].sum()) / head[grow].sum()
    else:
        raise ValueError(f"{total} rows do not fit {values} values all below the threshold; give more values or classes")
    return np.concatenate([head, tail])


def quotas(weights: np.ndarray, n: int) -> np.ndarray:
    """``n`` split in proportion to ``weights``, whole numbers by largest remainder (deterministic)."""
    share = np.asarray(weights, np.float64) / np.sum(weights) * n
    counts = np.floor(share).astype(np.int64)
    extra = np.argsort(-(share - counts), kind="stable")[: n - counts.sum()]
    counts[extra] += 1
    return counts


def names(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i + 1:04d}" for i in range(count)]


# --- per-source context -----------------------------------------------------------------------------


@dataclass
class Ctx:
    source: Source
    n: int  # rows the source's parser should yield
    scale: float
    seed: int
    rng: np.random.Generator
    out: Out
    pool: Pool

    @property
    def dir_name(self) -> str:
        return self.source.dir_name

    def at(self, url: str) -> Path:
        return mirror_path(self.out.root, url)

    def url(self, name: str) -> str:
        """The catalog's URL ending in ``name``; else ``name`` beside the catalog's first file (the
        server holds more files than the catalog lists: all 55 of BBBC021's plates, say)."""
        files = [f.url for f in self.source.download.files]
        return next((u for u in files if u.endswith("/" + name)), files[0].rsplit("/", 1)[0] + "/" + name)

    def image(self, kind: str, key: str, i: int) -> Blob:
        return self.pool.get(kind, f"{self.dir_name}/{key}", i)

    def count(self, real: int) -> int:
        """A count of things (plates, genes) at this scale, at least 1."""
        return max(1, round(real * self.scale))

    def pick(self, total: int, k: int) -> np.ndarray:
        """``k`` of ``range(total)`` (all when k >= total), sorted."""
        return np.arange(total) if k >= total else np.sort(self.rng.choice(total, k, replace=False))

    def spread(self, groups: int, per_group: int, k: int) -> list[tuple[int, int]]:
        """``k`` (group, item) pairs, as evenly over the groups as they go, the first groups first
        (the catalog lists the first plates of some sources)."""
        counts = quotas(np.ones(groups), min(k, groups * per_group))
        return [(g, int(i)) for g in range(groups) for i in self.pick(per_group, int(counts[g]))]

    def draw(self, weights: np.ndarray, k: int | None = None) -> np.ndarray:
        """``k`` value indices (default ``n``) in exact proportion to ``weights``, shuffled."""
        k = self.n if k is None else k
        return self.rng.permutation(np.repeat(np.arange(len(weights)), quotas(weights, k)))

    def uuid(self) -> str:
        return str(uuid.UUID(bytes=self.rng.bytes(16))).upper()


def well_name(i: int, columns: int = 24, pad: bool = True, first_row: int = 0, first_column: int = 1) -> str:
    """Well ``i`` of a plate read row by row: A01 (pad) or A1, rows past Z as AA, AB ..."""
    row, column = divmod(i, columns)
    row += first_row
    letters = chr(65 + row) if row < 26 else "A" + chr(65 + row - 26)
    return f"{letters}{column + first_column:02d}" if pad else f"{letters}{column + first_column}"


# --- BBBC -------------------------------------------------------------------------------------------


def _bbbc005(ctx: Ctx) -> int:
    fields = ctx.pick(384 * 25, ctx.n)
    with ctx.out.zip(ctx.at(ctx.url("BBBC005_v1_images.zip"))) as z:
        for f in fields:
            w, sample = divmod(int(f), 25)
            row, column = divmod(w, 24)
            stem = f"SIMCEPImages_{well_name(w)}_C{1 + round(column * 99 / 23)}_F{1 + round(row * 47 / 15)}_s{sample + 1:02d}"
            for channel in ("w1", "w2"):
                z.add(f"BBBC005_v1_images/{stem}_{channel}.TIF", ctx.image("tif8", channel, int(f)))
    return len(fields)


def _bbbc006(ctx: Ctx) -> int:
    fields = ctx.pick(384 * 2, ctx.n)
    with ctx.out.zip(ctx.at(ctx.url("BBBC006_v1_images_z_16.zip"))) as z:
        for f in fields:
            w, site = divmod(int(f), 2)
            for channel in ("w1", "w2"):
                name = f"mcf-z-stacks-03212011_{well_name(w).lower()}_s{site + 1}_{channel}{ctx.uuid()}.tif"
                z.add(f"BBBC006_v1_images_z_16/{name}", ctx.image("tif12lzw", channel, int(f)))
    return len(fields)


def _well_channel_zip(ctx: Ctx, archive: str, folder: str, rows_per_field: int, channels: list[str], stem: str, kind: str) -> int:
    """BBBC010 and BBBC012: ``<stem>_<well>_<channel>_<uuid>.tif`` for wells of a 384-well plate."""
    wells = ctx.pick(384, -(-ctx.n // rows_per_field))
    with ctx.out.zip(ctx.at(ctx.url(archive))) as z:
        for w in wells:
            for channel in channels:
                z.add(f"{folder}/{stem}_{well_name(int(w))}_{channel}_{ctx.uuid()}.tif", ctx.image(kind, channel, int(w)))
    return len(wells) * rows_per_field


def _bbbc011(ctx: Ctx) -> int:
    fields = ctx.pick(5 * 96, ctx.n)  # plate and well naming is an estimate: the pattern reads any PNG
    with ctx.out.zip(ctx.at(ctx.url("BBBC011_v1_images.zip"))) as z:
        for f in fields:
            plate, w = divmod(int(f), 96)
            z.add(f"BBBC011_v1_images/plate{plate + 1}_{well_name(w, 12)}.png", ctx.image("png8", "bf", int(f)))
    return len(fields)


def _bbbc013(ctx: Ctx) -> int:
    wells = ctx.pick(96, ctx.n)
    with ctx.out.zip(ctx.at(ctx.url("BBBC013_v1_images_bmp.zip"))) as z:
        for w in wells:
            row, column = divmod(int(w), 12)
            for channel in (1, 2):
                z.add(
                    f"BBBC013_v1_images_bmp/Channel{channel}-{w + 1:02d}-{ROWS[row]}-{column + 1:02d}.BMP",
                    ctx.image("bmp8", str(channel), int(w)),
                )
    return len(wells)


def _bbbc014(ctx: Ctx) -> int:
    wells = ctx.pick(96, ctx.n)
    with ctx.out.zip(ctx.at(ctx.url("BBBC014_v1_images.zip"))) as z:
        for w in wells:
            row, column = divmod(int(w), 12)
            for channel in (1, 2):
                name = f"Channel {channel}-{w + 1:02d}-{ROWS[row]}-{column + 1:02d}-00.Bmp"
                z.add(f"BBBC014_v1_images/{name}", ctx.image("bmp8", str(channel), int(w)))
    return len(wells)


def _bbbc015(ctx: Ctx) -> int:
    fields = ctx.pick(96 * 7, ctx.n)
    with ctx.out.zip(ctx.at(ctx.url("BBBC015_v1_images.zip"))) as z:
        for f in fields:
            well, site = divmod(int(f), 7)
            for channel in (1, 2):
                z.add(f"BBBC015_v1_images/{well + 1}_{site + 1}_{channel}.JPG", ctx.image("jpg3", str(channel), int(f)))
    return len(fields)


BBBC017_HEADER = [  # SOURCES.md, from the original's cleaning script
    *("384well-index", "384-Plate#", "384-quad", "384-well", "96-Plate#", "96-well", "96row", "96col", "384row", "384col"),
    *("384-well PlateName", "96-well PlateName", "Row", "Col", "senseOligoId", "location", "Nmid", "taxonId", "locuslinkId"),
    *("Transcript Description", "SenseOligoSeq", "ProdStatus", "class", "gene name", "plate order"),
]
BBBC017_CONTROLS = ["EMPTY", "shLuc", "shGFP", "LacZ", "unk"]
GENE_FAMILIES = ["kinase", "phosphatase", "NONE", "transcription factor", "protease", "GPCR"]


def _bbbc017(ctx: Ctx) -> int:
    """28 zips NIRHTa-001..014 and NIRHTa+001..014 sharing plate numbers 1..14 with the .xls."""
    zips = [f"NIRHTa{sign}{p:03d}" for sign in "-+" for p in range(1, 15)]
    picked = ctx.spread(len(zips), 384 * 4, max(ctx.n, len(zips)))  # the server holds every zip the catalog lists
    genes = names("SH", 1028)  # the Moffat library: ~5,000 shRNAs against 1,028 genes
    wells: set[tuple[int, int]] = set()  # (plate number, well): the .xls rows
    by_zip: dict[int, list[tuple[int, int]]] = {}
    for z, item in picked:
        w, f = divmod(item, 4)
        by_zip.setdefault(z, []).append((w, f))
        wells.add((z % 14 + 1, w))
    for z, fields in by_zip.items():
        with ctx.out.zip(ctx.at(ctx.url(f"BBBC017_v1_images_{zips[z]}.zip"))) as archive:
            for w, f in fields:
                stem = f"AS_{9100 + z:05d}_0501160300{z % 14 + 1:02d}_{well_name(w)}f{f:02d}"
                for d in range(3):
                    archive.add(f"{zips[z]}/{stem}d{d}.DIB", ctx.image("dib8", f"d{d}", w * 4 + f))
    rows = [BBBC017_HEADER]
    for plate, w in sorted(wells):
        index = (plate - 1) * 384 + w
        gene = BBBC017_CONTROLS[index % 5] if index % 16 == 0 else genes[(index * 7) % len(genes)]
        row = [""] * len(BBBC017_HEADER)
        row[:6] = [index + 1, plate, w % 4 + 1, well_name(w), (plate - 1) // 4 + 1, well_name(w // 4, 12)]
        row[14], row[22:25] = f"TRCN{index:010d}", [GENE_FAMILIES[index % len(GENE_FAMILIES)], gene, plate]
        rows.append(row)
    ctx.out.file(ctx.at(ctx.url("BBBC017_v1_metadata.xls")), xls_bytes(rows))
    return len(picked)


def _bbbc020(ctx: Ctx) -> int:
    images = [f"jw-{t} {i}" for t in ("15min", "30min", "1h", "2h", "Kontrolle") for i in range(1, 6)][: ctx.n]
    with ctx.out.zip(ctx.at(ctx.url("BBBC020_v1_images.zip"))) as z:
        for i, folder in enumerate(images):
            for channel in ("c1", "c5"):
                z.add(f"BBBC020_v1_images/{folder}/{folder}_{channel}.TIF", ctx.image("tif8", channel, i))
            z.add(f"BBBC020_v1_images/{folder}/{folder}_(c1+c5).TIF", ctx.image("tifrgb", "merged", i))
    return len(images)


BBBC022_CHANNELS = ["OrigHoechst", "OrigER", "OrigSyto", "OrigPh_golgi", "OrigMito"]  # w1..w5


def _bbbc022(ctx: Ctx) -> int:
    """100 zips BBBC022_v1_images_<plate>w<1-5>.zip of IXMtest_<well>_s<site>_w<k><UUID>.tif; the image
    table's PathName is taken to be the zip's folder (unconfirmed; a third-party script rewrites it so)."""
    plates = [20585 + i * 3 for i in range(20)]
    compounds = [f"BRD-{'AK'[i % 2]}{10_000_000 + i * 48_611 % 89_999_999:08d}" for i in range(1600)]
    moa_weights = frequencies(995, 350, 40, threshold=THRESHOLD / 36)  # a compound fills 4 wells x 9 sites
    moa_names = names("bbbc022 moa ", 350)
    moa_of = np.repeat(np.arange(350), quotas(moa_weights, 995))
    moa_rows = [[compounds[i], moa_names[moa_of[i]]] for i in range(995)]  # the 995 compounds with an MOA
    table, members = [], {}
    for g, item in ctx.spread(20, 384 * 9, max(ctx.n, 20)):  # every plate's 5 zips have images
        w, site = divmod(item, 9)
        plate, well = plates[g], well_name(w)
        mock = w % 6 == 0  # 64 mock wells per plate
        compound = "" if mock else compounds[(g * 320 + w - w // 6 - 1) % 1600]
        files = [f"IXMtest_{well}_s{site + 1}_w{k + 1}{ctx.uuid()}.tif" for k in range(5)]
        folders = [f"BBBC022_v1_images_{plate}w{k + 1}" for k in range(5)]
        for k in range(5):
            members.setdefault(folders[k], []).append((files[k], BBBC022_CHANNELS[k], item))
        table.append([len(table) + 1, 1, *files, *folders, plate, well, site + 1, "mock" if mock else "treated", compound])
    header = ["ImageNumber", "TableNumber", *(f"Image_FileName_{c}" for c in BBBC022_CHANNELS)]
    header += [f"Image_PathName_{c}" for c in BBBC022_CHANNELS] + ["Image_Metadata_PlateID", "Image_Metadata_CPD_WELL_POSITION"]
    header += ["Image_Metadata_Site", "Image_Metadata_ASSAY_WELL_ROLE", "Image_Metadata_BROAD_ID"]
    ctx.out.file(ctx.at(ctx.url("BBBC022_v1_image.csv")), csv_bytes(header, table))
    for folder, files in members.items():
        with ctx.out.zip(ctx.at(ctx.url(f"{folder}.zip"))) as z:
            for name, channel, i in files:
                z.add(f"{folder}/{name}", ctx.image("tif16", channel, i))
    ctx.out.file(ctx.at(ctx.url("BBBC022_MOA_MATCHES_official.csv")), csv_bytes(["Var1", "Metadata_moa.x"], moa_rows))
    return len(table)


BBBC025_CHANNELS = ["ERSyto", "ERSytoBleed", "Hoechst", "Mito", "PhGolgi"]


def _bbbc025(ctx: Ctx) -> int:
    """40 tarballs <plate>_<channel>.tar.gz, each a folder of that name (as the catalog's pattern assumes)."""
    plates = [37983, 38002, 38003, 38004, 38005, 38006, 38030, 38034]
    picked = ctx.spread(8, 384 * 9, ctx.n)
    for g, plate in enumerate(plates):
        fields = [item for group, item in picked if group == g]
        for k, channel in enumerate(BBBC025_CHANNELS):
            with ctx.out.targz(ctx.at(ctx.url(f"{plate}_{channel}.tar.gz"))) as tar:
                for item in fields:
                    w, site = divmod(item, 9)
                    name = f"{plate}_{channel}/{plate}_{well_name(w).lower()}_s{site + 1}_w{k + 1}{ctx.uuid()}.tif"
                    tar.add(name, ctx.image("tif16", channel, item))
    return len(picked)


def _bbbc026(ctx: Ctx) -> int:
    fields = ctx.pick(96 * 9, ctx.n)
    with ctx.out.zip(ctx.at(ctx.url("BBBC026_v1_images.zip"))) as z:
        for f in fields:
            w, site = divmod(int(f), 9)
            name = f"ADSASS092408-GHAD2-D6-20x_{well_name(w, 12)}_s{site + 1}_w1{ctx.uuid()}.png"
            z.add(f"BBBC026_v1_images/{name}", ctx.image("png8", "w1", int(f)))
    return len(fields)


def _bbbc038(ctx: Ctx) -> int:
    """Three split zips of <ImageId>/images/<ImageId>.png (training images with masks/), metadata.xlsx
    (its columns are unconfirmed; the catalog maps none)."""
    splits = {"stage1_train": 670, "stage1_test": 65, "stage2_test_final": 3019}
    sizes = np.maximum(1, quotas(np.array(list(splits.values())), ctx.n))
    described = []
    for (split, _), size in zip(splits.items(), sizes):
        with ctx.out.zip(ctx.at(ctx.url(f"{split}.zip"))) as z:
            for i in range(int(size)):
                image_id = hashlib.sha256(f"{ctx.seed}/{split}/{i}".encode()).hexdigest()
                z.add(f"{image_id}/images/{image_id}.png", ctx.image("pngrgba", "image", len(described)))
                if split == "stage1_train":
                    for m in range(2):
                        z.add(
                            f"{image_id}/masks/{hashlib.sha256(f'{image_id}/{m}'.encode()).hexdigest()[:16]}.png",
                            ctx.image("mask", "mask", m),
                        )
                described.append([image_id, split, "fluorescence" if i % 4 else "brightfield", ctx.pool.px, ctx.pool.px])
    header = ["ImageId", "Split", "Modality", "Width", "Height"]
    ctx.out.file(ctx.at(ctx.url("metadata.xlsx")), xlsx_bytes(header, described))
    return len(described)


BBBC041_CATEGORIES = {  # boxes per category (estimate from the BBBC041 page: >95% uninfected red blood cells)
    "red blood cell": 83_034,
    "trophozoite": 1_473,
    "difficult": 441,
    "ring": 353,
    "schizont": 179,
    "gametocyte": 144,
    "leukocyte": 103,
}


def _bbbc041(ctx: Ctx) -> int:
    """malaria.zip: images/ (training PNG, test JPEG) and training.json / test.json of boxes, ~63 per smear,
    inside the written image (square here, 1600x1200 there)."""
    categories = list(BBBC041_CATEGORIES)
    drawn = ctx.draw(np.array(list(BBBC041_CATEGORIES.values()), np.float64))
    smears = max(2, -(-ctx.n // 63))
    h = w = ctx.pool.px
    tables: dict[str, list] = {"training": [], "test": []}
    with ctx.out.zip(ctx.at(ctx.url("malaria.zip"))) as z:
        for s, boxes in enumerate(np.array_split(drawn, smears)):
            test = s % 11 == 10  # 120 of 1,328 smears are the test set
            name = f"{uuid.UUID(bytes=ctx.rng.bytes(16))}.{'jpg' if test else 'png'}"
            data = ctx.image("jpgrgb" if test else "pngrgb", "smear", s)
            z.add(f"malaria/images/{name}", data)
            objects = []
            for b in boxes:
                side = int(ctx.rng.integers(h // 8, h // 4))
                top, left = int(ctx.rng.integers(0, h - side)), int(ctx.rng.integers(0, w - side))
                objects.append(
                    {
                        "bounding_box": {"minimum": {"r": top, "c": left}, "maximum": {"r": top + side, "c": left + side}},
                        "category": categories[b],
                    }
                )
            image = {
                "checksum": hashlib.sha256(data.data).hexdigest(),
                "pathname": f"/images/{name}",
                "shape": {"r": h, "c": w, "channels": 3},
            }
            tables["test" if test else "training"].append({"image": image, "objects": objects})
        for table, entries in tables.items():
            z.add(f"malaria/{table}.json", json.dumps(entries, indent=1).encode())
    return len(drawn)


def _bbbc045(ctx: Ctx) -> int:
    """Stained_Montages.zip: <cell type>/<date>/<sample>_Ch<NN>.tif, ImageStream channels 1..12 (the
    layout the catalog assumes; unconfirmed)."""
    types = ["B cell", "T cell", "Eosinophil", "Monocyte", "Neutrophil"]
    picked = ctx.pick(5 * 6 * 12, ctx.n)
    with ctx.out.zip(ctx.at(ctx.url("Stained_Montages.zip"))) as z:
        for p in picked:
            t, rest = divmod(int(p), 72)
            sample, channel = divmod(rest, 12)
            stem = f"{types[t].lower().replace(' ', '')}{sample + 1}_Ch{channel + 1:02d}"
            name = f"Stained_Montages/{types[t]}/2014_10_{sample + 1:02d}/{stem}.tif"
            z.add(name, ctx.image("montage8", f"ch{channel + 1}", int(p)))
    return len(picked)


BBBC048_PHASES = {"G1": 14_333, "S": 8_616, "G2": 8_601, "Prophase": 606, "Metaphase": 68, "Anaphase": 15, "Telophase": 27}


def _bbbc048(ctx: Ctx) -> int:
    """BBBC048v1.zip: CellCycle/<phase>/<cell>_Ch<1|3|6>.jpg (layout unconfirmed, as the catalog's
    pattern), and Ground_truth.lst."""
    phases = list(BBBC048_PHASES)
    drawn = np.sort(ctx.draw(np.array(list(BBBC048_PHASES.values()), np.float64), -(-ctx.n // 3)))
    lines = []
    with ctx.out.zip(ctx.at(ctx.url("BBBC048v1.zip"))) as z:
        for cell, phase in enumerate(drawn):
            for channel in ("Ch1", "Ch3", "Ch6"):
                z.add(f"CellCycle/{phases[phase]}/{cell + 1}_{channel}.jpg", ctx.image("jpg", channel, cell))
            lines.append(f"CellCycle/{phases[phase]}/{cell + 1}\t{phase}")
    ctx.out.file(ctx.at(ctx.url("Ground_truth.lst")), ("\n".join(lines) + "\n").encode())
    return 3 * len(drawn)


BBBC051_CLASSES = {"TAL": 0.3, "S2S3": 0.2, "S1S2": 0.15, "CD_CNT": 0.12, "CD31glom": 0.08, "CD31int": 0.07, "CD45.1": 0.05, "Nestin": 0.03}


def _bbbc051(ctx: Ctx) -> int:
    """Images.zip: <class>/All_3D/object_<id>_<x>__<y>__<z>_1.tif (7-slice stacks; class shares estimated)."""
    classes = list(BBBC051_CLASSES)
    drawn = np.sort(ctx.draw(np.array(list(BBBC051_CLASSES.values()))))
    lines = []
    with ctx.out.zip(ctx.at(ctx.url("Images.zip"))) as z:
        for i, c in enumerate(drawn):
            x, y, depth = (int(v) for v in ctx.rng.integers(0, 2000, 3))
            name = f"Images/{classes[c]}/All_3D/object_{i + 1}_{x}__{y}__{depth % 40}_1.tif"
            z.add(name, ctx.image("zstack16", "dapi", i))
            lines.append(f"{name}\t{classes[c]}")
    ctx.out.file(ctx.at(ctx.url("groundtruthlabels.txt")), ("\n".join(lines) + "\n").encode())
    return len(drawn)


KINASE_GROUPS = {"TK": 90, "CAMK": 74, "AGC": 63, "CMGC": 61, "STE": 47, "TKL": 43, "atypical": 40, "other": 21, "CK1": 12, "RGC": 5}


def _cil_kinome(ctx: Ctx) -> int:
    """What a user unzips by hand: <CIL_ID>.tif per image and the original's group table."""
    groups = np.repeat(list(KINASE_GROUPS), [2 * v for v in KINASE_GROUPS.values()])
    picked = ctx.pick(len(groups), ctx.n)
    folder = ctx.out.root / MANUAL / ctx.dir_name
    for p in picked:
        ctx.out.file(folder / f"{53464 + p}.tif", ctx.image("tifrgb", "kinase", int(p)).data)
    table = [[f"{53464 + p}.zip", groups[p]] for p in picked]
    ctx.out.file(folder / "cil_kinome_metadata.csv", csv_bytes(["file_name", "kinase"], table))
    return len(picked)


# --- IDR --------------------------------------------------------------------------------------------


def _annotation(ctx: Ctx, header: list[str], rows: list[list]) -> None:
    """The study's annotation where the catalog fetches it: plain, .csv.gz or .csv.zip as its URL says."""
    url = next(f.url for f in ctx.source.download.files if "-annotation.csv" in f.url)
    data = csv_bytes(header, rows)
    name = url.rsplit("/", 1)[-1]
    if name.endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    elif name.endswith(".zip"):
        data = csv_zip(name[: -len(".zip")], data)
    ctx.out.file(ctx.at(url), data)


def _study(ctx: Ctx, relative: str, accession: str | None = None) -> Path:
    """A file of the study on EBI's IDR mirror (or of another study, for plates filed under it)."""
    return ctx.at(f"{IDR_MIRROR}/{accession or ctx.source.download.accession}/{relative}")


def _plates_tsv(ctx: Ctx, lines: list[tuple[str, str, str]]) -> None:
    """plate <TAB> /uod/idr/filesets/<fileset>/<path>, as IDR writes them."""
    url = next(f.url for f in ctx.source.download.files if f.url.endswith("-plates.tsv"))
    text = "".join(f"{plate}\t/uod/idr/filesets/{fileset}/{path}\n" for plate, fileset, path in lines)
    ctx.out.file(ctx.at(url), text.encode())


def _samples(ctx: Ctx, paths: list[str], kind: str) -> None:
    """A few raw files of a study whose images this repo does not read yet, in its documented folders
    (file names invented where undocumented), so the study's folder exists and lists like the real one."""
    for i, relative in enumerate(paths):
        ctx.out.file(_study(ctx, relative), ctx.image(kind, relative, i).data)


def _wells(ctx: Ctx, plates: list[str], per_plate: int, columns: int = 24, k: int | None = None) -> list[tuple[int, str, str]]:
    """(well index, plate, IDR well name) for ``k`` (default ``n``) annotated wells spread over ``plates``."""
    k = ctx.n if k is None else k
    return [(w, plates[g], well_name(w, columns, pad=False)) for g, w in ctx.spread(len(plates), per_plate, k)]


STRESS = {"SD": "synthetic medium with dextrose", "NS": "nitrogen starvation", "DTT": "dithiothreitol", "H2O2": "hydrogen peroxide"}


def _idr0003(ctx: Ctx) -> int:
    plates = [f"{c} p{p}" for c in STRESS for p in range(1, 22 + (c == "SD"))][:85]
    rows = []
    for w, plate, well in _wells(ctx, plates, 384):
        orf = (int(plate.rsplit("p", 1)[1]) - 1) * 384 + w
        symbol = "" if orf % 9 == 0 else f"YGS{orf:04d}"
        condition = STRESS[plate.split()[0]]
        rows.append(
            [plate, well, "Y6545", "Saccharomyces cerevisiae", condition, "", "pass", "GFP;Cherry;Transmit", f"Y{orf:05d}W", symbol]
        )
    header = ["Plate", "Well", "Characteristics [Strain]", "Characteristics [Organism]", "Experimental Condition [Environmental Stress]"]
    header += ["Control Type", "Quality Control", "Channels", "Gene Identifier", "Gene Symbol"]
    _annotation(ctx, header, rows)
    _samples(ctx, [f"201301120/Images/DTT/p1/A1_0{f}--{c}.tif" for f in (1, 2) for c in ("GFP", "Cherry", "Transmit")], "tif16")
    return len(rows)


IDR0009_CONTROLS = [("KIF11", 4), ("INCENP", 4), ("COPB1", 2), ("SEC16A", 1), ("PLK1", 1)]


def _idr0009(ctx: Ctx) -> int:
    """964 plates replicating a 149-plate genome-wide library; controls on every plate; QC pass/fail."""
    plates = [f"{p % 149 + 1:04d}-{p // 149 + 1:02d}--2005-08-{p % 28 + 1:02d}" for p in range(964)]
    controls = [(k, gene) for k, (gene, wells) in enumerate(IDR0009_CONTROLS) for _ in range(wells)] + [(-1, "")] * 4
    channels = "nucleus-dapi:DNA;pm-647:plasma membrane;vsvg-cfp:VSVG"
    rows = []
    for w, plate, well in _wells(ctx, plates, 384):
        library = int(plate[:4]) - 1
        if w < len(controls):
            k, gene = controls[w]
            sirna, kind = (f"s{900 + 2 * k + w % 2}", "positive control") if gene else ("neg9", "negative control")
        else:
            slot = library * 368 + w - len(controls)
            gene, sirna, kind = f"HSG{slot // 3:05d}", f"s{10_000 + slot}", ""
        qc = "fail" if (w * 31 + library) % 13 == 0 else "pass"
        ensembl = f"ENSG{stable_hash(gene) % 10**11:011d}" if gene else ""
        rows.append([plate, well, "Homo sapiens", "HeLa", sirna, ensembl, gene, kind, qc, channels])
    header = ["Plate", "Well", "Characteristics [Organism]", "Characteristics [Cell Line]", "siRNA Identifier", "Gene Identifier"]
    header += ["Gene Symbol", "Control Type", "Quality Control", "Channels"]
    _annotation(ctx, header, rows)
    plate = plates[0]
    _samples(ctx, [f"20150507-VSVG/VSVG/{plate}/{plate}_A1--{c}.tif" for c in ("nucleus-dapi", "pm-647", "vsvg-cfp")], "tif16")
    return sum(row[8] == "pass" for row in rows)  # the catalog keeps Quality Control = pass


def _idr0016(ctx: Ctx) -> int:
    """413 plates: 64 DMSO and 19 positive-control wells each, the rest ~30,000 library compounds."""
    plates = [str(24277 + p) for p in range(413)]
    positives = names("BRD-K0000", 19)
    rows = []
    for w, plate, well in _wells(ctx, plates, 384):
        p = int(plate) - 24277
        if w % 6 == 0:
            name, kind = "DMSO", "negative control"
        elif w % 20 == 1 and w // 20 < 19:
            name, kind = positives[w // 20], "positive control"
        else:
            name, kind = f"BRD-K{(p * 301 + w) % 30_000:08d}", ""
        rows.append([plate, well, "Homo sapiens", "U2OS", name, kind, "Hoechst;ERSyto;ERSytoBleed;Ph_golgi;Mito"])
    header = ["Plate", "Well", "Characteristics [Organism]", "Characteristics [Cell Line]", "Compound Name", "Control Type", "Channels"]
    _annotation(ctx, header, rows)
    # The per-channel folders are documented (<plate>-<channel>); their file names are not (BBBC022's used here).
    _samples(
        ctx,
        [f"24277-{c}/cdp2bioactives_a01_s1_w{k + 1}.tif" for k, c in enumerate(["Hoechst", "ERSyto", "ERSytoBleed", "Ph_golgi", "Mito"])],
        "tif16",
    )
    return len(rows)


IDR0017_LINES = [
    "par001",
    "02-030",
    "104-001",
    "104-002",
    "104-003",
    "104-004",
    "104-005",
    "104-007",
    "104-008",
    "104-009",
    "104-010",
    "104-011",
]


def _idr0017(ctx: Ctx) -> int:
    """96 plates: 12 HCT116 lines x 4 LOPAC plates x 2 replicates; 32 DMSO wells per plate."""
    plates = [f"{line}_LOPAC_Plate_{p}_Replicate_{r}" for line in IDR0017_LINES for p in range(1, 5) for r in (1, 2)]
    rows = []
    for w, plate, well in _wells(ctx, plates, 384):
        line, lopac = plate.split("_LOPAC_")[0], int(plate.split("_Plate_")[1][0])
        compound = "DMSO" if w % 12 == 0 else f"LOPAC-{(lopac - 1) * 352 + w:04d}"
        rows.append([plate, well, "Homo sapiens", f"HCT116 {line}", "isogenic knockout", compound, "", "DAPI;Cy3"])
    header = ["Plate", "Well", "Characteristics [Organism]", "Characteristics [Cell Line]", "Mutation Detailed", "Compound Name"]
    _annotation(ctx, header + ["Control Type", "Channels"], rows)
    run = "20151124/14_X-Man_10x/source/2011-11-17_X-Man_LOPAC_X01_LP_S01_1"
    _samples(ctx, [f"{run}/B - 02(fld 1 wv {c} - {c}).tif" for c in ("DAPI", "Cy3")], "tif16")
    ctx.out.file(_study(ctx, f"{run}/run.xdce"), b'<?xml version="1.0"?><ImageStack/>\n')
    return len(rows)


IDR0021_DATASETS = ["CDK5RAP2-C", "CEP152", "CEP192", "CEP63", "CEP120", "PCNT-C", "PCNT-N", "NEDD1", "TUBG1", "CEP57"]


def _idr0021(ctx: Ctx) -> int:
    """Raw-files/<Dataset>/<session>/<Image Name> (DeltaVision projections) under incoming/."""
    rows = []
    for i in range(ctx.n):
        dataset = IDR0021_DATASETS[i % len(IDR0021_DATASETS)]
        image = f"{dataset}_{i // len(IDR0021_DATASETS) + 1}_SIR_PRJ.dv"
        phase = "mitosis" if i % 5 == 4 else "interphase"
        gene = dataset.split("-")[0]
        rows.append([dataset, image, "Homo sapiens", "HeLa", phase, gene, gene, f"442:CENT2; 525:{gene}", "no"])
        session = f"incoming/{ctx.source.download.accession}/Raw-files/{dataset}/{dataset}_2011{i % 12 + 1:02d}05"
        ctx.out.file(_study(ctx, f"{session}/{image}"), ctx.image("dv", dataset, i).data)
    header = [
        "Dataset Name",
        "Image Name",
        "Characteristics [Organism]",
        "Characteristics [Cell Line]",
        "Characteristics [Cell Cycle Phase]",
    ]
    _annotation(ctx, header + ["Comment [Targeted Protein]", "Comment [Gene Symbol]", "Channels", "Has Phenotype"], rows)
    return len(rows)


def _operetta(ctx: Ctx, stem: str, channels: int, plate_dir: Path, wells: list[tuple[str, int]], fields: int) -> None:
    """An Operetta/Phenix plate folder: Index.idx.xml and r<RR>c<CC>f<FF>p01-ch<C>sk1fk1fl1.tiff."""
    ctx.out.file(plate_dir / "Index.idx.xml", b'<?xml version="1.0" encoding="utf-8"?><EvaluationInputData/>\n')
    for well, w in wells:
        row, column = ord(well[0]) - 64, int(well[1:])
        for f in range(1, fields + 1):
            for c in range(1, channels + 1):
                name = f"r{row:02d}c{column:02d}f{f:02d}p01-ch{c}sk1fk1fl1.tiff"
                ctx.out.file(plate_dir / name, ctx.image("tif16", f"{stem}ch{c}", w * fields + f).data)


IDR0037_CHANNELS = "DAPI:nuclei;Alexa 488:EdU, proliferation;CellMask:plasma membrane;Brightfield:cell outline"


def _idr0037(ctx: Ctx) -> int:
    """69 plates of 48 wells x 9 fields x 4 channels; 29 plates are filed under idr0034 (as IDR's
    plates.tsv says), outside this study's folder on the mirror (the catalog's download.filesets)."""
    lines = ["A1ATD-iPSC patient 1"] + [
        f"HPSI{m % 12 + 1:02d}{13 + m % 3}i-{'abcdefghijklmnopqrstuvwxyz'[m % 26]}{'aeiou'[m % 5]}{m:02d}_{m % 4 + 1}" for m in range(114)
    ]
    weights = np.r_[573.0, np.full(114, (3303 - 573) / 114)]  # the fixture's shape: one control line, ~24 wells per HipSci line
    plates = [f"experiment_{p + 1:02d}" for p in range(69)]
    elsewhere = dict(zip(range(1, 30), ctx.source.download.filesets))  # plates 02..30 in idr0034's folders the catalog lists
    picked = _wells(ctx, plates, 48, columns=6, k=-(-ctx.n // 18))
    per_well = np.array(lines)[ctx.draw(weights, len(picked))] if picked else []
    rows, files, tsv = [], {}, []
    for p, plate in enumerate(plates):
        measurement = f"2014{p % 12 + 1:02d}{p % 27 + 1:02d}_HipSci Experiment {p + 1}__2014-05-28T11_47_{p:02d}-Measurement1"
        if p in elsewhere:
            fileset, folder = elsewhere[p].split("/", 1)
            tsv.append((plate, fileset, f"{folder}/Images/Index.idx.xml"))
        else:
            tsv.append((plate, ctx.source.download.accession, f"images/{measurement}/Images/Index.idx.xml"))
    for (w, plate, well), line in zip(picked, per_well):
        p = plates.index(plate)
        control = line.startswith("A1ATD")
        cell_type, kind = ("", "control cell line") if control else ("induced pluripotent stem cell", "")
        rows.append([plate, well, "Homo sapiens", line, cell_type, kind, IDR0037_CHANNELS])
        files.setdefault(p, []).append((well, w))
    for p, (_, fileset, index) in enumerate(tsv):  # every plate's folder is there, with or without annotated wells
        _operetta(ctx, "hipsci", 4, _study(ctx, index.rsplit("/", 1)[0], fileset), files.get(p, []), 9)
    header = ["Plate", "Well", "Characteristics [Organism]", "Characteristics [Cell Line]", "Characteristics [Cell Type]", "Control Type"]
    header += ["Channels"]
    _annotation(ctx, header, rows)
    _plates_tsv(ctx, tsv)
    return len(rows) * 9 * 2  # a row per field, for fluorescence and brightfield


IDR0041_GENES = (
    "MAD2L1 TUBB4B NEDD1 MIS12 NUP107 KIF4A CEP192 NCAPH NCAPH2 NCAPD2 NCAPD3 SMC4 TOP2A AURKB BUB1 CDCA8 NES PLK1 RACGAP1 SCC1 "
    "STAG1 STAG2 WAPL PDS5A CTCF KIF11 CENPA RANBP2"
).split()


def _idr0041(ctx: Ctx) -> int:
    """Per-image annotation of 72 datasets (28 genes) x 280 images (7 cells x 40 time points), each
    image in three kinds (raw, mask, conc); only the original images are written as files."""
    picked = ctx.spread(72, 280, ctx.n)
    rows = []
    for d, item in picked:
        gene = IDR0041_GENES[d % 28]
        cell, t = divmod(item, 40)
        image = f"cell{cell + 1:04d}_R{d + 1:04d}_T{t + 1:04d}"
        base = f"1704{d % 28 + 1:02d}_{gene}gfpc{d:02d}_MitoSys{d // 28 + 1}"
        for suffix, kind in (("raw", "original images"), ("mask", "segmentation masks"), ("conc", "concentration maps")):
            rows.append([f"{base}_{suffix}", image, "Homo sapiens", "HeLa", f"ENSG{stable_hash(gene) % 10**11:011d}", gene, kind])
        ctx.out.file(_study(ctx, f"20180710-ftp/{base}_raw/{image}.tif"), ctx.image("zc16", gene, item).data)
    header = ["Dataset Name", "Image Name", "Characteristics [Organism]", "Characteristics [Cell Line]", "Comment [Gene Identifier]"]
    _annotation(ctx, header + ["Comment [Gene Symbol]", "Comment [Image File Type]"], rows)
    return len(picked)


def _idr0067(ctx: Ctx) -> int:
    proteins = ["Nup170", "Nsr1", "Hsp104", "Htb1", "Spc42", "Tub4", "Cdc14", "Rec8", "Zip1", "Ndt80"] + names("Prot", 30)
    drawn = ctx.draw(frequencies(419, len(proteins), 0))
    rows = [
        [f"Figure {i % 7 + 1}", f"img{i:04d}_R3D_D3D.dv", "Saccharomyces cerevisiae", "SK1", proteins[p], "FITC = GFP"]
        for i, p in enumerate(drawn)
    ]
    header = ["Dataset Name", "Image Name", "Characteristics [Organism]", "Characteristics [Strain]", "Comment [Protein] 1", "Channels"]
    _annotation(ctx, header, rows)
    _samples(ctx, ["Figure 1/A/img0000_R3D_D3D.dv", "Figure 1/A/img0000_R3D.dv"], "dv")
    return len(rows)


def _idr0072(ctx: Ctx) -> int:
    """Screen B (NMuMG): one tagged protein per well, ~40 proteins (estimate)."""
    proteins = ["VAMP5", "Rab5a", "Rab7", "Sec61b", "Tomm20", "Lamp1", "Golga5", "Pex3", "Cav1", "Lmnb1"] + names("Mp", 30)
    weights = frequencies(REAL_ROWS["idr0072"], len(proteins), 6)
    plates = [f"2013{p % 12 + 1:02d}{p % 28 + 1:02d}_TA_{proteins[p % 10].upper()}_DEG/Meas_01" for p in range(84)]
    picked = _wells(ctx, plates, 96, columns=12)
    drawn = ctx.draw(weights, len(picked))
    rows = []
    for (w, plate, well), p in zip(picked, drawn):
        name = proteins[p]
        rows.append(
            [plate, well, "Mus musculus", "NCBITaxon", "10090", "NMuMG", "EFO", "EFO_0002811", f"ENSMUSG{stable_hash(name) % 10**11:011d}"]
        )
        rows[-1] += [name.capitalize(), f"{name} protein", name, "", "", "", "cytoplasm", "EGFP (protein of interest), DRAQ5 (DNA)"]
    header = ["Plate", "Well", "Characteristics [Organism]", "Term Source 1 REF", "Term Source 1 Accession", "Characteristics [Cell Line]"]
    header += ["Term Source 2 REF", "Term Source 2 Accession", "Comment [Gene Identifier]", "Comment [Gene Symbol]"]
    header += ["Comment [Protein Name]"]
    header += ["Comment [Protein Name Abbreviation]", "Protein Sequence (aa)", "UniProt ID", "Addgene ID"]
    header += ["Experimental Condition [Subcellular Localization]", "Channels"]
    _annotation(ctx, header, rows)
    _samples(ctx, [f"{plates[0]}/001001001.flex", f"{plates[0]}/001002001.flex"], "flex")
    return len(rows)


def _idr0080(ctx: Ctx) -> int:
    """9 plates and their illumination-corrected copies (18 in IDR), 384 wells x 9 fields x 5 channels;
    51 genes by CRISPR, EMPTY controls; 3 cell lines, 3 plates each."""
    genes = ["TP53", "KRAS", "MYC", "PTEN", "BRCA1"] + names("CHG", 46)
    base = "20200316-s3/2015_07_01_Cell_Health_Vazquez_Cancer_Broad/CRISPR_PILOT_B1"
    raw = [f"SQ000146{10 + p}" for p in range(9)]
    plates = raw + [f"{p}_illum_corrected" for p in raw]
    folders = [f"{base}/images/{p}__2016-05-05T18_16_{i:02d}-Measurement2/Images" for i, p in enumerate(raw)]
    folders += [f"{base}/images_illum_corrected/{p}__2016-05-05T18_16_{i:02d}-Measurement2/Images" for i, p in enumerate(raw)]
    wells = ctx.spread(18, 384, -(-ctx.n // 9))
    rows = []
    for g, w in wells:
        gene = "EMPTY" if w % 8 == 0 else genes[(w * 7) % 51]
        line = ["A549", "ES2", "HCC44"][g % 9 // 3]
        kind = "negative control" if gene == "EMPTY" else ""
        channels = "Hoechst;ConA;SYTO14;Phalloidin+WGA;MitoTracker"
        rows.append([plates[g], well_name(w, pad=False), "Homo sapiens", line, f"guide-{w % 2}", gene, kind, channels])
    for g in range(18):
        plate_wells = [(well_name(w, pad=False), w) for group, w in wells if group == g]
        if plate_wells:
            _operetta(ctx, "cellhealth", 5, _study(ctx, folders[g]), plate_wells, 9)
    header = ["Plate", "Well", "Characteristics [Organism]", "Characteristics [Cell Line]", "Reagent Identifier", "Gene Symbol"]
    _annotation(ctx, header + ["Control Type", "Channels"], rows)
    _plates_tsv(ctx, [(plates[g], ctx.source.download.accession, f"{folders[g]}/Index.idx.xml") for g in range(18)])
    return len(wells) * 9


def _idr0081(ctx: Ctx) -> int:
    plates = [f"D-{p + 1}" for p in range(16)]
    rows = []
    for w, plate, well in _wells(ctx, plates, 384):
        compound = "Dimethyl sulfoxide" if w % 3 == 0 else f"Prestw-{(int(plate[2:]) * 256 + w) % 1280 + 1}"
        control = "" if w % 3 else "negative control"
        rows.append([plate, "1", well, "Homo sapiens", "Human adenovirus 2", "A549", compound, control, "Hoechst:nuclei; GFP:infection"])
    header = ["Plate", "Comment [Plate Replicate]", "Well", "Characteristics [Organism 1]", "Characteristics [Organism 2]"]
    _annotation(ctx, header + ["Characteristics [Cell Line]", "Compound Name", "Control Type", "Channels"], rows)
    _samples(
        ctx, ["20200324-owncloud/3-Screen/Data_UZH/D-1/D-1_A01_w1.TIF", "20200324-owncloud/3-Screen/Data_UZH/D-1/D-1_A01_w2.TIF"], "tif16"
    )
    ctx.out.file(_study(ctx, "20200324-owncloud/3-Screen/Data_UZH/D-1/D-1.HTD"), b'"HTSInfoFile", Version 1.0\r\n')
    return len(rows)


IDR0088_LINES = {
    "A549": ["ACTB-RAB5A", "TUBA-RELA", "H2B-SEC61B"],
    "HepG2": ["TUBA-RELA", "ACTB-RAB5A", "CALR-HMGB1"],
    "WPMY-1": ["ACTB-LAMP1", "TUBA-RELA"],
}


def _idr0088(ctx: Ctx) -> int:
    """1,008 compounds (MoA for the reference set) and DMSO on marker lines of A549, HepG2, WPMY-1."""
    # Unconfirmed shapes; idr0088 names no image file here, so its labels make no class.
    compounds = frequencies(REAL_ROWS["idr0088"], 1009, 120, top=0.105)
    compound_names = ["DMSO"] + names("PPS-", 1008)
    moa_weights = frequencies(1008, 150, 50, threshold=THRESHOLD / 300)  # in compounds; a compound holds ~300 rows
    moa_of = np.r_[-1, np.repeat(np.arange(150), quotas(moa_weights, 1008))]
    moa_of[1::3] = -1  # the natural-product set has no MoA
    drawn = ctx.draw(compounds)
    lines = [(line, markers) for line, all_markers in IDR0088_LINES.items() for markers in all_markers]
    rows = []
    for i, c in enumerate(drawn):
        line, markers = lines[i % len(lines)]
        plate = str(1_013_600_000 + i // 265)
        moa = f"idr0088 moa {moa_of[c] + 1}" if moa_of[c] >= 0 else ""
        rows.append([plate, well_name(i % 265 + 24, pad=False), "Homo sapiens", line, f"{line}-{markers}", "0.3", moa, compound_names[c]])
        rows[-1] += [
            "negative control" if c == 0 else "",
            f"Ch1 (blue): Nuclei/Cytoplasm, Ch2 (green): {markers.split('-')[0]}, Ch3 (red): {markers.split('-')[1]}",
        ]
    header = ["Plate", "Well", "Characteristics [Organism]", "Characteristics [Cell Line]", "Comment [Cell Line with Markers]"]
    header += ["Compound Concentration (microMolar)", "Compound MoA", "Compound Name", "Control Type", "Channels"]
    _annotation(ctx, header, rows)
    folder = (
        "20200722-awss3/ds_hcs_02/PhenoPrintScreen/raw_images_for_IDR/p171224PPS139/PpsL05A549ActbRab5a_PPS139_20171225_200929/1013600000"
    )
    _samples(ctx, [f"{folder}/1013600000_B02_T0001F001L01A0{c}Z01C0{c}.tif" for c in (1, 2, 3)], "tif16")
    ctx.out.file(_study(ctx, f"{folder}/1013600000.wpi"), b"<?xml version='1.0'?><WPI/>\n")
    return len(rows)


IDR0093_CONTROLS = [("PLK1", "s449"), ("KIF11", "s7902"), ("POLR2A", "s10773")]


def _idr0093(ctx: Ctx) -> int:
    """83 plates: 4 wells of each positive control and 8 scrambled wells per plate, ~10,000 pools."""
    plates = [f"{p + 1:03d}" for p in range(83)]
    rows = []
    for w, plate, well in _wells(ctx, plates, 384):
        if w < 12:
            gene, pool = IDR0093_CONTROLS[w // 4]
            kind = "positive control"
        elif w < 20:
            gene, pool, kind = "", "", "negative control"
        else:
            slot = (int(plate) - 1) * 364 + w - 20
            gene, pool, kind = f"HSG{slot // 3:05d}", f"s{20_000 + slot}", ""
        rows.append(
            [plate, well, kind, "", "", "Homo sapiens", "HeLa", f"ENSG{stable_hash(gene) % 10**11:011d}" if gene else "", gene, pool, ""]
        )
    header = ["Plate", "Well", "Control Type", "Quality Control", "Channels", "Characteristics [Organism]", "Characteristics [Cell Line]"]
    header += ["Gene Identifier", "Gene Symbol", "siRNA Pool Identifier 1", "siRNA Pool Identifier 2"]
    _annotation(ctx, header, rows)
    _samples(ctx, [f"20200910-rsync/batch1/001/W0001F0001T0001Z001C{c}.tif" for c in range(1, 6)], "tif16")
    return len(rows)


# --- Kaggle -----------------------------------------------------------------------------------------


def _kaggle_zip(ctx: Ctx) -> Path:
    spec = ctx.source.download
    url = kaggle_dataset_url(spec.slug) if spec.method == "kaggle_dataset" else kaggle_competition_url(spec.slug)
    return ctx.at(url)


def _kag_cell_cycle(ctx: Ctx) -> int:
    drawn = ctx.draw(np.array([57.0, 33.0]))
    with ctx.out.zip(_kaggle_zip(ctx)) as z:
        for i, phase in enumerate(drawn):
            name = ["interphase", "mitosis"][phase]
            z.add(f"nematode cells/nematode cells/{name}/IMG_{1000 + i // 3:04d}-{i % 3 + 1}.jpg", ctx.image("jpgrgb", name, i))
    return len(drawn)


HPA_2018 = [
    12885,
    1254,
    3621,
    1561,
    1858,
    2513,
    1008,
    2822,
    53,
    45,
    28,
    1093,
    688,
    537,
    1066,
    21,
    530,
    210,
    902,
    1482,
    172,
    3777,
    802,
    2965,
    322,
    8228,
    328,
    11,
]
# HPA 2021's 19 labels (estimate, in the 2018 set's proportions; 18 = Negative).
HPA_2021 = [8797, 1126, 2506, 1080, 1289, 2159, 871, 1818, 948, 638, 1058, 113, 1038, 2597, 2016, 222, 5653, 2007, 34]


def _hpa(ctx: Ctx, counts: list[int], images_real: int, kind: str) -> int:
    """train.csv (Id and integer labels) and train/<Id>_<colour>.png, from Kaggle's competition zip."""
    options = ctx.source.parser_options
    images = -(-ctx.n // 4)
    tokens = ctx.draw(np.array(counts, np.float64), max(images, round(sum(counts) * images / images_real)))
    labels: list[list[int]] = [[] for _ in range(images)]
    for i, token in enumerate(tokens):
        slot = i if i < images else int(ctx.rng.integers(images))
        if token not in labels[slot]:
            labels[slot].append(int(token))
    ids = [str(uuid.UUID(bytes=ctx.rng.bytes(16))) for _ in range(images)]
    rows = [[image_id, options["separator"].join(str(t) for t in sorted(set(found), reverse=True))] for image_id, found in zip(ids, labels)]
    with ctx.out.zip(_kaggle_zip(ctx)) as z:
        z.add(options["table"], csv_bytes([options["id_column"], options["target_column"]], rows))
        z.add("sample_submission.csv", csv_bytes([options["id_column"], "Predicted"], []))
        for i, image_id in enumerate(ids):
            for colour in ("red", "green", "blue", "yellow"):
                z.add(f"{options['image_dir']}/{image_id}_{colour}.png", ctx.image(kind, colour, i))
    return 4 * images


def _kag_leukemia(ctx: Ctx) -> int:
    """C-NMC_Leukemia: training folds of all/hem cells, and the (unlabelled here) validation and test data."""
    drawn = ctx.draw(np.array([7272.0, 3389.0]))
    with ctx.out.zip(_kaggle_zip(ctx)) as z:
        for i, cls in enumerate(drawn):
            label = ["all", "hem"][cls]
            patient = f"H{i % 40 + 1}" if label == "hem" else str(i % 78 + 1)
            z.add(
                f"C-NMC_Leukemia/training_data/fold_{i % 3}/{label}/UID_{patient}_{i // 120 + 1}_{i % 120 + 1}_{label}.bmp",
                ctx.image("bmprgb", label, i),
            )
        labels = []
        for i in range(ctx.count(1867)):
            z.add(f"C-NMC_Leukemia/validation_data/C-NMC_test_prelim_phase_data/{i + 1}.bmp", ctx.image("bmprgb", "validation", i))
            labels.append([f"UID_{i % 20 + 1}_{i + 1}_1_all.bmp", f"{i + 1}.bmp", 1 - i % 3 // 2])
        z.add(
            "C-NMC_Leukemia/validation_data/C-NMC_test_prelim_phase_data_labels.csv",
            csv_bytes(["Patient_ID", "new_names", "labels"], labels),
        )
        for i in range(ctx.count(2586)):
            z.add(f"C-NMC_Leukemia/testing_data/C-NMC_test_final_phase_data/{i + 1}.bmp", ctx.image("bmprgb", "test", i))
    return len(drawn)


# --- Recursion --------------------------------------------------------------------------------------


def _rxrx_zips(ctx: Ctx, folder: str, table: str, header: list[str], rows: list[list], channels: int) -> None:
    """<name>-metadata.zip holding <folder>/<table>, <name>-images.zip holding <folder>/images/<exp>/Plate<p>/..."""
    metadata, images = sorted((f for f in ctx.source.download.files), key=lambda f: f.role != "metadata")[:2]
    with ctx.out.zip(ctx.at(metadata.url)) as z:
        z.add(f"{folder}/{table}", csv_bytes(header, rows))
    experiment, plate, well, site = (header.index(c) for c in ("experiment", "plate", "well", "site"))
    with ctx.out.zip(ctx.at(images.url)) as z:
        for i, row in enumerate(rows):
            for c in range(1, channels + 1):
                name = f"{folder}/images/{row[experiment]}/Plate{row[plate]}/{row[well]}_s{row[site]}_w{c}.png"
                z.add(name, ctx.image("png8", f"w{c}", i))


RXRX1_LINES = {"HEPG2": 11, "HUVEC": 24, "RPE": 11, "U2OS": 5}


def _rec_rxrx1(ctx: Ctx) -> int:
    """51 experiments x 4 plates x 308 wells x 2 sites: 1,108 siRNAs once per experiment (277 per
    plate), 30 positive controls and 1 negative control (EMPTY) on every plate. The siRNAs are drawn
    in exact proportion, so none reaches the threshold by chance at small scales."""
    experiments = [(line, f"{line}-{k + 1:02d}") for line, count in RXRX1_LINES.items() for k in range(count)]
    sirnas = ctx.draw(np.r_[np.full(1108, 1.0), np.full(31, 4.0)])  # per experiment: once, or on each of the 4 plates
    rows = []
    for (g, item), sirna_id in zip(ctx.spread(len(experiments) * 4, 308 * 2, ctx.n), sirnas):
        (line, experiment), plate = experiments[g // 4], g % 4 + 1
        w, site = divmod(item, 2)
        well = well_name(w, 22, first_row=1, first_column=2)
        well_type = "treatment" if sirna_id < 1108 else "negative_control" if sirna_id == 1138 else "positive_control"
        sirna = "EMPTY" if well_type == "negative_control" else f"s{10_000 + sirna_id * 17}"
        dataset = "test" if g // 4 % 3 == 2 else "train"
        site_id = f"{experiment}_{plate}_{well}_{site + 1}"
        rows.append([site_id, site_id.rsplit("_", 1)[0], line, dataset, experiment, plate, well, site + 1, well_type, sirna, sirna_id])
    header = ["site_id", "well_id", "cell_type", "dataset", "experiment", "plate", "well", "site", "well_type", "sirna", "sirna_id"]
    _rxrx_zips(ctx, "rxrx1", "metadata.csv", header, rows, 6)
    return len(rows)


def _rxrx_sites(ctx: Ctx, experiments: list[tuple[str, str, float]], sites: int) -> list[tuple[str, str, int, str, int]]:
    """(cell type, experiment, plate, well, site) of ``n`` sites on 1,536-well plates (1,380 inner wells)."""
    per_experiment = quotas(np.array([share for _, _, share in experiments]), ctx.n)
    out = []
    for (line, experiment, _), count in zip(experiments, per_experiment):
        for i in range(int(count)):
            w, site = divmod(i, sites)
            plate, w = divmod(w, 1380)
            out.append((line, experiment, plate + 1, well_name(w, 46, first_row=1, first_column=2), site + 1))
    return out


def _rxrx_compounds(ctx: Ctx, prefix: str, real: int, values: int, classes: int, treated: float) -> tuple[list[str], np.ndarray]:
    """Compound names and one per row ('' for untreated wells), skewed so ``classes`` reach the threshold."""
    weights = np.r_[frequencies(real * treated, values, classes), real * (1 - treated)]
    return [*names(prefix, values), ""], ctx.draw(weights)


def _rec_rxrx2(ctx: Ctx) -> int:
    """HUVEC with ~434 soluble factors; per the RxRx2 README the table is rxrx2-metadata.csv."""
    sites = _rxrx_sites(ctx, [("HUVEC", f"HUVEC-{k + 1}", 1.0) for k in range(6)], 4)
    compounds, drawn = _rxrx_compounds(ctx, "rxrx2 factor ", REAL_ROWS["rec_rxrx2"], 434, 115, 0.9)
    rows = [
        [f"{e}_{p}_{w}_{s}", f"{e}_{p}_{w}", line, e, p, w, s, compounds[c], "0.1" if compounds[c] else ""]
        for (line, e, p, w, s), c in zip(sites, drawn)
    ]
    header = ["site_id", "well_id", "cell_type", "experiment", "plate", "well", "site", "treatment", "treatment_conc"]
    _rxrx_zips(ctx, "rxrx2", "rxrx2-metadata.csv", header, rows, 6)
    return len(rows)


RXRX19_COLUMNS = [  # RxRx19a's and RxRx19b's metadata.csv
    "site_id",
    "well_id",
    "cell_type",
    "experiment",
    "plate",
    "well",
    "site",
    "disease_condition",
    "treatment",
    "treatment_conc",
    "SMILES",
]


def _rec_rxrx19a(ctx: Ctx) -> int:
    """HRCE and VERO, 1,672 compounds in 6 doses, mock / irradiated / active SARS-CoV-2 controls; 5 channels."""
    experiments = [("HRCE", "HRCE-1", 0.45), ("HRCE", "HRCE-2", 0.4), ("VERO", "VERO-1", 0.08), ("VERO", "VERO-2", 0.07)]
    sites = _rxrx_sites(ctx, experiments, 4)
    compounds, drawn = _rxrx_compounds(ctx, "rxrx19a cpd ", REAL_ROWS["rec_rxrx19a"], 1672, 425, 0.85)
    conditions = ["Active SARS-CoV-2", "Mock", "UV Inactivated SARS-CoV-2"]
    condition = ctx.draw(np.array([0.86, 0.07, 0.07]))
    rows = []
    for (line, e, p, w, s), c, d in zip(sites, drawn, condition):
        treated = bool(compounds[c])
        rows.append(
            [
                f"{e}_{p}_{w}_{s}",
                f"{e}_{p}_{w}",
                line,
                e,
                p,
                w,
                s,
                conditions[0 if treated else d],
                compounds[c],
                "1.0" if treated else "",
                "C" if treated else "",
            ]
        )
    _rxrx_zips(ctx, "RxRx19a", "metadata.csv", RXRX19_COLUMNS, rows, 5)
    return len(rows)


def _rec_rxrx19b(ctx: Ctx) -> int:
    sites = _rxrx_sites(ctx, [("HUVEC", f"HUVEC-{k + 1}", 1.0) for k in range(2)], 1)
    compounds, drawn = _rxrx_compounds(ctx, "rxrx19b cpd ", REAL_ROWS["rec_rxrx19b"], 1856, 95, 0.8)
    condition = ctx.draw(np.array([0.7, 0.2, 0.1]))
    rows = []
    for (line, e, p, w, s), c, d in zip(sites, drawn, condition):
        treated = bool(compounds[c])
        cocktail = "storm-severe" if treated else ["storm-severe", "healthy", ""][d]
        rows.append(
            [f"{e}_{p}_{w}_{s}", f"{e}_{p}_{w}", line, e, p, w, s, cocktail, compounds[c], "1.0" if treated else "", "C" if treated else ""]
        )
    _rxrx_zips(ctx, "rxrx19b", "metadata.csv", RXRX19_COLUMNS, rows, 6)
    return len(rows)


# --- evaluation sets --------------------------------------------------------------------------------

BBBC021_PLATES = {
    "Week1": [22123, 22141, 22161, 22361, 22381, 22401],
    "Week2": [24121, 24141, 24161, 24361, 24381, 24401],
    "Week3": [25421, 25441, 25461, 25681, 25701, 25721],
    "Week4": [27481, 27521, 27542, 27801, 27821, 27861],
    "Week5": [28901, 28921, 28961, 29301, 29321, 29341],
    "Week6": [31641, 31661, 31681, 32061, 32121, 32161],
    "Week7": [34341, 34381, 34641, 34661, 34681],
    "Week8": [38203, 38221, 38241, 38341, 38342],
    "Week9": [39206, 39221, 39222, 39282, 39283, 39301],
    "Week10": [40111, 40115, 40119],
}
BBBC021_MOAS = {  # the 38 compounds of BBBC021's MOA table
    "Actin disruptors": ["cytochalasin B", "cytochalasin D", "latrunculin B"],
    "Aurora kinase inhibitors": ["AZ258", "AZ841", "AZ-A"],
    "Cholesterol-lowering": ["mevinolin/lovastatin", "simvastatin"],
    "DNA damage": ["chlorambucil", "cisplatin", "etoposide", "mitomycin C"],
    "DNA replication": ["camptothecin", "floxuridine", "methotrexate", "mitoxantrone"],
    "Eg5 inhibitors": ["AZ-C", "AZ138"],
    "Epithelial": ["PP-2", "AZ-J", "AZ-U"],
    "Kinase inhibitors": ["alsterpaullone", "bryostatin", "PD-169316"],
    "Microtubule destabilizers": ["colchicine", "demecolcine", "nocodazole", "vincristine"],
    "Microtubule stabilizers": ["docetaxel", "epothilone B", "taxol"],
    "Protein degradation": ["ALLN", "lactacystin", "MG-132", "proteasome inhibitor I"],
    "Protein synthesis": ["anisomycin", "cyclohexamide", "emetine"],
}


def _bbbc021(ctx: Ctx) -> int:
    """55 plate zips of <Week>_<plate>/<well>_s<site>_w<1|2|4><UUID>.tif (the image table names them
    under <Week>/<Week>_<plate>/, as users arrange them), image.csv, moa.csv (CR line ends), compound.csv."""
    plates = [(week, plate) for week, numbers in BBBC021_PLATES.items() for plate in numbers]
    treatments = [(c, conc, moa) for moa, compounds in BBBC021_MOAS.items() for c in compounds for conc in (0.3, 1.0, 3.0)][:102]
    others = [(f"compound-{i + 1:02d}", 1.0, "") for i in range(75)] + [("UNKNOWN", 0.0, "")]
    table, members = [], {}
    for g, item in ctx.spread(55, 60 * 4, max(ctx.n, 55)):  # every plate zip has images
        week, plate = plates[g]
        w, site = divmod(item, 4)
        well = well_name(w, 10, first_row=1, first_column=2)
        compound, concentration, _ = (
            ("DMSO", 0.0, "DMSO") if w % 6 == 0 else (treatments + others)[(g * 7 + w) % (len(treatments) + len(others))]
        )
        files = [f"{well}_s{site + 1}_w{k}{ctx.uuid()}.tif" for k in (1, 2, 4)]
        members.setdefault((week, plate), []).extend((f, k, item) for f, k in zip(files, ("DAPI", "Tubulin", "Actin")))
        folder = f"{week}/{week}_{plate}"
        table.append(
            [
                int(week[4:]),
                len(table) + 1,
                files[0],
                folder,
                files[1],
                folder,
                files[2],
                folder,
                f"{week}_{plate}",
                well,
                1,
                compound,
                f"{concentration:.6f}",
            ]
        )
    header = [
        "TableNumber",
        "ImageNumber",
        "Image_FileName_DAPI",
        "Image_PathName_DAPI",
        "Image_FileName_Tubulin",
        "Image_PathName_Tubulin",
    ]
    header += ["Image_FileName_Actin", "Image_PathName_Actin", "Image_Metadata_Plate_DAPI", "Image_Metadata_Well_DAPI", "Replicate"]
    header += ["Image_Metadata_Compound", "Image_Metadata_Concentration"]
    ctx.out.file(ctx.at(ctx.url("BBBC021_v1_image.csv")), csv_bytes(header, table, quoting=csv.QUOTE_NONNUMERIC))
    moa = [[c, f"{conc:g}", m] for c, conc, m in treatments] + [["DMSO", "0", "DMSO"]]
    ctx.out.file(ctx.at(ctx.url("BBBC021_v1_moa.csv")), csv_bytes(["compound", "concentration", "moa"], moa, line_end="\r").rstrip(b"\r"))
    compounds = sorted({c for c, _, _ in treatments + others} | {"DMSO"})
    ctx.out.file(ctx.at(ctx.url("BBBC021_v1_compound.csv")), csv_bytes(["compound", "smiles"], [[c, "C"] for c in compounds]))
    for (week, plate), files in members.items():
        with ctx.out.zip(ctx.at(ctx.url(f"BBBC021_v1_images_{week}_{plate}.zip"))) as z:
            for name, channel, i in files:
                z.add(f"{week}_{plate}/{name}", ctx.image("tif16", channel, i))
    return len(table)


def _coos7(ctx: Ctx) -> int:
    """COOS7_v1.1_<split>.hdf5, put in raw/coos7 by hand (split sizes estimated: half train)."""
    train, test = max(2, round(9_440 * ctx.scale)), max(2, round(2_360 * ctx.scale))
    folder = ctx.out.root / MANUAL / ctx.dir_name
    write_coos7(folder, ctx.seed, train_per_class=train, test_per_class=test)
    ctx.out.written.update(p for p in folder.glob("*.hdf5"))
    return 7 * (train + 4 * test)


def _cyclops(ctx: Ctx) -> int:
    """DeepLoc_full_datasets.zip holding datasets/Chong_{train,valid,test}_set.hdf5."""
    per_class = max(2, round(1_650 * ctx.scale))
    rare = max(1, per_class // 3)
    with tempfile.TemporaryDirectory() as staging, ctx.out.zip(ctx.at(ctx.url("DeepLoc_full_datasets.zip"))) as z:
        write_cyclops(Path(staging), ctx.seed, per_class=per_class, rare=rare)
        for path in sorted(Path(staging).rglob("*.hdf5")):
            z.add(path.relative_to(staging).as_posix(), path.read_bytes())
    return 3 * (6 * per_class + rare + 2)


WRITERS: dict[str, Callable[[Ctx], int]] = {
    "bbbc005": _bbbc005,
    "bbbc006": _bbbc006,
    "bbbc010": lambda ctx: _well_channel_zip(
        ctx, "BBBC010_v2_images.zip", "BBBC010_v2_images", 2, ["w1", "w2"], "1649_1109_0003_Amp5-1_B_20070424", "tif16"
    ),
    "bbbc011": _bbbc011,
    "bbbc012": lambda ctx: _well_channel_zip(
        ctx, "BBBC012_v1_images.zip", "BBBC012_v1_images", 2, ["w1", "w2", "w3"], "2008_C_elegans_infection", "tif16"
    ),
    "bbbc013": _bbbc013,
    "bbbc014": _bbbc014,
    "bbbc015": _bbbc015,
    "bbbc017": _bbbc017,
    "bbbc020": _bbbc020,
    "bbbc022": _bbbc022,
    "bbbc025": _bbbc025,
    "bbbc026": _bbbc026,
    "bbbc038": _bbbc038,
    "bbbc041": _bbbc041,
    "bbbc045": _bbbc045,
    "bbbc048": _bbbc048,
    "bbbc051": _bbbc051,
    "cil_kinome": _cil_kinome,
    "idr0003": _idr0003,
    "idr0009": _idr0009,
    "idr0016": _idr0016,
    "idr0017": _idr0017,
    "idr0021": _idr0021,
    "idr0037": _idr0037,
    "idr0041": _idr0041,
    "idr0067": _idr0067,
    "idr0072": _idr0072,
    "idr0080": _idr0080,
    "idr0081": _idr0081,
    "idr0088": _idr0088,
    "idr0093": _idr0093,
    "kag_cell_cycle": _kag_cell_cycle,
    "kag_hpa_single": lambda ctx: _hpa(ctx, HPA_2021, 21_806, "png16"),
    "kag_hpa": lambda ctx: _hpa(ctx, HPA_2018, 31_072, "png8"),
    "kag_leukemia": _kag_leukemia,
    "rec_rxrx1": _rec_rxrx1,
    "rec_rxrx2": _rec_rxrx2,
    "rec_rxrx19a": _rec_rxrx19a,
    "rec_rxrx19b": _rec_rxrx19b,
    "bbbc021": _bbbc021,
    "coos7": _coos7,
    "cyclops": _cyclops,
}
