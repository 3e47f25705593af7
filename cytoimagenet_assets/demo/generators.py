"""Writers of synthetic sources in the on-disk formats of real source families.

Each writer lays files out exactly as the real distribution does (folder structure, file names,
bit depth, metadata tables with the real column names), so the demo runs through the same
parsers as the real data. Every image's random generator is seeded from (seed, its own key), so
the output is identical on every run and independent of the order files are written in.
"""

from __future__ import annotations

import csv
import uuid
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from cytoimagenet_assets.demo.cells import Morphology, render_field, stable_hash, to_rgb, to_uint
from cytoimagenet_assets.demo.hdf5 import write_coos7, write_cyclops

BASE = Morphology()


def _rng(seed: int, *key: object) -> np.random.Generator:
    return np.random.default_rng([seed, stable_hash(*key)])


def _uuid(seed: int, *key: object) -> uuid.UUID:
    return uuid.UUID(bytes=_rng(seed, "uuid", *key).bytes(16), version=4)


def _write_csv(path: Path, header: list[str], rows: list[list], quote_strings: bool = False, line_end: str = "\n") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, quoting=csv.QUOTE_NONNUMERIC if quote_strings else csv.QUOTE_MINIMAL, lineterminator=line_end)
        writer.writerow(header)
        writer.writerows(rows)


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="PNG", optimize=False, compress_level=6)


def _wells(n: int, rows: str = "BCDEFGHIJKLMNO", first_col: int = 2) -> list[str]:
    """n distinct 384-well names in plate order (B02, B03, ...), skipping the edge wells."""
    return [f"{rows[i // 22]}{first_col + i % 22:02d}" for i in range(n)]


# -- BBBC021: MCF7 compound profiling (evaluation set) -----------------------------------------

BBBC021_MOAS = {
    "Actin disruptors": ["cytochalasin B", "latrunculin B"],
    "Microtubule destabilizers": ["nocodazole", "vincristine"],
    "DNA damage": ["etoposide", "mitomycin C"],
    "Protein synthesis": ["emetine", "cycloheximide"],
}
BBBC021_PLATES = {"Week1": "Week1_22123", "Week2": "Week2_24121", "Week3": "Week3_25421"}


def write_bbbc021(raw: Path, seed: int, size: int = 128, sites: int = 2, replicates: int = 3) -> None:
    """``Week*/Week*_<plate>/<well>_s<site>_w<1|2|4><UUID>.tif`` (16-bit) plus image.csv and moa.csv.

    As in the real set, each treatment is imaged in one week (batch), DMSO in every week, and each
    week's plate carries its own small intensity and morphology offset (a batch effect), so that
    the NSCB protocol (neighbours from other batches only) is meaningful.
    """
    treatments = [(c, conc, moa) for moa, compounds in BBBC021_MOAS.items() for c in compounds for conc in (0.3, 3.0)]
    stains = {"DAPI": ("nucleus", "w1"), "Tubulin": ("microtubules", "w2"), "Actin": ("actin", "w4")}
    weeks = list(BBBC021_PLATES.items())
    plan = [(weeks[i % len(weeks)], t) for i, t in enumerate(treatments)] + [(week, ("DMSO", 0.0, "DMSO")) for week in weeks]
    image_rows, number = [], 0
    wells = {plate: iter(_wells(len(plan) * replicates)) for _, plate in weeks}
    for (week, plate), (compound, conc, moa) in plan:
        # The mechanism sets the phenotype, the dose its strength, the compound a small variation,
        # the plate a batch effect.
        strength = 0.0 if moa == "DMSO" else (1.0 if conc < 1 else 1.6)
        morphology = BASE.perturbed(plate, strength=0.15).perturbed(moa, strength=strength).perturbed(compound, strength=0.15 * strength)
        table_number = 1 + [p for _, p in weeks].index(plate)
        for replicate in range(1, replicates + 1):
            well = next(wells[plate])
            for site in range(1, sites + 1):
                number += 1
                rng = _rng(seed, "bbbc021", plate, well, site)
                images = render_field(rng, morphology, [s for s, _ in stains.values()], (size, size))
                names = {}
                for key, (stain, w) in stains.items():
                    names[key] = f"{well}_s{site}_{w}{str(_uuid(seed, plate, well, site, w)).upper()}.tif"
                    path = raw / week / plate / names[key]
                    path.parent.mkdir(parents=True, exist_ok=True)
                    tifffile.imwrite(path, to_uint(images[stain], 12), compression="zlib")
                folder = f"{week}/{plate}"
                image_rows.append(
                    [
                        table_number,
                        number,
                        names["DAPI"],
                        folder,
                        names["Tubulin"],
                        folder,
                        names["Actin"],
                        folder,
                        plate,
                        well,
                        replicate,
                        compound,
                        f"{conc:.6f}",
                    ]
                )
    header = [
        "TableNumber",
        "ImageNumber",
        "Image_FileName_DAPI",
        "Image_PathName_DAPI",
        "Image_FileName_Tubulin",
        "Image_PathName_Tubulin",
        "Image_FileName_Actin",
        "Image_PathName_Actin",
        "Image_Metadata_Plate_DAPI",
        "Image_Metadata_Well_DAPI",
        "Replicate",
        "Image_Metadata_Compound",
        "Image_Metadata_Concentration",
    ]
    _write_csv(raw / "BBBC021_v1_image.csv", header, image_rows, quote_strings=True)
    # Like the real file: short number spellings (0.3 vs 0.300000) and old-Mac CR line endings.
    moa_rows = [[c, f"{conc:g}", moa] for c, conc, moa in treatments] + [["DMSO", "0", "DMSO"]]
    _write_csv(raw / "BBBC021_v1_moa.csv", ["compound", "concentration", "moa"], moa_rows, line_end="\r")


