"""The demo graph end to end through Dagster, and the failure a missing real source gives."""

import json
import shutil
import sqlite3

import dagster as dg
import pandas as pd
import pytest
from PIL import Image

from cytoimagenet_assets.build import build_all
from cytoimagenet_assets.catalog import load_catalog
from cytoimagenet_assets.catalog.settings import TrainSettings
from cytoimagenet_assets.definitions import build_definitions
from cytoimagenet_assets.images.readers import read_channels
from cytoimagenet_assets.storage import DataHome

# The demo catalog with a token training schedule: these tests are about the graph, not the model.
DEMO = load_catalog("demo").model_copy(update={"training": TrainSettings(epochs=1, batch_size=16, input_size=32)})


def _materialize(defs, instance, selection=None, **kwargs):
    return dg.materialize(
        [*defs.assets, *defs.asset_checks],
        resources=defs.resources,
        instance=instance,
        selection=selection,
        raise_on_error=False,
        **kwargs,
    )


@pytest.fixture(scope="module")
def demo_build(tmp_path_factory):
    """The whole demo graph, built the way `make demo` does: tables, one run per class, the dataset."""
    home = tmp_path_factory.mktemp("home")
    defs = build_definitions(DEMO, data_home=str(home))
    instance = dg.DagsterInstance.ephemeral()
    assert build_all(defs, instance, log=lambda _: None).ok
    runs = instance.get_runs()
    return home, defs, instance, runs


def test_demo_build_materializes_every_asset_and_passes_every_check(demo_build):
    home, defs, instance, runs = demo_build
    catalog = DEMO
    partitions = instance.get_dynamic_partitions("cytoimagenet_class")
    assert len(runs) == 2 + len(partitions) + 1  # sources, tables, one run per class, then the dataset and the model
    assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
    expected = {dg.AssetKey(["raw", s.dir_name]) for s in catalog.sources}
    expected |= {dg.AssetKey(["source_metadata", s.dir_name]) for s in catalog.sources if s.parser is not None}
    expected |= {
        dg.AssetKey(k)
        for k in (
            "merged_metadata",
            "label_candidates",
            "cytoimagenet_labels",
            "class_images",
            "cytoimagenet_dataset",
            "training_shards",
            "pretrained_model",
            "evaluation_report",
            "upsampling_umap",
            "dataset_shards",
            "model_package",
            "embeddings",
        )
    }
    assert {k for k in expected if instance.get_latest_materialization_event(k) is None} == set()
    materialized = instance.get_materialized_partitions(dg.AssetKey("class_images"))
    assert materialized == set(partitions)
    evaluations = [
        e.asset_check_evaluation for run in runs for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    ]
    parsed = [s for s in catalog.sources if s.parser is not None]  # the HDF5 evaluation sets have no table, no checks
    # 4 per table, the merged table's leak and every-source checks, 3 on the class table, one per class folder,
    # the dataset's and the model's
    assert len(evaluations) == 4 * (len(parsed) + 1) + 2 + 3 + len(partitions) + 2
    assert [(str(e.asset_key), e.check_name) for e in evaluations if not e.passed] == []


def test_merged_table_holds_every_pretraining_row_and_no_evaluation_row(demo_build):
    home, _, _, _ = demo_build
    data = DataHome(home)
    catalog = DEMO
    merged = pd.read_parquet(data.table_path("merged_metadata"))
    sizes = {s.dir_name: len(pd.read_parquet(data.table_path("source_metadata", s.dir_name))) for s in catalog.sources if s.parser}
    assert len(merged) == sum(n for d, n in sizes.items() if not catalog.source(d).evaluation_only)
    assert "demo_bbbc021" not in set(merged["dir_name"]) and sizes["demo_bbbc021"] > 0
    with sqlite3.connect(home / "catalog.db") as db:
        (count,) = db.execute("select count(*) from merged_metadata").fetchone()
        sirnas = dict(db.execute("select sirna, count(*) from merged_metadata where sirna is not null group by sirna").fetchall())
        (first_paths,) = db.execute("select channel_paths from merged_metadata where idx = ?", (merged["idx"][0],)).fetchone()
    assert json.loads(first_paths) == list(merged["channel_paths"][0])
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


def test_a_rerun_gives_identical_tables_and_images(demo_build, tmp_path):
    home, _, _, _ = demo_build
    defs = build_definitions(DEMO, data_home=str(tmp_path))
    assert build_all(defs, dg.DagsterInstance.ephemeral(), log=lambda _: None).ok
    for path in (home / "tables").rglob("*.parquet"):
        again = tmp_path / path.relative_to(home)
        assert pd.read_parquet(path).equals(pd.read_parquet(again)), path.name
    for path in (home / "dataset").rglob("*"):
        if path.is_file():
            assert path.read_bytes() == (tmp_path / path.relative_to(home)).read_bytes(), path


