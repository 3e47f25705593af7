"""Training input streamed from the WebDataset release (``dataset_shards``) instead of the packed
memory-mapped array: what many nodes use when the dataset sits on object storage or a shared volume
and packing it on every node is not an option.

Each epoch the shards are put in a seeded order and dealt to the processes round-robin (rank r
reads shards r, r + world, ...), so every process reads only its own files. A process decodes the
PNGs of its shards in a prefetch thread, keeps the samples of its split (the same grouped,
stratified split as the memory-mapped input, computed from ``index.parquet``), shuffles them through
a seeded buffer and yields uint8 batches; every process runs the same number of steps (the smallest
any of them can fill), as DistributedDataParallel requires.

The release is verified before it is used: every shard of the index must be listed in SHA256SUMS
and present, and a process hashes each shard the first time it opens it (``verify_shard``), so a
damaged or replaced shard stops training with :class:`DamagedRelease` naming it; a sample whose PNG
does not decode names its shard and key.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import torch
import webdataset as wds
from PIL import Image

from cytoimagenet_assets.images.release import DamagedRelease, read_checksums, verify_shard
from cytoimagenet_assets.model.shards import prefetch_to_device


@dataclass(frozen=True)
class StreamPlan:
    """One process's epoch: its shards in reading order, the rows it may use, how many batches."""

    shards: tuple[str, ...]
    steps: int
    seed: int
    shuffle: bool

    def __len__(self) -> int:
        return self.steps


@dataclass(frozen=True)
class WebDatasetShards:
    """A release folder (``release/webdataset``) as training input: labels and source images from
    its index, the samples from its tar shards."""

    folder: Path

    @property
    def index(self) -> pd.DataFrame:
        return pd.read_parquet(self.folder / "index.parquet")

    @property
    def classes(self) -> list[dict]:
        return json.loads((self.folder / "classes.json").read_text())

    @property
    def labels(self) -> np.ndarray:
        return self.index["class_index"].to_numpy(np.int64)

    @property
    def sources(self) -> np.ndarray:
        return self.index["idx"].to_numpy()

    def fingerprint(self) -> str:
        """What the model was trained on: the shards' checksums and the classes."""
        h = hashlib.sha1((self.folder / "SHA256SUMS").read_bytes())
        h.update((self.folder / "classes.json").read_bytes())
        return h.hexdigest()[:16]

    def batches(self, rows: np.ndarray, batch_size: int, device: torch.device, size: int) -> "StreamedBatches":
        return StreamedBatches(self, rows, batch_size, device, size)


class StreamedBatches:
    """Batches of the rows ``rows`` (positions in the index), read from the shards."""

    def __init__(
        self,
        release: WebDatasetShards,
        rows: np.ndarray,
        batch_size: int,
        device: torch.device,
        size: int,
        buffer: int = 2048,
        prefetch: int = 6,
    ):
        index = release.index
        self.folder, self.size, self.batch_size, self.device = release.folder, size, batch_size, device
        self.buffer, self.prefetch = buffer, prefetch
        wanted = index.iloc[np.sort(rows)]
        self.label_of = dict(zip(wanted["key"], wanted["class_index"].astype(np.int64)))
        self.rows_per_shard = wanted.groupby("shard").size().to_dict()
        self.shard_names = sorted(index["shard"].unique())
        self.checksums = read_checksums(self.folder)
        unlisted = [s for s in self.shard_names if s not in self.checksums]
        if unlisted:
            raise DamagedRelease(f"{self.folder / 'SHA256SUMS'} lists no checksum for {', '.join(unlisted)}; write the release again")
        absent = [s for s in self.shard_names if not (self.folder / s).is_file()]
        if absent:
            raise DamagedRelease(
                f"{self.folder}: shard(s) {', '.join(absent)} of index.parquet are missing; restore them or write the release again"
            )

    def plan(self, epoch: int, seed: int, shuffle: bool, rank: int, world: int, max_steps: int) -> StreamPlan:
        if len(self.shard_names) < world:
            raise ValueError(
                f"{self.folder}: {len(self.shard_names)} shards cannot be dealt to {world} processes; "
                f"write smaller shards (dataset_shards' shard_bytes)"
            )
        order = list(np.random.default_rng([seed, epoch]).permutation(self.shard_names)) if shuffle else list(self.shard_names)
        dealt = [order[r::world] for r in range(world)]
        counts = [sum(self.rows_per_shard.get(s, 0) for s in mine) for mine in dealt]
        if shuffle:  # training: the same number of full batches on every process
            steps = min(counts) // self.batch_size
        else:
            steps = math.ceil(counts[rank] / self.batch_size)
        if max_steps:
            steps = min(steps, max_steps)
        return StreamPlan(
            tuple(str(self.folder / s) for s in dealt[rank]),
            steps,
            int(np.random.default_rng([seed, epoch, rank]).integers(2**31)),
            shuffle,
        )

    def _read(self, shards: tuple[str, ...]) -> Iterator[tuple[str, str, bytes]]:
        """(shard, key, png) of the wanted samples, each shard verified before its first sample."""
        for shard in shards:
            verify_shard(Path(shard), self.checksums[Path(shard).name])
            stream = wds.WebDataset([shard], shardshuffle=False, empty_check=False, nodesplitter=_already_dealt).to_tuple("__key__", "png")
            yield from ((shard, key, png) for key, png in stream if key in self.label_of)

    def _samples(self, plan: StreamPlan) -> Iterator[tuple[np.ndarray, int]]:
        kept = self._read(plan.shards)
        if plan.shuffle:
            kept = _buffer_shuffle(kept, self.buffer, np.random.default_rng(plan.seed))
        for shard, key, png in kept:
            try:
                image = _decode(png, self.size)
            except Exception as exc:  # Pillow signals a corrupt PNG in many ways (OSError, SyntaxError, ValueError, ...)
                raise DamagedRelease(f"{shard}: sample {key}: its PNG does not decode ({type(exc).__name__}: {exc})") from exc
            yield image, self.label_of[key]

    def __call__(self, plan: StreamPlan) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        def gather():
            images, labels, made = [], [], 0
            for image, label in self._samples(plan):
                images.append(image)
                labels.append(label)
                if len(images) == self.batch_size:
                    yield torch.from_numpy(np.stack(images)), torch.tensor(labels, dtype=torch.int64)
                    images, labels, made = [], [], made + 1
                    if made == plan.steps:
                        return
            if images:  # validation: the last, partial batch
                yield torch.from_numpy(np.stack(images)), torch.tensor(labels, dtype=torch.int64)

        return prefetch_to_device(gather(), self.device, self.prefetch)


def _already_dealt(urls):
    """The plan's shards are this process's already (see :meth:`StreamedBatches.plan`): no further split."""
    return urls


def _decode(png: bytes, size: int) -> np.ndarray:
    """As the packed array holds it: 8-bit gray at size × size (bilinear)."""
    with Image.open(io.BytesIO(png)) as image:
        image = image.convert("L")
        if image.size != (size, size):
            image = image.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None)
        return np.asarray(image, np.uint8)


def _buffer_shuffle(items: Iterator, size: int, rng: np.random.Generator) -> Iterator:
    """A seeded shuffle through a buffer of ``size`` items (the streaming form of a permutation)."""
    buffer: list = []
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
            continue
        k = int(rng.integers(size))
        yield buffer[k]
        buffer[k] = item
    order = rng.permutation(len(buffer))
    yield from (buffer[k] for k in order)
