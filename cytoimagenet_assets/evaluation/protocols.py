"""The three transfer benchmarks: their readers and protocols.

* BBBC021 — profiles averaged per treatment (compound, concentration), DMSO excluded; 1-NN by
  cosine among treatments of other compounds (NSC), and of other compounds in other batches (NSCB).
* COOS-7 — ``COOS7_v1.1_{train,test1..test4}.hdf5``; 11-NN fit on train, features standardized by a
  scaler fit on train, accuracy per test set.
* CyCLoPs — DeepLoc's ``Chong_{train,valid,test}_set.hdf5`` pooled; DEAD and GHOST dropped,
  SPINDLEPOLE merged into SPINDLE (16 classes); 11-NN leave-one-out.

HDF5 keys and channel order that SOURCES.md marks unconfirmed are parameters (the catalog's
``parser_options`` for coos7 / cyclops), so a correction is a YAML edit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.preprocessing import StandardScaler

from cytoimagenet_assets.evaluation.knn import accuracy_interval, knn_predict

COOS7_SPLITS = ("train", "test1", "test2", "test3", "test4")
CYCLOPS_DROPPED = ("DEAD", "GHOST")
CYCLOPS_MERGED = {"SPINDLEPOLE": "SPINDLE"}


@dataclass
class Score:
    accuracy: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, correct: np.ndarray) -> "Score":
        return cls(*accuracy_interval(np.asarray(correct, bool)), len(correct))


# -- BBBC021 -----------------------------------------------------------------------------------

def _number_key(values: pd.Series) -> pd.Series:
    return pd.to_numeric(values, errors="raise").map(lambda v: f"{v:.6g}")


def bbbc021_images(image_csv: Path, moa_csv: Path) -> pd.DataFrame:
    """One row per field with an MOA (DMSO excluded): channel files, compound, concentration, moa, batch (week)."""
    images = pd.read_csv(image_csv)
    moa = pd.read_csv(moa_csv)  # CR-only line endings read fine
    images["concentration_key"] = _number_key(images["Image_Metadata_Concentration"])
    moa["concentration_key"] = _number_key(moa["concentration"])
    joined = images.merge(moa[["compound", "concentration_key", "moa"]], left_on=["Image_Metadata_Compound", "concentration_key"],
                          right_on=["compound", "concentration_key"], how="inner", validate="many_to_one")
    joined = joined[joined["moa"] != "DMSO"].reset_index(drop=True)
    joined["batch"] = joined["Image_Metadata_Plate_DAPI"].str.split("_").str[0]
    joined["concentration"] = joined["Image_Metadata_Concentration"].astype(float)
    for channel in ("DAPI", "Tubulin", "Actin"):
        joined[f"path_{channel}"] = joined[f"Image_PathName_{channel}"].str.strip("/") + "/" + joined[f"Image_FileName_{channel}"]
    return joined[["compound", "concentration", "moa", "batch", "Image_Metadata_Plate_DAPI", "path_DAPI", "path_Tubulin", "path_Actin"]]


def bbbc021_treatments(images: pd.DataFrame) -> pd.DataFrame:
    """One row per treatment (compound, concentration): its MOA, batches and number of fields."""
    grouped = images.groupby(["compound", "concentration"], sort=True)
    return grouped.agg(moa=("moa", "first"), batches=("batch", lambda s: tuple(sorted(set(s)))), fields=("moa", "size")).reset_index()


def treatment_profiles(images: pd.DataFrame, features: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """Mean feature vector per treatment, in :func:`bbbc021_treatments` order."""
    treatments = bbbc021_treatments(images)
    keys = pd.MultiIndex.from_frame(images[["compound", "concentration"]])
    codes = pd.MultiIndex.from_frame(treatments[["compound", "concentration"]]).get_indexer(keys)
    sums = np.zeros((len(treatments), features.shape[1]))
    np.add.at(sums, codes, features)
    return treatments, sums / np.bincount(codes, minlength=len(treatments))[:, None]


def nsc(treatments: pd.DataFrame, profiles: np.ndarray, exclude_batch: bool = False) -> tuple[Score, np.ndarray]:
    """1-NN MOA accuracy by cosine, neighbours from other compounds only (and other batches for
    NSCB); returns the score and each treatment's predicted MOA (None where nothing was left)."""
    moas, labels = np.unique(treatments["moa"], return_inverse=True)
    compound = pd.factorize(treatments["compound"])[0]
    # Treatments × batches membership; two treatments share a batch when their rows overlap.
    names = sorted({b for bs in treatments["batches"] for b in bs})
    in_batch = np.array([[b in bs for b in names] for bs in treatments["batches"]], dtype=np.float32)

    def excluded(rows):
        same = compound[rows][:, None] == compound[None, :]
        if exclude_batch:
            same |= (in_batch[rows] @ in_batch.T) > 0
        return same

    predicted = knn_predict(profiles, labels, profiles, k=1, metric="cosine", excluded=excluded)
    scored = predicted >= 0  # a treatment whose every candidate is excluded has no answer: not scored
    return Score.of(predicted[scored] == labels[scored]), np.where(scored, moas[np.maximum(predicted, 0)], None)