# -- RxRx1 (Kaggle layout) ---------------------------------------------------------------------

RXRX_EXPERIMENTS = ("HEPG2-01", "HUVEC-01", "U2OS-01")
RXRX_CHANNELS = ("nucleus", "er", "actin", "nucleoli", "mitochondria", "golgi")


def write_rxrx1(raw: Path, seed: int, size: int = 160, sirnas: int = 6, wells_per_sirna: int = 8, controls: int = 3) -> None:
    """``train/<experiment>/Plate<p>/<well>_s<site>_w<1-6>.png`` plus train.csv and train_controls.csv."""
    train, control_rows = [], []
    for experiment in RXRX_EXPERIMENTS:
        cell_line = BASE.perturbed(experiment.split("-")[0], strength=0.5)
        plan = [(f"sirna_{k}", None) for k in range(1, sirnas + 1) for _ in range(wells_per_sirna)]
        plan += [("UNTREATED", "negative_control")] * controls + [("sirna_1108", "positive_control")] * controls
        for (sirna, well_type), well in zip(plan, _wells(len(plan))):
            plate = 1 + stable_hash(experiment, well) % 2
            id_code = f"{experiment}_{plate}_{well}"
            (control_rows if well_type else train).append([id_code, experiment, plate, well, sirna] + ([well_type] if well_type else []))
            morphology = cell_line if sirna == "UNTREATED" else cell_line.perturbed(sirna, strength=0.8)
            for site in (1, 2):
                images = render_field(_rng(seed, "rxrx1", id_code, site), morphology, list(RXRX_CHANNELS), (size, size))
                for w, stain in enumerate(RXRX_CHANNELS, start=1):
                    _png(raw / "train" / experiment / f"Plate{plate}" / f"{well}_s{site}_w{w}.png", to_uint(images[stain], 8))
    _write_csv(raw / "train.csv", ["id_code", "experiment", "plate", "well", "sirna"], train)
    _write_csv(raw / "train_controls.csv", ["id_code", "experiment", "plate", "well", "sirna", "well_type"], control_rows)


# -- IDR screen (PerkinElmer Operetta layout, idr0037-style annotation) ------------------------

IDR_CELL_LINES = ("HPSI0813i-ffdm_3", "HPSI0913i-gedo_33", "HPSI0713i-kaks_2", "A1ATD-iPSC patient 1")
IDR_CHANNELS = ("nucleus", "proliferation", "cell membrane", "brightfield")


def write_idr_screen(
    raw: Path,
    seed: int,
    accession: str = "idrdemo-synthetic-screen",
    size: int = 192,
    plates: int = 2,
    wells_per_line: int = 6,
    fields: int = 2,
) -> None:
    """``images/<measurement>/Images/r<RR>c<CC>f<FF>p01-ch<C>sk1fk1fl1.tiff`` with an IDR annotation CSV
    (``Characteristics [...]`` / ``Experimental Condition [...]`` columns) and a plates.tsv."""
    header = [
        "Plate",
        "Well",
        "Characteristics [Organism]",
        "Characteristics [Cell Line]",
        "Characteristics [Cell Type]",
        "Experimental Condition [Compound]",
        "Experimental Condition [Dose]",
        "Control Type",
        "Channels",
    ]
    channels = "DAPI:nuclei;Alexa 488:EdU, proliferation;CellMask:plasma membrane;Brightfield:cell outline"
    rows, plate_lines = [], []
    for p in range(1, plates + 1):
        plate, measurement = f"experiment_{p:02d}", f"Synthetic HipSci {p}__2014-0{p}-01T10_00_00-Measurement1"
        folder = f"images/{measurement}/Images"
        plate_lines.append(f"{plate}\t/uod/idr/filesets/{accession}/{folder}/Index.idx.xml")
        well_number = 0
        for line in IDR_CELL_LINES:
            for k in range(wells_per_line):
                r, c = 1 + well_number // 12, 1 + well_number % 12
                well_number += 1
                compound = "fibronectin" if k % 3 else "laminin"
                cell_type = "" if line.startswith("A1ATD") else "induced pluripotent stem cell"
                rows.append(
                    [plate, f"{chr(64 + r)}{c}", "Homo sapiens", line, cell_type, compound, "1 microgram per milliliter", "", channels]
                )
                morphology = BASE.perturbed(line, strength=0.9).perturbed(compound, strength=0.3)
                for f in range(1, fields + 1):
                    images = render_field(_rng(seed, accession, plate, r, c, f), morphology, list(IDR_CHANNELS), (size, size))
                    images["brightfield"] = 0.55 + 0.25 * images["cell membrane"] - 0.2 * images["nucleus"]
                    for ch, stain in enumerate(IDR_CHANNELS, start=1):
                        path = raw / folder / f"r{r:02d}c{c:02d}f{f:02d}p01-ch{ch}sk1fk1fl1.tiff"
                        path.parent.mkdir(parents=True, exist_ok=True)
                        tifffile.imwrite(path, to_uint(np.clip(images[stain], 0, 1), 16))
    _write_csv(raw / "idrdemo-screenA-annotation.csv", header, rows, quote_strings=True)
    (raw / "idrdemo-screenA-plates.tsv").write_text("\n".join(plate_lines) + "\n", encoding="utf-8")


