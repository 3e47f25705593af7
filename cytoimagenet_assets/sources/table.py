"""The standardized metadata table every parser produces, and the label normalization it applies.

One row per (multi-channel) image, or per ``region`` of one (see :mod:`regions`). Parsers return
a *draft* frame with whatever columns their source knows; :func:`standardize` fills the catalog's
defaults, normalizes labels, validates regions, orders rows deterministically and assigns ``idx``.
:func:`table_problems` is the contract the asset checks enforce.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Callable

import pandas as pd
import yaml

from cytoimagenet_assets.catalog import BUILTIN_DIR, Source
from cytoimagenet_assets.catalog.settings import LABEL_CATEGORIES
from cytoimagenet_assets.errors import StepFailed
from cytoimagenet_assets.markdown import Markdown, bullets, markdown_table, table
from cytoimagenet_assets.sources.regions import order_key, region_problem

STRING_COLUMNS = (
    "idx",
    "database",
    "name",
    "dir_name",
    *LABEL_CATEGORIES,
    "microscopy",
    "plate",
    "well",
    "field",
    "region",
    "source_file",
)
LIST_COLUMNS = ("channel_names", "channel_paths")
COLUMNS = (*STRING_COLUMNS, *LIST_COLUMNS, "source_row")
REQUIRED = ("idx", "database", "name", "dir_name", "microscopy", "source_file")
REJECT_COLUMNS = ("source_file", "source_row", "reason")
JOIN_MISS_COLUMNS = ("table", "key", "rows")
GENE_SUFFIX = " targeted"
# A Broad compound id with its salt, batch and check digit (BRD-A04438777-001-03-6): the compound is BRD-A04438777.
LONG_BROAD_ID = re.compile(r"^\s*(BRD-[A-Z]\d{8})(?:-\d+)+\s*$", re.IGNORECASE)
FLUORESCENT = ("fluorescence", "confocal", "super_resolution")


@dataclass
class ParsedSource:
    """A parser's result: the standardized table, the rows it could not use (with reasons), and the
    keys of its rows that an annotation table it joins does not hold (``join_misses``: the table,
    the key, how many rows carry it) — those rows are kept, without the annotation's labels."""

    table: pd.DataFrame
    rejects: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(REJECT_COLUMNS)))
    join_misses: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(JOIN_MISS_COLUMNS)))

    @property
    def referenced_files(self) -> int:
        return int(self.table["channel_paths"].map(len).sum())

    def report(self, raw_dir: Path) -> dict:
        """Rows that could not be used, files referenced and missing under ``raw_dir``, rows without
        files, and the keys an annotation table lacks (those rows stay, unlabelled by it)."""
        return {
            "rejected_rows": len(self.rejects),
            "rejected_rows_sample": table(self.rejects, max_rows=20, empty="none"),
            "referenced_files": self.referenced_files,
            "missing_files": len(missing_files(self.table, raw_dir)),
            "rows_without_image_files": int((self.table["channel_paths"].map(len) == 0).sum()),
            "annotation_join_misses": int(self.join_misses["rows"].sum()),
            "annotation_join_misses_sample": table(self.join_misses, max_rows=20, empty="none"),
        }


class ParseError(StepFailed, ValueError):
    """A source's metadata cannot be parsed; the message names the source, file and row."""


def rejects_frame(records: list[tuple[str, int, str]]) -> pd.DataFrame:
    return pd.DataFrame(records, columns=list(REJECT_COLUMNS)).astype({"source_row": "int64"})


@lru_cache(maxsize=1)
def vocabulary() -> tuple[frozenset[str], dict[str, dict[str, str | None]]]:
    raw = yaml.safe_load((BUILTIN_DIR / "vocabulary.yaml").read_text(encoding="utf-8"))
    nulls = frozenset(_squash(v) for v in raw["null_values"])
    synonyms = {cat: {_squash(k): (None if v is None else _squash(v)) for k, v in (m or {}).items()} for cat, m in raw["synonyms"].items()}
    return nulls, synonyms


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", str(text)).strip().lower()


def short_broad_id(text: str) -> str:
    """A long Broad id as its compound's (``BRD-A04438777-001-03-6`` → ``BRD-A04438777``), so that
    batches and salts of one compound join the tables keyed by compound and share its label; any
    other text unchanged."""
    match = LONG_BROAD_ID.match(text)
    return match.group(1) if match else text


