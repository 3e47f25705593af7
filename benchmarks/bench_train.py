#!/usr/bin/env python3
"""Training throughput of EfficientNet-B0: the real input pipeline against the device's ceiling.

  end to end   batches gathered from packed uint8 shards (memory-mapped) by the prefetch thread
               (``--input memmap``), or decoded from WebDataset tar shards of PNGs (``--input
               webdataset``, what `pretrained_model` streams with ``stream: true``), copied to the
               device, rotated and normalized there, forward + backward + Adam step (AMP and
               channels_last on CUDA) — exactly what `pretrained_model` runs;
  ceiling      the same steps on a synthetic batch already in device memory (no input pipeline).

Targets on one H100: >= 2,500 images/s end to end (NVIDIA's published EfficientNet-B0 AMP figure on
one A100 is 2,489) and the input pipeline >= 90% of the ceiling.

    python benchmarks/bench_train.py --device {cpu,cuda} [--input {memmap,webdataset}]
        [--batch-size 64 --steps 50 --warmup 10 --images 8192]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from cytoimagenet_assets.catalog.settings import LABEL_CATEGORIES
from cytoimagenet_assets.images.release import write_release
from cytoimagenet_assets.model.loop import DeviceAugment, _autocast, build_model
from cytoimagenet_assets.model.shards import Shards
from cytoimagenet_assets.model.stream import WebDatasetShards


def make_shards(folder: Path, images: int, size: int, classes: int) -> Shards:
    """A packed shard folder of smooth random images (the same layout `pack` writes)."""
    folder.mkdir(parents=True, exist_ok=True)
    array = np.lib.format.open_memmap(folder / "images.npy", mode="w+", dtype=np.uint8, shape=(images, size, size))
    rng = np.random.default_rng(0)
    tile = rng.integers(0, 255, (size, size), dtype=np.uint8)
    for i in range(images):
        array[i] = np.roll(tile, i, axis=1)
    array.flush()
    np.save(folder / "labels.npy", rng.integers(0, classes, images).astype(np.int64))
    (folder / "classes.json").write_text("[" + ",".join('{"class_key": "c%d"}' % c for c in range(classes)) + "]")
    pd.DataFrame({"class_key": [], "filename": [], "idx": []}).to_csv(folder / "index.csv", index=False)
    return Shards(folder)


def make_release(folder: Path, images: int, size: int, classes: int) -> WebDatasetShards:
    """A WebDataset release of the same images as PNGs (what `dataset_shards` writes), 256 MB shards."""
    from PIL import Image

    packed = make_shards(folder / "packed", images, size, classes)
    dataset = folder / "dataset"
    rows = []
    for i, (image, label) in enumerate(zip(packed.images, packed.labels)):
        key = f"c{label:04d}"
        (dataset / key).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.asarray(image)).save(dataset / key / f"{key}-{i:08d}.png", compress_level=3)
        rows.append(
            {
                "label": key,
                "category": "compound",
                "database": "db",
                "name": "bench",
                "dir_name": "bench",
                "path": key,
                "filename": f"{key}-{i:08d}.png",
                "idx": str(i),
                "crop": False,
                "scaling": 1.0,
                "x_min": 0,
                "x_max": size,
                "y_min": 0,
                "y_max": size,
            }
        )
    metadata = pd.DataFrame(rows).reindex(columns=[*rows[0], *LABEL_CATEGORIES, "microscopy"])
    write_release(metadata, dataset, folder / "release", {}, "bench", shard_bytes=256_000_000)
    return WebDatasetShards(folder / "release")


def run(step, batches, warmup: int, steps: int, device: torch.device, batch_size: int) -> float:
    it = iter(batches)
    for _ in range(warmup):
        step(*next(it))
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        step(*next(it))
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch_size / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--input", choices=["memmap", "webdataset"], default="memmap")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 50 on cuda, 4 on cpu)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 10 on cuda, 1 on cpu)")
    parser.add_argument("--images", type=int, default=8192)
    parser.add_argument("--classes", type=int, default=894)
    args = parser.parse_args()
    device = torch.device(args.device)
    steps = args.steps or (50 if device.type == "cuda" else 4)
    warmup = args.warmup if args.warmup is not None else (10 if device.type == "cuda" else 1)
    amp = channels_last = device.type == "cuda"
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    model = build_model(args.classes).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    augment = DeviceAugment(args.size, device, channels_last)
    counter = iter(range(10**9))

    def step(x_u8, y, augmented=False):
        x = x_u8 if augmented else augment(x_u8, next(counter))
        with _autocast(device, amp):
            loss = F.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    needed = (steps + warmup) * args.batch_size
    with tempfile.TemporaryDirectory() as tmp:
        make = make_shards if args.input == "memmap" else make_release
        shards = make(Path(tmp) / "shards", max(args.images, needed), args.size, args.classes)
        batches = shards.batches(np.arange(len(shards.labels)), args.batch_size, device, args.size)
        plan = batches.plan(0, 0, True, 0, 1, steps + warmup)
        end_to_end = run(step, batches(plan), warmup, steps, device, args.batch_size)

    x = augment(torch.randint(0, 255, (args.batch_size, args.size, args.size), dtype=torch.uint8, device=device), 0)
    y = torch.randint(0, args.classes, (args.batch_size,), device=device)
    ceiling = run(lambda a, b: step(a, b, augmented=True), iter([(x, y)] * (steps + warmup)), warmup, steps, device, args.batch_size)

    gpu = torch.cuda.get_device_name(device).replace(" ", "_") if device.type == "cuda" else "none"
    print(
        f"device {device} ({gpu}), input {args.input}, batch {args.batch_size}, {args.size}px, {steps} timed steps after {warmup} warm-up, "
        f"amp={amp}, channels_last={channels_last}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
    )
    print(f"end to end (shards -> device augment -> step): {end_to_end:.1f} images/s")
    print(f"ceiling (batch already on the device):        {ceiling:.1f} images/s")
    print(f"input pipeline: {end_to_end / ceiling:.2f} of the ceiling")
    print(
        f"RESULT bench_train device={device.type} gpu={gpu} input={args.input} batch={args.batch_size} "
        f"images_per_s={end_to_end:.1f} ceiling_images_per_s={ceiling:.1f} "
        f"of_ceiling={end_to_end / ceiling:.2f}"
    )


if __name__ == "__main__":
    main()
