"""Pack the dataset's PNGs into one memory-mapped uint8 array, so training never decodes PNGs.

Layout of a shard folder::

    images.npy    uint8 (N, size, size), memory-mappable (numpy .npy format)
    labels.npy    int64 (N,), index into classes.json
    classes.json  [{"class_key", "label", "category", "images"}, ...] by class key; labels.npy indexes it
    index.csv     class_key, filename and idx (the source image) of each row: provenance, and the groups
                  that keep all crops of one source image on one side of the validation split

Written atomically (staged folder, renamed when complete).
"""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from cytoimagenet_assets.storage import atomic_path


@dataclass(frozen=True)
class Shards:
    folder: Path

    @property
    def images(self) -> np.ndarray:
        return np.load(self.folder / "images.npy", mmap_mode="r")

    @property
    def labels(self) -> np.ndarray:
        return np.load(self.folder / "labels.npy")

    @property
    def classes(self) -> list[dict]:
        return json.loads((self.folder / "classes.json").read_text())

    @property
    def sources(self) -> np.ndarray:
        """The source image (idx) of each row."""
        index = pd.read_csv(self.folder / "index.csv", dtype=str, keep_default_na=False)
        if "idx" not in index.columns:
            raise ValueError(f"{self.folder / 'index.csv'} has no idx column (packed by an older version); materialize training_shards again")
        return index["idx"].to_numpy()


def _load(path: str, size: int) -> np.ndarray:
    with Image.open(path) as image:
        image = image.convert("L")
        if image.size != (size, size):
            image = image.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None)
        return np.asarray(image, np.uint8)


def _pack_chunk(args) -> int:
    out, start, paths, size = args
    images = np.load(out, mmap_mode="r+")
    for i, path in enumerate(paths):
        images[start + i] = _load(path, size)
    images.flush()
    return len(paths)


def pack(metadata: pd.DataFrame, dataset_dir: Path, out_dir: Path, size: int, workers: int = 1) -> Shards:
    """Pack every image listed in ``metadata`` (the release table: path, filename, idx, label, category)."""
    metadata = metadata.sort_values(["path", "filename"], kind="stable").reset_index(drop=True)
    keys = sorted(metadata["path"].unique())
    index = {k: i for i, k in enumerate(keys)}
    first = metadata.drop_duplicates("path").set_index("path")
    classes = [{"class_key": k, "label": str(first.loc[k, "label"]), "category": str(first.loc[k, "category"]),
                "images": int((metadata["path"] == k).sum())} for k in keys]
    paths = [str(dataset_dir / p / f) for p, f in zip(metadata["path"], metadata["filename"])]
    with atomic_path(out_dir, is_dir=True) as stage:
        target = stage / "images.npy"
        np.lib.format.open_memmap(target, mode="w+", dtype=np.uint8, shape=(len(paths), size, size)).flush()
        chunk = 256
        jobs = [(str(target), s, paths[s : s + chunk], size) for s in range(0, len(paths), chunk)]
        if workers > 1 and len(jobs) > 1:
            with ProcessPoolExecutor(workers) as pool:
                list(pool.map(_pack_chunk, jobs))
        else:
            for job in jobs:
                _pack_chunk(job)
        np.save(stage / "labels.npy", metadata["path"].map(index).to_numpy(np.int64))
        (stage / "classes.json").write_text(json.dumps(classes, indent=1))
        metadata[["path", "filename", "idx"]].rename(columns={"path": "class_key"}).to_csv(stage / "index.csv", index=False)
    return Shards(out_dir)
