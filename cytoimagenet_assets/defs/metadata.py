"""Metadata for the UI: a step's report of plain values as Dagster metadata, check results, and what a
table shows (row count, column schema, preview, label counts per category)."""

import base64
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from cytoimagenet_assets.markdown import Figure, Markdown, bullets
from cytoimagenet_assets.sources.table import table_report

DAGSTER_TYPES = {"string": "string", "int64": "int", "Int64": "int", "float64": "float", "bool": "bool", "object": "list"}


def table_metadata(df: pd.DataFrame, path) -> dict:
    """A standardized table's report, with its column schema."""
    schema = dg.TableSchema(columns=[dg.TableColumn(c, DAGSTER_TYPES.get(str(t), str(t))) for c, t in df.dtypes.items()])
    return {**as_metadata(table_report(df, path)), "dagster/column_schema": schema}


def metadata_value(value):
    """One report value as Dagster metadata: markdown rendered, figures inline, paths as paths,
    mappings and lists as JSON, numbers and text as they are."""
    if isinstance(value, (dg.MetadataValue, dg.TableSchema)):
        return value
    if isinstance(value, Markdown):
        return dg.MetadataValue.md(str(value))
    if isinstance(value, Figure):
        return dg.MetadataValue.md(f"![{value.title}](data:{value.mime};base64,{base64.b64encode(value.png).decode()})")
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
