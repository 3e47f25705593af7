"""Build one class's images: read, merge, upsample, quality-check, write — atomically.

The images of a class are processed by a process pool, each worker streaming one image at a time
(memory stays bounded by a few images per worker, never a whole class). Outputs are staged in a
hidden sibling folder and moved onto ``dataset/<class_key>`` only when the class is complete, so a
crash never leaves half a class and a rerun replaces it whole. Every random choice is seeded from
(seed, class_key, idx), and files are numbered in idx order after the pool finishes, so the same
inputs give byte-identical PNGs however the work was scheduled.

A row with a ``region`` (BBBC041's boxes, BBBC045's montage corner) is that part of its files: each
channel is cut to the region before it is normalized and merged, and a region that does not fit in
the image drops that image (with the reason), never the class. The release's x_min, x_max, y_min
and y_max are the slice of the source file each PNG shows, so they include the region's offset.
"""

from __future__ import annotations

import io
import time
import zlib
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from cytoimagenet_assets.imaging.process import merge, normalize, plan_crops, quality_problem, to_uint8
from cytoimagenet_assets.imaging.readers import ImageReadError, read_channels
from cytoimagenet_assets.sources.regions import parse_region
from cytoimagenet_assets.storage import atomic_path

RELEASE_COLUMNS = [
    "label", "category", "database", "name", "dir_name", "path", "filename", "idx", "organism", "cell_type",
    "cell_visible", "phenotype", "compound", "sirna", "gene", "microscopy", "crop", "scaling", "x_min", "x_max", "y_min", "y_max",
]
CARRIED = ["database", "name", "dir_name", "organism", "cell_type", "cell_visible", "phenotype", "compound", "sirna", "gene", "microscopy"]
READ_ATTEMPTS = 3
# zlib level 3: a 1024² merged image encodes in ~57 ms instead of ~190 ms at Pillow's default 6,
# for ~13% more bytes (measured on 12-bit fluorescence; see benchmarks/bench_images.py).
PNG_COMPRESS_LEVEL = 3


class ClassBuildError(RuntimeError):
    """A class that cannot be built: too few usable images, or a systemic problem (source missing)."""


@dataclass(frozen=True)
class ImageTask:
    ordinal: int  # position of the image in the class, in idx order
    idx: str
    paths: tuple[str, ...]
    crops: int
    seed: tuple[int, int]
    stage: str
    region: str | None = None  # the standardized table's region (y<top>:<bottom>,x<left>:<right>); None = whole image


@dataclass
class ClassResult:
    metadata: pd.DataFrame  # one row per written image, release columns
    drops: pd.DataFrame  # idx, path, stage, reason
    images_in: int
    seconds: float


def crops_per_image(n_images: int, target: int) -> list[int]:
    """Crops to take from each image so a class of ``n_images`` approaches ``target`` (≤ 4 each)."""
    missing = max(0, target - n_images)
    if n_images == 0 or missing == 0:
        return [0] * n_images
    base, extra = divmod(missing, n_images)
    return [min(4, base + (1 if i < extra else 0)) for i in range(n_images)]


def _read(path: str) -> list[np.ndarray]:
    """Read with retries for transient I/O errors (not for missing or undecodable files)."""
    for attempt in range(READ_ATTEMPTS):
        try:
            return read_channels(Path(path))
        except (ImageReadError, FileNotFoundError):
            raise
        except OSError:
            if attempt == READ_ATTEMPTS - 1:
                raise
            time.sleep(0.2 * 2**attempt)
    raise AssertionError("unreachable")


def save_png(image: np.ndarray, path) -> None:
    Image.fromarray(image).save(path, format="PNG", compress_level=PNG_COMPRESS_LEVEL)


def cut_region(channels: list[np.ndarray], region: tuple[int, int, int, int]) -> list[np.ndarray] | None:
    """Each channel cut to ``region`` (top, bottom, left, right); None when it does not fit in a channel."""
    top, bottom, left, right = region
    if any(bottom > c.shape[0] or right > c.shape[1] for c in channels):
        return None
    return [c[top:bottom, left:right] for c in channels]


def _drop(task: ImageTask, stage: str, reason: str) -> tuple[list[dict], list[dict]]:
    return [], [{"idx": task.idx, "crop": None, "stage": stage, "reason": reason}]


def process_image(task: ImageTask) -> tuple[list[dict], list[dict]]:
    """One source image (or its region) → its merged image and crops as staged PNGs; returns (written, dropped)."""
    written, dropped = [], []
    try:
        region = parse_region(task.region)
    except ValueError:
        return _drop(task, "region", f"malformed region: {task.region!r} (expected y<top>:<bottom>,x<left>:<right>)")
    try:
        channels = [c for path in task.paths for c in _read(path)]
    except (ImageReadError, OSError, ValueError) as exc:
        return _drop(task, "read", f"unreadable: {exc}")
    top = left = 0
    if region is not None:
        cut = cut_region(channels, region)
        if cut is None:
            sizes = sorted({f"{c.shape[0]}x{c.shape[1]}" for c in channels})
            return _drop(task, "region", f"region outside the image: {task.region} does not fit in the {' / '.join(sizes)} image "
                                         f"({', '.join(Path(p).name for p in task.paths)})")
        channels, top, left = cut, region[0], region[2]
    try:
        merged = merge(channels)
    except ValueError as exc:
        return _drop(task, "read", f"unreadable: {exc}")
    h, w = merged.shape
    rng = np.random.default_rng(list(task.seed))
    outputs = [(0, None, to_uint8(merged))]
    for n, crop in enumerate(plan_crops((h, w), task.crops, rng), start=1):
        window = merged[crop.y_min : crop.y_max, crop.x_min : crop.x_max]
        outputs.append((n, crop, to_uint8(normalize(window))))  # each crop renormalized
    for n, crop, image in outputs:
        problem = quality_problem(image)
        if problem:
            dropped.append({"idx": task.idx, "crop": n, "stage": "quality", "reason": problem})
            continue
        save_png(image, Path(task.stage) / f"{task.ordinal:08d}-{n}.png")
        written.append({
            "ordinal": task.ordinal, "n": n, "idx": task.idx, "crop": crop is not None,
            "scaling": crop.scaling if crop else 1.0,
            # in the source file's pixels: the crop (or the whole image) shifted by the region's corner
            "x_min": left + (crop.x_min if crop else 0), "x_max": left + (crop.x_max if crop else w),
            "y_min": top + (crop.y_min if crop else 0), "y_max": top + (crop.y_max if crop else h),
        })
    return written, dropped


