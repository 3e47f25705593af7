#!/usr/bin/env python3
"""What keeping the channels costs: the demo built headless twice in one run, with the label setting
``channels: merged`` (the baseline, CytoImageNet's recipe) and ``channels: preserved``, each on a fresh
data home and instance, as ``make demo`` builds it (``python -m cytoimagenet_assets.build``).

Figures: the class-image stage's seconds (from the build's own stage times) per published image, the
merged PNGs' and the per-channel PNGs' bytes per image, the channel release's bytes, and the merged
release compared byte for byte (its shards' SHA-256 must be the same in both builds).

    python benchmarks/bench_channels.py [--workdir /tmp/bench_channels]

The last line: ``RESULT bench_channels images=... class_images_s=<merged>,<preserved> time_ratio=...
merged_bytes_per_image=... channel_bytes_per_image=... channels_per_image=... channel_release_bytes=...
merged_release_identical=...``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

from cytoimagenet_assets.catalog import catalog_path
from cytoimagenet_assets.storage import DataHome

REPO = Path(__file__).resolve().parents[1]


def build(workdir: Path, channels: str) -> dict:
    """The demo built with ``labels: {channels: <channels>}``; its stage times, dataset and releases."""
    run = workdir / channels
    shutil.rmtree(run, ignore_errors=True)
    (run / "dagster").mkdir(parents=True)
    shutil.copy(REPO / "dagster.yaml", run / "dagster" / "dagster.yaml")
    catalog = yaml.safe_load(catalog_path("demo").read_text())
    catalog["labels"] = {**(catalog.get("labels") or {}), "channels": channels}
    (run / "catalog.yaml").write_text(yaml.safe_dump(catalog, sort_keys=False))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CYTOIMAGENET_", "DAGSTER_HOME"))},
        "CYTOIMAGENET_CATALOG": str(run / "catalog.yaml"),
        "CYTOIMAGENET_HOME": str(run / "home"),
        "DAGSTER_HOME": str(run / "dagster"),
    }
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "cytoimagenet_assets.build"], cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"the {channels} build failed:\n{(done.stdout + done.stderr)[-4000:]}")
    stages = re.search(r"built in \d+ s \((.*)\)", done.stdout)
    seconds = {name: float(t) for name, t in re.findall(r"(?:^|, )([a-z][a-z ,]*?) (\d+) s", stages[1])}
    data = DataHome(run / "home")
    images = len(pd.read_csv(data.dataset_metadata()))
    channel_pngs = list(data.dataset_dir().glob("*/channels/*.png"))
    release = data.webdataset_channels_dir()
    return {
        "wall_s": time.perf_counter() - started,
        "class_images_s": seconds["class images"],
        "images": images,
        "merged_bytes": sum(p.stat().st_size for p in data.dataset_dir().glob("*/*.png")),
        "channel_bytes": sum(p.stat().st_size for p in channel_pngs),
        "channel_files": len(channel_pngs),
        "channel_release_bytes": sum(p.stat().st_size for p in release.glob("*")) if release.is_dir() else 0,
        "merged_sums": (data.webdataset_dir() / "SHA256SUMS").read_text(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench_channels"))
    args = parser.parse_args()
    merged, preserved = build(args.workdir, "merged"), build(args.workdir, "preserved")
    images = preserved["images"]
    for name, figures in (("merged", merged), ("preserved", preserved)):
        print(
            f"{name}: class images {figures['class_images_s']:.0f} s for {figures['images']} images, build {figures['wall_s']:.0f} s; "
            f"merged PNGs {figures['merged_bytes']:,} B, channel PNGs {figures['channel_bytes']:,} B ({figures['channel_files']} files)"
        )
    print(
        f"RESULT bench_channels images={images} class_images_s={merged['class_images_s']:.0f},{preserved['class_images_s']:.0f} "
        f"time_ratio={preserved['class_images_s'] / max(merged['class_images_s'], 1e-9):.2f} "
        f"merged_bytes_per_image={merged['merged_bytes'] / merged['images']:.0f} "
        f"channel_bytes_per_image={preserved['channel_bytes'] / images:.0f} channels_per_image={preserved['channel_files'] / images:.2f} "
        f"channel_release_bytes={preserved['channel_release_bytes']} "
        f"merged_release_identical={str(merged['merged_sums'] == preserved['merged_sums'] and merged['images'] == images).lower()}"
    )


if __name__ == "__main__":
    main()
