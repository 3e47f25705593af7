"""Training input streamed from the WebDataset release (``dataset_shards``) instead of the packed
memory-mapped array: what many nodes use when the dataset sits on object storage or a shared volume
and packing it on every node is not an option.

Each epoch the shards are put in a seeded order and dealt to the processes round-robin (rank r
reads shards r, r + world, ...), so every process reads only its own files. A process decodes the
PNGs of its shards in a prefetch thread, keeps the samples of its split (the same grouped,
stratified split as the memory-mapped input, computed from ``index.parquet``), shuffles them through
a seeded buffer and yields uint8 batches; every process runs the same number of steps (the smallest
any of them can fill), as DistributedDataParallel requires. Decoding is the costly part (one core
decodes fewer images a second than a fast GPU trains on): with ``decode_workers``, a process's
batches are decoded by that many worker processes, started once and kept (spawned, so they share no
CUDA state or locks with the trainer; a script training with them needs the usual ``if __name__ ==
"__main__":`` guard), a few batches ahead and in order — the same batches as decoding in the
prefetch thread. What stays in the training process (reading the tars, the checksums, the shuffle)
then sets its ceiling (``benchmarks/bench_train.py --input-only``).

The release is verified before it is used: every shard of the index must be listed in SHA256SUMS
and present, and a process hashes each shard the first time it opens it (``verify_shard``), so a
damaged or replaced shard stops training with :class:`DamagedRelease` naming it; a sample whose PNG
does not decode names its shard and key.
"""

from __future__ import annotations

import functools
import hashlib
import io
import itertools
import json
import math
import multiprocessing
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import torch
import webdataset as wds
from PIL import Image

from cytoimagenet_assets.model.packed_dataset import prefetch_to_device
from cytoimagenet_assets.storage import DamagedRelease, read_checksums, verify_shard


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

    def batches(self, rows: np.ndarray, batch_size: int, device: torch.device, size: int, decode_workers: int = 0) -> "StreamedBatches":
        return StreamedBatches(self, rows, batch_size, device, size, decode_workers=decode_workers)


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
        decode_workers: int = 0,
    ):
        index = release.index
        self.folder, self.size, self.batch_size, self.device = release.folder, size, batch_size, device
        self.buffer, self.prefetch, self.decode_workers = buffer, prefetch, decode_workers
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

    def _kept(self, plan: StreamPlan) -> Iterator[tuple[str, str, bytes]]:
        """The plan's samples in training order (through the seeded shuffle buffer when training)."""
        kept = self._read(plan.shards)
        return _buffer_shuffle(kept, self.buffer, np.random.default_rng(plan.seed)) if plan.shuffle else kept

    def __call__(self, plan: StreamPlan) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The plan's batches: its full batches (training), or all with the last partial one (validation)."""
        chunks = itertools.islice(_chunked(self._kept(plan), self.batch_size), plan.steps)

        def gather():
            for images, chunk in _decoded(chunks, self.size, self.decode_workers):
                yield torch.from_numpy(images), torch.tensor([self.label_of[key] for _, key, _ in chunk], dtype=torch.int64)

        return prefetch_to_device(gather(), self.device, self.prefetch)


def _already_dealt(urls):
    """The plan's shards are this process's already (see :meth:`StreamedBatches.plan`): no further split."""
    return urls


def _chunked(items: Iterator, size: int) -> Iterator[list]:
    while chunk := list(itertools.islice(items, size)):
        yield chunk


def _decoded(chunks: Iterator[list], size: int, workers: int) -> Iterator[tuple[np.ndarray, list]]:
    """(images, chunk) of each chunk of (shard, key, png), in order: decoded here, or by ``workers``
    processes with at most two chunks per worker in flight (reading ahead no further)."""
    if not workers:
        yield from ((_decode_batch(chunk, size), chunk) for chunk in chunks)
        return
    pool, pending = _decoders(workers), deque()
    for chunk in chunks:
        pending.append((pool.submit(_decode_batch, chunk, size), chunk))
        if len(pending) >= 2 * workers:
            future, done = pending.popleft()
            yield future.result(), done
    while pending:
        future, done = pending.popleft()
        yield future.result(), done


@functools.cache
def _decoders(workers: int) -> ProcessPoolExecutor:
    """This process's decoding workers, started on first use and kept for every later epoch and split."""
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def _decode_batch(chunk: list[tuple[str, str, bytes]], size: int) -> np.ndarray:
    """The chunk's PNGs as one uint8 (n, size, size) array; a PNG that does not decode names its shard and key."""
    images = np.empty((len(chunk), size, size), np.uint8)
    for i, (shard, key, png) in enumerate(chunk):
        try:
            images[i] = _decode(png, size)
        except Exception as exc:  # Pillow signals a corrupt PNG in many ways (OSError, SyntaxError, ValueError, ...)
            raise DamagedRelease(f"{shard}: sample {key}: its PNG does not decode ({type(exc).__name__}: {exc})") from exc
    return images


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
