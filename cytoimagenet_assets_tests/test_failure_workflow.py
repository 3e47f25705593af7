"""When a class fails: its partition of class_images turns FAILED with the reason, and once its input
is repaired, ``python -m cytoimagenet_assets.build --failed-and-missing`` reruns that class
(and any class never built) — one run per partition — and nothing else.

Runs against a real instance in a temporary DAGSTER_HOME (the repository's dagster.yaml) and a
temporary CYTOIMAGENET_HOME, on the demo catalog: the raw files are the session's generated demo
sources (conftest's ``demo_raw``), and only the tables and the classes are built — no training.
"""

import contextlib
import shutil
from pathlib import Path

import dagster as dg
import pandas as pd

from cytoimagenet_assets.build import main
from cytoimagenet_assets.catalog import load_catalog
from cytoimagenet_assets.definitions import build_definitions
from cytoimagenet_assets.defs.class_partitions import failed_and_missing_classes
from cytoimagenet_assets.storage import DataHome

REPO = Path(__file__).resolve().parents[1]
CLASS_IMAGES = dg.AssetKey("class_images")
CLASS_PARTITIONS = dg.DynamicPartitionsDefinition(name="cytoimagenet_class")


def materialize(defs, instance, selection, **kwargs) -> bool:
    return dg.materialize(
        [*defs.assets, *defs.asset_checks], resources=defs.resources, instance=instance, selection=selection, raise_on_error=False, **kwargs
    ).success


def build_tables(defs, instance, home: Path, demo_raw: Path) -> None:
    """The demo's raw files (copied from ``demo_raw``, the same files the raw/ assets generate), then
    every table up to the class table and its partitions in one run."""
    shutil.copytree(demo_raw, home / "raw")
    images = dg.AssetSelection.assets(CLASS_IMAGES)
    tables = dg.AssetSelection.all() - images - (images.downstream() - images) - dg.AssetSelection.key_prefixes("raw")
    assert materialize(defs, instance, tables)


def build_classes(defs, instance, keys) -> dict[str, bool]:
    """One run per class partition, as the sensor and the headless build launch them."""
    return {
        k: materialize(defs, instance, [CLASS_IMAGES], partition_key=k, run_config={"ops": {"class_images": {"config": {"workers": 1}}}})
        for k in keys
    }


def class_files(home: Path, class_key: str) -> dict[str, set[Path]]:
    """The raw files each class draws from (its rows of the merged table, every channel)."""
    data = DataHome(home)
    labels = pd.read_parquet(data.table_path("cytoimagenet_labels"), columns=["idx", "class_key"])
    merged = pd.read_parquet(data.table_path("merged_metadata"), columns=["idx", "dir_name", "channel_paths"])
    rows = labels.merge(merged, on="idx")
    files: dict[str, set[Path]] = {}
    for key, dir_name, paths in rows[["class_key", "dir_name", "channel_paths"]].itertuples(index=False):
        files.setdefault(key, set()).update(data.raw_dir(dir_name) / p for p in paths)
    return files


def break_class_input(home: Path, class_key: str, aside: Path) -> tuple[set[str], list[Path]]:
    """Move the raw files ``class_key`` draws from to ``aside``: its input is gone, nothing else is
    touched. Returns the classes that draw on any of those files (those that should fail) and the
    moved files, for :func:`restore_input`."""
    files = class_files(home, class_key)
    broken = files[class_key]
    assert broken and all(f.is_file() for f in broken)
    for f in broken:
        target = aside / f.relative_to(home)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(f, target)
    return {k for k, fs in files.items() if fs & broken}, sorted(broken)


def restore_input(home: Path, aside: Path) -> None:
    for f in [p for p in aside.rglob("*") if p.is_file()]:
        shutil.move(f, home / f.relative_to(aside))


