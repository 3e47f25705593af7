"""The Broad Bioimage Benchmark Collection's sources (BBBC*, but BBBC021: :mod:`.evaluation`)."""

from __future__ import annotations

import hashlib
import json
import uuid

import numpy as np

from cytoimagenet_assets.demo.formats import csv_bytes, xls_bytes, xlsx_bytes
from cytoimagenet_assets.demo.generators import well_name
from cytoimagenet_assets.rehearsal.mirror.context import Ctx
from cytoimagenet_assets.rehearsal.mirror.population import THRESHOLD, frequencies, names, quotas

ROWS = "ABCDEFGHIJKLMNOP"


def _bbbc005(ctx: Ctx) -> int:
    fields = ctx.pick(384 * 25, ctx.n)
    with ctx.out.zip(ctx.at(ctx.url("BBBC005_v1_images.zip"))) as z:
        for f in fields:
            w, sample = divmod(int(f), 25)
            row, column = divmod(w, 24)
            stem = f"SIMCEPImages_{well_name(w)}_C{1 + round(column * 99 / 23)}_F{1 + round(row * 47 / 15)}_s{sample + 1:02d}"
            for channel in ("w1", "w2"):
                z.add(f"BBBC005_v1_images/{stem}_{channel}.TIF", ctx.image("tif8", channel, int(f)))
    return len(fields)


def _bbbc006(ctx: Ctx) -> int:
    fields = ctx.pick(384 * 2, ctx.n)
    with ctx.out.zip(ctx.at(ctx.url("BBBC006_v1_images_z_16.zip"))) as z:
        for f in fields:
            w, site = divmod(int(f), 2)
            for channel in ("w1", "w2"):
                name = f"mcf-z-stacks-03212011_{well_name(w).lower()}_s{site + 1}_{channel}{ctx.uuid()}.tif"
                z.add(f"BBBC006_v1_images_z_16/{name}", ctx.image("tif12lzw", channel, int(f)))
    return len(fields)


