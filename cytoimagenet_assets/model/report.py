"""What a training run shows: its history, curves, card and metrics, and whether its card matches the
dataset it was trained on."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from cytoimagenet_assets.markdown import Figure, Markdown, table
from cytoimagenet_assets.model.run_folder import ModelRun
from cytoimagenet_assets.plots import plt, png_bytes


def history_png(history: pd.DataFrame) -> bytes:
    fig, (loss, acc) = plt.subplots(1, 2, figsize=(9, 3.2))
    for split, style in (("train", "-"), ("val", "--")):
        loss.plot(history["epoch"], history[f"{split}_loss"], style, label=split)
        acc.plot(history["epoch"], history[f"{split}_top1"], style, label=f"{split} top-1")
        acc.plot(history["epoch"], history[f"{split}_top5"], style, label=f"{split} top-5")
    loss.set_title("cross-entropy")
    acc.set_title("accuracy")
    for ax in (loss, acc):
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    return png_bytes(fig)


def trained_on(model: Path | None) -> tuple[str | None, str | None]:
    """The run ``model`` comes from and the data fingerprint its card records, for a report's header:
    a training run's weights have its card beside them (the run is its folder's name); any other file is
    named by its path, its data unknown. (None, None) without a model."""
    if model is None:
        return None, None
    card = ModelRun.of(model).card
    if not card.is_file():
        return str(model), f"unknown (no {card.name} beside {Path(model).name})"
    return Path(model).parent.name, json.loads(card.read_text())["data"]["fingerprint"]


def training_report(out: Path, dataset_metadata: Path) -> tuple[dict, list[str], dict]:
    """(report, problems, check report) of the run in ``out``: problems when the card's classes are
    not the dataset's, or a validation image shares a source image with training."""
    run = ModelRun(out)
    history = pd.read_csv(run.history)
    card = json.loads(run.card.read_text())
    dataset_classes = sorted(pd.read_csv(dataset_metadata, usecols=["path"])["path"].unique())
    leak = card["data"]["val_images_sharing_source_with_train"]
    only_card, only_dataset = sorted(set(card["classes"]) - set(dataset_classes)), sorted(set(dataset_classes) - set(card["classes"]))
    report = {
        "run": out.name,
        "path": out,
        "epochs": len(history),
        **{k: float(v) for k, v in card["metrics"].items()},
        "images_per_second": float(history["images_per_s"].iloc[-1]),
        "history": table(history.round(4), max_rows=100),
        "curves": Figure(history_png(history), "training curves"),
        "model_card": Markdown(run.card_markdown.read_text()),
        "val_images_sharing_source_with_train": leak,
    }
    problems = []
    if card["classes"] != dataset_classes:
        problems.append(
            f"the card's classes are not the dataset's ({len(only_card)} only in the card, {len(only_dataset)} only in the dataset)"
        )
    if leak:
        problems.append(f"{leak} validation images share a source image with training")
    check = {
        "card_classes": len(card["classes"]),
        "dataset_classes": len(dataset_classes),
        "classes_only_in_card": only_card[:20],
        "classes_only_in_dataset": only_dataset[:20],
        "val_images_sharing_source_with_train": leak,
    }
    return report, problems, check
