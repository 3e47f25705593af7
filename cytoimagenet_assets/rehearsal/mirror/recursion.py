"""Recursion's RxRx sets: each a metadata zip holding its table and an images zip of 8-bit PNGs."""

from __future__ import annotations

import numpy as np

from cytoimagenet_assets.demo.formats import csv_bytes
from cytoimagenet_assets.demo.generators import rxrx_image_path, well_name
from cytoimagenet_assets.rehearsal.mirror.context import Ctx
from cytoimagenet_assets.rehearsal.mirror.population import REAL_ROWS, frequencies, names, quotas


def _rxrx_zips(ctx: Ctx, folder: str, table: str, header: list[str], rows: list[list], channels: int) -> None:
    """<name>-metadata.zip holding <folder>/<table>, <name>-images.zip holding <folder>/images/<exp>/Plate<p>/..."""
    metadata, images = sorted((f for f in ctx.source.download.files), key=lambda f: f.role != "metadata")[:2]
    with ctx.out.zip(ctx.at(metadata.url)) as z:
        z.add(f"{folder}/{table}", csv_bytes(header, rows))
    experiment, plate, well, site = (header.index(c) for c in ("experiment", "plate", "well", "site"))
    with ctx.out.zip(ctx.at(images.url)) as z:
        for i, row in enumerate(rows):
            for c in range(1, channels + 1):
                name = rxrx_image_path(row[experiment], row[plate], row[well], row[site], c)
                z.add(f"{folder}/images/{name}", ctx.image("png8", f"w{c}", i))


RXRX1_LINES = {"HEPG2": 11, "HUVEC": 24, "RPE": 11, "U2OS": 5}


