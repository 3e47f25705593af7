"""Exact k-nearest-neighbour classification by matrix products (no per-query Python loops).

Neighbours are ordered by distance, ties by training index (a stable sort), so results are
deterministic; votes are counted per class and a tie between classes goes to the smallest class
index — the same rule as scikit-learn's ``KNeighborsClassifier`` with uniform weights.
"""

from __future__ import annotations

import math

import numpy as np


def distances(queries: np.ndarray, train: np.ndarray, metric: str) -> np.ndarray:
    """(queries × train) distances: ``euclidean`` (squared, same order) or ``cosine`` (1 − cos)."""
    queries, train = np.asarray(queries, np.float64), np.asarray(train, np.float64)
    if metric == "cosine":
        qn = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
        tn = train / np.maximum(np.linalg.norm(train, axis=1, keepdims=True), 1e-12)
        return 1.0 - qn @ tn.T
    if metric == "euclidean":
        squared = (queries**2).sum(1)[:, None] - 2 * queries @ train.T + (train**2).sum(1)[None, :]
        return np.maximum(squared, 0.0)
    raise ValueError(f"unknown metric {metric!r}")


def knn_predict(
    train: np.ndarray, train_labels: np.ndarray, queries: np.ndarray, k: int, metric: str = "euclidean", excluded=None, chunk: int = 2048
) -> np.ndarray:
    """Predicted label index of every query, or -1 for a query left without any neighbour.

    ``excluded(rows) -> bool matrix (len(rows) × len(train))`` marks training rows a query may not
    use (itself in leave-one-out, the same compound in NSC, ...). Queries are processed in chunks
    so memory stays bounded.
    """
    train_labels = np.asarray(train_labels)
    n_classes = int(train_labels.max()) + 1
    out = np.empty(len(queries), np.int64)
    for start in range(0, len(queries), chunk):
        rows = np.arange(start, min(start + chunk, len(queries)))
        d = distances(queries[rows], train, metric)
        if excluded is not None:
            d = np.where(excluded(rows), np.inf, d)
        kk = min(k, train.shape[0])
        order = np.argsort(d, axis=1, kind="stable")[:, :kk]
        valid = np.isfinite(np.take_along_axis(d, order, axis=1))
        votes = np.zeros((len(rows), n_classes), np.int64)
        np.add.at(votes, (np.repeat(np.arange(len(rows)), kk)[valid.ravel()], train_labels[order][valid]), 1)
        out[rows] = np.where(valid.any(1), votes.argmax(1), -1)
    return out


def accuracy_interval(correct: np.ndarray, z: float = 1.96) -> tuple[float, float, float]:
    """Accuracy with its 95% Wilson score interval (sound for small n such as BBBC021's 103)."""
    n = len(correct)
    if n == 0:
        return math.nan, math.nan, math.nan
    p = float(np.mean(correct))
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return p, max(0.0, centre - half), min(1.0, centre + half)
