"""Dagster's own servers for the tests, as a user runs them: start, wait until the code location has
loaded, ask them through GraphQL, stop them with everything they started."""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest


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
            pytest.fail(f"dagster dev exited with {process.returncode}:\n{log.read_text()[-4000:]}")
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
    pytest.fail(f"dagster dev did not serve {url} within {timeout:.0f} s:\n{log.read_text()[-4000:]}")


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
