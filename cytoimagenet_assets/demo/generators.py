"""Writers of synthetic sources in the on-disk formats of real source families.

Each writer lays files out exactly as the real distribution does (folder structure, file names,
bit depth, metadata tables with the real column names), so the demo runs through the same
parsers as the real data. Every image's random generator is seeded from (seed, its own key), so
the output is identical on every run and independent of the order files are written in.

A family's file names and tables are defined here once (``bbbc021_image_row``, ``operetta_name``,
``rxrx_image_path`` ...) and the rehearsal mirror, which writes the real sources of these families
at scale, uses the same functions; the bytes of every file come from :mod:`.formats`.
"""

from __future__ import annotations

import csv
import uuid
from pathlib import Path

import numpy as np

from cytoimagenet_assets.demo.cells import Morphology, keyed_rng, render_field, stable_hash, to_rgb, to_uint
from cytoimagenet_assets.demo.formats import csv_bytes, pillow_bytes, tiff_bytes, write_file
from cytoimagenet_assets.demo.hdf5 import write_coos7, write_cyclops

BASE = Morphology()


def _uuid(seed: int, *key: object) -> uuid.UUID:
    return uuid.UUID(bytes=keyed_rng(seed, "uuid", *key).bytes(16), version=4)


def well_name(i: int, columns: int = 24, pad: bool = True, first_row: int = 0, first_column: int = 1) -> str:
    """Well ``i`` of a plate read row by row: A01 (pad) or A1, rows past Z as AA, AB ..."""
    row, column = divmod(i, columns)
    row += first_row
    letters = chr(65 + row) if row < 26 else "A" + chr(65 + row - 26)
    return f"{letters}{column + first_column:02d}" if pad else f"{letters}{column + first_column}"


def _inner_wells(n: int) -> list[str]:
    """n distinct 384-well names in plate order (B02, B03, ...), skipping the edge wells."""
    return [well_name(i, 22, first_row=1, first_column=2) for i in range(n)]


# -- BBBC021: MCF7 compound profiling (evaluation set) -----------------------------------------