def _rec_rxrx1(ctx: Ctx) -> int:
    """51 experiments x 4 plates x 308 wells x 2 sites: 1,108 siRNAs once per experiment (277 per
    plate), 30 positive controls and 1 negative control (EMPTY) on every plate. The siRNAs are drawn
    in exact proportion, so none reaches the threshold by chance at small scales."""
    experiments = [(line, f"{line}-{k + 1:02d}") for line, count in RXRX1_LINES.items() for k in range(count)]
    sirnas = ctx.draw(np.r_[np.full(1108, 1.0), np.full(31, 4.0)])  # per experiment: once, or on each of the 4 plates
    rows = []
    for (g, item), sirna_id in zip(ctx.spread(len(experiments) * 4, 308 * 2, ctx.n), sirnas):
        (line, experiment), plate = experiments[g // 4], g % 4 + 1
        w, site = divmod(item, 2)
        well = well_name(w, 22, first_row=1, first_column=2)
        well_type = "treatment" if sirna_id < 1108 else "negative_control" if sirna_id == 1138 else "positive_control"
        sirna = "EMPTY" if well_type == "negative_control" else f"s{10_000 + sirna_id * 17}"
        dataset = "test" if g // 4 % 3 == 2 else "train"
        site_id = f"{experiment}_{plate}_{well}_{site + 1}"
        rows.append([site_id, site_id.rsplit("_", 1)[0], line, dataset, experiment, plate, well, site + 1, well_type, sirna, sirna_id])
    header = ["site_id", "well_id", "cell_type", "dataset", "experiment", "plate", "well", "site", "well_type", "sirna", "sirna_id"]
    _rxrx_zips(ctx, "rxrx1", "metadata.csv", header, rows, 6)
    return len(rows)


def _rxrx_sites(ctx: Ctx, experiments: list[tuple[str, str, float]], sites: int) -> list[tuple[str, str, int, str, int]]:
    """(cell type, experiment, plate, well, site) of ``n`` sites on 1,536-well plates (1,380 inner wells)."""
    per_experiment = quotas(np.array([share for _, _, share in experiments]), ctx.n)
    out = []
    for (line, experiment, _), count in zip(experiments, per_experiment):
        for i in range(int(count)):
            w, site = divmod(i, sites)
            plate, w = divmod(w, 1380)
            out.append((line, experiment, plate + 1, well_name(w, 46, first_row=1, first_column=2), site + 1))
    return out


def _rxrx_compounds(ctx: Ctx, prefix: str, real: int, values: int, classes: int, treated: float) -> tuple[list[str], np.ndarray]:
    """Compound names and one per row ('' for untreated wells), skewed so ``classes`` reach the threshold."""
    weights = np.r_[frequencies(real * treated, values, classes), real * (1 - treated)]
    return [*names(prefix, values), ""], ctx.draw(weights)


def _rec_rxrx2(ctx: Ctx) -> int:
    """HUVEC with ~434 soluble factors; per the RxRx2 README the table is rxrx2-metadata.csv."""
    sites = _rxrx_sites(ctx, [("HUVEC", f"HUVEC-{k + 1}", 1.0) for k in range(6)], 4)
    compounds, drawn = _rxrx_compounds(ctx, "rxrx2 factor ", REAL_ROWS["rec_rxrx2"], 434, 115, 0.9)
    rows = [
        [f"{e}_{p}_{w}_{s}", f"{e}_{p}_{w}", line, e, p, w, s, compounds[c], "0.1" if compounds[c] else ""]
        for (line, e, p, w, s), c in zip(sites, drawn)
    ]
    header = ["site_id", "well_id", "cell_type", "experiment", "plate", "well", "site", "treatment", "treatment_conc"]
    _rxrx_zips(ctx, "rxrx2", "rxrx2-metadata.csv", header, rows, 6)
    return len(rows)


RXRX19_COLUMNS = [  # RxRx19a's and RxRx19b's metadata.csv
    "site_id",
    "well_id",
    "cell_type",
    "experiment",
    "plate",
    "well",
    "site",
    "disease_condition",
    "treatment",
    "treatment_conc",
    "SMILES",
]


def _rec_rxrx19a(ctx: Ctx) -> int:
    """HRCE and VERO, 1,672 compounds in 6 doses, mock / irradiated / active SARS-CoV-2 controls; 5 channels."""
    experiments = [("HRCE", "HRCE-1", 0.45), ("HRCE", "HRCE-2", 0.4), ("VERO", "VERO-1", 0.08), ("VERO", "VERO-2", 0.07)]
    sites = _rxrx_sites(ctx, experiments, 4)
    compounds, drawn = _rxrx_compounds(ctx, "rxrx19a cpd ", REAL_ROWS["rec_rxrx19a"], 1672, 425, 0.85)
    conditions = ["Active SARS-CoV-2", "Mock", "UV Inactivated SARS-CoV-2"]
    condition = ctx.draw(np.array([0.86, 0.07, 0.07]))
    rows = []
    for (line, e, p, w, s), c, d in zip(sites, drawn, condition):
        treated = bool(compounds[c])
        rows.append(
            [
                f"{e}_{p}_{w}_{s}",
                f"{e}_{p}_{w}",
                line,
                e,
                p,
                w,
                s,
                conditions[0 if treated else d],
                compounds[c],
                "1.0" if treated else "",
                "C" if treated else "",
            ]
        )
    _rxrx_zips(ctx, "RxRx19a", "metadata.csv", RXRX19_COLUMNS, rows, 5)
    return len(rows)


def _rec_rxrx19b(ctx: Ctx) -> int:
    sites = _rxrx_sites(ctx, [("HUVEC", f"HUVEC-{k + 1}", 1.0) for k in range(2)], 1)
    compounds, drawn = _rxrx_compounds(ctx, "rxrx19b cpd ", REAL_ROWS["rec_rxrx19b"], 1856, 95, 0.8)
    condition = ctx.draw(np.array([0.7, 0.2, 0.1]))
    rows = []
    for (line, e, p, w, s), c, d in zip(sites, drawn, condition):
        treated = bool(compounds[c])
        cocktail = "storm-severe" if treated else ["storm-severe", "healthy", ""][d]
        rows.append(
            [f"{e}_{p}_{w}_{s}", f"{e}_{p}_{w}", line, e, p, w, s, cocktail, compounds[c], "1.0" if treated else "", "C" if treated else ""]
        )
    _rxrx_zips(ctx, "rxrx19b", "metadata.csv", RXRX19_COLUMNS, rows, 6)
    return len(rows)


WRITERS = {"rec_rxrx1": _rec_rxrx1, "rec_rxrx2": _rec_rxrx2, "rec_rxrx19a": _rec_rxrx19a, "rec_rxrx19b": _rec_rxrx19b}
