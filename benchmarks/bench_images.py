#!/usr/bin/env python3
"""Per-class image step throughput: 3-channel 16-bit 1024x1024 TIFFs -> one merged 8-bit PNG.

Measured in one run, on the same images (read once beforehand so every variant meets a warm cache):
  floor  decode the three channels and encode one PNG, nothing else (the I/O + codec bound). PNG
         encoding time depends on the pixels, so the floor encodes the very pixels the pipeline
         writes (computed beforehand, held in memory), with the same encoder settings;
  naive  the original scripts' way: np.percentile per channel, float64 arithmetic, PIL save at its defaults;
  ours   cytoimagenet_assets.images.build_class.process_image (histogram percentiles, float32 in place),
         with 1 process and with 2 processes;
  kept   ours with ``channels: preserved`` (each channel's PNG written too), 1 process: its cost over ours.
Targets: ours >= 70% of the floor; >= 1.8x with 2 processes over 1.

    python benchmarks/bench_images.py [--images 48] [--size 1024] [--workdir /tmp/bench_images]
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image
from scipy import ndimage

from cytoimagenet_assets.images.build_class import CHANNELS_DIR, ImageTask, process_image, save_png
from cytoimagenet_assets.images.process import merge, to_uint8


def make_images(folder: Path, count: int, size: int) -> list[tuple[str, ...]]:
    """Smooth blobs with shot noise in a 12-bit range, like a fluorescence camera's 16-bit TIFFs."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    images = []
    for i in range(count):
        paths = []
        for c in range(3):
            path = folder / f"img{i:03d}_w{c + 1}.tif"
            if not path.exists():
                field = ndimage.gaussian_filter(rng.random((size // 4, size // 4)).astype(np.float32), 2)
                field = np.kron(field, np.ones((4, 4), np.float32))
                image = rng.poisson(np.clip((field - field.mean()) * 40000 + 300, 50, 4000)).astype(np.uint16)
                tifffile.imwrite(path, image)
            paths.append(str(path))
        images.append(tuple(paths))
    return images


def floor_one(args) -> None:
    paths, pixels, out = args
    channels = [tifffile.imread(p) for p in paths]
    assert channels[0].shape == pixels.shape
    save_png(pixels, out)


def naive_one(args) -> None:
    paths, out = args
    merged = None
    for p in paths:
        image = tifffile.imread(p).astype(np.float64)
        low, high = np.percentile(image, 0.1), np.percentile(image, 99.9)
        image = np.clip((image - low) / (high - low), 0, 1)
        merged = image if merged is None else merged + image
    Image.fromarray((merged / len(paths) * 255).round().astype(np.uint8)).save(out, format="PNG")


def ours_one(task: ImageTask) -> None:
    written, dropped = process_image(task)
    assert written and not dropped, dropped


def timed(fn, items, processes: int) -> float:
    """Images per second; a pool is started and warmed up (imports, first task) before the clock
    starts, as it is amortized over a class of a thousand images in the pipeline."""
    if processes == 1:
        started = time.perf_counter()
        for item in items:
            fn(item)
        return len(items) / (time.perf_counter() - started)
    with ProcessPoolExecutor(processes) as pool:
        list(pool.map(fn, items[:processes], chunksize=1))
        started = time.perf_counter()
        list(pool.map(fn, items, chunksize=2))
        return len(items) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=2, help="best of N for each measurement")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench_images"))
    args = parser.parse_args()
    images = make_images(args.workdir / "raw", args.images, args.size)
    out = args.workdir / "out"
    for paths in images:  # warm the page cache
        for p in paths:
            Path(p).read_bytes()

    def fresh() -> Path:
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        return out

    def best(fn, make_items, processes):
        return max(timed(fn, make_items(), processes) for _ in range(args.repeats))

    outputs = [to_uint8(merge([tifffile.imread(p) for p in paths])) for paths in images]
    floor = best(floor_one, lambda: [(p, o, fresh() / f"{i}.png") for i, (p, o) in enumerate(zip(images, outputs))], 1)
    naive = best(naive_one, lambda: [(p, fresh() / f"{i}.png") for i, p in enumerate(images)], 1)
    tasks = lambda: [ImageTask(i, f"b-{i}", p, 0, (0, i), str(fresh())) for i, p in enumerate(images)]
    ours_1 = best(ours_one, tasks, 1)
    ours_2 = best(ours_one, tasks, 2)

    def kept_tasks() -> list[ImageTask]:
        (fresh() / CHANNELS_DIR).mkdir()
        return [ImageTask(i, f"b-{i}", p, 0, (0, i), str(out), channel_names=("w1", "w2", "w3")) for i, p in enumerate(images)]

    kept = best(ours_one, kept_tasks, 1)
    kept_bytes = sum(f.stat().st_size for f in (out / CHANNELS_DIR).glob("*.png")) / len(images)
    merged_bytes = sum(f.stat().st_size for f in out.glob("*.png")) / len(images)
    print(f"{args.images} images of 3 x {args.size}x{args.size} 16-bit TIFF channels, {os.cpu_count()} cores")
    print(f"floor (decode 3 + encode 1 PNG): {floor:.2f} images/s")
    print(f"naive (np.percentile, float64):  {naive:.2f} images/s")
    print(f"ours, 1 process:                 {ours_1:.2f} images/s  = {ours_1 / floor:.2f} of the floor, {ours_1 / naive:.2f}x naive")
    print(f"ours, 2 processes:               {ours_2:.2f} images/s  = {ours_2 / ours_1:.2f}x one process")
    print(
        f"ours, channels kept, 1 process:  {kept:.2f} images/s  = {ours_1 / kept:.2f}x the time of ours; "
        f"{kept_bytes:,.0f} B of channel PNGs per image beside {merged_bytes:,.0f} B merged"
    )
    print(
        f"targets: >= 0.70 of floor ({'met' if ours_1 / floor >= 0.7 else 'NOT met'}), >= 1.8x with 2 processes "
        f"({'met' if ours_2 / ours_1 >= 1.8 else 'NOT met'})"
    )
    print(
        f"RESULT bench_images images_per_s_core={ours_1:.2f} of_floor={ours_1 / floor:.2f} vs_naive={ours_1 / naive:.2f} "
        f"speedup_2proc={ours_2 / ours_1:.2f} channels_kept_time_ratio={ours_1 / kept:.2f} channel_bytes_per_image={kept_bytes:.0f} "
        f"merged_bytes_per_image={merged_bytes:.0f}"
    )


if __name__ == "__main__":
    main()
