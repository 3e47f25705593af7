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
5. With ``--dask-workers 1,2``: a Dask scheduler and that many worker processes on 127.0.0.1 (each in
   its own working directory, pinned to a core of its own and running its classes on one core: N
   workers stand for N one-core machines). The build runs on the first cluster; then, for each
   cluster size, the classes' image files are deleted and every class is fetched and built again,
   the same work each time: the speedup is the smallest cluster's time over the largest's (``2,1`` builds on 2).
6. With ``--backfill local`` / ``--backfill dask``: a backfill of every class launched through
   GraphQL as the UI does and run by ``dagster-daemon`` (runs as local processes, or on the last
   Dask cluster): its wall time, and the head node's memory (webserver + daemon + what they start)
   per run in flight. With ``--break-a-class``, one class's files are deleted here and refused by the
   server first: it must fail alone, be listed as "failed and missing", and a second backfill of those
   partitions (the server healed) must rebuild it to the headless build's bytes.

    python benchmarks/rehearsal.py --scale 0.01 [--label-scale 0.02] [--workdir /tmp/cytoimagenet-rehearsal] [--seed 0]
        [--fault error=<path prefix>=<n>] [--fault cut=<prefix>=<bytes>] [--fault corrupt=<prefix>]
        [--fault slow=<prefix>=<bytes/s>] [--no-ui] [--dask-workers 1,2] [--no-class-stage] [--backfill local] [--backfill dask]
        [--break-a-class] [--channels preserved]

Path prefixes are the server's (``<host>/<path>``, e.g. ``data.broadinstitute.org/bbbc/BBBC005``).
The last line: ``RESULT rehearsal scale=... sources=<ok>/<40> rows=... classes=... class_failures=...
images=... seconds_total=... seconds_per_class_run=... dagster_overhead_per_run_s=... bytes_fetched=...
bytes_on_server=... event_log_mb=... peak_rss_gb=... ui_partitions_page_s=... dask_workers=1,2
channels=<merged|preserved> class_images_s=... dataset_png_bytes=... channel_png_bytes=...
class_stage_s=<per cluster size> class_stage_speedup=... backfill_s=<per kind> head_mb_per_run=<per kind>``.
The overhead is a class run's wall time less the class's own work (fetching and building, from its
metadata); the baseline it is a share of is that work, measured in the same runs.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq
import yaml

from cytoimagenet_assets import cluster
from cytoimagenet_assets.build import Build, DaskRuns, _build_classes, build_all
from cytoimagenet_assets.catalog import load_catalog
from cytoimagenet_assets.definitions import build_definitions
from cytoimagenet_assets.defs.class_partitions import failed_and_missing_classes
from cytoimagenet_assets.defs.keys import CLASS_IMAGES_KEY, CLASS_PARTITIONS
from cytoimagenet_assets.rehearsal.catalog import KAGGLE_AUTH, rehearsal_environment
from cytoimagenet_assets.rehearsal.dagster_servers import free_port, launch_backfill, start, stop, stop_sensor, wait_until_serving
from cytoimagenet_assets.rehearsal.dask_cluster import LocalDaskCluster
from cytoimagenet_assets.rehearsal.mirror import write_mirror
from cytoimagenet_assets.rehearsal.postgres import local_postgres
from cytoimagenet_assets.rehearsal.server import Faults, MirrorServer, bytes_on_server
from cytoimagenet_assets.storage import DataHome, remote_index_path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
STALL_S = 900  # a backfill with no run finished for this long is stuck


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


def png_bytes(data: DataHome, which: str) -> int:
    """Bytes of the dataset's merged PNGs, or of its per-channel PNGs (``channels: preserved``)."""
    pattern = "*/channels/*.png" if which == "channels" else "*/*.png"
    return sum(p.stat().st_size for p in data.dataset_dir().glob(pattern))


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def classes_digest(data: DataHome, classes: list[str]) -> dict[str, str]:
    """Each class folder's files (names and bytes) as one SHA-256: two builds gave the same class
    when its digests agree."""
    digests = {}
    for key in classes:
        folder, sha = data.class_dir(key), hashlib.sha256()
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            sha.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
        digests[key] = sha.hexdigest()
    return digests


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


