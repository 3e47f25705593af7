"""The real catalog's build rehearsed offline at a small scale — what CI can afford of
``benchmarks/rehearsal.py`` (which measures the larger scales): every source of the real catalog
served from 127.0.0.1 in its distribution format, built through Dagster on a fresh instance.

- The benchmark itself, end to end: all 40 sources parse, every class is built, the release and the
  evaluation run, and its RESULT line says so.
- Faults: a source whose server answers 500 fails alone, named with its file, and the merge goes on
  without it; connections cut mid-file resume.
- A build killed (SIGKILL) during its class runs, then ``--failed-and-missing``: every class built
  once, byte-identical to the uninterrupted build, no staging left behind.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from cytoimagenet_assets.catalog import load_catalog
from cytoimagenet_assets.definitions import build_definitions
from cytoimagenet_assets.defs.keys import CLASS_IMAGES_KEY, CLASS_PARTITIONS
from cytoimagenet_assets.rehearsal.catalog import KAGGLE_AUTH, rehearsal_environment
from cytoimagenet_assets.rehearsal.server import Faults, MirrorServer
from cytoimagenet_assets.storage import DataHome

REPO = Path(__file__).resolve().parents[1]
SCALE, LABEL_SCALE, SEED = 0.0005, 0.04, 0  # ~1,300 metadata rows; class sizes of the real recipe × 0.04: the largest labels only


@pytest.fixture(scope="module")
def rehearsed(tmp_path_factory):
    """The benchmark at SCALE, without the UI: (its output, its RESULT figures, its work folder)."""
    workdir = tmp_path_factory.mktemp("rehearsal")
    command = [sys.executable, str(REPO / "benchmarks" / "rehearsal.py"), "--scale", str(SCALE), "--label-scale", str(LABEL_SCALE)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CYTOIMAGENET_", "DAGSTER_HOME", "KAGGLE_"))}
    done = subprocess.run([*command, "--seed", str(SEED), "--workdir", str(workdir), "--no-ui"], capture_output=True, text=True, env=env)
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("RESULT rehearsal scale=0.0005 "), (done.stdout + done.stderr)[-6000:]
    return done.stdout, dict(re.findall(r"(\w+)=(\S+)", last)), workdir


def test_every_source_of_the_real_catalog_parses_and_every_class_is_built(rehearsed):
    output, result, _ = rehearsed
    assert result["sources"] == "40/40", output[-4000:]
    assert "failed sources: none; failed classes: none" in output
    assert int(result["classes"]) >= 5 and result["class_failures"] == "0"
    assert int(result["rows"]) > 1000 and int(result["images"]) >= int(result["classes"]) * 2
    # Nearly every row is in a class at this scale, so range reads (central directories, then members) cost about
    # what whole files would (48.5 of 47.3 MB measured). The saving shows at 0.01: 381 of 722 MB.
    assert 0 < int(result["bytes_fetched"]) < 1.25 * int(result["bytes_on_server"])
    assert float(result["dagster_overhead_per_run_s"]) < float(result["seconds_per_class_run"])
    assert float(result["event_log_mb"]) > 0 and float(result["peak_rss_gb"]) > 0


def _mirror(workdir: Path) -> Path:
    (root,) = workdir.glob("mirror-scale*")
    return root


def test_a_source_whose_server_fails_fails_alone_and_cut_connections_resume(rehearsed, tmp_path):
    _, _, workdir = rehearsed
    root = _mirror(workdir)
    only = ["bbbc005", "bbbc013", "idr0016", "bbbc022"]
    faults = Faults(errors={"data.broadinstitute.org/bbbc/BBBC005": -1}, cut={"data.broadinstitute.org/bbbc/BBBC022": 3000})
    with MirrorServer(root, faults=faults, kaggle_auth=KAGGLE_AUTH) as server:
        env = rehearsal_environment(  # class sizes scaled further: these four sources alone must still form classes
            root, tmp_path, server.url, label_scale=LABEL_SCALE / 8, scale=SCALE, instance_config=REPO / "dagster.yaml", only=only
        )
        defs = build_definitions(load_catalog(env["CYTOIMAGENET_CATALOG"]), data_home=env["CYTOIMAGENET_HOME"])
        instance = dg.DagsterInstance.ephemeral()
        sources = defs.resolve_job_def("sources_job").execute_in_process(instance=instance, raise_on_error=False)
        tables = defs.resolve_job_def("tables_job").execute_in_process(instance=instance, raise_on_error=False)
        stats = server.stats
    failures = [e for e in sources.all_events if e.is_step_failure]
    assert {e.step_key for e in failures} == {"raw__bbbc005"}
    message = failures[0].step_failure_data.user_failure_data.description
    assert "bbbc005" in message and "BBBC005_v1_images.zip" in message and "500" in message
    assert tables.success  # the merge went on without it, and says so
    merged = instance.get_latest_materialization_event(dg.AssetKey("merged_metadata")).asset_materialization
    assert "bbbc005" in merged.metadata["sources_missing"].value
    assert sorted(load_catalog(env["CYTOIMAGENET_CATALOG"]).by_dir_name) == sorted(only)
    assert stats.faults.get("cut", 0) >= 1 and stats.faults.get("error", 0) >= 1
    assert DataHome(Path(env["CYTOIMAGENET_HOME"])).source_table("bbbc022").is_file(), "the source whose transfers were cut has no table"


def test_a_build_killed_during_its_class_runs_resumes_to_the_same_bytes(rehearsed, tmp_path):
    _, _, workdir = rehearsed
    root = _mirror(workdir)
    reference = next(workdir.glob("run-scale*")) / "home" / "dataset"
    with MirrorServer(root, kaggle_auth=KAGGLE_AUTH) as server:
        env = rehearsal_environment(root, tmp_path, server.url, label_scale=LABEL_SCALE, scale=SCALE, instance_config=REPO / "dagster.yaml")
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("CYTOIMAGENET_", "KAGGLE_"))}, **env}
        home = Path(env["CYTOIMAGENET_HOME"])
        build = subprocess.Popen(
            [sys.executable, "-m", "cytoimagenet_assets.build"],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 600
        while len(list((home / "dataset").glob("*/metadata.csv"))) < 2:  # two classes built: the class runs are under way
            assert build.poll() is None and time.monotonic() < deadline, "the build ended before it could be killed"
            time.sleep(0.2)
        os.killpg(build.pid, signal.SIGKILL)
        build.wait()
        rerun = subprocess.run(
            [sys.executable, "-m", "cytoimagenet_assets.build", "--failed-and-missing"], cwd=REPO, env=env, capture_output=True, text=True
        )
    assert rerun.returncode == 0, (rerun.stdout + rerun.stderr)[-4000:]
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        keys = instance.get_dynamic_partitions(CLASS_PARTITIONS.name)
        records = instance.fetch_materializations(CLASS_IMAGES_KEY, limit=1000).records
    built = sorted(r.asset_materialization.partition for r in records)
    assert built == sorted(keys), "every class built exactly once, across the killed build and its rerun"
    ours = {p.relative_to(home / "dataset"): p.read_bytes() for p in (home / "dataset").rglob("*") if p.is_file()}
    theirs = {p.relative_to(reference): p.read_bytes() for p in reference.rglob("*") if p.is_file() and p.parent != reference}
    assert ours.keys() == theirs.keys() and all(ours[k] == theirs[k] for k in ours), "not the uninterrupted build's bytes"
    leftovers = [p for p in home.rglob("*") if p.name.endswith((".partial", ".old", ".part"))]
    assert leftovers == []
