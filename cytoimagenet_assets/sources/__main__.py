"""Parse one source into the standardized table, without Dagster.

    python -m cytoimagenet_assets.sources <dir_name> <raw_dir> --out table.parquet [--catalog demo|cytoimagenet|path.yaml]

Works on a metadata download alone: image files that are not there are counted, not required.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cytoimagenet_assets.catalog import CATALOG_ENV, CatalogError, load_catalog
from cytoimagenet_assets.sources import parse_source
from cytoimagenet_assets.sources.table import LABEL_CATEGORIES, ParseError, distinct_labels, label_counts, missing_files
from cytoimagenet_assets.storage import write_parquet


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cytoimagenet_assets.sources", description=__doc__.split("\n\n")[0])
    parser.add_argument("dir_name", help="the source's dir_name in the catalog, e.g. bbbc021, rec_rxrx1, kag_hpa, idr0037")
    parser.add_argument("raw_dir", type=Path, help="folder holding the source's files (or only its metadata)")
    parser.add_argument("--out", type=Path, required=True, help="Parquet file to write")
    parser.add_argument(
        "--catalog", default=None, help="demo, cytoimagenet or a YAML path (default: $CYTOIMAGENET_CATALOG, else cytoimagenet)"
    )
    parser.add_argument("--top", type=int, default=10, help="labels to print per category")
    args = parser.parse_args(argv)
    try:
        catalog = load_catalog(args.catalog or _default_catalog())
        source = catalog.source(args.dir_name)
        parsed = parse_source(source, args.raw_dir)
    except (CatalogError, ParseError, KeyError) as exc:
        print(f"error: {exc.args[0] if isinstance(exc, KeyError) else exc}", file=sys.stderr)
        return 2
    table = parsed.table
    write_parquet(table, args.out)
    missing = missing_files(table, args.raw_dir)
    print(f"{source.dir_name}: {len(table)} rows -> {args.out}")
    print(
        f"referenced files: {parsed.referenced_files}, missing: {len(missing)}, "
        f"rows without image files: {int((table['channel_paths'].map(len) == 0).sum())}"
    )
    print(f"rejected rows: {len(parsed.rejects)}")
    for reason, count in parsed.rejects["reason"].value_counts().head(5).items():
        print(f"  {count} x {reason}")
    if len(parsed.join_misses):
        print(f"rows whose key an annotation table lacks: {int(parsed.join_misses['rows'].sum())}")
        for miss in parsed.join_misses.head(5).itertuples(index=False):
            print(f"  {miss.rows} x {miss.key} not in {miss.table}")
    counts, distinct = label_counts(table, top=args.top), distinct_labels(table)
    for category in LABEL_CATEGORIES:
        labels = counts[category]
        shown = ", ".join(f"{label} ({n})" for label, n in labels.items())
        print(f"{category}: {distinct[category]} labels{': ' + shown if shown else ''}")
    return 0


def _default_catalog() -> str:
    return os.environ.get(CATALOG_ENV) or "cytoimagenet"


if __name__ == "__main__":
    sys.exit(main())
