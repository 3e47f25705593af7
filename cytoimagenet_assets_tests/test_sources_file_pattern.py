"""The file-pattern parser, and the catalog's patterns against file names documented in SOURCES.md."""

import pandas as pd
import pytest

from cytoimagenet_assets.catalog import load_catalog
from cytoimagenet_assets.sources import parse_source
from cytoimagenet_assets.sources.table import ParseError

CATALOG = load_catalog("cytoimagenet")

# (dir_name, files laid out as SOURCES.md documents them, expected rows, a column and its values)
DOCUMENTED = [
    ("bbbc013", ["Channel2-36-C-12.BMP", "Channel1-36-C-12.BMP"], 1, "cell_visible", ["nucleus"]),
    ("bbbc014", ["Channel 1-29-C-05-00.Bmp", "Channel 2-29-C-05-00.Bmp"], 1, "well", ["C-05"]),
    ("bbbc015", ["54_4_1.JPG", "54_4_2.JPG"], 1, "cell_visible", ["cell membrane|nucleus"]),
    (
        "bbbc006",
        ["mcf-z-stacks-03212011_a01_s1_w1AB12.tif", "mcf-z-stacks-03212011_a01_s1_w2CD34.tif"],
        1,
        "cell_visible",
        ["nucleus|actin"],
    ),
    ("bbbc005", ["SIMCEPImages_A05_C18_F1_s01_w1.TIF", "SIMCEPImages_A05_C18_F1_s01_w2.TIF"], 1, "well", ["A05"]),
    ("bbbc026", ["ADSASS092408-GHAD2-D6-20x_B03_s2_w1A1B2.png"], 1, "organism", ["human|mouse"]),
    (
        "bbbc010",
        ["plate_A01_w1_x.tif", "plate_A01_w2_x.tif", "plate_B14_w1_x.tif", "plate_B14_w2_x.tif"],
        4,
        "phenotype",
        ["wildtype", "wildtype", "dead", "dead"],
    ),
    (
        "kag_cell_cycle",
        ["nematode cells/nematode cells/interphase/IMG_0001-1.jpg", "nematode cells/nematode cells/mitosis/IMG_0002-1.jpg"],
        2,
        "phenotype",
        ["interphase", "mitosis"],
    ),
    (
        "kag_leukemia",
        [
            "C-NMC_Leukemia/training_data/fold_0/all/UID_57_29_1_all.bmp",
            "C-NMC_Leukemia/training_data/fold_2/hem/UID_H10_1_1_hem.bmp",
            "C-NMC_Leukemia/validation_data/C-NMC_test_prelim_phase_data/1.bmp",
        ],
        2,
        "phenotype",
        ["b-lineage acute lymphoblastic leukemia", "normal"],
    ),
]


@pytest.mark.parametrize(("dir_name", "files", "rows", "column", "values"), DOCUMENTED, ids=[d[0] for d in DOCUMENTED])
def test_catalog_patterns_read_documented_file_names(tmp_path, dir_name, files, rows, column, values):
    for name in files:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    table = parse_source(CATALOG.source(dir_name), tmp_path).table
    assert len(table) == rows
    assert [None if v is None or v != v else v for v in table[column].tolist()] == values


def test_channels_of_one_field_merge_and_brightfield_stays_apart(tmp_path):
    for name in ["p_C03_w1_a.tif", "p_C03_w2_a.tif", "p_C03_w3_a.tif"]:
        (tmp_path / name).write_bytes(b"")
    table = parse_source(CATALOG.source("bbbc012"), tmp_path).table
    assert [list(n) for n in table["channel_names"]] == [["brightfield"], ["intestine", "pharynx"]]
    assert table["microscopy"].tolist() == ["brightfield", "fluorescence"]
    assert pd.isna(table["cell_visible"][0]) and table["cell_visible"][1] == "intestine|pharynx"


def test_no_matching_file_is_an_error_naming_the_pattern(tmp_path):
    (tmp_path / "readme.txt").write_text("nothing here")
    with pytest.raises(ParseError, match=r"kag_leukemia: no file under .* matches the pattern"):
        parse_source(CATALOG.source("kag_leukemia"), tmp_path)
