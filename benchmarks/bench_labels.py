#!/usr/bin/env python3
"""Weak-label assignment at full scale, against the naive reference, in one run.

1. Builds the 2.7M-row synthetic merged table with ../shared/bench/make_metadata.py (cached).
2. Times this project's assignment on it in a fresh process (reading the Parquet table included)
   and reads that process's peak RSS.
3. On the first 100,000 rows, times this project and ../shared/bench/label_assignment_reference.py
   and prints the ratio.

Targets on 2 cores: full table <= 15 s and <= 3 GB peak; >= 100x the reference at 100,000 rows.

    python benchmarks/bench_labels.py [--rows 2700000] [--small 100000] [--workdir /tmp/bench_labels]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

from cytoimagenet_assets.catalog.settings import LABEL_CATEGORIES

SHARED_BENCH = Path(__file__).resolve().parents[1].parent / "shared" / "bench"
COLUMNS = ["idx", "dir_name", *LABEL_CATEGORIES]

CHILD = (
    """
import json, resource, sys, time
t0 = time.perf_counter()
import pandas as pd
from cytoimagenet_assets.catalog.settings import LabelSettings
from cytoimagenet_assets.labels.assign import assign_labels
df = pd.read_parquet(sys.argv[1], columns=%r)
if int(sys.argv[2]):
    df = df.iloc[: int(sys.argv[2])]
t1 = time.perf_counter()
out = assign_labels(df, LabelSettings())
t2 = time.perf_counter()
print(json.dumps({"seconds": t2 - t0, "read_s": t1 - t0, "assign_s": t2 - t1, "rows": len(df),
                  "classes": int(out.groupby(["category", "label"]).ngroups), "images": len(out),
                  "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2}))
"""
    % COLUMNS
)


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, SHARED_BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_ours(table: Path, rows: int = 0) -> dict:
    """This project's assignment in a fresh process: seconds from start (imports excluded) and peak RSS."""
    done = subprocess.run([sys.executable, "-c", CHILD, str(table), str(rows)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2_700_000)
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench_labels"))
    args = parser.parse_args()
    if not SHARED_BENCH.is_dir():
        sys.exit(f"needs {SHARED_BENCH} (the shared benchmark generator and reference)")
    args.workdir.mkdir(parents=True, exist_ok=True)
    table = args.workdir / f"merged_{args.rows}.parquet"
    if not table.exists():
        started = time.perf_counter()
        _load("make_metadata").make(args.rows, 0).to_parquet(table, index=False)
        print(f"generated {args.rows:,} rows in {time.perf_counter() - started:.1f} s -> {table}")

    full = run_ours(table)
    print(
        f"ours, full table: {full['rows']:,} rows, {full['classes']} classes, {full['images']:,} images, "
        f"{full['seconds']:.2f} s (read {full['read_s']:.2f} s + assign {full['assign_s']:.2f} s), peak {full['peak_gb']:.2f} GB"
    )

    small = run_ours(table, args.small)
    import pandas as pd

    reference = _load("label_assignment_reference")
    df = pd.read_parquet(table).iloc[: args.small]
    started = time.perf_counter()
    ref = reference.assign(df)
    ref_s = time.perf_counter() - started
    ratio = ref_s / small["assign_s"]
    print(
        f"first {args.small:,} rows: ours {small['assign_s']:.2f} s ({small['classes']} classes, {small['images']:,} images), "
        f"reference {ref_s:.1f} s ({ref['label'].nunique()} classes, {len(ref):,} images): {ratio:.0f}x"
    )
    print(
        f"targets: full <= 15 s ({'met' if full['seconds'] <= 15 else 'NOT met'}), "
        f"<= 3 GB ({'met' if full['peak_gb'] <= 3 else 'NOT met'}), "
        f">= 100x reference ({'met' if ratio >= 100 else 'NOT met'})"
    )
    print(f"RESULT bench_labels seconds_full={full['seconds']:.2f} peak_gb={full['peak_gb']:.2f} vs_reference_100k={ratio:.0f}")


if __name__ == "__main__":
    main()
