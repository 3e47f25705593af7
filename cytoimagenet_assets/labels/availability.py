"""Which rows of the merged table can become images, and why the others cannot.

Only rows that can become images take part in label assignment: a row without image files (an
IDR study annotated per well whose files are not known, one row per well) or one whose files are
neither on disk nor on a remote the source was indexed from would count towards a label's
threshold and fill a class that then shrinks or fails when its images are built. The original
assigned labels over rows whose files it had downloaded; this is the same rule for a pipeline that
fetches images on demand.
"""

from __future__ import annotations

from typing import Collection, Mapping

import pandas as pd

NO_FILES = "metadata only: the row names no image file"
NOT_OBTAINABLE = "image files neither on disk nor in the source's remote index"
SUMMARY_COLUMNS = ["dir_name", "reason", "rows"]


def unavailable_reasons(merged: pd.DataFrame, obtainable: Mapping[str, Collection[str] | None]) -> pd.Series:
    """Per row of ``merged`` (dir_name, channel_paths) why it cannot become an image, or <NA>.

    ``obtainable[dir_name]`` holds the paths (relative to the source's raw folder) that are on disk
    or in its remote index; ``None`` means any path can be fetched (an IDR study whose mirror has
    not been listed: every file of the study lies at its path there). A source missing from the
    mapping obtains nothing.
    """
    reasons = pd.Series(pd.NA, index=merged.index, dtype="string")
    has_files = merged["channel_paths"].map(len) > 0
    reasons[~has_files] = NO_FILES
    for dir_name, rows in merged[has_files].groupby("dir_name", observed=True, sort=False):
        files = obtainable.get(dir_name, ())
        if files is None:
            continue
        lacking = rows["channel_paths"].map(lambda paths: not all(p in files for p in paths))
        reasons[lacking[lacking].index] = NOT_OBTAINABLE
    return reasons


def unavailable_summary(merged: pd.DataFrame, reasons: pd.Series) -> pd.DataFrame:
    """Rows left out of label assignment per source and reason (dir_name, reason, rows)."""
    left_out = merged.loc[reasons.notna(), ["dir_name"]].assign(reason=reasons[reasons.notna()])
    return (
        left_out.groupby(["dir_name", "reason"], observed=True)
        .size()
        .rename("rows")
        .reset_index()
        .sort_values(["dir_name", "reason"])
        .reset_index(drop=True)[SUMMARY_COLUMNS]
    )
