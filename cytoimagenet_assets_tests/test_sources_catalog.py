"""Every pretraining source of the cytoimagenet catalog, parsed with its own catalog entry.

Real files where ../shared/fixtures/real has them; otherwise small files written here in the layout
SOURCES.md documents (file names, folders, metadata columns), with exact row counts and labels.
Sources already covered by test_sources_real.py and test_sources_file_pattern.py are listed in
ELSEWHERE, and a last test checks that no catalog source is left untested.
"""

from __future__ import annotations

import datetime
import gzip
import io
import json
import zipfile
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
import yaml

from cytoimagenet_assets.catalog import BUILTIN_DIR, load_catalog
from cytoimagenet_assets.definitions import build_definitions
from cytoimagenet_assets.demo.formats import xls_bytes
from cytoimagenet_assets.rehearsal.catalog import write_rehearsal_catalog
from cytoimagenet_assets.sources import parse_source, parser_options
from cytoimagenet_assets.sources.__main__ import main as sources_cli
from cytoimagenet_assets.sources.regions import parse_region
from cytoimagenet_assets.sources.spreadsheets import read_spreadsheet
from cytoimagenet_assets.sources.table import ParseError, table_problems, unnormalized_labels

CATALOG = load_catalog("cytoimagenet")

# Covered by the other parser test modules (with the catalog entry, on real or documented files).
ELSEWHERE = {
    "bbbc005": "test_sources_file_pattern",
    "bbbc006": "test_sources_file_pattern",
    "bbbc010": "test_sources_file_pattern",
    "bbbc012": "test_sources_file_pattern",
    "bbbc013": "test_sources_file_pattern",
    "bbbc014": "test_sources_file_pattern",
    "bbbc015": "test_sources_file_pattern",
    "bbbc026": "test_sources_file_pattern",
    "kag_cell_cycle": "test_sources_file_pattern",
    "kag_leukemia": "test_sources_file_pattern",
    "bbbc022": "test_sources_real",
    "rec_rxrx1": "test_sources_real",
    "rec_rxrx19a": "test_sources_real",
    "kag_hpa": "test_sources_real",
    "idr0037": "test_sources_real",
    "idr0041": "test_sources_real",
}
HERE: set[str] = set()


def covers(*dir_names):
    """Mark a test as parsing these sources with their catalog entries (checked by the last test)."""
    HERE.update(dir_names)
    return lambda test: test


# --- helpers ---------------------------------------------------------------------------------------


def touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def parse(dir_name: str, root: Path, source=None):
    parsed = parse_source(source or CATALOG.source(dir_name), root)
    table = parsed.table
    assert table_problems(table) == []
    assert unnormalized_labels(table) == {}
    assert table["idx"].is_unique
    return parsed


def values(series) -> list:
    return [None if pd.isna(v) else v for v in series.tolist()]


def lists(series) -> list:
    return [list(v) for v in series]


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    frame = pd.DataFrame(rows, columns=header)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)


def xlsx_bytes(rows: list[list], sheet: str = "Sheet1") -> bytes:
    """An .xlsx written by openpyxl: strings, numbers, booleans, dates as given; None/'' left blank."""
    book = openpyxl.Workbook()
    data = book.active
    data.title = sheet
    for r, row in enumerate(rows, start=1):
        for c, value in enumerate(row, start=1):
            if value is not None and value != "":
                data.cell(row=r, column=c, value=value)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


# --- BBBC ------------------------------------------------------------------------------------------


@covers("bbbc011")
def test_bbbc011_brightfield_pngs(tmp_path):
    touch(tmp_path, "BBBC011_v1_images/A01.png", "BBBC011_v1_images/B12.png", "BBBC011_v1_images/readme.txt")
    table = parse("bbbc011", tmp_path).table
    assert len(table) == 2 and values(table["field"]) == ["A01", "B12"]
    assert set(table["organism"]) == {"nematode"} and set(table["microscopy"]) == {"brightfield"}
    assert values(table["cell_visible"]) == [None, None] and lists(table["channel_names"]) == [["brightfield"]] * 2


BBBC017_HEADER = [
    "384well-index",
    "384-Plate#",
    "384-quad",
    "384-well",
    "96-Plate#",
    "96-well",
    "96row",
    "96col",
    "384row",
    "384col",
    "384-well PlateName",
    "96-well PlateName",
    "Row",
    "Col",
    "senseOligoId",
    "location",
    "Nmid",
    "taxonId",
    "locuslinkId",
    "gene name",
    "Transcript Description",
    "SenseOligoSeq",
    "ProdStatus",
    "class",
    "",
    "",
    "plate order",
]


def _bbbc017_row(plate, well, gene, family):
    row = [""] * len(BBBC017_HEADER)
    row[1], row[3], row[19], row[23] = plate, well, gene, family
    return row


def _bbbc017_metadata(root: Path) -> None:
    rows = [
        BBBC017_HEADER,
        _bbbc017_row(1, "A01", "Gabra3", "NONE"),
        _bbbc017_row(1, "A02", "MAPK11", "kinase"),
        _bbbc017_row(2, "B03", "", ""),
        _bbbc017_row("", "Z99", "SFRS2", "spliceosome"),  # no plate, no valid well
        _bbbc017_row(3, "C01", "CSNK1E", "kinase"),
    ]  # a plate without images
    (root / "BBBC017_v1_metadata.xls").write_bytes(xls_bytes(rows))


@covers("bbbc017")
def test_bbbc017_xls_joined_to_plate_folders_and_wells(tmp_path):
    _bbbc017_metadata(tmp_path)
    # Moffat-screen names as in the CellProfiler ExampleHuman fixture (AS_09125_050116030001_D03f00d0.tif), .DIB per SOURCES.md.
    for folder, well, field in [
        ("NIRHTa-001", "A01", "00"),
        ("NIRHTa-001", "A01", "01"),
        ("BBBC017_v1_images_NIRHTa+001", "A02", "00"),
        ("NIRHTa-002", "B03", "00"),
        ("NIRHTa-002", "H05", "00"),
    ]:
        touch(tmp_path, *[f"{folder}/AS_09125_050116030001_{well}f{field}d{d}.DIB" for d in range(3)])
    parsed = parse("bbbc017", tmp_path)
    table = parsed.table
    assert len(table) == 5
    assert values(table["well"]) == ["A01", "A01", "A02", "B03", "H05"]  # metadata rows 1, 1, 2, 3, then the unmatched image
    assert values(table["gene"]) == ["gabra3 targeted", "gabra3 targeted", "mapk11 targeted", None, None]
    assert values(table["plate"]) == ["NIRHTa-001", "NIRHTa-001", "BBBC017_v1_images_NIRHTa+001", "NIRHTa-002", "NIRHTa-002"]
    assert values(table["source_file"])[:4] == ["BBBC017_v1_metadata.xls"] * 4 and table["source_row"].tolist()[:4] == [1, 1, 2, 3]
    assert values(table["phenotype"]) == [None] * 5  # the gene family (class) is not a label
    assert set(table["cell_visible"]) == {"nucleus|actin"} and set(table["cell_type"]) == {"ht29"}
    assert lists(table["channel_names"])[0] == ["nucleus", "mitosis", "actin"]
    assert lists(table["channel_paths"])[2] == [f"BBBC017_v1_images_NIRHTa+001/AS_09125_050116030001_A02f00d{d}.DIB" for d in range(3)]
    assert parsed.rejects.values.tolist() == [
        ["BBBC017_v1_metadata.xls", 4, "no plate/well: 384-Plate#='' 384-well='Z99'"],
        ["BBBC017_v1_metadata.xls", 5, "no image files for plate 3 well C01"],
    ]


