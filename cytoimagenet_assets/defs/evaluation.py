"""Transfer evaluation assets: they resolve inputs (catalog sources, the latest model) and call
``cytoimagenet_assets.evaluation``; the science lives there."""

from typing import Optional

import dagster as dg
import pandas as pd

from cytoimagenet_assets.catalog import Catalog
from cytoimagenet_assets.defs.keys import DATASET_KEY, MERGED_KEY, MODEL_KEY, REPORT_KEY, UMAP_KEY, raw_key
from cytoimagenet_assets.defs.metadata import png_markdown
from cytoimagenet_assets.defs.resources import DataHomeResource
from cytoimagenet_assets.evaluation.benchmarks import NAMES, benchmark_kind, benchmark_options
from cytoimagenet_assets.evaluation.features import METHODS, BackboneUnavailable
from cytoimagenet_assets.evaluation.report import BACKBONES
from cytoimagenet_assets.evaluation.run import BenchmarkInput, EvaluationSettings, run_evaluation
from cytoimagenet_assets.evaluation.upsampling import upsampling_figure
from cytoimagenet_assets.images.classes import source_image
from cytoimagenet_assets.model.launch import latest_model
from cytoimagenet_assets.storage import write_bytes

GROUP = "evaluation"


class EvaluationConfig(dg.Config):
    backbones: list[str] = list(BACKBONES)
    methods: list[str] = list(METHODS)
    imagenet_weights: Optional[str] = None  # a file; default: the torch cache
    batch_size: int = 64
    tvn: bool = True  # BBBC021 with TVN beside the raw figure
    aggregations: list[str] = ["mean"]  # BBBC021 treatment aggregation(s): mean, median
    tvn_components: Optional[int] = None


def evaluation_report_asset(catalog: Catalog) -> dg.AssetsDefinition:
    benchmarks = {}
    for source in catalog.sources:
        kind = benchmark_kind(source)
        if kind is not None and kind not in benchmarks:
            benchmarks[kind] = source
    deps = [MODEL_KEY] + [raw_key(s) for s in benchmarks.values()]

    @dg.asset(
        key=REPORT_KEY,
        deps=deps,
        group_name=GROUP,
        kinds={"pytorch", "csv"},
        description="k-NN transfer accuracy of random, ImageNet, CytoImageNet and fused features on BBBC021 (NSC, NSCB; raw "
        "and TVN), COOS-7 and CyCLoPs, every extraction method, with 95% intervals, beside the published figures. "
        "Missing benchmarks are skipped, with what to download.",
    )
    def evaluation_report(context: dg.AssetExecutionContext, config: EvaluationConfig, data: DataHomeResource) -> dg.MaterializeResult:
        home = data.home()
        inputs = [
            BenchmarkInput(
                kind, home.raw_dir(s.dir_name), benchmark_options(s, kind), f"{s.download.instructions()}, into {home.raw_dir(s.dir_name)}"
            )
            for kind, s in benchmarks.items()
        ]
        settings = EvaluationSettings(
            backbones=tuple(config.backbones),
            methods=tuple(config.methods),
            imagenet_weights=config.imagenet_weights,
            batch_size=config.batch_size,
            tvn=config.tvn,
            aggregations=tuple(config.aggregations),
            tvn_components=config.tvn_components,
        )
        evaluation = run_evaluation(inputs, latest_model(home), settings, progress=False, log=context.log.info)
        skipped = {
            **{NAMES[k]: f"the catalog {catalog.name!r} lists no {NAMES[k]} evaluation source" for k in NAMES if k not in benchmarks},
            **evaluation.skipped,
        }
        evaluation.skipped = skipped
        out = evaluation.write(home.report_dir("evaluation"))
        markdown = evaluation.markdown()
        return dg.MaterializeResult(
            metadata={
                "report": dg.MetadataValue.md(markdown),
                "results": len(evaluation.results),
                "unavailable_backbones": dg.MetadataValue.json(evaluation.unavailable),
                "skipped_benchmarks": dg.MetadataValue.json(skipped),
                "path": dg.MetadataValue.path(str(out)),
                **{name: png_markdown(png, name) for name, png in evaluation.figures.items()},
            }
        )

    return evaluation_report


class UpsamplingUmapConfig(dg.Config):
    classes: int = 20
    images_per_class: int = 30
    seed: int = 0
    imagenet_weights: Optional[str] = None


@dg.asset(
    key=UMAP_KEY,
    deps=[DATASET_KEY, MODEL_KEY, MERGED_KEY],
    group_name=GROUP,
    kinds={"umap"},
    description="UMAP of ImageNet features of random classes before upsampling (their source images) and after "
    "(the published crops and originals), as in the methods file's 'Upsampling Classes' figure. Without "
    "ImageNet weights it uses the CytoImageNet backbone and says so.",
)
def upsampling_umap(context: dg.AssetExecutionContext, config: UpsamplingUmapConfig, data: DataHomeResource) -> dg.MaterializeResult:
    home = data.home()
    rows = pd.read_parquet(home.merged_table(), columns=["idx", "dir_name", "channel_paths", "region"]).set_index("idx")

    def source(idx: str):
        row = rows.loc[idx]
        return source_image(
            [home.raw_dir(row["dir_name"]) / p for p in row["channel_paths"]], None if pd.isna(row["region"]) else row["region"]
        )

    try:
        figure = upsampling_figure(
            home.dataset_dir(), source, config.imagenet_weights, latest_model(home), config.classes, config.images_per_class, config.seed
        )
    except BackboneUnavailable as exc:
        raise dg.Failure(description=str(exc)) from exc
    if figure.png is None:
        return dg.MaterializeResult(metadata={"note": figure.note})
    if figure.backbone != "imagenet":
        context.log.warning(figure.note)
    path = write_bytes(home.report_dir("upsampling_umap") / "upsampling_umap.png", figure.png)
    return dg.MaterializeResult(
        metadata={
            "classes": figure.classes,
            "images": figure.images,
            "backbone": figure.backbone,
            "note": figure.note,
            "umap": png_markdown(figure.png, "before and after upsampling"),
            "path": dg.MetadataValue.path(str(path)),
        }
    )


def defs(catalog: Catalog) -> dg.Definitions:
    """The evaluation domain: transfer benchmarks and the upsampling figure."""
    return dg.Definitions(assets=[evaluation_report_asset(catalog), upsampling_umap])
