"""The code location loads, and its asset graph matches the committed snapshot.

After an intended change to the graph, refresh the snapshot with
``UPDATE_SNAPSHOTS=1 pytest cytoimagenet_assets_tests/test_definitions.py`` and review the diff.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from cytoimagenet_assets.catalog import load_catalog
from cytoimagenet_assets.definitions import build_definitions

SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_graph_demo.json"
ROOT = Path(__file__).resolve().parents[1]


def graph(defs: dg.Definitions) -> list[dict]:
    repo = defs.get_repository_def()
    graph = repo.asset_graph
    checks_by_asset: dict = {}
    for check_key in graph.asset_check_keys:
        checks_by_asset.setdefault(check_key.asset_key.to_user_string(), []).append(check_key.name)
    nodes = []
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        nodes.append(
            {
                "key": key.to_user_string(),
                "group": node.group_name,
                "deps": sorted(k.to_user_string() for k in node.parent_keys),
                "kinds": sorted(node.kinds),
                "checks": sorted(checks_by_asset.get(key.to_user_string(), [])),
            }
        )
    return nodes


def test_demo_asset_graph_matches_snapshot():
    current = graph(build_definitions(load_catalog("demo")))
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(json.dumps(current, indent=1) + "\n")
        pytest.skip("snapshot rewritten; review its diff and run again without UPDATE_SNAPSHOTS")
    assert current == json.loads(SNAPSHOT.read_text())


def test_cytoimagenet_graph_has_every_source_and_keeps_evaluation_out_of_the_merge():
    nodes = {n["key"]: n for n in graph(build_definitions(load_catalog("cytoimagenet")))}
    tables = [k for k in nodes if k.startswith("source_metadata/")]
    assert len(tables) == 41  # 40 sources + BBBC021; COOS-7 and CyCLoPs (HDF5) have only raw/, read by their protocols
    assert {"raw/coos7", "raw/cyclops"} <= set(nodes) and set(nodes["evaluation_report"]["deps"]) >= {
        "raw/coos7",
        "raw/cyclops",
        "raw/bbbc021",
    }
    merged_inputs = nodes["merged_metadata"]["deps"]
    assert len(merged_inputs) == 40 and "source_metadata/bbbc021" not in merged_inputs
    assert "no_evaluation_sources" in nodes["merged_metadata"]["checks"]


def _dagster(*args: str, catalog: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CYTOIMAGENET_CATALOG": catalog}
    env.pop("DAGSTER_HOME", None)
    return subprocess.run([sys.executable, "-m", "dagster", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_definitions_validate_and_asset_list_from_the_command_line():
    validated = _dagster("definitions", "validate", "-w", "workspace.yaml", catalog="demo")
    assert validated.returncode == 0, validated.stderr[-2000:]
    listed = _dagster("asset", "list", "-m", "cytoimagenet_assets.definitions", catalog="cytoimagenet")
    assert listed.returncode == 0, listed.stderr[-2000:]
    keys = set(listed.stdout.split())
    catalog = load_catalog("cytoimagenet")
    assert {f"source_metadata/{s.dir_name}" for s in catalog.pretraining_sources} <= keys


def test_launchpad_overrides_are_the_step_settings_fields_and_are_validated_like_the_catalog():
    """One settings object per step: the launchpad config lists exactly its fields (plus the asset's own),
    unset fields keep the catalog's values, and a bad override fails as a bad catalog value would."""
    import dataclasses

    from cytoimagenet_assets.catalog.settings import LabelSettings, TrainSettings
    from cytoimagenet_assets.defs.labels import LabelAssignmentConfig
    from cytoimagenet_assets.defs.model import PretrainConfig
    from cytoimagenet_assets.defs.settings import with_overrides

    assert set(LabelAssignmentConfig.model_fields) == {f.name for f in dataclasses.fields(LabelSettings)}
    assert set(PretrainConfig.model_fields) == {f.name for f in dataclasses.fields(TrainSettings)} | {"processes", "stream"}
    catalog = load_catalog("demo")
    recipe = with_overrides(catalog.training, PretrainConfig(epochs=5, stream=True))
    assert recipe == dataclasses.replace(catalog.training, epochs=5) and recipe.seed == catalog.seed
    labels = with_overrides(catalog.labels, LabelAssignmentConfig(categories=["compound"], upsampling="top_up"))
    assert labels.categories == ("compound",) and labels.upsampling == "top_up" and labels.target == catalog.labels.target
    with pytest.raises(ValueError, match="threshold <= target <= cap"):
        with_overrides(catalog.labels, LabelAssignmentConfig(threshold=10_000))
    with pytest.raises(ValueError, match="upsampling"):
        with_overrides(catalog.labels, LabelAssignmentConfig(upsampling="sideways"))