def test_bbbc017_metadata_alone_gives_one_row_per_well(tmp_path):
    _bbbc017_metadata(tmp_path)
    parsed = parse("bbbc017", tmp_path)
    assert len(parsed.table) == 4 and parsed.referenced_files == 0 and len(parsed.rejects) == 1
    assert values(parsed.table["well"]) == ["A01", "A02", "B03", "C01"] and values(parsed.table["plate"]) == ["1", "1", "2", "3"]


def test_bbbc017_control_wells_get_no_gene_label(tmp_path):
    # The screen's controls (empty vector, unknown, shRNAs against reporters) are not genes to label.
    controls = ["EMPTY", "unk", "shLuc", "shGFP", "LacZ"]
    rows = [BBBC017_HEADER] + [_bbbc017_row(1, f"A{i:02d}", gene, "") for i, gene in enumerate([*controls, "PRKCE"], start=1)]
    (tmp_path / "BBBC017_v1_metadata.xls").write_bytes(xls_bytes(rows))
    table = parse("bbbc017", tmp_path).table
    assert values(table["gene"]) == [None] * len(controls) + ["prkce targeted"]


def test_bbbc017_bad_metadata_names_source_file_and_rows(tmp_path):
    (tmp_path / "BBBC017_v1_metadata.xls").write_bytes(b"not a spreadsheet at all")
    with pytest.raises(ParseError, match=r"bbbc017: cannot read .*BBBC017_v1_metadata\.xls"):
        parse_source(CATALOG.source("bbbc017"), tmp_path)
    (tmp_path / "BBBC017_v1_metadata.xls").write_bytes(
        xls_bytes([BBBC017_HEADER, _bbbc017_row(1, "A01", "X", ""), _bbbc017_row(1.0, "a1", "Y", "")])
    )
    with pytest.raises(ParseError, match=r"bbbc017: BBBC017_v1_metadata\.xls data rows 1 and 2 both describe plate 1 well A01"):
        parse_source(CATALOG.source("bbbc017"), tmp_path)
    (tmp_path / "BBBC017_v1_metadata.xls").write_bytes(xls_bytes([["384-Plate#", "384-well"], [1, "A01"]]))
    with pytest.raises(ParseError, match=r"bbbc017: BBBC017_v1_metadata\.xls lacks column\(s\) 'gene name'"):
        parse_source(CATALOG.source("bbbc017"), tmp_path)


@covers("bbbc020")
def test_bbbc020_one_folder_per_image(tmp_path):
    for folder in ("jw-30min 1", "jw-Kontrolle 2"):
        touch(tmp_path, *[f"BBBC020_v1_images/{folder}/{folder}_{c}.TIF" for c in ("c1", "c5", "(c1+c5)")])
    table = parse("bbbc020", tmp_path).table
    assert len(table) == 2 and values(table["field"]) == ["jw-30min 1", "jw-Kontrolle 2"]
    assert lists(table["channel_paths"])[0] == [
        "BBBC020_v1_images/jw-30min 1/jw-30min 1_c1.TIF",
        "BBBC020_v1_images/jw-30min 1/jw-30min 1_c5.TIF",
    ]
    assert set(table["cell_visible"]) == {"nucleus|cell surface"} and set(table["organism"]) == {"mouse"}
    assert set(table["cell_type"]) == {"macrophage"}


@covers("bbbc025")
def test_bbbc025_channel_folders_from_the_tarballs(tmp_path):
    # <plate>_<channel>.tar.gz (SOURCES.md) extracted into folders of the same name; idr0016 spells them <plate>-<channel>.
    channels = ["ERSyto", "ERSytoBleed", "Hoechst", "Mito", "PhGolgi"]
    touch(tmp_path, *[f"37983_{c}/37983_a01_s1_w{i}A1B2C3D4.tif" for i, c in enumerate(channels, start=1)])
    touch(tmp_path, "37983_Hoechst/37983_a01_s2_w3E5F6.tif", "38002-Hoechst/38002_p24_s1_w3.tif")
    table = parse("bbbc025", tmp_path).table
    assert len(table) == 3
    assert values(table["plate"]) == ["37983", "37983", "38002"] and values(table["field"]) == ["1", "2", "1"]
    assert lists(table["channel_names"]) == [["nucleus", "er", "nucleoli", "actin|golgi", "mitochondria"], ["nucleus"], ["nucleus"]]
    assert values(table["cell_visible"])[0] == "nucleus|er|nucleoli|actin|golgi|mitochondria"


DSB = [
    "00071198d059ba7f5914a526d124d28e6d010c92466da21d4a04cd5413362552",
    "0114f484a16c152baa2d82fdd43740880a762c93f436c8988ac461c5c9dbe7d5",
    "0999dab07b11bc85fb8464fc36c947fbd8b5d6ec49817361cb780659ca805eac",
]


@covers("bbbc038")
def test_bbbc038_image_folders_of_every_split(tmp_path):
    touch(
        tmp_path,
        f"stage1_train/{DSB[0]}/images/{DSB[0]}.png",
        f"stage1_train/{DSB[0]}/masks/f6eee5c69f548079.png",
        f"stage1_test/{DSB[1]}/images/{DSB[1]}.png",
        f"stage2_test_final/{DSB[2]}/images/{DSB[2]}.png",
        f"stage1_train/{DSB[2]}/images/not-the-image.png",
        "stage1_train_labels.csv",
    )
    parsed = parse("bbbc038", tmp_path)
    table = parsed.table
    assert len(table) == 3 and parsed.rejects.empty
    assert sorted(values(table["field"])) == sorted(DSB)
    assert sorted(p for paths in table["channel_paths"] for p in paths) == sorted(
        [
            f"stage1_train/{DSB[0]}/images/{DSB[0]}.png",
            f"stage1_test/{DSB[1]}/images/{DSB[1]}.png",
            f"stage2_test_final/{DSB[2]}/images/{DSB[2]}.png",
        ]
    )
    assert set(table["organism"]) == {"human|mouse|fly"} and set(table["cell_visible"]) == {"nucleus"}