def runs_per_partition(instance, keys) -> dict[str, int]:
    return {k: len(instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": k}))) for k in keys}


def failure_message(instance, class_key: str) -> str:
    """The error of the latest run of ``class_key``'s partition (what its run page shows)."""
    (run,) = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": class_key}), limit=1)
    assert run.status == dg.DagsterRunStatus.FAILURE
    failures = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    return "\n".join(e.dagster_event.event_specific_data.error.message for e in failures)


def test_a_failed_class_shows_its_reason_and_failed_and_missing_reruns_only_it(homes, demo_raw, tmp_path):
    _, home = homes
    defs = build_definitions(load_catalog("demo"), data_home=str(home))
    with dg.DagsterInstance.get() as instance:
        build_tables(defs, instance, home, demo_raw)
        keys = instance.get_dynamic_partitions("cytoimagenet_class")
        assert len(keys) > 5
        victim, never_built = keys[0], keys[-1]  # never_built: a class whose run was never launched ("missing")
        built = [k for k in keys if k != never_built]
        assert all(build_classes(defs, instance, built).values())

        # The victim's raw files disappear; only the classes drawing on them may fail, and the others rebuild fine.
        dependents, moved = break_class_input(home, victim, tmp_path / "aside")
        assert dependents == {victim}
        results = build_classes(defs, instance, built)
        assert {k for k, ok in results.items() if not ok} == {victim}

        status = instance.get_status_by_partition(CLASS_IMAGES, keys, CLASS_PARTITIONS)
        assert status[victim] == dg.AssetPartitionStatus.FAILED  # though it was built before: its latest attempt failed
        assert status[never_built] is None
        assert {status[k] for k in built if k != victim} == {dg.AssetPartitionStatus.MATERIALIZED}
        message = failure_message(instance, victim)
        assert f"class {victim}" in message and "usable images" in message
        assert "no such file" in message.lower() and any(f.name in message for f in moved)
        assert (home / "dataset" / victim / "metadata.csv").is_file()  # its previous build stays in place
        assert failed_and_missing_classes(instance) == [victim, never_built]
        before = runs_per_partition(instance, keys)

    # The input is repaired; the CLI reruns the failed and the missing class, one run each, nothing else.
    restore_input(home, tmp_path / "aside")
    assert main(["--failed-and-missing"]) == 0

    with dg.DagsterInstance.get() as instance:
        after = runs_per_partition(instance, keys)
        assert {k: after[k] - before[k] for k in keys if after[k] != before[k]} == {victim: 1, never_built: 1}
        assert instance.get_materialized_partitions(CLASS_IMAGES) == set(keys)
        status = instance.get_status_by_partition(CLASS_IMAGES, keys, CLASS_PARTITIONS)
        assert set(status.values()) == {dg.AssetPartitionStatus.MATERIALIZED}
        assert failed_and_missing_classes(instance) == []
        assert (home / "dataset" / victim / "metadata.csv").is_file()
    assert main(["--failed-and-missing"]) == 0  # nothing left to do: no new run
    with dg.DagsterInstance.get() as instance:
        assert runs_per_partition(instance, keys) == after


TOY_CLASS_IMAGES = """
import os, time
import dagster as dg
from cytoimagenet_assets.defs.keys import CLASS_IMAGES_KEY
from cytoimagenet_assets.defs.keys import CLASS_PARTITIONS

@dg.asset(key=CLASS_IMAGES_KEY, partitions_def=CLASS_PARTITIONS, pool="io")  # as the real one: a killed run holds its slot
def class_images(context):
    if os.environ.get("TOY_HANG"):
        print("running", flush=True)
        time.sleep(120)
    return None

toy_defs = dg.Definitions(assets=[class_images], jobs=[dg.define_asset_job("class_images_job", [CLASS_IMAGES_KEY])], resources={})
"""

KILLED_RUN = (
    TOY_CLASS_IMAGES
    + """
from cytoimagenet_assets.build import _execute
with dg.DagsterInstance.get() as instance:
    _execute(toy_defs, instance, "class_images_job", partition_key="killed")
"""
)


def test_a_class_whose_run_was_killed_by_the_os_is_rebuilt_by_failed_and_missing(homes, monkeypatch):
    """A class run killed by the OS (SIGKILL mid-step, as the OOM killer does) stays STARTED in the
    instance; --failed-and-missing marks it failed (its process is gone) and rebuilds it, instead of
    skipping it as in progress and exiting 0 without it. A toy class_images asset keeps this fast."""
    import os
    import signal
    import subprocess
    import sys

    from cytoimagenet_assets.build import rebuild_failed_and_missing

    namespace: dict = {}
    exec(TOY_CLASS_IMAGES, namespace)
    toy_defs = namespace["toy_defs"]
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("cytoimagenet_class", ["killed", "built"])
        assert dg.materialize([namespace["class_images"]], instance=instance, partition_key="built").success
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN], stdout=subprocess.PIPE, text=True, env={**os.environ, "TOY_HANG": "1"}, start_new_session=True
    )
    try:
        assert child.stdout.readline().strip() == "running"
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        with dg.DagsterInstance.get() as instance:
            (run,) = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": "killed"}))
            assert run.status == dg.DagsterRunStatus.STARTED  # what the OS kill leaves behind, holding its "io" pool slot
            assert rebuild_failed_and_missing(toy_defs, instance, log=lambda _: None)
            assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
            assert instance.get_materialized_partitions(CLASS_IMAGES) == {"killed", "built"}
            assert runs_per_partition(instance, ["killed", "built"]) == {"killed": 2, "built": 1}
    finally:  # the killed run's log tailers (Dagster's `tail -F`) outlive it: stop them with its session
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
