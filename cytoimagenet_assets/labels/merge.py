"""Merge the standardized tables of the pretraining sources into one."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cytoimagenet_assets.sources.table import COLUMNS, LABEL_CATEGORIES, duplicate_idx, table_problems


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


OVERLAP_KEY = ("plate", "well", "field", "region", "microscopy")


WELL_KEY = ("plate", "well", "microscopy")


def drop_overlaps(merged: pd.DataFrame, overlaps: dict[str, tuple[str, ...]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Drop rows that show an image another source also lists (BBBC022's plates are inside idr0016).

    ``overlaps`` maps a source to the sources holding the same images (the catalog's ``overlaps``,
    declared on either side or both; each pair is handled once). Rows without plate or well never
    match; case and surrounding blanks are ignored. Two kinds of duplicate:

    * the same image: plate, well, field, region and microscopy agree. The row with image files is
      kept, the declaring source's when both have them;
    * a metadata-only row without a field (an IDR screen annotated per well, before its files are
      known) stands for its whole well: it is dropped for the rows of the other source that show
      that well's fields.

    The kept rows take any label they lack from the dropped one, so no label is lost. Returns the
    table and one summary row per source pair.
    """
    keyed = merged[list(OVERLAP_KEY)].apply(lambda c: c.str.strip().str.lower()).fillna("")
    has_files = merged["channel_paths"].map(len) > 0
    usable = (keyed["plate"] != "") & (keyed["well"] != "")
    table = merged.copy()
    dropped: set[int] = set()
    summary = []

    def carry(keep: np.ndarray, drop: np.ndarray) -> int:
        filled = 0
        for category in LABEL_CATEGORIES:
            fill = table.loc[keep, category].isna().to_numpy() & table.loc[drop, category].notna().to_numpy()
            table.loc[keep[fill], category] = table.loc[drop[fill], category].to_numpy()
            filled += int(fill.sum())
        return filled

    for source, other in _pairs(overlaps):

        def rows(dir_name: str) -> pd.DataFrame:
            live = usable & (merged["dir_name"] == dir_name) & ~merged.index.isin(list(dropped))
            return keyed[live].assign(files=has_files[live]).reset_index(names="row")

        mine, theirs = rows(source), rows(other)
        same = mine.drop_duplicates(list(OVERLAP_KEY)).merge(theirs.drop_duplicates(list(OVERLAP_KEY)), on=list(OVERLAP_KEY))
        keep_mine = (same["files_x"] & ~same["files_y"]).to_numpy()
        keep, drop = np.where(keep_mine, same["row_x"], same["row_y"]), np.where(keep_mine, same["row_y"], same["row_x"])
        carried = carry(keep, drop)
        dropped.update(drop.tolist())
        from_source, from_inside = int((~keep_mine).sum()), int(keep_mine.sum())

        mine, theirs = rows(source), rows(other)
        for wells, shown, drops_mine in ((mine, theirs, True), (theirs, mine, False)):
            whole = wells[(wells["field"] == "") & ~wells["files"]]
            fields = shown[shown["files"]]
            matched = whole.merge(fields, on=list(WELL_KEY), suffixes=("_well", "_field"))
            if len(matched):
                carried += carry(matched["row_field"].to_numpy(), matched["row_well"].to_numpy())
                gone = set(matched["row_well"].tolist())
                dropped.update(gone)
                from_source, from_inside = (from_source + len(gone), from_inside) if drops_mine else (from_source, from_inside + len(gone))
        summary.append(
            {
                "source": source,
                "inside": other,
                "duplicate_rows": from_source + from_inside,
                "dropped_from_source": from_source,
                "dropped_from_inside": from_inside,
                "labels_carried_over": carried,
            }
        )
    report = pd.DataFrame(
        summary, columns=["source", "inside", "duplicate_rows", "dropped_from_source", "dropped_from_inside", "labels_carried_over"]
    )
    return table.drop(index=sorted(dropped)).reset_index(drop=True), report


def _pairs(overlaps: dict[str, tuple[str, ...]]) -> list[tuple[str, str]]:
    """Each overlapping pair once, as (the source that declared it first, the other)."""
    seen: set[frozenset] = set()
    pairs = []
    for source, others in overlaps.items():
        for other in others:
            if frozenset((source, other)) not in seen:
                seen.add(frozenset((source, other)))
                pairs.append((source, other))
    return pairs
