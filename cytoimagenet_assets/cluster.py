"""Runs on a Dask cluster: each Dagster run (one class partition, a source stage, the release) is a
Dask task that executes the whole run in a fresh process on a worker, recorded in the same instance.

One setting: ``CYTOIMAGENET_DASK`` = a scheduler address (``tcp://head:8786``). The headless build
(``python -m cytoimagenet_assets.build``) then sends its runs to that cluster, and the instance's run
launcher (:class:`DaskRunLauncher`, in every profile's dagster.yaml) sends the runs that the daemon
launches (UI backfills, the sensor, schedules) there too. Unset, everything runs as before: the build
in its own process, the daemon's runs as local processes.

Why whole runs and not ``dagster-dask``'s step executor: that executor keeps one Dagster run process
per class on the head node and sends only the step; it names every Dask task ``<job>.<step>``, the
same for every class partition, so concurrent class runs share one Dask key; it disables step
retries (class_images' retry policy) and does not claim pool slots (``io``, ``gpu``). A run per
task keeps everything Dagster does for a run (pools, retries, logs, the run's status, failures and
re-execution in the UI) and leaves the head node only the queue.

A worker needs the package installed, the data home mounted at the same path, and the instance
(DAGSTER_HOME and its database) reachable; its first task checks all three and fails naming what
is missing (:class:`WorkerNotReady`). Secrets (KAGGLE_*, DAGSTER_PG_*) are the worker's own
environment: they never travel with a task.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.launcher import CheckRunHealthResult, DefaultRunLauncher, LaunchRunContext, WorkerStatus
from dagster._core.storage.tags import GRPC_INFO_TAG
from dagster._grpc.types import ExecuteRunArgs
from dagster._serdes import ConfigurableClassData, serialize_value

from cytoimagenet_assets.errors import StepFailed
from cytoimagenet_assets.storage import HOME_ENV, default_home

DASK_ENV = "CYTOIMAGENET_DASK"
TASK_TAG = "cytoimagenet/dask_task"  # the Dask task a run executes in: a second attempt of it finds the first's run
TASK_ENV = "CYTOIMAGENET_DASK_TASK"
CORES_ENV = "CYTOIMAGENET_RUN_CORES"  # the cores a run on a Dask worker may use (its slot's share of the machine)
CANCEL_POLL_S = 2.0  # how often a running task looks for a cancel request from the UI
GPU_RESOURCE = "GPU"  # a worker started with `--resources GPU=1` takes the training runs
UNFINISHED = [dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.CANCELING]


def dask_address() -> str | None:
    """The scheduler address in CYTOIMAGENET_DASK, or None: runs stay on this machine."""
    return os.environ.get(DASK_ENV) or None


def run_environment() -> dict[str, str]:
    """What a worker's run must agree on with the head: every CYTOIMAGENET_* setting (catalog, mirrors,
    SQL catalog URL), the data home as an absolute path, and DAGSTER_HOME."""
    env = {k: v for k, v in os.environ.items() if k.startswith("CYTOIMAGENET_") and k not in (DASK_ENV, TASK_ENV)}
    env[HOME_ENV] = str(default_home())
    if os.environ.get("DAGSTER_HOME"):
        env["DAGSTER_HOME"] = str(Path(os.environ["DAGSTER_HOME"]).resolve())
    return env


class ClusterUnavailable(StepFailed, RuntimeError):
    """No Dask scheduler answers at the configured address."""


def connect(address: str, timeout: float = 60):
    """A client of the scheduler at ``address``, or a ClusterUnavailable that names it."""
    from distributed import Client

    try:
        return Client(address, set_as_default=False, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise ClusterUnavailable(f"{DASK_ENV}={address}: no Dask scheduler answers there ({exc}); start one or unset {DASK_ENV}") from exc


class WorkerNotReady(RuntimeError):
    """A Dask worker that cannot run the pipeline's runs, and what it lacks."""


_ready: set[tuple[str, str]] = set()  # (data home, DAGSTER_HOME) this worker process has checked


def check_worker(env: Mapping[str, str]) -> None:
    """At a worker's first task: the data home is mounted here (a folder it can write in) and the
    instance opens and answers. The package is installed, or this function would not have arrived."""
    home, dagster_home = env[HOME_ENV], env.get("DAGSTER_HOME", "")
    if (home, dagster_home) in _ready:
        return
    where = f"Dask worker on {socket.gethostname()} (pid {os.getpid()})"
    if not Path(home).is_dir():
        raise WorkerNotReady(f"{where}: the data home {home} is not mounted here; mount it at the same path on every worker")
    probe = Path(home) / f".worker-probe-{socket.gethostname()}-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise WorkerNotReady(f"{where}: the data home {home} is mounted but not writable: {exc}") from exc
    if not dagster_home or not (Path(dagster_home) / "dagster.yaml").is_file():
        raise WorkerNotReady(
            f"{where}: the Dagster instance {dagster_home or '(DAGSTER_HOME unset on the head)'} has no dagster.yaml here; "
            "share DAGSTER_HOME (or a copy of its dagster.yaml) at the same path"
        )
    try:
        with _instance(env) as instance:
            instance.get_runs(limit=1)
    except Exception as exc:  # any driver or configuration error: say which instance and why
        raise WorkerNotReady(f"{where}: the Dagster instance at DAGSTER_HOME={dagster_home} is not reachable: {exc}") from exc
    _ready.add((home, dagster_home))


