"""Per-source assets: ``raw/<dir_name>`` (the files) and ``source_metadata/<dir_name>`` (its table)."""

import functools

import dagster as dg

from cytoimagenet_assets.catalog import Catalog, Source
from cytoimagenet_assets.defs.checks import source_table_checks
from cytoimagenet_assets.defs.failures import step_failures
from cytoimagenet_assets.defs.freshness import change_detection
from cytoimagenet_assets.defs.keys import raw_key, table_key
from cytoimagenet_assets.defs.metadata import result, table_metadata
from cytoimagenet_assets.defs.resources import DataHomeResource, DownloadsResource
from cytoimagenet_assets.download.plan import obtain_source
from cytoimagenet_assets.sources import parse_source, parser_options
from cytoimagenet_assets.storage import write_parquet

asset = functools.partial(dg.asset, group_name="sources")  # every asset of this domain is in its group


class RawSourceConfig(dg.Config):
    """``full_download``: every file of the source instead of its metadata and an index of its
    images (the per-class step then fetches only the images it needs)."""

    full_download: bool = False


def _raw_asset(source: Source, seed: int) -> dg.AssetsDefinition:
    spec = source.download

    @asset(
        key=raw_key(source),
        kinds={"folder"},
        description=f"{source.name} ({source.database}) as distributed, under raw/{source.dir_name}: its metadata and an index of "
        f"its images by default, everything with full_download. {source.notes or ''}".strip(),
        metadata={
            "landing_page": dg.MetadataValue.url(source.landing_page),
            "license": source.license,
            "download_method": spec.method,
            "approx_size_gb": source.approx_size_gb,
        },
        tags={"evaluation_only": "true"} if source.evaluation_only else None,
    )
    def raw(
        context: dg.AssetExecutionContext, config: RawSourceConfig, data: DataHomeResource, downloads: DownloadsResource
    ) -> dg.MaterializeResult:
        raw_dir = data.home().raw_dir(source.dir_name)
        with step_failures({"expected_at": raw_dir, "landing_page": dg.MetadataValue.url(source.landing_page)}):
            report = obtain_source(source, raw_dir, seed, config.full_download, downloads.fetching(context.log.info))
        return result(report)

    return raw


def _table_asset(source: Source) -> dg.AssetsDefinition:
    @asset(
        key=table_key(source),
        deps=[raw_key(source)],
        kinds={"pandas", "parquet"},
        description=f"Standardized metadata of {source.name}: one row per (multi-channel) image, parser {source.parser!r}.",
        tags={"evaluation_only": "true"} if source.evaluation_only else None,
    )
    def source_metadata(context: dg.AssetExecutionContext, data: DataHomeResource) -> dg.MaterializeResult:
        home = data.home()
        raw_dir = home.raw_dir(source.dir_name)
        with step_failures():
            parsed = parse_source(source, raw_dir)
        path = write_parquet(parsed.table, home.source_table(source.dir_name))
        if len(parsed.rejects):
            context.log.warning(f"{source.dir_name}: {len(parsed.rejects)} rows could not be used; see the 'rejected_rows' metadata")
        if len(parsed.join_misses):
            context.log.warning(
                f"{source.dir_name}: {int(parsed.join_misses['rows'].sum())} rows have keys no annotation table holds; "
                "see the 'annotation_join_misses' metadata"
            )
        return result({**table_metadata(parsed.table, path), **parsed.report(raw_dir)})

    return source_metadata


def source_assets(catalog: Catalog) -> list[dg.AssetsDefinition]:
    """raw/ and source_metadata/ per source; evaluation sets without a metadata table (COOS-7,
    CyCLoPs: HDF5 read by their protocol) get only raw/."""
    assets = []
    for source in catalog.sources:
        assets.append(_raw_asset(source, catalog.seed))
        if source.parser is not None:
            assets.append(_table_asset(source))
    return assets


def defs(catalog: Catalog) -> dg.Definitions:
    """The sources domain: each source's files and table, their checks, and change detection. A
    parser option the parser does not know fails here, when the code location loads, not at the
    source's parse."""
    for source in catalog.sources:
        if source.parser is not None:
            parser_options(source)
    sensors, schedules = change_detection(catalog)
    return dg.Definitions(assets=source_assets(catalog), asset_checks=source_table_checks(catalog), sensors=sensors, schedules=schedules)
