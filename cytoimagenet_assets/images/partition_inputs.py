"""One class partition's work: what it reads (its row of the class table, the label settings that
table was made with, its rows of the merged table), the image files those rows name (fetched on
demand for sources downloaded metadata first), the build, and its report."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd
import pyarrow.parquet as pq

from cytoimagenet_assets.catalog import Source
from cytoimagenet_assets.catalog.settings import LABEL_CATEGORIES, LabelSettings
from cytoimagenet_assets.download import ArchiveError, DownloadError
from cytoimagenet_assets.download.plan import Fetching, FetchReport, fetch_missing
from cytoimagenet_assets.errors import StepFailed
from cytoimagenet_assets.images.build_class import LOW_CONTRAST, ClassBuildError, ClassResult, build_class, drop_summary, thumbnail_grid
from cytoimagenet_assets.images.dataset import class_folder_problems
from cytoimagenet_assets.markdown import Figure, table
from cytoimagenet_assets.storage import DataHome, read_parquet, read_parquet_metadata, write_bytes

PREVIEW_PX = 40  # a 5 × 5 preview of 200 px: a few kB of JPEG in each class's materialization
IMAGE_COLUMNS = ["idx", "dir_name", "channel_paths", "channel_names", "region", "database", "name", *LABEL_CATEGORIES, "microscopy"]


class StaleClass(StepFailed, LookupError):
    """A partition whose class is no longer in the class table (the sensor removes such partitions)."""


class FetchFailed(StepFailed, RuntimeError):
    """Fetching a class's images failed (the server, the network): worth a retry, unlike a ClassBuildError."""

    retry = True


@dataclass
class ClassRows:
    key: str
    label: str
    category: str
    fingerprint: str
    settings: LabelSettings  # the settings the class table was written with
    rows: pd.DataFrame  # the class's rows of merged_metadata (IMAGE_COLUMNS)
    raw_dirs: dict[str, Path]


def class_rows(home: DataHome, key: str) -> ClassRows:
    """The inputs of class ``key``. Tables written before a setting or column existed are a
    ClassBuildError (rebuild them; retrying cannot help)."""
    record = read_parquet_metadata(home.labels_table())["settings"]
    if "upsampling" not in record:
        raise ClassBuildError("cytoimagenet_labels predates the upsampling setting; materialize it again")
    classes = read_parquet(home.classes_table()).set_index("class_key")
    if key not in classes.index:
        raise StaleClass(f"class {key} is not in the current class table; the sensor removes such partitions")
    info = classes.loc[key]
    labels = pd.read_parquet(home.labels_table(), columns=["idx", "class_key"], filters=[("class_key", "==", key)])
    absent = [c for c in IMAGE_COLUMNS if c not in pq.read_schema(home.merged_table()).names]
    if absent:
        raise ClassBuildError(
            f"merged_metadata lacks column(s) {', '.join(absent)}: it predates them; materialize the "
            f"source_metadata assets and merged_metadata again"
        )
    rows = pd.read_parquet(home.merged_table(), columns=IMAGE_COLUMNS, filters=[("idx", "in", labels["idx"].tolist())])
    return ClassRows(
        key,
        str(info["label"]),
        str(info["category"]),
        str(info["fingerprint"]),
        LabelSettings.from_record(record),
        rows,
        {d: home.raw_dir(d) for d in rows["dir_name"].unique()},
    )


def fetch_class_images(
    inputs: ClassRows, fetchable: dict[str, Source], fetching: Fetching, warn: Callable[[str], None] = print
) -> FetchReport:
    """Bring the image files the class's rows name from the sources downloaded metadata first (only
    those files), as one report over every source; files no remote holds are listed, not errors."""
    total, started = FetchReport(inputs.key), time.perf_counter()
    for dir_name, rows in inputs.rows.groupby("dir_name", sort=True):
        if dir_name not in fetchable:
            continue
        paths = [p for files in rows["channel_paths"] for p in files]
        try:
            report = fetch_missing(fetchable[dir_name], inputs.raw_dirs[dir_name], paths, fetching=fetching)
        except (DownloadError, ArchiveError) as exc:
            raise FetchFailed(f"class {inputs.key}: fetching the images of {dir_name} failed: {exc}") from exc
        for note in report.notes:
            warn(f"{dir_name}: {note}")
        total.bytes_downloaded += report.bytes_downloaded
        total.files_fetched += report.files_fetched
        total.unavailable += report.unavailable
    total.seconds = time.perf_counter() - started
    return total


@dataclass
class ClassImages:
    result: ClassResult
    problems: list[str]  # what the class_folder check reports
    report: dict
    summary: str  # one line for the log


def build_class_images(home: DataHome, inputs: ClassRows, fetched: FetchReport, workers: int) -> ClassImages:
    """Build the class's folder (``build_class`` with the class table's settings) and check it."""
    settings, folder, key = inputs.settings, home.class_dir(inputs.key), inputs.key
    result = build_class(
        key,
        inputs.label,
        inputs.category,
        inputs.rows,
        inputs.raw_dirs,
        folder,
        target=settings.target,
        threshold=settings.threshold,
        seed=settings.seed,
        upsampling=settings.upsampling,
        workers=workers,
        crop_check=settings.crop_check,
        channels=settings.channels,
    )
    meta, drops = result.metadata, result.drops
    images = [folder / f for f in meta["filename"]]
    problems = class_folder_problems(folder, pd.read_csv(home.class_metadata(key)), settings.threshold, settings.target)
    report = {
        "label": inputs.label,
        "category": inputs.category,
        "images": len(meta),
        "originals": int((~meta["crop"]).sum()),
        "crops": int(meta["crop"].sum()),
        "upsampling": settings.upsampling,
        "trimmed_to_target": result.trimmed,
        "crop_check": settings.crop_check,
        "channels": settings.channels,
        # crops that pass the original's check and not the stricter one: kept under "original", dropped under "contrast"
        "low_contrast_crops_kept": int(meta["low_contrast"].sum()),
        "low_contrast_crops_dropped": int((drops["reason"] == LOW_CONTRAST).sum()),
        "below_release_floor": len(meta) < settings.floor,  # built, but left out of the dataset
        "release_floor": settings.floor,
        "source_rows": result.images_in,
        "dropped": len(drops),
        "dropped_by_reason": drop_summary(drops),
        "dropped_images": table(drops, max_rows=50, empty="none"),
        "images_per_second": round(result.images_in / max(result.seconds, 1e-9), 1),
        "seconds": round(fetched.seconds + result.seconds, 2),  # fetching and building: the class's own work
        "bytes_fetched": fetched.bytes_downloaded,
        "files_fetched": fetched.files_fetched,
        "files_unavailable": len(fetched.unavailable),
        "fingerprint": inputs.fingerprint,
        "path": folder,
        # A small preview inline (900 classes' materializations live in the event log); the full grid as a file.
        "samples": Figure(thumbnail_grid(images, size=PREVIEW_PX, format="JPEG"), f"{key} samples", "image/jpeg"),
        "samples_grid": write_bytes(home.report_dir("class_samples") / f"{key}.png", thumbnail_grid(images)),
    }
    summary = f"{key}: {len(meta)} images from {result.images_in} rows in {result.seconds:.1f} s; dropped {len(drops)}"
    if len(meta) < settings.floor:
        summary += f"; below the release floor of {settings.floor} images: left out of the dataset"
    return ClassImages(result, problems, report, summary)