def test_bbbc038_metadata_xlsx_labels_images_when_mapped(tmp_path):
    touch(tmp_path, *[f"stage1_train/{i}/images/{i}.png" for i in DSB[:2]])
    (tmp_path / "metadata.xlsx").write_bytes(
        xlsx_bytes(
            [
                ["ImageId", "cell type", "width"],
                [DSB[0], "HeLa", 256],
                [DSB[0], "U2OS", 256],
                ["feedbeef", "MCF7", 320],
                ["", "x", 1],
            ]
        )
    )
    source = CATALOG.source("bbbc038")
    mapped = source.model_copy(
        update={"parser_options": {**source.parser_options, "id_column": "ImageId", "columns": {"cell_type": "cell type"}}}
    )
    parsed = parse("bbbc038", tmp_path, mapped)
    by_id = parsed.table.set_index("field")
    assert by_id.loc[DSB[0], "cell_type"] == "hela" and pd.isna(by_id.loc[DSB[1], "cell_type"])
    assert by_id.loc[DSB[0], "source_file"] == "metadata.xlsx" and by_id.loc[DSB[0], "source_row"] == 1
    assert parsed.rejects.values.tolist() == [
        ["metadata.xlsx", 2, f"ImageId {DSB[0]!r} already described in data row 1"],
        ["metadata.xlsx", 4, "empty ImageId"],
        ["metadata.xlsx", 3, "no image file for ImageId 'feedbeef'"],
    ]
    (tmp_path / "metadata.xlsx").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ParseError, match=r"bbbc038: cannot read .*metadata\.xlsx"):
        parse_source(mapped, tmp_path)


def test_xlsx_values_read_as_the_csv_tables_are(tmp_path):
    path = tmp_path / "metadata.xlsx"
    path.write_bytes(
        xlsx_bytes(
            [
                [],
                ["ImageId", "plate", "ratio", "ok", "taken", "note", "ImageId"],
                ["a1", 1.0, 0.25, True, datetime.datetime(2018, 1, 16, 9, 30), "#N/A", "=1+1"],
                ["", 12, 1 / 3, False, None, "", ""],
                [None] * 7,
                ["c3", 2, None, None, None, "x", ""],
                [None] * 7,
            ],
            sheet="Images",
        )
    )
    source = CATALOG.source("bbbc038")
    table = read_spreadsheet(source, path, required=["ImageId"])
    assert list(table.columns) == ["ImageId", "plate", "ratio", "ok", "taken", "note", "ImageId.1"]  # the first non-empty row
    assert table.values.tolist() == [
        ["a1", "1", "0.25", "TRUE", "2018-01-16T09:30:00", "", ""],  # whole numbers without '.0'; an error, a formula never computed: blank
        ["", "12", "0.333333333333333", "FALSE", "", "", ""],
        ["", "", "", "", "", "", ""],  # an empty row inside the table is kept, so data row numbers stay right
        ["c3", "2", "", "", "", "x", ""],
    ]
    assert read_spreadsheet(source, path, sheet="Images").equals(table) and read_spreadsheet(source, path, sheet=0).equals(table)
    with pytest.raises(ParseError, match=r"bbbc038: metadata\.xlsx has no sheet 'Sheet2'; its sheets: Images"):
        read_spreadsheet(source, path, sheet="Sheet2")
    with pytest.raises(ParseError, match=r"bbbc038: metadata\.xlsx lacks column\(s\) 'cell type'; it has ImageId, plate"):
        read_spreadsheet(source, path, required=["cell type"])
    (tmp_path / "empty.xlsx").write_bytes(xlsx_bytes([]))
    with pytest.raises(ParseError, match=r"bbbc038: empty\.xlsx holds no table"):
        read_spreadsheet(source, tmp_path / "empty.xlsx")
    (tmp_path / "fake.xlsx").write_bytes(b"ImageId,plate\na1,1\n")
    with pytest.raises(ParseError, match=r"bbbc038: cannot read .*fake\.xlsx: \w+"):
        read_spreadsheet(source, tmp_path / "fake.xlsx")


def _malaria(root: Path) -> None:
    def box(category, r0, c0, r1, c1):
        return {"category": category, "bounding_box": {"minimum": {"r": r0, "c": c0}, "maximum": {"r": r1, "c": c1}}}

    training = [
        {
            "image": {
                "checksum": "a",
                "pathname": "/images/8d02117d-6c71-4e47-b50a-6cc8d5eb1d55.png",
                "shape": {"r": 1200, "c": 1600, "channels": 3},
            },
            "objects": [
                box("red blood cell", 1057, 1440, 1158, 1540),
                box("trophozoite", 868, 599, 1002, 737),
                box("difficult", 10, 20, 50, 60),
            ],
        },
        {
            "image": {
                "checksum": "b",
                "pathname": "/images/6b14c855-8561-417c-97a4-63fa552842fd.png",
                "shape": {"r": 1200, "c": 1600, "channels": 3},
            },
            "objects": [box("leukocyte", 100, 100, 200, 210), box("ring", 300, 300, 290, 350), box("schizont", 1100, 1500, 1300, 1600)],
        },
    ]
    test = [
        {
            "image": {
                "checksum": "c",
                "pathname": "/images/41be1bd3-0d31-4881-bf1f-3ccdfa21ff12.jpg",
                "shape": {"r": 1383, "c": 1944, "channels": 3},
            },
            "objects": [box("ring", 500, 600, 560, 655)],
        },
        {"image": {"checksum": "d"}, "objects": [box("gametocyte", 1, 1, 2, 2)]},
    ]
    (root / "malaria").mkdir()
    (root / "malaria" / "training.json").write_text(json.dumps(training))
    (root / "malaria" / "test.json").write_text(json.dumps(test))


