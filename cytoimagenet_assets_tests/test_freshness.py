"""Change detection: fingerprints of raw folders and download URLs, the sensor and the schedule."""

import json
import os

import dagster as dg
import pytest
import yaml

from cytoimagenet_assets.catalog import BUILTIN_DIR, parse_catalog
from cytoimagenet_assets.definitions import build_definitions
from cytoimagenet_assets.defs.freshness import remote_check_schedule, source_change_sensor
from cytoimagenet_assets.defs.resources import DataHomeResource
from cytoimagenet_assets.download import DownloadError
from cytoimagenet_assets.download.fingerprint import local_fingerprint, remote_fingerprint
from cytoimagenet_assets.storage import FETCHED_MARK


def _catalog(url: str):
    """A two-source catalog: one real source downloaded over HTTPS from ``url``, one demo source."""
    raw = yaml.safe_load((BUILTIN_DIR / "demo.yaml").read_text())
    real = dict(raw["sources"][3], dir_name="my_leukemia", download={"method": "https", "files": [{"url": f"{url}/data.zip"}]})
    raw["sources"] = [raw["sources"][3], real]
    raw.pop("embed")  # its folder is a source left out here
    return parse_catalog(raw)


def test_local_fingerprint_follows_names_sizes_and_times(tmp_path):
    assert local_fingerprint(tmp_path / "absent") is None
    (tmp_path / "a.tif").write_bytes(b"1234")
    first = local_fingerprint(tmp_path)
    assert local_fingerprint(tmp_path) == first
    os.utime(tmp_path / "a.tif", ns=(1, 10**18))
    second = local_fingerprint(tmp_path)
    assert second != first
    (tmp_path / "b.tif").write_bytes(b"")
    assert local_fingerprint(tmp_path) != second


def test_remote_fingerprint_reads_etag_and_size(remote):
    url = remote.put("/data.zip", b"x" * 1234, etag='"v1"')
    assert remote_fingerprint([url], "my_leukemia") == {url: '"v1"||1234'}
    with pytest.raises(DownloadError, match=r"my_leukemia: .*/missing.zip returned 404"):
        remote_fingerprint([f"{remote.base}/missing.zip"], "my_leukemia")


def test_the_sensor_requests_only_sources_whose_files_changed(tmp_path):
    catalog = _catalog("https://example.org")
    sensor = source_change_sensor(catalog)
    resources = {"data": DataHomeResource(root=str(tmp_path))}
    instance = dg.DagsterInstance.ephemeral()
    first = sensor(dg.build_sensor_context(instance=instance, resources=resources))
    assert first.run_requests == []  # the first tick records a baseline (no files yet)
    folder = tmp_path / "raw" / "my_leukemia"
    folder.mkdir(parents=True)
    (folder / "x.bmp").write_bytes(b"1")
    second = sensor(dg.build_sensor_context(instance=instance, cursor=first.cursor, resources=resources))
    assert [sorted(k.to_user_string() for k in r.asset_selection) for r in second.run_requests] == [
        ["raw/my_leukemia", "source_metadata/my_leukemia"]
    ]
    (folder / ".download").mkdir()
    (folder / ".download" / "x.bmp.json").write_text("{}")  # bookkeeping is not a change
    third = sensor(dg.build_sensor_context(instance=instance, cursor=second.cursor, resources=resources))
    assert third.run_requests == []
    (folder / FETCHED_MARK).touch()  # from now on the package downloads into it: the server is watched instead
    (folder / "y.bmp").write_bytes(b"2")
    fourth = sensor(dg.build_sensor_context(instance=instance, cursor=third.cursor, resources=resources))
    assert fourth.run_requests == []
    assert "demo_leukemia" not in json.loads(third.cursor)  # generated sources are not watched


def test_the_weekly_schedule_refreshes_sources_changed_on_their_server(remote, tmp_path):
    remote.put("/data.zip", b"version 1", etag='"v1"')
    catalog = _catalog(remote.base)
    schedule = remote_check_schedule(catalog)
    resources = {"data": DataHomeResource(root=str(tmp_path))}
    baseline = schedule(dg.build_schedule_context(resources=resources))
    assert isinstance(baseline, dg.SkipReason)  # the first check records what the servers hold
    assert isinstance(schedule(dg.build_schedule_context(resources=resources)), dg.SkipReason)
    remote.put("/data.zip", b"version 2", etag='"v2"')
    requests = schedule(dg.build_schedule_context(resources=resources))
    assert [sorted(k.to_user_string() for k in r.asset_selection) for r in requests] == [["raw/my_leukemia", "source_metadata/my_leukemia"]]


def test_tables_rebuild_by_declarative_automation():
    defs = build_definitions(_catalog("https://example.org"))
    graph = defs.get_repository_def().asset_graph
    for key in ("merged_metadata", "label_candidates", "cytoimagenet_labels"):
        assert graph.get(dg.AssetKey(key)).automation_condition == dg.AutomationCondition.eager()
    assert {s.name for s in defs.sensors} >= {"class_partitions_sensor", "source_change_sensor"}
    assert [s.name for s in defs.schedules] == ["weekly_remote_source_check"]
