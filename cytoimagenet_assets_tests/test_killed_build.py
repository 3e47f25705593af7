"""A killed build never blocks the next. A build killed during training (SIGKILL, as the OOM killer
or a lost node) leaves its run STARTED and holding the ``gpu`` pool slot; the next build marks that
run failed, frees the slot, and resumes training from the checkpoint. A build waiting for a slot
says who holds it, and SIGTERM stops it at once, its run marked failed and no slot left behind.
"""

import os
import signal
import subprocess
import sys
import time

import dagster as dg

from cytoimagenet_assets.catalog import load_catalog
from cytoimagenet_assets.definitions import build_definitions
from cytoimagenet_assets_tests.test_failure_workflow import TOY_CLASS_IMAGES, build_classes, build_tables

RELEASE = [sys.executable, "-m", "cytoimagenet_assets.build", "--run", "release_job"]


def gpu_holders(instance) -> set[str]:
    return instance.event_log_storage.get_concurrency_info("gpu").active_run_ids


def test_a_build_killed_during_training_is_resumed_by_the_next_without_waiting(homes, demo_raw, tmp_path):
    _, home = homes
    defs = build_definitions(load_catalog("demo"), data_home=str(home))
    with dg.DagsterInstance.get() as instance:
        build_tables(defs, instance, home, demo_raw)
        instance.event_log_storage.set_concurrency_slots("gpu", 1)
        assert all(build_classes(defs, instance, instance.get_dynamic_partitions("cytoimagenet_class")).values())

    log = tmp_path / "killed.log"
    with open(log, "wb") as out:
        build = subprocess.Popen(RELEASE, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 300
    while not list(home.glob("models/*/checkpoints/last.pt")):  # the first epoch is checkpointed
        assert build.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)
    os.killpg(build.pid, signal.SIGKILL)
    build.wait()
    with dg.DagsterInstance.get() as instance:
        (killed,) = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
        assert gpu_holders(instance) == {killed.run_id}  # what the kill leaves behind

    rerun = subprocess.run(RELEASE, capture_output=True, text=True, timeout=600)
    output = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, output[-4000:]
    assert f"run {killed.run_id}: its process is gone; marked failed" in output
    assert "resuming after epoch 1" in output
    with dg.DagsterInstance.get() as instance:
        assert instance.get_run_by_id(killed.run_id).status == dg.DagsterRunStatus.FAILURE
        assert not gpu_holders(instance)
        assert instance.get_latest_materialization_event(dg.AssetKey("pretrained_model")) is not None


HOLD_GPU = (
    TOY_CLASS_IMAGES.replace('pool="io"', 'pool="gpu"')
    + """
import sys
from cytoimagenet_assets.build import main
import cytoimagenet_assets.definitions as definitions
definitions.defs = toy_defs
sys.exit(main(["--run", "class_images_job", "--partition", sys.argv[1]]))
"""
)


def test_a_build_waiting_for_a_slot_says_who_holds_it_and_stops_on_sigterm(homes, tmp_path):
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("cytoimagenet_class", ["holder", "waiter"])
        instance.event_log_storage.set_concurrency_slots("gpu", 1)
    env = {**os.environ, "TOY_HANG": "1", "PYTHONUNBUFFERED": "1"}
    holder = subprocess.Popen([sys.executable, "-c", HOLD_GPU, "holder"], env=env, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "running"  # it holds the gpu slot
    waiter = subprocess.Popen(
        [sys.executable, "-c", HOLD_GPU, "waiter"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        seen = []
        for line in waiter.stdout:
            seen.append(line)
            if "waits for a slot in pool 'gpu'" in line:
                break
        with dg.DagsterInstance.get() as instance:
            (holding,) = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": "holder"}))
        assert f"held by run {holding.run_id} (STARTED, class holder" in seen[-1], "".join(seen)[-3000:]
        started = time.monotonic()
        waiter.send_signal(signal.SIGTERM)
        assert waiter.wait(30) == 130 and time.monotonic() - started < 20
    finally:
        for process in (waiter, holder):
            process.kill()
            process.wait()
    with dg.DagsterInstance.get() as instance:
        (stopped,) = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": "waiter"}))
        assert stopped.status == dg.DagsterRunStatus.FAILURE
        assert stopped.run_id not in gpu_holders(instance)
        pending = instance.event_log_storage.get_concurrency_info("gpu").pending_steps
        assert all(step.run_id != stopped.run_id for step in pending)


def test_run_monitoring_sees_a_local_run_whose_process_is_gone(homes):
    """The daemon's run monitoring asks the instance's launcher about each started run: a run launched as a
    local process (the default launcher) is failed once that process is gone, so its slots are freed."""
    from dagster._core.events import EngineEventData
    from dagster._core.launcher import WorkerStatus
    from dagster._core.storage.tags import GRPC_INFO_TAG
    from dagster._core.test_utils import create_run_for_test

    gone = subprocess.Popen(["true"])
    gone.wait()
    with dg.DagsterInstance.get() as instance:
        launcher = instance.run_launcher
        assert type(launcher).__name__ == "DaskRunLauncher" and launcher.supports_check_run_worker_health
        health = {}
        for name, pid in (("alive", os.getpid()), ("gone", gone.pid)):
            run = create_run_for_test(instance, job_name="class_images_job", status=dg.DagsterRunStatus.STARTED)
            instance.add_run_tags(run.run_id, {GRPC_INFO_TAG: '{"host": "localhost", "port": 4266}'})
            instance.report_engine_event(f"Started process for run (pid: {pid}).", run, EngineEventData.in_process(pid))
            health[name] = launcher.check_run_worker_health(instance.get_run_by_id(run.run_id))
    assert health["alive"].status == WorkerStatus.RUNNING
    assert health["gone"].status == WorkerStatus.FAILED and f"pid {gone.pid}) is gone" in health["gone"].msg


def test_the_build_says_where_its_data_and_runs_go_at_its_start_and_end(homes, monkeypatch, capsys):
    from cytoimagenet_assets import build

    dagster_home, home = homes
    monkeypatch.setattr(build, "build_all", lambda defs, instance: build.Build(completed=True))
    monkeypatch.setattr(build, "_stop_on_sigterm", lambda: None)  # the test process keeps its own SIGTERM handling
    assert build.main([]) == 0
    said = [line for line in capsys.readouterr().out.splitlines() if line.startswith("data home:")]
    assert said == [f"data home: {home} (CYTOIMAGENET_HOME); runs recorded in the instance at {dagster_home} (DAGSTER_HOME)"] * 2