@covers("bbbc041")
def test_bbbc041_one_row_per_bounding_box(tmp_path):
    _malaria(tmp_path)
    parsed = parse("bbbc041", tmp_path)
    table = parsed.table
    assert len(table) == 5
    # The boxes of one image in (top, bottom, left, right) order, not in the JSON's order.
    assert values(table["cell_type"]) == ["ring", "difficult", "trophozoite", "red blood cell", "white blood cell"]  # leukocyte merged
    assert values(table["region"]) == [
        "y500:560,x600:655",
        "y10:50,x20:60",
        "y868:1002,x599:737",
        "y1057:1158,x1440:1540",
        "y100:200,x100:210",
    ]
    assert parse_region(table["region"][3]) == (1057, 1158, 1440, 1540) and table["field"].isna().all()
    assert lists(table["channel_paths"])[0] == ["malaria/images/41be1bd3-0d31-4881-bf1f-3ccdfa21ff12.jpg"]
    assert values(table["source_file"]) == ["malaria/test.json"] + ["malaria/training.json"] * 4
    assert table["source_row"].tolist() == [1, 1, 1, 1, 2]
    assert set(table["microscopy"]) == {"brightfield"} and set(table["organism"]) == {"human"} and table["cell_visible"].isna().all()
    assert parsed.rejects.values.tolist() == [
        [
            "malaria/training.json",
            2,
            "/images/6b14c855-8561-417c-97a4-63fa552842fd.png object 2: empty or negative box r 300:290, c 300:350",
        ],
        [
            "malaria/training.json",
            2,
            "/images/6b14c855-8561-417c-97a4-63fa552842fd.png object 3: box r 1100:1300, c 1500:1600 outside the 1200x1600 image",
        ],
        ["malaria/test.json", 2, "no image.pathname"],
    ]


def test_bbbc041_malformed_json_names_source_and_file(tmp_path):
    _malaria(tmp_path)
    (tmp_path / "malaria" / "test.json").write_text('[{"image": {"pathname": "/images/x.png"}, "objects": [}]')
    with pytest.raises(ParseError, match=r"bbbc041: malaria/test\.json is not valid JSON: .* at line 1 column"):
        parse_source(CATALOG.source("bbbc041"), tmp_path)
    (tmp_path / "malaria" / "test.json").write_text('{"images": []}')
    with pytest.raises(ParseError, match=r"bbbc041: malaria/test\.json must hold a list of images, found a JSON dict"):
        parse_source(CATALOG.source("bbbc041"), tmp_path)


@covers("bbbc045")
def test_bbbc045_montages_cropped_and_split_by_channel(tmp_path):
    touch(
        tmp_path,
        "Stained_Montages/Neutrophil/2014_10_01/neutrophil1_Ch01.tif",
        "Stained_Montages/Neutrophil/2014_10_01/neutrophil1_Ch06.tif",
        "Stained_Montages/Neutrophil/2014_10_01/neutrophil1_Ch07.tif",
        "Stained_Montages/B cell/montage_Ch2.tif",
        "Stained_Montages/T_cell/montage_Ch13.tif",
        "Stained_Montages/overview_Ch1.tif",
        "Stained_Montages/notes.txt",
    )
    parsed = parse("bbbc045", tmp_path)
    table = parsed.table
    assert len(table) == 4
    assert values(table["microscopy"]) == ["fluorescence", "brightfield", "darkfield", "fluorescence"]
    assert set(table["cell_type"]) == {"white blood cell"}  # b cell -> b-cell -> white blood cell, as the original merged them
    assert set(table["region"]) == {"y0:715,x0:825"} and parse_region("y0:715,x0:825") == (0, 715, 0, 825)
    assert table["field"].isna().all()
    assert lists(table["channel_names"]) == [["nucleus"], ["brightfield"], ["darkfield"], ["nucleus"]]
    assert parsed.rejects.values.tolist() == [
        ["Stained_Montages/T_cell/montage_Ch13.tif", 1, "channel 'Ch13' is not in parser_options.channel_keys"],
        ["Stained_Montages/overview_Ch1.tif", 1, "does not match the montage pattern (cell-type folder, <name>_<channel>.tif)"],
    ]


@covers("bbbc048")
def test_bbbc048_class_folders_and_imaging_flow_channels(tmp_path):
    touch(
        tmp_path,
        "CellCycle/G1/1_Ch1.jpg",
        "CellCycle/G1/1_Ch3.jpg",
        "CellCycle/G1/1_Ch6.jpg",
        "CellCycle/Anaphase/7_Ch3.jpg",
        "CellCycle/S/3_Ch3.jpg",
        "CellCycle/cells/9_Ch3.jpg",
    )
    table = parse("bbbc048", tmp_path).table
    assert len(table) == 5
    assert values(table["phenotype"]) == ["anaphase", "g1 phase", "g1 phase", "g1 phase", "s phase"]
    assert values(table["microscopy"]) == ["fluorescence", "brightfield", "fluorescence", "darkfield", "fluorescence"]
    assert set(table["cell_type"]) == {"jurkat"}


@covers("bbbc051")
def test_bbbc051_class_folders_to_cell_types(tmp_path):
    touch(tmp_path, *[f"Images/{c}/All_3D/object_{i}_12__34__3_1.tif" for i, c in enumerate(["CD_CNT", "CD45.1", "TAL", "S1S2", "Nestin"])])
    table = parse("bbbc051", tmp_path).table
    assert len(table) == 5
    assert values(table["cell_type"]) == [
        "white blood cell",
        "collecting duct",
        "nestin positive cell",
        "proximal tubule cell",
        "thick ascending limb cell",
    ]
    assert set(table["microscopy"]) == {"confocal"} and set(table["cell_visible"]) == {"nucleus"}


# --- Cell Image Library -----------------------------------------------------------------------------


@covers("cil_kinome")
def test_cil_kinome_group_table_and_tiffs(tmp_path):
    write_csv(
        tmp_path / "cil_kinome_metadata.csv",
        ["file_name", "kinase"],
        [["53464.zip", "AGC"], ["53465.zip", "AGC"], ["53880.zip", "Other"], ["53881.zip", ""], ["53464.zip", "TK"]],
    )
    touch(tmp_path, "53464/53464.tif", "53465.tif")
    parsed = parse("cil_kinome", tmp_path)
    table = parsed.table
    assert len(table) == 3
    assert values(table["cell_visible"]) == ["agc kinase", "agc kinase", "other kinase"]
    assert lists(table["channel_paths"]) == [["53464/53464.tif"], ["53465.tif"], ["53880.tif"]]  # 53880 not downloaded yet
    assert lists(table["channel_names"]) == [["nucleus|protein"]] * 3
    assert set(table["microscopy"]) == {"confocal"} and set(table["cell_type"]) == {"hela"} and set(table["organism"]) == {"human"}
    assert parsed.rejects.values.tolist() == [
        ["cil_kinome_metadata.csv", 4, "no image id or kinase group: file_name='53881.zip' kinase=''"],
        ["cil_kinome_metadata.csv", 5, "image 53464 already listed in data row 1"],
    ]


# --- Image Data Resource ----------------------------------------------------------------------------


