"""Writers of the two HDF5 evaluation sets, in the layouts their real readers expect (h5py).

* COOS-7 (``COOS7_v1.1_{train,test1..test4}.hdf5``): ``data`` (N, 2, 64, 64) uint16 — protein, then
  nucleus, the catalog's ``channel_order`` — and ``labels`` (N) class indices. Seven protein
  localizations; the four test sets drift away from the training conditions as the real ones do
  (test1 as train, then brighter, blurrier, noisier "microscopes").
* CyCLoPs (DeepLoc's ``datasets/Chong_{train,valid,test}_set.hdf5``): ``data1`` rows of a flattened
  2 × 64 × 64 float32 cell (GFP protein first, then the RFP cytosol), ``Index1`` one-hot labels and
  ``Index1_columns`` the class names (bytes). The training file holds two chunks (``data2`` /
  ``Index2``), as DeepLoc's loader allows, so the demo reads more than the first chunk. DEAD and
  GHOST cells and a SPINDLEPOLE class are included, so the drop-and-merge runs on the demo too.

Cells are single-cell crops drawn by ``cells.render_field``; the protein channel's compartment
depends on the class, so nearest neighbours can tell classes apart.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from cytoimagenet_assets.demo.cells import Morphology, keyed_rng, render_field, to_uint

# COOS-7's classes (SOURCES.md; the names are unconfirmed there) and the compartment each is drawn as.
COOS7_CLASSES = {
    "Endoplasmic Reticulum": "reticulum",
    "Inner Mitochondrial Membrane": "puncta",
    "Golgi": "perinuclear",
    "Peroxisomes": "nucleoli",
    "Early Endosome": "filaments",
    "Cytosol": "cytoplasm",
    "Nuclear Envelope": "membrane",
}
# How far each test set drifts from the training conditions (strength of a per-split perturbation).
COOS7_SHIFT = {"train": 0.0, "test1": 0.0, "test2": 0.12, "test3": 0.3, "test4": 0.22}
CYCLOPS_CLASSES = (
    "ACTIN",
    "BUDNECK",
    "BUDTIP",
    "CELLPERIPHERY",
    "CYTOPLASM",
    "ENDOSOME",
    "ER",
    "GOLGI",
    "MITOCHONDRIA",
    "NUCLEARPERIPHERY",
    "NUCLEI",
    "NUCLEOLUS",
    "PEROXISOME",
    "SPINDLE",
    "SPINDLEPOLE",
    "VACUOLARMEMBRANE",
    "VACUOLE",
    "DEAD",
    "GHOST",
)
# The classes the demo draws and their compartments; SPINDLEPOLE looks like SPINDLE.
CYCLOPS_DRAWN = {
    "ACTIN": "filaments",
    "BUDNECK": "membrane",
    "NUCLEI": "nucleus",
    "VACUOLE": "perinuclear",
    "SPINDLE": "puncta",
    "SPINDLEPOLE": "puncta",
    "DEAD": "cytoplasm",
    "GHOST": "nucleoli",
}
YEAST = Morphology(nucleus_radius=5.0, elongation=1.1, cell_scale=2.0, density=0.45, texture=0.2, puncta=6)


def _centred(cell: dict[str, np.ndarray], reference: str) -> dict[str, np.ndarray]:
    """The crop rolled so the reference stain's centre of mass sits in the middle, as a segmented single-cell crop."""
    image = cell[reference]
    weight = np.clip(image - np.median(image), 0, None)
    if weight.sum() <= 0:
        return cell
    ys, xs = np.indices(image.shape)
    shift = (
        int(round(image.shape[0] / 2 - (ys * weight).sum() / weight.sum())),
        int(round(image.shape[1] / 2 - (xs * weight).sum() / weight.sum())),
    )
    return {k: np.roll(v, shift, axis=(0, 1)) for k, v in cell.items()}


def _dataset(f, name: str, data) -> None:
    f.create_dataset(name, data=data, track_times=False)  # no timestamps: the same seed gives the same bytes


