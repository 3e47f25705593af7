"""Read any source image into 2-D channel arrays.

TIFF (8/16-bit, either byte order, palette, multi-page, OME axes) and Opera FLEX through tifffile;
DeltaVision .dv (IDR's OMX/DeltaVision studies) through mrc; PNG (8/16-bit), JPEG, BMP/DIB through
Pillow; NPY through numpy. Colour images become one gray
channel (ITU-R 601 luma, as Pillow's "L"); palette images are looked up in their colour map first.
Z-stacks are reduced by maximum projection, time series to their first frame; an explicit channel
axis (OME ``C``, TIFF samples that are not RGB colours such as 2 samples per pixel, the last axis of
an ``.npy`` crop, a FLEX file's pages) gives one array per channel.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

import mrc
import numpy as np
import tifffile
from PIL import Image

from cytoimagenet_assets.errors import StepFailed

TIFF = {".tif", ".tiff", ".flex"}
PILLOW = {".png", ".jpg", ".jpeg", ".bmp", ".dib"}
LUMA = np.array([0.299, 0.587, 0.114], np.float32)
COLOUR = (tifffile.PHOTOMETRIC.RGB, tifffile.PHOTOMETRIC.YCBCR)


class ImageReadError(StepFailed):
    """An image that cannot be read; the message names the file."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = Path(path), reason


def read_channels(path: Path) -> list[np.ndarray]:
    """The 2-D channel images stored in ``path`` (usually one), in their native dtype.

    Raises :class:`ImageReadError` for an unknown format or a broken file; ``OSError`` for I/O
    failures (missing file, network file system hiccup) so that callers can retry those.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        if suffix in TIFF:
            channels = _tiff(path, flex=suffix == ".flex")
        elif suffix in PILLOW:
            channels = [_pillow(path)]
        elif suffix == ".dv":
            channels = _deltavision(path)
        elif suffix == ".npy":
            channels = _npy(path)
        else:
            raise ImageReadError(path, f"unknown image format {suffix!r}")
    except ImageReadError:
        raise
    except OSError as exc:
        if exc.errno is not None:  # a real I/O failure (the caller may retry), not a decoding one
            raise
        raise ImageReadError(path, f"cannot decode: {exc}") from exc
    except Exception as exc:  # decoders signal corrupt data in many ways (ValueError, IndexError, ...)
        raise ImageReadError(path, f"cannot decode: {type(exc).__name__}: {exc}") from exc
    for channel in channels:
        if channel.ndim != 2 or channel.size == 0:
            raise ImageReadError(path, f"decoded to shape {channel.shape}, expected a 2-D image")
    return channels


def _gray(rgb: np.ndarray) -> np.ndarray:
    """Colour (…, 3 or 4) to gray, keeping the integer dtype's range."""
    gray = rgb[..., :3].astype(np.float32) @ LUMA
    return np.round(gray).astype(rgb.dtype) if rgb.dtype.kind in "ui" else gray


@contextmanager
def _tifffile_complaints():
    """Collect what tifffile logs while it reads (it logs, rather than raises, about bad page
    offsets and the like), so that a file it cannot read is dropped with tifffile's own words."""
    complaints: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            complaints.append(record.getMessage())

    logger, handler = logging.getLogger("tifffile"), Collect(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield complaints
    finally:
        logger.removeHandler(handler)


def _palette_levels(colormap: np.ndarray) -> np.ndarray:
    """A TIFF colour map (uint16 entries) to 8-bit levels without merging neighbours: writers store
    level ``v`` as ``v * 257`` (full range) or ``v << 8``; both map back to ``v`` exactly."""
    colormap = colormap.astype(np.int64)
    scale = 256 if not (colormap % 256).any() else 257
    return np.clip(np.rint(colormap / scale), 0, 255).astype(np.uint8)


def _tiff(path: Path, flex: bool) -> list[np.ndarray]:
    with _tifffile_complaints() as complaints, tifffile.TiffFile(path) as tif:
        if not tif.pages or not tif.series:
            said = "; ".join(dict.fromkeys(complaints)) or "no image pages"
            raise ImageReadError(path, f"cannot decode: tifffile found no image in the file ({said})")
        series = tif.series[0]
        page = tif.pages[0]
        data = series.asarray()
        axes = series.axes
        if page.photometric == tifffile.PHOTOMETRIC.PALETTE and page.colormap is not None:
            levels = _palette_levels(np.asarray(page.colormap))  # (3, 2**bits)
            if (levels[0] == levels[1]).all() and (levels[1] == levels[2]).all():
                data = levels[0][data]  # a gray colour map: its levels, exactly (no luma rounding)
            else:
                data = _gray(levels[:, data].transpose(*range(1, data.ndim + 1), 0))
            return [data] if data.ndim == 2 else [_reduce(data, axes[:-2] + "YX")]
    if "S" in axes and page.photometric in COLOUR and data.shape[axes.index("S")] in (3, 4):  # RGB samples, contiguous or planar
        data = _gray(np.moveaxis(data, axes.index("S"), -1))
        axes = axes.replace("S", "")
    elif "S" in axes:  # samples that are not colours (2 per pixel, or gray "extra samples"): one channel each
        if "C" in axes:
            raise ImageReadError(path, f"both a channel and a sample axis ({axes}, shape {data.shape}): ambiguous channels")
        axes = axes.replace("S", "C")
    if flex and "C" not in axes and data.ndim == 3:
        axes = "C" + axes[1:]  # an Opera FLEX file holds one page per channel
    if "C" in axes:
        channel_axis = axes.index("C")
        return [_reduce(c, axes.replace("C", "")) for c in np.moveaxis(data, channel_axis, 0)]
    return [_reduce(data, axes)]


def _deltavision(path: Path) -> list[np.ndarray]:
    """One array per wavelength; Z projected and T's first frame, as for TIFF."""
    dv = mrc.DVFile(str(path))
    try:
        data, sizes = np.asarray(dv.asarray()), dv.sizes
    finally:
        dv.close()
    if 0 in sizes.values():
        raise ImageReadError(path, f"DeltaVision header declares an empty dimension ({sizes})")
    data = data.reshape([sizes[a] for a in sizes])  # mrc squeezes length-1 axes; put them back
    axes = "".join(sizes)
    channel_axis = axes.index("C")
    return [_reduce(c, axes.replace("C", "")) for c in np.moveaxis(data, channel_axis, 0)]


def _reduce(data: np.ndarray, axes: str) -> np.ndarray:
    """Down to YX: maximum projection over Z (and generic pages), first frame of T and others."""
    while data.ndim > 2:
        axis, name = 0, axes[0]
        data = data.max(axis=axis) if name in "ZIQ" else np.take(data, 0, axis=axis)
        axes = axes[1:]
    return data


def _pillow(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        image.load()
        if image.mode == "P":
            image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        if image.mode in ("RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV"):
            return _gray(np.asarray(image.convert("RGB")))
        if image.mode == "LA":
            image = image.convert("L")
        if image.mode in ("1",):
            image = image.convert("L")
        return np.asarray(image)


def _npy(path: Path) -> list[np.ndarray]:
    data = np.load(path, allow_pickle=False)
    if data.ndim == 2:
        return [data]
    if data.ndim == 3 and data.shape[-1] <= 8 and data.shape[-1] < data.shape[0]:
        return [data[..., c] for c in range(data.shape[-1])]  # channels last (H, W, C)
    if data.ndim == 3 and data.shape[0] <= 8:
        return list(data)  # channels first (C, H, W)
    raise ImageReadError(path, f"array of shape {data.shape} is not an image or a channel stack")
