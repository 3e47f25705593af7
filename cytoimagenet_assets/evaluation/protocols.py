"""The three transfer benchmarks: their readers and protocols.

* BBBC021 — per-image features standardized (the scaler fit on every evaluated image, as the
  original), optionally TVN-normalized on the DMSO controls, aggregated per treatment (compound,
  concentration; mean by default, median optional), DMSO excluded; 1-NN by cosine among treatments
  of other compounds (NSC, all 103 treatments), and — by the field's convention (DeepProfiler,
  WS-DINO, Microsnoop) — among other compounds in other batches over the treatments whose MOA occurs
  in more than one batch (NSCB, 92 of 103). Intervals: bootstrap over treatments.
* COOS-7 — ``COOS7_v1.1_{train,test1..test4}.hdf5``; 11-NN fit on train, features standardized by a
  scaler fit on train, accuracy per test set (Wilson intervals).
* CyCLoPs — DeepLoc's ``Chong_{train,valid,test}_set.hdf5`` pooled; DEAD and GHOST dropped,
  SPINDLEPOLE merged into SPINDLE (16 classes; the paper's "17" counts before the merge); 11-NN
  leave-one-out on standardized features (Wilson intervals).

Every score carries the chance levels of the items it scored (1/classes and the commonest class's
share, from their true labels), so an accuracy is read beside what guessing would get.

HDF5 files may hold their cells in several chunks (DeepLoc's ``data1``…``dataN`` with
``Index1``…``IndexN``); every chunk is read. HDF5 keys and the channel order that SOURCES.md marks
unconfirmed are parameters (the catalog's ``parser_options`` for coos7 / cyclops).
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from cytoimagenet_assets.errors import StepFailed
from cytoimagenet_assets.evaluation import profiles as prof
from cytoimagenet_assets.evaluation.knn import accuracy_interval, knn_predict
from cytoimagenet_assets.sources.common import UNREADABLE, where_it_breaks

COOS7_SPLITS = ("train", "test1", "test2", "test3", "test4")
CYCLOPS_DROPPED = ("DEAD", "GHOST")
CYCLOPS_MERGED = {"SPINDLEPOLE": "SPINDLE"}
BBBC021_CHANNELS = ("DAPI", "Tubulin", "Actin")
CONTROL_MOA = "DMSO"
BOOTSTRAP_RESAMPLES = 2000


def chance_levels(labels: np.ndarray) -> tuple[float, float]:
    """What guessing scores on items with these true labels: 1/k (uniform over the k classes among
    them) and the commonest class's share (always answering it); NaN for no items."""
    _, counts = np.unique(np.asarray(labels), return_counts=True)
    if not len(counts):
        return np.nan, np.nan
    return 1 / len(counts), float(counts.max() / counts.sum())


@dataclass
class Score:
    accuracy: float
    low: float
    high: float
    n: int
    chance: float  # 1/classes among the scored items' labels
    majority: float  # the commonest label's share of the scored items
    interval: str = "wilson"  # or "bootstrap" (over the scored items)

    @classmethod
    def of(cls, correct: np.ndarray, labels: np.ndarray) -> "Score":
        """Accuracy with its Wilson interval, and the chance levels of the scored items' ``labels``."""
        return cls(*accuracy_interval(np.asarray(correct, bool)), len(correct), *chance_levels(labels), "wilson")

    @classmethod
    def bootstrap(cls, correct: np.ndarray, labels: np.ndarray, seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES) -> "Score":
        """Accuracy with the 2.5th and 97.5th percentiles of its bootstrap distribution over items,
        and the chance levels of the scored items' ``labels``."""
        correct = np.asarray(correct, bool)
        if len(correct) == 0:
            return cls(np.nan, np.nan, np.nan, 0, np.nan, np.nan, "bootstrap")
        draws = np.random.default_rng(seed).integers(0, len(correct), (resamples, len(correct)))
        means = correct[draws].mean(1)
        interval = float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))
        return cls(float(correct.mean()), *interval, len(correct), *chance_levels(labels), "bootstrap")


# -- BBBC021 -----------------------------------------------------------------------------------


def _number_key(values: pd.Series, path: Path, column: str) -> pd.Series:
    numbers = pd.to_numeric(values, errors="coerce")
    bad = numbers.isna() & values.notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise BenchmarkFileError(f"{path}: data row {row + 1}: {column} {values.iloc[row]!r} is not a number")
    return numbers.map(lambda v: f"{v:.6g}")