def class_stage_on_dask(instance, keys: list[str], workers: int, folder: Path, log) -> tuple[float, int]:
    """Every class rebuilt on a fresh Dask cluster of ``workers`` worker processes: seconds and failures."""
    with LocalDaskCluster(folder, workers=workers, one_core_each=True) as dask:
        runs = DaskRuns(dask.address, instance, log)
        build, started = Build(), time.perf_counter()
        try:
            _build_classes(runs, keys, log, build)
        finally:
            runs.close()
        return time.perf_counter() - started, len(build.failed_classes)


def forget_fetched_images(data: DataHome, catalog) -> int:
    """Delete the image files the classes draw from in the sources downloaded metadata first (those with
    a remote index: a class fetches their missing files), so that a class stage fetches them again."""
    fetched = {s.dir_name for s in catalog.sources if remote_index_path(data.raw_dir(s.dir_name)).is_file()}
    labels = pd.read_parquet(data.table_path("cytoimagenet_labels"), columns=["idx"])
    merged = pd.read_parquet(data.merged_table(), columns=["idx", "dir_name", "channel_paths"])
    rows = merged[merged["idx"].isin(labels["idx"]) & merged["dir_name"].isin(fetched)]
    removed = 0
    for dir_name, paths in rows[["dir_name", "channel_paths"]].itertuples(index=False):
        for path in paths:
            file = data.raw_dir(dir_name) / path
            if file.is_file():
                file.unlink()
                removed += 1
    return removed


def instance_storage_mb(dagster_home: Path, postgres: bool) -> float:
    """The instance's runs and event logs on disk: its SQLite files, or its PostgreSQL database."""
    if not postgres:
        return folder_bytes(dagster_home) / 1e6
    import sqlalchemy as sa

    url = "postgresql+psycopg2://{DAGSTER_PG_USERNAME}@{DAGSTER_PG_HOST}:{DAGSTER_PG_PORT}/{DAGSTER_PG_DB}".format(**os.environ)
    with sa.create_engine(url).connect() as connection:
        return connection.execute(sa.text("select pg_database_size(current_database())")).scalar() / 1e6


def tree_rss_mb(pids: list[int]) -> float:
    """Resident memory of these processes and all their descendants, in MB."""
    import psutil

    total = 0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            for process in [root, *root.children(recursive=True)]:
                total += process.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total / 1e6


def break_a_class(data: DataHome, faults: Faults, log) -> tuple[str, Callable[[], None]]:
    """A class whose files are all fetched one by one (no zip member) and drawn on by no other class:
    its files deleted here and every request for them answered 500, so that its run, and only its run,
    fails. Returns the class and what heals the server (the files are fetched again by the rerun)."""
    labels = pd.read_parquet(data.table_path("cytoimagenet_labels"), columns=["idx", "class_key"])
    merged = pd.read_parquet(data.merged_table(), columns=["idx", "dir_name", "channel_paths"])
    rows = labels.merge(merged, on="idx")
    rows["file"] = [tuple(data.raw_dir(d) / p for p in paths) for d, paths in rows[["dir_name", "channel_paths"]].itertuples(index=False)]
    classes_of_file = collections.defaultdict(set)
    for key, files in rows[["class_key", "file"]].itertuples(index=False):
        for file in files:
            classes_of_file[file].add(key)
    urls = {}
    for dir_name in rows["dir_name"].unique():
        index = remote_index_path(data.raw_dir(dir_name))
        if index.is_file():
            remote = pd.read_parquet(index, columns=["path", "url", "member"])
            remote = remote[remote["member"].isna() & remote["url"].notna()]
            urls.update({data.raw_dir(dir_name) / p: u for p, u in remote[["path", "url"]].itertuples(index=False)})
    for key, group in rows.groupby("class_key", sort=True):
        files = {f for fs in group["file"] for f in fs}
        if files and all(f in urls and classes_of_file[f] == {key} for f in files):
            break
    else:
        raise SystemExit("--break-a-class: no class draws only on files of its own fetched one by one")
    prefixes = {unquote(f"{urlsplit(urls[f]).netloc}{urlsplit(urls[f]).path}") for f in files}
    for file in files:
        file.unlink(missing_ok=True)
    faults.update(errors={p: -1 for p in prefixes})
    log(f"class {key} broken: its {len(files)} files deleted here and refused by the server")
    return key, faults.clear


