import pandas as pd
import pytest

from cytoimagenet_assets.catalog import load_catalog
from cytoimagenet_assets.sources.regions import format_region, parse_region
from cytoimagenet_assets.sources.table import (
    COLUMNS,
    ParseError,
    label_counts,
    missing_files,
    normalize_label,
    standardize,
    table_problems,
    unnormalized_labels,
)


@pytest.mark.parametrize(
    ("value", "category", "expected"),
    [
        ("  HeLa ", "cell_type", "hela"),
        ("Neutrophil", "cell_type", "white blood cell"),
        ("GPCR", "cell_visible", "cell membrane"),
        ("DNA|F-Actin|dna", "cell_visible", "nucleus|actin"),
        ("KIF11", "gene", "kif11 targeted"),
        ("kif11 targeted", "gene", "kif11 targeted"),
        ("", "compound", None),
        ("N/A", "compound", None),
        (float("nan"), "organism", None),
        (None, "organism", None),
        ("Homo sapiens", "organism", "human"),
        ("DMSO", "phenotype", None),
        ("DMSO", "compound", "dmso"),
        ("Dimethyl sulfoxide", "compound", "dmso"),
        ("BRD-A04438777-001-03-6", "compound", "brd-a04438777"),  # salt, batch, check digit: the compound's short id
        ("BRD-K12345678-001-16-4|BRD-K12345678", "compound", "brd-k12345678"),
        ("BRD-A04438777", "compound", "brd-a04438777"),
        ("Prophase*", "phenotype", "prophase --"),
        ("EMPTY", "sirna", None),
        ("EMPTY", "gene", None),  # screen controls are null genes, not "empty targeted"
        ("empty targeted", "gene", None),
        ("shLuc|KIF11|unk", "gene", "kif11 targeted"),
        ("unk", "compound", "unk"),  # a gene category's null word only
        ("a  b|  |c", "phenotype", "a b|c"),
    ],
)
def test_normalize_label(value, category, expected):
    assert normalize_label(value, category) == expected


@pytest.mark.parametrize("value", ["HeLa", "KIF11|TP53", "Prophase*", "DNA|GPCR", "x|x", "BRD-A04438777-001-03-6"])
@pytest.mark.parametrize("category", ["cell_type", "gene", "phenotype", "cell_visible", "compound"])
def test_normalize_label_is_idempotent(value, category):
    once = normalize_label(value, category)
    assert normalize_label(once, category) == once


def _draft(n=3):
    return pd.DataFrame(
        {
            "source_file": ["b.csv", "a.csv", "a.csv"][:n],
            "source_row": [1, 2, 1][:n],
            "channel_names": [["nucleus", "actin"]] * n,
            "channel_paths": [[f"x{i}_w1.tif", f"x{i}_w2.tif"] for i in range(n)],
            "compound": ["Taxol", "DMSO", None][:n],
        }
    )


def test_standardize_orders_rows_assigns_idx_and_fills_defaults():
    source = load_catalog("demo").source("demo_bbbc021")
    table = standardize(_draft(), source)
    assert list(table.columns) == list(COLUMNS)
    assert table["idx"].tolist() == ["demo_bbbc021-0", "demo_bbbc021-1", "demo_bbbc021-2"]
    assert table[["source_file", "source_row"]].values.tolist() == [["a.csv", 1], ["a.csv", 2], ["b.csv", 1]]
    assert table["compound"].tolist()[1:] == ["dmso", "taxol"] and pd.isna(table["compound"][0])
    assert set(table["cell_type"]) == {"mcf7"} and set(table["cell_visible"]) == {"nucleus|actin"}
    assert table_problems(table) == [] and unnormalized_labels(table) == {}
    # Same draft in another order -> identical table.
    assert standardize(_draft().iloc[::-1], source).equals(table)


def test_standardize_refuses_a_draft_without_required_columns():
    source = load_catalog("demo").source("demo_bbbc021")
    with pytest.raises(ParseError, match="demo_bbbc021: parser 'cellprofiler' returned no channel_paths"):
        standardize(_draft().drop(columns=["channel_paths"]), source)


