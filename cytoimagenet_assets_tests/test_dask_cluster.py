"""Class runs on a real Dask cluster: a scheduler and two worker processes on 127.0.0.1, started and
stopped here. ``CYTOIMAGENET_DASK`` sends the build's class runs to them; a worker killed during a
class costs that class one failed run (named as such) and one rebuild on the other worker, with the
same bytes as a build in one process. A worker that cannot reach the data home or the instance says so.
"""

import hashlib
import threading
import time
from pathlib import Path

import dagster as dg
import pytest

from cytoimagenet_assets import cluster
from cytoimagenet_assets.build import LAUNCHED_BY, _execute, main, run_process
from cytoimagenet_assets.catalog import load_catalog
from cytoimagenet_assets.definitions import build_definitions
from cytoimagenet_assets.rehearsal.dask_cluster import LocalDaskCluster
from cytoimagenet_assets_tests.test_failure_workflow import CLASS_IMAGES, build_tables, runs_per_partition


def folder_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def run_failure_message(instance, run_id: str) -> str:
    return "\n".join(r.message for r in instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE))


def kill_the_worker_of_the_first_class_run(dask: LocalDaskCluster, killed: dict) -> None:
    """As soon as a class run has started on a worker, SIGKILL that worker (its run's process dies with it)."""
    deadline = time.monotonic() + 300
    with dg.DagsterInstance.get() as instance:
        while time.monotonic() < deadline:
            for run in instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED], tags=LAUNCHED_BY)):
                if cluster.TASK_TAG in run.tags and "dagster/partition" in run.tags:
                    killed["run_id"], killed["class"] = run.run_id, run.tags["dagster/partition"]
                    killed["worker"] = dask.kill_worker_running(run_process(run)[1])
                    return
            time.sleep(0.05)


def test_classes_build_on_two_dask_workers_and_a_killed_worker_costs_one_rerun(homes, demo_raw, tmp_path, monkeypatch):
    _, home = homes
    defs = build_definitions(load_catalog("demo"), data_home=str(home))
    with dg.DagsterInstance.get() as instance:
        build_tables(defs, instance, home, demo_raw)
        instance.event_log_storage.set_concurrency_slots("io", 2)  # as `make setup`: two class runs at a time
        keys = instance.get_dynamic_partitions("cytoimagenet_class")

    killed: dict = {}
    with LocalDaskCluster(tmp_path / "dask", workers=2) as dask:
        monkeypatch.setenv(cluster.DASK_ENV, dask.address)
        killer = threading.Thread(target=kill_the_worker_of_the_first_class_run, args=(dask, killed))
        killer.start()
        assert main(["--failed-and-missing"]) == 0  # every class is missing: all go to the cluster
        killer.join()
        assert killed, "no class run was seen running on a worker"
        assert killed["worker"].returncode == -9 and sum(w.poll() is None for w in dask.workers) == 1

    monkeypatch.delenv(cluster.DASK_ENV)
    with dg.DagsterInstance.get() as instance:
        assert instance.get_materialized_partitions(CLASS_IMAGES) == set(keys)
        dead = instance.get_run_by_id(killed["run_id"])
        assert dead.status == dg.DagsterRunStatus.FAILURE
        # Said by the class's next attempt on the other worker, or (both workers share this host) by a run
        # starting there that found the dead run's process gone first.
        message = run_failure_message(instance, dead.run_id)
        assert "Dask worker running this run died" in message or f"pid {run_process(dead)[1]} on" in message and "is gone" in message
        victim = killed["class"]
        assert runs_per_partition(instance, keys) == {k: 2 if k == victim else 1 for k in keys}
        class_runs = instance.get_runs(filters=dg.RunsFilter(tags=LAUNCHED_BY))
        assert all(cluster.TASK_TAG in run.tags for run in class_runs if "dagster/partition" in run.tags)  # each ran on a worker
        assert not instance.event_log_storage.get_concurrency_info("io").claimed_slots  # the dead run's slot was freed
        rebuilt = folder_digest(home / "dataset" / victim)
        # the same class built here, in one process: the same bytes
        assert _execute(defs, instance, "class_images_job", victim, log=lambda _: None).success
    assert folder_digest(home / "dataset" / victim) == rebuilt


def test_a_worker_without_the_data_home_or_the_instance_says_which(tmp_path):
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    with pytest.raises(cluster.WorkerNotReady, match=r"the data home /nowhere/cytoimagenet is not mounted here"):
        cluster.check_worker({"CYTOIMAGENET_HOME": "/nowhere/cytoimagenet", "DAGSTER_HOME": str(dagster_home)})
    (tmp_path / "data").mkdir()
    with pytest.raises(cluster.WorkerNotReady, match=r"has no dagster.yaml here"):
        cluster.check_worker({"CYTOIMAGENET_HOME": str(tmp_path / "data"), "DAGSTER_HOME": str(dagster_home)})
    (dagster_home / "dagster.yaml").write_text("storage:\n  postgres:\n    postgres_url: postgresql://nobody@127.0.0.1:1/none\n")
    with pytest.raises(cluster.WorkerNotReady, match=r"the Dagster instance at DAGSTER_HOME=.* is not reachable"):
        cluster.check_worker({"CYTOIMAGENET_HOME": str(tmp_path / "data"), "DAGSTER_HOME": str(dagster_home)})


def test_no_scheduler_at_the_address_says_so():
    from cytoimagenet_assets.rehearsal.dagster_servers import free_port

    address = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(cluster.ClusterUnavailable, match=rf"CYTOIMAGENET_DASK={address}: no Dask scheduler answers there"):
        cluster.connect(address, timeout=2)
