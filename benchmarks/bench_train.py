#!/usr/bin/env python3
"""Training throughput of EfficientNet-B0: the real input pipeline against the device's ceiling,
and the input pipeline alone per CPU core.

  end to end   batches gathered from packed uint8 shards (memory-mapped) by the prefetch thread
               (``--input memmap``), or decoded from WebDataset tar shards of PNGs (``--input
               webdataset``, what `pretrained_model` streams with ``stream: true``), copied to the
               device, augmented and normalized there, forward + backward + Adam step — the step
               `pretrained_model` runs (``loop.Learner``, the recipe's bf16/channels_last/fused Adam,
               ``--compile`` as the recipe's ``compile``, its warm-up steps untimed);
  ceiling      the same steps on a batch already augmented in device memory (the model alone).

  --input-only the input pipeline without a model, for both inputs: images per CPU-second of this
               process (the prefetch thread included; the WebDataset release with its PNG decoding, no
               decode workers) at the recipe's batch and size, each beside a baseline run here on the
               same images — a contiguous copy of the array's rows (memmap), a plain Pillow decode
               loop over the same PNGs (WebDataset) — and the cores one GPU needs at 4,000 images/s;
               then the release with ``--decode-workers`` decoding: what is left to the training
               process itself (reading the tars, checksums, shuffling), per CPU-second of it.

Targets: >= 4,000 images/s end to end on one H100/H200 (NVIDIA's published EfficientNet-B0 AMP
figure on one A100 is 2,489) and the input pipeline >= 0.90 of the ceiling; the memmap input
>= 500 images/s per core.

    python benchmarks/bench_train.py --device {cpu,cuda} [--input {memmap,webdataset}] [--compile {off,inductor,eager}]
        [--batch-size 64 --steps 50 --warmup 10 --images 8192]
    python benchmarks/bench_train.py --input-only [--batch-size 256 --images 2048 --decode-workers 2]
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from cytoimagenet_assets.catalog.settings import LABEL_CATEGORIES, TrainSettings
from cytoimagenet_assets.demo.cells import Morphology, render_field
from cytoimagenet_assets.devices import fit_cpu_threads
from cytoimagenet_assets.model.loop import DeviceAugment, Learner, prepare_device
from cytoimagenet_assets.model.packed_dataset import PackedDataset
from cytoimagenet_assets.model.stream import WebDatasetShards
from cytoimagenet_assets.release.webdataset import write_release

GPU_TARGET = 4000  # images/s of one H100/H200 the input must keep up with


def make_shards(folder: Path, images: int, size: int, classes: int) -> PackedDataset:
    """A packed shard folder, complete as `pack` writes it (a training can run on it), of synthetic
    nucleus fields (the demo's renderer: PNGs of them compress as fluorescence crops do, ~30 KB at
    224 px), 16 fields shifted; random labels, each image its own source image."""
    folder.mkdir(parents=True, exist_ok=True)
    array = np.lib.format.open_memmap(folder / "images.npy", mode="w+", dtype=np.uint8, shape=(images, size, size))
    fields = [
        (render_field(np.random.default_rng(k), Morphology(), ["nucleus"], (size, size))["nucleus"] * 255).astype(np.uint8)
        for k in range(16)
    ]
    for i in range(images):
        array[i] = np.roll(fields[i % 16], i // 16, axis=1)
    array.flush()
    labels = np.random.default_rng(0).integers(0, classes, images).astype(np.int64)
    np.save(folder / "labels.npy", labels)
    keys = [f"c{c:04d}" for c in range(classes)]
    counts = np.bincount(labels, minlength=classes)
    (folder / "classes.json").write_text(
        json.dumps([{"class_key": k, "label": k, "category": "compound", "images": int(n)} for k, n in zip(keys, counts)])
    )
    pd.DataFrame(
        {"class_key": [keys[c] for c in labels], "filename": [f"{keys[c]}-{i:08d}.png" for i, c in enumerate(labels)], "idx": range(images)}
    ).to_csv(folder / "index.csv", index=False)
    return PackedDataset(folder)


def make_release(folder: Path, images: int, size: int, classes: int) -> WebDatasetShards:
    """A WebDataset release of the same images as PNGs (what `dataset_shards` writes), 256 MB shards;
    the packed array of the same images is in ``folder/packed``."""
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


def timed_steps(step, batches, warmup: int, steps: int, device: torch.device, batch_size: int) -> float:
    """images/s of ``steps`` steps after ``warmup`` untimed ones (compilation, cudnn autotuning)."""
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


def epochs_of(batches, steps: int):
    """``steps`` batches of the data's shuffled epochs, one after another (as many as it takes)."""
    epoch = 0
    while steps > 0:
        plan = batches.plan(epoch, 0, True, 0, 1, steps)
        if not plan:
            raise ValueError("too few images for one batch")
        yield from batches(plan)
        steps, epoch = steps - len(plan), epoch + 1