def build_class(class_key: str, label: str, category: str, rows: pd.DataFrame, raw_dirs: dict[str, Path], out_dir: Path,
                target: int, threshold: int, seed: int, workers: int = 1) -> ClassResult:
    """Write the images of one class to ``out_dir`` (= dataset/<class_key>), atomically.

    ``rows`` are the class's rows of the merged table (idx, dir_name, channel_paths, region when
    the table has it, and the label columns); ``raw_dirs`` maps each dir_name to its raw folder.
    Image-level failures (unreadable, a region outside its image, quality) are dropped and
    reported; the class fails only when fewer than ``threshold`` images are left or a source's raw
    folder is missing.
    """
    started = time.perf_counter()
    rows = rows.sort_values("idx", kind="stable").reset_index(drop=True)
    for dir_name in rows["dir_name"].unique():
        folder = raw_dirs.get(dir_name)
        if folder is None or not Path(folder).is_dir():
            raise ClassBuildError(f"class {class_key}: raw folder of source {dir_name!r} is missing ({folder}); materialize raw/{dir_name} first")
    crops = crops_per_image(len(rows), target)
    regions = [None if pd.isna(r) else str(r) for r in rows["region"]] if "region" in rows else [None] * len(rows)
    with atomic_path(out_dir, is_dir=True) as stage:
        tasks = [
            ImageTask(i, row.idx, tuple(str(raw_dirs[row.dir_name] / p) for p in row.channel_paths), crops[i],
                      (seed, zlib.crc32(f"{class_key}\x1f{row.idx}".encode())), str(stage), regions[i])
            for i, row in enumerate(rows.itertuples(index=False))
        ]
        written, dropped = [], []
        empty = [t for t in tasks if not t.paths]
        for task in empty:
            dropped.append({"idx": task.idx, "crop": None, "stage": "read", "reason": "no image files referenced (metadata only)"})
        tasks = [t for t in tasks if t.paths]
        if workers > 1 and len(tasks) > 1:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                results = list(pool.map(process_image, tasks, chunksize=max(1, min(16, len(tasks) // (4 * workers)))))
        else:
            results = [process_image(t) for t in tasks]
        for ok, bad in results:
            written += ok
            dropped += bad
        drops = pd.DataFrame(dropped, columns=["idx", "crop", "stage", "reason"])
        if len(written) < threshold:
            reasons = Counter(r.split(":")[0] for r in drops["reason"])
            raise ClassBuildError(
                f"class {class_key} ({category}: {label}): only {len(written)} usable images of {len(rows)} rows "
                f"(threshold {threshold}); dropped: {dict(reasons)}"
                + (f"; first: {drops['reason'].iloc[0]}" if len(drops) else "")
            )
        metadata = _number_outputs(written, rows, class_key, label, category, Path(stage))
        metadata.to_csv(Path(stage) / "metadata.csv", index=False)
        drops.to_csv(Path(stage) / "dropped.csv", index=False)
    return ClassResult(metadata, drops, len(rows), time.perf_counter() - started)


def _number_outputs(written: list[dict], rows: pd.DataFrame, class_key: str, label: str, category: str, stage: Path) -> pd.DataFrame:
    """Rename staged files to <class_key>-<8 digits>.png in (idx, crop) order; the release table."""
    out = pd.DataFrame(written).sort_values(["ordinal", "n"], kind="stable").reset_index(drop=True)
    out["filename"] = [f"{class_key}-{i:08d}.png" for i in range(1, len(out) + 1)]
    for ordinal, n, filename in zip(out["ordinal"], out["n"], out["filename"]):
        (stage / f"{ordinal:08d}-{n}.png").rename(stage / filename)
    carried = rows.set_index("idx")[CARRIED]
    out = out.join(carried, on="idx")
    out["label"], out["category"], out["path"] = label, category, class_key
    return out[RELEASE_COLUMNS]


def thumbnail_grid(paths: list[Path], side: int = 5, size: int = 96) -> bytes:
    """A side × side montage of evenly spaced images of a class, as PNG bytes."""
    chosen = [paths[int(i)] for i in np.linspace(0, len(paths) - 1, min(len(paths), side * side))] if paths else []
    grid = Image.new("L", (side * size, side * size), 0)
    for k, path in enumerate(chosen):
        with Image.open(path) as image:
            thumb = image.convert("L").resize((size, size), Image.Resampling.BILINEAR)
        grid.paste(thumb, ((k % side) * size, (k // side) * size))
    buffer = io.BytesIO()
    grid.save(buffer, format="PNG")
    return buffer.getvalue()


def drop_summary(drops: pd.DataFrame) -> dict[str, int]:
    return {str(k): int(v) for k, v in drops["reason"].map(lambda r: r.split(":")[0]).value_counts().items()} if len(drops) else {}