def normalize_label(value, category: str) -> str | None:
    """Lowercase, trim, map synonyms, null the blanks, suffix genes, join multi-labels with '|';
    compounds named by a long Broad id become the compound's short id.

    Idempotent: a normalized value normalizes to itself (the asset check relies on that).
    """
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    nulls, synonyms = vocabulary()
    own, common = synonyms.get(category, {}), synonyms.get("any", {})
    tokens: list[str] = []
    for token in str(value).split("|"):
        token = _squash(token)
        if category == "phenotype":
            token = _squash(token.replace("*", " -- "))
        if category == "compound":
            token = short_broad_id(token)
        if category == "gene" and token.endswith(GENE_SUFFIX):
            token = token[: -len(GENE_SUFFIX)].strip()
        if token in own:
            token = own[token]
        elif token in common:
            token = common[token]
        if token is None or token in nulls:
            continue
        if category == "gene":
            token += GENE_SUFFIX
        if token not in tokens:
            tokens.append(token)
    return "|".join(tokens) or None


def normalize_column(values: pd.Series, category: str) -> pd.Series:
    """:func:`normalize_label` over a column, computed once per distinct value."""
    mapping = {v: normalize_label(v, category) for v in values.dropna().unique()}
    return values.map(mapping).astype("string")


def escapes(relative: str) -> bool:
    """Whether a file name from a source's metadata would point outside its raw folder."""
    path = PurePosixPath(relative.replace("\\", "/"))
    return path.is_absolute() or ".." in path.parts or re.match(r"^[A-Za-z]:", relative) is not None


def standardize(draft: pd.DataFrame, source: Source) -> pd.DataFrame:
    """Turn a parser's draft rows into the standardized table of ``source``.

    The draft must hold ``source_file``, ``source_row``, ``channel_names`` and ``channel_paths``;
    label columns it lacks are filled from the catalog's defaults. Rows are ordered by
    (source_file, source_row, field, region, paths) so that ``idx = <dir_name>-<n>`` is the same on
    every rerun over the same inputs. A malformed ``region`` fails the source naming file and row.
    """
    missing = [c for c in ("source_file", "source_row", "channel_names", "channel_paths") if c not in draft]
    if missing:
        raise ParseError(f"{source.dir_name}: parser {source.parser!r} returned no {', '.join(missing)} column")
    df = draft.reset_index(drop=True)  # a copy, with unique labels
    for column in COLUMNS:
        if column not in df:
            df[column] = None
    defaults = source.defaults
    for column in ("organism", "cell_type", "microscopy"):
        default = getattr(defaults, column)
        if default is not None:
            df[column] = df[column].where(df[column].notna(), default)
    # What an image shows defaults to the catalog's value, else (fluorescence) to its stains.
    # Parsers write '' for images known to show no stain (a brightfield channel), which stays empty.
    if defaults.cell_visible is not None:
        df["cell_visible"] = df["cell_visible"].where(df["cell_visible"].notna(), defaults.cell_visible)
    else:
        stains = df["channel_names"].map(lambda names: "|".join(names))
        df["cell_visible"] = df["cell_visible"].where(df["cell_visible"].notna() | ~df["microscopy"].isin(FLUORESCENT), stains)
    df["database"], df["name"], df["dir_name"] = source.database, source.name, source.dir_name
    for category in LABEL_CATEGORIES:
        df[category] = normalize_column(df[category], category)
    df["channel_paths"] = df["channel_paths"].map(lambda v: [str(p) for p in v])
    escaping = df["channel_paths"].map(lambda paths: next((p for p in paths if escapes(p)), None))
    if escaping.notna().any():
        row = df.loc[escaping.notna()].iloc[0]
        raise ParseError(
            f"{source.dir_name}: {row['source_file']} row {row['source_row']}: image path {escaping[row.name]!r} "
            f"is absolute or climbs out of the source's raw folder; paths must stay inside it"
        )
    regions = df["region"].dropna()  # most sources have none: only their rows are parsed
    malformed = regions.map(region_problem).dropna()
    if len(malformed):
        row = df.loc[malformed.index[0]]
        raise ParseError(f"{source.dir_name}: {row['source_file']} row {row['source_row']}: {malformed.iloc[0]}")
    df["channel_names"] = df["channel_names"].map(lambda v: [str(p) for p in v])
    df["source_row"] = df["source_row"].astype("int64")
    df["_region"] = regions.map(order_key).reindex(df.index, fill_value="")  # numeric: top to bottom, then left to right
    df["_order"] = df["channel_paths"].map("/".join)
    df = df.sort_values(["source_file", "source_row", "field", "_region", "_order"], kind="stable", na_position="first")
    df["idx"] = [f"{source.dir_name}-{i}" for i in range(len(df))]
    df = df[list(COLUMNS)].reset_index(drop=True)
    return df.astype({c: "string" for c in STRING_COLUMNS})


