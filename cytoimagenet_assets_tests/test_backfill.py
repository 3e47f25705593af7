"""A backfill of every class partition, launched as the UI launches it (GraphQL's launchPartitionBackfill
with all partitions) and run by ``dagster-daemon``: on the one-machine instance (SQLite, local run
processes), and on PostgreSQL with the runs sent to a Dask cluster (two workers on 127.0.0.1).
One class has its input broken: it fails alone, shows as failed, and a second backfill of the
"failed and missing" partitions rebuilds it once its input is back. Every other class is built once.
"""

import shutil
import subprocess
import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.execution.backfill import BulkActionStatus

from cytoimagenet_assets import cluster
from cytoimagenet_assets.catalog import load_catalog
from cytoimagenet_assets.definitions import build_definitions
from cytoimagenet_assets.defs.class_partitions import failed_and_missing_classes
from cytoimagenet_assets.rehearsal.dagster_servers import free_port, launch_backfill, start, stop, stop_sensor, wait_until_serving
from cytoimagenet_assets.rehearsal.dask_cluster import LocalDaskCluster
from cytoimagenet_assets_tests.test_failure_workflow import CLASS_IMAGES, break_class_input, build_tables, restore_input, runs_per_partition

REPO = Path(__file__).resolve().parents[1]
FINISHED = {BulkActionStatus.COMPLETED_SUCCESS, BulkActionStatus.COMPLETED_FAILED, BulkActionStatus.FAILED}


def wait_for_backfill(backfill_id: str, daemon: subprocess.Popen, log: Path, timeout: float = 600) -> BulkActionStatus:
    deadline = time.monotonic() + timeout
    with dg.DagsterInstance.get() as instance:
        while time.monotonic() < deadline:
            assert daemon.poll() is None, log.read_text()[-3000:]
            backfill = instance.get_backfill(backfill_id)
            unfinished = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id}, statuses=cluster.UNFINISHED))
            queued = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id}, statuses=[dg.DagsterRunStatus.QUEUED]))
            if backfill.status in FINISHED and not unfinished and not queued:
                return backfill.status
            time.sleep(2)
    pytest.fail(f"backfill {backfill_id} still {backfill.status} after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def postgres_instance(postgres_server, homes, monkeypatch):
    """The instance of ``homes`` on the PostgreSQL profile (deploy/postgres), on a server started here."""
    for name, value in postgres_server.items():
        monkeypatch.setenv(name, value)
    shutil.copy(REPO / "deploy" / "postgres" / "dagster.yaml", homes[0] / "dagster.yaml")
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"


@pytest.fixture
def demo_instance(homes, demo_raw, tmp_path):
    """The demo's tables built headless on the instance of ``homes``, one class's input broken."""
    _, home = homes
    defs = build_definitions(load_catalog("demo"), data_home=str(home))
    with dg.DagsterInstance.get() as instance:
        build_tables(defs, instance, home, demo_raw)
        instance.event_log_storage.set_concurrency_slots("io", 2)
        instance.event_log_storage.set_concurrency_slots("gpu", 1)
        keys = instance.get_dynamic_partitions("cytoimagenet_class")
    victim = keys[len(keys) // 2]
    dependents, _ = break_class_input(home, victim, tmp_path / "aside")
    assert dependents == {victim}
    return home, keys, victim


def backfill_every_class(home: Path, keys: list[str], victim: str, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    web_log, daemon_log = tmp_path / "webserver.log", tmp_path / "daemon.log"
    webserver = start(["dagster-webserver", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)], REPO, web_log)
    daemon = None
    try:
        wait_until_serving(url, webserver, web_log)
        # The class sensor would launch every class by itself (none is built yet): off, so that only the backfill builds them.
        stop_sensor(url, "class_partitions_sensor")
        first = launch_backfill(url, ["class_images"], title="every class")
        daemon = start(["dagster-daemon", "run", "-w", "workspace.yaml"], REPO, daemon_log)
        assert wait_for_backfill(first, daemon, daemon_log) == BulkActionStatus.COMPLETED_FAILED
        with dg.DagsterInstance.get() as instance:
            assert runs_per_partition(instance, keys) == {k: 1 for k in keys}  # every class once, none stuck or twice
            assert instance.get_materialized_partitions(CLASS_IMAGES) == set(keys) - {victim}
            assert failed_and_missing_classes(instance) == [victim]  # what the partitions view shows as failed

        restore_input(home, tmp_path / "aside")
        with dg.DagsterInstance.get() as instance:
            second = launch_backfill(url, ["class_images"], failed_and_missing_classes(instance), "failed and missing")
        assert wait_for_backfill(second, daemon, daemon_log) == BulkActionStatus.COMPLETED_SUCCESS
        with dg.DagsterInstance.get() as instance:
            assert instance.get_materialized_partitions(CLASS_IMAGES) == set(keys)
            assert runs_per_partition(instance, keys) == {k: 2 if k == victim else 1 for k in keys}
    finally:
        for process in (daemon, webserver):
            if process is not None:
                stop(process)
    logs = web_log.read_text() + daemon_log.read_text()
    assert "database is locked" not in logs


def test_a_backfill_of_every_class_through_the_daemon_on_the_one_machine_instance(demo_instance, tmp_path, monkeypatch):
    monkeypatch.delenv(cluster.DASK_ENV, raising=False)
    backfill_every_class(*demo_instance, tmp_path)


def test_a_backfill_of_every_class_through_the_daemon_on_postgres_and_dask(postgres_instance, demo_instance, tmp_path, monkeypatch):
    with LocalDaskCluster(tmp_path / "dask", workers=2) as dask:
        monkeypatch.setenv(cluster.DASK_ENV, dask.address)
        backfill_every_class(*demo_instance, tmp_path)
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": demo_instance[2]}))
        assert all(cluster.TASK_TAG in run.tags for run in runs)  # sent to the cluster by the run launcher
