"""Merge the standardized tables of the pretraining sources into one."""

from __future__ import annotations

import pandas as pd

from cytoimagenet_assets.sources.table import COLUMNS, duplicate_idx, table_problems


def merge_sources(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Concatenate per-source tables (in the given order), refusing any that break the contract.

    Each table must hold only its own source's rows; ``idx`` must stay unique across sources.
    """
    for dir_name, table in tables.items():
        problems = table_problems(table)
        if problems:
            raise ValueError(f"source_metadata/{dir_name} is not a standardized table: {'; '.join(problems)}")
        foreign = set(table["dir_name"].dropna().unique()) - {dir_name}
        if foreign:
            raise ValueError(f"source_metadata/{dir_name} holds rows of other sources: {sorted(foreign)}")
    if not tables:
        raise ValueError("no pretraining sources in the catalog")
    merged = pd.concat([t[list(COLUMNS)] for t in tables.values()], ignore_index=True)
    clashes = duplicate_idx(merged)
    if clashes:
        raise ValueError(f"idx values appear in more than one row: {clashes[:10]}")
    return merged
