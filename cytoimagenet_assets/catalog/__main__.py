"""``python -m cytoimagenet_assets.catalog docs``: write the per-source documentation page."""

from __future__ import annotations

import argparse
from pathlib import Path

from cytoimagenet_assets.catalog import load_catalog
from cytoimagenet_assets.catalog.docs import sources_page
from cytoimagenet_assets.storage import write_text

DEFAULT_PAGE = Path("docs") / "sources.md"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cytoimagenet_assets.catalog", description=__doc__)
    parser.add_argument("command", choices=["docs"])
    parser.add_argument("--catalog", default="cytoimagenet", help="demo, cytoimagenet or the path of a catalog YAML")
    parser.add_argument("--out", type=Path, default=DEFAULT_PAGE)
    args = parser.parse_args(argv)
    write_text(args.out, sources_page(load_catalog(args.catalog)))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
