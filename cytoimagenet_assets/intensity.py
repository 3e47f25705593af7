"""The one intensity normalization: 0.1/99.9-percentile scaling to [0, 1], as the original's
``prepare_dataset.py``. The dataset's images, the features the model and the evaluation extract, and
the bioimage.io package's preprocessing all go through it, so they cannot drift apart.

Percentiles of integer images come from a histogram (one pass, no sort), which is what keeps the
per-image cost near the cost of decoding and encoding.
"""

from __future__ import annotations

import numpy as np

LOW, HIGH = 0.1, 99.9


def histogram_percentiles(counts: np.ndarray, n: int, qs: np.ndarray) -> np.ndarray:
    """Percentiles from a histogram of integer values, with numpy's linear interpolation."""
    cumulative = np.cumsum(counts)
    position = qs / 100 * (n - 1)  # rank of each percentile in the sorted image
    lower = np.floor(position).astype(np.int64)
    upper = np.minimum(lower + 1, n - 1)
    value_lower = np.searchsorted(cumulative, lower, side="right")
    value_upper = np.searchsorted(cumulative, upper, side="right")
    return value_lower + (value_upper - value_lower) * (position - lower)


def is_small_int(image: np.ndarray) -> bool:
    return image.dtype.kind == "u" and image.dtype.itemsize <= 2


def percentiles(image: np.ndarray, qs) -> np.ndarray:
    """Percentiles (0-100) with numpy's default linear interpolation; histogram-based for integers."""
    qs = np.asarray(qs, np.float64)
    if is_small_int(image):
        return histogram_percentiles(np.bincount(image.ravel()), image.size, qs)
    return np.percentile(image, qs)


def normalize(image: np.ndarray) -> np.ndarray:
    """To float32 in [0, 1] by the 0.1th and 99.9th percentiles (clipped); a flat image becomes 0.

    Integer images go through a lookup table over their value range: one histogram pass for the
    percentiles and one gather for the result.
    """
    if is_small_int(image):
        counts = np.bincount(image.ravel())
        low, high = histogram_percentiles(counts, image.size, np.array([LOW, HIGH]))
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
