"""Build one class's images: read, merge, upsample, quality-check, write — atomically.

The images of a class are processed by a process pool, each worker streaming one image at a time
(memory stays bounded by a few images per worker, never a whole class). Outputs are staged in a
hidden sibling folder and moved onto ``dataset/<class_key>`` only when the class is complete, so a
crash never leaves half a class and a rerun replaces it whole. Every random choice is seeded from
(seed, class_key, idx), and files are numbered in idx order after the pool finishes, so the same
inputs give byte-identical PNGs however the work was scheduled.

Upsampling, ``original`` by default (the original's ``supplement_label``): every image of at
least 140 px a side is *replaced* by up to k crops that pass the crop check (kept whole when none
does), k by the class's size, then a class over its target is trimmed back to it. ``top_up`` keeps
every image and adds crops only to bring a small class towards its target (see README,
"Deviations from the original").

A row with a ``region`` (BBBC041's boxes, BBBC045's montage corner) is that part of its files: each
channel is cut to the region before it is normalized and merged, and a region that does not fit in
the image drops that image (with the reason), never the class. The release's x_min, x_max, y_min
and y_max are the slice of the source file each PNG shows, so they include the region's offset.
"""

from __future__ import annotations

import io
import math
import time
import zlib
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from cytoimagenet_assets.catalog.settings import CHANNELS, CROP_CHECKS, LABEL_CATEGORIES, UPSAMPLING
from cytoimagenet_assets.errors import StepFailed
from cytoimagenet_assets.images.process import (
    average,
    crop_problem,
    intensity_range,
    low_contrast,
    merge,
    plan_crops,
    quality_problem,
    same_shape,
    to_uint8,
)
from cytoimagenet_assets.images.readers import ImageReadError, read_channels
from cytoimagenet_assets.intensity import normalize
from cytoimagenet_assets.sources.regions import parse_region
from cytoimagenet_assets.sources.table import normalize_label
from cytoimagenet_assets.storage import atomic_path


def die_with_parent() -> None:
    """Pool worker initializer: on Linux the kernel sends this worker SIGKILL when the process that
    started it dies (``prctl(PR_SET_PDEATHSIG)``), so a class run killed by the OS leaves no workers
    behind holding their memory. Elsewhere a no-op (the executor's own checks remain)."""
    import ctypes
    import os
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before the signal was armed
        os._exit(1)


# A class folder's metadata.csv: these, then low_contrast (a crop the "contrast" crop check rejects).
RELEASE_COLUMNS = [  # the published dataset's columns, in order
    *["label", "category", "database", "name", "dir_name", "path", "filename", "idx", *LABEL_CATEGORIES, "microscopy"],
    *["crop", "scaling", "x_min", "x_max", "y_min", "y_max"],
]
CARRIED = ["database", "name", "dir_name", *LABEL_CATEGORIES, "microscopy"]  # from the merged table into each output row
READ_ATTEMPTS = 3
# zlib level 3: a 1024² merged image encodes in ~57 ms instead of ~190 ms at Pillow's default 6,
# for ~13% more bytes (measured on 12-bit fluorescence; see benchmarks/bench_images.py).
PNG_COMPRESS_LEVEL = 3
NOT_A_NUMBER = "not a number in pixels"
LOW_CONTRAST = "low-contrast crop"
NOTHING_TO_CROP = ("uniform", "binary")  # dropped before cropping, as the original; "dim" only once kept whole
CHANNELS_DIR = "channels"  # a class folder's per-channel PNGs (the preserved release), beside its merged PNGs
CHANNEL_INDEX_COLUMNS = ["filename", "channel", "name", "file"]  # channels/index.csv: each merged PNG's channel files


class ClassBuildError(StepFailed, RuntimeError):
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
    replace_with_crops: bool = True  # "original" upsampling: crops that pass QC stand in for the image
    crop_check: str = "original"  # "contrast": low-contrast crops are dropped too
    channel_names: tuple[str, ...] | None = None  # one per file (the merged table's): each output's channels written too


@dataclass
class ClassResult:
    metadata: pd.DataFrame  # one row per written image: release columns and low_contrast
    drops: pd.DataFrame  # idx, path, stage, reason
    images_in: int
    seconds: float
    trimmed: int = 0  # outputs removed to bring the class back to its target ("original" upsampling)


def original_crops_per_image(n_images: int, target: int) -> int:
    """Crops per image under "original" upsampling: the original's 1 / 2 / 3 / 4 for a class of
    1000 / ≥ 550 / ≥ 400 / fewer images at its target of 1000, with the bounds scaled to ``target``
    (≥ 55% and ≥ 40% of it, rounded up), so a demo class of 44 at target 80 takes 2 as a real class
    of 550 would."""
    if n_images >= target:
        return 1
    if n_images >= math.ceil(0.55 * target):
        return 2
    if n_images >= math.ceil(0.40 * target):
        return 3
    return 4