# -- COOS-7 ------------------------------------------------------------------------------------

def read_coos7(path: Path, data_key: str = "data", labels_key: str = "labels") -> tuple[np.ndarray, np.ndarray]:
    """(images N × channels × H × W, labels N) from one COOS-7 HDF5 split."""
    import h5py

    with h5py.File(path, "r") as f:
        for key in (data_key, labels_key):
            if key not in f:
                raise KeyError(f"{path}: no dataset {key!r}; it has {sorted(f.keys())} (set the key in the catalog's coos7 entry)")
        data, labels = f[data_key][()], np.asarray(f[labels_key][()]).astype(np.int64).ravel()
    if data.ndim != 4 or len(data) != len(labels):
        raise ValueError(f"{path}: {data_key} has shape {data.shape}, expected (N, channels, H, W) with N = {len(labels)} labels")
    return data, labels


def coos7(features: dict[str, np.ndarray], labels: dict[str, np.ndarray], k: int = 11) -> dict[str, Score]:
    """11-NN fit on the train split's standardized features, accuracy on each test split."""
    scaler = StandardScaler().fit(features["train"])
    train = scaler.transform(features["train"])
    return {split: Score.of(knn_predict(train, labels["train"], scaler.transform(features[split]), k) == labels[split])
            for split in features if split != "train"}


# -- CyCLoPs -----------------------------------------------------------------------------------

def read_cyclops(paths: list[Path], data_key: str = "data1", labels_key: str = "Index1", names_key: str = "Index1_columns",
                 channels: int = 2, side: int = 64) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Pooled single cells (N × 2 × 64 × 64: GFP protein, RFP cytosol), label indices, class names,
    with DEAD and GHOST dropped and SPINDLEPOLE merged into SPINDLE."""
    import h5py

    images, names_all = [], []
    for path in paths:
        with h5py.File(path, "r") as f:
            data = np.asarray(f[data_key][()])
            onehot = np.asarray(f[labels_key][()])
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in np.asarray(f[names_key][()]).ravel()]
        if data.shape[1] != channels * side * side or onehot.shape != (len(data), len(names)):
            raise ValueError(f"{path}: {data_key} {data.shape} / {labels_key} {onehot.shape} do not match {channels}x{side}x{side} cells of {len(names)} classes")
        images.append(data.reshape(len(data), channels, side, side))
        names_all.extend(names[i] for i in onehot.argmax(1))
    names_all = [CYCLOPS_MERGED.get(n, n) for n in names_all]
    keep = np.array([n not in CYCLOPS_DROPPED for n in names_all])
    classes = sorted(set(np.array(names_all)[keep]))
    labels = np.array([classes.index(n) for n, k in zip(names_all, keep) if k])
    return np.concatenate(images)[keep], labels, classes


def cyclops(features: np.ndarray, labels: np.ndarray, k: int = 11) -> Score:
    """11-NN leave-one-out accuracy on standardized features."""
    x = StandardScaler().fit_transform(features)
    predicted = knn_predict(x, labels, x, k, excluded=lambda rows: rows[:, None] == np.arange(len(x))[None, :])
    return Score.of(predicted == labels)
