"""Small markdown tables, for the UI's metadata and the dataset card alike."""

from __future__ import annotations

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
