"""Normalize, merge, crop and quality-check images (methods: "Image Data Cleaning &
Standardization", "Upsampling Classes", "Quality Control").

Two quality checks, as the original (``prepare_dataset.py``): :func:`quality_problem` on a whole
merged image (uniform, binary, dim), and :func:`crop_problem` on a crop window *before* it is
renormalized, on the 8-bit scale of the normalized merged image (mean ≤ 1 or ≥ 254, or 75th
percentile 0) — a dark corner renormalized would otherwise pass as a bright, noisy image. A stricter
crop check, :func:`low_contrast`, also rejects background windows that pass the original's.

Percentiles of integer images come from a histogram (one pass, no sort), which is what keeps the
per-image cost near the cost of decoding and encoding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LOW, HIGH = 0.1, 99.9
SCALES = (1 / 2, 1 / 4, 1 / 8, 1 / 16)
MIN_CROP = 70
MAX_CROPS = 4
CONTRAST_SHARE = 0.1  # the "contrast" crop check: a crop must span this share of its image's intensity range


def _histogram_percentiles(counts: np.ndarray, n: int, qs: np.ndarray) -> np.ndarray:
    """Percentiles from a histogram of integer values, with numpy's linear interpolation."""
    cumulative = np.cumsum(counts)
    position = qs / 100 * (n - 1)  # rank of each percentile in the sorted image
    lower = np.floor(position).astype(np.int64)
    upper = np.minimum(lower + 1, n - 1)
    value_lower = np.searchsorted(cumulative, lower, side="right")
    value_upper = np.searchsorted(cumulative, upper, side="right")
    return value_lower + (value_upper - value_lower) * (position - lower)


def _is_small_int(image: np.ndarray) -> bool:
    return image.dtype.kind == "u" and image.dtype.itemsize <= 2


def percentiles(image: np.ndarray, qs) -> np.ndarray:
    """Percentiles (0-100) with numpy's default linear interpolation; histogram-based for integers."""
    qs = np.asarray(qs, np.float64)
    if _is_small_int(image):
        return _histogram_percentiles(np.bincount(image.ravel()), image.size, qs)
    return np.percentile(image, qs)


def normalize(image: np.ndarray) -> np.ndarray:
    """To float32 in [0, 1] by the 0.1th and 99.9th percentiles (clipped); a flat image becomes 0.

    Integer images go through a lookup table over their value range: one histogram pass for the
    percentiles and one gather for the result.
    """
    if _is_small_int(image):
        counts = np.bincount(image.ravel())
        low, high = _histogram_percentiles(counts, image.size, np.array([LOW, HIGH]))
        if high <= low:
            return np.zeros(image.shape, np.float32)
        table = np.clip((np.arange(len(counts), dtype=np.float64) - low) / (high - low), 0, 1).astype(np.float32)
        return table[image]
    low, high = np.percentile(image, (LOW, HIGH))
    if high <= low:
        return np.zeros(image.shape, np.float32)
    out = image.astype(np.float32)
    out -= np.float32(low)
    out *= np.float32(1.0 / (high - low))
    return np.clip(out, 0.0, 1.0, out=out)


def merge(channels: list[np.ndarray]) -> np.ndarray:
    """Normalize each channel, then average them into one gray image (float32 in [0, 1])."""
    shapes = {c.shape for c in channels}
    if len(shapes) != 1:
        raise ValueError(f"channels differ in shape: {sorted(shapes)}")
    merged = normalize(channels[0])
    for channel in channels[1:]:
        merged += normalize(channel)
    if len(channels) > 1:
        merged /= np.float32(len(channels))
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
    if _histogram_percentiles(counts, window.size, np.array([75.0]))[0] == 0:
        return "dim crop"
    return None


def intensity_range(image: np.ndarray) -> float:
    """The 0.1th-99.9th percentile span of an 8-bit image."""
    low, high = _histogram_percentiles(np.bincount(image.ravel(), minlength=256), image.size, np.array([LOW, HIGH]))
    return float(high - low)


def low_contrast(window: np.ndarray, whole_range: float) -> bool:
    """A crop window of the 8-bit merged image whose intensities span under a tenth of the whole
    image's (``whole_range``): background noise that renormalizing would stretch to full contrast.
    The original's crop check lets such a window through when its mean and 75th percentile are above 0."""
    return intensity_range(window) < CONTRAST_SHARE * whole_range


def quality_problem(image: np.ndarray) -> str | None:
    """Why an 8-bit image must be dropped, or None: uniform, binary (two values) or dim."""
    counts = np.bincount(image.ravel(), minlength=256)
    low, high, q75 = _histogram_percentiles(counts, image.size, np.array([LOW, HIGH, 75.0]))
    if low == high:
        return "uniform"
    if np.count_nonzero(counts) == 2:
        return "binary"
    if q75 == 0:
        return "dim"
    return None