class BenchmarkFileError(StepFailed, ValueError):
    """A benchmark file that cannot be read or lacks what its benchmark needs (a truncated download,
    an HTML page saved in its place, a missing column or dataset); the message names the file and
    what is wrong, and the CLI prints it as one line (exit 2)."""


def _read_csv(path: Path) -> pd.DataFrame:
    """A benchmark's metadata table (.csv, also .gz/.zip); a damaged file names itself, as the sources' tables do."""
    try:
        return pd.read_csv(path)
    except UNREADABLE as exc:
        where = where_it_breaks(Path(path), exc)
        raise BenchmarkFileError(
            f"cannot read {path}{' ' + where if where else ''}: {type(exc).__name__}: {exc or 'the file ends early (truncated?)'}"
        ) from exc


def _require(table: pd.DataFrame, columns: list[str], path: Path) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise BenchmarkFileError(f"{path}: missing column(s) {', '.join(missing)}; it has {', '.join(map(str, table.columns))}")


def bbbc021_images(image_csv: Path, moa_csv: Path, controls: bool = False) -> pd.DataFrame:
    """One row per field with an MOA: channel files, compound, concentration, moa, batch (week),
    plate, ``control`` (DMSO) and ``source_row`` (1-based data row of image.csv). DMSO fields are
    kept only with ``controls`` (TVN needs them); treatments never include them."""
    image_csv, moa_csv = Path(image_csv), Path(moa_csv)
    images = _read_csv(image_csv)
    moa = _read_csv(moa_csv)  # CR-only line endings read fine
    _require(
        images,
        ["Image_Metadata_Compound", "Image_Metadata_Concentration", "Image_Metadata_Plate_DAPI"]
        + [f"Image_{kind}_{c}" for c in BBBC021_CHANNELS for kind in ("FileName", "PathName")],
        image_csv,
    )
    _require(moa, ["compound", "concentration", "moa"], moa_csv)
    images["source_row"] = np.arange(1, len(images) + 1)
    images["concentration_key"] = _number_key(images["Image_Metadata_Concentration"], image_csv, "Image_Metadata_Concentration")
    moa["concentration_key"] = _number_key(moa["concentration"], moa_csv, "concentration")
    duplicated = moa.duplicated(["compound", "concentration_key"])
    if duplicated.any():
        row = int(np.flatnonzero(duplicated.to_numpy())[0])
        raise BenchmarkFileError(
            f"{moa_csv}: data row {row + 1}: ({moa['compound'].iloc[row]}, {moa['concentration'].iloc[row]}) is listed twice"
        )
    joined = images.merge(
        moa[["compound", "concentration_key", "moa"]],
        left_on=["Image_Metadata_Compound", "concentration_key"],
        right_on=["compound", "concentration_key"],
        how="inner",
        validate="many_to_one",
    )
    joined["control"] = joined["moa"] == CONTROL_MOA
    if not controls:
        joined = joined[~joined["control"]]
    joined = joined.sort_values("source_row").reset_index(drop=True)
    joined["plate"] = joined["Image_Metadata_Plate_DAPI"].astype(str)
    joined["batch"] = joined["plate"].str.split("_").str[0]
    joined["concentration"] = joined["Image_Metadata_Concentration"].astype(float)
    for channel in BBBC021_CHANNELS:
        joined[f"path_{channel}"] = (
            joined[f"Image_PathName_{channel}"].astype(str).str.strip("/") + "/" + joined[f"Image_FileName_{channel}"]
        )
    return joined[["compound", "concentration", "moa", "batch", "plate", "control", "source_row"] + [f"path_{c}" for c in BBBC021_CHANNELS]]


def _main_batch(batches: pd.Series) -> str:
    counts = batches.value_counts()
    return min(counts.index[counts == counts.max()])


def bbbc021_treatments(images: pd.DataFrame) -> pd.DataFrame:
    """One row per treatment (compound, concentration), controls excluded: its MOA, the batches its
    fields are in, its main batch (the one holding most of its fields; ties to the first name) and
    its number of fields."""
    treated = images[~images["control"]] if "control" in images else images
    grouped = treated.groupby(["compound", "concentration"], sort=True)
    return grouped.agg(
        moa=("moa", "first"), batches=("batch", lambda s: tuple(sorted(set(s)))), batch=("batch", _main_batch), fields=("moa", "size")
    ).reset_index()