def top_up_crops_per_image(n_images: int, target: int) -> list[int]:
    """Crops to add to each image so a class of ``n_images`` approaches ``target`` (≤ 4 each)."""
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


def source_image(paths: list[Path], region: str | None = None) -> np.ndarray:
    """The 8-bit merged image of one source row, as the image step makes it before any crop (what
    "before upsampling" shows); raises ImageReadError / ValueError when it cannot be made."""
    channels = [c for path in paths for c in _read(str(path))]
    parsed = parse_region(region)
    if parsed is not None:
        cut = cut_region(channels, parsed)
        if cut is None:
            raise ValueError(f"region {region} outside the image ({', '.join(Path(p).name for p in paths)})")
        channels = cut
    return to_uint8(merge(channels))


def process_image(task: ImageTask) -> tuple[list[dict], list[dict]]:
    """One source image (or its region) → its staged PNGs (the merged image and/or its crops); returns (written, dropped).

    As the original's ``supplement_label``: a uniform or binary image gives nothing; any other image
    is cropped. Each crop is checked on the 8-bit merged image, then renormalized and checked like a
    whole image. Under "original" upsampling the crops that pass replace the image, which is kept
    whole only when none does; under "top_up" they are added to it. The dim test (75th percentile 0)
    applies to what is kept: a sparse field is dim as a whole and still gives its bright crops.
    """
    written, dropped = [], []
    try:
        region = parse_region(task.region)
    except ValueError:
        return _drop(task, "region", f"malformed region: {task.region!r} (expected y<top>:<bottom>,x<left>:<right>)")
    try:
        per_file = [_read(path) for path in task.paths]
    except (ImageReadError, OSError, ValueError) as exc:
        return _drop(task, "read", f"unreadable: {exc}")
    channels = [c for read in per_file for c in read]
    if any(c.dtype.kind == "f" and np.isnan(c).any() for c in channels):
        return _drop(task, "quality", NOT_A_NUMBER)
    top = left = 0
    if region is not None:
        cut = cut_region(channels, region)
        if cut is None:
            sizes = sorted({f"{c.shape[0]}x{c.shape[1]}" for c in channels})
            return _drop(
                task,
                "region",
                f"region outside the image: {task.region} does not fit in the {' / '.join(sizes)} image "
                f"({', '.join(Path(p).name for p in task.paths)})",
            )
        channels, top, left = cut, region[0], region[2]
    try:
        if task.channel_names is None:
            merged, normalized = merge(channels), None
        else:  # each channel normalized once: written as it is and averaged into the merged image
            same_shape(channels)
            normalized = [normalize(c) for c in channels]
            merged = average(normalized, len(normalized))
    except ValueError as exc:
        return _drop(task, "read", f"unreadable: {exc}")
    h, w = merged.shape
    whole = to_uint8(merged)
    whole_problem = quality_problem(whole)
    if whole_problem in NOTHING_TO_CROP:
        return _drop(task, "quality", whole_problem)
    rng = np.random.default_rng(list(task.seed))
    crops, whole_range = [], intensity_range(whole)
    for n, crop in enumerate(plan_crops((h, w), task.crops, rng), start=1):  # none below 140 px a side (70 px at 1/2)
        window = (slice(crop.y_min, crop.y_max), slice(crop.x_min, crop.x_max))
        problem = crop_problem(whole[window])
        flat = low_contrast(whole[window], whole_range)
        if not problem and flat and task.crop_check == "contrast":
            problem = LOW_CONTRAST
        image = None if problem else to_uint8(normalize(merged[window]))  # renormalized only once it passed
        problem = problem or quality_problem(image)
        if problem:
            dropped.append({"idx": task.idx, "crop": n, "stage": "quality", "reason": problem})
        else:
            crops.append((n, crop, image, flat))
    if task.replace_with_crops and crops:
        outputs = crops
    elif whole_problem:
        dropped.append({"idx": task.idx, "crop": 0, "stage": "quality", "reason": whole_problem})
        outputs = crops
    else:
        outputs = [(0, None, whole, False), *crops]
    names = channel_names(task.channel_names, [len(read) for read in per_file]) if task.channel_names is not None else []
    for n, crop, image, flat in outputs:
        save_png(image, Path(task.stage) / f"{task.ordinal:08d}-{n}.png")
        for j, channel in enumerate(normalized or []):  # a crop's channels renormalized on the crop, as the merged crop
            kept = channel if crop is None else normalize(channels[j][crop.y_min : crop.y_max, crop.x_min : crop.x_max])
            save_png(to_uint8(kept), Path(task.stage) / CHANNELS_DIR / f"{task.ordinal:08d}-{n}.c{j}.png")
        written.append(
            {
                "ordinal": task.ordinal,
                "n": n,
                "idx": task.idx,
                "crop": crop is not None,
                "scaling": crop.scaling if crop else 1.0,
                # in the source file's pixels: the crop (or the whole image) shifted by the region's corner
                "x_min": left + (crop.x_min if crop else 0),
                "x_max": left + (crop.x_max if crop else w),
                "y_min": top + (crop.y_min if crop else 0),
                "y_max": top + (crop.y_max if crop else h),
                "low_contrast": flat,
                "channels": tuple(names),
            }
        )
    return written, dropped


