"""Each parser on the real files in ../shared/fixtures/real, checked against the files themselves."""

import csv
from collections import Counter

import pandas as pd
import pytest

from cytoimagenet_assets.catalog import load_catalog
from cytoimagenet_assets.sources import parse_source
from cytoimagenet_assets.sources.cellprofiler import read_annotation
from cytoimagenet_assets.sources.table import ParseError, missing_files, table_problems, unnormalized_labels

CATALOG = load_catalog("cytoimagenet")


def _rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _sound(parsed):
    assert table_problems(parsed.table) == []
    assert unnormalized_labels(parsed.table) == {}
    assert parsed.table["idx"].is_unique


def test_bbbc021_image_and_moa_tables(real):
    parsed = parse_source(CATALOG.source("bbbc021"), real / "bbbc021")
    table = parsed.table
    _sound(parsed)
    images = _rows(real / "bbbc021" / "BBBC021_v1_image.csv")
    assert len(table) == len(images) == 13200 and parsed.rejects.empty
    assert parsed.referenced_files == 3 * 13200
    # MOA joined by (compound, concentration) compared as numbers: 0.003000 in one file, 0.003 in the other.
    with open(real / "bbbc021" / "BBBC021_v1_moa.csv", newline=None, encoding="utf-8") as f:
        moa = {(r["compound"], float(r["concentration"])): r["moa"] for r in csv.DictReader(f)}
    expected = Counter(moa.get((r["Image_Metadata_Compound"], float(r["Image_Metadata_Concentration"]))) for r in images)
    expected = Counter({k.lower(): v for k, v in expected.items() if k not in (None, "DMSO")})
    assert Counter(table["phenotype"].dropna()) == expected
    assert table["phenotype"].nunique() == 12
    first = table[(table["source_row"] == 1)].iloc[0]
    assert first["compound"] == "5-fluorouracil" and first["plate"] == "Week4_27481" and first["well"] == "G10" and first["field"] == "1"
    assert list(first["channel_names"]) == ["nucleus", "microtubules", "actin"]
    assert first["channel_paths"][0] == "Week4/Week4_27481/G10_s1_w1BEDC2073-A983-4B98-95E9-84466707A25D.tif"
    # 113 compound names in the file; 'UNKNOWN' is a null value, not a label.
    assert table["compound"].nunique() == 112 and int(table["compound"].isna().sum()) == sum(
        r["Image_Metadata_Compound"] == "UNKNOWN" for r in images
    )
    assert set(table["cell_type"]) == {"mcf7"}


def test_bbbc022_moa_table_and_a_documented_image_table(real, tmp_path):
    source = CATALOG.source("bbbc022")
    moa_rows = _rows(real / "bbbc022" / "BBBC022_MOA_MATCHES_official.csv")
    (tmp_path / "BBBC022_MOA_MATCHES_official.csv").write_bytes((real / "bbbc022" / "BBBC022_MOA_MATCHES_official.csv").read_bytes())
    annotation = read_annotation(source, tmp_path, source.parser_options["annotations"][0])
    assert len(annotation) == len(moa_rows) == 995
    assert dict(zip(annotation["Var1"], annotation["Metadata_moa.x"]))["BRD-A01078468"] == "synthetic estrogen"
    # An image table in the documented CellProfiler layout, joined to the real MOA table.
    channels = [c.key for c in source.channels]
    header = [f"Image_{k}_{c}" for c in channels for k in ("FileName", "PathName")]
    header += ["Image_Metadata_PlateID", "Image_Metadata_CPD_WELL_POSITION", "Image_Metadata_BROAD_ID"]
    lines = [",".join(header)]
    for i, (broad_id, well) in enumerate([("BRD-A01078468", "a01"), ("BRD-A00993607", "b02"), ("BRD-NOT-IN-TABLE", "c03")]):
        lines.append(",".join([v for c in channels for v in (f"IXMtest_{well}_s1_w{c}.tif", "20585")] + ["20585", well, broad_id]))
    (tmp_path / "BBBC022_v1_image.csv").write_text("\n".join(lines) + "\n")
    table = parse_source(source, tmp_path).table
    assert table["phenotype"].tolist()[:2] == ["synthetic estrogen", "adrenergic receptor antagonist"]
    assert pd.isna(table["phenotype"][2]) and table["compound"][2] == "brd-not-in-table"
    assert list(table["channel_names"][0]) == ["nucleus", "er", "nucleoli", "actin|golgi", "mitochondria"]


