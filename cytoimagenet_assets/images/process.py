"""Normalize, merge, crop and quality-check images (methods: "Image Data Cleaning &
Standardization", "Upsampling Classes", "Quality Control").

Two quality checks, as the original (``prepare_dataset.py``): :func:`quality_problem` on a whole
merged image (uniform, binary, dim), and :func:`crop_problem` on a crop window *before* it is
renormalized, on the 8-bit scale of the normalized merged image (mean ≤ 1 or ≥ 254, or 75th
percentile 0) — a dark corner renormalized would otherwise pass as a bright, noisy image. A stricter
crop check, :func:`low_contrast`, also rejects background windows that pass the original's.

Percentiles and the normalization come from :mod:`cytoimagenet_assets.intensity` (shared with the
model's inputs and the package's preprocessing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from cytoimagenet_assets.intensity import HIGH, LOW, histogram_percentiles, normalize

SCALES = (1 / 2, 1 / 4, 1 / 8, 1 / 16)
MIN_CROP = 70
MAX_CROPS = 4
CONTRAST_SHARE = 0.1  # the "contrast" crop check: a crop must span this share of its image's intensity range


def merge(channels: list[np.ndarray]) -> np.ndarray:
    """Normalize each channel, then average them into one gray image (float32 in [0, 1])."""
    same_shape(channels)
    return average((normalize(c) for c in channels), len(channels))


def same_shape(channels: list[np.ndarray]) -> None:
    """Channels of one image must align pixel for pixel; a ValueError names the shapes otherwise."""
    shapes = {c.shape for c in channels}
    if len(shapes) != 1:
        raise ValueError(f"channels differ in shape: {sorted(shapes)}")


def average(normalized: Iterable[np.ndarray], count: int) -> np.ndarray:
    """The mean of ``count`` normalized channels, summed one at a time (a lazy iterable keeps one in
    memory; the preserved-channel output passes the list it also writes): the merged image either way."""
    channels = iter(normalized)
    merged = next(channels).copy()
    for channel in channels:
        merged += channel
    if count > 1:
        merged /= np.float32(count)
    return merged


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.round(image * 255).astype(np.uint8)


@dataclass(frozen=True)
class Crop:
    scaling: float  # crop side / image side
    x_min: int
    x_max: int
    y_min: int
    y_max: int


def crop_scales(usable: list[float], count: int, rng: np.random.Generator) -> list[float]:
    """The scales of ``count`` crops of one image, spread as the original's ``get_slicers``: every
    usable scale once when there are as many as crops, every one plus random repeats when there are
    fewer, a random draw (with repeats, as ``np.random.choice``) when there are more; shuffled."""
    if len(usable) < count:
        scales = [*usable, *rng.choice(usable, count - len(usable))]
    elif len(usable) > count:
        scales = list(rng.choice(usable, count))
    else:
        scales = list(usable)
    return [float(s) for s in rng.permutation(scales)]


def plan_crops(shape: tuple[int, int], count: int, rng: np.random.Generator) -> list[Crop]:
    """Up to ``count`` (≤ 4) square crops, one per quadrant window, in a random order of quadrants.

    The side is scale × the image's shorter side, the scales from {1/2, 1/4, 1/8, 1/16} among those
    giving at least 70 px, spread over the crops by :func:`crop_scales`; each crop sits anywhere
    inside its window. An image too small for a 70 px crop gives none.
    """
    h, w = shape
    side_of = {s: int(min(h, w) * s) for s in SCALES}
    usable = [s for s in SCALES if MIN_CROP <= side_of[s] <= min(h // 2, w // 2)]
    if not usable:
        return []
    windows = [(0, h // 2, 0, w // 2), (0, h // 2, w // 2, w), (h // 2, h, 0, w // 2), (h // 2, h, w // 2, w)]
    count = min(count, MAX_CROPS)
    crops = []
    for q, scaling in zip(rng.permutation(4)[:count], crop_scales(usable, count, rng)):
        y0, y1, x0, x1 = windows[q]
        side = side_of[scaling]
        y = y0 + int(rng.integers(0, y1 - y0 - side + 1))
        x = x0 + int(rng.integers(0, x1 - x0 - side + 1))
        crops.append(Crop(scaling, x, x + side, y, y + side))
    return crops


def crop_problem(window: np.ndarray) -> str | None:
    """Why a crop window of the 8-bit merged image must not become an image, or None (the
    original's test: keep when 1 < mean < 254 and the 75th percentile is not 0)."""
    counts = np.bincount(window.ravel(), minlength=256)
    mean = float(counts @ np.arange(len(counts))) / window.size
    if mean <= 1:
        return "dark crop"
    if mean >= 254:
        return "saturated crop"
    if histogram_percentiles(counts, window.size, np.array([75.0]))[0] == 0:
        return "dim crop"
    return None


def intensity_range(image: np.ndarray) -> float:
    """The 0.1th-99.9th percentile span of an 8-bit image."""
    low, high = histogram_percentiles(np.bincount(image.ravel(), minlength=256), image.size, np.array([LOW, HIGH]))
    return float(high - low)


def low_contrast(window: np.ndarray, whole_range: float) -> bool:
    """A crop window of the 8-bit merged image whose intensities span under a tenth of the whole
    image's (``whole_range``): background noise that renormalizing would stretch to full contrast.
    The original's crop check lets such a window through when its mean and 75th percentile are above 0."""
    return intensity_range(window) < CONTRAST_SHARE * whole_range


def quality_problem(image: np.ndarray) -> str | None:
    """Why an 8-bit image must be dropped, or None: uniform, binary (two values) or dim."""
    counts = np.bincount(image.ravel(), minlength=256)
    low, high, q75 = histogram_percentiles(counts, image.size, np.array([LOW, HIGH, 75.0]))
    if low == high:
        return "uniform"
    if np.count_nonzero(counts) == 2:
        return "binary"
    if q75 == 0:
        return "dim"
    return None
