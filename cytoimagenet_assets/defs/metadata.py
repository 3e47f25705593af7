"""What the UI shows for a table: row count, column schema, preview, label counts per category."""

import base64

import dagster as dg
import pandas as pd

from cytoimagenet_assets.markdown import markdown_table
from cytoimagenet_assets.sources.table import LABEL_CATEGORIES, distinct_labels, label_counts

DAGSTER_TYPES = {"string": "string", "int64": "int", "Int64": "int", "float64": "float", "bool": "bool", "object": "list"}


def label_counts_markdown(df: pd.DataFrame, top: int = 15) -> str:
    counts = label_counts(df, top=top)
    totals = distinct_labels(df)
    parts = []
    for category in LABEL_CATEGORIES:
        rows = counts[category]
        parts.append(f"**{category}** — {totals[category]} distinct labels" + (f", top {len(rows)}:" if rows else ""))
        if rows:
            parts.append(markdown_table(pd.DataFrame({"label": list(rows), "images": list(rows.values())}), max_rows=top))
    return "\n\n".join(parts)


def table_metadata(df: pd.DataFrame, path) -> dict:
    schema = dg.TableSchema(columns=[dg.TableColumn(c, DAGSTER_TYPES.get(str(t), str(t))) for c, t in df.dtypes.items()])
    return {
        "dagster/row_count": len(df),
        "dagster/column_schema": schema,
        "path": dg.MetadataValue.path(str(path)),
        "label_counts": dg.MetadataValue.md(label_counts_markdown(df)),
        "distinct_labels": dg.MetadataValue.json(distinct_labels(df)),
        "preview": dg.MetadataValue.md(markdown_table(df)),
    }


def png_markdown(png: bytes, title: str) -> dg.MarkdownMetadataValue:
    """A PNG shown inline in the asset's metadata."""
    return dg.MetadataValue.md(f"![{title}](data:image/png;base64,{base64.b64encode(png).decode()})")
