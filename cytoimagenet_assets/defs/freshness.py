"""Keeping the data current: change detection on the sources — a sensor for files on disk, a weekly
schedule for the servers. Downstream, the tables rebuild by declarative automation (eager, behind
their blocking checks) and the class images through class_partitions_sensor."""

import json

import dagster as dg

from cytoimagenet_assets.catalog import Catalog
from cytoimagenet_assets.defs.keys import raw_key, table_key
from cytoimagenet_assets.defs.resources import DataHomeResource
from cytoimagenet_assets.download.fingerprint import changed_folders, check_remote_sources, hand_filled_fingerprints
from cytoimagenet_assets.download.mirrors import configured_mirrors

# Declarative automation: the assets that follow their inputs, and what their descriptions say about it.
EAGER = dg.AutomationCondition.eager()
EAGER_NOTE = (
    " Rebuilt by declarative automation when its inputs change, once default_automation_condition_sensor is on "
    "(the UI's Automation page; off by default, so a fresh instance never starts work on its own)."
)


def _refresh_requests(catalog: Catalog, dir_names: list[str], reason: str) -> list[dg.RunRequest]:
    """One run per changed source: its raw/ and source_metadata/ assets (automation takes it from there)."""
    requests = []
    for dir_name in dir_names:
        source = catalog.source(dir_name)
        keys = [raw_key(source)] + ([table_key(source)] if source.parser else [])
        requests.append(dg.RunRequest(asset_selection=keys, tags={"cytoimagenet/changed": reason}))
    return requests


def change_detection(catalog: Catalog) -> tuple[list[dg.SensorDefinition], list[dg.ScheduleDefinition]]:
    """The sensor and the schedule, for catalogs that have real (non-generated) sources."""
    sensors = [source_change_sensor(catalog)] if any(s.download.method != "demo" for s in catalog.sources) else []
    schedules = [remote_check_schedule(catalog)] if any(s.download.files for s in catalog.sources) else []
    return sensors, schedules


def source_change_sensor(catalog: Catalog) -> dg.SensorDefinition:
    watched = [s for s in catalog.sources if s.download.method != "demo"]

    @dg.sensor(
        name="source_change_sensor",
        minimum_interval_seconds=3600,
        default_status=dg.DefaultSensorStatus.STOPPED,
        asset_selection=dg.AssetSelection.assets(*[raw_key(s) for s in watched], *[table_key(s) for s in watched if s.parser]),
        description="Fingerprints the raw folder of every real source filled by hand (file list, sizes, mtimes) and "
        "requests a refresh of the sources whose files changed since the last tick (the first tick records a "
        "baseline). Downloaded sources are watched on their server by weekly_remote_source_check.",
    )
    def sensor(context: dg.SensorEvaluationContext, data: DataHomeResource):
        current = hand_filled_fingerprints(data.home(), watched)
        changed = [] if context.cursor is None else changed_folders(json.loads(context.cursor), current)  # first tick: a baseline
        return dg.SensorResult(run_requests=_refresh_requests(catalog, changed, "files"), cursor=json.dumps(current, sort_keys=True))

    return sensor


def remote_check_schedule(catalog: Catalog) -> dg.ScheduleDefinition:
    remote = [s for s in catalog.sources if s.download.files]

    @dg.schedule(
        name="weekly_remote_source_check",
        cron_schedule="0 6 * * 1",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        target=dg.AssetSelection.assets(*[raw_key(s) for s in remote], *[table_key(s) for s in remote if s.parser]),
        description="Every Monday: HEAD every download URL (ETag, Last-Modified, size) and refresh the sources whose "
        "files changed on the server.",
    )
    def schedule(context: dg.ScheduleEvaluationContext, data: DataHomeResource):
        changed, errors = check_remote_sources(data.home(), remote, configured_mirrors(catalog.mirrors))
        for error in errors:
            context.log.warning(error)
        requests = _refresh_requests(catalog, changed, "server")
        return requests or dg.SkipReason(f"no source changed on its server ({len(errors)} unreachable)")

    return schedule
