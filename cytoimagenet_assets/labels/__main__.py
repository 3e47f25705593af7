"""Assign weak labels to a merged metadata table, without Dagster.

    python -m cytoimagenet_assets.labels <merged.parquet> --out classes.parquet [--threshold 287 --target 1000 --cap 10000 --seed 0]

Writes one row per assigned image (idx, label, category, class_key) and prints the number of
classes and images. Rows that name no image file (metadata only) take no part and are counted;
whether the files named can be had is the pipeline's question (it knows the raw folders).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

from cytoimagenet_assets.catalog.settings import LABEL_CATEGORIES
from cytoimagenet_assets.labels.assign import LabelSettings, assign_labels, with_class_keys
from cytoimagenet_assets.labels.availability import unavailable_reasons
from cytoimagenet_assets.labels.tables import ASSIGNMENT_COLUMNS
from cytoimagenet_assets.storage import write_parquet


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cytoimagenet_assets.labels", description=__doc__.split("\n\n")[0])
    parser.add_argument("merged", type=Path, help="merged metadata table (Parquet)")
    parser.add_argument("--out", type=Path, required=True)
    defaults = LabelSettings()
    parser.add_argument("--threshold", type=int, default=defaults.threshold)
    parser.add_argument("--target", type=int, default=defaults.target)
    parser.add_argument("--cap", type=int, default=defaults.cap)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--categories", default=",".join(LABEL_CATEGORIES), help="comma-separated label categories to use")
    args = parser.parse_args(argv)
    try:
        config = LabelSettings(args.threshold, args.target, args.cap, args.seed, tuple(c.strip() for c in args.categories.split(",")))
        started = time.perf_counter()
        merged = pd.read_parquet(args.merged, columns=ASSIGNMENT_COLUMNS)
        reasons = unavailable_reasons(merged, dict.fromkeys(merged["dir_name"].unique()))
        assigned = assign_labels(merged[reasons.isna()].reset_index(drop=True), config)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    assigned = with_class_keys(assigned)
    write_parquet(assigned, args.out)
    classes = assigned.groupby(["category", "label"]).size()
    print(
        f"{len(classes)} classes, {len(assigned)} images from {len(merged)} rows ({int(reasons.notna().sum())} metadata-only left out) "
        f"in {time.perf_counter() - started:.1f} s -> {args.out}"
    )
    for category, n in assigned.drop_duplicates(["category", "label"])["category"].value_counts().items():
        print(f"  {category}: {n} classes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
