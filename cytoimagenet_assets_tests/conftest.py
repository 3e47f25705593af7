"""Shared fixtures: the real-data fixtures in ../shared and one generated demo data home."""

from __future__ import annotations

from pathlib import Path

import pytest

from cytoimagenet_assets.catalog import load_catalog
from cytoimagenet_assets.demo import generate
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
