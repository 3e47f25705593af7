"""Feature preparation before profiles are compared: standardization, TVN, treatment aggregation.

* ``standardize`` — zero mean, unit variance per feature, the scaler fit on a chosen subset of rows
  (the original's ``StandardScaler`` fit on every evaluated image). Several backbones are each
  standardized on their own and then concatenated (``standardize_parts``), so the backbone with the
  larger activations does not dominate a fused profile.
* ``tvn`` — typical variation normalization: PCA whitening fit on the control (DMSO) profiles, so
  the controls' variation becomes identity-covariance, on the leading components that explain 99 %
  of the controls' variance (whitening the last, near-zero ones would blow their noise up to the
  same weight as the signal); then, per batch, the batch's controls are
  centred and — where the batch has enough controls to estimate a full-rank covariance — whitened
  again by ZCA (which keeps the shared coordinates, so batches stay comparable).
* ``aggregate`` — one profile per group by the mean (the original) or the median.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

# Eigenvalues below this fraction of the largest are numerical noise: such directions are dropped.
RELATIVE_TOLERANCE = 1e-8


def fit_scaler(fit: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """A function that centres and scales columns by the mean and standard deviation of ``fit``;
    a constant column becomes 0, as with scikit-learn's ``StandardScaler``."""
    fit = np.asarray(fit, np.float64)
    if len(fit) == 0:
        raise ValueError("standardize: no rows to fit the scaler on")
    mean, std = fit.mean(0), fit.std(0)
    std = np.where(std > 0, std, 1.0)
    return lambda x: (np.asarray(x, np.float64) - mean) / std


def standardize(features: np.ndarray, fit_rows: np.ndarray | None = None) -> np.ndarray:
    """Features standardized per column by the rows marked in ``fit_rows`` (default: all rows)."""
    x = np.asarray(features, np.float64)
    return fit_scaler(x if fit_rows is None else x[np.asarray(fit_rows, bool)])(x)


def standardize_parts(parts: list[np.ndarray], fit_rows: np.ndarray | None = None) -> np.ndarray:
    """Each backbone's features standardized on its own, then concatenated (fusion)."""
    return np.hstack([standardize(p, fit_rows) for p in parts])


def _pca_whitening(
    controls: np.ndarray, components: int | None = None, variance_share: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(mean, principal axes d × k, variances k, share of the variance they explain) of the
    controls: the fewest leading directions explaining ``variance_share`` of it, at most
    ``components``; directions with no variance dropped."""
    if len(controls) < 2:
        raise ValueError(f"TVN needs at least 2 control profiles to fit a whitening, got {len(controls)}")
    if not 0 < variance_share <= 1:
        raise ValueError(f"TVN: the share of variance to keep must be in (0, 1], got {variance_share}")
    mean = controls.mean(0)
    _, s, vt = np.linalg.svd(controls - mean, full_matrices=False)
    variance = s**2 / (len(controls) - 1)
    keep = variance > RELATIVE_TOLERANCE * max(variance.max(), np.finfo(float).tiny)
    if not keep.any():
        raise ValueError("TVN: the control profiles have no variance to whiten")
    share = np.cumsum(variance) / variance.sum()
    keep &= np.arange(len(variance)) <= np.searchsorted(share, variance_share - 1e-12)  # up to the one reaching the share
    if components is not None:
        keep &= np.arange(len(variance)) < components
    return mean, vt[keep].T, variance[keep], float(variance[keep].sum() / variance.sum())


@dataclass
class TVNInfo:
    components: int  # dimensions kept by the global whitening
    controls: int
    variance_explained: float  # share of the controls' variance those dimensions explain
    batches_whitened: list[str] = field(default_factory=list)  # whitened by their own controls (ZCA)
    batches_centred: list[str] = field(default_factory=list)  # too few controls for a covariance: centred only
    batches_without_controls: list[str] = field(default_factory=list)  # left as the global whitening leaves them

    def describe(self) -> str:
        parts = [
            f"PCA whitening fit on {self.controls} control profiles ({self.components} dimensions kept, "
            f"{self.variance_explained:.1%} of their variance)"
        ]
        if self.batches_whitened:
            parts.append(f"re-whitened per batch in {len(self.batches_whitened)} batches")
        if self.batches_centred:
            parts.append(
                f"centred on their own controls only in {len(self.batches_centred)} batches (fewer controls than "
                f"{self.components + 1}, the least for a full-rank covariance)"
            )
        if self.batches_without_controls:
            parts.append(f"{len(self.batches_without_controls)} batches without controls")
        return "; ".join(parts)


def tvn(
    features: np.ndarray,
    controls: np.ndarray,
    batches: np.ndarray | None = None,
    components: int | None = None,
    per_batch: bool = True,
    variance_share: float = 0.99,
) -> tuple[np.ndarray, TVNInfo]:
    """Typical variation normalization of every row of ``features`` (N × d) by the rows marked in
    ``controls``, on the components explaining ``variance_share`` of the controls' variance (1.0:
    every one with variance). Returns the transformed features (N × k) and what was done."""
    x = np.asarray(features, np.float64)
    controls = np.asarray(controls, bool)
    mean, axes, variance, explained = _pca_whitening(x[controls], components, variance_share)
    out = (x - mean) @ axes / np.sqrt(variance)
    info = TVNInfo(components=axes.shape[1], controls=int(controls.sum()), variance_explained=explained)
    if not per_batch or batches is None:
        return out, info
    batches = np.asarray(batches)
    for batch in pd.unique(batches):
        rows = batches == batch
        own = out[rows & controls]
        if len(own) == 0:
            info.batches_without_controls.append(str(batch))
            continue
        centre = own.mean(0)
        if len(own) > out.shape[1] and np.ptp(own, axis=0).any():  # enough controls, and not all alike
            _, b_axes, b_var, _ = _pca_whitening(own)
            if b_axes.shape[1] == out.shape[1]:  # full rank: ZCA keeps the shared coordinates
                out[rows] = (out[rows] - centre) @ (b_axes / np.sqrt(b_var)) @ b_axes.T
                info.batches_whitened.append(str(batch))
                continue
        out[rows] = out[rows] - centre
        info.batches_centred.append(str(batch))
    return out, info


def aggregate(features: np.ndarray, codes: np.ndarray, groups: int, how: str = "mean") -> np.ndarray:
    """One profile per group (``codes`` in 0..groups-1): the mean or the median of its rows."""
    codes = np.asarray(codes)
    if how == "mean":
        sums = np.zeros((groups, features.shape[1]))
        np.add.at(sums, codes, features)
        counts = np.bincount(codes, minlength=groups)
        if (counts == 0).any():
            raise ValueError(f"aggregate: {int((counts == 0).sum())} groups have no rows")
        return sums / counts[:, None]
    if how == "median":
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(groups + 1))
        if (np.diff(bounds) == 0).any():
            raise ValueError(f"aggregate: {int((np.diff(bounds) == 0).sum())} groups have no rows")
        return np.stack([np.median(features[order[a:b]], axis=0) for a, b in zip(bounds[:-1], bounds[1:])])
    raise ValueError(f"unknown aggregation {how!r}; use 'mean' or 'median'")
