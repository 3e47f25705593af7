"""The dataset with each image's channels kept apart (the label setting ``channels: preserved``): a
WebDataset release of its own, beside the merged one, which stays byte for byte what it is.

Layout of ``release/webdataset-channels/``::

    cytoimagenet-channels-train-000000.tar ...  per sample: <key>.c0.png, <key>.c1.png, ... (one 8-bit gray PNG per
                                                channel, in the source's order), <key>.json (the release's columns,
                                                class_index, channels, stains), <key>.cls
    index.parquet   one row per sample: shard, key, idx, label, category, class_index, source, channels, stains
    channels.json   every channel name the sources give → its stain in one shared vocabulary, with counts
    classes.json, SHA256SUMS, README.md (the card, with PyTorch loaders)

A sample is the merged release's sample of the same key: the same source image, crop window and
quality control (the merged image decides what passes). Each channel is normalized by its own 0.1/99.9
percentiles at the source's bit depth, as the merged image's channels are before they are averaged,
and stored as 8-bit PNG: the normalized values are what the merged release and the model see, at the
merged release's precision; 16-bit would double the bytes for the quantization alone (the native
intensities stay in the source files, which ``idx`` and the x/y bounds locate).

``stains`` name each channel in the shared vocabulary (the label vocabulary's ``cell_visible`` synonyms:
DAPI, Hoechst and DNA are all ``nucleus``), so users remap channels by name across sources.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Callable

import pandas as pd

from cytoimagenet_assets.errors import StepFailed
from cytoimagenet_assets.images.build_class import CHANNELS_DIR, RELEASE_COLUMNS, stain
from cytoimagenet_assets.release.webdataset import (
    DEFAULT_SHARD_BYTES,
    JSON_TYPES,
    Release,
    class_table,
    sample_json,
    shard_checksums,
    shard_range,
)
from cytoimagenet_assets.storage import DataHome, atomic_path, read_parquet_metadata, write_parquet

SHARD_PATTERN = "cytoimagenet-channels-train-%06d.tar"
INDEX_COLUMNS = ["shard", "key", "idx", "label", "category", "class_index", "source", "channels", "stains"]


class ChannelsMissing(StepFailed, FileNotFoundError):
    """A class built before ``channels: preserved`` was set: it has no per-channel files to release."""


def channel_files(dataset_dir: Path, metadata: pd.DataFrame) -> pd.DataFrame:
    """Every published image's channel files (filename, channel, name, file, path), from each class's
    ``channels/index.csv``; a class without one is :class:`ChannelsMissing`."""
    parts = []
    for class_key in sorted(metadata["path"].unique()):
        index = dataset_dir / class_key / CHANNELS_DIR / "index.csv"
        if not index.is_file():
            raise ChannelsMissing(f"{index} not found: class {class_key} was built with channels: merged; rebuild it")
        parts.append(pd.read_csv(index, dtype={"name": str}, keep_default_na=False).assign(path=class_key))
    return pd.concat(parts, ignore_index=True).sort_values(["path", "filename", "channel"], kind="stable")


def write_channel_release(
    metadata: pd.DataFrame,
    dataset_dir: Path,
    out_dir: Path,
    catalog: str,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    progress: Callable[[int, int], None] | None = None,
) -> Release:
    """Write every image of ``metadata`` (dataset/metadata.csv) with its channels kept apart."""
    import webdataset as wds  # here, not at the top: it imports torch, which a class run does not need

    metadata = metadata.sort_values(["path", "filename"], kind="stable").reset_index(drop=True)
    classes = class_table(metadata)
    class_index = {c["class_key"]: i for i, c in enumerate(classes)}
    files = {key: group for key, group in channel_files(dataset_dir, metadata).groupby(["path", "filename"], sort=False)}
    rows, names = [], Counter()
    with atomic_path(out_dir, is_dir=True) as stage:
        with wds.ShardWriter(str(stage / SHARD_PATTERN), maxsize=shard_bytes, maxcount=10**9, verbose=0, mtime=0.0) as writer:
            for n, record in enumerate(metadata[RELEASE_COLUMNS].to_dict("records")):
                key, label = Path(record["filename"]).stem, class_index[record["path"]]
                channels = files.get((record["path"], record["filename"]))
                if channels is None:
                    raise ChannelsMissing(f"{dataset_dir / record['path'] / CHANNELS_DIR / 'index.csv'} lists no channels of {key}")
                listed = channels["name"].tolist()
                stains = [stain(name) for name in listed]
                sample = {"__key__": key, "cls": label}
                sample["json"] = {**sample_json({**record, "class_index": label}), "channels": listed, "stains": stains}
                for j, file in zip(channels["channel"], channels["file"]):
                    sample[f"c{j}.png"] = (dataset_dir / record["path"] / CHANNELS_DIR / file).read_bytes()
                writer.write(sample)
                names.update(zip(listed, stains, [record["dir_name"]] * len(listed)))
                shard = Path(writer.fname).name
                rows.append((shard, key, record["idx"], record["label"], record["category"], label, record["dir_name"], listed, stains))
                if progress:
                    progress(n + 1, len(metadata))
        index = pd.DataFrame(rows, columns=INDEX_COLUMNS)
        shards = shard_checksums(stage, index)
        write_parquet(index, stage / "index.parquet")
        (stage / "classes.json").write_text(json.dumps(classes, indent=1), encoding="utf-8")
        (stage / "channels.json").write_text(json.dumps(vocabulary(names), indent=1), encoding="utf-8")
        (stage / "SHA256SUMS").write_text("".join(f"{s}  {f}\n" for f, s in zip(shards["shard"], shards["sha256"])), encoding="utf-8")
        (stage / "README.md").write_text(channels_card(index, shards, catalog), encoding="utf-8")
    return Release(Path(out_dir), shards, len(index))


def vocabulary(names: Counter) -> dict:
    """channels.json: the shared stains and, for each, the names sources give it, in which sources, how often."""
    stains: dict[str, dict] = {}
    for (name, shared, source), count in sorted(names.items()):
        entry = stains.setdefault(shared, {"stain": shared, "names": [], "sources": [], "channels": 0})
        entry["names"] = sorted({*entry["names"], name})
        entry["sources"] = sorted({*entry["sources"], source})
        entry["channels"] += count
    return {"stains": sorted(stains), "by_stain": [stains[s] for s in sorted(stains)]}


def channels_card(index: pd.DataFrame, shards: pd.DataFrame, catalog: str) -> str:
    """The release's README: what a sample holds and how to load it as (C, H, W) tensors with channel names."""
    counts = index["channels"].map(len).value_counts().sort_index()
    per_count = ", ".join(f"{n} with {c} channel{'s' if c > 1 else ''}" for c, n in counts.items())
    return "\n".join(
        [
            f"# CytoImageNet-style dataset, channels preserved (catalog: {catalog})",
            "",
            f"{len(index):,} samples ({per_count}) in {len(shards)} WebDataset shards ({int(shards['bytes'].sum()):,} bytes): the "
            "merged release's samples with each channel kept apart. Each sample: `<key>.c0.png`, `<key>.c1.png`, ... (8-bit gray, "
            "each channel normalized by its own 0.1/99.9 percentiles), `<key>.json` (the release's columns, `channels`: the "
            "sources' names, `stains`: the same in one shared vocabulary) and `<key>.cls`. `index.parquet` lists every sample "
            "with its shard and channels; `channels.json` maps every name to its stain; `SHA256SUMS` checks the shards.",
            "",
            "```python",
            "import io, json",
            "",
            "import numpy as np",
            "import torch",
            "import webdataset as wds",
            "from PIL import Image",
            "",
            "",
            "def chw(sample):",
            '    """A sample as a (C, H, W) uint8 tensor and its channels\' stains, in the source\'s order."""',
            '    meta = json.loads(sample["json"])',
            '    planes = [np.asarray(Image.open(io.BytesIO(sample[f"c{j}.png"]))) for j in range(len(meta["stains"]))]',
            '    return torch.from_numpy(np.stack(planes)), meta["stains"]',
            "",
            "",
            "def pick(wanted):",
            '    """Only the samples holding every stain in ``wanted``, their channels in that order."""',
            "",
            "    def select(item):",
            "        image, stains = item",
            "        return image[[stains.index(s) for s in wanted]], list(wanted)",
            "",
            "    return lambda items: (select(item) for item in items if set(wanted) <= set(item[1]))",
            "",
            "",
            f'shards = "{shard_range(len(shards), SHARD_PATTERN)}"  # in this folder',
            "stream = wds.WebDataset(shards, shardshuffle=False).map(chw)",
            "image, stains = next(iter(stream))  # e.g. torch.Size([5, 256, 256]), ['nucleus', 'er', 'actin', ...]",
            'nuclei_and_actin = wds.WebDataset(shards, shardshuffle=False).map(chw).compose(pick(["nucleus", "actin"]))',
            "```",
            "",
        ]
    )


def channels_preserved(home: DataHome) -> bool:
    """Whether the class table was made with ``channels: preserved`` (its classes then hold their channels)."""
    return read_parquet_metadata(home.labels_table())["settings"].get("channels", "merged") == "preserved"


def release_channels(home: DataHome, catalog: str, shard_bytes: int = DEFAULT_SHARD_BYTES, log: Callable[[str], None] = print) -> Release:
    """:func:`write_channel_release` of the published dataset into ``release/webdataset-channels/``."""
    metadata = pd.read_csv(home.dataset_metadata(), dtype={c: str for c in RELEASE_COLUMNS if c not in JSON_TYPES})
    step = max(1, len(metadata) // 10)

    def progress(n: int, total: int) -> None:
        if n % step == 0:
            log(f"{n} of {total} multi-channel samples written")

    return write_channel_release(metadata, home.dataset_dir(), home.webdataset_channels_dir(), catalog, shard_bytes, progress)
