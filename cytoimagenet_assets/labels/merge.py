"""Merge the standardized tables of the pretraining sources into one."""

from __future__ import annotations

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


def drop_overlaps(merged: pd.DataFrame, overlaps: dict[str, tuple[str, ...]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Drop rows that show an image another source also lists (BBBC022's plates are inside idr0016).

    ``overlaps`` maps a source to the sources holding the same images (the catalog's ``overlaps``).
    Two rows are the same image when plate, well, field, region and microscopy agree (case and surrounding
    blanks ignored; rows without plate or well never match). Of each pair the row with image files
    is kept, the other source's when both have them; the kept row takes any label it lacks from the
    dropped one, so no label is lost. Returns the table and one summary row per source pair.
    """
    keyed = merged[list(OVERLAP_KEY)].apply(lambda c: c.str.strip().str.lower()).fillna("")
    has_files = merged["channel_paths"].map(len) > 0
    usable = (keyed["plate"] != "") & (keyed["well"] != "")
    table = merged.copy()
    dropped: list[int] = []
    summary = []
    for source, others in overlaps.items():
        for other in others:
            mine = keyed[usable & (merged["dir_name"] == source)].drop_duplicates(list(OVERLAP_KEY))
            theirs = keyed[usable & (merged["dir_name"] == other)].drop_duplicates(list(OVERLAP_KEY))
            pairs = mine.reset_index(names="a").merge(theirs.reset_index(names="b"), on=list(OVERLAP_KEY))[["a", "b"]]
            keep_mine = has_files[pairs["a"]].to_numpy() & ~has_files[pairs["b"]].to_numpy()
            keep = pairs["a"].where(keep_mine, pairs["b"]).to_numpy()
            drop = pairs["b"].where(keep_mine, pairs["a"]).to_numpy()
            carried = 0
            for category in LABEL_CATEGORIES:
                fill = table.loc[keep, category].isna().to_numpy() & table.loc[drop, category].notna().to_numpy()
                table.loc[keep[fill], category] = table.loc[drop[fill], category].to_numpy()
                carried += int(fill.sum())
            dropped.extend(drop.tolist())
            summary.append({"source": source, "inside": other, "duplicate_rows": len(pairs),
                            "dropped_from_source": int((~keep_mine).sum()), "dropped_from_inside": int(keep_mine.sum()),
                            "labels_carried_over": carried})
    report = pd.DataFrame(summary, columns=["source", "inside", "duplicate_rows", "dropped_from_source", "dropped_from_inside",
                                            "labels_carried_over"])
    return table.drop(index=sorted(set(dropped))).reset_index(drop=True), report