@covers("idr0003")
def test_idr0003_stress_conditions(tmp_path):
    write_csv(
        tmp_path / "screenA" / "idr0003-screenA-annotation.csv",
        ["Plate", "Well", "Characteristics [Strain]", "Experimental Condition [Environmental Stress]", "Gene Identifier", "Gene Symbol"],
        [
            ["DTT p1", "A1", "Y6545", "dithiothreitol", "YAL001C", "TFC3"],
            ["DTT p1", "A2", "Y6545", "dithiothreitol", "YAL002W", ""],
            ["H2O2 p3", "B1", "Y6545", "hydrogen peroxide", "YAL003W", "EFB1"],
        ],
    )
    table = parse("idr0003", tmp_path).table
    assert len(table) == 3 and values(table["well"]) == ["A1", "A2", "B1"]
    assert values(table["phenotype"]) == ["dithiothreitol", "dithiothreitol", "hydrogen peroxide"]
    assert values(table["gene"]) == ["tfc3 targeted", None, "efb1 targeted"]
    assert set(table["organism"]) == {"yeast"} and set(table["cell_type"]) == {"y6545"}
    assert set(table["cell_visible"]) == {"nucleus|protein"}  # metadata only: the fluorescence stains, not the brightfield


@covers("idr0009")
def test_idr0009_gzipped_annotation_and_quality_control(tmp_path):
    text = (
        "Plate,Well,siRNA Identifier,Gene Symbol,Quality Control\n"
        "0001-03--2005-08-01,A1,s1234,KIF11,pass\n0001-03--2005-08-01,A2,s5678,INCENP,fail\n0002-03--2005-08-01,C3,s9999,INCENP,pass\n"
    )
    (tmp_path / "idr0009-screenA-annotation.csv.gz").write_bytes(gzip.compress(text.encode()))
    parsed = parse("idr0009", tmp_path)
    table = parsed.table
    assert (
        len(table) == 2 and values(table["gene"]) == ["kif11 targeted", "incenp targeted"] and values(table["sirna"]) == ["s1234", "s9999"]
    )
    assert parsed.rejects.values.tolist() == [
        ["idr0009-screenA-annotation.csv.gz", 2, "excluded by the catalog's keep filter: Quality Control='fail'"]
    ]
    assert set(table["cell_type"]) == {"hela"}


@covers("idr0016", "idr0017", "idr0081")
@pytest.mark.parametrize(
    ("dir_name", "name", "header", "rows", "column", "expected"),
    [
        (
            "idr0016",
            "idr0016-screenA-annotation.csv",
            ["Plate", "Well", "Compound Name"],
            [["24277", "A1", "Tacrine"], ["24277", "A2", "DMSO"]],
            "compound",
            ["tacrine", "dmso"],
        ),
        (
            "idr0017",
            "idr0017-screenA-annotation.csv",
            ["Plate", "Well", "Characteristics [Cell Line]", "Compound Name"],
            [
                ["AKT1-/-_&_AKT2-/-_LOPAC_Plate_1_Replicate_1", "B2", "104-004", "Brefeldin A"],
                ["Parental_LOPAC_Plate_1_Replicate_1", "B2", "par001", ""],
            ],
            "cell_type",
            ["104-004", "par001"],
        ),
        (
            "idr0081",
            "idr0081-screenD-annotation.csv",
            ["Plate", "Well", "Compound Name", "Control Type"],
            [["D-1", "A1", "Dimethyl sulfoxide", "negative control"], ["D-1", "A2", "Azacytidine-5", ""]],
            "compound",
            ["dmso", "azacytidine-5"],
        ),
    ],
    ids=["idr0016", "idr0017", "idr0081"],
)
def test_idr_screen_annotations(tmp_path, dir_name, name, header, rows, column, expected):
    write_csv(tmp_path / name, header, rows)
    table = parse(dir_name, tmp_path).table
    assert len(table) == len(rows) and values(table[column]) == expected
    assert table["channel_paths"].map(len).sum() == 0  # metadata only: one row per well


def test_idr0017_compound_and_cell_line_together(tmp_path):
    write_csv(
        tmp_path / "idr0017-screenA-annotation.csv",
        ["Plate", "Well", "Characteristics [Cell Line]", "Compound Name"],
        [["P1", "A1", "HCT116 02-030", "Brefeldin A"]],
    )
    row = parse("idr0017", tmp_path).table.iloc[0]
    assert (row["compound"], row["cell_type"], row["organism"]) == ("brefeldin a", "hct116 02-030", "human")


@covers("idr0021", "idr0067")
def test_idr_experiment_annotations(tmp_path):
    write_csv(
        tmp_path / "idr0021-experimentA-annotation.csv",
        ["Dataset Name", "Image Name", "Characteristics [Cell Cycle Phase]", "Comment [Gene Symbol]", "Channels"],
        [
            ["CDK5RAP2-C", "CDK5RAP2-C_1_SIR_PRJ.dv", "interphase", "CDK5RAP2", "442:CENT2; 525:PCNT; 615:CDK5RAP2-C"],
            ["PCNT-C", "PCNT-C_2_SIR_PRJ.dv", "mitosis", "PCNT", "442:CENT2; 525:PCNT"],
        ],
    )
    # SOURCES.md: DeltaVision files Raw-files/<Dataset>/<session>/*_SIR_PRJ.dv; the session folder is not in the annotation.
    session = "Raw-files/CDK5RAP2-C/Centrin_PCNT_Cep215_20110506"
    touch(
        tmp_path,
        f"{session}/CDK5RAP2-C_1_SIR_PRJ.dv",
        f"{session}/CDK5RAP2-C_1_SIR.dv",  # not a projection: no match
        f"{session}/CDK5RAP2-C_9_SIR_PRJ.dv",  # not annotated: ignored
        "Raw-files/PCNT-C/PCNT-C_2_SIR_PRJ.dv",
    )  # no session folder: not the documented layout
    table = parse("idr0021", tmp_path).table
    assert len(table) == 2 and values(table["plate"]) == ["CDK5RAP2-C", "PCNT-C"]
    assert lists(table["channel_paths"]) == [[f"{session}/CDK5RAP2-C_1_SIR_PRJ.dv"], []]  # PCNT-C stays metadata only
    assert lists(table["channel_names"]) == [["centrosome"], []]
    assert values(table["gene"]) == ["cdk5rap2 targeted", "pcnt targeted"] and values(table["phenotype"]) == ["interphase", "mitosis"]
    assert set(table["cell_visible"]) == {"centrosome"} and set(table["microscopy"]) == {"super_resolution"}

    write_csv(
        tmp_path / "idr0067-experimentA-annotation.csv",
        ["Dataset Name", "Image Name", "Comment [Protein] 1", "Channels"],
        [["Figure 1", "a_R3D_D3D.dv", "Hsp104", "FITC = Hsp104-eGFP, mCherry = Htb1-mCherry"], ["Figure 2", "b_R3D.dv", "Nup170", ""]],
    )
    table = parse("idr0067", tmp_path).table
    assert len(table) == 2 and values(table["cell_visible"]) == ["hsp104", "nup170"] and set(table["organism"]) == {"yeast"}
    assert table["channel_paths"].map(len).sum() == 0  # metadata only: the Figure <n>/<panel>/ mapping is not documented


