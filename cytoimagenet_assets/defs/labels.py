"""The label-side tables: ``merged_metadata`` (every pretraining source in one table)."""


import dagster as dg

from cytoimagenet_assets.catalog import Catalog
from cytoimagenet_assets.defs.metadata import markdown_table, table_metadata
from cytoimagenet_assets.defs.resources import DataHomeResource, redacted
from cytoimagenet_assets.defs.sources import table_key
from cytoimagenet_assets.labels.merge import merge_sources
from cytoimagenet_assets.storage import read_parquet, write_parquet, write_sql_table

GROUP = "labels"
MERGED_KEY = dg.AssetKey("merged_metadata")


def merged_metadata_asset(catalog: Catalog) -> dg.AssetsDefinition:
    sources = catalog.pretraining_sources

    @dg.asset(
        key=MERGED_KEY,
        deps=[table_key(s) for s in sources],
        group_name=GROUP,
        kinds={"pandas", "parquet", "sql"},
        description="Every pretraining source's standardized metadata in one table (evaluation sets excluded), "
                    "also written to the SQL catalog as table merged_metadata.",
    )
    def merged_metadata(context: dg.AssetExecutionContext, data: DataHomeResource) -> dg.MaterializeResult:
        home = data.home()
        tables = {s.dir_name: read_parquet(home.table_path("source_metadata", s.dir_name)) for s in sources}
        merged = merge_sources(tables)
        path = write_parquet(merged, home.table_path("merged_metadata"))
        rows = write_sql_table(merged, "merged_metadata", home.db_url)
        context.log.info(f"merged {len(merged)} rows from {len(tables)} sources into {path} and the SQL catalog")
        per_source = merged.groupby(["database", "dir_name"], observed=True).size().rename("images").reset_index()
        return dg.MaterializeResult(metadata={
            **table_metadata(merged, path),
            "images_per_source": dg.MetadataValue.md(markdown_table(per_source, max_rows=len(per_source))),
            "sql_catalog": redacted(home.db_url),
            "sql_rows": rows,
        })

    return merged_metadata
