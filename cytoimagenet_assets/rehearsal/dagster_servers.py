"""Dagster's own servers for the tests and the rehearsal, as a user runs them: start, wait until the code
location has loaded, ask them through GraphQL, stop them with everything they started."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(url: str, query: str, variables: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"{url}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)["data"]


def wait_until_serving(url: str, process: subprocess.Popen, log: Path, timeout: float = 240) -> None:
    """Until the webserver answers and the code location has loaded (or fail with the server's log)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dagster dev exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"{url}/server_info", timeout=5):
                pass
            entries = graphql(
                url,
                "{ workspaceOrError { ... on Workspace { locationEntries { loadStatus "
                "locationOrLoadError { __typename ... on PythonError { message } } } } } }",
            )
            entries = entries["workspaceOrError"]["locationEntries"]
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                errors = [e["locationOrLoadError"] for e in entries if e["locationOrLoadError"]["__typename"] != "RepositoryLocation"]
                assert not errors, f"the code location failed to load: {errors}"
                return
        except OSError:
            pass
        time.sleep(1)
    raise RuntimeError(f"dagster dev did not serve {url} within {timeout:.0f} s:\n{log.read_text()[-4000:]}")


def stop(process: subprocess.Popen) -> None:
    """SIGTERM to dagster dev's process group, a few seconds' grace, then SIGKILL to whatever is left of
    the group (dagster dev does not exit within seconds of SIGTERM; its children may outlive it)."""
    for sig, grace in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass


LOCATION = {"repositoryLocationName": "cytoimagenet_assets", "repositoryName": "__repository__"}
LAUNCH_BACKFILL = """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""


def start(command: list[str], cwd: Path, log: Path, env: dict | None = None) -> subprocess.Popen:
    """``dagster-webserver`` / ``dagster-daemon`` (this environment's) in a session of its own, output to ``log``."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            [str(Path(sys.executable).with_name(command[0])), *command[1:]],
            cwd=cwd,
            env=env if env is not None else os.environ.copy(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_sensor(url: str, name: str) -> None:
    sensor = graphql(
        url,
        "query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) { ... on Sensor { id } } }",
        {"s": {**LOCATION, "sensorName": name}},
    )
    stopped = graphql(url, "mutation($id: String) { stopSensor(id: $id) { __typename } }", {"id": sensor["sensorOrError"]["id"]})
    assert stopped["stopSensor"]["__typename"] == "StopSensorMutationResult", stopped


def launch_backfill(url: str, asset: list[str], partitions: list[str] | None = None, title: str = "") -> str:
    """What the UI's Materialize → partitions dialog sends: all partitions of ``asset``, or the ones listed."""
    params = {"assetSelection": [{"path": asset}], "title": title}
    params.update({"allPartitions": True} if partitions is None else {"partitionNames": partitions})
    launched = graphql(url, LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    return launched["backfillId"]
