"""The model: ``training_shards`` (the dataset packed for fast input) and ``pretrained_model``."""

import dataclasses
import hashlib
import json
import os
import subprocess
import sys

import dagster as dg
import pandas as pd

from cytoimagenet_assets.catalog import Catalog
from cytoimagenet_assets.defs.images import DATASET_KEY, RELEASE_KEY
from cytoimagenet_assets.defs.metadata import png_markdown
from cytoimagenet_assets.defs.resources import DataHomeResource
from cytoimagenet_assets.markdown import markdown_table
from cytoimagenet_assets.training.loop import TrainConfig, train
from cytoimagenet_assets.training.report import history_png
from cytoimagenet_assets.training.shards import Shards, pack
from cytoimagenet_assets.training.stream import WebDatasetShards

GROUP = "model"
SHARDS_KEY = dg.AssetKey("training_shards")
MODEL_KEY = dg.AssetKey("pretrained_model")


def training_shards_asset(catalog: Catalog) -> dg.AssetsDefinition:
    size = catalog.training.input_size

    @dg.asset(key=SHARDS_KEY, deps=[DATASET_KEY], group_name=GROUP, kinds={"numpy"},
              description=f"Every dataset image decoded once and packed at {size}x{size} into a memory-mapped uint8 array, "
                          "so training reads batches instead of decoding PNGs.")
    def training_shards(context: dg.AssetExecutionContext, data: DataHomeResource) -> dg.MaterializeResult:
        home = data.home()
        metadata = pd.read_csv(home.dataset_dir() / "metadata.csv")
        out = home.root / "shards" / f"{size}px"
        shards = pack(metadata, home.dataset_dir(), out, size, workers=os.cpu_count() or 1)
        images = shards.images
        context.log.info(f"packed {images.shape[0]} images into {out}")
        return dg.MaterializeResult(metadata={
            "images": int(images.shape[0]), "classes": len(shards.classes), "size": size,
            "bytes": int(images.nbytes), "fingerprint": shards.fingerprint(), "path": dg.MetadataValue.path(str(out)),
        })

    return training_shards


class PretrainConfig(dg.Config):
    """The training recipe (defaults: the original's, sized by the catalog). ``processes`` > 1
    launches torchrun with one process per GPU (DistributedDataParallel)."""

    epochs: int = 0  # 0: the catalog's
    batch_size: int = 0
    input_size: int = 0
    lr: float = 0.0
    lr_schedule: str = "constant"
    val_fraction: float = 0.1
    seed: int = 0
    amp: bool = True
    channels_last: bool = True
    max_steps_per_epoch: int = 0
    processes: int = 1
    stream: bool = False  # read the WebDataset release (dataset_shards) instead of the packed array: many nodes, no packing


# With the Kubernetes step executor (deploy/kubernetes), the training step runs in its own pod on a
# GPU node: one GPU requested, nodes labelled by NVIDIA's GPU operator. Ignored everywhere else.
GPU_POD = {"dagster-k8s/config": {
    "container_config": {"resources": {"limits": {"nvidia.com/gpu": "1"}}},
    "pod_spec_config": {"node_selector": {"nvidia.com/gpu.present": "true"}},
}}


def pretrained_model_asset(catalog: Catalog) -> dg.AssetsDefinition:
    defaults = catalog.training

    @dg.asset(key=MODEL_KEY, deps=[SHARDS_KEY, RELEASE_KEY], group_name=GROUP, kinds={"pytorch"}, pool="gpu", op_tags=GPU_POD,
              description="EfficientNet-B0 trained from scratch on the dataset (the original recipe). Checkpoints every "
                          "epoch under models/<run>/; a rerun of the same data and recipe resumes from the last one.",
              check_specs=[dg.AssetCheckSpec("card_matches_dataset", asset=MODEL_KEY,
                                             description="The model card's classes are the dataset's, and no validation image "
                                                         "shares a source image with training.")])
    def pretrained_model(context: dg.AssetExecutionContext, config: PretrainConfig, data: DataHomeResource) -> dg.MaterializeResult:
        home = data.home()
        shards = WebDatasetShards(home.webdataset_dir()) if config.stream else Shards(home.root / "shards" / f"{defaults.input_size}px")
        recipe = TrainConfig(
            epochs=config.epochs or defaults.epochs, batch_size=config.batch_size or defaults.batch_size,
            lr=config.lr or defaults.lr, lr_schedule=config.lr_schedule, val_fraction=config.val_fraction,
            input_size=config.input_size or defaults.input_size, seed=config.seed, amp=config.amp,
            channels_last=config.channels_last, max_steps_per_epoch=config.max_steps_per_epoch,
        )
        run = run_name(shards.fingerprint(), recipe)
        out = home.root / "models" / run
        out.mkdir(parents=True, exist_ok=True)
        if config.processes > 1:
            _torchrun(context, shards, out, recipe, config.processes)
        else:
            train(recipe, shards, out, log=context.log.info)
        history = pd.read_csv(out / "history.csv")
        card = json.loads((out / "model_card.json").read_text())
        dataset_classes = sorted(pd.read_csv(home.dataset_dir() / "metadata.csv", usecols=["path"])["path"].unique())
        leak = card["data"]["val_images_sharing_source_with_train"]
        return dg.MaterializeResult(metadata={
            "run": run,
            "path": dg.MetadataValue.path(str(out)),
            "epochs": len(history),
            **{k: dg.MetadataValue.float(float(v)) for k, v in card["metrics"].items()},
            "images_per_second": float(history["images_per_s"].iloc[-1]),
            "history": dg.MetadataValue.md(markdown_table(history.round(4), max_rows=100)),
            "curves": png_markdown(history_png(history), "training curves"),
            "model_card": dg.MetadataValue.md((out / "model_card.md").read_text()),
            "val_images_sharing_source_with_train": leak,
        }, check_results=[dg.AssetCheckResult(check_name="card_matches_dataset", passed=card["classes"] == dataset_classes and leak == 0,
                                              metadata={"card_classes": len(card["classes"]), "dataset_classes": len(dataset_classes),
                                                        "classes_only_in_card": dg.MetadataValue.json(sorted(set(card["classes"]) - set(dataset_classes))[:20]),
                                                        "classes_only_in_dataset": dg.MetadataValue.json(sorted(set(dataset_classes) - set(card["classes"]))[:20]),
                                                        "val_images_sharing_source_with_train": leak})])

    return pretrained_model


def run_name(fingerprint: str, recipe: TrainConfig) -> str:
    """Models of the same data and recipe share a folder, so a rerun resumes; epochs may grow."""
    recipe_hash = hashlib.sha1(json.dumps(dataclasses.asdict(dataclasses.replace(recipe, epochs=0)), sort_keys=True).encode()).hexdigest()[:8]
    return f"efficientnet_b0-{fingerprint}-{recipe_hash}"


def _torchrun(context, shards: Shards, out, recipe: TrainConfig, processes: int) -> None:
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
            "-m", "cytoimagenet_assets.training", str(shards.folder), str(out)]
    for field in dataclasses.fields(TrainConfig):
        args += ["--" + field.name.replace("_", "-"), str(getattr(recipe, field.name))]
    context.log.info(" ".join(args))
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:
            context.log.info(line.rstrip())
    if proc.returncode:
        raise dg.Failure(description=f"torchrun exited with {proc.returncode}; see the run's logs")
