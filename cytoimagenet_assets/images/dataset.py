"""The published dataset: every built class's metadata in one table, and its dataset card."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from PIL import Image

from cytoimagenet_assets.catalog.settings import LABEL_CATEGORIES, LabelSettings
from cytoimagenet_assets.errors import StepFailed
from cytoimagenet_assets.images.build_class import CHANNEL_INDEX_COLUMNS, CHANNELS_DIR, RELEASE_COLUMNS, stain
from cytoimagenet_assets.markdown import Figure, Markdown, markdown_table, report_header, table
from cytoimagenet_assets.plots import plt, png_bytes
from cytoimagenet_assets.storage import DataHome, read_parquet, read_parquet_metadata, write_csv, write_sql_table, write_text


def assemble_dataset(home: DataHome, class_keys: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """(metadata of every built class: the release columns and low_contrast, class keys not built
    yet), in class-key order. A class built before low_contrast was recorded has it empty."""
    frames, missing = [], []
    for key in sorted(class_keys):
        path = home.class_metadata(key)
        if path.is_file():
            frames.append(pd.read_csv(path, dtype={"crop": bool}, keep_default_na=True))
        else:
            missing.append(key)
    metadata = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=RELEASE_COLUMNS)
    return metadata.reindex(columns=[*RELEASE_COLUMNS, "low_contrast"]), missing


def below_floor(metadata: pd.DataFrame, floor: int) -> pd.Series:
    """Images per built class with fewer than ``floor`` images (the release floor), largest first."""
    sizes = metadata.groupby("path").size()
    return sizes[sizes < floor].sort_values(ascending=False, kind="stable").rename("images").rename_axis("class_key")


def crop_check_counts(metadata: pd.DataFrame) -> dict:
    """Crops in the dataset, and how many of them the stricter ``contrast`` crop check rejects
    (None where a class was built before that was recorded)."""
    crops = metadata[metadata["crop"].astype(bool)]
    flags = crops["low_contrast"]
    return {"crops": len(crops), "low_contrast": None if flags.isna().any() else int(flags.astype(bool).sum())}


def dataset_card(
    catalog: str,
    metadata: pd.DataFrame,
    missing: list[str],
    left_out: pd.Series,
    floor: int,
    crop_check: str,
    header: list[str],
    channels: pd.DataFrame | None = None,
) -> str:
    """README.md of the dataset: ``header`` (what it is), totals and the methods file's tables
    (labels per category, per database), the crop check's counts, the classes below the floor and,
    under ``channels: preserved``, the channels kept apart (one row per channel image, with its stain)."""
    classes = metadata.drop_duplicates("path")
    per_category = (
        classes["category"]
        .value_counts()
        .reindex(LABEL_CATEGORIES, fill_value=0)
        .rename("# of labels")
        .rename_axis("Category")
        .reset_index()
    )
    per_database = classes.groupby("database")["path"].nunique().sort_values(ascending=False).rename("Number of Labels Contributed")
    per_database = per_database.rename_axis("Database").reset_index()
    sources = metadata.groupby(["database", "name"]).size().rename("images").reset_index()
    lines = [
        f"# CytoImageNet-style dataset (catalog: {catalog})",
        "",
        *header,
        f"**{len(metadata):,}** images, **{len(classes):,}** classes (~{len(metadata) / max(len(classes), 1):.0f} images per class), "
        f"from **{metadata['dir_name'].nunique()}** source datasets; {int(metadata['crop'].sum()):,} images are crops (upsampling).",
        "",
        "Images: `<class_key>/<class_key>-<number>.png`, 8-bit grayscale, channels normalized to their 0.1-99.9th "
        f"percentiles and averaged. Metadata of every image: `metadata.csv` ({', '.join(RELEASE_COLUMNS)}).",
        "",
        "## Labels per category",
        "",
        markdown_table(per_category, max_rows=len(per_category)),
        "",
        "## Labels per database",
        "",
        markdown_table(per_database, max_rows=len(per_database)),
        "",
        "## Images per source dataset",
        "",
        markdown_table(sources, max_rows=len(sources)),
        "",
    ]
    counts = crop_check_counts(metadata)
    if counts["low_contrast"] is not None:
        kept = "kept (the original's check)" if crop_check == "original" else "none kept (`crop_check: contrast`)"
        lines += [
            "## Crop check",
            "",
            f"Crop check `{crop_check}`: {counts['crops']:,} crops in the dataset. Crops spanning under a tenth of their "
            f"image's intensity range (background that renormalization stretches into noise) pass the original's check: "
            f"{counts['low_contrast']:,} are in this dataset, {kept}; they are marked `low_contrast` in each class's metadata.csv.",
            "",
        ]
    if len(left_out):
        lines += [
            f"## Classes below the release floor ({floor} images)",
            "",
            f"{len(left_out)} built classes have fewer than {floor} images after upsampling and are not in this release "
            "(the original's 500-image floor, scaled to the target):",
            "",
            markdown_table(left_out.reset_index(), max_rows=len(left_out)),
            "",
        ]
    if channels is not None:
        per_stain = channels.groupby("stain").size().rename("channel images").rename_axis("Stain").reset_index()
        lines += [
            "## Channels",
            "",
            f"`channels: preserved`: each image's {len(channels):,} channels are also kept apart, one 8-bit PNG each "
            "(normalized by its own 0.1-99.9th percentiles, on the same window as the merged image), under "
            "`<class_key>/channels/` (`index.csv`: filename, channel, name, file) and in `release/webdataset-channels/`. "
            "Stains, in the shared vocabulary:",
            "",
            markdown_table(per_stain, max_rows=len(per_stain)),
            "",
        ]
    if missing:
        lines += [f"**Not built yet:** {len(missing)} classes ({', '.join(missing[:10])}{' …' if len(missing) > 10 else ''}).", ""]
    return "\n".join(lines)


def composition_png(metadata: pd.DataFrame) -> bytes:
    """Images per category, split into original images and crops."""
    counts = metadata.groupby(["category", "crop"]).size().unstack(fill_value=0).reindex(columns=[False, True], fill_value=0)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.bar(counts.index, counts[False], label="original", color="#4c72b0")
    ax.bar(counts.index, counts[True], bottom=counts[False], label="crop", color="#dd8452")
    ax.set_title("images per category")
    ax.legend()
    ax.tick_params(axis="x", rotation=30)
    return png_bytes(fig)


def class_folder_problems(folder: Path, metadata: pd.DataFrame, threshold: int, target: int) -> list[str]:
    """What is wrong with a built class folder (empty when sound): its PNGs are exactly those of its
    metadata.csv, every one 8-bit gray, and it holds between ``threshold`` and ``target`` images."""
    problems = []
    on_disk = {p.name for p in folder.glob("*.png")}
    listed = set(metadata["filename"])
    if on_disk != listed:
        problems.append(
            f"{len(on_disk)} PNGs on disk, {len(listed)} in metadata.csv; unlisted: {sorted(on_disk - listed)[:5]}, "
            f"absent: {sorted(listed - on_disk)[:5]}"
        )
    not_gray = []
    for name in sorted(on_disk & listed):
        with Image.open(folder / name) as image:  # reads the header only
            if image.mode != "L":
                not_gray.append(f"{name} ({image.mode})")
    if not_gray:
        problems.append(f"{len(not_gray)} images are not 8-bit gray: {', '.join(not_gray[:5])}")
    if not threshold <= len(metadata) <= target:
        problems.append(f"{len(metadata)} images, outside [{threshold}, {target}]")
    return problems


def dataset_problems(metadata: pd.DataFrame, built: list[str]) -> list[str]:
    """What is wrong with the published table (empty when sound): every built class at or above the
    release floor (``built``) is listed, and no source image (idx) is in two classes."""
    problems = []
    unlisted = sorted(set(built) - set(metadata["path"]))
    if unlisted:
        problems.append(f"{len(unlisted)} built classes missing from metadata.csv: {', '.join(unlisted[:5])}")
    classes_per_image = metadata.groupby("idx")["path"].nunique()
    shared = classes_per_image[classes_per_image > 1]
    if len(shared):
        problems.append(f"{len(shared)} source images in two or more classes: {', '.join(shared.index[:5])}")
    return problems


def upsampling_figures(metadata: pd.DataFrame) -> dict:
    """Share of crops and how many images at each scaling (1.0: a whole image)."""
    scaling = metadata["scaling"].astype(float).value_counts().sort_index(ascending=False)
    return {
        "crop_share": round(float(metadata["crop"].mean()), 4) if len(metadata) else 0.0,
        "scaling_histogram": {f"{k:g}": int(v) for k, v in scaling.items()},
    }


class EmptyDataset(StepFailed, RuntimeError):
    """No class of the class table has been built yet."""


@dataclass
class PublishedDataset:
    metadata: pd.DataFrame  # the release table over every built class at or above the release floor
    missing: list[str]  # classes of the class table not built yet
    built: list[str]
    left_out: pd.Series  # images per built class below the release floor
    floor: int
    card: str
    sql_rows: int
    problems: list[str]  # what the classes_listed_once check reports
    upsampling: dict  # crop share, scaling histogram, the crop check and its counts

    def report(self, home: DataHome) -> dict:
        metadata = self.metadata
        per_category = metadata.drop_duplicates("path")["category"].value_counts().rename("classes").rename_axis("category").reset_index()
        return {
            "dagster/row_count": len(metadata),
            "classes": int(metadata["path"].nunique()),
            "classes_missing": self.missing[:50],
            "release_floor": self.floor,
            "classes_below_floor": table(self.left_out.reset_index(), max_rows=50, empty="none"),
            "crops": int(metadata["crop"].sum()),
            "crop_share": self.upsampling["crop_share"],
            "scaling_histogram": self.upsampling["scaling_histogram"],
            "crop_check": self.upsampling["crop_check"],
            "low_contrast_crops": self.upsampling["low_contrast"],  # crops the "contrast" check rejects, in the dataset
            "classes_per_category": table(per_category, max_rows=10),
            "card": Markdown(self.card),
            "composition": Figure(composition_png(metadata), "composition"),
            "sql_rows": self.sql_rows,
            "path": home.dataset_dir(),
        }

    def check_report(self) -> dict:
        return {"classes_built": len(self.built), "classes_below_floor": len(self.left_out), **self.upsampling}


def released_channels(home: DataHome, metadata: pd.DataFrame) -> pd.DataFrame:
    """The channel images of the released classes (their channels/index.csv), each with its stain."""
    listed = [pd.read_csv(home.class_dir(k) / CHANNELS_DIR / "index.csv", keep_default_na=False) for k in metadata["path"].unique()]
    channels = pd.concat(listed, ignore_index=True) if listed else pd.DataFrame(columns=CHANNEL_INDEX_COLUMNS)
    return channels.assign(stain=channels["name"].astype(str).map(stain))


def publish_dataset(home: DataHome, catalog: str) -> PublishedDataset:
    """Write the dataset's metadata.csv over every built class at or above the release floor, its
    card (README.md) and the SQL table ``images``; fails when no class can be released."""
    classes = read_parquet(home.classes_table())["class_key"].tolist()
    settings = LabelSettings.from_record(read_parquet_metadata(home.labels_table())["settings"])
    floor = settings.floor
    built_metadata, missing = assemble_dataset(home, classes)
    left_out = below_floor(built_metadata, floor)
    released = built_metadata[~built_metadata["path"].isin(left_out.index)].reset_index(drop=True)
    metadata = released[RELEASE_COLUMNS]
    if metadata.empty:
        raise EmptyDataset(
            f"no class can be released: {len(missing)} of {len(classes)} classes not built yet (materialize class_images), "
            f"{len(left_out)} below the release floor of {floor} images"
        )
    write_csv(metadata, home.dataset_metadata())
    fingerprint = hashlib.sha1(home.dataset_metadata().read_bytes()).hexdigest()[:16]  # of the published table
    header = report_header(catalog, None, fingerprint, None)  # no date: a rerun gives the same card, byte for byte
    channels = released_channels(home, metadata) if settings.channels == "preserved" else None
    card = dataset_card(catalog, released, missing, left_out, floor, settings.crop_check, header, channels)
    write_text(home.dataset_card(), card)
    rows = write_sql_table(metadata, "images", home.db_url)
    built = [k for k in classes if home.class_metadata(k).is_file()]
    releasable = [k for k in built if k not in left_out.index]
    return PublishedDataset(
        metadata,
        missing,
        built,
        left_out,
        floor,
        card,
        rows,
        dataset_problems(metadata, releasable),
        {**upsampling_figures(metadata), "crop_check": settings.crop_check, **crop_check_counts(released)},
    )
