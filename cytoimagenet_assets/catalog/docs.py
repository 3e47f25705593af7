"""The per-source documentation page, generated from a catalog so it can never disagree with it.

    python -m cytoimagenet_assets.catalog docs [--catalog cytoimagenet] [--out docs/sources.md]

For each source: size, license, what the pipeline downloads (metadata first, images on demand, or
everything), and how to provide the files by hand on a machine without network.
"""

from __future__ import annotations

import pandas as pd

from cytoimagenet_assets.catalog import Catalog, RemoteFile, Source
from cytoimagenet_assets.markdown import markdown_table


def _name(remote: RemoteFile) -> str:
    return remote.url.rstrip("/").rsplit("/", 1)[-1]


def _listing(files: list[RemoteFile]) -> str:
    shown = ", ".join(f"`{_name(f)}`" if f.values_from else f"[{_name(f)}]({f.url})" for f in files[:6])  # a {Column} URL is no link
    return shown + (f" and {len(files) - 6} more" if len(files) > 6 else "")


def what_is_fetched(source: Source) -> list[str]:
    """What ``raw/<dir_name>`` downloads by default and with ``full_download``, as bullet points."""
    spec = source.download
    metadata = [f for f in spec.files if f.role == "metadata"]
    images = [f for f in spec.files if f.role == "images"]
    zips = [f for f in images if f.indexed_remotely]
    whole = [f for f in images if not f.indexed_remotely]
    lines = []
    if spec.method in ("https", "idr") and metadata:
        lines.append(f"Metadata, downloaded whole: {_listing(metadata)}.")
    if zips:
        inside = sorted({p for f in zips for p in f.metadata_members})
        lines.append(
            f"Image archives, indexed through HTTP Range requests without downloading them: {_listing(zips)}. "
            "Only the members the class table needs are fetched, by the per-class image step"
            + (f"; the members matching {', '.join(f'`{p}`' for p in inside)} hold metadata and are fetched at once." if inside else ".")
        )
    for table in sorted({f.values_from for f in images if f.values_from}):
        columns = sorted({c for f in images if f.values_from == table for c in f.placeholders})
        lines.append(f"A `{{{'}`, `{'.join(columns)}}}` in a name stands for each value of that column in `{table}`: one file per value.")
    if whole:
        lines.append(f"Archives that cannot be read by range (not zip), downloaded and extracted whole: {_listing(whole)}.")
    if spec.method == "idr":
        lines.append(
            f"Images: the study's file list is read from the folder listings of the IDR mirror "
            f"https://ftp.ebi.ac.uk/pub/databases/IDR/{spec.accession}/; single files are fetched on demand "
            "(Aspera when `ascp` and its key are installed)."
            + "".join(
                f" Plates filed under another study are listed from https://ftp.ebi.ac.uk/pub/databases/IDR/{f}/ and kept under `{f}/`."
                for f in spec.filesets
            )
        )
    if spec.method in ("kaggle_dataset", "kaggle_competition"):
        kind = "dataset" if spec.method == "kaggle_dataset" else "competition"
        lines.append(
            f"The whole Kaggle {kind} `{spec.slug}` through the Kaggle API, extracted; needs `KAGGLE_USERNAME` and "
            "`KAGGLE_KEY`" + (" and the competition's rules accepted." if kind == "competition" else ".")
        )
    if spec.method == "manual":
        lines.append("Nothing automatically: the files are provided by hand (below).")
    if spec.method == "demo":
        lines.append(f"Nothing: the demo generator `{spec.generator}` writes synthetic images in the source's real layout.")
    if spec.method in ("https", "idr") and (zips or spec.method == "idr"):
        lines.append("`full_download: true` (the asset's config) fetches every file instead.")
    return lines


def source_section(source: Source) -> str:
    spec = source.download
    facts = pd.DataFrame(
        [
            ("database", source.database),
            ("landing page", source.landing_page),
            ("approximate size", f"{source.approx_size_gb:g} GB"),
            ("license", source.license),
            ("download method", spec.method),
            ("parser", source.parser or "none (read by its protocol)"),
            ("evaluation only", "yes" if source.evaluation_only else "no"),
            ("overlaps", ", ".join(source.overlaps) or "none"),
        ],
        columns=["", ""],
    )
    parts = [f"## {source.dir_name}: {source.name}", "", markdown_table(facts, max_rows=len(facts)), "", "**What is downloaded.**", ""]
    parts += [f"- {line}" for line in what_is_fetched(source)]
    parts += [
        "",
        f"**By hand, without network.** {spec.instructions()[0].upper()}{spec.instructions()[1:]}, into "
        f"`$CYTOIMAGENET_HOME/raw/{source.dir_name}/`, keeping the archives' own folder layout. A raw folder filled by hand is "
        "used as is; nothing is downloaded into it.",
    ]
    if spec.notes:
        parts += ["", f"Download notes: {spec.notes}"]
    if source.notes:
        parts += ["", f"Notes: {source.notes}"]
    return "\n".join(parts)


def sources_page(catalog: Catalog) -> str:
    summary = pd.DataFrame(
        [
            (
                f"[{s.dir_name}](#{s.dir_name}-{_anchor(s.name)})",
                s.name,
                s.database,
                f"{s.approx_size_gb:g}",
                s.license,
                s.download.method,
                "evaluation" if s.evaluation_only else "pretraining",
            )
            for s in catalog.sources
        ],
        columns=["dir_name", "name", "database", "size (GB)", "license", "download", "use"],
    )
    total = sum(s.approx_size_gb for s in catalog.sources)
    header = [
        f"# Sources of the `{catalog.name}` catalog",
        "",
        "Generated from the catalog by `python -m cytoimagenet_assets.catalog docs`; do not edit by hand "
        "(a test fails when it is out of date).",
        "",
        f"{len(catalog.sources)} sources, about {total:,.0f} GB in all. By default each source's `raw/` asset downloads its metadata "
        "and indexes its image archives; the per-class image step fetches only the images the class table selects.",
        "",
        markdown_table(summary, max_rows=len(summary)),
        "",
    ]
    return "\n".join(header + [source_section(s) + "\n" for s in catalog.sources])


def _anchor(text: str) -> str:
    """GitHub's heading anchor for the part of ``## dir: name`` after the dir_name."""
    kept = "".join(c for c in text.lower() if c.isalnum() or c in " -_")
    return kept.replace(" ", "-")
