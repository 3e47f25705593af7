"""A real Dask cluster on 127.0.0.1 for the tests and the rehearsal: one scheduler and N worker processes, each worker
in its own working directory with one thread (one run at a time), stopped with everything they started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


class LocalDaskCluster:
    """``with LocalDaskCluster(tmp, workers=2) as cluster:`` — ``cluster.address`` is the scheduler's;
    ``cluster.workers`` the worker processes (``kill_worker_running(pid)`` kills the one running a child).
    ``one_core_each``: worker i is pinned to core i (taskset) and its runs use one core, so that N
    workers on this machine stand for N one-core machines (what a scale-out measurement compares)."""

    def __init__(self, folder: Path, workers: int = 2, resources: str | None = None, one_core_each: bool = False):
        self.folder, self.count, self.resources, self.one_core_each = folder, workers, resources, one_core_each
        self.env = {**os.environ, "CYTOIMAGENET_RUN_CORES": "1"} if one_core_each else dict(os.environ)
        self.scheduler: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self.address = ""

    def _spawn(self, args: list[str], name: str, cwd: Path, pin: list[str] | None = None) -> subprocess.Popen:
        cwd.mkdir(parents=True, exist_ok=True)
        log = open(self.folder / f"{name}.log", "wb")
        command = [*(pin or []), sys.executable, "-m", *args]
        return subprocess.Popen(command, cwd=cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def __enter__(self) -> LocalDaskCluster:
        self.folder.mkdir(parents=True, exist_ok=True)
        scheduler_file = self.folder / "scheduler.json"
        self.scheduler = self._spawn(
            ["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard"]
            + ["--scheduler-file", str(scheduler_file)],
            "scheduler",
            self.folder / "scheduler",
        )
        deadline = time.monotonic() + 60
        while not scheduler_file.is_file():
            if self.scheduler.poll() is not None or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError(f"the Dask scheduler did not start: {(self.folder / 'scheduler.log').read_text()}")
            time.sleep(0.2)
        self.address = json.loads(scheduler_file.read_text())["address"]
        for i in range(self.count):
            args = ["distributed.cli.dask_worker", self.address, "--nthreads", "1", "--no-nanny", "--name", f"worker-{i}"]
            args += ["--local-directory", str(self.folder / f"worker-{i}"), "--host", "127.0.0.1", "--no-dashboard"]
            args += ["--resources", self.resources] if self.resources else []
            pin = ["taskset", "-c", str(i % (os.cpu_count() or 1))] if self.one_core_each else None
            self.workers.append(self._spawn(args, f"worker-{i}", self.folder / f"worker-{i}", pin))
        self.wait_for_workers(self.count)
        return self

    def wait_for_workers(self, n: int, timeout: float = 120) -> None:
        from distributed import Client

        with Client(self.address, timeout=60) as client:
            client.wait_for_workers(n, timeout=timeout)

    def kill_worker_running(self, pid: int) -> subprocess.Popen:
        """SIGKILL the worker process whose child (a run's process) is ``pid``, as a lost node."""
        parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        (worker,) = [w for w in self.workers if w.pid == parent]
        worker.kill()
        worker.wait()
        return worker

    def __exit__(self, *exc) -> None:
        for process in [*self.workers, self.scheduler]:
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in [*self.workers, self.scheduler]:
            if process is not None:
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
