"""What a step shows about its result: markdown tables and text, figures — plain values that the Dagster
layer turns into metadata (``defs.metadata.as_metadata``), for the UI and the dataset card alike — and
the header (and warning banner) that every report and card opens with."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import pandas as pd


def markdown_table(df: pd.DataFrame, max_rows: int = 10) -> str:
    """A frame as a markdown table (its first ``max_rows`` rows; lists shortened, pipes escaped)."""

    def cell(value) -> str:
        if isinstance(value, (list, tuple, np.ndarray)):
            items = list(value)
            value = ", ".join(map(str, items[:3])) + (f" … (+{len(items) - 3})" if len(items) > 3 else "")
        return "" if value is None or value is pd.NA else str(value).replace("|", "\\|").replace("\n", " ")

    head = df.head(max_rows)
    lines = ["| " + " | ".join(map(str, head.columns)) + " |", "|" + "---|" * len(head.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in head.itertuples(index=False)]
    return "\n".join(lines)


class Markdown(str):
    """Text meant to be rendered as markdown (the UI renders it; CLIs print it as it is)."""


@dataclass(frozen=True)
class Figure:
    """A figure (PNG unless ``mime`` says otherwise) and its title, shown inline: keep it small
    where one is made per partition, as each is stored in the event log."""

    png: bytes
    title: str
    mime: str = "image/png"


def table(df: pd.DataFrame, max_rows: int = 10, empty: str | None = None) -> Markdown:
    """:func:`markdown_table` as Markdown; ``empty`` instead when ``df`` has no rows (if given)."""
    return Markdown(empty if empty is not None and not len(df) else markdown_table(df, max_rows))


def bullets(items: list[str], empty: str = "none") -> Markdown:
    return Markdown("\n".join(f"- {item}" for item in items) or empty)


def header_fields(catalog: str | None, model_run: str | None, fingerprint: str | None, when: datetime | None) -> dict[str, str]:
    """What a report or card is about — catalog, model run, the training data's fingerprint — and
    when it was made (UTC, ISO 8601), so that a figure copied out of it still says where it came from;
    an absent value reads "none". ``when`` None leaves the date out, for a file the same inputs must
    give byte for byte (the dataset card)."""
    fields = {"catalog": catalog or "none", "model_run": model_run or "none", "data_fingerprint": fingerprint or "none"}
    if when is not None:
        fields["date"] = when.astimezone(timezone.utc).isoformat(timespec="seconds")
    return fields


def report_header(catalog: str | None, model_run: str | None, fingerprint: str | None, when: datetime | None) -> list[str]:
    """:func:`header_fields` as the Markdown lines that open a report or card (under its title)."""
    fields = header_fields(catalog, model_run, fingerprint, when)
    names = {"catalog": "Catalog", "model_run": "Model run", "data_fingerprint": "Data fingerprint", "date": "Date (UTC)"}
    return [f"- **{names[key]}**: `{value}`" for key, value in fields.items()] + [""]


def pipeline_check_note(reasons: list[str]) -> str:
    """The warning that a report's figures mean nothing beyond "it runs" (synthetic data, too few
    samples), with why, as one sentence; "" when there is no reason."""
    return f"These figures only show that the pipeline runs: {'; '.join(reasons)}." if reasons else ""


def pipeline_check_banner(reasons: list[str]) -> list[str]:
    """:func:`pipeline_check_note` as the Markdown lines that open a report, under its header."""
    note = pipeline_check_note(reasons)
    return [f"> **{note}**", ""] if note else []
