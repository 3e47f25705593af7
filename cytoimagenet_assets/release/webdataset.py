"""The dataset as WebDataset tar shards: the form multi-node training streams and the Hugging Face
Hub reads (``load_dataset("webdataset", ...)``).

Layout of the release folder::

    cytoimagenet-train-000000.tar ...   samples in (class key, file name) order: <key>.png, <key>.json, <key>.cls
    index.parquet                       one row per sample: shard, key, idx, label, category, class_index, source, crop, scaling
    classes.json                        the class of each class_index (class_key, category, label), in class-key order
    SHA256SUMS                          a checksum per shard (``sha256sum -c SHA256SUMS``)
    README.md                           the dataset card, with the Hub's YAML header (configs, features, licenses, citation)

A sample's key is its PNG's file name without the suffix (``<class_key>-<8 digits>``), unique across
the dataset. Tar members carry a fixed time stamp, so the same dataset gives the same bytes. Written
atomically (a staged folder, renamed when complete). Whatever trains on a release checks each shard
against SHA256SUMS the first time its process opens it (:func:`verify_shard`).

The folder loads the ways ``datasets`` users load it: the folder or its Hub repository (the card's
config and features); ``load_dataset("webdataset", data_dir=...)``, which reads only the files whose
name holds a split when one does (hence ``train`` in the shards' names: otherwise it reads SHA256SUMS
and the index as tars); and the bare ``*.tar`` files, whose features ``datasets`` infers from the first
samples, so every ``.json`` field has the card's type and a missing label is an empty string (a null
there would be typed null and fail on the first label).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd
import yaml

from cytoimagenet_assets.images.build_class import RELEASE_COLUMNS
from cytoimagenet_assets.markdown import Markdown, table
from cytoimagenet_assets.storage import DataHome, atomic_path, read_checksums, sha256_file, write_parquet

SHARD_PATTERN = "cytoimagenet-train-%06d.tar"
DEFAULT_SHARD_BYTES = 1_000_000_000
INDEX_COLUMNS = ["shard", "key", "idx", "label", "category", "class_index", "source", "crop", "scaling"]
JSON_TYPES = {
    "crop": "bool",
    "scaling": "float64",
    "x_min": "int64",
    "x_max": "int64",
    "y_min": "int64",
    "y_max": "int64",
    "class_index": "int64",
}  # the rest are strings
_CASTS = {"bool": bool, "float64": float, "int64": int}
CITATION = """@article{hua2021cytoimagenet,
  title = {CytoImageNet: A large-scale pretraining dataset for bioimage transfer learning},
  author = {Hua, Stanley Bryan Z. and Lu, Alex X. and Moses, Alan M.},
  journal = {arXiv preprint arXiv:2111.11646},
  year = {2021}
}"""


@dataclass
class Release:
    folder: Path
    shards: pd.DataFrame  # shard, samples, bytes, sha256
    samples: int

    def report(self) -> dict:
        return {
            "dagster/row_count": self.samples,
            "shards": len(self.shards),
            "bytes": int(self.shards["bytes"].sum()),
            "shard_table": table(self.shards, max_rows=50),
            "card": Markdown((self.folder / "README.md").read_text(encoding="utf-8")),
            "path": self.folder,
        }


def class_table(metadata: pd.DataFrame) -> list[dict]:
    """The classes in class-key order (the order of ``class_index``, as the packed training shards)."""
    first = metadata.drop_duplicates("path").sort_values("path")
    return [{"class_key": k, "category": c, "label": lbl} for k, c, lbl in zip(first["path"], first["category"], first["label"])]


def write_release(
    metadata: pd.DataFrame,
    dataset_dir: Path,
    out_dir: Path,
    licenses: dict[str, tuple[str, str]],
    catalog: str,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    progress: Callable[[int, int], None] | None = None,
) -> Release:
    """Write every image of the published table ``metadata`` (dataset/metadata.csv) into shards of at
    most ``shard_bytes``; ``licenses`` maps each source's dir_name to (name, license) for the card."""
    import webdataset as wds  # here, not at the top: it imports torch, which a class run does not need

    metadata = metadata.sort_values(["path", "filename"], kind="stable").reset_index(drop=True)
    classes = class_table(metadata)
    class_index = {c["class_key"]: i for i, c in enumerate(classes)}
    rows = []
    with atomic_path(out_dir, is_dir=True) as stage:
        with wds.ShardWriter(str(stage / SHARD_PATTERN), maxsize=shard_bytes, maxcount=10**9, verbose=0, mtime=0.0) as writer:
            for n, record in enumerate(metadata[RELEASE_COLUMNS].to_dict("records")):
                key = Path(record["filename"]).stem
                png = (dataset_dir / record["path"] / record["filename"]).read_bytes()
                label = class_index[record["path"]]
                writer.write({"__key__": key, "png": png, "json": sample_json({**record, "class_index": label}), "cls": label})
                rows.append(
                    (
                        Path(writer.fname).name,
                        key,
                        record["idx"],
                        record["label"],
                        record["category"],
                        label,
                        record["dir_name"],
                        bool(record["crop"]),
                        float(record["scaling"]),
                    )
                )
                if progress:
                    progress(n + 1, len(metadata))
        index = pd.DataFrame(rows, columns=INDEX_COLUMNS)
        shards = shard_checksums(stage, index)
        write_parquet(index, stage / "index.parquet")
        (stage / "classes.json").write_text(json.dumps(classes, indent=1), encoding="utf-8")
        (stage / "SHA256SUMS").write_text("".join(f"{s}  {f}\n" for f, s in zip(shards["shard"], shards["sha256"])), encoding="utf-8")
        (stage / "README.md").write_text(dataset_card(index, classes, shards, licenses, catalog), encoding="utf-8")
    return Release(Path(out_dir), shards, len(index))


