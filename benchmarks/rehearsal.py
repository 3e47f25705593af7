#!/usr/bin/env python3
"""The real 40-source build, rehearsed offline at a scale factor, and its figures.

1. Writes every source of the real catalog in its distribution format at ``--scale`` (1.0 is the
   real row counts), once per scale and seed (cached under ``--workdir``).
2. Serves it from 127.0.0.1 (``cytoimagenet_assets.rehearsal.server``), faults as asked.
3. Builds the real catalog, pointed at that server by its ``mirrors:`` block and with its label
   thresholds scaled, through Dagster on a fresh instance, as ``make demo`` builds the demo: the
   sources (metadata first), the tables, one run per class, the dataset, shards, a few training
   steps, the evaluation (``cytoimagenet_assets.build``).
4. Times the class_images partitions page of the Dagster UI, all classes listed, in Chromium.

    python benchmarks/rehearsal.py --scale 0.01 [--label-scale 0.02] [--workdir /tmp/cytoimagenet-rehearsal] [--seed 0]
        [--fault error=<path prefix>=<n>] [--fault cut=<prefix>=<bytes>] [--fault corrupt=<prefix>]
        [--fault slow=<prefix>=<bytes/s>] [--no-ui]

Path prefixes are the server's (``<host>/<path>``, e.g. ``data.broadinstitute.org/bbbc/BBBC005``).
The last line: ``RESULT rehearsal scale=... sources=<ok>/<40> rows=... classes=... class_failures=...
images=... seconds_total=... seconds_per_class_run=... dagster_overhead_per_run_s=... bytes_fetched=...
bytes_on_server=... event_log_mb=... peak_rss_gb=... ui_partitions_page_s=...``. The overhead is a
class run's wall time less the class's own work (fetching and building, from its metadata); the
baseline it is a share of is that work, measured in the same runs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq

from cytoimagenet_assets.build import build_all
from cytoimagenet_assets.catalog import load_catalog
from cytoimagenet_assets.definitions import build_definitions
from cytoimagenet_assets.defs.keys import CLASS_IMAGES_KEY, CLASS_PARTITIONS
from cytoimagenet_assets.rehearsal.catalog import KAGGLE_AUTH, rehearsal_environment
from cytoimagenet_assets.rehearsal.mirror import write_mirror
from cytoimagenet_assets.rehearsal.server import Faults, MirrorServer, bytes_on_server
from cytoimagenet_assets.storage import DataHome

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")


def mirror(workdir: Path, scale: float, seed: int, log) -> tuple[Path, dict]:
    """The mirror folder for (scale, seed), written once (deterministic) and reused."""
    root = workdir / f"mirror-scale{scale:g}-seed{seed}"
    done = root / ".written.json"
    if not done.is_file():
        staging = root.with_name(root.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        report = write_mirror(load_catalog("cytoimagenet"), staging, scale=scale, seed=seed, progress=log)
        figures = {"files": report.files, "bytes": report.bytes, "seconds": round(report.seconds, 1), "rows": report.rows}
        (staging / ".written.json").write_text(json.dumps(figures))
        shutil.rmtree(root, ignore_errors=True)
        staging.rename(root)
    return root, json.loads(done.read_text())


def faults_from(args: list[str]):
    """``kind=prefix[=value]`` → the server's Faults."""
    faults = Faults()
    for spec in args:
        kind, _, rest = spec.partition("=")
        prefix, _, value = rest.partition("=")
        if kind == "error":
            faults.errors[prefix] = int(value or -1)
        elif kind == "cut":
            faults.cut[prefix] = int(value)
        elif kind == "corrupt":
            faults.corrupt.add(prefix)
        elif kind == "slow":
            faults.slow[prefix] = float(value)
        else:
            raise SystemExit(f"--fault {spec}: the kind is one of error, cut, corrupt, slow")
    return faults