def _batch_of(treatments: pd.DataFrame) -> pd.Series:
    return treatments["batch"] if "batch" in treatments else treatments["batches"].map(lambda bs: bs[0])


def nscb_eligible(treatments: pd.DataFrame) -> np.ndarray:
    """The standard NSCB convention: a treatment counts when its MOA occurs in more than one batch
    (otherwise no treatment of its MOA can be found in another batch)."""
    batch = _batch_of(treatments)
    batches_of = batch.groupby(treatments["moa"]).nunique()
    return treatments["moa"].map(batches_of).to_numpy() > 1


def nsc(treatments: pd.DataFrame, profiles: np.ndarray, exclude_batch: bool = False, seed: int = 0) -> tuple[Score, np.ndarray]:
    """1-NN MOA accuracy by cosine, neighbours from other compounds only (and, with
    ``exclude_batch``, from other batches: a treatment's batch is its main batch, so the positive
    control imaged on every plate — taxol 0.3 µM in BBBC021 — is scored like the others); returns
    the score (bootstrap interval over treatments) and each treatment's predicted MOA (None where
    nothing was left)."""
    moas, labels = np.unique(treatments["moa"], return_inverse=True)
    compound = pd.factorize(treatments["compound"])[0]
    batch = pd.factorize(_batch_of(treatments))[0]

    def excluded(rows):
        same = compound[rows][:, None] == compound[None, :]
        if exclude_batch:
            same |= batch[rows][:, None] == batch[None, :]
        return same

    predicted = knn_predict(profiles, labels, profiles, k=1, metric="cosine", excluded=excluded)
    scored = predicted >= 0  # a treatment whose every candidate is excluded has no answer: not scored
    score = Score.bootstrap(predicted[scored] == labels[scored], labels[scored], seed)
    return score, np.where(scored, moas[np.maximum(predicted, 0)], None)


def nscb(treatments: pd.DataFrame, profiles: np.ndarray, seed: int = 0) -> tuple[Score, np.ndarray]:
    """NSCB over the treatments whose MOA spans more than one batch (the others neither query nor
    answer); predicted MOA per treatment, None for those left out."""
    eligible = nscb_eligible(treatments)
    score, predicted = nsc(treatments[eligible].reset_index(drop=True), profiles[eligible], exclude_batch=True, seed=seed)
    out = np.full(len(treatments), None, dtype=object)
    out[eligible] = predicted
    return score, out


@dataclass
class BBBC021Variant:
    """How per-image features become treatment profiles: the original's is the default."""

    standardize: bool = True  # the original's StandardScaler on every evaluated image
    tvn: bool = False  # typical variation normalization on the DMSO controls (a reported variant)
    aggregate: str = "mean"  # or "median"
    tvn_components: int | None = None  # keep at most this many whitened dimensions (None: all with variance)
    tvn_variance: float = 0.99  # keep the components explaining this share of the controls' variance
    tvn_per_batch: bool = True

    @property
    def name(self) -> str:
        return ("TVN" if self.tvn else "raw") + ("" if self.standardize else ", unstandardized")


def bbbc021_profiles(
    images: pd.DataFrame, parts: list[np.ndarray], variant: BBBC021Variant = BBBC021Variant()
) -> tuple[pd.DataFrame, np.ndarray, prof.TVNInfo | None]:
    """Treatment profiles from per-image features: one array per backbone in ``parts`` (rows =
    ``images`` rows), each standardized on its own (scaler fit on the treated images) and then
    concatenated; TVN on the control rows when asked; controls dropped; aggregated per treatment."""
    control = images["control"].to_numpy(bool) if "control" in images else np.zeros(len(images), bool)
    for part in parts:
        if len(part) != len(images):
            raise ValueError(f"features have {len(part)} rows for {len(images)} images")
    x = prof.standardize_parts(parts, ~control) if variant.standardize else np.hstack([np.asarray(p, np.float64) for p in parts])
    info = None
    if variant.tvn:
        if not control.any():
            raise ValueError("TVN needs the DMSO control fields (load the images with controls=True)")
        x, info = prof.tvn(x, control, images["batch"].to_numpy(), variant.tvn_components, variant.tvn_per_batch, variant.tvn_variance)
    treated = images[~control].reset_index(drop=True)
    treatments = bbbc021_treatments(treated)
    codes = pd.MultiIndex.from_frame(treatments[["compound", "concentration"]]).get_indexer(
        pd.MultiIndex.from_frame(treated[["compound", "concentration"]])
    )
    return treatments, prof.aggregate(x[~control], codes, len(treatments), variant.aggregate), info