@covers("idr0021")
def test_idr0021_files_found_in_the_remote_index_before_download(tmp_path):
    write_csv(
        tmp_path / "idr0021-experimentA-annotation.csv",
        ["Dataset Name", "Image Name", "Characteristics [Cell Cycle Phase]", "Comment [Gene Symbol]"],
        [["CEP152", "Cep152_gTub_1_SIR_PRJ.dv", "interphase", "CEP152"]],
    )
    index = tmp_path / ".remote" / "files.parquet"
    index.parent.mkdir()
    remote = "incoming/idr0021-lawo-pericentriolarmaterial/Raw-files/CEP152/Cep152_gTub_20111105/Cep152_gTub_1_SIR_PRJ.dv"
    pd.DataFrame({"path": [remote]}).to_parquet(index)
    table = parse("idr0021", tmp_path).table
    assert len(table) == 1 and lists(table["channel_paths"]) == [[remote]] and values(table["gene"]) == ["cep152 targeted"]


@covers("idr0072")
def test_idr0072_screen_b_columns(tmp_path):
    header = [
        "Plate",
        "Well",
        "Characteristics [Organism]",
        "Term Source 1 REF",
        "Term Source 1 Accession",
        "Characteristics [Cell Line]",
        "Term Source 2 REF",
        "Term Source 2 Accession",
        "Comment [Gene Identifier]",
        "Comment [Gene Symbol]",
        "Comment [Protein Name]",
        "Comment [Protein Name Abbreviation]",
        "Protein Sequence (aa)",
        "UniProt ID",
        "Addgene ID",
        "Experimental Condition [Subcellular Localization]",
        "Channels",
    ]
    rows = [
        [
            "20130208_TA_VAMP1_DEG/Meas_01",
            "A1",
            "Mus musculus",
            "NCBITaxon",
            "10090",
            "NMuMG",
            "EFO",
            "x",
            "ENSMUSG1",
            "Vamp5",
            "vesicle-associated membrane protein 5",
            "VAMP5",
            "MAG",
            "Q9Z2P8",
            "1",
            "plasma membrane",
            "EGFP (protein of interest), DRAQ5 (DNA)",
        ],
        [
            "20130208_TA_VAMP1_DEG/Meas_01",
            "A2",
            "Mus musculus",
            "NCBITaxon",
            "10090",
            "NMuMG",
            "EFO",
            "x",
            "ENSMUSG2",
            "Rab5a",
            "RAB5A, member RAS oncogene family",
            "Rab5a",
            "MAS",
            "Q9CQD1",
            "2",
            "early endosome",
            "EGFP (protein of interest), DRAQ5 (DNA)",
        ],
    ]
    write_csv(tmp_path / "idr0072-screenB-annotation.csv", header, rows)
    table = parse("idr0072", tmp_path).table
    assert len(table) == 2
    assert values(table["cell_visible"]) == ["vamp5", "rab5a"]  # the protein abbreviation, as the original
    assert values(table["gene"]) == ["vamp5 targeted", "rab5a targeted"]
    assert set(table["organism"]) == {"mouse"} and set(table["cell_type"]) == {"nmumg"}


@covers("idr0080")
def test_idr0080_operetta_fields_found_through_plates_tsv(tmp_path):
    plate_dir = (
        "20200316-s3/2015_07_01_Cell_Health_Vazquez_Cancer_Broad/CRISPR_PILOT_B1/images/SQ00014613__2016-05-05T18_16_12-Measurement2/Images"
    )
    (tmp_path / "idr0080-screenA-plates.tsv").write_text(
        f"SQ00014613\t/uod/idr/filesets/idr0080-way-perturbation/{plate_dir}/Index.idx.xml\n"
    )
    write_csv(
        tmp_path / "idr0080-screenA-annotation.csv",
        ["Plate", "Well", "Characteristics [Cell Line]", "Gene Symbol", "Control Type"],
        [["SQ00014613", "A01", "A549", "TP53", ""], ["SQ00014613", "B02", "ES2", "EMPTY", "negative control"]],
    )
    touch(tmp_path, *[f"{plate_dir}/r01c01f0{f}p01-ch{c}sk1fk1fl1.tiff" for f in (1, 2) for c in range(1, 6)])
    touch(
        tmp_path,
        f"{plate_dir}/r03c03f01p01-ch1sk1fk1fl1.tiff",  # C3 is not annotated: ignored
        f"{plate_dir}/thumbs/r02c02f01p01-ch1sk1fk1fl1.tiff",
    )  # not in the plate folder itself: no match
    parsed = parse("idr0080", tmp_path)
    table = parsed.table
    assert len(table) == 3 and values(table["well"]) == ["A1", "A1", "B2"] and values(table["field"]) == ["1", "2", None]
    assert lists(table["channel_names"])[0] == ["nucleus", "er", "nucleoli", "actin|golgi", "mitochondria"]
    assert lists(table["channel_paths"])[1][4] == f"{plate_dir}/r01c01f02p01-ch5sk1fk1fl1.tiff" and list(table["channel_paths"][2]) == []
    assert values(table["gene"]) == ["tp53 targeted", "tp53 targeted", None]  # EMPTY: the negative control, not a gene
    assert values(table["cell_type"]) == ["a549", "a549", "es2"]


def test_idr_file_pattern_with_plates_tsv_for_incell_names(tmp_path):
    # idr0017's documented InCell names, with a plates.tsv mapping plates to source/<run>/ folders (see its catalog notes).
    source = CATALOG.source("idr0017")
    pattern = r"^(?P<row>[A-P]) - (?P<column>\d+)\(fld (?P<field>\d+) wv (?P<channel>[^ ]+) - [^)]+\)\.tif$"
    source = source.model_copy(
        update={"parser_options": {**source.parser_options, "plates": "idr0017-screenA-plates.tsv", "file_pattern": pattern}}
    )
    run = "20151124/14_X-Man_10x/source/2011-11-17_X-Man_LOPAC_X01_LP_S01_1"
    plate = "AKT1-/-_&_AKT2-/-_LOPAC_Plate_1_Replicate_1"
    (tmp_path / "idr0017-screenA-plates.tsv").write_text(f"{plate}\t/uod/idr/filesets/idr0017-breinig-drugscreen/{run}/run.xdce\n")
    write_csv(
        tmp_path / "idr0017-screenA-annotation.csv",
        ["Plate", "Well", "Characteristics [Cell Line]", "Compound Name"],
        [[plate, "B02", "104-004", "Brefeldin A"], [plate, "C1", "104-004", ""]],
    )
    touch(
        tmp_path,
        *[f"{run}/B - 02(fld {f} wv {c} - {c}).tif" for f in (1, 2) for c in ("DAPI", "Cy3")],
        f"{run}/D - 04(fld 1 wv DAPI - DAPI).tif",
        f"{run}/run.xdce",
    )
    table = parse("idr0017", tmp_path, source).table
    assert len(table) == 3 and values(table["well"]) == ["B2", "B2", "C1"] and values(table["field"]) == ["1", "2", None]
    assert lists(table["channel_names"]) == [["nucleus", "actin"], ["nucleus", "actin"], []]
    assert lists(table["channel_paths"])[1] == [f"{run}/B - 02(fld 2 wv DAPI - DAPI).tif", f"{run}/B - 02(fld 2 wv Cy3 - Cy3).tif"]
    assert values(table["compound"]) == ["brefeldin a", "brefeldin a", None] and set(table["cell_type"]) == {"104-004"}