def test_rxrx1_kaggle_tables_and_image_layout(real):
    parsed = parse_source(CATALOG.source("rec_rxrx1"), real / "rxrx1")
    table = parsed.table
    _sound(parsed)
    wells = _rows(real / "rxrx1" / "train.csv") + _rows(real / "rxrx1" / "train_controls.csv")
    assert len(table) == 2 * len(wells) == 81228  # two sites per well
    treated = table[(table["plate"] == "HEPG2-01_1") & (table["well"] == "B03")]
    assert treated["sirna"].tolist() == ["sirna_250", "sirna_250"] and treated["field"].tolist() == ["1", "2"]
    assert set(treated["cell_type"]) == {"hepg2"}
    control = table[(table["plate"] == "HEPG2-01_1") & (table["well"] == "B02") & (table["field"] == "1")].iloc[0]
    assert pd.isna(control["sirna"])  # UNTREATED is a negative control, not an siRNA
    assert control["channel_paths"][0] == "images/train/HEPG2-01/Plate1/B02_s1_w1.png"
    # The 36 PNGs in the fixture (3 experiments x 2 plates x 6 channels) are found; everything else is reported missing.
    assert len(missing_files(table, real / "rxrx1")) == parsed.referenced_files - 36
    per_line = Counter()
    for w in wells:
        per_line[w["experiment"].split("-")[0].lower()] += 2
    assert Counter(table["cell_type"]) == per_line
    assert table["sirna"].nunique() == len({w["sirna"] for w in wells} - {"UNTREATED"})


def test_rxrx_metadata_csv_layout(tmp_path):
    source = CATALOG.source("rec_rxrx19a")
    (tmp_path / "metadata.csv").write_text(
        "site_id,well_id,cell_type,experiment,plate,well,site,disease_condition,treatment,treatment_conc,SMILES\n"
        "HRCE-1_1_AC01_1,HRCE-1_1_AC01,HRCE,HRCE-1,1,AC01,1,Active SARS-CoV-2,Remdesivir,10,C\n"
        "VERO-1_2_B02_3,VERO-1_2_B02,VERO,VERO-1,2,B02,3,UV Inactivated SARS-CoV-2,,,\n"
    )
    table = parse_source(source, tmp_path).table
    assert table["compound"].tolist()[0] == "remdesivir" and pd.isna(table["compound"][1])
    assert table["phenotype"].tolist() == ["active sars-cov-2", "uv inactivated sars-cov-2"]
    assert table["cell_type"].tolist() == ["hrce", "vero"]
    assert list(table["channel_paths"][1]) == [f"images/VERO-1/Plate2/B02_s3_w{w}.png" for w in range(1, 6)]


def test_hpa_train_csv_one_row_per_channel(real):
    parsed = parse_source(CATALOG.source("kag_hpa"), real / "hpa")
    table = parsed.table
    _sound(parsed)
    ids = _rows(real / "hpa" / "train.csv")
    assert len(table) == 4 * len(ids) == 124288 and parsed.rejects.empty
    first = table[table["source_row"] == 1].set_index("field")  # 00070df0-..., Target "16 0"
    assert first.loc["green", "cell_visible"] == "cytokinetic bridge|nucleoplasm"
    assert first.loc["blue", "cell_visible"] == "nucleus" and first.loc["red", "cell_visible"] == "microtubules"
    assert list(first.loc["yellow", "channel_paths"]) == ["train/00070df0-bbc3-11e8-b2bc-ac1f6b6435d0_yellow.png"]
    # Every one of the 28 localizations appears; a single-label image keeps its (common) label.
    protein = table[table["field"] == "green"]["cell_visible"].dropna().str.split("|").explode()
    assert protein.nunique() == 28
    single_er = next(i for i, r in enumerate(ids, start=1) if r["Target"] == "6")
    assert table[(table["source_row"] == single_er) & (table["field"] == "green")]["cell_visible"].item() == "er"


def test_idr0037_screen_annotation(real):
    parsed = parse_source(CATALOG.source("idr0037"), real / "idr0037")
    table = parsed.table
    _sound(parsed)
    rows = _rows(real / "idr0037" / "idr0037-screenA-annotation.csv")
    assert len(table) == len(rows) == 3303
    assert int((table["channel_paths"].map(len) == 0).sum()) == 3303  # metadata only: one row per well
    assert table["cell_type"][0] == "a1atd-ipsc patient 1" and table["well"][0] == "A1"
    lines = Counter(r["Characteristics [Cell Line]"].lower() for r in rows)
    counted = table["cell_type"].str.split("|").explode().value_counts()
    assert counted["hpsi0813i-ffdm_3"] == lines["hpsi0813i-ffdm_3"] == 42
    assert counted["induced pluripotent stem cell"] == sum(
        r["Characteristics [Cell Type]"] == "induced pluripotent stem cell" for r in rows
    )
    assert set(table["cell_visible"]) == {"nucleus|proliferation|cell membrane"}