def class_work_seconds(instance) -> dict[str, float]:
    """Each class partition's own work (fetching and building), from its latest materialization."""
    seconds, cursor = {}, None
    while True:  # oldest first: a partition's latest materialization is written last
        batch = instance.fetch_materializations(CLASS_IMAGES_KEY, limit=1000, cursor=cursor, ascending=True)
        for record in batch.records:
            materialization = record.asset_materialization
            seconds[materialization.partition] = float(materialization.metadata["seconds"].value)
        if not batch.has_more:
            return seconds
        cursor = batch.cursor


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def partitions_page_seconds(env: dict, classes: int, log_path: Path) -> float:
    """Seconds from opening class_images' partitions page in Chromium to every class being counted on it."""
    import re

    from playwright.sync_api import expect, sync_playwright

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    webserver = Path(sys.executable).with_name("dagster-webserver")
    with open(log_path, "wb") as out:
        process = subprocess.Popen(
            [str(webserver), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                with urllib.request.urlopen(f"{url}/server_info", timeout=5):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"dagster-webserver did not start; see {log_path}") from None
                time.sleep(1)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"], headless=True)
            page = browser.new_page()
            page.goto(f"{url}/assets/class_images")  # warm: the code location loaded, the app's scripts cached
            expect(page.get_by_role("tab", name="Partitions")).to_be_visible(timeout=240_000)
            started = time.perf_counter()
            page.goto(f"{url}/assets/class_images?view=partitions")
            expect(page.get_by_text(re.compile(rf"^{classes} Partitions Selected$"))).to_be_visible(timeout=120_000)
            expect(page.get_by_text(re.compile(r"^Materialized \(\d+\)$"))).to_be_visible(timeout=120_000)
            seconds = time.perf_counter() - started
            page.screenshot(path=str(log_path.with_suffix(".png")))
            browser.close()
        return seconds
    finally:
        os.killpg(process.pid, 15)
        process.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--label-scale", type=float, help="scale of the class sizes (default: --scale, as the real data; larger: fewer, larger classes)"
    )
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/cytoimagenet-rehearsal"))
    parser.add_argument("--fault", action="append", default=[], help="kind=prefix[=value]; kinds: error, cut, corrupt, slow")
    parser.add_argument("--no-ui", action="store_true", help="skip the Dagster UI measurement (no Chromium)")
    args = parser.parse_args()
    started = time.perf_counter()
    log = lambda line: print(f"[{time.perf_counter() - started:7.1f} s] {line}", flush=True)  # noqa: E731

    root, written = mirror(args.workdir, args.scale, args.seed, log)
    log(f"mirror {root}: {written['files']} files, {written['bytes'] / 1e6:.0f} MB (written in {written['seconds']} s)")
    run = args.workdir / f"run-scale{args.scale:g}"
    with MirrorServer(root, faults=faults_from(args.fault), kaggle_auth=KAGGLE_AUTH, idle_timeout_s=3600) as server:
        env = rehearsal_environment(
            root, run, server.url, label_scale=args.label_scale or args.scale, scale=args.scale, instance_config=REPO / "dagster.yaml"
        )
        os.environ.update(env)
        for name in ("CYTOIMAGENET_MIRRORS", "CYTOIMAGENET_DB_URL"):
            os.environ.pop(name, None)

        home = Path(env["CYTOIMAGENET_HOME"])
        real = load_catalog(env["CYTOIMAGENET_CATALOG"])
        defs = build_definitions(real, data_home=str(home))
        with dg.DagsterInstance.get() as instance:
            build = build_all(defs, instance, log)
            work = class_work_seconds(instance)
            classes = instance.get_dynamic_partitions(CLASS_PARTITIONS.name)
        stats = server.stats
        served = bytes_on_server(root)

    data = DataHome(home)
    pretraining = {s.dir_name for s in real.pretraining_sources}
    rows = pq.read_metadata(data.merged_table()).num_rows if data.merged_table().is_file() else 0
    images = len(pd.read_csv(data.dataset_metadata(), usecols=[0])) if data.dataset_metadata().is_file() else 0
    runs = build.class_run_seconds
    overheads = [runs[k] - work[k] for k in runs if k in work]
    per_run = sum(runs.values()) / max(len(runs), 1)
    overhead = sum(overheads) / max(len(overheads), 1)
    peak_gb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1e6
    event_log_mb = folder_bytes(Path(env["DAGSTER_HOME"])) / 1e6
    ui = float("nan")
    if not args.no_ui:
        ui = partitions_page_seconds({**os.environ, **env}, len(classes), run / "webserver.log")
    for stage, seconds in build.seconds.items():
        log(f"stage {stage}: {seconds:.1f} s")
    log(f"failed sources: {', '.join(build.failed_sources) or 'none'}; failed classes: {', '.join(build.failed_classes) or 'none'}")
    log(f"class runs: {per_run:.2f} s each, of which the class's own work {per_run - overhead:.2f} s (overhead {overhead / per_run:.0%})")
    log("server: " + stats.format().replace("\n", "; "))
    print(
        f"RESULT rehearsal scale={args.scale:g} sources={len(pretraining - set(build.failed_sources))}/{len(pretraining)} rows={rows} "
        f"classes={len(classes)} class_failures={len(build.failed_classes)} images={images} "
        f"seconds_total={sum(build.seconds.values()):.1f} seconds_per_class_run={per_run:.2f} dagster_overhead_per_run_s={overhead:.2f} "
        f"bytes_fetched={stats.bytes_sent} bytes_on_server={served} event_log_mb={event_log_mb:.1f} "
        f"peak_rss_gb={peak_gb:.2f} ui_partitions_page_s={ui:.2f}"
    )


if __name__ == "__main__":
    main()