def stain(name: str) -> str:
    """A channel's name in the shared vocabulary, the label vocabulary's ``cell_visible`` synonyms (DAPI,
    Hoechst, DNA → nucleus); a brightfield or unknown name stays as it is."""
    return normalize_label(name, "cell_visible") or name


def channel_names(per_file: tuple[str, ...], counts: list[int]) -> list[str]:
    """The name of each channel read: a file's name when it holds one channel; its '|'-separated names
    when it holds as many (a multi-channel IDR file); else the name numbered (``<name>_0``, ...)."""
    names = []
    for name, count in zip(per_file, counts):
        parts = name.split("|")
        names += [name] if count == 1 else parts if len(parts) == count else [f"{name}_{j}" for j in range(count)]
    return names


def trim_to_target(outputs: pd.DataFrame, target: int, rng: np.random.Generator) -> np.ndarray:
    """Positions of ``outputs`` (one row per written image, with its source ``idx``) to remove so
    that ``target`` remain: first at most one per source image, then any (the original's order)."""
    excess = len(outputs) - target
    if excess <= 0:
        return np.zeros(0, np.int64)
    shuffled = rng.permutation(len(outputs))
    one_each = shuffled[~outputs["idx"].iloc[shuffled].duplicated().to_numpy()]  # a random output of every source image
    if len(one_each) >= excess:
        return np.sort(rng.choice(one_each, excess, replace=False))
    rest = np.setdiff1d(np.arange(len(outputs)), one_each)
    return np.sort(np.concatenate([one_each, rng.choice(rest, excess - len(one_each), replace=False)]))


def build_class(
    class_key: str,
    label: str,
    category: str,
    rows: pd.DataFrame,
    raw_dirs: dict[str, Path],
    out_dir: Path,
    target: int,
    threshold: int,
    seed: int,
    upsampling: str = "original",
    workers: int = 1,
    crop_check: str = "original",
    channels: str = "merged",
) -> ClassResult:
    """Write the images of one class to ``out_dir`` (= dataset/<class_key>), atomically.

    ``rows`` are the class's rows of the merged table (idx, dir_name, channel_paths, region when
    the table has it, and the label columns); ``raw_dirs`` maps each dir_name to its raw folder.
    The crops per image follow from the rows whose files are all on disk (the images that can be
    read), not from every row. Image-level failures (unreadable, a region outside its image,
    quality) are dropped and reported; the class fails only when fewer than ``threshold`` images
    are left or a source's raw folder is missing.
    """
    if upsampling not in UPSAMPLING:
        raise ValueError(f"upsampling must be one of {', '.join(UPSAMPLING)}, not {upsampling!r}")
    if crop_check not in CROP_CHECKS:
        raise ValueError(f"crop_check must be one of {', '.join(CROP_CHECKS)}, not {crop_check!r}")
    if channels not in CHANNELS:
        raise ValueError(f"channels must be one of {', '.join(CHANNELS)}, not {channels!r}")
    preserved = channels == "preserved"
    started = time.perf_counter()
    rows = rows.sort_values("idx", kind="stable").reset_index(drop=True)
    for dir_name in rows["dir_name"].unique():
        folder = raw_dirs.get(dir_name)
        if folder is None or not Path(folder).is_dir():
            raise ClassBuildError(
                f"class {class_key}: raw folder of source {dir_name!r} is missing ({folder}); materialize raw/{dir_name} first"
            )
    paths = [tuple(str(raw_dirs[d] / p) for p in files) for d, files in zip(rows["dir_name"], rows["channel_paths"])]
    readable = [bool(files) and all(Path(f).is_file() for f in files) for files in paths]
    if upsampling == "original":
        crops = [original_crops_per_image(sum(readable), target)] * len(rows)
    else:
        plan = iter(top_up_crops_per_image(sum(readable), target))
        crops = [next(plan) if ok else 0 for ok in readable]
    regions = [None if pd.isna(r) else str(r) for r in rows["region"]] if "region" in rows else [None] * len(rows)
    names = [tuple(n) for n in rows["channel_names"]] if preserved else [None] * len(rows)
    with atomic_path(out_dir, is_dir=True) as stage:
        if preserved:
            (Path(stage) / CHANNELS_DIR).mkdir()
        tasks = [
            ImageTask(
                i,
                idx,
                paths[i],
                crops[i],
                (seed, zlib.crc32(f"{class_key}\x1f{idx}".encode())),
                str(stage),
                regions[i],
                replace_with_crops=upsampling == "original",
                crop_check=crop_check,
                channel_names=names[i],
            )
            for i, idx in enumerate(rows["idx"])
        ]
        written, dropped = [], []
        empty = [t for t in tasks if not t.paths]
        for task in empty:
            dropped.append({"idx": task.idx, "crop": None, "stage": "read", "reason": "no image files referenced (metadata only)"})
        tasks = [t for t in tasks if t.paths]
        if workers > 1 and len(tasks) > 1:
            with ProcessPoolExecutor(max_workers=workers, initializer=die_with_parent) as pool:
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
                f"(threshold {threshold}); dropped: {dict(reasons)}" + (f"; first: {drops['reason'].iloc[0]}" if len(drops) else "")
            )
        outputs = pd.DataFrame(written).sort_values(["ordinal", "n"], kind="stable").reset_index(drop=True)
        trimmed = trim_to_target(outputs, target, np.random.default_rng([seed, zlib.crc32(f"{class_key}\x1ftrim".encode())]))
        for ordinal, n in zip(outputs["ordinal"].iloc[trimmed], outputs["n"].iloc[trimmed]):
            (Path(stage) / f"{ordinal:08d}-{n}.png").unlink()
            for path in (Path(stage) / CHANNELS_DIR).glob(f"{ordinal:08d}-{n}.c*.png"):
                path.unlink()
        metadata = _number_outputs(outputs.drop(index=trimmed), rows, class_key, label, category, Path(stage), preserved)
        metadata.to_csv(Path(stage) / "metadata.csv", index=False)
        drops.to_csv(Path(stage) / "dropped.csv", index=False)
    return ClassResult(metadata, drops, len(rows), time.perf_counter() - started, len(trimmed))


