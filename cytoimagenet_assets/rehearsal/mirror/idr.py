"""The Image Data Resource's studies: each annotation where the catalog fetches it, the study trees
(a few sample files where this repo does not read the images yet) on EBI's mirror."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from cytoimagenet_assets.demo.cells import stable_hash
from cytoimagenet_assets.demo.formats import csv_bytes, csv_zip
from cytoimagenet_assets.demo.generators import IDR0037_CHANNELS, idr_plates_tsv, operetta_name, well_name
from cytoimagenet_assets.download.idr import IDR_MIRROR
from cytoimagenet_assets.rehearsal.mirror.context import Ctx
from cytoimagenet_assets.rehearsal.mirror.population import REAL_ROWS, THRESHOLD, frequencies, names, quotas


def _annotation(ctx: Ctx, header: list[str], rows: list[list]) -> None:
    """The study's annotation where the catalog fetches it: plain, .csv.gz or .csv.zip as its URL says."""
    url = next(f.url for f in ctx.source.download.files if "-annotation.csv" in f.url)
    data = csv_bytes(header, rows)
    name = url.rsplit("/", 1)[-1]
    if name.endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    elif name.endswith(".zip"):
        data = csv_zip(name[: -len(".zip")], data)
    ctx.out.file(ctx.at(url), data)


def _study(ctx: Ctx, relative: str, accession: str | None = None) -> Path:
    """A file of the study on EBI's IDR mirror (or of another study, for plates filed under it)."""
    return ctx.at(f"{IDR_MIRROR}/{accession or ctx.source.download.accession}/{relative}")


def _plates_tsv(ctx: Ctx, lines: list[tuple[str, str, str]]) -> None:
    """The study's plates.tsv of (plate, fileset, path), where the catalog fetches it."""
    url = next(f.url for f in ctx.source.download.files if f.url.endswith("-plates.tsv"))
    ctx.out.file(ctx.at(url), idr_plates_tsv(lines))


def _samples(ctx: Ctx, paths: list[str], kind: str) -> None:
    """A few raw files of a study whose images this repo does not read yet, in its documented folders
    (file names invented where undocumented), so the study's folder exists and lists like the real one."""
    for i, relative in enumerate(paths):
        ctx.out.file(_study(ctx, relative), ctx.image(kind, relative, i).data)


def _wells(ctx: Ctx, plates: list[str], per_plate: int, columns: int = 24, k: int | None = None) -> list[tuple[int, str, str]]:
    """(well index, plate, IDR well name) for ``k`` (default ``n``) annotated wells spread over ``plates``."""
    k = ctx.n if k is None else k
    return [(w, plates[g], well_name(w, columns, pad=False)) for g, w in ctx.spread(len(plates), per_plate, k)]


STRESS = {"SD": "synthetic medium with dextrose", "NS": "nitrogen starvation", "DTT": "dithiothreitol", "H2O2": "hydrogen peroxide"}


def _idr0003(ctx: Ctx) -> int:
    plates = [f"{c} p{p}" for c in STRESS for p in range(1, 22 + (c == "SD"))][:85]
    rows = []
    for w, plate, well in _wells(ctx, plates, 384):
        orf = (int(plate.rsplit("p", 1)[1]) - 1) * 384 + w
        symbol = "" if orf % 9 == 0 else f"YGS{orf:04d}"
        condition = STRESS[plate.split()[0]]
        rows.append(
            [plate, well, "Y6545", "Saccharomyces cerevisiae", condition, "", "pass", "GFP;Cherry;Transmit", f"Y{orf:05d}W", symbol]
        )
    header = ["Plate", "Well", "Characteristics [Strain]", "Characteristics [Organism]", "Experimental Condition [Environmental Stress]"]
    header += ["Control Type", "Quality Control", "Channels", "Gene Identifier", "Gene Symbol"]
    _annotation(ctx, header, rows)
    _samples(ctx, [f"201301120/Images/DTT/p1/A1_0{f}--{c}.tif" for f in (1, 2) for c in ("GFP", "Cherry", "Transmit")], "tif16")
    return len(rows)