def test_a_real_source_that_cannot_be_fetched_fails_saying_what_to_fetch_from_where(tmp_path, remote):
    """The download's error (here a 404 from the loopback server) and how to provide the files by hand."""
    real = load_catalog("cytoimagenet")
    rxrx1 = real.source("rec_rxrx1")
    moved = [f.model_copy(update={"url": f"{remote.base}/rxrx/{f.url.rsplit('/', 1)[-1]}"}) for f in rxrx1.download.files]
    source = rxrx1.model_copy(update={"download": rxrx1.download.model_copy(update={"files": tuple(moved)})})
    catalog = real.model_copy(update={"sources": (source,)})
    defs = build_definitions(catalog, data_home=str(tmp_path))
    result = _materialize(defs, dg.DagsterInstance.ephemeral(), selection="raw/rec_rxrx1")
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.event_specific_data.error.message
    assert f"rec_rxrx1: {remote.base}/rxrx/rxrx1-metadata.zip returned 404" in message
    assert f"To provide rec_rxrx1 by hand instead: download {remote.base}/rxrx/rxrx1-images.zip" in message
    assert str(tmp_path / "raw" / "rec_rxrx1") in message


def test_a_broken_input_fails_its_source_with_file_and_row(tmp_path):
    catalog = DEMO
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
    catalog = DEMO
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
    (copy / "raw").symlink_to(home / "raw")  # labels count only rows whose files can be read
    defs = build_definitions(catalog, data_home=str(copy))
    instance = dg.DagsterInstance.ephemeral()
    assert _materialize(defs, instance, selection="cytoimagenet_labels").success
    assert _materialize(defs, instance, selection="cytoimagenet_labels").success
    metadata = instance.get_latest_materialization_event(dg.AssetKey("cytoimagenet_labels")).asset_materialization.metadata
    assert metadata["changes"].value == {"first_materialization": False, "classes_added": 0, "classes_removed": 0, "classes_changed": 0}
    result = dg.materialize(
        [*defs.assets, *defs.asset_checks],
        resources=defs.resources,
        instance=instance,
        selection="cytoimagenet_labels",
        run_config={"ops": {"cytoimagenet_labels": {"config": {"threshold": 55}}}},
    )
    assert result.success
    metadata = instance.get_latest_materialization_event(dg.AssetKey("cytoimagenet_labels")).asset_materialization.metadata
    now = pd.read_parquet(DataHome(copy).table_path("cytoimagenet_classes"))
    assert metadata["changes"].value["classes_removed"] == len(set(classes["class_key"]) - set(now["class_key"])) > 0
    assert sorted(instance.get_dynamic_partitions("cytoimagenet_class")) == sorted(now["class_key"])


def test_the_dataset_and_a_class_partitions_metadata(demo_build):
    home, _, instance, _ = demo_build
    dataset = pd.read_csv(home / "dataset" / "metadata.csv")
    classes = pd.read_parquet(DataHome(home).table_path("cytoimagenet_classes"))
    assert set(dataset["path"]) == set(classes["class_key"])
    assert all((home / "dataset" / p / f).is_file() for p, f in zip(dataset["path"], dataset["filename"]))
    assert "# CytoImageNet-style dataset (catalog: demo)" in (home / "dataset" / "README.md").read_text()
    with sqlite3.connect(home / "catalog.db") as db:
        assert db.execute("select count(*) from images").fetchone()[0] == len(dataset)
    key = classes["class_key"].iloc[0]
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("class_images"), asset_partitions=[key]), limit=1
    ).records
    metadata = records[0].asset_materialization.metadata
    assert metadata["images"].value == int((dataset["path"] == key).sum())
    assert metadata["fingerprint"].value == classes.set_index("class_key").loc[key, "fingerprint"]
    assert metadata["samples"].value.startswith(f"![{key} samples](data:image/jpeg;base64,")
    assert len(metadata["samples"].value) < 20_000  # a preview: every class's materialization is in the event log
    assert Image.open(metadata["samples_grid"].value).size == (480, 480)