# -- Human Protein Atlas (Kaggle 2018 layout) --------------------------------------------------

HPA_LOCALIZATIONS = {
    0: "Nucleoplasm",
    2: "Nucleoli",
    6: "Endoplasmic reticulum",
    7: "Golgi apparatus",
    21: "Plasma membrane",
    23: "Mitochondria",
    25: "Cytosol",
    11: "Intermediate filaments",
}
HPA_COLORS = {"red": "microtubules", "green": "protein", "blue": "nucleus", "yellow": "er"}


def write_hpa(raw: Path, seed: int, size: int = 192, images: int = 320) -> None:
    """``train/<Id>_{red,green,blue,yellow}.png`` (8-bit) plus train.csv (Id, space-separated Target)."""
    codes = sorted(HPA_LOCALIZATIONS)
    rows = []
    for n in range(images):
        rng = _rng(seed, "hpa", n)
        image_id = str(_uuid(seed, "hpa", n))
        target = [codes[n % len(codes)]] + ([codes[(n * 7 + 3) % len(codes)]] if n % 4 == 0 else [])
        target = list(dict.fromkeys(target))
        rows.append([image_id, " ".join(map(str, target))])
        morphology = BASE.perturbed(f"hpa-cell-{n % 3}", strength=0.4).localized(HPA_LOCALIZATIONS[target[0]])
        channels = render_field(rng, morphology, list(HPA_COLORS.values()), (size, size))
        for color, stain in HPA_COLORS.items():
            _png(raw / "train" / f"{image_id}_{color}.png", to_uint(channels[stain], 8))
    _write_csv(raw / "train.csv", ["Id", "Target"], rows)


# -- Folder-per-class RGB sets (Leukemia BMP, Cell Cycle JPG) ----------------------------------


def write_leukemia(raw: Path, seed: int, size: int = 160, per_class: int = 60) -> None:
    """``C-NMC_Leukemia/training_data/fold_<k>/{all,hem}/UID_<patient>_<image>_<cell>_<all|hem>.bmp`` (RGB)."""
    for label in ("all", "hem"):
        morphology = BASE.perturbed(f"leukemia-{label}", strength=1.2)
        for n in range(per_class):
            patient = f"{n % 7 + 1}" if label == "all" else f"H{n % 5 + 1}"
            name = f"UID_{patient}_{n // 7 + 1}_{n + 1}_{label}.bmp"
            gray = render_field(_rng(seed, "leukemia", label, n), morphology, ["nucleus"], (size, size))["nucleus"]
            path = raw / "C-NMC_Leukemia" / "training_data" / f"fold_{n % 3}" / label / name
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(to_rgb(gray, (0.45, 0.2, 0.55))).save(path, format="BMP")


def write_cell_cycle(raw: Path, seed: int, size: int = 160, per_class: int = 50) -> None:
    """``nematode cells/nematode cells/{interphase,mitosis}/IMG_<nnnn>-<k>.jpg`` (RGB JPEG)."""
    for label in ("interphase", "mitosis"):
        morphology = BASE.perturbed(f"cell-cycle-{label}", strength=1.2)
        for n in range(per_class):
            gray = render_field(_rng(seed, "cell_cycle", label, n), morphology, ["nucleus"], (size, size))["nucleus"]
            path = raw / "nematode cells" / "nematode cells" / label / f"IMG_{1000 + n // 3:04d}-{n % 3 + 1}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(to_rgb(gray, (0.35, 0.15, 0.45))).save(path, format="JPEG", quality=92)


GENERATORS = {
    "bbbc021": write_bbbc021,
    "coos7": write_coos7,
    "cyclops": write_cyclops,
    "rxrx1": write_rxrx1,
    "idr_screen": write_idr_screen,
    "hpa": write_hpa,
    "leukemia": write_leukemia,
    "cell_cycle": write_cell_cycle,
}
