"""``python -m cytoimagenet_assets.embed <folder | channels.csv> --model <model.pt | package dir | package .zip>
--method {concat,merge}_{normalized,raw} | bag_of_channels --out features.parquet``

Prints the rows written and the samples computed; exits 1 when some images could not be read
(their rows are missing from the output, the rest is written; a rerun retries them), 2 on
unusable inputs or model.
"""

import argparse
import sys
from pathlib import Path

from cytoimagenet_assets.catalog.settings import METHODS
from cytoimagenet_assets.embed import EmbedError, embed, inputs_from


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cytoimagenet_assets.embed", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="a folder of images (one sample per file) or a CSV of channel paths (one sample per row)")
    parser.add_argument("--model", type=Path, required=True, help="a training's model.pt, or the bioimage.io package (folder or .zip)")
    parser.add_argument(
        "--method",
        default="concat_normalized",
        choices=list(METHODS),
        help="per-channel features concatenated or the channels merged into one gray image; "
        "0.1/99.9-percentile normalized or raw; or bag_of_channels: each normalized channel's features averaged, "
        "kept per channel too (default concat_normalized; the evaluation's names)",
    )
    parser.add_argument("--out", type=Path, required=True, help="the Parquet file to write (rows already in it are kept)")
    parser.add_argument("--channels", help="CSV only: the channel columns, comma-separated (default: every column)")
    parser.add_argument("--glob", default="**/*", help="folder only: which files (default every image file, recursively)")
    parser.add_argument(
        "--batch-size", type=int, default=64, help="images per forward pass (default 64); lower it when the GPU runs out of memory"
    )
    parser.add_argument("--device", help="cpu, cuda, cuda:1 … (default: cuda when present)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        inputs = inputs_from(args.source, args.channels.split(",") if args.channels else None, args.glob)
        result = embed(
            inputs,
            args.model,
            args.method,
            args.out,
            args.batch_size,
            args.device,
            progress=not args.no_progress,
            log=lambda m: print(m, file=sys.stderr),
        )
    except (EmbedError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"{result.out}: {result.rows} rows, features of length {', '.join(map(str, result.dims)) or '-'}; "
        f"computed {result.computed}, already done {result.reused}"
    )
    for image, reason in result.failed:
        print(f"unreadable: {image}: {reason}", file=sys.stderr)
    return 1 if result.failed else 0


if __name__ == "__main__":
    sys.exit(main())
