"""The model group: ``training_shards`` (the dataset packed for fast input), ``pretrained_model``,
and what reuse needs: ``model_package`` (bioimage.io) and ``embeddings`` (the catalog's ``embed:``
folders). ``cytoimagenet_assets.model`` and ``.embed`` do the work."""

import json
import os

import dagster as dg
import pandas as pd

from cytoimagenet_assets.catalog import Catalog
from cytoimagenet_assets.catalog.settings import TrainConfig
from cytoimagenet_assets.defs.keys import DATASET_KEY, EMBEDDINGS_KEY, MODEL_KEY, PACKAGE_KEY, RELEASE_KEY, SHARDS_KEY, raw_key
from cytoimagenet_assets.defs.metadata import png_markdown
from cytoimagenet_assets.defs.resources import DataHomeResource
from cytoimagenet_assets.defs.settings import overrides_of, with_overrides
from cytoimagenet_assets.embed import EmbedError, embed_target
from cytoimagenet_assets.markdown import markdown_table
from cytoimagenet_assets.model.launch import TrainingFailed, latest_model, train_run
from cytoimagenet_assets.model.package import FILES, PackageError, build_package, dataset_test_image
from cytoimagenet_assets.model.report import history_png
from cytoimagenet_assets.model.shards import Shards, pack
from cytoimagenet_assets.model.stream import WebDatasetShards
from cytoimagenet_assets.storage import DataHome

GROUP = "model"

PretrainConfig = overrides_of(
    TrainConfig,
    "PretrainConfig",
    "The training recipe: every field unset takes the catalog's (the original's recipe, sized by the catalog). "
    "processes > 1 launches torchrun with one process per GPU (DistributedDataParallel); stream reads the WebDataset "
    "release (dataset_shards) instead of the packed array: many nodes, no packing.",
    processes=(int, 1),
    stream=(bool, False),
)


class TrainingShardsConfig(dg.Config):
    input_size: int | None = None  # unset: the catalog's; pack at the size pretrained_model's recipe trains at


# With the Kubernetes step executor (deploy/kubernetes), the training step runs in its own pod on a
# GPU node: one GPU requested, nodes labelled by NVIDIA's GPU operator. Ignored everywhere else.
GPU_POD = {
    "dagster-k8s/config": {
        "container_config": {"resources": {"limits": {"nvidia.com/gpu": "1"}}},
        "pod_spec_config": {"node_selector": {"nvidia.com/gpu.present": "true"}},
    }
}


def training_shards_asset(catalog: Catalog) -> dg.AssetsDefinition:
    @dg.asset(
        key=SHARDS_KEY,
        deps=[DATASET_KEY],
        group_name=GROUP,
        kinds={"numpy"},
        description=f"Every dataset image decoded once and packed at the recipe's input size (the catalog's: "
        f"{catalog.training.input_size} px) into a memory-mapped uint8 array, so training reads batches "
        f"instead of decoding PNGs.",
    )
    def training_shards(context: dg.AssetExecutionContext, config: TrainingShardsConfig, data: DataHomeResource) -> dg.MaterializeResult:
        home = data.home()
        size = config.input_size or catalog.training.input_size
        shards = pack(pd.read_csv(home.dataset_metadata()), home.dataset_dir(), home.shards_dir(size), size, workers=os.cpu_count() or 1)
        context.log.info(f"packed {shards.images.shape[0]} images into {shards.folder}")
        return dg.MaterializeResult(
            metadata={
                "images": int(shards.images.shape[0]),
                "classes": len(shards.classes),
                "size": size,
                "bytes": int(shards.images.nbytes),
                "fingerprint": shards.fingerprint(),
                "path": dg.MetadataValue.path(str(shards.folder)),
            }
        )

    return training_shards


def _training_data(home: DataHome, recipe: TrainConfig, stream: bool) -> Shards | WebDatasetShards:
    if stream:
        return WebDatasetShards(home.webdataset_dir())
    folder = home.shards_dir(recipe.input_size)
    if not (folder / "images.npy").is_file():
        raise dg.Failure(
            description=f"no packed shards at {recipe.input_size} px ({folder}): materialize training_shards "
            f"with input_size {recipe.input_size}",
            allow_retries=False,
        )
    return Shards(folder)


def pretrained_model_asset(catalog: Catalog) -> dg.AssetsDefinition:
    check = dg.AssetCheckSpec(
        "card_matches_dataset",
        asset=MODEL_KEY,
        description="The model card's classes are the dataset's, and no validation image shares a source image with training.",
    )

    @dg.asset(
        key=MODEL_KEY,
        deps=[SHARDS_KEY, RELEASE_KEY],
        group_name=GROUP,
        kinds={"pytorch"},
        pool="gpu",
        op_tags=GPU_POD,
        check_specs=[check],
        description="EfficientNet-B0 trained from scratch on the dataset (the original recipe). Checkpoints every "
        "epoch under models/<run>/; a rerun of the same data and recipe resumes from the last one.",
    )
    def pretrained_model(context: dg.AssetExecutionContext, config: PretrainConfig, data: DataHomeResource) -> dg.MaterializeResult:
        home = data.home()
        recipe = with_overrides(catalog.training, config)
        try:
            out = train_run(home, _training_data(home, recipe, config.stream), recipe, config.processes, log=context.log.info)
        except TrainingFailed as exc:
            raise dg.Failure(description=str(exc)) from exc
        history = pd.read_csv(out / "history.csv")
        card = json.loads((out / "model_card.json").read_text())
        dataset_classes = sorted(pd.read_csv(home.dataset_metadata(), usecols=["path"])["path"].unique())
        leak = card["data"]["val_images_sharing_source_with_train"]
        classes_only = {
            "card": sorted(set(card["classes"]) - set(dataset_classes)),
            "dataset": sorted(set(dataset_classes) - set(card["classes"])),
        }
        return dg.MaterializeResult(
            metadata={
                "run": out.name,
                "path": dg.MetadataValue.path(str(out)),
                "epochs": len(history),
                **{k: dg.MetadataValue.float(float(v)) for k, v in card["metrics"].items()},
                "images_per_second": float(history["images_per_s"].iloc[-1]),
                "history": dg.MetadataValue.md(markdown_table(history.round(4), max_rows=100)),
                "curves": png_markdown(history_png(history), "training curves"),
                "model_card": dg.MetadataValue.md((out / "model_card.md").read_text()),
                "val_images_sharing_source_with_train": leak,
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name=check.name,
                    passed=card["classes"] == dataset_classes and leak == 0,
                    metadata={
                        "card_classes": len(card["classes"]),
                        "dataset_classes": len(dataset_classes),
                        **{f"classes_only_in_{k}": dg.MetadataValue.json(v[:20]) for k, v in classes_only.items()},
                        "val_images_sharing_source_with_train": leak,
                    },
                )
            ],
        )

    return pretrained_model


