"""Shared fixtures: the real-data fixtures in ../shared and one generated demo data home."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

# One CPU thread per test process (before torch is imported anywhere): the suite runs one process per
# core, and a fixed thread count keeps CPU results bitwise repeatable (a resumed run equals an
# uninterrupted one), which fitting threads to the machine's load would not (devices.fit_cpu_threads).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest

from cytoimagenet_assets.catalog import load_catalog
from cytoimagenet_assets.demo import generate
from cytoimagenet_assets.rehearsal.postgres import PostgresMissing, local_postgres
from cytoimagenet_assets_tests.loopback import Remote, serve

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REAL = SHARED / "fixtures" / "real"


@pytest.fixture(scope="session")
def real() -> Path:
    """``../shared/fixtures/real``; tests that need it skip when the checkout has no ../shared."""
    if not REAL.is_dir():
        pytest.skip(f"real-data fixtures not found at {REAL} (clone the project beside ../shared)")
    return REAL


@pytest.fixture
def remote(monkeypatch):
    """A loopback HTTP server (see loopback.py); ``remote.put(path, bytes)`` returns the file's URL."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    yield from serve(Remote())


def make_dagster_home(path: Path) -> Path:
    """A fresh DAGSTER_HOME with the repository's dagster.yaml (SQLite storage under it)."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(__file__).resolve().parents[1] / "dagster.yaml", path / "dagster.yaml")
    return path


@pytest.fixture
def homes(tmp_path, monkeypatch):
    """DAGSTER_HOME and CYTOIMAGENET_HOME in tmp_path, set in the environment (the CLI reads them)."""
    dagster_home = make_dagster_home(tmp_path / "dagster_home")
    data_home = tmp_path / "data"
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    monkeypatch.setenv("CYTOIMAGENET_HOME", str(data_home))
    monkeypatch.setenv("CYTOIMAGENET_CATALOG", "demo")
    monkeypatch.delenv("CYTOIMAGENET_DB_URL", raising=False)
    return dagster_home, data_home


@pytest.fixture(scope="session")
def demo_catalog():
    return load_catalog("demo")


@pytest.fixture(scope="session")
def demo_raw(tmp_path_factory, demo_catalog) -> Path:
    """Every demo source generated once, under <tmp>/raw/<dir_name>."""
    root = tmp_path_factory.mktemp("demo") / "raw"
    for source in demo_catalog.sources:
        generate(source, root / source.dir_name, demo_catalog.seed)
    return root


# Modules whose tests share one expensive module fixture (a running `dagster dev`, the demo build,
# a PostgreSQL server): under
# `pytest -n N` (xdist's "load" distribution) all of a module's tests go to the same worker, so the
# fixture is set up once. (xdist's own `--dist loadgroup` cannot do this here: with pytest 9.2 and xdist 3.8 its
# group suffix on node ids has no effect.) Every other test is scheduled one by one, as with "load".
ONE_WORKER_MODULES = ("test_ui_browser.py", "test_pipeline.py", "test_instance_profiles.py", "test_rehearsal.py")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class LoadKeepingModulesTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if module.endswith(ONE_WORKER_MODULES) else nodeid

    return LoadKeepingModulesTogether(config, log)


@pytest.fixture(scope="module")
def postgres_server():
    """A PostgreSQL server on 127.0.0.1 (rehearsal/postgres.py); yields the DAGSTER_PG_* environment pointing at it."""
    try:
        with local_postgres() as env:
            yield env
    except PostgresMissing as exc:
        pytest.skip(str(exc))


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to open a network connection fails the test, even one the code under test catches."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    yield
    assert not attempts, f"network access attempted: {attempts}"
