"""How a training run is named and launched: the name of its folder under ``models/``, and the
command line of the training CLI (``python -m cytoimagenet_assets.model``), written and parsed here
so that the asset's torchrun launch and the CLI always agree."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import typing
from pathlib import Path
from typing import Callable, Literal

import pandas as pd

from cytoimagenet_assets.catalog.settings import TrainSettings
from cytoimagenet_assets.errors import StepFailed
from cytoimagenet_assets.model.loop import TrainingData, train, training_data
from cytoimagenet_assets.model.packed_dataset import packed
from cytoimagenet_assets.model.run_folder import ModelRun
from cytoimagenet_assets.storage import DataHome, write_text

PACK_WORKERS = os.cpu_count() or 1  # decoding the PNGs to pack is spread over the machine's cores


def run_name(fingerprint: str, recipe: TrainSettings) -> str:
    """Models of the same data and recipe share a folder, so a rerun resumes; epochs may grow."""
    recipe_hash = hashlib.sha1(json.dumps(recipe.recipe(), sort_keys=True).encode()).hexdigest()[:8]
    return f"efficientnet_b0-{fingerprint}-{recipe_hash}"


def cli_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The training CLI's arguments: the data folder, the output folder, the catalog (for the model
    card's header) and one flag per recipe field."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("shards", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--catalog", help="the catalog whose dataset this is, named in the model card (default: none)")
    hints = typing.get_type_hints(TrainSettings)
    for field in dataclasses.fields(TrainSettings):
        flag, kind = _flag(field.name), hints[field.name]
        if kind is bool:
            parser.add_argument(flag, type=lambda v: v.lower() in ("1", "true", "yes"), default=field.default)
        elif typing.get_origin(kind) is Literal:
            parser.add_argument(flag, choices=typing.get_args(kind), default=field.default)
        else:
            parser.add_argument(flag, type=kind, default=field.default)
    return parser


def config_from_args(args: argparse.Namespace) -> TrainSettings:
    return TrainSettings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainSettings)})


def torchrun_command(data: Path, out: Path, recipe: TrainSettings, processes: int, catalog: str | None = None) -> list[str]:
    """torchrun on this machine, one process per GPU, each running the training CLI with ``recipe``."""
    args = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={processes}",
        "-m",
        "cytoimagenet_assets.model",
        str(data),
        str(out),
    ]
    for field in dataclasses.fields(TrainSettings):
        args += [_flag(field.name), str(getattr(recipe, field.name))]
    return args + (["--catalog", catalog] if catalog else [])


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def train_run(
    home: DataHome,
    data: TrainingData,
    recipe: TrainSettings,
    processes: int = 1,
    log: Callable[[str], None] = print,
    catalog: str | None = None,
) -> Path:
    """Train ``recipe`` on ``data`` (``catalog``'s dataset, named in the model card) into
    ``models/<run>/`` (resuming what is there), in this process or under torchrun with ``processes``
    processes, then point ``models/latest`` at it (atomically), so the model is found through the data
    home whatever happens to the Dagster instance."""
    run = run_name(data.fingerprint(), recipe)
    out = home.model_dir(run)
    out.mkdir(parents=True, exist_ok=True)
    if processes > 1:
        command = torchrun_command(data.folder, out, recipe, processes, catalog)
        log(" ".join(command))
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
            for line in proc.stdout:
                log(line.rstrip())
        if proc.returncode:
            raise TrainingFailed(f"torchrun exited with {proc.returncode}; its output is in the log above")
    else:
        train(recipe, data, out, log=log, catalog=catalog)
    write_text(home.latest_model_pointer(), run + "\n")
    return out


def latest_model(home: DataHome) -> Path | None:
    """The latest trained model's weights (``models/latest``), or None before the first training."""
    folder = home.latest_model_dir()
    return None if folder is None else ModelRun(folder).weights


def required_latest_model(home: DataHome) -> Path:
    model = latest_model(home)
    if model is None or not model.is_file():
        raise FileNotFoundError(f"no trained model ({model or 'no models/latest'}): materialize pretrained_model first")
    return model


def training_input(home: DataHome, input_size: int, stream: bool, log: Callable[[str], None] = print) -> TrainingData:
    """What training reads: the WebDataset release when streaming, else the dataset packed at
    ``input_size`` (``training_shards`` packs at the catalog's; another size is packed here once)."""
    if not stream:
        if not home.dataset_metadata().is_file():
            raise FileNotFoundError(f"no dataset to train on ({home.dataset_metadata()}): materialize cytoimagenet_dataset")
        pack, now = packed(pd.read_csv(home.dataset_metadata()), home.dataset_dir(), home.shards_dir(input_size), input_size, PACK_WORKERS)
        if now:
            log(f"packed {pack.images.shape[0]} images at {input_size} px into {pack.folder}")
        return pack
    try:
        return training_data(home.webdataset_dir())
    except ValueError:
        raise FileNotFoundError(f"nothing to train on in {home.webdataset_dir()}: materialize dataset_shards") from None


class TrainingFailed(StepFailed, RuntimeError):
    """A training launch that did not finish (torchrun's exit status)."""