def treatment_profiles(images: pd.DataFrame, features: np.ndarray, how: str = "mean") -> tuple[pd.DataFrame, np.ndarray]:
    """Aggregated (unstandardized) feature vector per treatment, in :func:`bbbc021_treatments` order."""
    treatments, profiles, _ = bbbc021_profiles(images, [features], BBBC021Variant(standardize=False, aggregate=how))
    return treatments, profiles


def bbbc021_scores(
    images: pd.DataFrame, parts: list[np.ndarray], variant: BBBC021Variant = BBBC021Variant(), seed: int = 0
) -> tuple[dict[str, Score], dict]:
    """NSC and NSCB scores of one variant, and what was done (treatments scored, TVN details)."""
    treatments, profiles, info = bbbc021_profiles(images, parts, variant)
    nsc_score, _ = nsc(treatments, profiles, seed=seed)
    nscb_score, _ = nscb(treatments, profiles, seed=seed)
    eligible = nscb_eligible(treatments)
    details = {
        "treatments": len(treatments),
        "nscb_treatments": int(eligible.sum()),
        "nscb_excluded_moas": sorted(set(treatments.loc[~eligible, "moa"])),
        "tvn": info.describe() if info else None,
        "tvn_components": info.components if info else None,
    }
    return {"BBBC021 NSC": nsc_score, "BBBC021 NSCB": nscb_score}, details


# -- HDF5 chunks (DeepLoc layout) -------------------------------------------------------------


@contextmanager
def _open_hdf5(path: Path) -> Iterator:
    """A benchmark HDF5 file open for reading; a file h5py cannot open or read is a
    :class:`BenchmarkFileError` saying whether it is an HTML page, not HDF5 at all, or damaged."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            yield f
    except OSError as exc:
        with open(path, "rb") as raw:
            head = raw.read(256).lstrip().lower()
        if head.startswith((b"<!doctype html", b"<html")):
            problem = "it is an HTML page, not HDF5 (an error or login page saved in its place?)"
        elif not h5py.is_hdf5(path):
            problem = "it is not an HDF5 file (no HDF5 signature)"
        else:
            problem = f"it is truncated or damaged ({Path(path).stat().st_size} bytes; h5py: {exc})"
        raise BenchmarkFileError(f"cannot read {path}: {problem}; download it again") from exc


def chunk_keys(f, key: str, path: Path, option: str) -> list[str]:
    """The datasets holding ``key``'s data: ``key`` itself, or its numbered chunks. ``data`` missing
    but ``data1``, ``data2`` … present, or ``data1`` given: every consecutive chunk from there on."""
    if key in f and not key[-1:].isdigit():
        return [key]
    match = re.fullmatch(r"(.*?)(\d*)", key)
    prefix, start = match[1], int(match[2] or 1)
    keys, n = [], start
    while f"{prefix}{n}" in f:
        keys.append(f"{prefix}{n}")
        n += 1
    if not keys:
        raise BenchmarkFileError(
            f"{path}: no dataset {key!r} (nor chunks {prefix}{start}, {prefix}{start + 1}, …); "
            f"it has {sorted(f.keys())} (set {option} in the catalog's entry)"
        )
    stray = sorted(k for k in f.keys() if re.fullmatch(re.escape(prefix) + r"\d+", k) and k not in keys)
    if stray:
        raise BenchmarkFileError(
            f"{path}: chunks {', '.join(keys)} are numbered consecutively but {', '.join(stray)} also exist: "
            "a chunk is missing, so the file is incomplete"
        )
    return keys


# -- COOS-7 ------------------------------------------------------------------------------------


def read_coos7(path: Path, data_key: str = "data", labels_key: str = "labels") -> tuple[np.ndarray, np.ndarray]:
    """(images N × channels × H × W, labels N) from one COOS-7 HDF5 split, every chunk."""
    data, labels = [], []
    with _open_hdf5(path) as f:
        data_keys, label_keys = chunk_keys(f, data_key, path, "data_key"), chunk_keys(f, labels_key, path, "labels_key")
        if len(data_keys) != len(label_keys):
            raise BenchmarkFileError(
                f"{path}: {len(data_keys)} data chunks ({', '.join(data_keys)}) but {len(label_keys)} label chunks "
                f"({', '.join(label_keys)})"
            )
        for dk, lk in zip(data_keys, label_keys):
            chunk, chunk_labels = f[dk][()], np.asarray(f[lk][()]).astype(np.int64).ravel()
            if chunk.ndim != 4 or len(chunk) != len(chunk_labels):
                raise BenchmarkFileError(
                    f"{path}: {dk} has shape {chunk.shape}, expected (N, channels, H, W) with N = {len(chunk_labels)} labels in {lk}"
                )
            data.append(chunk)
            labels.append(chunk_labels)
    return np.concatenate(data), np.concatenate(labels)


def coos7(features: dict[str, np.ndarray], labels: dict[str, np.ndarray], k: int = 11) -> dict[str, Score]:
    """11-NN fit on the train split's standardized features, accuracy on each test split."""
    scale = prof.fit_scaler(features["train"])
    train = scale(features["train"])
    return {
        split: Score.of(knn_predict(train, labels["train"], scale(features[split]), k) == labels[split], labels[split])
        for split in features
        if split != "train"
    }


