"""Figures and tables describing a class table (the methods file's tables, and more), as PNG bytes."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from cytoimagenet_assets.labels.assign import CATEGORIES  # noqa: E402


def classes_per_category(summary: pd.DataFrame) -> pd.DataFrame:
    """The original's "Category / # of labels" table."""
    counts = summary["category"].value_counts().reindex(CATEGORIES, fill_value=0)
    return counts.rename("labels").rename_axis("category").reset_index().sort_values("labels", ascending=False, kind="stable")


def classes_per_database(summary: pd.DataFrame) -> pd.DataFrame:
    """The original's "Database / Number of Labels Contributed" table (a class counts for every database it draws on)."""
    databases = summary["databases"].str.split("|").explode()
    counts = databases[databases != ""].value_counts()
    return counts.rename("labels").rename_axis("database").reset_index()


def candidates_by_threshold(counts: pd.DataFrame, thresholds: np.ndarray) -> pd.DataFrame:
    """How many (category, label) pairs have at least t images, for each threshold t."""
    values = np.sort(counts["count"].to_numpy())
    above = len(values) - np.searchsorted(values, thresholds, side="left")
    return pd.DataFrame({"threshold": thresholds, "candidate_labels": above})


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


def histogram_png(summary: pd.DataFrame, threshold: int, target: int) -> bytes:
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.hist(summary["images"], bins=min(40, max(5, len(summary) // 3)), color="#55a868")
    for value, name in ((threshold, "threshold"), (target, "target")):
        ax.axvline(value, color="k", linestyle="--", linewidth=1)
        ax.annotate(name, (value, ax.get_ylim()[1] * 0.9), rotation=90, ha="right", fontsize=8)
    ax.set_title("images per class")
    ax.set_xlabel("images")
    ax.set_ylabel("classes")
    return png_bytes(fig)


def threshold_curve_png(curve: pd.DataFrame, threshold: int) -> bytes:
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(curve["threshold"], curve["candidate_labels"], color="#c44e52")
    ax.axvline(threshold, color="k", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    ax.set_title(f"candidate labels by threshold (chosen: {threshold})")
    ax.set_xlabel("threshold (images)")
    ax.set_ylabel("labels with >= threshold images")
    return png_bytes(fig)
