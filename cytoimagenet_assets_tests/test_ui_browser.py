"""The Dagster UI in a real browser: ``dagster dev`` on a temporary instance of the demo catalog,
driven by Playwright with Debian's Chromium (/usr/bin/chromium, headless).

Before the UI starts, the tables and every class are built headless on that instance (the classes
by the headless build's own runner, as `make demo` builds them), and one class is then rebuilt with
its input broken, so the UI has a failed partition of class_images to show. The tests: the overview
timeline and the job's page list the build's runs; the global lineage shows every asset group; a
materialization launched by a click completes; the partitions view of class_images shows the
failed class and its error; the evaluation report's page shows its header and the demo's banner. A
screenshot of every step goes to $CYTOIMAGENET_UI_ARTIFACTS (default: test-artifacts/ui/ in the repository).

All tests share one server (a module fixture); under ``pytest -n N`` conftest.py sends all of this
module's tests to one worker (were they split, each worker would start a server of its own: slower,
still correct). Ports are free ones picked at start, and every path is in the test's temporary dir.
"""

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from cytoimagenet_assets.build import LocalRuns
from cytoimagenet_assets.catalog import load_catalog
from cytoimagenet_assets.definitions import build_definitions
from cytoimagenet_assets.defs.jobs import class_images_job
from cytoimagenet_assets.defs.keys import REPORT_KEY
from cytoimagenet_assets.rehearsal.dagster_servers import free_port, graphql, stop, wait_until_serving
from cytoimagenet_assets_tests.conftest import make_dagster_home
from cytoimagenet_assets_tests.test_failure_workflow import break_class_input, build_classes, build_tables, materialize

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("CYTOIMAGENET_UI_ARTIFACTS") or REPO / "test-artifacts" / "ui")
TIMEOUT_MS = 60_000  # the UI on a loaded 2-core machine can take a while to render a page

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover - the dev extras install it
    sync_playwright = None

pytestmark = [
    pytest.mark.skipif(sync_playwright is None, reason="playwright is not installed (pip install -e '.[dev]')"),
    pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"Chromium not found at {CHROMIUM} (apt-get install chromium)"),
]


class UI:
    """The running server, what was prepared for it, and the browser."""

    def __init__(self, url: str, victim: str, victim_raw_dir: Path, browser):
        self.url, self.victim, self.victim_raw_dir, self.browser = url, victim, victim_raw_dir, browser

    def page(self):
        page = self.browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        return page


def shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path


@pytest.fixture(scope="module")
def ui(tmp_path_factory, demo_raw):
    root = tmp_path_factory.mktemp("ui")
    dagster_home, data_home = make_dagster_home(root / "dagster_home"), root / "data"

    # Headless, on the same instance: the tables, every class, then one class again with its input
    # broken — its partition fails, while every class keeps a materialization with its current
    # fingerprint, so the class sensor (running in dagster dev) has nothing to launch.
    defs = build_definitions(load_catalog("demo"), data_home=str(data_home))
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        build_tables(defs, instance, data_home, demo_raw)
        keys = instance.get_dynamic_partitions("cytoimagenet_class")
        # The classes as `make demo` builds them (its runs, recorded with the UI's code location).
        assert all(outcome.success for _, outcome in LocalRuns(defs, instance, print).run_each(class_images_job.name, keys))
        victim = keys[0]
        # The evaluation report on the demo's benchmarks (random features only: no model is trained here).
        config = {"ops": {"evaluation_report": {"config": {"backbones": ["random"], "methods": ["merge_normalized"], "umap": False}}}}
        assert materialize(defs, instance, [REPORT_KEY], run_config=config)
        dependents, moved = break_class_input(data_home, victim, root / "aside")
        assert dependents == {victim}
        assert build_classes(defs, instance, [victim]) == {victim: False}

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "CYTOIMAGENET_HOME": str(data_home), "CYTOIMAGENET_CATALOG": "demo"}
    env.pop("CYTOIMAGENET_DB_URL", None)
    dagster = Path(sys.executable).with_name("dagster")
    log = root / "dagster-dev.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                str(dagster if dagster.exists() else shutil.which("dagster")),
                "dev",
                "-w",
                "workspace.yaml",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until_serving(url, process, log)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"], headless=True)
            try:
                expect.set_options(timeout=TIMEOUT_MS)
                ui = UI(url, victim, data_home / "raw" / moved[0].relative_to(data_home / "raw").parts[0], browser)
                # nux is off in dagster.yaml: a fresh instance opens on the UI, without the first-visit community modal.
                page = ui.page()
                page.goto(url + "/")
                expect(page.get_by_role("navigation").first).to_be_visible()
                shot(page, "0-first-visit")
                expect(page.get_by_text("Join the Dagster community")).to_be_hidden()
                page.close()
                yield ui
            finally:
                browser.close()
    finally:
        stop(process)


def test_the_overview_and_the_jobs_show_the_headless_builds_runs(ui):
    page = ui.page()
    page.goto(ui.url + "/overview/activity/timeline")
    timeline = page.get_by_role("main") if page.get_by_role("main").count() else page
    expect(timeline.get_by_text(class_images_job.name).first).to_be_visible()
    shot(page, "0b-overview-timeline")
    page.goto(f"{ui.url}/locations/cytoimagenet_assets/jobs/{class_images_job.name}/runs")
    expect(page.get_by_text("No runs")).to_be_hidden()
    expect(page.get_by_text(re.compile(r"^Success$")).first).to_be_visible()
    shot(page, "0c-job-runs")
    page.close()