def test_idr_file_pattern_plate_group_without_plates_tsv(tmp_path):
    # No plates.tsv: the pattern runs on the path from the study root and its plate group names the plate (a test-only layout).
    source = CATALOG.source("idr0093")
    pattern = r"^20200910-rsync/[^/]+/(?P<plate>\d{3})/(?P<row>[A-P])(?P<column>\d{2})_s(?P<field>\d)_(?P<channel>\d)\.tif$"
    source = source.model_copy(update={"parser_options": {**source.parser_options, "file_pattern": pattern}})
    text = (
        "Plate,Well,Control Type,Gene Identifier,Gene Symbol,siRNA Pool Identifier 1\n"
        "001,A1,,ENSG00000141510,TP53,s605\n002,A1,negative control,,,\n"
    )
    (tmp_path / "idr0093-screenA-annotation.csv.gz").write_bytes(gzip.compress(text.encode()))
    touch(
        tmp_path,
        *[f"20200910-rsync/batch1/001/A01_s{f}_{c}.tif" for f in (1, 2) for c in range(1, 6)],
        "20200910-rsync/batch1/003/A01_s1_1.tif",
    )  # plate 003 is not annotated: ignored
    table = parse("idr0093", tmp_path, source).table
    assert len(table) == 3 and values(table["plate"]) == ["001", "001", "002"] and values(table["field"]) == ["1", "2", None]
    assert lists(table["channel_names"])[0] == ["nucleus", "pcna", "rna", "protein"]  # channel 5 is not in the catalog
    assert lists(table["channel_paths"])[1][3] == "20200910-rsync/batch1/001/A01_s2_4.tif" and list(table["channel_paths"][2]) == []
    assert values(table["sirna"]) == ["s605", "s605", None]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"file_pattern": r"^(?P<well>[A-P]\d+)_(?P<channel>\d)\.tif$"},
            r"idr0093: file_pattern .* lacks the named group\(s\) field, plate",
        ),
        (
            {"file_pattern": r"^(?P<plate>\d+)/(?P<row>[A-P])_f(?P<field>\d)_(?P<channel>\d)\.tif$"},
            r"idr0093: file_pattern .* lacks .* well \(or row and column\)",
        ),
        ({"file_pattern": r"(?P<plate>"}, r"idr0093: file_pattern '\(\?P<plate>' is not a valid regular expression"),
        ({"layout": "scanr"}, r"idr0093: unknown IDR layout 'scanr' \(known: operetta\)"),
        ({"layout": "operetta", "file_pattern": "x"}, r"idr0093: give either layout or file_pattern"),
    ],
    ids=["field-and-plate", "well", "invalid", "unknown-layout", "both"],
)
def test_idr_bad_file_pattern_names_source_and_option(tmp_path, options, message):
    (tmp_path / "idr0093-screenA-annotation.csv.gz").write_bytes(
        gzip.compress(b"Plate,Well,Gene Symbol,siRNA Pool Identifier 1\n001,A1,TP53,s605\n")
    )
    source = CATALOG.source("idr0093")
    with pytest.raises(ParseError, match=message):
        parse_source(source.model_copy(update={"parser_options": {**source.parser_options, **options}}), tmp_path)


def test_idr_experiment_file_pattern_needs_dataset_and_image(tmp_path):
    write_csv(
        tmp_path / "idr0021-experimentA-annotation.csv",
        ["Dataset Name", "Image Name", "Characteristics [Cell Cycle Phase]", "Comment [Gene Symbol]"],
        [["CEP152", "a_SIR_PRJ.dv", "interphase", "CEP152"]],
    )
    source = CATALOG.source("idr0021")
    bad = source.model_copy(update={"parser_options": {**source.parser_options, "file_pattern": r"Raw-files/(?P<dataset>[^/]+)/.*\.dv$"}})
    with pytest.raises(ParseError, match=r"idr0021: file_pattern .* lacks the named group\(s\) image"):
        parse_source(bad, tmp_path)


