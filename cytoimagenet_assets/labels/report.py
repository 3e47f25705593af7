"""Figures and tables describing a class table (the methods file's tables, and more), as PNG bytes."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cytoimagenet_assets.plots import bar_png, plt, png_bytes
from cytoimagenet_assets.sources.table import LABEL_CATEGORIES


def classes_per_category(summary: pd.DataFrame) -> pd.DataFrame:
    """The original's "Category / # of labels" table."""
    counts = summary["category"].value_counts().reindex(LABEL_CATEGORIES, fill_value=0)
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


def class_table_figures(summary: pd.DataFrame, counts: pd.DataFrame, threshold: int, target: int) -> dict[str, bytes]:
    """The class table's figures by name: classes per category and per database, images per class,
    and how many labels each threshold would keep."""
    top = max(int(counts["count"].max()) if len(counts) else 1, threshold * 4)
    thresholds = np.unique(np.geomspace(1, top, 60).astype(int))
    return {
        "classes_per_category": bar_png(classes_per_category(summary), "category", "labels", "classes per category"),
        "classes_per_database": bar_png(classes_per_database(summary), "database", "labels", "classes per database"),
        "images_per_class": histogram_png(summary, threshold, target),
        "threshold_curve": threshold_curve_png(candidates_by_threshold(counts, thresholds), threshold),
    }