def test_idr0041_experiment_annotation_with_keep_filter(real):
    parsed = parse_source(CATALOG.source("idr0041"), real / "idr0041")
    table = parsed.table
    _sound(parsed)
    rows = _rows(real / "idr0041" / "idr0041-experimentA-annotation.csv")
    kept = [r for r in rows if r["Comment [Image File Type]"] == "original images"]
    assert len(table) == len(kept) == 280 and len(parsed.rejects) == len(rows) - 280
    assert set(table["gene"]) == {"mad2l1 targeted"}
    # SOURCES.md: .../idr0041-cai-mitoticatlas/20180710-ftp/<dataset>/cell<NNNN>_R<NNNN>_T<NNNN>.tif
    assert list(table["channel_paths"][0]) == ["20180710-ftp/170428_MAD2L1gfpcM11-B11_MitoSys1_raw/cell0001_R0041_T0001.tif"]
    assert list(table["channel_names"][0]) == ["protein|nucleus"]  # one 4D TIFF holds both channels
    assert parsed.rejects["reason"].str.contains("keep filter").all()


def test_idr0088_excerpt_screen_annotation(real):
    source = CATALOG.source("idr0088")
    excerpt = source.model_copy(
        update={"parser_options": {**source.parser_options, "annotation": "idr0088-screenA-annotation.excerpt.csv"}}
    )
    parsed = parse_source(excerpt, real / "idr0088")
    table = parsed.table
    _sound(parsed)
    rows = _rows(real / "idr0088" / "idr0088-screenA-annotation.excerpt.csv")
    assert len(table) == len(rows) == 3000
    assert table["compound"].value_counts()["dmso"] == sum(r["Compound Name"] == "DMSO" for r in rows) == 316
    moa = Counter(r["Compound MoA"].lower() for r in rows if r["Compound MoA"])
    assert table["phenotype"].value_counts()["hdac inhibitor"] == moa["hdac inhibitor"] == 55
    assert Counter(table["cell_type"]) == Counter({"hepg2": 1012, "a549": 1002, "wpmy-1": 986})


def test_idr_plates_tsv_maps_plates_to_folders(real):
    from cytoimagenet_assets.sources.idr import read_plates

    plates = read_plates(CATALOG.source("idr0037"), real / "idr0037" / "idr0037-screenA-plates.tsv")
    assert len(plates) == 69
    assert plates["experiment_01"] == "images/20140424_HipSci + BJ 3000c_well_OC__2014-04-24T17_01_22-Measurement1/Images"
    # 29 plates are filed under another study, fetched into a folder of its name (the catalog's download.filesets)
    elsewhere = "idr0034-kilpinen-hipsci/20170421-original/Oli/"
    assert plates["experiment_02"] == elsewhere + "HipSci Experiment 2__2014-04-29T10_58_26-Measurement1/Images"
    assert sum(folder.startswith("idr0034-kilpinen-hipsci/") for folder in plates.values()) == 29


def test_a_missing_metadata_file_names_source_and_file(tmp_path):
    with pytest.raises(ParseError, match="idr0037: metadata file 'idr0037-screenA-annotation.csv' not found"):
        parse_source(CATALOG.source("idr0037"), tmp_path)
    with pytest.raises(ParseError, match="raw folder .* does not exist. To provide it: download the IDR study idr0037-vigilante-hipsci"):
        parse_source(CATALOG.source("idr0037"), tmp_path / "absent")
    with pytest.raises(ParseError, match="bbbc041: metadata file 'malaria/training.json' not found"):
        parse_source(CATALOG.source("bbbc041"), tmp_path)


def test_bad_numbers_name_file_and_row(tmp_path, real):
    source = CATALOG.source("bbbc021")
    (tmp_path / "BBBC021_v1_image.csv").write_bytes((real / "bbbc021" / "BBBC021_v1_image.csv").read_bytes())
    (tmp_path / "BBBC021_v1_moa.csv").write_text("compound,concentration,moa\ntaxol,0.3,Microtubule stabilizers\ntaxol,lots,Oops\n")
    with pytest.raises(ParseError, match=r"bbbc021: BBBC021_v1_moa.csv data row 2: 'lots' is not a number"):
        parse_source(source, tmp_path)