def wait_for_backfill(backfill_id: str, runs_expected: int, daemon: subprocess.Popen, log_path: Path, sample) -> list:
    """The backfill's finished runs once all ``runs_expected`` have finished and the backfill is complete;
    ``sample(runs)`` sees the runs every 2 s. A backfill with no run finished for STALL_S is stuck."""
    last_progress, finished = time.perf_counter(), 0
    with dg.DagsterInstance.get() as instance:
        while True:
            time.sleep(2)
            runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
            sample(runs)
            done = [r for r in runs if r.is_finished]
            if len(done) == runs_expected and instance.get_backfill(backfill_id).status.value.startswith("COMPLETED"):
                return done
            if daemon.poll() is not None:
                raise RuntimeError(f"dagster-daemon exited: {log_path.read_text()[-3000:]}")
            if len(done) > finished:
                last_progress, finished = time.perf_counter(), len(done)
            elif time.perf_counter() - last_progress > STALL_S:
                waiting = collections.Counter(r.status.value for r in runs if not r.is_finished)
                raise RuntimeError(f"backfill {backfill_id}: no run finished in {STALL_S} s; {len(done)} done, unfinished {dict(waiting)}")


def daemon_backfill(env: dict, keys: list[str], folder: Path, log, broken: tuple[str, Callable[[], None]] | None = None) -> dict:
    """A backfill of every class launched as the UI launches it and run by dagster-daemon: its wall time,
    failures, the most runs in flight at once, and the head node's memory (webserver, daemon and every
    process they start: code servers and, without Dask, the runs) per run in flight. With ``broken``
    (a class and what heals its input), that class must be the one failed, "failed and missing" must
    name it alone, and a second backfill of those partitions must build it."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    webserver = start(
        ["dagster-webserver", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)], REPO, folder / "webserver.log", env
    )
    daemon = None
    try:
        wait_until_serving(url, webserver, folder / "webserver.log", timeout=600)
        stop_sensor(url, "class_partitions_sensor")
        backfill_id = launch_backfill(url, ["class_images"], title="rehearsal: every class")
        daemon = start(["dagster-daemon", "run", "-w", "workspace.yaml"], REPO, folder / "daemon.log", env)
        started, peak_mb, in_flight = time.perf_counter(), 0.0, 0

        def sample(runs) -> None:
            nonlocal peak_mb, in_flight
            running = sum(r.status == dg.DagsterRunStatus.STARTED for r in runs)
            in_flight, peak_mb = max(in_flight, running), max(peak_mb, tree_rss_mb([webserver.pid, daemon.pid]))

        done = wait_for_backfill(backfill_id, len(keys), daemon, folder / "daemon.log", sample)
        seconds = time.perf_counter() - started
        time.sleep(5)  # the last runs' processes gone: the servers as loaded, with no run in flight
        idle_mb = tree_rss_mb([webserver.pid, daemon.pid])
        failed = sum(r.status != dg.DagsterRunStatus.SUCCESS for r in done)
        log(f"backfill {backfill_id}: {len(done)} runs, {failed} failed, {seconds:.0f} s, at most {in_flight} in flight")
        rerun_ok = None
        if broken:
            victim, heal = broken
            with dg.DagsterInstance.get() as instance:
                listed = failed_and_missing_classes(instance)
            heal()
            second = launch_backfill(url, ["class_images"], listed, title="rehearsal: failed and missing")
            rerun = wait_for_backfill(second, len(listed), daemon, folder / "daemon.log", lambda runs: None)
            rerun_ok = listed == [victim] and [r.status for r in rerun] == [dg.DagsterRunStatus.SUCCESS]
            log(f"failed and missing after the backfill: {listed}; its backfill {second}: {[r.status.value for r in rerun]}")
    finally:
        for process in (daemon, webserver):
            if process is not None:
                stop(process)
    locked = sum(path.read_text().count("database is locked") for path in folder.glob("*.log"))
    per_run = (peak_mb - idle_mb) / max(in_flight, 1)
    runs_of = collections.Counter(r.tags.get("dagster/partition") for r in done)  # the first backfill's
    not_once = sorted(k for k in set(keys) | set(runs_of) if runs_of[k] != 1)
    if not_once:
        log(f"classes not run exactly once: {len(not_once)}, e.g. {[(k, runs_of[k]) for k in not_once[:5]]}")
    return {
        "seconds": seconds,
        "failed": failed,
        "in_flight": in_flight,
        "head_mb_per_run": per_run,
        "database_locked": locked,
        "not_run_once": len(not_once),
        "rerun_ok": rerun_ok,
    }


def interrupted(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


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
    parser.add_argument("--dask-workers", default="", help="comma-separated cluster sizes: the class stage on each (e.g. 1,2)")
    parser.add_argument(
        "--no-class-stage", action="store_true", help="build on the first cluster size only, without rebuilding the classes on each"
    )
    parser.add_argument("--backfill", action="append", default=[], choices=["local", "dask"], help="a daemon backfill of every class")
    parser.add_argument("--postgres", action="store_true", help="the instance on a PostgreSQL server started here (deploy/postgres)")
    parser.add_argument("--channels", choices=["merged", "preserved"], default="merged", help="the label setting channels")
    parser.add_argument(
        "--break-a-class", action="store_true", help="one class refused in each backfill: it fails alone, failed-and-missing rebuilds it"
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, interrupted)  # SIGTERM stops it as Ctrl-C does: the servers and clusters it started are stopped
    sizes = [int(n) for n in args.dask_workers.split(",") if n]
    if "dask" in args.backfill and not sizes:
        raise SystemExit("--backfill dask needs --dask-workers")
    started = time.perf_counter()
    log = lambda line: print(f"[{time.perf_counter() - started:7.1f} s] {line}", flush=True)  # noqa: E731

    root, written = mirror(args.workdir, args.scale, args.seed, log)
    log(f"mirror {root}: {written['files']} files, {written['bytes'] / 1e6:.0f} MB (written in {written['seconds']} s)")
    run = args.workdir / f"run-scale{args.scale:g}"
    with contextlib.ExitStack() as services:
        server = services.enter_context(MirrorServer(root, faults=faults_from(args.fault), kaggle_auth=KAGGLE_AUTH, idle_timeout_s=3600))
        profile = REPO / "dagster.yaml"
        if args.postgres:
            os.environ.update(services.enter_context(local_postgres()))
            profile = REPO / "deploy" / "postgres" / "dagster.yaml"
        env = rehearsal_environment(
            root, run, server.url, label_scale=args.label_scale or args.scale, scale=args.scale, instance_config=profile
        )
        if args.channels != "merged":  # the catalog as the user sets it: labels: {channels: preserved}
            written = yaml.safe_load(Path(env["CYTOIMAGENET_CATALOG"]).read_text())
            written["labels"] = {**written.get("labels", {}), "channels": args.channels}
            Path(env["CYTOIMAGENET_CATALOG"]).write_text(yaml.safe_dump(written, sort_keys=False))
        os.environ.update(env)
        for name in ("CYTOIMAGENET_MIRRORS", "CYTOIMAGENET_DB_URL"):
            os.environ.pop(name, None)

        home = Path(env["CYTOIMAGENET_HOME"])
        real = load_catalog(env["CYTOIMAGENET_CATALOG"])
        defs = build_definitions(real, data_home=str(home))
        stage_s, backfills = {}, {}
        with dg.DagsterInstance.get() as instance:
            instance.event_log_storage.set_concurrency_slots("io", max(sizes + [2]))  # the pool admits every worker's run
            with contextlib.ExitStack() as first_cluster:
                if sizes:  # the build sends its runs to the first cluster
                    os.environ[cluster.DASK_ENV] = first_cluster.enter_context(
                        LocalDaskCluster(run / f"dask-{sizes[0]}", sizes[0], one_core_each=True)
                    ).address
                    first_cluster.callback(os.environ.pop, cluster.DASK_ENV)
                build = build_all(defs, instance, log)
            work = class_work_seconds(instance)
            classes = instance.get_dynamic_partitions(CLASS_PARTITIONS.name)
        headless = classes_digest(DataHome(home), classes)
        with dg.DagsterInstance.get() as instance:
            for n in [] if args.no_class_stage else sizes:  # every class fetched and built again: the same work for each size
                forget_fetched_images(DataHome(home), real)
                stage_s[n], failures = class_stage_on_dask(instance, classes, n, run / f"dask-rebuild-{n}", log)
                rebuild_work = sum(class_work_seconds(instance).values())
                log(f"class stage on {n} Dask workers: {stage_s[n]:.1f} s, {failures} failed; the classes' own work {rebuild_work:.1f} s")
        daemon_env = {**os.environ, **env}
        for kind in args.backfill:
            broken = break_a_class(DataHome(home), server.faults, log) if args.break_a_class else None
            if kind == "dask":
                with LocalDaskCluster(run / "dask-backfill", workers=max(sizes), one_core_each=True) as dask:
                    backfills[kind] = daemon_backfill(
                        {**daemon_env, cluster.DASK_ENV: dask.address}, classes, run / "backfill-dask", log, broken
                    )
            else:  # as many runs at once as the instance's queue admits (max_concurrent_runs: 4)
                with dg.DagsterInstance.get() as instance:
                    instance.event_log_storage.set_concurrency_slots("io", 4)
                backfills[kind] = daemon_backfill(daemon_env, classes, run / "backfill-local", log, broken)
            rebuilt = classes_digest(DataHome(home), classes)
            backfills[kind]["classes_differing"] = differing = sum(rebuilt[k] != headless[k] for k in classes)
            log(f"backfill {kind}: {differing} of {len(classes)} classes differ from the headless build's bytes")
        stats = server.stats
        served = bytes_on_server(root)
        event_log_mb = instance_storage_mb(Path(env["DAGSTER_HOME"]), args.postgres)

    data = DataHome(home)
    pretraining = {s.dir_name for s in real.pretraining_sources}
    rows = pq.read_metadata(data.merged_table()).num_rows if data.merged_table().is_file() else 0
    images = len(pd.read_csv(data.dataset_metadata(), usecols=[0])) if data.dataset_metadata().is_file() else 0
    runs = build.class_run_seconds
    overheads = [runs[k] - work[k] for k in runs if k in work]
    per_run = sum(runs.values()) / max(len(runs), 1)
    overhead = sum(overheads) / max(len(overheads), 1)
    peak_gb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1e6
    ui = float("nan")
    if not args.no_ui:
        ui = partitions_page_seconds({**os.environ, **env}, len(classes), run / "webserver.log")
    for stage, seconds in build.seconds.items():
        log(f"stage {stage}: {seconds:.1f} s")
    log(f"failed sources: {', '.join(build.failed_sources) or 'none'}; failed classes: {', '.join(build.failed_classes) or 'none'}")
    log(f"class runs: {per_run:.2f} s each, of which the class's own work {per_run - overhead:.2f} s (overhead {overhead / per_run:.0%})")
    log("server: " + stats.format().replace("\n", "; "))
    speedup = stage_s[min(sizes)] / stage_s[max(sizes)] if len(stage_s) > 1 else float("nan")  # the fewest workers over the most

    def per_kind(field: str, fmt: str) -> str:
        return ",".join(f"{kind}:{figures[field]:{fmt}}" for kind, figures in backfills.items()) or "nan"

    stages = ",".join(f"{stage_s[n]:.1f}" for n in sizes if n in stage_s) or "nan"
    scale_out = (
        f" dask_workers={args.dask_workers or 0} class_stage_s={stages} class_stage_speedup={speedup:.2f}"
        f" backfill_s={per_kind('seconds', '.1f')} head_mb_per_run={per_kind('head_mb_per_run', '.0f')}"
        f" backfill_failures={sum(b['failed'] for b in backfills.values())}"
        f" database_locked={sum(b['database_locked'] for b in backfills.values())}"
        f" backfill_not_run_once={sum(b['not_run_once'] for b in backfills.values())}"
        f" backfill_classes_differing={sum(b['classes_differing'] for b in backfills.values())}"
        + (f" failed_and_missing_rebuilt={all(b['rerun_ok'] for b in backfills.values())}" if args.break_a_class else "")
    )
    print(
        f"RESULT rehearsal scale={args.scale:g} sources={len(pretraining - set(build.failed_sources))}/{len(pretraining)} rows={rows} "
        f"classes={len(classes)} class_failures={len(build.failed_classes)} images={images} "
        f"seconds_total={sum(build.seconds.values()):.1f} seconds_per_class_run={per_run:.2f} dagster_overhead_per_run_s={overhead:.2f} "
        f"bytes_fetched={stats.bytes_sent} bytes_on_server={served} event_log_mb={event_log_mb:.1f} "
        f"peak_rss_gb={peak_gb:.2f} ui_partitions_page_s={ui:.2f} channels={args.channels} "
        f"class_images_s={build.seconds.get('class images', float('nan')):.1f} dataset_png_bytes={png_bytes(data, 'merged')} "
        f"channel_png_bytes={png_bytes(data, 'channels')}" + scale_out
    )


if __name__ == "__main__":
    main()