def table_problems(df: pd.DataFrame) -> list[str]:
    """Everything that breaks the standardized-table contract (empty when the table is sound)."""
    problems = []
    absent = [c for c in COLUMNS if c not in df.columns]
    if absent:
        return [f"missing columns: {', '.join(absent)}"]
    extra = [c for c in df.columns if c not in COLUMNS]
    if extra:
        problems.append(f"unexpected columns: {', '.join(extra)}")
    for column in STRING_COLUMNS:
        if not (pd.api.types.is_string_dtype(df[column]) or df[column].isna().all()):
            problems.append(f"column {column} has dtype {df[column].dtype}, expected string")
    if not pd.api.types.is_integer_dtype(df["source_row"]):
        problems.append(f"column source_row has dtype {df['source_row'].dtype}, expected int64")
    for column in REQUIRED:
        nulls = int(df[column].isna().sum())
        if nulls:
            problems.append(f"column {column} has {nulls} null values")
    for column in LIST_COLUMNS:
        bad = int((~df[column].map(lambda v: hasattr(v, "__len__") and not isinstance(v, str))).sum())
        if bad:
            problems.append(f"column {column} has {bad} values that are not lists")
    malformed = df["region"].dropna().map(region_problem).dropna()
    if len(malformed):
        problems.append(f"column region has {len(malformed)} malformed values (first: {malformed.iloc[0]})")
    if not problems:
        mismatched = int((df["channel_names"].map(len) != df["channel_paths"].map(len)).sum())
        if mismatched:
            problems.append(f"{mismatched} rows have a different number of channel names and paths")
    return problems


def duplicate_idx(df: pd.DataFrame) -> list[str]:
    return sorted(df.loc[df["idx"].duplicated(keep=False), "idx"].unique().tolist())


def unnormalized_labels(df: pd.DataFrame) -> dict[str, list[str]]:
    """Label values that :func:`normalize_label` would change, per category."""
    found = {}
    for category in LABEL_CATEGORIES:
        values = df[category].dropna().unique()
        bad = [v for v in values if normalize_label(v, category) != v]
        if bad:
            found[category] = sorted(bad)[:20]
    return found


def missing_files(df: pd.DataFrame, raw_dir: Path) -> pd.DataFrame:
    """Rows whose channel files are absent under ``raw_dir`` (idx, path), one row per missing file."""
    exploded = df[["idx", "channel_paths"]].explode("channel_paths").dropna(subset=["channel_paths"])
    exists = exploded["channel_paths"].map(lambda p: (raw_dir / p).is_file())
    return exploded.loc[~exists].rename(columns={"channel_paths": "path"}).reset_index(drop=True)


def distinct_labels(df: pd.DataFrame) -> dict[str, int]:
    """How many different labels each category holds (multi-labels split on '|')."""
    return {c: int(df[c].dropna().str.split("|").explode().nunique()) for c in LABEL_CATEGORIES}


def label_counts(df: pd.DataFrame, top: int | None = None) -> dict[str, dict[str, int]]:
    """Images per label per category, multi-labels split on '|' (most frequent first)."""
    counts = {}
    for category in LABEL_CATEGORIES:
        series = df[category].dropna().str.split("|").explode().value_counts()
        counts[category] = {str(k): int(v) for k, v in (series.head(top) if top else series).items()}
    return counts


# The checks of a standardized table (a source's or the merged one): each gives (passed, report).
def schema_check(df: pd.DataFrame) -> tuple[bool, dict]:
    problems = table_problems(df)
    return not problems, {"problems": bullets(problems)}


def unique_idx_check(df: pd.DataFrame) -> tuple[bool, dict]:
    duplicates = duplicate_idx(df)
    return not duplicates, {"duplicated": len(duplicates), "examples": duplicates[:20]}


def files_exist_check(df: pd.DataFrame, raw_dir: Callable[[str], Path]) -> tuple[bool, dict]:
    """Every channel file a row names is under its source's raw folder (``raw_dir(dir_name)``)."""
    missing = pd.concat(
        [missing_files(group, raw_dir(d)) for d, group in df.groupby("dir_name", observed=True)] or [pd.DataFrame(columns=["idx", "path"])]
    )
    no_files = int((df["channel_paths"].map(len) == 0).sum())
    report = {"missing_files": len(missing), "rows_without_image_files": no_files, "examples": table(missing, max_rows=20, empty="none")}
    return missing.empty and no_files == 0, report


def labels_normalized_check(df: pd.DataFrame) -> tuple[bool, dict]:
    bad = unnormalized_labels(df)
    return not bad, {"unnormalized": bad}


def table_report(df: pd.DataFrame, path: Path) -> dict:
    """What a standardized table shows: rows, path, label counts per category (top 15), a preview."""
    counts, totals = label_counts(df, top=15), distinct_labels(df)
    parts = []
    for category in LABEL_CATEGORIES:
        rows = counts[category]
        parts.append(f"**{category}** — {totals[category]} distinct labels" + (f", top {len(rows)}:" if rows else ""))
        if rows:
            parts.append(markdown_table(pd.DataFrame({"label": list(rows), "images": list(rows.values())}), max_rows=15))
    return {
        "dagster/row_count": len(df),
        "path": Path(path),
        "label_counts": Markdown("\n\n".join(parts)),
        "distinct_labels": totals,
        "preview": table(df),
    }
