"""The mirror's images: a few pre-encoded variants per (source, channel, encoding), reused across rows.

Their content is not the demo's (:func:`cytoimagenet_assets.demo.cells.render_field`, whose cells
change with their labels so a model can learn them): the rehearsal measures the pipeline, not the
model, so these are label-blind blobs, quick to draw, that pass the quality checks and deflate
several times. Their bytes come from the same encoders as the demo's (:mod:`cytoimagenet_assets.demo.formats`).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from cytoimagenet_assets.demo.cells import stable_hash
from cytoimagenet_assets.demo.formats import Blob, deltavision_bytes, pillow_bytes, tiff_bytes

VARIANTS = 8  # pre-encoded images per (source, channel, encoding)
MONTAGE_PX = 880  # BBBC045's montages are cropped to their top-left 715 x 825: they must be larger


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


def _u8(image: np.ndarray) -> np.ndarray:
    return (12 + image * 200).astype(np.uint8)


def _u16(image: np.ndarray, top: int = 3200) -> np.ndarray:
    return (180 + image * top).astype(np.uint16)


# Encodings by name: (encoder of a [0, 1] field, whether deflate shrinks the file).
ENCODINGS: dict[str, tuple[Callable[[np.ndarray], bytes], bool]] = {
    "tif8": (lambda f: tiff_bytes(_u8(f)), True),
    "tif16": (lambda f: tiff_bytes(_u16(f)), True),
    "tif12lzw": (lambda f: tiff_bytes(_u16(f, 3800), compression="lzw"), False),  # BBBC006: LZW, values below 4096
    "tifrgb": (lambda f: tiff_bytes(_rgb(f, True), photometric="rgb"), True),
    "png8": (lambda f: pillow_bytes(_u8(f), "PNG"), False),
    "png16": (lambda f: pillow_bytes(_u16(f), "PNG"), False),
    "pngrgb": (lambda f: pillow_bytes(_rgb(f, True), "PNG"), False),
    "pngrgba": (lambda f: pillow_bytes(np.dstack([_rgb(f, False), np.full(f.shape, 255, np.uint8)]), "PNG"), False),
    "mask": (lambda f: pillow_bytes(np.where(f > 0.4, 255, 0).astype(np.uint8), "PNG"), False),
    "jpg": (lambda f: pillow_bytes(_u8(f), "JPEG", quality=90), False),
    "jpg3": (lambda f: pillow_bytes(_rgb(f, False), "JPEG", quality=90), False),  # RGB with equal planes (BBBC015)
    "jpgrgb": (lambda f: pillow_bytes(_rgb(f, True), "JPEG", quality=90), False),
    "bmp8": (lambda f: pillow_bytes(_u8(f), "BMP"), True),
    "bmprgb": (lambda f: pillow_bytes(_rgb(f, True), "BMP"), True),
    "dib8": (lambda f: pillow_bytes(_u8(f), "DIB"), True),  # Cellomics .DIB: a bitmap without the file header
    "zstack16": (lambda f: tiff_bytes(np.stack([_u16(np.roll(f, z, axis=1)) for z in range(7)]), metadata={"axes": "ZYX"}), True),
    "zc16": (
        lambda f: tiff_bytes(np.stack([[_u16(np.roll(f, z, 0)), _u16(f.T)] for z in range(2)]), imagej=True, metadata={"axes": "ZCYX"}),
        True,
    ),
    "flex": (lambda f: tiff_bytes(np.stack([_u16(f), _u16(f.T)])), True),  # Opera FLEX: a TIFF, one page per channel
    "dv": (lambda f: deltavision_bytes(np.stack([[_u16(f), _u16(np.roll(f, 1, 0))], [_u16(f.T), _u16(f.T)]])), True),
    "montage8": (lambda f: tiff_bytes(_u8(f)), True),
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
