"""How many rows each source gets and how its label values are spread over them, so the class table
at scale s, with the catalog's threshold and target scaled by s, lands near the original's 894 classes."""

from __future__ import annotations

import numpy as np

MIN_ROWS = 8
THRESHOLD = 287  # the catalog's label threshold at scale 1: frequencies are shaped around it

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
    """Numbered values of a label column whose real values do not matter here (genes, compounds, MOAs)."""
    return [f"{prefix}{i + 1:04d}" for i in range(count)]