def test_a_class_whose_raw_files_are_missing_fails_alone(demo_build, tmp_path):
    home, _, _, _ = demo_build
    copy = tmp_path / "home"
    shutil.copytree(home / "tables", copy / "tables")
    shutil.copytree(home / "raw", copy / "raw")
    classes = pd.read_parquet(DataHome(copy).table_path("cytoimagenet_classes"))
    leukemia = classes[classes["source_datasets"] == "demo_leukemia"]["class_key"].tolist()
    others = classes[classes["source_datasets"] == "demo_rxrx1"]["class_key"].tolist()[:2]
    shutil.rmtree(copy / "raw" / "demo_leukemia" / "C-NMC_Leukemia" / "training_data")
    defs = build_definitions(DEMO, data_home=str(copy))
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("cytoimagenet_class", leukemia + others)
    results = {k: _materialize(defs, instance, selection="class_images", partition_key=k) for k in leukemia + others}
    assert [k for k, r in results.items() if not r.success] == leukemia
    failure = next(e for e in results[leukemia[0]].all_events if e.event_type_value == "STEP_FAILURE")
    assert "only 0 usable images of 60 rows" in failure.event_specific_data.error.message
    assert "no such file" in failure.event_specific_data.error.message
    assert not (copy / "dataset" / leukemia[0]).exists() and (copy / "dataset" / others[0]).is_dir()


def test_the_sensor_follows_the_class_table(demo_build, tmp_path):
    from dagster._core.test_utils import create_run_for_test

    from cytoimagenet_assets.defs.images import class_partitions_sensor
    from cytoimagenet_assets.defs.resources import DataHomeResource

    home, _, instance, _ = demo_build
    data = DataHomeResource(root=str(home))
    # After the headless build every class is built with its current fingerprint: nothing to run.
    result = class_partitions_sensor(dg.build_sensor_context(instance=instance, resources={"data": data}))
    assert result.run_requests == [] and result.dynamic_partitions_requests == []
    # One class's membership changes, one class vanishes, a new one appears.
    copy = tmp_path / "home"
    shutil.copytree(home / "tables", copy / "tables")
    (copy / "raw").symlink_to(home / "raw")  # labels count only rows whose files can be read
    path = DataHome(copy).table_path("cytoimagenet_classes")
    classes = pd.read_parquet(path)
    classes.loc[0, "fingerprint"] = "changed"
    classes.loc[1, "class_key"] = "phenotype-new-class-0123456789"
    classes.to_parquet(path)
    # A third class changed too, but a run of it is already in progress (a UI backfill's): the sensor leaves it to that run.
    classes.loc[2, "fingerprint"] = "changed too"
    classes.to_parquet(path)
    in_progress = create_run_for_test(
        instance,
        job_name="__ASSET_JOB",
        status=dg.DagsterRunStatus.STARTED,
        tags={"dagster/partition": classes.loc[2, "class_key"]},
        asset_selection=frozenset({dg.AssetKey("class_images")}),
    )
    result = class_partitions_sensor(
        dg.build_sensor_context(instance=instance, cursor=None, resources={"data": DataHomeResource(root=str(copy))})
    )
    instance.delete_run(in_progress.run_id)
    requested = sorted(r.partition_key for r in result.run_requests)
    assert requested == sorted([classes.loc[0, "class_key"], "phenotype-new-class-0123456789"])
    adds = [r for r in result.dynamic_partitions_requests if isinstance(r, dg.AddDynamicPartitionsRequest)]
    deletes = [r for r in result.dynamic_partitions_requests if isinstance(r, dg.DeleteDynamicPartitionsRequest)]
    assert adds[0].partition_keys == ["phenotype-new-class-0123456789"]
    assert len(deletes[0].partition_keys) == 1 and deletes[0].partition_keys[0] != classes.loc[0, "class_key"]
    # The next tick, with the cursor, requests nothing more.
    again = class_partitions_sensor(
        dg.build_sensor_context(instance=instance, cursor=result.cursor, resources={"data": DataHomeResource(root=str(copy))})
    )
    assert again.run_requests == []


def test_the_model_trained_on_the_dataset_and_shows_its_history(demo_build):
    home, _, instance, _ = demo_build
    metadata = instance.get_latest_materialization_event(dg.AssetKey("pretrained_model")).asset_materialization.metadata
    folder = home / "models" / metadata["run"].value
    card = (folder / "model_card.json").read_text()
    classes = pd.read_parquet(DataHome(home).table_path("cytoimagenet_classes"))
    assert all(key in card for key in classes["class_key"])
    assert metadata["epochs"].value == 1 and "val_top1" in metadata
    assert metadata["curves"].value.startswith("![training curves](data:image/png;base64,")
    shards = instance.get_latest_materialization_event(dg.AssetKey("training_shards")).asset_materialization.metadata
    assert shards["images"].value == len(pd.read_csv(home / "dataset" / "metadata.csv"))


