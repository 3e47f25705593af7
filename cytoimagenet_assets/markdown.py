"""What a step shows about its result: markdown tables and text, figures — plain values that the Dagster
layer turns into metadata (``defs.metadata.as_metadata``), for the UI and the dataset card alike."""

from __future__ import annotations

from dataclasses import dataclass

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
