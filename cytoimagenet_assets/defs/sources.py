"""Per-source assets: ``raw/<dir_name>`` (the files) and ``source_metadata/<dir_name>`` (its table)."""

import dagster as dg

from cytoimagenet_assets.catalog import Catalog, Source
from cytoimagenet_assets.defs.metadata import table_metadata
from cytoimagenet_assets.defs.resources import DataHomeResource
from cytoimagenet_assets.demo import generate
from cytoimagenet_assets.markdown import markdown_table
from cytoimagenet_assets.sources import parse_source
from cytoimagenet_assets.sources.table import ParseError, missing_files
from cytoimagenet_assets.storage import write_parquet

GROUP = "sources"


def raw_key(source: Source) -> dg.AssetKey:
    return dg.AssetKey(["raw", source.dir_name])


def table_key(source: Source) -> dg.AssetKey:
    return dg.AssetKey(["source_metadata", source.dir_name])


def _folder_summary(path) -> dict:
    files = [p for p in path.rglob("*") if p.is_file()]
    return {"files": len(files), "bytes": sum(p.stat().st_size for p in files)}


def _raw_asset(source: Source, seed: int) -> dg.AssetsDefinition:
    spec = source.download

    @dg.asset(
        key=raw_key(source),
        group_name=GROUP,
        kinds={"folder"},
        description=f"{source.name} ({source.database}) as distributed, under raw/{source.dir_name}. {source.notes or ''}".strip(),
        metadata={"landing_page": dg.MetadataValue.url(source.landing_page), "license": source.license,
                  "download_method": spec.method, "approx_size_gb": source.approx_size_gb},
        tags={"evaluation_only": "true"} if source.evaluation_only else None,
    )
    def raw(context: dg.AssetExecutionContext, data: DataHomeResource) -> dg.MaterializeResult:
        raw_dir = data.home().raw_dir(source.dir_name)
        if spec.method == "demo":
            generate(source, raw_dir, seed)
            context.log.info(f"wrote demo source {source.dir_name} to {raw_dir}")
        elif not raw_dir.is_dir() or not any(raw_dir.iterdir()):
            raise dg.Failure(
                description=f"{source.dir_name}: no files under {raw_dir}. To provide them: {spec.instructions()}, into {raw_dir}.",
                metadata={"expected_at": dg.MetadataValue.path(str(raw_dir)), "landing_page": dg.MetadataValue.url(source.landing_page)},
            )
        return dg.MaterializeResult(metadata={"path": dg.MetadataValue.path(str(raw_dir)), **_folder_summary(raw_dir)})

    return raw


def _table_asset(source: Source) -> dg.AssetsDefinition:
    @dg.asset(
        key=table_key(source),
        deps=[raw_key(source)],
        group_name=GROUP,
        kinds={"pandas", "parquet"},
        description=f"Standardized metadata of {source.name}: one row per (multi-channel) image, parser {source.parser!r}.",
        tags={"evaluation_only": "true"} if source.evaluation_only else None,
    )
    def source_metadata(context: dg.AssetExecutionContext, data: DataHomeResource) -> dg.MaterializeResult:
        home = data.home()
        raw_dir = home.raw_dir(source.dir_name)
        try:
            parsed = parse_source(source, raw_dir)
        except ParseError as exc:
            raise dg.Failure(description=str(exc)) from exc
        path = write_parquet(parsed.table, home.table_path("source_metadata", source.dir_name))
        missing = missing_files(parsed.table, raw_dir)
        no_files = int((parsed.table["channel_paths"].map(len) == 0).sum())
        if len(parsed.rejects):
            context.log.warning(f"{source.dir_name}: {len(parsed.rejects)} rows could not be used; see the 'rejected_rows' metadata")
        return dg.MaterializeResult(metadata={
            **table_metadata(parsed.table, path),
            "rejected_rows": len(parsed.rejects),
            "rejected_rows_sample": dg.MetadataValue.md(markdown_table(parsed.rejects, max_rows=20) if len(parsed.rejects) else "none"),
            "referenced_files": parsed.referenced_files,
            "missing_files": len(missing),
            "rows_without_image_files": no_files,
        })

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
