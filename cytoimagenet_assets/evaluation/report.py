"""The evaluation report: this run's accuracies beside the published ones, per method, and UMAPs."""

from __future__ import annotations

import os
import textwrap

import numpy as np
import pandas as pd

from cytoimagenet_assets.catalog.settings import BACKBONES
from cytoimagenet_assets.plots import plt, png_bytes

# CytoImageNet paper (EfficientNet-B0, penultimate layer), accuracy in %: the paper's model on the real
# benchmarks, not this run's; shown beside this run's under PUBLISHED_LABEL.
PUBLISHED = {
    "BBBC021 NSC": (27.18, 83.5, 83.5, 86.41),
    "CyCLoPs": (53.06, 68.47, 65.19, 77.97),
    "COOS-7 test1": (65.68, 88.87, 88.58, 94.80),
    "COOS-7 test2": (67.81, 88.93, 89.37, 95.07),
    "COOS-7 test3": (48.77, 75.91, 65.97, 78.97),
    "COOS-7 test4": (51.88, 82.19, 78.52, 87.47),
}
PUBLISHED_LABEL = "published (paper, on the paper's data)"
CHANCE_COLUMNS = {"chance": "chance: 1/classes", "majority": "chance: majority class"}
DEMO_CATALOG = "demo"  # catalog/demo.yaml: synthetic benchmarks made to exercise the pipeline
# A benchmark scored on fewer items says nothing: at 50 the 95% interval spans about ±14 points around
# 50%, wider than most gaps between backbones. The real benchmarks' smallest set, BBBC021 NSCB's 92
# treatments, stays above it.
MIN_SAMPLES = 50


def _row_label(benchmark: str, variant: str, aggregation: str) -> str:
    extra = [v for v in (variant if variant != "raw" else "", aggregation if aggregation not in ("", "mean") else "") if v]
    return benchmark + (f" ({', '.join(extra)})" if extra else "")


def _percent(value: float) -> str:
    return "—" if pd.isna(value) else f"{100 * value:.1f}"