@covers("idr0088")
def test_idr0088_zipped_annotation_as_the_catalog_names_it(real, tmp_path):
    excerpt = real / "idr0088" / "idr0088-screenA-annotation.excerpt.csv"
    with zipfile.ZipFile(tmp_path / "idr0088-screenA-annotation.csv.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(excerpt, "idr0088-screenA-annotation.csv")
    table = parse("idr0088", tmp_path).table
    assert len(table) == 3000
    assert table["compound"].value_counts()["dmso"] == 316 and table["phenotype"].value_counts()["hdac inhibitor"] == 55


@covers("idr0093")
def test_idr0093_sirna_pools(tmp_path):
    text = (
        "Plate,Well,Control Type,Gene Identifier,Gene Symbol,siRNA Pool Identifier 1,siRNA Pool Identifier 2\n"
        "001,A1,,ENSG00000141510,TP53,s605,s606\n001,A2,negative control,,,,\n"
    )
    (tmp_path / "idr0093-screenA-annotation.csv.gz").write_bytes(gzip.compress(text.encode()))
    table = parse("idr0093", tmp_path).table
    assert len(table) == 2 and values(table["sirna"]) == ["s605", None] and values(table["gene"]) == ["tp53 targeted", None]
    assert set(table["cell_type"]) == {"hela"} and set(table["cell_visible"]) == {"nucleus|pcna|rna|protein"}


# --- Kaggle and Recursion ---------------------------------------------------------------------------


@covers("kag_hpa_single")
def test_hpa_2021_pipe_separated_labels(tmp_path):
    write_csv(
        tmp_path / "train.csv",
        ["ID", "Label"],
        [
            ["5c27f04c-bb99-11e8-b2b9-ac1f6b6435d0", "8|5|0"],
            ["5fb643ee-bb99-11e8-b2b9-ac1f6b6435d0", "18"],
            ["60b57878-bb99-11e8-b2b9-ac1f6b6435d0", "6|0"],
            ["5fb643ee-0000", "19"],
        ],
    )
    parsed = parse("kag_hpa_single", tmp_path)
    table = parsed.table
    assert len(table) == 12 and parsed.rejects["source_row"].tolist() == [4]
    protein = table[table["field"] == "green"]
    assert values(protein["cell_visible"]) == [
        "intermediate filaments|nuclear bodies|nucleoplasm",
        None,
        "nucleoplasm",
    ]  # 18 = Negative; er dropped
    assert values(table[table["field"] == "blue"]["cell_visible"]) == ["nucleus"] * 3
    assert list(protein["channel_paths"].iloc[0]) == ["train/5c27f04c-bb99-11e8-b2b9-ac1f6b6435d0_green.png"]


@covers("rec_rxrx19b", "rec_rxrx2")
def test_rxrx19b_and_rxrx2_metadata_csv(tmp_path):
    (tmp_path / "rxrx19b").mkdir()
    (tmp_path / "rxrx19b" / "metadata.csv").write_text(
        "site_id,well_id,cell_type,experiment,plate,well,site,disease_condition,treatment,treatment_conc,SMILES\n"
        "HUVEC-1_1_B02_1,HUVEC-1_1_B02,HUVEC,HUVEC-1,1,B02,1,storm-severe,Baricitinib,1.0,C\n"
        "HUVEC-1_1_B03_1,HUVEC-1_1_B03,HUVEC,HUVEC-1,1,B03,1,healthy,,,\n"
    )
    table = parse("rec_rxrx19b", tmp_path / "rxrx19b").table
    assert values(table["phenotype"]) == ["storm-severe", "healthy"] and values(table["compound"]) == ["baricitinib", None]
    assert list(table["channel_paths"][0]) == [f"images/HUVEC-1/Plate1/B02_s1_w{w}.png" for w in range(1, 7)]
    assert set(table["cell_type"]) == {"huvec"}

    (tmp_path / "rxrx2").mkdir()
    (tmp_path / "rxrx2" / "rxrx2-metadata.csv").write_text(
        "site_id,well_id,cell_type,experiment,plate,well,site,treatment,treatment_conc\n"
        "HUVEC-1_1_AA02_1,HUVEC-1_1_AA02,HUVEC,HUVEC-1,1,AA02,1,IFN-gamma,0.1\n"
        "HUVEC-1_1_AA02_4,HUVEC-1_1_AA02,HUVEC,HUVEC-1,1,AA02,4,IFN-gamma,0.1\n"
        "HUVEC-1_1_AB02_2,HUVEC-1_1_AB02,HUVEC,HUVEC-1,1,AB02,2,,\n"
    )
    table = parse("rec_rxrx2", tmp_path / "rxrx2").table
    assert len(table) == 3 and values(table["compound"]) == ["ifn-gamma", "ifn-gamma", None] and values(table["field"]) == ["1", "4", "2"]
    assert table["phenotype"].isna().all() and list(table["channel_paths"][1])[0] == "images/HUVEC-1/Plate1/AA02_s4_w1.png"


# --- parser options -----------------------------------------------------------------------------------

IDR_OPTIONS = "annotation, columns, file_pattern, image_path, keep, layout, plates"


def test_a_misspelt_option_in_a_catalog_entry_fails_the_parse_naming_source_option_and_options(real, tmp_path, capsys):
    """``imagepath:`` for ``image_path:`` in idr0041's entry would leave every row without its file
    and exit 0; the catalog still loads (it stays below the parsers), the parse and the Dagster
    definitions refuse it."""
    raw = yaml.safe_load((BUILTIN_DIR / "cytoimagenet.yaml").read_text(encoding="utf-8"))
    entry = next(s for s in raw["sources"] if s["dir_name"] == "idr0041")
    entry["parser_options"]["imagepath"] = entry["parser_options"].pop("image_path")
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(raw))
    argv = ["idr0041", str(real / "idr0041"), "--out", str(tmp_path / "t.parquet"), "--catalog", str(tmp_path / "mine.yaml")]
    assert sources_cli(argv) == 2 and not (tmp_path / "t.parquet").exists()
    assert capsys.readouterr().err == (
        f"error: idr0041: parser 'idr' has no option 'imagepath' in parser_options; its options: {IDR_OPTIONS}\n"
    )
    with pytest.raises(ParseError, match="idr0041: parser 'idr' has no option 'imagepath'"):  # and the code location does not load
        build_definitions(load_catalog(tmp_path / "mine.yaml"))


def test_a_required_option_left_out_is_named_not_a_key_error(tmp_path):
    source = CATALOG.source("bbbc022")
    options = {k: v for k, v in source.parser_options.items() if k != "image_table"}
    with pytest.raises(
        ParseError, match=r"^bbbc022: parser 'cellprofiler' needs the option 'image_table' in parser_options; its options: "
    ):
        parse_source(source.model_copy(update={"parser_options": options}), tmp_path)


def test_every_catalog_entry_gives_only_options_its_parser_declares(tmp_path):
    rehearsal = write_rehearsal_catalog(tmp_path / "rehearsal.yaml", 0.01, "http://127.0.0.1:9")
    for catalog in (CATALOG, load_catalog("demo"), load_catalog(rehearsal)):
        for source in catalog.sources:
            if source.parser is not None:
                parser_options(source)  # a ParseError names the entry and the option


# --- coverage -----------------------------------------------------------------------------------------


def test_every_pretraining_source_is_parsed_by_some_test():
    pretraining = {s.dir_name for s in CATALOG.pretraining_sources}
    assert len(pretraining) == 40
    assert not HERE & set(ELSEWHERE)
    assert pretraining - HERE - set(ELSEWHERE) == set()
    assert (HERE | set(ELSEWHERE)) - pretraining == set()


def test_file_name_parsers_read_the_remote_index(tmp_path):
    """Before any image is fetched, the files listed in the remote index are parsed like files on disk."""
    from cytoimagenet_assets.storage import REMOTE_INDEX

    _bbbc017_metadata(tmp_path)
    index = tmp_path / REMOTE_INDEX
    index.parent.mkdir(parents=True)
    pd.DataFrame({"path": [f"NIRHTa-001/AS_09125_050116030001_A01f00d{d}.DIB" for d in range(3)]}).to_parquet(index)
    table = parse("bbbc017", tmp_path).table
    assert len(table) == 1 and values(table["gene"]) == ["gabra3 targeted"] and not (tmp_path / "NIRHTa-001").exists()

    pd.DataFrame({"path": [f"stage1_test/{DSB[1]}/images/{DSB[1]}.png", "Stained_Montages/Monocyte/m_Ch01.tif"]}).to_parquet(index)
    assert values(parse("bbbc038", tmp_path).table["field"]) == [DSB[1]]
    assert values(parse("bbbc045", tmp_path).table["microscopy"]) == ["brightfield"]