def test_the_evaluation_report_says_what_it_is_and_that_demo_figures_only_show_the_pipeline_runs(ui):
    page = ui.page()
    page.goto(f"{ui.url}/assets/{REPORT_KEY.to_user_string()}")
    expect(page.get_by_text("Latest materialization")).to_be_visible()
    expect(page.get_by_text(re.compile(r"^These figures only show that the pipeline runs")).first).to_be_visible()
    for key in ("catalog", "model_run", "data_fingerprint", "date"):
        expect(page.get_by_text(key, exact=True).first).to_be_visible()
    shot(page, "4-evaluation-report")
    page.close()


def test_the_lineage_shows_every_asset_group(ui):
    groups = sorted({spec.group_name for spec in build_definitions(load_catalog("demo")).resolve_all_asset_specs()})
    assert len(groups) > 1
    page = ui.page()
    page.goto(ui.url + "/")
    page.get_by_role("link", name=re.compile(r"\bLineage$")).click()
    expect(page.get_by_text("Global asset lineage")).to_be_visible()
    graph = page.locator("svg foreignObject")  # the graph's nodes (the sidebar lists the groups too)
    for group in groups:
        expect(graph.get_by_text(group, exact=True).first).to_be_visible()
    shot(page, "1-lineage-groups")
    page.close()


def test_a_materialization_launched_from_the_ui_succeeds(ui):
    source = next(s for s in load_catalog("demo").sources if s.evaluation_only)  # no class draws on it
    page = ui.page()
    page.goto(f"{ui.url}/assets/raw/{source.dir_name}")
    expect(page.get_by_text("Latest materialization")).to_be_visible()
    shot(page, "2a-asset-before")
    page.get_by_role("button", name=re.compile(r"\bMaterialize$")).click()
    view = page.get_by_role("region", name=re.compile("Notifications")).get_by_role("link", name="View", exact=True)
    expect(view).to_be_visible()
    run_id = view.get_attribute("href").rsplit("/", 1)[-1].split("?")[0]
    shot(page, "2b-run-launched")
    view.click()
    deadline, status = time.monotonic() + 300, None
    while time.monotonic() < deadline:  # the run queues, starts a process, generates the source's files
        status = graphql(ui.url, "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }", {"id": run_id})["runOrError"][
            "status"
        ]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(2)
    expect(page.get_by_text(re.compile(r"^(Success|Failure|Canceled)$")).first).to_be_visible()
    shot(page, "2c-run-finished")
    assert status == "SUCCESS", f"run {run_id} ended {status}; see {ARTIFACTS / '2c-run-finished.png'}"
    expect(page.get_by_text("Success", exact=True).first).to_be_visible()
    page.goto(f"{ui.url}/assets/raw/{source.dir_name}")
    expect(page.get_by_text("Latest materialization")).to_be_visible()
    expect(page.get_by_text("Never materialized")).to_be_hidden()
    shot(page, "2d-asset-materialized")
    page.close()


def test_the_partitions_view_shows_the_failed_class_and_its_error(ui):
    page = ui.page()
    page.goto(f"{ui.url}/assets/class_images")
    page.get_by_role("tab", name="Partitions").click()
    expect(page.get_by_text(re.compile(r"^Failed \(1\)$"))).to_be_visible()
    shot(page, "3a-partitions")
    page.get_by_text(re.compile(r"^Materialized \(\d+\)$")).click()  # show only the failed (and missing) ones
    expect(page.get_by_text(re.compile(r"^1 Partitions? Selected$"))).to_be_visible()
    page.get_by_title(ui.victim, exact=True).click()
    expect(page.get_by_text(re.compile(r"failed, and did not materialize this asset"))).to_be_visible()
    shot(page, "3b-failed-partition")
    page.get_by_role("button", name=re.compile(r"View logs")).click()
    logs = page.get_by_role("dialog")
    expect(logs.get_by_text("STEP_FAILURE", exact=True)).to_be_visible()
    expect(logs.get_by_text(re.compile(rf"class {re.escape(ui.victim)} .*only 0 usable images")).first).to_be_visible()
    expect(logs.get_by_text(re.compile(rf"{re.escape(str(ui.victim_raw_dir))}/\S+: no such file")).first).to_be_visible()
    shot(page, "3c-failure-logs")
    logs.get_by_role("button", name="Done").click()

    # The way back: Materialize… → "Failed and missing" selects exactly the failed class (not launched here).
    page.get_by_role("button", name=re.compile(r"Materialize…$")).click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="Failed and missing", exact=True).click()
    expect(dialog.get_by_text("1 partition", exact=True)).to_be_visible()
    expect(dialog.get_by_text(ui.victim, exact=True)).to_be_attached()
    expect(dialog.get_by_role("button", name="Launch 1 run")).to_be_enabled()
    shot(page, "3d-failed-and-missing")
    dialog.get_by_role("button", name="Cancel").click()
    page.close()