def _model_file(home: DataHome):
    model = latest_model(home)
    if model is None or not model.is_file():
        raise dg.Failure(description=f"no trained model ({model or 'no models/latest'}): materialize pretrained_model first")
    return model


def model_package_asset(catalog: Catalog) -> dg.AssetsDefinition:
    input_size = catalog.training.input_size

    @dg.asset(
        key=PACKAGE_KEY,
        deps=[MODEL_KEY],
        group_name=GROUP,
        kinds={"pytorch", "yaml"},
        automation_condition=dg.AutomationCondition.eager(),
        description="The latest pretrained_model as TorchScript and a bioimage.io model package (spec 0.5 rdf.yaml with "
        "preprocessing, test tensors, both weight formats, classes, training data, citation) under "
        "release/model/, folder and zip, validated with bioimageio.spec.",
    )
    def model_package(context: dg.AssetExecutionContext, data: DataHomeResource) -> dg.MaterializeResult:
        home = data.home()
        model = _model_file(home)
        card = home.dataset_card()
        try:
            result = build_package(
                model.parent, home.model_package_dir(), dataset_test_image(home, input_size), card if card.is_file() else None
            )
        except PackageError as exc:
            raise dg.Failure(description=str(exc)) from exc
        context.log.info(result.validation)
        files = pd.DataFrame({"file": list(result.files), "bytes": list(result.files.values())})
        return dg.MaterializeResult(
            metadata={
                "validation_status": result.status,
                "validation": dg.MetadataValue.md(result.validation),
                "files": dg.MetadataValue.md(markdown_table(files, max_rows=50)),
                "package_bytes": sum(v for k, v in result.files.items() if not k.endswith(".zip")),
                "zip_bytes": result.files[result.zip.name],
                "classes": result.classes,
                "model": dg.MetadataValue.path(str(model)),
                "path": dg.MetadataValue.path(str(result.folder)),
                "zip": dg.MetadataValue.path(str(result.zip)),
                "cover": png_markdown((result.folder / FILES["cover"]).read_bytes(), "test input, raw and normalized"),
            }
        )

    return model_package


def embeddings_asset(catalog: Catalog) -> dg.AssetsDefinition:
    sources = sorted({t.source for t in catalog.embed if t.source is not None})

    @dg.asset(
        key=EMBEDDINGS_KEY,
        deps=[MODEL_KEY, *(raw_key(catalog.source(s)) for s in sources)],
        group_name=GROUP,
        kinds={"pytorch", "parquet"},
        automation_condition=dg.AutomationCondition.eager(),
        description="1280-d CytoImageNet features of the folders (or channel CSVs) in the catalog's `embed:` list, with the "
        "latest model and the evaluation's extraction, into embeddings/<name>/features.parquet; rows already "
        "computed with the same model are kept, so a grown folder costs only its new images.",
    )
    def embeddings(context: dg.AssetExecutionContext, data: DataHomeResource) -> dg.MaterializeResult:
        home = data.home()
        if not catalog.embed:
            return dg.MaterializeResult(metadata={"note": f"the catalog {catalog.name!r} lists no embed targets (embed:)"})
        model = _model_file(home)
        try:
            done = [embed_target(home, target, model, log=context.log.info) for target in catalog.embed]
        except EmbedError as exc:
            raise dg.Failure(description=str(exc)) from exc
        metadata = {}
        for target in done:
            for image, reason in target.result.failed:
                context.log.warning(f"{target.name}: unreadable {image}: {reason}")
            metadata[f"{target.name}_preview"] = dg.MetadataValue.md(markdown_table(target.preview))
            metadata[f"{target.name}_path"] = dg.MetadataValue.path(str(target.result.out))
            if target.result.failed:
                metadata[f"{target.name}_unreadable"] = dg.MetadataValue.json([f"{i}: {r}" for i, r in target.result.failed[:20]])
        return dg.MaterializeResult(
            metadata={
                "rows": sum(t.result.rows for t in done),
                "dims": dg.MetadataValue.json(sorted({int(d) for t in done for d in t.result.dims})),
                "targets": dg.MetadataValue.md(markdown_table(pd.DataFrame([t.summary() for t in done]))),
                "model": dg.MetadataValue.path(str(model)),
                **metadata,
            }
        )

    return embeddings


def defs(catalog: Catalog) -> dg.Definitions:
    """The model domain: packing, training, the bioimage.io package and the embeddings."""
    return dg.Definitions(
        assets=[training_shards_asset(catalog), pretrained_model_asset(catalog), model_package_asset(catalog), embeddings_asset(catalog)]
    )