IDR0009_CONTROLS = [("KIF11", 4), ("INCENP", 4), ("COPB1", 2), ("SEC16A", 1), ("PLK1", 1)]


def _idr0009(ctx: Ctx) -> int:
    """964 plates replicating a 149-plate genome-wide library; controls on every plate; QC pass/fail."""
    plates = [f"{p % 149 + 1:04d}-{p // 149 + 1:02d}--2005-08-{p % 28 + 1:02d}" for p in range(964)]
    controls = [(k, gene) for k, (gene, wells) in enumerate(IDR0009_CONTROLS) for _ in range(wells)] + [(-1, "")] * 4
    channels = "nucleus-dapi:DNA;pm-647:plasma membrane;vsvg-cfp:VSVG"
    rows = []
    for w, plate, well in _wells(ctx, plates, 384):
        library = int(plate[:4]) - 1
        if w < len(controls):
            k, gene = controls[w]
            sirna, kind = (f"s{900 + 2 * k + w % 2}", "positive control") if gene else ("neg9", "negative control")
        else:
            slot = library * 368 + w - len(controls)
            gene, sirna, kind = f"HSG{slot // 3:05d}", f"s{10_000 + slot}", ""
        qc = "fail" if (w * 31 + library) % 13 == 0 else "pass"
        ensembl = f"ENSG{stable_hash(gene) % 10**11:011d}" if gene else ""
        rows.append([plate, well, "Homo sapiens", "HeLa", sirna, ensembl, gene, kind, qc, channels])
    header = ["Plate", "Well", "Characteristics [Organism]", "Characteristics [Cell Line]", "siRNA Identifier", "Gene Identifier"]
    header += ["Gene Symbol", "Control Type", "Quality Control", "Channels"]
    _annotation(ctx, header, rows)
    plate = plates[0]
    _samples(ctx, [f"20150507-VSVG/VSVG/{plate}/{plate}_A1--{c}.tif" for c in ("nucleus-dapi", "pm-647", "vsvg-cfp")], "tif16")
    return sum(row[8] == "pass" for row in rows)  # the catalog keeps Quality Control = pass


