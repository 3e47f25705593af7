import pandas as pd
import pytest

from cytoimagenet_assets.catalog import load_catalog
from cytoimagenet_assets.labels.merge import drop_overlaps, merge_sources
from cytoimagenet_assets.labels.tables import NoSourceTables, every_source_merged_check, write_merged
from cytoimagenet_assets.sources.table import COLUMNS, standardize
from cytoimagenet_assets.storage import DataHome, write_parquet


def _table(dir_name, rows):
    source = load_catalog("demo").source("demo_bbbc021").model_copy(update={"dir_name": dir_name})
    draft = pd.DataFrame(
        [{"source_file": "meta.csv", "source_row": i + 1, "channel_names": ["nucleus"], **row} for i, row in enumerate(rows)]
    )
    return standardize(draft, source)


def _merged():
    bbbc022 = _table(
        "bbbc022",
        [
            {"plate": "20585", "well": "A01", "field": "1", "channel_paths": ["20585/a01_s1.tif"], "phenotype": "tubulin destabilizer"},
            {"plate": "20585", "well": "A01", "field": "2", "channel_paths": ["20585/a01_s2.tif"]},
            {"plate": "20585", "well": "B01", "field": "1", "channel_paths": ["20585/b01_s1.tif"]},  # only here
            {"plate": "20586", "well": "C03", "field": "1", "channel_paths": ["20586/c03_s1.tif"], "compound": "BRD-K1"},
            {"plate": None, "well": "A01", "field": "1", "channel_paths": ["x.tif"]},  # no plate: never matched
        ],
    )
    idr0016 = _table(
        "idr0016",
        [
            {"plate": " 20585 ", "well": "a01", "field": "1", "channel_paths": ["p/a01_1.tif"], "compound": "nocodazole"},
            {"plate": "20585", "well": "A01", "field": "2", "channel_paths": ["p/a01_2.tif"], "compound": "nocodazole"},
            {"plate": "20586", "well": "C03", "field": "1", "channel_paths": [], "channel_names": [], "compound": "taxol"},  # metadata only
            {"plate": "24277", "well": "A01", "field": "1", "channel_paths": ["q/a01_1.tif"]},
        ],
    )
    return merge_sources({"bbbc022": bbbc022, "idr0016": idr0016})


def test_duplicates_are_dropped_once_keeping_files_and_every_label():
    merged = _merged()
    table, report = drop_overlaps(merged, {"bbbc022": ("idr0016",)})
    assert len(table) == len(merged) - 3 and list(table.columns) == list(COLUMNS)
    by_path = {tuple(p): row for p, row in zip(table["channel_paths"], table.to_dict("records"))}
    # Both have files: the containing source's row stays and takes the label it lacked.
    assert ("20585/a01_s1.tif",) not in by_path
    kept = by_path[("p/a01_1.tif",)]
    assert (kept["compound"], kept["phenotype"]) == ("nocodazole", "tubulin destabilizer")
    assert ("p/a01_2.tif",) in by_path and ("20585/a01_s2.tif",) not in by_path
    # Only the source row has files: it stays; its own label wins, a conflicting one is not merged.
    assert by_path[("20586/c03_s1.tif",)]["compound"] == "brd-k1"
    assert not any(len(p) == 0 for p in table["channel_paths"])
    # Rows without a twin stay untouched.
    assert {("20585/b01_s1.tif",), ("x.tif",), ("q/a01_1.tif",)} <= set(by_path)
    assert report.to_dict("records") == [
        {
            "source": "bbbc022",
            "inside": "idr0016",
            "duplicate_rows": 3,
            "dropped_from_source": 2,
            "dropped_from_inside": 1,
            "labels_carried_over": 1,
        }
    ]
    assert table["idx"].is_unique


def test_no_overlaps_declared_changes_nothing():
    merged = _merged()
    table, report = drop_overlaps(merged, {})
    assert table.equals(merged) and report.empty


def test_dropping_does_not_depend_on_row_order():
    merged = _merged()
    first, _ = drop_overlaps(merged, {"bbbc022": ("idr0016",)})
    second, _ = drop_overlaps(merged.iloc[::-1].reset_index(drop=True), {"bbbc022": ("idr0016",)})
    assert first.sort_values("idx").reset_index(drop=True).equals(second.sort_values("idx").reset_index(drop=True))


def test_an_overlap_declared_on_both_sides_is_handled_once():
    merged = _merged()
    one, one_report = drop_overlaps(merged, {"bbbc022": ("idr0016",)})
    both, both_report = drop_overlaps(merged, {"bbbc022": ("idr0016",), "idr0016": ("bbbc022",)})
    assert both.equals(one) and both_report.equals(one_report)


def test_a_well_annotated_without_files_stands_for_the_fields_shown_elsewhere():
    """idr0016 as parsed before its file layout is known: one metadata-only row per well. BBBC022
    shows that well's fields; the well row goes, its compound reaches every field."""
    bbbc022 = _table(
        "bbbc022",
        [{"plate": "20585", "well": "D04", "field": str(f), "channel_paths": [f"20585/d04_s{f}.tif"]} for f in (1, 2, 3)]
        + [{"plate": "20585", "well": "E05", "field": "1", "channel_paths": ["20585/e05_s1.tif"]}],
    )
    idr0016 = _table(
        "idr0016",
        [
            {"plate": "20585", "well": "D04", "channel_paths": [], "channel_names": [], "compound": "BRD-K0001"},
            {"plate": "20585", "well": "F06", "channel_paths": [], "channel_names": [], "compound": "BRD-K0002"},  # not in BBBC022
        ],
    )
    table, report = drop_overlaps(
        merge_sources({"bbbc022": bbbc022, "idr0016": idr0016}), {"bbbc022": ("idr0016",), "idr0016": ("bbbc022",)}
    )
    assert sorted(table["well"]) == ["D04", "D04", "D04", "E05", "F06"]
    assert table.loc[table["well"] == "D04", "compound"].tolist() == ["brd-k0001"] * 3
    assert table.loc[table["well"] == "E05", "compound"].isna().all()
    assert report[["duplicate_rows", "dropped_from_source", "dropped_from_inside", "labels_carried_over"]].values.tolist() == [[1, 0, 1, 3]]


def test_a_source_without_a_table_is_left_out_and_named(tmp_path):
    catalog = load_catalog("demo")
    home = DataHome(tmp_path)
    present, absent = catalog.pretraining_sources[:2]
    write_parquet(_table(present.dir_name, [{"channel_paths": ["a.tif"], "phenotype": "mitosis"}]), home.source_table(present.dir_name))
    merged = write_merged(home, (present, absent))
    assert merged.table["dir_name"].unique().tolist() == [present.dir_name]
    assert list(merged.missing) == [absent.dir_name] and str(home.source_table(absent.dir_name)) in merged.missing[absent.dir_name]
    assert f"- {absent.dir_name}: no table at" in merged.report()["sources_missing"]
    passed, report = every_source_merged_check(home, (present, absent))
    assert not passed and absent.dir_name in report["sources_missing"]
    assert every_source_merged_check(home, (present,))[0]
    with pytest.raises(NoSourceTables, match=absent.dir_name):
        write_merged(home, (absent,))
