"""Pack the dataset's PNGs into one memory-mapped uint8 array, so training never decodes PNGs (the
``training_shards`` asset; not the WebDataset shards of the release, which ``release.webdataset`` writes).

Layout of a packed folder::

    images.npy    uint8 (N, size, size), memory-mappable (numpy .npy format)
    labels.npy    int64 (N,), index into classes.json
    classes.json  [{"class_key", "label", "category", "images"}, ...] by class key; labels.npy indexes it
    index.csv     class_key, filename and idx (the source image) of each row: provenance, and the groups
                  that keep all crops of one source image on one side of the validation split

Written atomically (staged folder, renamed when complete).
"""

from __future__ import annotations

import hashlib
import json
import math
import queue
import threading
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import torch
from PIL import Image

from cytoimagenet_assets.storage import atomic_path


@dataclass(frozen=True)
class PackedDataset:
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

    def report(self) -> dict:
        images = self.images
        return {
            "images": int(images.shape[0]),
            "classes": len(self.classes),
            "size": int(images.shape[1]),
            "bytes": int(images.nbytes),
            "fingerprint": self.fingerprint(),
            "path": self.folder,
        }

    def fingerprint(self) -> str:
        """What the model was trained on: the packed file list, classes and array shape."""
        h = hashlib.sha1((self.folder / "index.csv").read_bytes())
        h.update((self.folder / "classes.json").read_bytes())
        h.update(str(self.images.shape).encode())
        return h.hexdigest()[:16]

    def batches(self, rows: np.ndarray, batch_size: int, device: torch.device, size: int) -> "Batches":
        if self.images.shape[1:] != (size, size):
            raise ValueError(f"{self.folder} holds {self.images.shape[1]} px images, the recipe asks for {size} px; pack them at that size")
        return Batches(self, rows, batch_size, device)

    @property
    def sources(self) -> np.ndarray:
        """The source image (idx) of each row."""
        index = pd.read_csv(self.folder / "index.csv", dtype=str, keep_default_na=False)
        if "idx" not in index.columns:
            raise ValueError(
                f"{self.folder / 'index.csv'} has no idx column (packed by an older version); materialize training_shards again"
            )
        return index["idx"].to_numpy()


class Batches:
    """Batches gathered from the memory-mapped images by a prefetch thread, copied asynchronously."""

    def __init__(self, packed: "PackedDataset", rows: np.ndarray, batch_size: int, device: torch.device, prefetch: int = 6):
        self.images, self.labels = packed.images, packed.labels
        self.rows, self.batch_size, self.device, self.prefetch = rows, batch_size, device, prefetch

    def plan(self, epoch: int, seed: int, shuffle: bool, rank: int, world: int, max_steps: int) -> list[np.ndarray]:
        """This rank's batches of an epoch: a permutation seeded by (seed, epoch), dealt to ranks
        round-robin and cut to the same number of full batches on every rank."""
        order = np.random.default_rng([seed, epoch]).permutation(self.rows) if shuffle else self.rows
        mine = order[rank::world][: len(order) // world]
        steps = len(mine) // self.batch_size if shuffle else math.ceil(len(mine) / self.batch_size)
        if max_steps:
            steps = min(steps, max_steps)
        return [mine[i * self.batch_size : (i + 1) * self.batch_size] for i in range(steps)]

    def __call__(self, plan: list[np.ndarray]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        def gather():
            for rows in plan:
                rows = np.sort(rows)  # memory-map locality
                yield torch.from_numpy(np.ascontiguousarray(self.images[rows])), torch.from_numpy(self.labels[rows])

        return prefetch_to_device(gather(), self.device, self.prefetch)


def prefetch_to_device(
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]], device: torch.device, depth: int = 6
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``batches`` made by a thread ahead of the consumer (pinned on CUDA), copied to ``device``
    asynchronously; an error in the thread is raised in the consumer."""
    pin = device.type == "cuda"
    slots: queue.Queue = queue.Queue(maxsize=depth)

    def produce():
        try:
            for x, y in batches:
                slots.put((x.pin_memory(), y.pin_memory()) if pin else (x, y))
        except BaseException as exc:  # surfaced in the consumer
            slots.put(exc)
            return
        slots.put(None)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    while (item := slots.get()) is not None:
        if isinstance(item, BaseException):
            raise item
        x, y = item
        yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    thread.join()


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


def packed(metadata: pd.DataFrame, dataset_dir: Path, out_dir: Path, size: int, workers: int = 1) -> tuple[PackedDataset, bool]:
    """The images of ``metadata`` packed at ``size`` in ``out_dir``, packed now only when the folder is
    missing or lists other images (a dataset rebuilt since, a size not packed before): (the pack,
    whether it was packed now). Training asks for the size its recipe trains at, so the input size
    is set in one place, the recipe."""
    index = Path(out_dir) / "index.csv"
    if index.is_file() and (Path(out_dir) / "images.npy").is_file():
        listed = pd.read_csv(index, dtype=str, keep_default_na=False)[["class_key", "filename"]]
        wanted = metadata.sort_values(["path", "filename"], kind="stable")[["path", "filename"]].astype(str)
        if listed.to_numpy().tolist() == wanted.to_numpy().tolist() and PackedDataset(out_dir).images.shape[1] == size:
            return PackedDataset(out_dir), False
    return pack(metadata, dataset_dir, out_dir, size, workers), True


def pack(metadata: pd.DataFrame, dataset_dir: Path, out_dir: Path, size: int, workers: int = 1) -> PackedDataset:
    """Pack every image listed in ``metadata`` (the release table: path, filename, idx, label, category)."""
    metadata = metadata.sort_values(["path", "filename"], kind="stable").reset_index(drop=True)
    keys = sorted(metadata["path"].unique())
    index = {k: i for i, k in enumerate(keys)}
    first = metadata.drop_duplicates("path").set_index("path")
    classes = [
        {
            "class_key": k,
            "label": str(first.loc[k, "label"]),
            "category": str(first.loc[k, "category"]),
            "images": int((metadata["path"] == k).sum()),
        }
        for k in keys
    ]
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
    return PackedDataset(out_dir)