def _idr0016(ctx: Ctx) -> int:
    """413 plates: 64 DMSO and 19 positive-control wells each, the rest ~30,000 library compounds."""
    plates = [str(24277 + p) for p in range(413)]
    positives = names("BRD-K0000", 19)
    rows = []
    for w, plate, well in _wells(ctx, plates, 384):
        p = int(plate) - 24277
        if w % 6 == 0:
            name, kind = "DMSO", "negative control"
        elif w % 20 == 1 and w // 20 < 19:
            name, kind = positives[w // 20], "positive control"
        else:
            name, kind = f"BRD-K{(p * 301 + w) % 30_000:08d}", ""
        rows.append([plate, well, "Homo sapiens", "U2OS", name, kind, "Hoechst;ERSyto;ERSytoBleed;Ph_golgi;Mito"])
    header = ["Plate", "Well", "Characteristics [Organism]", "Characteristics [Cell Line]", "Compound Name", "Control Type", "Channels"]
    _annotation(ctx, header, rows)
    # The per-channel folders are documented (<plate>-<channel>); their file names are not (BBBC022's used here).
    _samples(
        ctx,
        [f"24277-{c}/cdp2bioactives_a01_s1_w{k + 1}.tif" for k, c in enumerate(["Hoechst", "ERSyto", "ERSytoBleed", "Ph_golgi", "Mito"])],
        "tif16",
    )
    return len(rows)


IDR0017_LINES = [
    "par001",
    "02-030",
    "104-001",
    "104-002",
    "104-003",
    "104-004",
    "104-005",
    "104-007",
    "104-008",
    "104-009",
    "104-010",
    "104-011",
]


def _idr0017(ctx: Ctx) -> int:
    """96 plates: 12 HCT116 lines x 4 LOPAC plates x 2 replicates; 32 DMSO wells per plate."""
    plates = [f"{line}_LOPAC_Plate_{p}_Replicate_{r}" for line in IDR0017_LINES for p in range(1, 5) for r in (1, 2)]
    rows = []
    for w, plate, well in _wells(ctx, plates, 384):
        line, lopac = plate.split("_LOPAC_")[0], int(plate.split("_Plate_")[1][0])
        compound = "DMSO" if w % 12 == 0 else f"LOPAC-{(lopac - 1) * 352 + w:04d}"
        rows.append([plate, well, "Homo sapiens", f"HCT116 {line}", "isogenic knockout", compound, "", "DAPI;Cy3"])
    header = ["Plate", "Well", "Characteristics [Organism]", "Characteristics [Cell Line]", "Mutation Detailed", "Compound Name"]
    _annotation(ctx, header + ["Control Type", "Channels"], rows)
    run = "20151124/14_X-Man_10x/source/2011-11-17_X-Man_LOPAC_X01_LP_S01_1"
    _samples(ctx, [f"{run}/B - 02(fld 1 wv {c} - {c}).tif" for c in ("DAPI", "Cy3")], "tif16")
    ctx.out.file(_study(ctx, f"{run}/run.xdce"), b'<?xml version="1.0"?><ImageStack/>\n')
    return len(rows)


IDR0021_DATASETS = ["CDK5RAP2-C", "CEP152", "CEP192", "CEP63", "CEP120", "PCNT-C", "PCNT-N", "NEDD1", "TUBG1", "CEP57"]


def _idr0021(ctx: Ctx) -> int:
    """Raw-files/<Dataset>/<session>/<Image Name> (DeltaVision projections) under incoming/."""
    rows = []
    for i in range(ctx.n):
        dataset = IDR0021_DATASETS[i % len(IDR0021_DATASETS)]
        image = f"{dataset}_{i // len(IDR0021_DATASETS) + 1}_SIR_PRJ.dv"
        phase = "mitosis" if i % 5 == 4 else "interphase"
        gene = dataset.split("-")[0]
        rows.append([dataset, image, "Homo sapiens", "HeLa", phase, gene, gene, f"442:CENT2; 525:{gene}", "no"])
        session = f"incoming/{ctx.source.download.accession}/Raw-files/{dataset}/{dataset}_2011{i % 12 + 1:02d}05"
        ctx.out.file(_study(ctx, f"{session}/{image}"), ctx.image("dv", dataset, i).data)
    header = [
        "Dataset Name",
        "Image Name",
        "Characteristics [Organism]",
        "Characteristics [Cell Line]",
        "Characteristics [Cell Cycle Phase]",
    ]
    _annotation(ctx, header + ["Comment [Targeted Protein]", "Comment [Gene Symbol]", "Channels", "Has Phenotype"], rows)
    return len(rows)


def _operetta(ctx: Ctx, stem: str, channels: int, plate_dir: Path, wells: list[tuple[str, int]], fields: int) -> None:
    """An Operetta/Phenix plate folder: Index.idx.xml and an image per well, field and channel."""
    ctx.out.file(plate_dir / "Index.idx.xml", b'<?xml version="1.0" encoding="utf-8"?><EvaluationInputData/>\n')
    for well, w in wells:
        row, column = ord(well[0]) - 64, int(well[1:])
        for f in range(1, fields + 1):
            for c in range(1, channels + 1):
                ctx.out.file(plate_dir / operetta_name(row, column, f, c), ctx.image("tif16", f"{stem}ch{c}", w * fields + f).data)


def _idr0037(ctx: Ctx) -> int:
    """69 plates of 48 wells x 9 fields x 4 channels; 29 plates are filed under idr0034 (as IDR's
    plates.tsv says), outside this study's folder on the mirror (the catalog's download.filesets)."""
    lines = ["A1ATD-iPSC patient 1"] + [
        f"HPSI{m % 12 + 1:02d}{13 + m % 3}i-{'abcdefghijklmnopqrstuvwxyz'[m % 26]}{'aeiou'[m % 5]}{m:02d}_{m % 4 + 1}" for m in range(114)
    ]
    weights = np.r_[573.0, np.full(114, (3303 - 573) / 114)]  # the fixture's shape: one control line, ~24 wells per HipSci line
    plates = [f"experiment_{p + 1:02d}" for p in range(69)]
    elsewhere = dict(zip(range(1, 30), ctx.source.download.filesets))  # plates 02..30 in idr0034's folders the catalog lists
    picked = _wells(ctx, plates, 48, columns=6, k=-(-ctx.n // 18))
    per_well = np.array(lines)[ctx.draw(weights, len(picked))] if picked else []
    rows, files, tsv = [], {}, []
    for p, plate in enumerate(plates):
        measurement = f"2014{p % 12 + 1:02d}{p % 27 + 1:02d}_HipSci Experiment {p + 1}__2014-05-28T11_47_{p:02d}-Measurement1"
        if p in elsewhere:
            fileset, folder = elsewhere[p].split("/", 1)
            tsv.append((plate, fileset, f"{folder}/Images/Index.idx.xml"))
        else:
            tsv.append((plate, ctx.source.download.accession, f"images/{measurement}/Images/Index.idx.xml"))
    for (w, plate, well), line in zip(picked, per_well):
        p = plates.index(plate)
        control = line.startswith("A1ATD")
        cell_type, kind = ("", "control cell line") if control else ("induced pluripotent stem cell", "")
        rows.append([plate, well, "Homo sapiens", line, cell_type, kind, IDR0037_CHANNELS])
        files.setdefault(p, []).append((well, w))
    for p, (_, fileset, index) in enumerate(tsv):  # every plate's folder is there, with or without annotated wells
        _operetta(ctx, "hipsci", 4, _study(ctx, index.rsplit("/", 1)[0], fileset), files.get(p, []), 9)
    header = ["Plate", "Well", "Characteristics [Organism]", "Characteristics [Cell Line]", "Characteristics [Cell Type]", "Control Type"]
    header += ["Channels"]
    _annotation(ctx, header, rows)
    _plates_tsv(ctx, tsv)
    return len(rows) * 9 * 2  # a row per field, for fluorescence and brightfield


IDR0041_GENES = (
    "MAD2L1 TUBB4B NEDD1 MIS12 NUP107 KIF4A CEP192 NCAPH NCAPH2 NCAPD2 NCAPD3 SMC4 TOP2A AURKB BUB1 CDCA8 NES PLK1 RACGAP1 SCC1 "
    "STAG1 STAG2 WAPL PDS5A CTCF KIF11 CENPA RANBP2"
).split()


def _idr0041(ctx: Ctx) -> int:
    """Per-image annotation of 72 datasets (28 genes) x 280 images (7 cells x 40 time points), each
    image in three kinds (raw, mask, conc); only the original images are written as files."""
    picked = ctx.spread(72, 280, ctx.n)
    rows = []
    for d, item in picked:
        gene = IDR0041_GENES[d % 28]
        cell, t = divmod(item, 40)
        image = f"cell{cell + 1:04d}_R{d + 1:04d}_T{t + 1:04d}"
        base = f"1704{d % 28 + 1:02d}_{gene}gfpc{d:02d}_MitoSys{d // 28 + 1}"
        for suffix, kind in (("raw", "original images"), ("mask", "segmentation masks"), ("conc", "concentration maps")):
            rows.append([f"{base}_{suffix}", image, "Homo sapiens", "HeLa", f"ENSG{stable_hash(gene) % 10**11:011d}", gene, kind])
        ctx.out.file(_study(ctx, f"20180710-ftp/{base}_raw/{image}.tif"), ctx.image("zc16", gene, item).data)
    header = ["Dataset Name", "Image Name", "Characteristics [Organism]", "Characteristics [Cell Line]", "Comment [Gene Identifier]"]
    _annotation(ctx, header + ["Comment [Gene Symbol]", "Comment [Image File Type]"], rows)
    return len(picked)


def _idr0067(ctx: Ctx) -> int:
    proteins = ["Nup170", "Nsr1", "Hsp104", "Htb1", "Spc42", "Tub4", "Cdc14", "Rec8", "Zip1", "Ndt80"] + names("Prot", 30)
    drawn = ctx.draw(frequencies(419, len(proteins), 0))
    rows = [
        [f"Figure {i % 7 + 1}", f"img{i:04d}_R3D_D3D.dv", "Saccharomyces cerevisiae", "SK1", proteins[p], "FITC = GFP"]
        for i, p in enumerate(drawn)
    ]
    header = ["Dataset Name", "Image Name", "Characteristics [Organism]", "Characteristics [Strain]", "Comment [Protein] 1", "Channels"]
    _annotation(ctx, header, rows)
    _samples(ctx, ["Figure 1/A/img0000_R3D_D3D.dv", "Figure 1/A/img0000_R3D.dv"], "dv")
    return len(rows)


def _idr0072(ctx: Ctx) -> int:
    """Screen B (NMuMG): one tagged protein per well, ~40 proteins (estimate)."""
    proteins = ["VAMP5", "Rab5a", "Rab7", "Sec61b", "Tomm20", "Lamp1", "Golga5", "Pex3", "Cav1", "Lmnb1"] + names("Mp", 30)
    weights = frequencies(REAL_ROWS["idr0072"], len(proteins), 6)
    plates = [f"2013{p % 12 + 1:02d}{p % 28 + 1:02d}_TA_{proteins[p % 10].upper()}_DEG/Meas_01" for p in range(84)]
    picked = _wells(ctx, plates, 96, columns=12)
    drawn = ctx.draw(weights, len(picked))
    rows = []
    for (w, plate, well), p in zip(picked, drawn):
        name = proteins[p]
        rows.append(
            [plate, well, "Mus musculus", "NCBITaxon", "10090", "NMuMG", "EFO", "EFO_0002811", f"ENSMUSG{stable_hash(name) % 10**11:011d}"]
        )
        rows[-1] += [name.capitalize(), f"{name} protein", name, "", "", "", "cytoplasm", "EGFP (protein of interest), DRAQ5 (DNA)"]
    header = ["Plate", "Well", "Characteristics [Organism]", "Term Source 1 REF", "Term Source 1 Accession", "Characteristics [Cell Line]"]
    header += ["Term Source 2 REF", "Term Source 2 Accession", "Comment [Gene Identifier]", "Comment [Gene Symbol]"]
    header += ["Comment [Protein Name]"]
    header += ["Comment [Protein Name Abbreviation]", "Protein Sequence (aa)", "UniProt ID", "Addgene ID"]
    header += ["Experimental Condition [Subcellular Localization]", "Channels"]
    _annotation(ctx, header, rows)
    _samples(ctx, [f"{plates[0]}/001001001.flex", f"{plates[0]}/001002001.flex"], "flex")
    return len(rows)


def _idr0080(ctx: Ctx) -> int:
    """9 plates and their illumination-corrected copies (18 in IDR), 384 wells x 9 fields x 5 channels;
    51 genes by CRISPR, EMPTY controls; 3 cell lines, 3 plates each."""
    genes = ["TP53", "KRAS", "MYC", "PTEN", "BRCA1"] + names("CHG", 46)
    base = "20200316-s3/2015_07_01_Cell_Health_Vazquez_Cancer_Broad/CRISPR_PILOT_B1"
    raw = [f"SQ000146{10 + p}" for p in range(9)]
    plates = raw + [f"{p}_illum_corrected" for p in raw]
    folders = [f"{base}/images/{p}__2016-05-05T18_16_{i:02d}-Measurement2/Images" for i, p in enumerate(raw)]
    folders += [f"{base}/images_illum_corrected/{p}__2016-05-05T18_16_{i:02d}-Measurement2/Images" for i, p in enumerate(raw)]
    wells = ctx.spread(18, 384, -(-ctx.n // 9))
    rows = []
    for g, w in wells:
        gene = "EMPTY" if w % 8 == 0 else genes[(w * 7) % 51]
        line = ["A549", "ES2", "HCC44"][g % 9 // 3]
        kind = "negative control" if gene == "EMPTY" else ""
        channels = "Hoechst;ConA;SYTO14;Phalloidin+WGA;MitoTracker"
        rows.append([plates[g], well_name(w, pad=False), "Homo sapiens", line, f"guide-{w % 2}", gene, kind, channels])
    for g in range(18):
        plate_wells = [(well_name(w, pad=False), w) for group, w in wells if group == g]
        if plate_wells:
            _operetta(ctx, "cellhealth", 5, _study(ctx, folders[g]), plate_wells, 9)
    header = ["Plate", "Well", "Characteristics [Organism]", "Characteristics [Cell Line]", "Reagent Identifier", "Gene Symbol"]
    _annotation(ctx, header + ["Control Type", "Channels"], rows)
    _plates_tsv(ctx, [(plates[g], ctx.source.download.accession, f"{folders[g]}/Index.idx.xml") for g in range(18)])
    return len(wells) * 9


def _idr0081(ctx: Ctx) -> int:
    plates = [f"D-{p + 1}" for p in range(16)]
    rows = []
    for w, plate, well in _wells(ctx, plates, 384):
        compound = "Dimethyl sulfoxide" if w % 3 == 0 else f"Prestw-{(int(plate[2:]) * 256 + w) % 1280 + 1}"
        control = "" if w % 3 else "negative control"
        rows.append([plate, "1", well, "Homo sapiens", "Human adenovirus 2", "A549", compound, control, "Hoechst:nuclei; GFP:infection"])
    header = ["Plate", "Comment [Plate Replicate]", "Well", "Characteristics [Organism 1]", "Characteristics [Organism 2]"]
    _annotation(ctx, header + ["Characteristics [Cell Line]", "Compound Name", "Control Type", "Channels"], rows)
    _samples(
        ctx, ["20200324-owncloud/3-Screen/Data_UZH/D-1/D-1_A01_w1.TIF", "20200324-owncloud/3-Screen/Data_UZH/D-1/D-1_A01_w2.TIF"], "tif16"
    )
    ctx.out.file(_study(ctx, "20200324-owncloud/3-Screen/Data_UZH/D-1/D-1.HTD"), b'"HTSInfoFile", Version 1.0\r\n')
    return len(rows)


IDR0088_LINES = {
    "A549": ["ACTB-RAB5A", "TUBA-RELA", "H2B-SEC61B"],
    "HepG2": ["TUBA-RELA", "ACTB-RAB5A", "CALR-HMGB1"],
    "WPMY-1": ["ACTB-LAMP1", "TUBA-RELA"],
}


def _idr0088(ctx: Ctx) -> int:
    """1,008 compounds (MoA for the reference set) and DMSO on marker lines of A549, HepG2, WPMY-1."""
    # Unconfirmed shapes; idr0088 names no image file here, so its labels make no class.
    compounds = frequencies(REAL_ROWS["idr0088"], 1009, 120, top=0.105)
    compound_names = ["DMSO"] + names("PPS-", 1008)
    moa_weights = frequencies(1008, 150, 50, threshold=THRESHOLD / 300)  # in compounds; a compound holds ~300 rows
    moa_of = np.r_[-1, np.repeat(np.arange(150), quotas(moa_weights, 1008))]
    moa_of[1::3] = -1  # the natural-product set has no MoA
    drawn = ctx.draw(compounds)
    lines = [(line, markers) for line, all_markers in IDR0088_LINES.items() for markers in all_markers]
    rows = []
    for i, c in enumerate(drawn):
        line, markers = lines[i % len(lines)]
        plate = str(1_013_600_000 + i // 265)
        moa = f"idr0088 moa {moa_of[c] + 1}" if moa_of[c] >= 0 else ""
        rows.append([plate, well_name(i % 265 + 24, pad=False), "Homo sapiens", line, f"{line}-{markers}", "0.3", moa, compound_names[c]])
        rows[-1] += [
            "negative control" if c == 0 else "",
            f"Ch1 (blue): Nuclei/Cytoplasm, Ch2 (green): {markers.split('-')[0]}, Ch3 (red): {markers.split('-')[1]}",
        ]
    header = ["Plate", "Well", "Characteristics [Organism]", "Characteristics [Cell Line]", "Comment [Cell Line with Markers]"]
    header += ["Compound Concentration (microMolar)", "Compound MoA", "Compound Name", "Control Type", "Channels"]
    _annotation(ctx, header, rows)
    folder = (
        "20200722-awss3/ds_hcs_02/PhenoPrintScreen/raw_images_for_IDR/p171224PPS139/PpsL05A549ActbRab5a_PPS139_20171225_200929/1013600000"
    )
    _samples(ctx, [f"{folder}/1013600000_B02_T0001F001L01A0{c}Z01C0{c}.tif" for c in (1, 2, 3)], "tif16")
    ctx.out.file(_study(ctx, f"{folder}/1013600000.wpi"), b"<?xml version='1.0'?><WPI/>\n")
    return len(rows)


IDR0093_CONTROLS = [("PLK1", "s449"), ("KIF11", "s7902"), ("POLR2A", "s10773")]


def _idr0093(ctx: Ctx) -> int:
    """83 plates: 4 wells of each positive control and 8 scrambled wells per plate, ~10,000 pools."""
    plates = [f"{p + 1:03d}" for p in range(83)]
    rows = []
    for w, plate, well in _wells(ctx, plates, 384):
        if w < 12:
            gene, pool = IDR0093_CONTROLS[w // 4]
            kind = "positive control"
        elif w < 20:
            gene, pool, kind = "", "", "negative control"
        else:
            slot = (int(plate) - 1) * 364 + w - 20
            gene, pool, kind = f"HSG{slot // 3:05d}", f"s{20_000 + slot}", ""
        rows.append(
            [plate, well, kind, "", "", "Homo sapiens", "HeLa", f"ENSG{stable_hash(gene) % 10**11:011d}" if gene else "", gene, pool, ""]
        )
    header = ["Plate", "Well", "Control Type", "Quality Control", "Channels", "Characteristics [Organism]", "Characteristics [Cell Line]"]
    header += ["Gene Identifier", "Gene Symbol", "siRNA Pool Identifier 1", "siRNA Pool Identifier 2"]
    _annotation(ctx, header, rows)
    _samples(ctx, [f"20200910-rsync/batch1/001/W0001F0001T0001Z001C{c}.tif" for c in range(1, 6)], "tif16")
    return len(rows)


WRITERS = {
    "idr0003": _idr0003,
    "idr0009": _idr0009,
    "idr0016": _idr0016,
    "idr0017": _idr0017,
    "idr0021": _idr0021,
    "idr0037": _idr0037,
    "idr0041": _idr0041,
    "idr0067": _idr0067,
    "idr0072": _idr0072,
    "idr0080": _idr0080,
    "idr0081": _idr0081,
    "idr0088": _idr0088,
    "idr0093": _idr0093,
}
