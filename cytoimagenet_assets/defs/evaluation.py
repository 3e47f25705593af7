"""Transfer evaluation assets: they resolve inputs (catalog sources, the latest model) and call
``cytoimagenet_assets.evaluation``; the science lives there. It is imported inside the asset bodies:
torch and its models are loaded by the runs that evaluate, not by every run and code server."""

import functools
from typing import Optional

import dagster as dg

from cytoimagenet_assets.catalog import Catalog
from cytoimagenet_assets.catalog.settings import EvaluationSettings
from cytoimagenet_assets.defs.failures import step_failures
from cytoimagenet_assets.defs.keys import DATASET_KEY, MERGED_KEY, MODEL_KEY, REPORT_KEY, UMAP_KEY, raw_key
from cytoimagenet_assets.defs.metadata import result
from cytoimagenet_assets.defs.resources import DataHomeResource
from cytoimagenet_assets.defs.settings import overrides_of, with_overrides
from cytoimagenet_assets.evaluation.benchmarks import catalog_benchmarks

asset = functools.partial(dg.asset, group_name="evaluation")  # every asset of this domain is in its group
EvaluationConfig = overrides_of(EvaluationSettings, "EvaluationConfig", "Overrides of the evaluation's settings (unset: the catalog's).")


def evaluation_report_asset(catalog: Catalog) -> dg.AssetsDefinition:
    benchmarks = catalog_benchmarks(catalog.sources)

    @asset(
        key=REPORT_KEY,
        deps=[MODEL_KEY, *(raw_key(s) for s in benchmarks.values())],
        kinds={"pytorch", "csv"},
        description="k-NN transfer accuracy of random, ImageNet, CytoImageNet and fused features on BBBC021 (NSC, NSCB; raw "
        "and TVN), COOS-7 and CyCLoPs, every extraction method, with 95% intervals and chance levels, beside the paper's "
        "published figures; headed by catalog, model run, data fingerprint and date, with a banner where the figures only "
        "show that the pipeline runs. Missing benchmarks are skipped, with what to download.",
    )
    def evaluation_report(context: dg.AssetExecutionContext, config: EvaluationConfig, data: DataHomeResource) -> dg.MaterializeResult:
        from cytoimagenet_assets.evaluation.run import evaluate_catalog
        from cytoimagenet_assets.model.launch import latest_model

        home, settings = data.home(), with_overrides(catalog.evaluation, config)
        evaluation, out = evaluate_catalog(home, catalog.name, benchmarks, latest_model(home), settings, log=context.log.info)
        return result(evaluation.report(out))

    return evaluation_report


class UpsamplingUmapConfig(dg.Config):
    classes: int = 20
    images_per_class: int = 30
    seed: int = 0
    imagenet_weights: Optional[str] = None


@asset(
    key=UMAP_KEY,
    deps=[DATASET_KEY, MODEL_KEY, MERGED_KEY],
    kinds={"umap"},
    description="UMAP of ImageNet features of random classes before upsampling (their source images) and after "
    "(the published crops and originals), as in the methods file's 'Upsampling Classes' figure. Without "
    "ImageNet weights it uses the CytoImageNet backbone and says so.",
)
def upsampling_umap(context: dg.AssetExecutionContext, config: UpsamplingUmapConfig, data: DataHomeResource) -> dg.MaterializeResult:
    from cytoimagenet_assets.evaluation.upsampling import dataset_upsampling_figure
    from cytoimagenet_assets.model.launch import latest_model

    home = data.home()
    with step_failures():
        figure, path = dataset_upsampling_figure(
            home, config.imagenet_weights, latest_model(home), config.classes, config.images_per_class, config.seed
        )
    if figure.png is not None and figure.backbone != "imagenet":
        context.log.warning(figure.note)
    return result(figure.report(path))


def defs(catalog: Catalog) -> dg.Definitions:
    """The evaluation domain: transfer benchmarks and the upsampling figure."""
    return dg.Definitions(assets=[evaluation_report_asset(catalog), upsampling_umap])
