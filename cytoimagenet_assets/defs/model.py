"""The model group: ``training_shards`` (the dataset packed for fast input), ``pretrained_model``,
and what reuse needs: ``model_package`` (bioimage.io) and ``embeddings`` (the catalog's ``embed:``
folders). ``cytoimagenet_assets.model`` and ``.embed`` do the work; they are imported inside the asset
bodies, so torch is loaded by the runs that train or embed, not by every run and code server."""

import functools

import dagster as dg
import pandas as pd

from cytoimagenet_assets.catalog import Catalog
from cytoimagenet_assets.catalog.settings import TrainSettings
from cytoimagenet_assets.defs.failures import step_failures
from cytoimagenet_assets.defs.freshness import EAGER, EAGER_NOTE
from cytoimagenet_assets.defs.keys import DATASET_KEY, EMBEDDINGS_KEY, MODEL_KEY, RELEASE_KEY, SHARDS_KEY, raw_key
from cytoimagenet_assets.defs.metadata import result
from cytoimagenet_assets.defs.resources import DataHomeResource
from cytoimagenet_assets.defs.settings import overrides_of, with_overrides

asset = functools.partial(dg.asset, group_name="model")  # every asset of this domain is in its group

PretrainConfig = overrides_of(
    TrainSettings,
    "PretrainConfig",
    "The training recipe: every field unset takes the catalog's (the original's recipe, sized by the catalog). "
    "processes > 1 launches torchrun with one process per GPU (DistributedDataParallel); stream reads the WebDataset "
    "release (dataset_shards) instead of the packed array: many nodes, no packing.",
    processes=(int, 1),
    stream=(bool, False),
)


# With the Kubernetes step executor (deploy/kubernetes), the training step runs in its own pod on a
# GPU node: one GPU requested, nodes labelled by NVIDIA's GPU operator. Ignored everywhere else.
GPU_POD = {
    "dagster-k8s/config": {
        "container_config": {"resources": {"limits": {"nvidia.com/gpu": "1"}}},
        "pod_spec_config": {"node_selector": {"nvidia.com/gpu.present": "true"}},
    }
}


def training_shards_asset(catalog: Catalog) -> dg.AssetsDefinition:
    @asset(
        key=SHARDS_KEY,
        deps=[DATASET_KEY],
        kinds={"numpy"},
        description=f"Every dataset image decoded once and packed at the catalog recipe's input size "
        f"({catalog.training.input_size} px) into a memory-mapped uint8 array, so training reads batches instead of "
        "decoding PNGs. A training run overridden to another size packs at that size itself.",
    )
    def training_shards(context: dg.AssetExecutionContext, data: DataHomeResource) -> dg.MaterializeResult:
        from cytoimagenet_assets.model.launch import PACK_WORKERS
        from cytoimagenet_assets.model.packed_dataset import pack

        home, size = data.home(), catalog.training.input_size
        packed = pack(pd.read_csv(home.dataset_metadata()), home.dataset_dir(), home.shards_dir(size), size, PACK_WORKERS)
        context.log.info(f"packed {packed.images.shape[0]} images into {packed.folder}")
        return result(packed.report())

    return training_shards


def pretrained_model_asset(catalog: Catalog) -> dg.AssetsDefinition:
    check = dg.AssetCheckSpec(
        "card_matches_dataset",
        asset=MODEL_KEY,
        description="The model card's classes are the dataset's, and no validation image shares a source image with training.",
    )

    @asset(
        key=MODEL_KEY,
        deps=[SHARDS_KEY, RELEASE_KEY],
        kinds={"pytorch"},
        pool="gpu",
        op_tags=GPU_POD,
        check_specs=[check],
        description="EfficientNet-B0 trained from scratch on the dataset (the original recipe). Checkpoints every "
        "epoch under models/<run>/; a rerun of the same data and recipe resumes from the last one.",
    )
    def pretrained_model(context: dg.AssetExecutionContext, config: PretrainConfig, data: DataHomeResource) -> dg.MaterializeResult:
        from cytoimagenet_assets.model.launch import train_run, training_input
        from cytoimagenet_assets.model.report import training_report

        home = data.home()
        recipe = with_overrides(catalog.training, config)
        with step_failures():
            inputs = training_input(home, recipe.input_size, config.stream, log=context.log.info)
            out = train_run(home, inputs, recipe, config.processes, log=context.log.info, catalog=catalog.name)
        report, problems, check_report = training_report(out, home.dataset_metadata())
        return result(report, {check.name: (problems, check_report)})

    return pretrained_model


def embeddings_asset(catalog: Catalog) -> dg.AssetsDefinition:
    sources = sorted({t.source for t in catalog.embed if t.source is not None})

    @asset(
        key=EMBEDDINGS_KEY,
        deps=[MODEL_KEY, *(raw_key(catalog.source(s)) for s in sources)],
        kinds={"pytorch", "parquet"},
        automation_condition=EAGER,
        description="1280-d CytoImageNet features of the folders (or channel CSVs) in the catalog's `embed:` list, with the "
        "latest model and the evaluation's extraction, into embeddings/<name>/features.parquet; rows already "
        "computed with the same model are kept, so a grown folder costs only its new images." + EAGER_NOTE,
    )
    def embeddings(context: dg.AssetExecutionContext, data: DataHomeResource) -> dg.MaterializeResult:
        from cytoimagenet_assets.embed import embed_target, embeddings_report
        from cytoimagenet_assets.model.launch import required_latest_model

        home = data.home()
        if not catalog.embed:
            return dg.MaterializeResult(metadata={"note": f"the catalog {catalog.name!r} lists no embed targets (embed:)"})
        with step_failures():
            model = required_latest_model(home)
            done = [embed_target(home, target, model, log=context.log.info, warn=context.log.warning) for target in catalog.embed]
        return result(embeddings_report(done, model))

    return embeddings


def defs(catalog: Catalog) -> dg.Definitions:
    """The model domain: packing, training and the embeddings."""
    return dg.Definitions(assets=[training_shards_asset(catalog), pretrained_model_asset(catalog), embeddings_asset(catalog)])
