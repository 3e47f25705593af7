"""The demo graph end to end through Dagster, and the failure a missing real source gives."""

import shutil
import sqlite3

import dagster as dg
import pandas as pd
import pytest

from cytoimagenet_assets.catalog import load_catalog
from cytoimagenet_assets.definitions import build_definitions
from cytoimagenet_assets.storage import DataHome


def _materialize(defs, instance, selection=None):
    return dg.materialize(
        [*defs.assets, *defs.asset_checks], resources=defs.resources, instance=instance, selection=selection, raise_on_error=False,
    )


@pytest.fixture(scope="module")
def demo_build(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    defs = build_definitions(load_catalog("demo"), data_home=str(home))
    instance = dg.DagsterInstance.ephemeral()
    result = _materialize(defs, instance)
    return home, defs, instance, result


def test_demo_build_materializes_every_asset_and_passes_every_check(demo_build):
    home, defs, instance, result = demo_build
    assert result.success
    catalog = load_catalog("demo")
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    expected = {dg.AssetKey([kind, s.dir_name]) for s in catalog.sources for kind in ("raw", "source_metadata")}
    expected |= {dg.AssetKey(k) for k in ("merged_metadata", "label_candidates", "cytoimagenet_labels")}
    assert materialized == expected
    evaluations = [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert len(evaluations) == 4 * (len(catalog.sources) + 1) + 1 + 3
    assert [(str(e.asset_key), e.check_name) for e in evaluations if not e.passed] == []


def test_merged_table_holds_every_pretraining_row_and_no_evaluation_row(demo_build):
    home, _, _, _ = demo_build
    data = DataHome(home)
    catalog = load_catalog("demo")
    merged = pd.read_parquet(data.table_path("merged_metadata"))
    sizes = {s.dir_name: len(pd.read_parquet(data.table_path("source_metadata", s.dir_name))) for s in catalog.sources}
    assert len(merged) == sum(n for d, n in sizes.items() if not catalog.source(d).evaluation_only)
    assert "demo_bbbc021" not in set(merged["dir_name"]) and sizes["demo_bbbc021"] > 0
    with sqlite3.connect(home / "catalog.db") as db:
        count, = db.execute("select count(*) from merged_metadata").fetchone()
        sirnas = dict(db.execute("select sirna, count(*) from merged_metadata where sirna is not null group by sirna").fetchall())
    assert count == len(merged)
    assert sirnas == merged["sirna"].value_counts().to_dict()


def test_the_ui_metadata_of_a_table(demo_build):
    _, _, instance, _ = demo_build
    event = instance.get_latest_materialization_event(dg.AssetKey("merged_metadata"))
    metadata = event.asset_materialization.metadata
    assert metadata["dagster/row_count"].value == metadata["sql_rows"].value > 0
    assert {c.name for c in metadata["dagster/column_schema"].schema.columns} >= {"idx", "organism", "sirna", "channel_paths"}
    assert "**sirna**" in metadata["label_counts"].value and "| idx |" in metadata["preview"].value
    assert "demo_hpa" in metadata["images_per_source"].value


def test_a_rerun_gives_identical_tables(demo_build, tmp_path):
    home, _, _, _ = demo_build
    defs = build_definitions(load_catalog("demo"), data_home=str(tmp_path))
    assert _materialize(defs, dg.DagsterInstance.ephemeral()).success
    for path in (home / "tables").rglob("*.parquet"):
        again = tmp_path / path.relative_to(home)
        assert pd.read_parquet(path).equals(pd.read_parquet(again)), path.name


def test_a_missing_real_source_fails_saying_what_to_fetch_from_where(tmp_path):
    defs = build_definitions(load_catalog("cytoimagenet"), data_home=str(tmp_path))
    result = _materialize(defs, dg.DagsterInstance.ephemeral(), selection="raw/rec_rxrx1")
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.event_specific_data.error.message
    assert "https://storage.googleapis.com/rxrx/rxrx1/rxrx1-images.zip" in message
    assert str(tmp_path / "raw" / "rec_rxrx1") in message


def test_a_broken_input_fails_its_source_with_file_and_row(tmp_path):
    catalog = load_catalog("demo")
    defs = build_definitions(catalog, data_home=str(tmp_path))
    instance = dg.DagsterInstance.ephemeral()
    assert _materialize(defs, instance, selection="raw/demo_bbbc021").success
    moa = tmp_path / "raw" / "demo_bbbc021" / "BBBC021_v1_moa.csv"
    moa.write_text(moa.read_text().replace("\r", "\n") + "taxol,a lot,Oops\n")
    result = _materialize(defs, instance, selection="source_metadata/demo_bbbc021")
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "demo_bbbc021: BBBC021_v1_moa.csv data row 18: 'a lot' is not a number" in failure.event_specific_data.error.message


def test_class_table_registers_partitions_and_reports_what_a_refresh_changed(demo_build, tmp_path):
    home, defs, instance, _ = demo_build
    classes = pd.read_parquet(DataHome(home).table_path("cytoimagenet_classes"))
    catalog = load_catalog("demo")
    assert len(classes) > 10 and classes["images"].between(catalog.labels.threshold, catalog.labels.target).all()
    assert sorted(instance.get_dynamic_partitions("cytoimagenet_class")) == sorted(classes["class_key"])
    metadata = instance.get_latest_materialization_event(dg.AssetKey("cytoimagenet_labels")).asset_materialization.metadata
    assert metadata["changes"].value["first_materialization"] is True
    assert metadata["plot_threshold_curve"].value.startswith("![threshold_curve](data:image/png;base64,")
    assert "| sirna | 6 |" in metadata["classes_per_category"].value

    # On a copy (the shared build stays as it is): same inputs again, nothing changed; a higher
    # threshold, small classes removed and the partitions follow.
    copy = tmp_path / "home"
    shutil.copytree(home / "tables", copy / "tables")
    defs = build_definitions(catalog, data_home=str(copy))
    instance = dg.DagsterInstance.ephemeral()
    assert _materialize(defs, instance, selection="cytoimagenet_labels").success
    assert _materialize(defs, instance, selection="cytoimagenet_labels").success
    metadata = instance.get_latest_materialization_event(dg.AssetKey("cytoimagenet_labels")).asset_materialization.metadata
    assert metadata["changes"].value == {"first_materialization": False, "classes_added": 0, "classes_removed": 0, "classes_changed": 0}
    result = dg.materialize(
        [*defs.assets, *defs.asset_checks], resources=defs.resources, instance=instance, selection="cytoimagenet_labels",
        run_config={"ops": {"cytoimagenet_labels": {"config": {"threshold": 55}}}},
    )
    assert result.success
    metadata = instance.get_latest_materialization_event(dg.AssetKey("cytoimagenet_labels")).asset_materialization.metadata
    now = pd.read_parquet(DataHome(copy).table_path("cytoimagenet_classes"))
    assert metadata["changes"].value["classes_removed"] == len(set(classes["class_key"]) - set(now["class_key"])) > 0
    assert sorted(instance.get_dynamic_partitions("cytoimagenet_class")) == sorted(now["class_key"])