@pytest.mark.parametrize("path", ["../../etc/passwd", "/etc/passwd", "plate/../../x.tif", "C:\\images\\x.tif", "a\\..\\..\\x.tif"])
def test_standardize_refuses_image_paths_outside_the_raw_folder(path):
    source = load_catalog("demo").source("demo_bbbc021")
    draft = _draft()
    draft.at[1, "channel_paths"] = ["ok_w1.tif", path]
    with pytest.raises(ParseError, match=r"demo_bbbc021: a.csv row 2: image path .* climbs out of the source's raw folder"):
        standardize(draft, source)


def test_table_problems_catches_contract_breaks():
    source = load_catalog("demo").source("demo_bbbc021")
    table = standardize(_draft(), source)
    assert table_problems(table.drop(columns=["idx"])) == ["missing columns: idx"]
    broken = table.assign(source_row=table["source_row"].astype(str), database=None)
    problems = table_problems(broken)
    assert any("source_row" in p for p in problems) and any("database has 3 null" in p for p in problems)
    uneven = table.copy()
    uneven.at[0, "channel_names"] = ["nucleus"]
    assert table_problems(uneven) == ["1 rows have a different number of channel names and paths"]


def test_missing_files_and_label_counts(tmp_path):
    source = load_catalog("demo").source("demo_bbbc021")
    table = standardize(_draft(), source)
    (tmp_path / "x0_w1.tif").write_bytes(b"")
    missing = missing_files(table, tmp_path)
    assert len(missing) == 5 and "x0_w1.tif" not in set(missing["path"])
    counts = label_counts(table)
    assert counts["compound"] == {"dmso": 1, "taxol": 1} and counts["cell_visible"] == {"nucleus": 3, "actin": 3}


def test_regions_are_written_and_read_in_one_format():
    assert format_region(0, 715, 0, 825) == "y0:715,x0:825" and parse_region("y0:715,x0:825") == (0, 715, 0, 825)
    assert parse_region(None) is None and parse_region(pd.NA) is None and parse_region(float("nan")) is None
    for bad in ["y0:715", "x0:825,y0:715", "y5:5,x0:1", "y6:5,x0:1", "y01:5,x0:1", "y-1:5,x0:1", "object 1 y0:5,x0:1", " y0:5,x0:1", 7]:
        with pytest.raises(ValueError, match="y<top>:<bottom>,x<left>:<right>"):
            parse_region(bad)
    with pytest.raises(ValueError):
        format_region(5, 5, 0, 1)


def _boxes():
    draft = _draft(1)
    draft = pd.concat([draft] * 4, ignore_index=True)
    draft["region"] = ["y10:50,x20:60", None, "y9:50,x20:60", "y10:50,x3:60"]
    draft["compound"] = ["a", "b", "c", "d"]
    return draft


def test_standardize_keeps_regions_apart_and_orders_them_numerically():
    source = load_catalog("demo").source("demo_bbbc021")
    table = standardize(_boxes(), source)
    assert table["region"].dtype == "string" and table_problems(table) == []
    # Whole image first, then top to bottom, left to right (numbers compared as numbers, not as text).
    assert table["compound"].tolist() == ["b", "c", "d", "a"]
    assert [None if pd.isna(r) else r for r in table["region"]] == [None, "y9:50,x20:60", "y10:50,x3:60", "y10:50,x20:60"]
    assert standardize(_boxes().iloc[::-1], source).equals(table)  # same idx whatever the parser's order


def test_a_malformed_region_fails_the_source_naming_file_and_row():
    source = load_catalog("demo").source("demo_bbbc021")
    draft = _draft()
    draft["region"] = [None, "object 3 y0:5,x0:5", None]
    with pytest.raises(ParseError, match=r"demo_bbbc021: a.csv row 2: malformed region 'object 3 y0:5,x0:5': expected y<top>:<bottom>"):
        standardize(draft, source)
    table = standardize(_draft(), source)
    table.loc[1, "region"] = "y9:3,x0:5"
    assert table_problems(table) == [
        "column region has 1 malformed values (first: malformed region 'y9:3,x0:5': an empty or reversed "
        "range; expected y<top>:<bottom>,x<left>:<right> (non-negative integers, top < bottom, left < right))"
    ]