def _well_channel_zip(ctx: Ctx, archive: str, folder: str, rows_per_field: int, channels: list[str], stem: str, kind: str) -> int:
    """BBBC010 and BBBC012: ``<stem>_<well>_<channel>_<uuid>.tif`` for wells of a 384-well plate."""
    wells = ctx.pick(384, -(-ctx.n // rows_per_field))
    with ctx.out.zip(ctx.at(ctx.url(archive))) as z:
        for w in wells:
            for channel in channels:
                z.add(f"{folder}/{stem}_{well_name(int(w))}_{channel}_{ctx.uuid()}.tif", ctx.image(kind, channel, int(w)))
    return len(wells) * rows_per_field


def _bbbc011(ctx: Ctx) -> int:
    fields = ctx.pick(5 * 96, ctx.n)  # plate and well naming is an estimate: the pattern reads any PNG
    with ctx.out.zip(ctx.at(ctx.url("BBBC011_v1_images.zip"))) as z:
        for f in fields:
            plate, w = divmod(int(f), 96)
            z.add(f"BBBC011_v1_images/plate{plate + 1}_{well_name(w, 12)}.png", ctx.image("png8", "bf", int(f)))
    return len(fields)


def _bbbc013(ctx: Ctx) -> int:
    wells = ctx.pick(96, ctx.n)
    with ctx.out.zip(ctx.at(ctx.url("BBBC013_v1_images_bmp.zip"))) as z:
        for w in wells:
            row, column = divmod(int(w), 12)
            for channel in (1, 2):
                z.add(
                    f"BBBC013_v1_images_bmp/Channel{channel}-{w + 1:02d}-{ROWS[row]}-{column + 1:02d}.BMP",
                    ctx.image("bmp8", str(channel), int(w)),
                )
    return len(wells)


def _bbbc014(ctx: Ctx) -> int:
    wells = ctx.pick(96, ctx.n)
    with ctx.out.zip(ctx.at(ctx.url("BBBC014_v1_images.zip"))) as z:
        for w in wells:
            row, column = divmod(int(w), 12)
            for channel in (1, 2):
                name = f"Channel {channel}-{w + 1:02d}-{ROWS[row]}-{column + 1:02d}-00.Bmp"
                z.add(f"BBBC014_v1_images/{name}", ctx.image("bmp8", str(channel), int(w)))
    return len(wells)


def _bbbc015(ctx: Ctx) -> int:
    fields = ctx.pick(96 * 7, ctx.n)
    with ctx.out.zip(ctx.at(ctx.url("BBBC015_v1_images.zip"))) as z:
        for f in fields:
            well, site = divmod(int(f), 7)
            for channel in (1, 2):
                z.add(f"BBBC015_v1_images/{well + 1}_{site + 1}_{channel}.JPG", ctx.image("jpg3", str(channel), int(f)))
    return len(fields)


BBBC017_HEADER = [  # SOURCES.md, from the original's cleaning script
    *("384well-index", "384-Plate#", "384-quad", "384-well", "96-Plate#", "96-well", "96row", "96col", "384row", "384col"),
    *("384-well PlateName", "96-well PlateName", "Row", "Col", "senseOligoId", "location", "Nmid", "taxonId", "locuslinkId"),
    *("Transcript Description", "SenseOligoSeq", "ProdStatus", "class", "gene name", "plate order"),
]
BBBC017_CONTROLS = ["EMPTY", "shLuc", "shGFP", "LacZ", "unk"]
GENE_FAMILIES = ["kinase", "phosphatase", "NONE", "transcription factor", "protease", "GPCR"]


def _bbbc017(ctx: Ctx) -> int:
    """28 zips NIRHTa-001..014 and NIRHTa+001..014 sharing plate numbers 1..14 with the .xls."""
    zips = [f"NIRHTa{sign}{p:03d}" for sign in "-+" for p in range(1, 15)]
    picked = ctx.spread(len(zips), 384 * 4, max(ctx.n, len(zips)))  # the server holds every zip the catalog lists
    genes = names("SH", 1028)  # the Moffat library: ~5,000 shRNAs against 1,028 genes
    wells: set[tuple[int, int]] = set()  # (plate number, well): the .xls rows
    by_zip: dict[int, list[tuple[int, int]]] = {}
    for z, item in picked:
        w, f = divmod(item, 4)
        by_zip.setdefault(z, []).append((w, f))
        wells.add((z % 14 + 1, w))
    for z, fields in by_zip.items():
        with ctx.out.zip(ctx.at(ctx.url(f"BBBC017_v1_images_{zips[z]}.zip"))) as archive:
            for w, f in fields:
                stem = f"AS_{9100 + z:05d}_0501160300{z % 14 + 1:02d}_{well_name(w)}f{f:02d}"
                for d in range(3):
                    archive.add(f"{zips[z]}/{stem}d{d}.DIB", ctx.image("dib8", f"d{d}", w * 4 + f))
    rows = [BBBC017_HEADER]
    for plate, w in sorted(wells):
        index = (plate - 1) * 384 + w
        gene = BBBC017_CONTROLS[index % 5] if index % 16 == 0 else genes[(index * 7) % len(genes)]
        row = [""] * len(BBBC017_HEADER)
        row[:6] = [index + 1, plate, w % 4 + 1, well_name(w), (plate - 1) // 4 + 1, well_name(w // 4, 12)]
        row[14], row[22:25] = f"TRCN{index:010d}", [GENE_FAMILIES[index % len(GENE_FAMILIES)], gene, plate]
        rows.append(row)
    ctx.out.file(ctx.at(ctx.url("BBBC017_v1_metadata.xls")), xls_bytes(rows))
    return len(picked)


def _bbbc020(ctx: Ctx) -> int:
    images = [f"jw-{t} {i}" for t in ("15min", "30min", "1h", "2h", "Kontrolle") for i in range(1, 6)][: ctx.n]
    with ctx.out.zip(ctx.at(ctx.url("BBBC020_v1_images.zip"))) as z:
        for i, folder in enumerate(images):
            for channel in ("c1", "c5"):
                z.add(f"BBBC020_v1_images/{folder}/{folder}_{channel}.TIF", ctx.image("tif8", channel, i))
            z.add(f"BBBC020_v1_images/{folder}/{folder}_(c1+c5).TIF", ctx.image("tifrgb", "merged", i))
    return len(images)


BBBC022_CHANNELS = ["OrigHoechst", "OrigER", "OrigSyto", "OrigPh_golgi", "OrigMito"]  # w1..w5


def _bbbc022(ctx: Ctx) -> int:
    """100 zips BBBC022_v1_images_<plate>w<1-5>.zip of IXMtest_<well>_s<site>_w<k><UUID>.tif; the image
    table's PathName is taken to be the zip's folder (unconfirmed; a third-party script rewrites it so)."""
    plates = [20585 + i * 3 for i in range(20)]
    compounds = [f"BRD-{'AK'[i % 2]}{10_000_000 + i * 48_611 % 89_999_999:08d}" for i in range(1600)]
    moa_weights = frequencies(995, 350, 40, threshold=THRESHOLD / 36)  # a compound fills 4 wells x 9 sites
    moa_names = names("bbbc022 moa ", 350)
    moa_of = np.repeat(np.arange(350), quotas(moa_weights, 995))
    moa_rows = [[compounds[i], moa_names[moa_of[i]]] for i in range(995)]  # the 995 compounds with an MOA
    table, members = [], {}
    for g, item in ctx.spread(20, 384 * 9, max(ctx.n, 20)):  # every plate's 5 zips have images
        w, site = divmod(item, 9)
        plate, well = plates[g], well_name(w)
        mock = w % 6 == 0  # 64 mock wells per plate
        compound = "" if mock else compounds[(g * 320 + w - w // 6 - 1) % 1600]
        files = [f"IXMtest_{well}_s{site + 1}_w{k + 1}{ctx.uuid()}.tif" for k in range(5)]
        folders = [f"BBBC022_v1_images_{plate}w{k + 1}" for k in range(5)]
        for k in range(5):
            members.setdefault(folders[k], []).append((files[k], BBBC022_CHANNELS[k], item))
        table.append([len(table) + 1, 1, *files, *folders, plate, well, site + 1, "mock" if mock else "treated", compound])
    header = ["ImageNumber", "TableNumber", *(f"Image_FileName_{c}" for c in BBBC022_CHANNELS)]
    header += [f"Image_PathName_{c}" for c in BBBC022_CHANNELS] + ["Image_Metadata_PlateID", "Image_Metadata_CPD_WELL_POSITION"]
    header += ["Image_Metadata_Site", "Image_Metadata_ASSAY_WELL_ROLE", "Image_Metadata_BROAD_ID"]
    ctx.out.file(ctx.at(ctx.url("BBBC022_v1_image.csv")), csv_bytes(header, table))
    for folder, files in members.items():
        with ctx.out.zip(ctx.at(ctx.url(f"{folder}.zip"))) as z:
            for name, channel, i in files:
                z.add(f"{folder}/{name}", ctx.image("tif16", channel, i))
    ctx.out.file(ctx.at(ctx.url("BBBC022_MOA_MATCHES_official.csv")), csv_bytes(["Var1", "Metadata_moa.x"], moa_rows))
    return len(table)


BBBC025_CHANNELS = ["ERSyto", "ERSytoBleed", "Hoechst", "Mito", "PhGolgi"]


def _bbbc025(ctx: Ctx) -> int:
    """40 tarballs <plate>_<channel>.tar.gz, each a folder of that name (as the catalog's pattern assumes)."""
    plates = [37983, 38002, 38003, 38004, 38005, 38006, 38030, 38034]
    picked = ctx.spread(8, 384 * 9, ctx.n)
    for g, plate in enumerate(plates):
        fields = [item for group, item in picked if group == g]
        for k, channel in enumerate(BBBC025_CHANNELS):
            with ctx.out.targz(ctx.at(ctx.url(f"{plate}_{channel}.tar.gz"))) as tar:
                for item in fields:
                    w, site = divmod(item, 9)
                    name = f"{plate}_{channel}/{plate}_{well_name(w).lower()}_s{site + 1}_w{k + 1}{ctx.uuid()}.tif"
                    tar.add(name, ctx.image("tif16", channel, item))
    return len(picked)


def _bbbc026(ctx: Ctx) -> int:
    fields = ctx.pick(96 * 9, ctx.n)
    with ctx.out.zip(ctx.at(ctx.url("BBBC026_v1_images.zip"))) as z:
        for f in fields:
            w, site = divmod(int(f), 9)
            name = f"ADSASS092408-GHAD2-D6-20x_{well_name(w, 12)}_s{site + 1}_w1{ctx.uuid()}.png"
            z.add(f"BBBC026_v1_images/{name}", ctx.image("png8", "w1", int(f)))
    return len(fields)


def _bbbc038(ctx: Ctx) -> int:
    """Three split zips of <ImageId>/images/<ImageId>.png (training images with masks/), metadata.xlsx
    (its columns are unconfirmed; the catalog maps none)."""
    splits = {"stage1_train": 670, "stage1_test": 65, "stage2_test_final": 3019}
    sizes = np.maximum(1, quotas(np.array(list(splits.values())), ctx.n))
    described = []
    for (split, _), size in zip(splits.items(), sizes):
        with ctx.out.zip(ctx.at(ctx.url(f"{split}.zip"))) as z:
            for i in range(int(size)):
                image_id = hashlib.sha256(f"{ctx.seed}/{split}/{i}".encode()).hexdigest()
                z.add(f"{image_id}/images/{image_id}.png", ctx.image("pngrgba", "image", len(described)))
                if split == "stage1_train":
                    for m in range(2):
                        z.add(
                            f"{image_id}/masks/{hashlib.sha256(f'{image_id}/{m}'.encode()).hexdigest()[:16]}.png",
                            ctx.image("mask", "mask", m),
                        )
                described.append([image_id, split, "fluorescence" if i % 4 else "brightfield", ctx.pool.px, ctx.pool.px])
    header = ["ImageId", "Split", "Modality", "Width", "Height"]
    ctx.out.file(ctx.at(ctx.url("metadata.xlsx")), xlsx_bytes(header, described))
    return len(described)


BBBC041_CATEGORIES = {  # boxes per category (estimate from the BBBC041 page: >95% uninfected red blood cells)
    "red blood cell": 83_034,
    "trophozoite": 1_473,
    "difficult": 441,
    "ring": 353,
    "schizont": 179,
    "gametocyte": 144,
    "leukocyte": 103,
}


def _bbbc041(ctx: Ctx) -> int:
    """malaria.zip: images/ (training PNG, test JPEG) and training.json / test.json of boxes, ~63 per smear,
    inside the written image (square here, 1600x1200 there)."""
    categories = list(BBBC041_CATEGORIES)
    drawn = ctx.draw(np.array(list(BBBC041_CATEGORIES.values()), np.float64))
    smears = max(2, -(-ctx.n // 63))
    h = w = ctx.pool.px
    tables: dict[str, list] = {"training": [], "test": []}
    with ctx.out.zip(ctx.at(ctx.url("malaria.zip"))) as z:
        for s, boxes in enumerate(np.array_split(drawn, smears)):
            test = s % 11 == 10  # 120 of 1,328 smears are the test set
            name = f"{uuid.UUID(bytes=ctx.rng.bytes(16))}.{'jpg' if test else 'png'}"
            data = ctx.image("jpgrgb" if test else "pngrgb", "smear", s)
            z.add(f"malaria/images/{name}", data)
            objects = []
            for b in boxes:
                side = int(ctx.rng.integers(h // 8, h // 4))
                top, left = int(ctx.rng.integers(0, h - side)), int(ctx.rng.integers(0, w - side))
                objects.append(
                    {
                        "bounding_box": {"minimum": {"r": top, "c": left}, "maximum": {"r": top + side, "c": left + side}},
                        "category": categories[b],
                    }
                )
            image = {
                "checksum": hashlib.sha256(data.data).hexdigest(),
                "pathname": f"/images/{name}",
                "shape": {"r": h, "c": w, "channels": 3},
            }
            tables["test" if test else "training"].append({"image": image, "objects": objects})
        for table, entries in tables.items():
            z.add(f"malaria/{table}.json", json.dumps(entries, indent=1).encode())
    return len(drawn)


def _bbbc045(ctx: Ctx) -> int:
    """Stained_Montages.zip: <cell type>/<date>/<sample>_Ch<NN>.tif, ImageStream channels 1..12 (the
    layout the catalog assumes; unconfirmed)."""
    types = ["B cell", "T cell", "Eosinophil", "Monocyte", "Neutrophil"]
    picked = ctx.pick(5 * 6 * 12, ctx.n)
    with ctx.out.zip(ctx.at(ctx.url("Stained_Montages.zip"))) as z:
        for p in picked:
            t, rest = divmod(int(p), 72)
            sample, channel = divmod(rest, 12)
            stem = f"{types[t].lower().replace(' ', '')}{sample + 1}_Ch{channel + 1:02d}"
            name = f"Stained_Montages/{types[t]}/2014_10_{sample + 1:02d}/{stem}.tif"
            z.add(name, ctx.image("montage8", f"ch{channel + 1}", int(p)))
    return len(picked)


BBBC048_PHASES = {"G1": 14_333, "S": 8_616, "G2": 8_601, "Prophase": 606, "Metaphase": 68, "Anaphase": 15, "Telophase": 27}


def _bbbc048(ctx: Ctx) -> int:
    """BBBC048v1.zip: CellCycle/<phase>/<cell>_Ch<1|3|6>.jpg (layout unconfirmed, as the catalog's
    pattern), and Ground_truth.lst."""
    phases = list(BBBC048_PHASES)
    drawn = np.sort(ctx.draw(np.array(list(BBBC048_PHASES.values()), np.float64), -(-ctx.n // 3)))
    lines = []
    with ctx.out.zip(ctx.at(ctx.url("BBBC048v1.zip"))) as z:
        for cell, phase in enumerate(drawn):
            for channel in ("Ch1", "Ch3", "Ch6"):
                z.add(f"CellCycle/{phases[phase]}/{cell + 1}_{channel}.jpg", ctx.image("jpg", channel, cell))
            lines.append(f"CellCycle/{phases[phase]}/{cell + 1}\t{phase}")
    ctx.out.file(ctx.at(ctx.url("Ground_truth.lst")), ("\n".join(lines) + "\n").encode())
    return 3 * len(drawn)


BBBC051_CLASSES = {"TAL": 0.3, "S2S3": 0.2, "S1S2": 0.15, "CD_CNT": 0.12, "CD31glom": 0.08, "CD31int": 0.07, "CD45.1": 0.05, "Nestin": 0.03}


def _bbbc051(ctx: Ctx) -> int:
    """Images.zip: <class>/All_3D/object_<id>_<x>__<y>__<z>_1.tif (7-slice stacks; class shares estimated)."""
    classes = list(BBBC051_CLASSES)
    drawn = np.sort(ctx.draw(np.array(list(BBBC051_CLASSES.values()))))
    lines = []
    with ctx.out.zip(ctx.at(ctx.url("Images.zip"))) as z:
        for i, c in enumerate(drawn):
            x, y, depth = (int(v) for v in ctx.rng.integers(0, 2000, 3))
            name = f"Images/{classes[c]}/All_3D/object_{i + 1}_{x}__{y}__{depth % 40}_1.tif"
            z.add(name, ctx.image("zstack16", "dapi", i))
            lines.append(f"{name}\t{classes[c]}")
    ctx.out.file(ctx.at(ctx.url("groundtruthlabels.txt")), ("\n".join(lines) + "\n").encode())
    return len(drawn)


WRITERS = {
    "bbbc005": _bbbc005,
    "bbbc006": _bbbc006,
    "bbbc010": lambda ctx: _well_channel_zip(
        ctx, "BBBC010_v2_images.zip", "BBBC010_v2_images", 2, ["w1", "w2"], "1649_1109_0003_Amp5-1_B_20070424", "tif16"
    ),
    "bbbc011": _bbbc011,
    "bbbc012": lambda ctx: _well_channel_zip(
        ctx, "BBBC012_v1_images.zip", "BBBC012_v1_images", 2, ["w1", "w2", "w3"], "2008_C_elegans_infection", "tif16"
    ),
    "bbbc013": _bbbc013,
    "bbbc014": _bbbc014,
    "bbbc015": _bbbc015,
    "bbbc017": _bbbc017,
    "bbbc020": _bbbc020,
    "bbbc022": _bbbc022,
    "bbbc025": _bbbc025,
    "bbbc026": _bbbc026,
    "bbbc038": _bbbc038,
    "bbbc041": _bbbc041,
    "bbbc045": _bbbc045,
    "bbbc048": _bbbc048,
    "bbbc051": _bbbc051,
}
