"""The transfer evaluation from the shell, without Dagster.

    python -m cytoimagenet_assets.evaluation run --model model.pt --benchmark bbbc021=<dir> \\
        [--benchmark coos7=<dir>] [--benchmark cyclops=<dir>] --out report/ \\
        [--backbones random imagenet cytoimagenet fusion] [--methods ...] [--imagenet-weights FILE] \\
        [--aggregation mean median] [--no-tvn] [--tvn-components K] [--batch-size 64] [--device cpu|cuda] [--no-umap]
    python -m cytoimagenet_assets.evaluation bbbc021-treatments <BBBC021_v1_image.csv> <BBBC021_v1_moa.csv>

A benchmark folder is laid out as the real distribution: BBBC021's ``BBBC021_v1_image.csv``,
``BBBC021_v1_moa.csv`` and ``Week*/`` image folders; COOS-7's ``COOS7_v1.1_{train,test1..4}.hdf5``;
CyCLoPs' ``datasets/Chong_{train,valid,test}_set.hdf5`` (DeepLoc's zip, extracted). A damaged
benchmark file (truncated, an HTML page saved in its place, a missing dataset or column) or a missing
image is one line on stderr naming the file, and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cytoimagenet_assets.catalog.settings import BACKBONES, METHODS, RAW_SCALINGS, EvaluationSettings
from cytoimagenet_assets.evaluation.benchmarks import KINDS
from cytoimagenet_assets.evaluation.protocols import BenchmarkFileError, bbbc021_images, bbbc021_treatments, nscb_eligible


def _benchmark(value: str) -> tuple[str, Path]:
    kind, sep, folder = value.partition("=")
    if not sep or kind not in KINDS or not folder:
        raise argparse.ArgumentTypeError(f"expected <{'|'.join(KINDS)}>=<folder>, got {value!r}")
    return kind, Path(folder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cytoimagenet_assets.evaluation", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    treatments = commands.add_parser("bbbc021-treatments", help="the BBBC021 treatment table (DMSO excluded)")
    treatments.add_argument("image_csv", type=Path)
    treatments.add_argument("moa_csv", type=Path)
    run = commands.add_parser("run", help="evaluate a model on benchmark folders and write the report")
    run.add_argument("--model", type=Path, help="a CytoImageNet model.pt (state dict of torchvision's efficientnet_b0)")
    run.add_argument(
        "--benchmark",
        type=_benchmark,
        action="append",
        required=True,
        metavar="KIND=DIR",
        help=f"a benchmark folder; KIND one of {', '.join(KINDS)}; repeat for several",
    )
    run.add_argument("--out", type=Path, required=True, help="report folder (evaluation_report.{md,json,csv}, UMAP PNGs)")
    defaults = EvaluationSettings()
    run.add_argument("--backbones", nargs="+", default=list(defaults.backbones), choices=BACKBONES)
    run.add_argument("--methods", nargs="+", default=list(defaults.methods), choices=list(METHODS))
    run.add_argument("--imagenet-weights", help="EfficientNet-B0 ImageNet weights file (default: the torch cache)")
    run.add_argument(
        "--aggregation", nargs="+", default=list(defaults.aggregations), choices=["mean", "median"], help="BBBC021 treatment aggregation(s)"
    )
    run.add_argument("--no-tvn", action="store_true", help="do not report the TVN variant of BBBC021")
    run.add_argument("--tvn-components", type=int, help="keep at most this many whitened dimensions in TVN")
    run.add_argument(
        "--tvn-variance",
        type=float,
        default=defaults.tvn_variance,
        help="TVN whitens the components explaining this share of the controls' variance (1: all with variance)",
    )
    run.add_argument(
        "--raw-scaling",
        default=defaults.raw_scaling,
        choices=RAW_SCALINGS,
        help="*_raw methods: /255 whatever the bit depth (original: the paper's Keras model), or by the integer type's range",
    )
    run.add_argument(
        "--batch-size",
        type=int,
        default=defaults.batch_size,
        help=f"samples per forward pass and per read of the benchmark (default {defaults.batch_size}); lower it when memory runs out",
    )
    run.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    run.add_argument("--seed", type=int, default=defaults.seed)
    run.add_argument("--no-umap", action="store_true", help="skip the UMAP figures")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.command == "bbbc021-treatments":
        try:
            table = bbbc021_treatments(bbbc021_images(args.image_csv, args.moa_csv))
        except (BenchmarkFileError, FileNotFoundError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(
            f"treatments={len(table)} compounds={table['compound'].nunique()} moas={table['moa'].nunique()} "
            f"nscb_treatments={int(nscb_eligible(table).sum())}"
        )
        return 0
    from cytoimagenet_assets.evaluation.run import BenchmarkInput, run_evaluation

    settings = EvaluationSettings(
        backbones=tuple(args.backbones),
        methods=tuple(args.methods),
        imagenet_weights=args.imagenet_weights,
        batch_size=args.batch_size,
        tvn=not args.no_tvn,
        aggregations=tuple(args.aggregation),
        tvn_components=args.tvn_components,
        tvn_variance=args.tvn_variance,
        raw_scaling=args.raw_scaling,
        seed=args.seed,
        umap=not args.no_umap,
        device=args.device,
    )
    inputs = [BenchmarkInput(kind, folder) for kind, folder in args.benchmark]
    try:
        evaluation = run_evaluation(inputs, args.model, settings, progress=not args.quiet, log=lambda m: print(m, file=sys.stderr))
    except (BenchmarkFileError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = evaluation.write(args.out)
    print("\n".join(evaluation.preamble()))
    print(evaluation.comparison.to_string(index=False))
    for name, why in {**evaluation.skipped, **evaluation.unavailable}.items():
        print(f"not evaluated: {name}: {why}")
    print(f"report: {out / 'evaluation_report.md'}")
    return 0 if len(evaluation.results) else 1


if __name__ == "__main__":
    sys.exit(main())
