"""How a training run is named and launched: the name of its folder under ``models/``, and the
command line of the training CLI (``python -m cytoimagenet_assets.model``), written and parsed here
so that the asset's torchrun launch and the CLI always agree."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import subprocess
import sys
import typing
from pathlib import Path
from typing import Callable, Literal

from cytoimagenet_assets.catalog.settings import TrainConfig
from cytoimagenet_assets.model.loop import TrainingData, train, training_data
from cytoimagenet_assets.storage import DataHome, write_text


def run_name(fingerprint: str, recipe: TrainConfig) -> str:
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
    hints = typing.get_type_hints(TrainConfig)
    for field in dataclasses.fields(TrainConfig):
        flag, kind = _flag(field.name), hints[field.name]
        if kind is bool:
            parser.add_argument(flag, type=lambda v: v.lower() in ("1", "true", "yes"), default=field.default)
        elif typing.get_origin(kind) is Literal:
            parser.add_argument(flag, choices=typing.get_args(kind), default=field.default)
        else:
            parser.add_argument(flag, type=kind, default=field.default)
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})


def torchrun_command(data: Path, out: Path, recipe: TrainConfig, processes: int, catalog: str | None = None) -> list[str]:
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
    for field in dataclasses.fields(TrainConfig):
        args += [_flag(field.name), str(getattr(recipe, field.name))]
    return args + (["--catalog", catalog] if catalog else [])


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def train_run(
    home: DataHome,
    data: TrainingData,
    recipe: TrainConfig,
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
    return None if folder is None else folder / "model.pt"


def required_latest_model(home: DataHome) -> Path:
    model = latest_model(home)
    if model is None or not model.is_file():
        raise FileNotFoundError(f"no trained model ({model or 'no models/latest'}): materialize pretrained_model first")
    return model


def training_input(home: DataHome, input_size: int, stream: bool) -> TrainingData:
    """What training reads: the WebDataset release when streaming, else the array packed at ``input_size``."""
    folder = home.webdataset_dir() if stream else home.shards_dir(input_size)
    try:
        return training_data(folder)
    except ValueError:
        asset = "dataset_shards" if stream else f"training_shards with input_size {input_size}"
        raise FileNotFoundError(f"nothing to train on in {folder}: materialize {asset}") from None


class TrainingFailed(RuntimeError):
    """A training launch that did not finish (torchrun's exit status)."""