def training_throughput(config: TrainSettings, data, device: torch.device, warmup: int, steps: int) -> tuple[float, float]:
    """(end to end, ceiling) images/s of the training step under ``config`` on ``data``."""
    learner = Learner.build(config, len(data.classes), device)
    augment = DeviceAugment.of(config, device)
    learner.net.train()
    seeds = iter(range(10**9))

    def step(x_u8, y):
        learner.step(augment(x_u8, next(seeds)), y)

    rows = np.arange(len(data.labels))
    batches = data.batches(rows, config.batch_size, device, config.input_size)
    end_to_end = timed_steps(step, epochs_of(batches, warmup + steps), warmup, steps, device, config.batch_size)
    x = augment(torch.randint(0, 255, (config.batch_size, config.input_size, config.input_size), dtype=torch.uint8, device=device), 0)
    y = torch.randint(0, len(data.classes), (config.batch_size,), device=device)
    ceiling = timed_steps(learner.step, iter([(x, y)] * (warmup + steps)), warmup, steps, device, config.batch_size)
    return end_to_end, ceiling


def cpu_rate(run) -> tuple[float, float]:
    """(images per CPU-second of this process, images per wall-second) of ``run()``, which returns its image count."""
    cpu, wall = time.process_time(), time.perf_counter()
    images = run()
    return images / (time.process_time() - cpu), images / (time.perf_counter() - wall)