def sample_json(record: dict) -> dict:
    """A sample's ``.json``: each field of the type the card declares (``JSON_TYPES``), a missing label
    an empty string, so that the features ``datasets`` infers from the first samples are the card's."""
    return {
        column: ("" if pd.isna(value) else str(value)) if column not in JSON_TYPES else _CASTS[JSON_TYPES[column]](value)
        for column, value in record.items()
    }


def shard_checksums(folder: Path, index: pd.DataFrame) -> pd.DataFrame:
    """Per shard of ``index``: its samples, bytes and SHA-256 (what SHA256SUMS and the card list)."""
    counts = index.groupby("shard").size()
    records = [(name, int(counts[name]), (folder / name).stat().st_size, sha256_file(folder / name)) for name in sorted(counts.index)]
    return pd.DataFrame(records, columns=["shard", "samples", "bytes", "sha256"])


def verify_release(folder: Path) -> list[str]:
    """Shards whose bytes no longer match SHA256SUMS (empty when the release is intact)."""
    return [
        name
        for name, expected in read_checksums(folder).items()
        if not (Path(folder) / name).is_file() or sha256_file(Path(folder) / name) != expected
    ]


def dataset_card(index: pd.DataFrame, classes: list[dict], shards: pd.DataFrame, licenses: dict[str, tuple[str, str]], catalog: str) -> str:
    """README.md with the Hugging Face YAML header: the WebDataset config, the features of a sample,
    each source's license, the citation; then what the release holds and how to load it."""
    per_source = index.groupby("source").size()
    header = {
        "license": "other",
        "license_name": "per-source",
        "license_details": "Each image keeps the license of its source dataset; see the table below.",
        "task_categories": ["image-classification", "image-feature-extraction"],
        "tags": ["microscopy", "biology", "cell-biology", "bioimage", "cytoimagenet", "webdataset"],
        "pretty_name": f"CytoImageNet-style dataset ({catalog})",
        "size_categories": [_size_category(len(index))],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "cytoimagenet-train-*.tar"}]}],
        "dataset_info": {
            "features": [
                {"name": "png", "dtype": "image"},
                {"name": "json", "struct": [{"name": c, "dtype": JSON_TYPES.get(c, "string")} for c in [*RELEASE_COLUMNS, "class_index"]]},
                {"name": "cls", "dtype": "int64"},
            ]
        },  # declared, not inferred from the first samples (sample_json makes the inferred ones the same)
    }
    licence_rows = "\n".join(
        f"| {d} | {licenses.get(d, ('', 'unknown'))[0]} | {licenses.get(d, ('', 'unknown'))[1]} | {n} |" for d, n in per_source.items()
    )
    return "\n".join(
        [
            "---",
            yaml.safe_dump(header, sort_keys=False, allow_unicode=True).rstrip(),
            "---",
            "",
            f"# CytoImageNet-style dataset (catalog: {catalog})",
            "",
            "Load it with Hugging Face `datasets` (this folder, its Hub repository or its tar files: the same samples and types) "
            "or stream it with `webdataset`:",
            "",
            "```python",
            "from pathlib import Path",
            "",
            "import webdataset as wds",
            "from datasets import load_dataset",
            "",
            "release = Path.cwd()  # run in this folder, or give its path",
            'hub = load_dataset(str(release), split="train")  # or its Hub repository\'s id: the config and features above',
            'folder = load_dataset("webdataset", data_dir=str(release), split="train")',
            'tars = load_dataset("webdataset", data_files=str(release / "cytoimagenet-train-*.tar"), split="train")',
            "",
            'stream = wds.WebDataset(str(release / "%s"), shardshuffle=False).decode("pill").to_tuple("png", "cls")'
            % shard_range(len(shards)),
            'image, label = next(iter(stream))  # "pill": a gray PIL image (mode L); "pil" would convert it to RGB',
            "```",
            "",
            f"{len(index):,} weakly labelled 8-bit gray microscopy images in {len(classes):,} classes, {len(shards)} WebDataset shards "
            f"({int(shards['bytes'].sum()):,} bytes). Each sample: `<key>.png`, `<key>.json` (the release's columns: label, category, "
            "source, idx, crop, scaling, ...; a label the source does not give is an empty string) and `<key>.cls` (the class index; "
            "`classes.json` names it). `index.parquet` lists every sample with its shard; `SHA256SUMS` checks the shards.",
            "",
            "## Sources and licenses",
            "",
            "| source | name | license | images |",
            "|---|---|---|---|",
            licence_rows,
            "",
            "## Citation",
            "",
            "```bibtex",
            CITATION,
            "```",
            "",
        ]
    )


def shard_range(shards: int, pattern: str = SHARD_PATTERN) -> str:
    """The shards in webdataset's brace notation: ``cytoimagenet-train-{000000..000002}.tar``."""
    first, last = pattern.split("%06d")
    return f"{first}{{{0:06d}..{shards - 1:06d}}}{last}"


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "1M<n<10M"


def release_dataset(
    home: DataHome,
    licenses: dict[str, tuple[str, str]],
    catalog: str,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    log: Callable[[str], None] = print,
) -> Release:
    """:func:`write_release` of the published dataset into ``release/webdataset/``, logging every tenth."""
    metadata = pd.read_csv(home.dataset_metadata(), dtype={c: str for c in RELEASE_COLUMNS if c not in JSON_TYPES})  # "1" stays a string
    step = max(1, len(metadata) // 10)

    def progress(n: int, total: int) -> None:
        if n % step == 0:
            log(f"{n} of {total} images written")

    return write_release(metadata, home.dataset_dir(), home.webdataset_dir(), licenses, catalog, shard_bytes, progress=progress)