def _instance(env: Mapping[str, str]) -> dg.DagsterInstance:
    """The instance of ``env``'s DAGSTER_HOME (its dagster.yaml reads the worker's own secrets)."""
    saved = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = env["DAGSTER_HOME"]
    try:
        return dg.DagsterInstance.get()
    finally:
        if saved is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = saved


@dataclass(frozen=True)
class TaskResult:
    """What a run's task reports back: the run it executed, whether it succeeded, where, the last lines."""

    run_id: str | None
    success: bool
    worker: str
    seconds: float
    output_tail: str


def cores_per_slot() -> int:
    """On a Dask worker: this machine's cores shared among the worker slots (threads) on it, so that
    the runs in flight here together use every core once, not each of them every core. A worker
    started with CYTOIMAGENET_RUN_CORES set (a job given that many cores) keeps its own figure."""
    from distributed import get_client, get_worker

    if os.environ.get(CORES_ENV):
        return int(os.environ[CORES_ENV])
    host = get_worker().address.rsplit(":", 1)[0]
    workers = get_client().scheduler_info(n_workers=-1)["workers"].values()
    slots = sum(w.get("nthreads", 1) for w in workers if w.get("host") == host.split("://")[-1]) or 1
    return max(1, (os.cpu_count() or 1) // slots)


def _die_with_worker() -> None:  # pragma: no cover - runs in the child before exec
    """The run's process dies with the worker process that started it (Linux), so a killed worker
    never leaves a run going on unwatched."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def fail_run(instance: dg.DagsterInstance, run: dg.DagsterRun, message: str) -> None:
    """Mark ``run`` failed (if it has not finished) and free the pool slots it holds: a run whose
    process died holds them forever otherwise, and the next run of its pool waits on it."""
    if not run.is_finished:
        instance.report_run_failed(run, message=message)
    if instance.event_log_storage.supports_global_concurrency_limits:
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)


def fail_earlier_attempts(instance: dg.DagsterInstance, task: str, keep: str | None = None) -> list[str]:
    """Dask runs a task again only when the worker running it died: the unfinished runs an earlier
    attempt of ``task`` left (all but ``keep``) are marked failed, freeing their pool slots."""
    failed = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=UNFINISHED, tags={TASK_TAG: task})):
        if run.run_id == keep and run.status in (dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING):
            continue
        fail_run(instance, run, f"the Dask worker running this run died (task {task}); marked failed by its next attempt")
        failed.append(run.run_id)
    return failed


def execute_on_worker(module_args: list[str], env: dict[str, str], task: str, run_id: str | None = None) -> TaskResult:
    """The Dask task: check the worker, fail what an earlier attempt of ``task`` left unfinished, then
    run ``python -m <module_args>`` (one whole Dagster run) with the worker's own interpreter in a child
    process with ``env``; cancel it when the run is set to canceling in the UI; report on it."""
    started = time.perf_counter()
    check_worker(env)
    with _instance(env) as instance:
        if fail_earlier_attempts(instance, task, keep=run_id) and run_id is not None:
            # the daemon's run itself was the dead attempt's: the instance's run retries launch a new one
            return TaskResult(run_id, False, socket.gethostname(), time.perf_counter() - started, "an earlier attempt's worker died")
        with tempfile.TemporaryFile("w+") as output:
            process = subprocess.Popen(
                [sys.executable, *module_args],
                env={**os.environ, **env, TASK_ENV: task, CORES_ENV: str(cores_per_slot())},
                stdout=output,
                stderr=subprocess.STDOUT,
                text=True,
                preexec_fn=_die_with_worker if sys.platform == "linux" else None,
            )
            while True:
                try:
                    process.wait(timeout=CANCEL_POLL_S)
                    break
                except subprocess.TimeoutExpired:
                    run = instance.get_run_by_id(run_id) if run_id else None
                    if run is not None and run.status == dg.DagsterRunStatus.CANCELING:
                        process.terminate()  # Dagster's run process stops its steps and records the run canceled
            output.seek(0)
            console = output.read()
        sys.stdout.write(console)  # the worker's log keeps the run's console
        if run_id is None:
            runs = instance.get_runs(filters=dg.RunsFilter(tags={TASK_TAG: task}), limit=1)
            run_id = runs[0].run_id if runs else None
        run = instance.get_run_by_id(run_id) if run_id else None
        if process.returncode < 0 and run is not None and not run.is_finished:  # killed: the run cannot say so itself
            fail_run(instance, run, f"the run's process on {socket.gethostname()} was killed by signal {-process.returncode}")
    tail = "\n".join(console.strip().splitlines()[-15:])
    return TaskResult(run_id, process.returncode == 0, socket.gethostname(), time.perf_counter() - started, tail)


def gpu_resources(client: Any) -> dict[str, float]:
    """Dask resources for a run that trains: a GPU worker's slot when the cluster has GPU workers
    (``--resources GPU=1``, the Slurm profile's GPU partition), none otherwise (any worker)."""
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    return {GPU_RESOURCE: 1} if any(w.get("resources", {}).get(GPU_RESOURCE) for w in workers) else {}


def task_key(name: str) -> str:
    """A Dask key unique to this attempt's run (Dask shares results between equal keys)."""
    return f"{name}-{uuid.uuid4().hex[:12]}"


class DaskRunLauncher(DefaultRunLauncher):
    """The instance's run launcher: with CYTOIMAGENET_DASK (or ``address:``) set, each run the daemon
    or the UI launches is a Dask task on that cluster (``dagster api execute_run`` on a worker);
    unset, Dagster's default launcher (a process beside the code server)."""

    def __init__(self, address: str | None = None, inst_data: ConfigurableClassData | None = None):
        self._address = address
        self._client = None
        self._futures: dict[str, Any] = {}
        super().__init__(inst_data=inst_data)

    @classmethod
    def config_type(cls):
        return {"address": dg.Field(dg.StringSource, is_required=False)}

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return cls(address=config_value.get("address"), inst_data=inst_data)

    @property
    def address(self) -> str | None:
        return self._address or dask_address()

    def client(self):
        if self._client is None:
            self._client = connect(self.address, timeout=30)
        return self._client

    def launch_run(self, context: LaunchRunContext) -> None:
        if not self.address:
            return super().launch_run(context)
        run = context.dagster_run
        task = task_key(f"run-{run.run_id}")
        self._instance.add_run_tags(run.run_id, {TASK_TAG: task})
        args = ExecuteRunArgs(job_origin=run.job_code_origin, run_id=run.run_id, instance_ref=None, set_exit_code_on_failure=True)
        client = self.client()
        trains = run.asset_selection and any(key.path[-1] == "pretrained_model" for key in run.asset_selection)
        future = client.submit(
            execute_on_worker,
            ["-m", "dagster", "api", "execute_run", serialize_value(args)],
            run_environment(),
            task,
            run.run_id,
            key=task,
            pure=False,
            resources=gpu_resources(client) if trains else None,
        )
        self._futures[run.run_id] = future
        self._instance.report_engine_event(f"sent to the Dask cluster {self.address} as task {task}", run, cls=self.__class__)

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        """Run monitoring asks this of every started run: on Dask, whether its task's worker died for good
        ('lost', 'error'); on this machine, whether its process (the pid its first engine event gives)
        is alive. A run whose worker is gone is then marked failed, its pool slots freed, and retried."""
        if not self.address:
            return self._local_health(run)
        future = self._futures.get(run.run_id)
        if future is None:
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, "launched by another process")
        if future.status in ("error", "lost", "cancelled"):
            exc = future.exception() if future.status == "error" else None
            return CheckRunHealthResult(WorkerStatus.FAILED, f"Dask task {future.key}: {future.status}" + (f": {exc}" if exc else ""))
        if future.status == "finished":
            self._futures.pop(run.run_id, None)
            return CheckRunHealthResult(WorkerStatus.SUCCESS)
        return CheckRunHealthResult(WorkerStatus.RUNNING)

    def _local_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        """A run launched as a local process: alive or not, by the pid its process reported, when its code
        server runs on this machine (elsewhere the pid says nothing here)."""
        grpc = json.loads(run.tags.get(GRPC_INFO_TAG, "{}"))
        if grpc.get("host") not in ("localhost", "127.0.0.1", socket.gethostname()) and not grpc.get("socket"):
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, "its code server runs on another machine")
        pids = [
            int(entry.dagster_event.engine_event_data.metadata["pid"].value)
            for entry in self._instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)
            if (entry.dagster_event.message or "").startswith("Started process for run")
        ]
        if not pids:
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, "no process started yet")
        try:
            os.kill(pids[-1], 0)
        except ProcessLookupError:
            return CheckRunHealthResult(WorkerStatus.FAILED, f"the run's process (pid {pids[-1]}) is gone: killed or crashed")
        except PermissionError:
            pass
        return CheckRunHealthResult(WorkerStatus.RUNNING)

    def terminate(self, run_id: str) -> bool:
        """Canceling: the run's task sees the run turn CANCELING and stops its process (a task still
        waiting for a worker is dropped and the run marked canceled)."""
        if not self.address:
            return super().terminate(run_id)
        run = self._instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            return False
        self._instance.report_run_canceling(run)
        future = self._futures.get(run_id)
        if future is not None and run.status == dg.DagsterRunStatus.STARTING:
            future.cancel()
            self._instance.report_run_canceled(run, message="canceled before a Dask worker took it")
        return True

    def dispose(self) -> None:
        if self._client is not None:
            self._client.close()
        super().dispose()