def test_the_evaluation_runs_offline_on_the_demo(demo_build):
    home, _, instance, _ = demo_build
    metadata = instance.get_latest_materialization_event(dg.AssetKey("evaluation_report")).asset_materialization.metadata
    results = pd.read_csv(home / "reports" / "evaluation" / "evaluation_report.csv", keep_default_na=False)
    assert set(results["backbone"]) == {"random", "cytoimagenet"}
    assert set(results["benchmark"]) == {
        "BBBC021 NSC",
        "BBBC021 NSCB",
        "COOS-7 test1",
        "COOS-7 test2",
        "COOS-7 test3",
        "COOS-7 test4",
        "CyCLoPs",
    }
    assert set(results["method"]) == {"concat_normalized", "concat_raw", "merge_normalized", "merge_raw", "bag_of_channels"}
    bbbc021 = results[results["benchmark"].str.startswith("BBBC021")]
    assert set(zip(bbbc021["benchmark"], bbbc021["variant"])) == {(b, v) for b in ("BBBC021 NSC", "BBBC021 NSCB") for v in ("raw", "TVN")}
    assert (bbbc021["n"] == 16).all() and (bbbc021["interval"] == "bootstrap").all()  # every demo MOA spans batches: NSCB scores all 16
    others = results[~results["benchmark"].str.startswith("BBBC021")]
    assert (others["interval"] == "wilson").all() and (others.loc[others["benchmark"] == "COOS-7 test1", "n"] == 42).all()
    assert (others.loc[others["benchmark"] == "CyCLoPs", "n"] == 81).all()  # 87 cells, 3 DEAD and 3 GHOST dropped
    assert len(results) == 2 * 5 * (4 + 4 + 1)  # backbones × methods × (BBBC021 NSC/NSCB raw/TVN, COOS-7 × 4, CyCLoPs)
    assert results["accuracy"].between(0, 1).all() and (results["low"] <= results["accuracy"]).all()
    assert "imagenet" in metadata["unavailable_backbones"].value and "fusion" in metadata["unavailable_backbones"].value
    assert metadata["skipped_benchmarks"].value == {}
    report = metadata["report"].value
    assert "| BBBC021 NSC |" in report and "| BBBC021 NSC (TVN) |" in report and "| CyCLoPs |" in report
    assert "chosen on the test data itself" in report and "5 classes after dropping DEAD and GHOST" in report
    assert "NSCB scores the 16 whose MOA occurs in more than one batch" in report


def test_upsampling_umap_compares_classes_before_and_after_crops(demo_build):
    _, _, instance, _ = demo_build
    metadata = instance.get_latest_materialization_event(dg.AssetKey("upsampling_umap")).asset_materialization.metadata
    assert metadata["classes"].value == 20 and metadata["backbone"].value == "cytoimagenet"  # offline: no ImageNet weights
    assert "ImageNet weights unavailable" in metadata["note"].value
    assert metadata["umap"].value.startswith("![before and after upsampling](data:image/png;base64,")


def test_the_demo_dataset_is_upsampled_as_the_original_and_trains_without_a_validation_leak(demo_build):
    home, _, instance, _ = demo_build
    data = DataHome(home)
    metadata = pd.read_csv(data.dataset_dir() / "metadata.csv")
    labels = DEMO.labels
    sizes = metadata.groupby("path").size()
    assert sizes.between(labels.threshold, labels.target).all()
    crops = metadata[metadata["crop"]]
    assert set(crops["scaling"]) <= {0.5, 0.25, 0.125, 0.0625}
    merged = pd.read_parquet(data.table_path("merged_metadata"), columns=["dir_name", "channel_paths"]).drop_duplicates("dir_name")
    side = {d: min(read_channels(data.raw_dir(d) / paths[0])[0].shape) for d, paths in zip(merged["dir_name"], merged["channel_paths"])}
    large = metadata[metadata["dir_name"].map(side) >= 140]
    assert len(large) > 0.5 * len(metadata) and large["crop"].mean() >= 0.9
    event = instance.get_latest_materialization_event(dg.AssetKey("pretrained_model"))
    assert event.asset_materialization.metadata["val_images_sharing_source_with_train"].value == 0
    dataset = instance.get_latest_materialization_event(dg.AssetKey("cytoimagenet_dataset")).asset_materialization.metadata
    assert dataset["crop_share"].value == round(float(metadata["crop"].mean()), 4)