def input_only(args, device: torch.device) -> None:
    rows = np.arange(args.images)

    def consume(batches) -> int:
        plan = batches.plan(0, 0, True, 0, 1, 0)
        return sum(len(y) for _, y in batches(plan))

    with tempfile.TemporaryDirectory() as tmp:
        release = make_release(Path(tmp), args.images, args.size, args.classes)
        packed = PackedDataset(Path(tmp) / "packed")
        pngs = [p.read_bytes() for p in sorted((Path(tmp) / "dataset").rglob("*.png"))]

        def copy_rows() -> int:
            images = packed.images
            for start in range(0, len(images), args.batch_size):
                np.array(images[start : start + args.batch_size])
            return len(images)

        def decode_pngs() -> int:
            for png in pngs:
                with Image.open(io.BytesIO(png)) as image:
                    np.asarray(image.convert("L"), np.uint8)
            return len(pngs)

        copy_core, _ = cpu_rate(copy_rows)
        memmap_core, memmap_wall = cpu_rate(lambda: consume(packed.batches(rows, args.batch_size, device, args.size)))
        decode_core, _ = cpu_rate(decode_pngs)
        stream_core, stream_wall = cpu_rate(lambda: consume(release.batches(rows, args.batch_size, device, args.size)))
        decoded = release.batches(rows, args.batch_size, device, args.size, decode_workers=args.decode_workers)
        list(decoded(decoded.plan(0, 0, True, 0, 1, 1)))  # the workers start (once per process)
        trainer_core, workers_wall = cpu_rate(lambda: consume(decoded))
        png_kb = sum(map(len, pngs)) / len(pngs) / 1000

    print(
        f"input only: {args.images} images at {args.size}px, batch {args.batch_size}, to {device}, PNGs {png_kb:.0f} KB on average, "
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
    )
    print(f"memmap:     {memmap_core:,.0f} images/s per core ({memmap_wall:,.0f} wall), {memmap_core / copy_core:.2f} of a contiguous copy")
    print(f"            ({copy_core:,.0f}/core); one GPU at {GPU_TARGET:,} images/s needs {GPU_TARGET / memmap_core:.2f} cores")
    print(f"webdataset: {stream_core:,.0f} images/s per core ({stream_wall:,.0f} wall), {stream_core / decode_core:.2f} of a plain decode")
    print(f"            ({decode_core:,.0f}/core); one GPU at {GPU_TARGET:,} images/s needs {GPU_TARGET / stream_core:.2f} cores")
    print(
        f"webdataset, {args.decode_workers} decode workers: {workers_wall:,.0f} images/s wall; the training process's own share "
        f"{trainer_core:,.0f} images per CPU-second of it (its ceiling, whatever the workers)"
    )
    print(
        f"RESULT bench_train_input device={device.type} size={args.size} batch={args.batch_size} images={args.images} "
        f"memmap_per_core={memmap_core:.0f} memmap_of_copy={memmap_core / copy_core:.2f} "
        f"webdataset_per_core={stream_core:.0f} webdataset_of_decode={stream_core / decode_core:.2f} "
        f"cores_for_{GPU_TARGET}_memmap={GPU_TARGET / memmap_core:.2f} cores_for_{GPU_TARGET}_webdataset={GPU_TARGET / stream_core:.2f} "
        f"decode_workers={args.decode_workers} webdataset_trainer_per_core={trainer_core:.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--input", choices=["memmap", "webdataset"], default="memmap")
    parser.add_argument("--input-only", action="store_true", help="the input pipeline alone, both inputs, per CPU core")
    parser.add_argument("--compile", choices=["off", "inductor", "eager"], default="off")
    parser.add_argument("--batch-size", type=int, default=None, help="default 64 (256 with --input-only)")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 50 on cuda, 4 on cpu)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 10 on cuda, 1 on cpu)")
    parser.add_argument("--images", type=int, default=None, help="default 8192 (2048 with --input-only)")
    parser.add_argument("--classes", type=int, default=894)
    parser.add_argument("--decode-workers", type=int, default=2, help="with --input-only: the release's decoding processes")
    args = parser.parse_args()
    device = prepare_device(torch.device(args.device))
    if device.type == "cpu":
        fit_cpu_threads(print)  # as training does: threads sharing a core with another busy process stall it
    if args.input_only:
        args.batch_size, args.images = args.batch_size or 256, args.images or 2048
        input_only(args, device)
        return
    args.batch_size = args.batch_size or 64
    steps = args.steps or (50 if device.type == "cuda" else 4)
    warmup = args.warmup if args.warmup is not None else (10 if device.type == "cuda" else 1)
    config = TrainSettings(batch_size=args.batch_size, input_size=args.size, compile=args.compile)
    with tempfile.TemporaryDirectory() as tmp:
        make = make_shards if args.input == "memmap" else make_release
        data = make(Path(tmp) / "shards", args.images or 8192, args.size, args.classes)
        end_to_end, ceiling = training_throughput(config, data, device, warmup, steps)

    gpu = torch.cuda.get_device_name(device).replace(" ", "_") if device.type == "cuda" else "none"
    print(
        f"device {device} ({gpu}), input {args.input}, batch {args.batch_size}, {args.size}px, {steps} timed steps after {warmup} warm-up, "
        f"compile={args.compile}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
    )
    print(f"end to end (shards -> device augment -> step): {end_to_end:.1f} images/s")
    print(f"ceiling (batch already on the device):        {ceiling:.1f} images/s")
    print(f"input pipeline: {end_to_end / ceiling:.2f} of the ceiling")
    print(
        f"RESULT bench_train device={device.type} gpu={gpu} input={args.input} batch={args.batch_size} compile={args.compile} "
        f"images_per_s={end_to_end:.1f} ceiling_images_per_s={ceiling:.1f} of_ceiling={end_to_end / ceiling:.2f}"
    )


if __name__ == "__main__":
    main()