def _number_outputs(
    outputs: pd.DataFrame, rows: pd.DataFrame, class_key: str, label: str, category: str, stage: Path, preserved: bool
) -> pd.DataFrame:
    """Rename staged files to <class_key>-<8 digits>.png in (idx, crop) order (and each channel's to
    channels/<that name>.c<j>.png, listed in channels/index.csv); the release table."""
    out = outputs.reset_index(drop=True)
    out["filename"] = [f"{class_key}-{i:08d}.png" for i in range(1, len(out) + 1)]
    listed = []
    for ordinal, n, filename, names in zip(out["ordinal"], out["n"], out["filename"], out["channels"]):
        (stage / f"{ordinal:08d}-{n}.png").rename(stage / filename)
        for j, name in enumerate(names if preserved else ()):
            file = f"{Path(filename).stem}.c{j}.png"
            (stage / CHANNELS_DIR / f"{ordinal:08d}-{n}.c{j}.png").rename(stage / CHANNELS_DIR / file)
            listed.append({"filename": filename, "channel": j, "name": name, "file": file})
    if preserved:
        pd.DataFrame(listed, columns=CHANNEL_INDEX_COLUMNS).to_csv(stage / CHANNELS_DIR / "index.csv", index=False)
    carried = rows.set_index("idx")[CARRIED]
    out = out.join(carried, on="idx")
    out["label"], out["category"], out["path"] = label, category, class_key
    return out[[*RELEASE_COLUMNS, "low_contrast"]]


def thumbnail_grid(paths: list[Path], side: int = 5, size: int = 96, format: str = "PNG") -> bytes:
    """A side × side montage of evenly spaced images of a class, as PNG (or ``format``) bytes."""
    chosen = [paths[int(i)] for i in np.linspace(0, len(paths) - 1, min(len(paths), side * side))] if paths else []
    grid = Image.new("L", (side * size, side * size), 0)
    for k, path in enumerate(chosen):
        with Image.open(path) as image:
            thumb = image.convert("L").resize((size, size), Image.Resampling.BILINEAR)
        grid.paste(thumb, ((k % side) * size, (k // side) * size))
    buffer = io.BytesIO()
    grid.save(buffer, format=format, **({"quality": 70} if format == "JPEG" else {}))
    return buffer.getvalue()


def drop_summary(drops: pd.DataFrame) -> dict[str, int]:
    return {str(k): int(v) for k, v in drops["reason"].map(lambda r: r.split(":")[0]).value_counts().items()} if len(drops) else {}
