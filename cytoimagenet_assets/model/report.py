"""Training curves as a PNG."""

from __future__ import annotations

import pandas as pd

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
