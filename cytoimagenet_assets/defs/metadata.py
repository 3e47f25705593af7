"""Metadata for the UI: a step's report of plain values as Dagster metadata, check results, and what a
table shows (row count, column schema, preview, label counts per category)."""

import base64
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from cytoimagenet_assets.markdown import Figure, Markdown, bullets, markdown_table
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


def metadata_value(value):
    """One report value as Dagster metadata: markdown rendered, figures inline, paths as paths,
    mappings and lists as JSON, numbers and text as they are."""
    if isinstance(value, (dg.MetadataValue, dg.TableSchema)):
        return value
    if isinstance(value, Markdown):
        return dg.MetadataValue.md(str(value))
    if isinstance(value, Figure):
        return png_markdown(value.png, value.title)
    if isinstance(value, Path):
        return dg.MetadataValue.path(str(value))
    if isinstance(value, (dict, list, tuple)):
        return dg.MetadataValue.json(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def as_metadata(report: dict) -> dict:
    return {key: metadata_value(value) for key, value in report.items()}


def result(report: dict, checks: dict[str, tuple[list[str], dict]] | None = None) -> dg.MaterializeResult:
    """A materialization of ``report`` with its checks: name -> (problems, extra report); a check
    passes when it found no problem, and shows the problems as a list."""
    check_results = [
        dg.AssetCheckResult(check_name=name, passed=not problems, metadata=as_metadata({"problems": bullets(problems), **extra}))
        for name, (problems, extra) in (checks or {}).items()
    ]
    return dg.MaterializeResult(metadata=as_metadata(report), check_results=check_results)