BBBC021_MOAS = {
    "Actin disruptors": ["cytochalasin B", "latrunculin B"],
    "Microtubule destabilizers": ["nocodazole", "vincristine"],
    "DNA damage": ["etoposide", "mitomycin C"],
    "Protein synthesis": ["emetine", "cycloheximide"],
}
BBBC021_PLATES = {"Week1": "Week1_22123", "Week2": "Week2_24121", "Week3": "Week3_25421"}
BBBC021_IMAGE_COLUMNS = [
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


def bbbc021_image_name(well: str, site: int, wavelength: int, image_uuid: str) -> str:
    return f"{well}_s{site}_w{wavelength}{image_uuid}.tif"


def bbbc021_image_row(
    table: int, number: int, files: list[str], folder: str, plate: str, well: str, replicate: int, compound: str, concentration: float
) -> list:
    """A row of BBBC021_v1_image.csv; ``files`` are the DAPI, Tubulin and Actin images, all in ``folder``."""
    dapi, tubulin, actin = files
    return [table, number, dapi, folder, tubulin, folder, actin, folder, plate, well, replicate, compound, f"{concentration:.6f}"]


def bbbc021_image_csv(rows: list[list]) -> bytes:
    return csv_bytes(BBBC021_IMAGE_COLUMNS, rows, quoting=csv.QUOTE_NONNUMERIC)


def bbbc021_moa_csv(treatments: list[tuple[str, float, str]]) -> bytes:
    """BBBC021_v1_moa.csv of (compound, concentration, MOA) and DMSO: like the real file, short number
    spellings (0.3 vs 0.300000) and old-Mac CR line endings."""
    rows = [[c, f"{conc:g}", moa] for c, conc, moa in treatments] + [["DMSO", "0", "DMSO"]]
    return csv_bytes(["compound", "concentration", "moa"], rows, line_end="\r")


def write_bbbc021(raw: Path, seed: int, size: int = 128, sites: int = 2, replicates: int = 3) -> None:
    """``Week*/Week*_<plate>/<well>_s<site>_w<1|2|4><UUID>.tif`` (16-bit) plus image.csv and moa.csv.

    As in the real set, each treatment is imaged in one week (batch), DMSO in every week, and each
    week's plate carries its own small intensity and morphology offset (a batch effect), so that
    the NSCB protocol (neighbours from other batches only) is meaningful.
    """
    treatments = [(c, conc, moa) for moa, compounds in BBBC021_MOAS.items() for c in compounds for conc in (0.3, 3.0)]
    stains = [("nucleus", 1), ("microtubules", 2), ("actin", 4)]  # DAPI, Tubulin, Actin: w1, w2, w4
    weeks = list(BBBC021_PLATES.items())
    plan = [(weeks[i % len(weeks)], t) for i, t in enumerate(treatments)] + [(week, ("DMSO", 0.0, "DMSO")) for week in weeks]
    image_rows, number = [], 0
    wells = {plate: iter(_inner_wells(len(plan) * replicates)) for _, plate in weeks}
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
                rng = keyed_rng(seed, "bbbc021", plate, well, site)
                images = render_field(rng, morphology, [s for s, _ in stains], (size, size))
                files = []
                for stain, w in stains:
                    files.append(bbbc021_image_name(well, site, w, str(_uuid(seed, plate, well, site, f"w{w}")).upper()))
                    write_file(raw / week / plate / files[-1], tiff_bytes(to_uint(images[stain], 12), compression="zlib"))
                image_rows.append(bbbc021_image_row(table_number, number, files, f"{week}/{plate}", plate, well, replicate, compound, conc))
    write_file(raw / "BBBC021_v1_image.csv", bbbc021_image_csv(image_rows))
    write_file(raw / "BBBC021_v1_moa.csv", bbbc021_moa_csv(treatments))


# -- RxRx1 (Kaggle layout) ---------------------------------------------------------------------

RXRX_EXPERIMENTS = ("HEPG2-01", "HUVEC-01", "U2OS-01")
RXRX_CHANNELS = ("nucleus", "er", "actin", "nucleoli", "mitochondria", "golgi")


def rxrx_image_path(experiment: str, plate: int, well: str, site: int, channel: int) -> str:
    return f"{experiment}/Plate{plate}/{well}_s{site}_w{channel}.png"


def write_rxrx1(raw: Path, seed: int, size: int = 160, sirnas: int = 6, wells_per_sirna: int = 8, controls: int = 3) -> None:
    """``train/<experiment>/Plate<p>/<well>_s<site>_w<1-6>.png`` plus train.csv and train_controls.csv."""
    train, control_rows = [], []
    for experiment in RXRX_EXPERIMENTS:
        cell_line = BASE.perturbed(experiment.split("-")[0], strength=0.5)
        plan = [(f"sirna_{k}", None) for k in range(1, sirnas + 1) for _ in range(wells_per_sirna)]
        plan += [("UNTREATED", "negative_control")] * controls + [("sirna_1108", "positive_control")] * controls
        for (sirna, well_type), well in zip(plan, _inner_wells(len(plan))):
            plate = 1 + stable_hash(experiment, well) % 2
            id_code = f"{experiment}_{plate}_{well}"
            (control_rows if well_type else train).append([id_code, experiment, plate, well, sirna] + ([well_type] if well_type else []))
            morphology = cell_line if sirna == "UNTREATED" else cell_line.perturbed(sirna, strength=0.8)
            for site in (1, 2):
                images = render_field(keyed_rng(seed, "rxrx1", id_code, site), morphology, list(RXRX_CHANNELS), (size, size))
                for w, stain in enumerate(RXRX_CHANNELS, start=1):
                    write_file(
                        raw / "train" / rxrx_image_path(experiment, plate, well, site, w), pillow_bytes(to_uint(images[stain], 8), "PNG")
                    )
    write_file(raw / "train.csv", csv_bytes(["id_code", "experiment", "plate", "well", "sirna"], train))
    write_file(raw / "train_controls.csv", csv_bytes(["id_code", "experiment", "plate", "well", "sirna", "well_type"], control_rows))


# -- IDR screen (PerkinElmer Operetta layout, idr0037-style annotation) ------------------------

IDR_CELL_LINES = ("HPSI0813i-ffdm_3", "HPSI0913i-gedo_33", "HPSI0713i-kaks_2", "A1ATD-iPSC patient 1")
IDR_CHANNELS = ("nucleus", "proliferation", "cell membrane", "brightfield")
IDR0037_CHANNELS = "DAPI:nuclei;Alexa 488:EdU, proliferation;CellMask:plasma membrane;Brightfield:cell outline"


def operetta_name(row: int, column: int, field: int, channel: int) -> str:
    """An Operetta/Phenix image in a plate's Images/ folder, beside its Index.idx.xml."""
    return f"r{row:02d}c{column:02d}f{field:02d}p01-ch{channel}sk1fk1fl1.tiff"


def idr_plates_tsv(lines: list[tuple[str, str, str]]) -> bytes:
    """(plate, fileset, path) as IDR's plates.tsv lists them: plate <TAB> /uod/idr/filesets/<fileset>/<path>."""
    return "".join(f"{plate}\t/uod/idr/filesets/{fileset}/{path}\n" for plate, fileset, path in lines).encode()


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
    rows, plate_lines = [], []
    for p in range(1, plates + 1):
        plate, measurement = f"experiment_{p:02d}", f"Synthetic HipSci {p}__2014-0{p}-01T10_00_00-Measurement1"
        folder = f"images/{measurement}/Images"
        plate_lines.append((plate, accession, f"{folder}/Index.idx.xml"))
        well_number = 0
        for line in IDR_CELL_LINES:
            for k in range(wells_per_line):
                r, c = 1 + well_number // 12, 1 + well_number % 12
                well_number += 1
                compound = "fibronectin" if k % 3 else "laminin"
                cell_type = "" if line.startswith("A1ATD") else "induced pluripotent stem cell"
                well = f"{chr(64 + r)}{c}"
                rows.append([plate, well, "Homo sapiens", line, cell_type, compound, "1 microgram per milliliter", "", IDR0037_CHANNELS])
                morphology = BASE.perturbed(line, strength=0.9).perturbed(compound, strength=0.3)
                for f in range(1, fields + 1):
                    images = render_field(keyed_rng(seed, accession, plate, r, c, f), morphology, list(IDR_CHANNELS), (size, size))
                    images["brightfield"] = 0.55 + 0.25 * images["cell membrane"] - 0.2 * images["nucleus"]
                    for ch, stain in enumerate(IDR_CHANNELS, start=1):
                        write_file(raw / folder / operetta_name(r, c, f, ch), tiff_bytes(to_uint(np.clip(images[stain], 0, 1), 16)))
    write_file(raw / "idrdemo-screenA-annotation.csv", csv_bytes(header, rows, quoting=csv.QUOTE_NONNUMERIC))
    write_file(raw / "idrdemo-screenA-plates.tsv", idr_plates_tsv(plate_lines))


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
        rng = keyed_rng(seed, "hpa", n)
        image_id = str(_uuid(seed, "hpa", n))
        target = [codes[n % len(codes)]] + ([codes[(n * 7 + 3) % len(codes)]] if n % 4 == 0 else [])
        target = list(dict.fromkeys(target))
        rows.append([image_id, " ".join(map(str, target))])
        morphology = BASE.perturbed(f"hpa-cell-{n % 3}", strength=0.4).localized(HPA_LOCALIZATIONS[target[0]])
        channels = render_field(rng, morphology, list(HPA_COLORS.values()), (size, size))
        for color, stain in HPA_COLORS.items():
            write_file(raw / "train" / f"{image_id}_{color}.png", pillow_bytes(to_uint(channels[stain], 8), "PNG"))
    write_file(raw / "train.csv", csv_bytes(["Id", "Target"], rows))


# -- Folder-per-class RGB sets (Leukemia BMP, Cell Cycle JPG) ----------------------------------


def leukemia_path(fold: int, label: str, patient: str, image: int, cell: int) -> str:
    return f"C-NMC_Leukemia/training_data/fold_{fold}/{label}/UID_{patient}_{image}_{cell}_{label}.bmp"


def cell_cycle_path(label: str, i: int) -> str:
    """The i-th image of a phase; the real names number photos in threes (IMG_1000-1, -2, -3)."""
    return f"nematode cells/nematode cells/{label}/IMG_{1000 + i // 3:04d}-{i % 3 + 1}.jpg"


def write_leukemia(raw: Path, seed: int, size: int = 160, per_class: int = 60) -> None:
    """``C-NMC_Leukemia/training_data/fold_<k>/{all,hem}/UID_<patient>_<image>_<cell>_<all|hem>.bmp`` (RGB)."""
    for label in ("all", "hem"):
        morphology = BASE.perturbed(f"leukemia-{label}", strength=1.2)
        for n in range(per_class):
            patient = f"{n % 7 + 1}" if label == "all" else f"H{n % 5 + 1}"
            gray = render_field(keyed_rng(seed, "leukemia", label, n), morphology, ["nucleus"], (size, size))["nucleus"]
            write_file(raw / leukemia_path(n % 3, label, patient, n // 7 + 1, n + 1), pillow_bytes(to_rgb(gray, (0.45, 0.2, 0.55)), "BMP"))


def write_cell_cycle(raw: Path, seed: int, size: int = 160, per_class: int = 50) -> None:
    """``nematode cells/nematode cells/{interphase,mitosis}/IMG_<nnnn>-<k>.jpg`` (RGB JPEG)."""
    for label in ("interphase", "mitosis"):
        morphology = BASE.perturbed(f"cell-cycle-{label}", strength=1.2)
        for n in range(per_class):
            gray = render_field(keyed_rng(seed, "cell_cycle", label, n), morphology, ["nucleus"], (size, size))["nucleus"]
            write_file(raw / cell_cycle_path(label, n), pillow_bytes(to_rgb(gray, (0.35, 0.15, 0.45)), "JPEG", quality=92))


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
