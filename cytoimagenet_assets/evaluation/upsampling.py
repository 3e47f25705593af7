"""The methods file's "Upsampling Classes" figure: features of random upsampled classes before
(their source images, merged as the image step merges them) and after (the class's published
images: crops, and the originals kept whole) upsampling, in one UMAP embedding. The source images
are read back because "original" upsampling replaces them by their crops in the dataset."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from cytoimagenet_assets.devices import pick_device
from cytoimagenet_assets.evaluation.report import before_after_umap_png
from cytoimagenet_assets.images.build_class import source_image
from cytoimagenet_assets.images.readers import read_channels
from cytoimagenet_assets.markdown import Figure
from cytoimagenet_assets.model.inference import BackboneUnavailable, FeatureExtractor, extract, imagenet_backbone, load_model
from cytoimagenet_assets.storage import DataHome, write_bytes


@dataclass
class UpsamplingFigure:
    png: bytes | None  # None when no class needed upsampling
    classes: int
    images: int
    backbone: str
    note: str

    def report(self, path: Path | None) -> dict:
        if self.png is None:
            return {"note": self.note}
        return {
            "classes": self.classes,
            "images": self.images,
            "backbone": self.backbone,
            "note": self.note,
            "umap": Figure(self.png, "before and after upsampling"),
            "path": path,
        }


def figure_backbone(imagenet_weights: str | None, model: Path | None) -> tuple[torch.nn.Module, str, str]:
    """ImageNet features as the paper's figure; the CytoImageNet model when ImageNet weights are absent."""
    try:
        return imagenet_backbone(imagenet_weights), "imagenet", "ImageNet features"
    except BackboneUnavailable as exc:
        if model is None or not Path(model).is_file():
            raise BackboneUnavailable(f"{exc}; and no CytoImageNet model to fall back on") from exc
        return load_model(Path(model)).model, "cytoimagenet", f"ImageNet weights unavailable ({exc}); CytoImageNet features instead"


def upsampling_figure(
    dataset_dir: Path,
    source_image: Callable[[str], np.ndarray],
    imagenet_weights: str | None = None,
    model: Path | None = None,
    classes: int = 20,
    images_per_class: int = 30,
    seed: int = 0,
) -> UpsamplingFigure:
    """UMAP of ``classes`` random upsampled classes of the published dataset (``dataset/metadata.csv``);
    ``source_image(idx)`` gives the merged 8-bit source image of a row of the merged table."""
    metadata = pd.read_csv(Path(dataset_dir) / "metadata.csv")
    upsampled = sorted(metadata.loc[metadata["crop"].astype(bool), "path"].unique())
    if not upsampled:
        return UpsamplingFigure(None, 0, 0, "", "no class needed upsampling: nothing to compare")
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(upsampled, size=min(classes, len(upsampled)), replace=False))
    net, backbone, note = figure_backbone(imagenet_weights, model)
    extractor = FeatureExtractor(net, pick_device())
    rows = metadata[metadata["path"].isin(chosen)].sample(frac=1.0, random_state=seed)
    rows = rows.groupby("path").head(images_per_class).sort_values(["path", "filename"])
    sources = rows.drop_duplicates("idx")
    images = [source_image(idx) for idx in sources["idx"]]  # before: the source images
    images += [read_channels(Path(dataset_dir) / p / f)[0] for p, f in zip(rows["path"], rows["filename"])]  # after
    features = extract(extractor, [[image] for image in images], "merge_normalized")
    before = np.arange(len(images)) < len(sources)
    shown = pd.concat([sources, rows])
    names = [f"{label} ({category})" for label, category in zip(shown["label"], shown["category"])]
    png = before_after_umap_png(features, names, before, f"{backbone} features", seed)
    return UpsamplingFigure(png, len(chosen), len(rows), backbone, note)


def dataset_upsampling_figure(
    home: DataHome, imagenet_weights: str | None, model: Path | None, classes: int = 20, images_per_class: int = 30, seed: int = 0
) -> tuple[UpsamplingFigure, Path | None]:
    """:func:`upsampling_figure` of the published dataset, the source images read from the raw files
    and merged as the image step merges them; written to ``reports/upsampling_umap/``."""
    rows = pd.read_parquet(home.merged_table(), columns=["idx", "dir_name", "channel_paths", "region"]).set_index("idx")

    def source(idx: str) -> np.ndarray:
        row = rows.loc[idx]
        region = None if pd.isna(row["region"]) else row["region"]
        return source_image([home.raw_dir(row["dir_name"]) / p for p in row["channel_paths"]], region)

    figure = upsampling_figure(home.dataset_dir(), source, imagenet_weights, model, classes, images_per_class, seed)
    if figure.png is None:
        return figure, None
    return figure, write_bytes(home.report_dir("upsampling_umap") / "upsampling_umap.png", figure.png)