# -- CyCLoPs -----------------------------------------------------------------------------------


def read_cyclops(
    paths: list[Path],
    data_key: str = "data1",
    labels_key: str = "Index1",
    names_key: str = "Index1_columns",
    channels: int = 2,
    side: int = 64,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Pooled single cells (N × 2 × 64 × 64: GFP protein, RFP cytosol) of every chunk of every file,
    label indices and class names, with DEAD and GHOST dropped and SPINDLEPOLE merged into SPINDLE."""
    images, names_all = [], []
    for path in paths:
        with _open_hdf5(path) as f:
            data_keys, label_keys = chunk_keys(f, data_key, path, "data_key"), chunk_keys(f, labels_key, path, "labels_key")
            if len(data_keys) != len(label_keys):
                raise BenchmarkFileError(
                    f"{path}: {len(data_keys)} data chunks ({', '.join(data_keys)}) but {len(label_keys)} label chunks "
                    f"({', '.join(label_keys)})"
                )
            if names_key not in f:
                raise BenchmarkFileError(
                    f"{path}: no dataset {names_key!r}; it has {sorted(f.keys())} (set names_key in the catalog's entry)"
                )
            for dk, lk in zip(data_keys, label_keys):
                # A chunk's own class names when it has them (Index2_columns), else the first's.
                own_names = f"{lk}_columns" if names_key == f"{labels_key}_columns" and f"{lk}_columns" in f else names_key
                names = [n.decode() if isinstance(n, bytes) else str(n) for n in np.asarray(f[own_names][()]).ravel()]
                data, onehot = np.asarray(f[dk][()]), np.asarray(f[lk][()])
                if data.ndim != 2 or data.shape[1] != channels * side * side or onehot.shape != (len(data), len(names)):
                    raise BenchmarkFileError(
                        f"{path}: {dk} {data.shape} / {lk} {onehot.shape} do not match {channels}x{side}x{side} "
                        f"cells of {len(names)} classes ({own_names})"
                    )
                images.append(data.reshape(len(data), channels, side, side))
                names_all.extend(names[i] for i in onehot.argmax(1))
    names_all = [CYCLOPS_MERGED.get(n, n) for n in names_all]
    keep = np.array([n not in CYCLOPS_DROPPED for n in names_all], bool)
    classes = sorted(set(np.array(names_all)[keep]))
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[n] for n, k in zip(names_all, keep) if k], np.int64)
    return np.concatenate(images)[keep], labels, classes


def cyclops_class_note(classes: list[str]) -> str:
    """What the class count is and why it differs from the paper's 17."""
    merged = ", ".join(f"{a} into {b}" for a, b in CYCLOPS_MERGED.items())
    return (
        f"{len(classes)} classes after dropping {' and '.join(CYCLOPS_DROPPED)} and merging {merged}, as the original's "
        "evaluation did; the paper's '17 labels' counts SPINDLE and SPINDLEPOLE separately (16 after the merge on the real data)"
    )


def cyclops(features: np.ndarray, labels: np.ndarray, k: int = 11) -> Score:
    """11-NN leave-one-out accuracy on standardized features."""
    x = prof.standardize(features)
    predicted = knn_predict(x, labels, x, k, excluded=lambda rows: rows[:, None] == np.arange(len(x))[None, :])
    return Score.of(predicted == labels, labels)
