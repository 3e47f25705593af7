"""What the UI shows for a table: row count, column schema, preview, label counts per category."""

import base64

import dagster as dg
import numpy as np
import pandas as pd

from cytoimagenet_assets.sources.table import LABEL_CATEGORIES, label_counts

DAGSTER_TYPES = {"string": "string", "int64": "int", "Int64": "int", "float64": "float", "bool": "bool", "object": "list"}


def markdown_table(df: pd.DataFrame, max_rows: int = 10) -> str:
    """A small frame as a markdown table (lists shortened, pipes escaped)."""
    def cell(value) -> str:
        if isinstance(value, (list, tuple, np.ndarray)):
            items = list(value)
            value = ", ".join(map(str, items[:3])) + (f" … (+{len(items) - 3})" if len(items) > 3 else "")
        return "" if value is None or value is pd.NA else str(value).replace("|", "\\|").replace("\n", " ")

    head = df.head(max_rows)
    lines = ["| " + " | ".join(map(str, head.columns)) + " |", "|" + "---|" * len(head.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in head.itertuples(index=False)]
    return "\n".join(lines)


def label_counts_markdown(df: pd.DataFrame, top: int = 15) -> str:
    counts = label_counts(df, top=top)
    totals = {c: int(df[c].dropna().str.split("|").explode().nunique()) for c in LABEL_CATEGORIES}
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
        "distinct_labels": dg.MetadataValue.json({c: int(df[c].dropna().str.split("|").explode().nunique()) for c in LABEL_CATEGORIES}),
        "preview": dg.MetadataValue.md(markdown_table(df)),
    }


def png_markdown(png: bytes, title: str) -> dg.MarkdownMetadataValue:
    """A PNG shown inline in the asset's metadata."""
    return dg.MetadataValue.md(f"![{title}](data:image/png;base64,{base64.b64encode(png).decode()})")
