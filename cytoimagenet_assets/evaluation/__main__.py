"""Evaluation helpers from the shell.

    python -m cytoimagenet_assets.evaluation bbbc021-treatments <BBBC021_v1_image.csv> <BBBC021_v1_moa.csv>
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cytoimagenet_assets.evaluation.protocols import bbbc021_images, bbbc021_treatments


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cytoimagenet_assets.evaluation")
    commands = parser.add_subparsers(dest="command", required=True)
    treatments = commands.add_parser("bbbc021-treatments", help="the BBBC021 treatment table (DMSO excluded)")
    treatments.add_argument("image_csv", type=Path)
    treatments.add_argument("moa_csv", type=Path)
    args = parser.parse_args(argv)
    table = bbbc021_treatments(bbbc021_images(args.image_csv, args.moa_csv))
    print(f"treatments={len(table)} compounds={table['compound'].nunique()} moas={table['moa'].nunique()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