def comparison_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per benchmark (and variant): the chance levels of the items scored, then per backbone the best
    extraction method's accuracy [95% interval] beside the published figure. The best method is
    chosen on the test data itself, so that column is optimistic; the report lists every method too."""
    keys = (
        [(b, v, a) for b, v, a in results[["benchmark", "variant", "aggregation"]].fillna("").itertuples(index=False, name=None)]
        if len(results)
        else []
    )
    keys += [(b, "raw", "") for b in PUBLISHED]  # benchmarks not evaluated still show the published figures
    seen, ordered = set(), []
    for benchmark in dict.fromkeys(k[0] for k in keys):  # each benchmark's variants together, raw first
        for key in sorted({k for k in keys if k[0] == benchmark}, key=lambda k: (k[1] != "raw", k[1], k[2] not in ("", "mean"), k[2])):
            label = _row_label(*key)
            if label not in seen:
                seen.add(label)
                ordered.append((label, key))
    rows = []
    for label, (benchmark, variant, aggregation) in ordered:
        scored = (
            results[
                (results["benchmark"] == benchmark)
                & (results["variant"] == variant)
                & (results["aggregation"].fillna("").isin([aggregation] if aggregation else ["", "mean"]))
            ].dropna(subset=["accuracy"])
            if len(results)
            else results
        )
        # the scored items are the same whatever the backbone and method, and so are their chance levels
        row = {"benchmark": label, **{name: _percent(scored[c].iloc[0] if len(scored) else np.nan) for c, name in CHANCE_COLUMNS.items()}}
        for i, backbone in enumerate(BACKBONES):
            mine = scored[scored["backbone"] == backbone]
            published = PUBLISHED.get(benchmark, (None,) * 4)[i] if variant == "raw" and aggregation in ("", "mean") else None
            if len(mine):
                best = mine.loc[mine["accuracy"].idxmax()]
                row[backbone] = f"{100 * best['accuracy']:.1f} [{100 * best['low']:.1f}, {100 * best['high']:.1f}] ({best['method']})"
            else:
                row[backbone] = "—"
            row[f"{backbone} {PUBLISHED_LABEL}"] = "—" if published is None else f"{published:.2f}"
        rows.append(row)
    return pd.DataFrame(rows)


def pipeline_check_reasons(catalog: str | None, results: pd.DataFrame) -> list[str]:
    """Why this run's figures cannot be read as results: the demo catalog's synthetic benchmarks, or
    benchmarks scored on fewer than :data:`MIN_SAMPLES` items (each named with its count)."""
    reasons = []
    if catalog == DEMO_CATALOG:
        reasons.append(f"the {DEMO_CATALOG!r} catalog's benchmarks are synthetic images made to exercise the pipeline")
    smallest = results.groupby("benchmark", sort=False)["n"].min()
    small = smallest[smallest < MIN_SAMPLES]
    if len(small):
        reasons.append(
            f"{', '.join(f'{b} ({n})' for b, n in small.items())} scored fewer than {MIN_SAMPLES} samples, where a 95% interval "
            "spans about ±14 points or more"
        )
    return reasons


def umap_2d(features: np.ndarray, seed: int = 0) -> np.ndarray:
    """A seeded 2-D UMAP embedding (15 neighbours, fewer for tiny sets)."""
    import numba
    import umap  # numba compiles it on first use: imported only when a figure is drawn

    if "NUMBA_THREADING_LAYER" not in os.environ:
        # numba's default OpenMP pool keeps spinning after a fit and starves torch's threads: with one
        # of two cores busy, the features extracted after a UMAP took 6x as long (measured)
        numba.config.THREADING_LAYER = "workqueue"

    return umap.UMAP(n_neighbors=max(2, min(15, len(features) - 1)), random_state=seed, n_jobs=1, init="random").fit_transform(features)


def umap_png(features: np.ndarray, labels: list[str], title: str, seed: int = 0) -> bytes:
    """2-D UMAP of features coloured by label."""
    embedding = umap_2d(features, seed)
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    for label in sorted(set(labels)):
        mask = np.array(labels) == label
        ax.scatter(embedding[mask, 0], embedding[mask, 1], s=12, label=label)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=6, markerscale=0.8, loc="best")
    return png_bytes(fig)


def before_after_umap_png(features: np.ndarray, classes: list[str], before: np.ndarray, title: str, seed: int = 0) -> bytes:
    """Two UMAPs of one embedding: the rows marked ``before`` (source images) and the others (the
    class after upsampling), with the classes' full names in a key of their own beside them."""
    embedding = umap_2d(features, seed)
    names = sorted(set(classes))
    fig = plt.figure(figsize=(13, max(4.2, 0.22 * len(names) + 1)))
    grid = fig.add_gridspec(1, 3, width_ratios=[1, 1, 0.9])
    axes = [fig.add_subplot(grid[0, 0])]
    axes.append(fig.add_subplot(grid[0, 1], sharex=axes[0], sharey=axes[0]))
    colours = plt.get_cmap("tab20")(np.linspace(0, 1, max(len(names), 2)))
    for ax, keep, name in ((axes[0], before, "before upsampling"), (axes[1], ~before, "after upsampling")):
        for colour, cls in zip(colours, names):
            mask = keep & (np.array(classes) == cls)
            ax.scatter(embedding[mask, 0], embedding[mask, 1], s=8, color=colour, label=textwrap.shorten(cls, 60))
        ax.set_title(f"{name} ({int(keep.sum())} images)")
        ax.set_xticks([])
        ax.set_yticks([])
    key = fig.add_subplot(grid[0, 2])
    key.axis("off")
    handles, labels = axes[1].get_legend_handles_labels()
    key.legend(handles, labels, fontsize=7, markerscale=1.5, loc="center left", frameon=False, title="class")
    fig.suptitle(title)
    return png_bytes(fig)
