"""The evaluation sets: BBBC021's plates and tables (the demo's layout, all 55 plates), COOS-7 and
CyCLoPs (the demo's HDF5 writers at the mirror's scale)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from cytoimagenet_assets.demo.formats import csv_bytes
from cytoimagenet_assets.demo.generators import bbbc021_image_csv, bbbc021_image_name, bbbc021_image_row, bbbc021_moa_csv, well_name
from cytoimagenet_assets.demo.hdf5 import write_coos7, write_cyclops
from cytoimagenet_assets.rehearsal.mirror.context import MANUAL, Ctx

BBBC021_PLATES = {
    "Week1": [22123, 22141, 22161, 22361, 22381, 22401],
    "Week2": [24121, 24141, 24161, 24361, 24381, 24401],
    "Week3": [25421, 25441, 25461, 25681, 25701, 25721],
    "Week4": [27481, 27521, 27542, 27801, 27821, 27861],
    "Week5": [28901, 28921, 28961, 29301, 29321, 29341],
    "Week6": [31641, 31661, 31681, 32061, 32121, 32161],
    "Week7": [34341, 34381, 34641, 34661, 34681],
    "Week8": [38203, 38221, 38241, 38341, 38342],
    "Week9": [39206, 39221, 39222, 39282, 39283, 39301],
    "Week10": [40111, 40115, 40119],
}
BBBC021_MOAS = {  # the 38 compounds of BBBC021's MOA table
    "Actin disruptors": ["cytochalasin B", "cytochalasin D", "latrunculin B"],
    "Aurora kinase inhibitors": ["AZ258", "AZ841", "AZ-A"],
    "Cholesterol-lowering": ["mevinolin/lovastatin", "simvastatin"],
    "DNA damage": ["chlorambucil", "cisplatin", "etoposide", "mitomycin C"],
    "DNA replication": ["camptothecin", "floxuridine", "methotrexate", "mitoxantrone"],
    "Eg5 inhibitors": ["AZ-C", "AZ138"],
    "Epithelial": ["PP-2", "AZ-J", "AZ-U"],
    "Kinase inhibitors": ["alsterpaullone", "bryostatin", "PD-169316"],
    "Microtubule destabilizers": ["colchicine", "demecolcine", "nocodazole", "vincristine"],
    "Microtubule stabilizers": ["docetaxel", "epothilone B", "taxol"],
    "Protein degradation": ["ALLN", "lactacystin", "MG-132", "proteasome inhibitor I"],
    "Protein synthesis": ["anisomycin", "cyclohexamide", "emetine"],
}


def _bbbc021(ctx: Ctx) -> int:
    """55 plate zips of <Week>_<plate>/<well>_s<site>_w<1|2|4><UUID>.tif (the image table names them
    under <Week>/<Week>_<plate>/, as users arrange them), image.csv, moa.csv (CR line ends), compound.csv."""
    plates = [(week, plate) for week, numbers in BBBC021_PLATES.items() for plate in numbers]
    treatments = [(c, conc, moa) for moa, compounds in BBBC021_MOAS.items() for c in compounds for conc in (0.3, 1.0, 3.0)][:102]
    others = [(f"compound-{i + 1:02d}", 1.0, "") for i in range(75)] + [("UNKNOWN", 0.0, "")]
    table, members = [], {}
    for g, item in ctx.spread(55, 60 * 4, max(ctx.n, 55)):  # every plate zip has images
        week, plate = plates[g]
        w, site = divmod(item, 4)
        well = well_name(w, 10, first_row=1, first_column=2)
        compound, concentration, _ = (
            ("DMSO", 0.0, "DMSO") if w % 6 == 0 else (treatments + others)[(g * 7 + w) % (len(treatments) + len(others))]
        )
        files = [bbbc021_image_name(well, site + 1, k, ctx.uuid()) for k in (1, 2, 4)]
        members.setdefault((week, plate), []).extend((f, k, item) for f, k in zip(files, ("DAPI", "Tubulin", "Actin")))
        folder = f"{week}/{week}_{plate}"
        table.append(bbbc021_image_row(int(week[4:]), len(table) + 1, files, folder, f"{week}_{plate}", well, 1, compound, concentration))
    ctx.out.file(ctx.at(ctx.url("BBBC021_v1_image.csv")), bbbc021_image_csv(table))
    # The real moa.csv has no line end after its last row.
    ctx.out.file(ctx.at(ctx.url("BBBC021_v1_moa.csv")), bbbc021_moa_csv(treatments).rstrip(b"\r"))
    compounds = sorted({c for c, _, _ in treatments + others} | {"DMSO"})
    ctx.out.file(ctx.at(ctx.url("BBBC021_v1_compound.csv")), csv_bytes(["compound", "smiles"], [[c, "C"] for c in compounds]))
    for (week, plate), files in members.items():
        with ctx.out.zip(ctx.at(ctx.url(f"BBBC021_v1_images_{week}_{plate}.zip"))) as z:
            for name, channel, i in files:
                z.add(f"{week}_{plate}/{name}", ctx.image("tif16", channel, i))
    return len(table)


def _coos7(ctx: Ctx) -> int:
    """COOS7_v1.1_<split>.hdf5, put in raw/coos7 by hand (split sizes estimated: half train)."""
    train, test = max(2, round(9_440 * ctx.scale)), max(2, round(2_360 * ctx.scale))
    folder = ctx.out.root / MANUAL / ctx.dir_name
    write_coos7(folder, ctx.seed, train_per_class=train, test_per_class=test)
    ctx.out.written.update(p for p in folder.glob("*.hdf5"))
    return 7 * (train + 4 * test)


def _cyclops(ctx: Ctx) -> int:
    """DeepLoc_full_datasets.zip holding datasets/Chong_{train,valid,test}_set.hdf5."""
    per_class = max(2, round(1_650 * ctx.scale))
    rare = max(1, per_class // 3)
    with tempfile.TemporaryDirectory() as staging, ctx.out.zip(ctx.at(ctx.url("DeepLoc_full_datasets.zip"))) as z:
        write_cyclops(Path(staging), ctx.seed, per_class=per_class, rare=rare)
        for path in sorted(Path(staging).rglob("*.hdf5")):
            z.add(path.relative_to(staging).as_posix(), path.read_bytes())
    return 3 * (6 * per_class + rare + 2)


WRITERS = {"bbbc021": _bbbc021, "coos7": _coos7, "cyclops": _cyclops}