def write_coos7(raw: Path, seed: int, side: int = 64, train_per_class: int = 12, test_per_class: int = 6) -> None:
    """``COOS7_v1.1_<split>.hdf5`` for train and test1..test4."""
    import h5py

    classes = list(COOS7_CLASSES)
    for split, shift in COOS7_SHIFT.items():
        per_class = train_per_class if split == "train" else test_per_class
        microscope = Morphology().perturbed(f"coos7-microscope-{split}", strength=shift) if shift else Morphology()
        gain = 1.0 + 1.5 * shift
        data = np.zeros((per_class * len(classes), 2, side, side), np.uint16)
        labels = np.zeros(per_class * len(classes), np.int64)
        for c, (name, compartment) in enumerate(COOS7_CLASSES.items()):
            morphology = replace(Morphology(density=0.5).perturbed(f"coos7-{name}", strength=0.8), protein_pattern=compartment)
            morphology = replace(morphology, brightness=morphology.brightness * microscope.brightness, texture=microscope.texture)
            for n in range(per_class):
                i = c * per_class + n
                cell = _centred(
                    render_field(keyed_rng(seed, "coos7", split, name, n), morphology, ["protein", "nucleus"], (side, side)), "nucleus"
                )
                data[i, 0] = to_uint(np.clip(cell["protein"] * gain, 0, 1), 16)
                data[i, 1] = to_uint(np.clip(cell["nucleus"] * gain, 0, 1), 16)
                labels[i] = c
        order = keyed_rng(seed, "coos7-order", split).permutation(len(labels))  # classes interleaved, as a real export
        raw.mkdir(parents=True, exist_ok=True)
        with h5py.File(raw / f"COOS7_v1.1_{split}.hdf5", "w") as f:
            _dataset(f, "data", data[order])
            _dataset(f, "labels", labels[order])


def write_cyclops(raw: Path, seed: int, side: int = 64, per_class: int = 5, rare: int = 2) -> None:
    """``datasets/Chong_{train,valid,test}_set.hdf5`` in DeepLoc's layout; the train set in two chunks.

    Per file: ``per_class`` cells of each drawn class, ``rare`` of SPINDLEPOLE, one DEAD and one GHOST.
    """
    import h5py

    names = list(CYCLOPS_CLASSES)  # the 19 real class names
    counts = {
        name: (per_class if name not in ("SPINDLEPOLE", "DEAD", "GHOST") else rare if name == "SPINDLEPOLE" else 1)
        for name in CYCLOPS_DRAWN
    }
    for part in ("train", "valid", "test"):
        rows, onehot = [], []
        for name, compartment in CYCLOPS_DRAWN.items():
            morphology = replace(
                YEAST.perturbed(f"cyclops-{name}" if name != "SPINDLEPOLE" else "cyclops-SPINDLE", strength=0.7),
                protein_pattern=compartment,
            )
            for n in range(counts[name]):
                cell = _centred(
                    render_field(keyed_rng(seed, "cyclops", part, name, n), morphology, ["protein", "cytoplasm"], (side, side)), "cytoplasm"
                )
                rows.append(np.concatenate([cell["protein"].ravel(), cell["cytoplasm"].ravel()]).astype(np.float32))
                onehot.append(np.eye(len(names), dtype=np.float32)[names.index(name)])
        order = keyed_rng(seed, "cyclops-order", part).permutation(len(rows))
        data, index = np.stack(rows)[order], np.stack(onehot)[order]
        chunks = (
            [(data, index)]
            if part != "train"
            else [(data[: len(data) // 2], index[: len(data) // 2]), (data[len(data) // 2 :], index[len(data) // 2 :])]
        )
        path = raw / "datasets" / f"Chong_{part}_set.hdf5"
        path.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(path, "w") as f:
            for k, (chunk, labels) in enumerate(chunks, start=1):
                _dataset(f, f"data{k}", chunk)
                _dataset(f, f"Index{k}", labels)
            _dataset(f, "Index1_columns", np.array([n.encode() for n in names]))
