"""The instance profiles under deploy/ work: the PostgreSQL one against a real server started here.

The server is Debian's ``postgresql`` package (installed by .ci/run), run from a throwaway data
folder on a free port; as root it runs as the ``postgres`` user, which PostgreSQL insists on.
"""

import shutil
from pathlib import Path

import dagster as dg
import pytest
import yaml

from cytoimagenet_assets.catalog import load_catalog
from cytoimagenet_assets.definitions import build_definitions

ROOT = Path(__file__).resolve().parents[1]
LOCAL_PROFILE = ROOT / "dagster.yaml"
POSTGRES_PROFILE = ROOT / "deploy" / "postgres" / "dagster.yaml"
KUBERNETES_PROFILE = ROOT / "deploy" / "kubernetes" / "dagster.yaml"


def _profile(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize("profile", [POSTGRES_PROFILE, KUBERNETES_PROFILE], ids=["postgres", "kubernetes"])
def test_profiles_share_the_one_machine_policies(profile):
    """Queue, pools, monitoring and retries are one policy: a profile changes only where runs
    are stored and launched, so the three files cannot drift apart unnoticed."""
    local, other = _profile(LOCAL_PROFILE), _profile(profile)
    for section in ("run_coordinator", "concurrency", "run_monitoring", "run_retries", "telemetry"):
        assert other[section] == local[section], section
    assert set(other) - set(local) <= {"storage", "run_launcher"}


def test_postgres_profile_records_runs_and_pools(postgres_server, tmp_path, monkeypatch):
    """A materialization through the PostgreSQL profile lands in the server: the run, its
    materializations and the concurrency pools, readable by a second instance on the same database."""
    for name, value in postgres_server.items():
        monkeypatch.setenv(name, value)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(POSTGRES_PROFILE, home / "dagster.yaml")
    catalog = load_catalog("demo")
    defs = build_definitions(catalog, str(tmp_path / "data"))
    source = catalog.sources[0].dir_name
    selection = dg.AssetSelection.assets(["raw", source], ["source_metadata", source])

    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        result = dg.materialize([*defs.assets, *defs.asset_checks], resources=defs.resources, instance=instance, selection=selection)
        assert result.success
        instance.event_log_storage.set_concurrency_slots("gpu", 1)

    with dg.DagsterInstance.from_config(str(home)) as reader:
        runs = reader.get_runs()
        assert [r.run_id for r in runs] == [result.run_id]
        event = reader.get_latest_materialization_event(dg.AssetKey(["source_metadata", source]))
        assert event is not None and event.run_id == result.run_id
        assert event.asset_materialization.metadata["dagster/row_count"].value > 0
        assert reader.event_log_storage.get_concurrency_info("gpu").slot_count == 1


def test_kubernetes_profile_is_valid_for_dagster_k8s():
    from dagster._config import process_config
    from dagster_k8s import K8sRunLauncher

    launcher = _profile(KUBERNETES_PROFILE)["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_k8s", "K8sRunLauncher")
    result = process_config(K8sRunLauncher.config_type(), launcher["config"])
    assert result.success, [error.message for error in result.errors]


def test_training_step_asks_kubernetes_for_a_gpu_node(monkeypatch):
    from dagster_k8s import k8s_job_executor
    from dagster_k8s.job import get_user_defined_k8s_config

    monkeypatch.setenv("CYTOIMAGENET_EXECUTOR", "k8s")
    defs = build_definitions(load_catalog("demo"))
    job = defs.resolve_implicit_global_asset_job_def()
    assert job.executor_def is k8s_job_executor
    training = defs.resolve_assets_def(dg.AssetKey("pretrained_model")).op
    pod = get_user_defined_k8s_config(training.tags)
    assert pod.container_config["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    assert pod.pod_spec_config["node_selector"] == {"nvidia.com/gpu.present": "true"}

    monkeypatch.setenv("CYTOIMAGENET_EXECUTOR", "slurm")
    with pytest.raises(ValueError, match="CYTOIMAGENET_EXECUTOR='slurm'"):
        build_definitions(load_catalog("demo"))


DASK_ON_KUBERNETES = ROOT / "deploy" / "kubernetes" / "dask-cluster.yaml"
SLURM = ROOT / "deploy" / "slurm" / "dask_cluster.py"


def test_dask_workers_on_kubernetes_mount_what_runs_need_and_one_group_has_the_gpu():
    cluster, gpu_group = yaml.safe_load_all(DASK_ON_KUBERNETES.read_text())
    launcher_env = dict(v.split("=", 1) for v in _profile(KUBERNETES_PROFILE)["run_launcher"]["config"]["env_vars"])
    for group in (cluster["spec"]["worker"], gpu_group["spec"]["worker"]):
        (container,) = group["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert env["CYTOIMAGENET_HOME"] == launcher_env["CYTOIMAGENET_HOME"] and env["CYTOIMAGENET_HOME"] in mounts
        assert env["DAGSTER_HOME"] in mounts
        assert container["args"][container["args"].index("--nthreads") + 1] == "1"  # one Dagster run at a time
    (gpu,) = gpu_group["spec"]["worker"]["spec"]["containers"]
    assert "GPU=1" in gpu["args"] and gpu["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert gpu_group["spec"]["cluster"] == cluster["metadata"]["name"]


def test_the_slurm_profile_writes_cpu_and_gpu_jobs_that_join_one_scheduler(monkeypatch, capsys):
    pytest.importorskip("dask_jobqueue")
    import importlib.util

    monkeypatch.setenv("CYTOIMAGENET_HOME", "/shared/cytoimagenet")
    monkeypatch.setenv("DAGSTER_HOME", "/shared/dagster")
    spec = importlib.util.spec_from_file_location("slurm_dask_cluster", SLURM)
    slurm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(slurm)
    assert slurm.main(["--dry-run", "--account", "lab", "--port", "0", "--venv", "/shared/venv", "--gres", "gpu:a100:1"]) == 0
    cpu, gpu = capsys.readouterr().out.split("#!/usr/bin/env bash")[1:]
    address = cpu.split("dask_worker ")[1].split()[0]
    assert address.startswith("tcp://") and f"dask_worker {address} " in gpu
    assert "#SBATCH -p cpu" in cpu and "--nthreads 1" in cpu and "--nworkers 16" in cpu
    assert "#SBATCH -p gpu" in gpu and "#SBATCH --gres=gpu:a100:1" in gpu and "--resources GPU=1" in gpu and "--nthreads 1" in gpu
    for script in (cpu, gpu):
        assert "export CYTOIMAGENET_HOME=/shared/cytoimagenet" in script and "export DAGSTER_HOME=/shared/dagster" in script
        assert "source /shared/venv/bin/activate" in script
