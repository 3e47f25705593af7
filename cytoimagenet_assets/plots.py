"""Figures as PNG bytes, shared by the steps that draw them (matplotlib without a display)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def png_bytes(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def bar_png(table: pd.DataFrame, x: str, y: str, title: str) -> bytes:
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.bar(table[x].astype(str), table[y], color="#4c72b0")
    ax.set_title(title)
    ax.set_ylabel(y)
    ax.tick_params(axis="x", rotation=35)
    for label in ax.get_xticklabels():
        label.set_ha("right")
    return png_bytes(fig)
