"""Features of a user's own images with the CytoImageNet model: ``embed(samples, model, method, out)``.

The same readers (``images.readers``), model loader and extraction (``model.inference``) as
the transfer evaluation, so a lab's profiles are the evaluation's features of their images. Input:
a folder (every image file under it, or those matching a glob, one sample per file) or a CSV whose
columns are channels and whose cells are image paths (one sample per row). Output: a Parquet table,
one row per sample — ``image`` (the file, or the row's channel paths joined by ``|``),
``channel_names``, ``channel_paths``, ``method``, ``features`` (float32; 1280, or 1280 × channels
for ``concat_*``) and any other CSV columns. ``bag_of_channels`` adds ``channel_features``: one
1280-d vector per name of ``channel_names`` (``features`` is their mean), so channels can be chosen
by name afterwards.

Resumable: features are written every batch into ``.<out>.parts/`` (each part atomically) and
merged into ``out`` at the end (atomically); a rerun skips every sample already in ``out`` or in
a part, so a killed run loses at most one batch and a grown folder costs only its new images.
Rows made with another model or method are recomputed, not mixed in.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from cytoimagenet_assets.catalog import EmbedTarget
from cytoimagenet_assets.devices import pick_device
from cytoimagenet_assets.embed.inputs import EmbedError, Inputs, Sample, inputs_from
from cytoimagenet_assets.images.readers import ImageReadError, read_channels
from cytoimagenet_assets.markdown import table
from cytoimagenet_assets.model.inference import (
    FEATURES,
    METHODS,
    FeatureExtractor,
    ModelLoadError,
    extract,
    extract_channels,
    load_model,
    pool_channels,
)
from cytoimagenet_assets.storage import DataHome, read_parquet_metadata, write_parquet

FORMAT = 1  # bump when the meaning of stored rows changes: older outputs are then recomputed
CORE_COLUMNS = ["image", "channel_names", "channel_paths", "method", "features"]


@dataclass
class EmbedResult:
    out: Path
    rows: int  # rows in the output
    computed: int  # samples computed by this run
    reused: int  # samples found already done (output or parts)
    dims: list[int] = field(default_factory=list)  # distinct feature lengths in the output
    failed: list[tuple[str, str]] = field(default_factory=list)  # (image, reason) of samples that could not be read


def checked_method(method: str) -> str:
    """``method`` when it is one of the evaluation's (the one spelling everywhere), else an EmbedError."""
    if method not in METHODS:
        raise EmbedError(f"unknown method {method!r}: expected one of {', '.join(METHODS)}")
    return method


def parts_dir(out: Path) -> Path:
    return out.parent / f".{out.name}.parts"


def _matches(path: Path, stamp: dict) -> bool:
    try:
        meta = read_parquet_metadata(path)
    except Exception:  # an unreadable leftover is not ours to trust
        return False
    return all(meta.get(k) == v for k, v in stamp.items())


def _read_channels(inputs: Inputs, sample: Sample) -> tuple[list[np.ndarray], list[str]]:
    channels, names = [], []
    for index, relative in enumerate(sample.channel_paths):
        file = Path(relative) if Path(relative).is_absolute() else inputs.root / relative
        read = read_channels(file)
        base = sample.columns[index] if sample.columns else "gray"
        channels += read
        names += [base] if len(read) == 1 else [f"{base}_{i}" if sample.columns else f"c{i}" for i in range(len(read))]
    return channels, names


def embed(
    inputs: Inputs,
    model: Path,
    method: str,
    out: Path,
    batch_size: int = 64,
    device: str | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> EmbedResult:
    """Features of every sample of ``inputs`` by ``method`` into ``out`` (Parquet), resuming; see the module docstring."""
    method, out = checked_method(method), Path(out)
    try:
        loaded = load_model(model)
    except ModelLoadError as exc:
        raise EmbedError(str(exc)) from exc
    stamp = {"model_sha256": loaded.sha256, "method": method, "embed_format": FORMAT}
    wanted = {s.image for s in inputs.samples}

    done: list[pd.DataFrame] = []
    if out.exists():
        if _matches(out, stamp):
            done.append(pd.read_parquet(out))
        else:
            log(f"{out} was made with another model or method: recomputing every row")
    parts = parts_dir(out)
    part_files = sorted(parts.glob("part-*.parquet")) if parts.is_dir() else []
    for part in part_files:
        if _matches(part, stamp):
            done.append(pd.read_parquet(part))
        else:
            part.unlink()
    have = set().union(*(set(d["image"]) for d in done)) if done else set()
    todo = [s for s in inputs.samples if s.image not in have]
    reused = len(inputs.samples) - len(todo)
    if reused:
        log(f"{reused} of {len(inputs.samples)} samples already done; computing {len(todo)}")

    torch_device = pick_device(device)
    extractor = FeatureExtractor(loaded.model, torch_device, batch_size)
    failed: list[tuple[str, str]] = []
    next_part = 1 + max((int(p.stem.split("-")[1]) for p in part_files if p.exists()), default=0)
    from tqdm import tqdm

    with tqdm(total=len(todo), desc=f"embed {method}", unit="image", disable=not progress, dynamic_ncols=True) as bar:
        for start in range(0, len(todo), batch_size):
            rows = []
            by_channels: dict[int, list[tuple[Sample, list[np.ndarray], list[str]]]] = {}
            for sample in todo[start : start + batch_size]:
                try:
                    channels, names = _read_channels(inputs, sample)
                except (ImageReadError, OSError) as exc:
                    failed.append((sample.image, str(exc)))
                    continue
                by_channels.setdefault(len(channels), []).append((sample, channels, names))
            for group in by_channels.values():
                samples = [channels for _, channels, _ in group]
                if METHODS[method][0] == "bag":  # the pooled features and, by channel name, what was pooled
                    per_channel = extract_channels(extractor, samples, method)
                    features, kept = pool_channels(per_channel), [{"channel_features": list(f)} for f in per_channel]
                else:
                    features, kept = extract(extractor, samples, method), [{}] * len(group)
                for (sample, _, names), vector, extra in zip(group, features, kept):
                    rows.append(
                        {
                            "image": sample.image,
                            "channel_names": names,
                            "channel_paths": list(sample.channel_paths),
                            "method": method,
                            "features": vector.astype(np.float32),
                            **extra,
                            **dict(sample.extra),
                        }
                    )
            if rows:
                part = pd.DataFrame(rows)
                write_parquet(part, parts / f"part-{next_part:06d}.parquet", stamp)
                done.append(part)
                next_part += 1
            bar.update(min(batch_size, len(todo) - start))

    order = {s.image: i for i, s in enumerate(inputs.samples)}
    table = pd.concat(done, ignore_index=True) if done else pd.DataFrame(columns=CORE_COLUMNS)
    table = table[table["image"].isin(wanted)].drop_duplicates("image", keep="last")
    table = table.iloc[np.argsort(table["image"].map(order).to_numpy(), kind="stable")].reset_index(drop=True)
    dropped = len(have - wanted)
    if dropped:
        log(f"{dropped} rows of images no longer among the inputs left out of {out}")
    write_parquet(table, out, stamp | {"samples": len(inputs.samples), "failed": len(failed)})
    shutil.rmtree(parts, ignore_errors=True)
    dims = sorted({len(f) for f in table["features"]}) if len(table) else []
    return EmbedResult(out, len(table), len(todo) - len(failed), reused, dims, failed)


def feature_matrix(table: pd.DataFrame) -> np.ndarray:
    """The ``features`` column as an (N, D) float32 array (all rows of one length)."""
    return np.stack(table["features"].to_numpy()).astype(np.float32) if len(table) else np.empty((0, FEATURES), np.float32)


@dataclass
class TargetEmbedding:
    """One of the catalog's ``embed:`` targets featurized: where its images came from, the result,
    and a preview (first rows, first features) for the UI."""

    name: str
    input: Path
    result: EmbedResult
    preview: pd.DataFrame

    def summary(self) -> dict:
        return {
            "target": self.name,
            "input": str(self.input),
            "rows": self.result.rows,
            "dims": ", ".join(map(str, self.result.dims)),
            "computed": self.result.computed,
            "reused": self.result.reused,
            "unreadable": len(self.result.failed),
        }


def target_input(home: DataHome, target: EmbedTarget) -> Path:
    """A target's images: a catalog source's raw folder, or its path (relative ones in the data home)."""
    return home.raw_dir(target.source) if target.source is not None else home.resolve(target.path)


def embed_target(
    home: DataHome, target: EmbedTarget, model: Path, log: Callable[[str], None] = print, warn: Callable[[str], None] = print
) -> TargetEmbedding:
    """Featurize ``target`` with ``model`` into ``embeddings/<name>/features.parquet`` (resuming)."""
    source = target_input(home, target)
    try:
        inputs = inputs_from(source, target.channels, target.glob)
        result = embed(inputs, model, target.method, home.embeddings_path(target.name), progress=False, log=log)
    except (EmbedError, FileNotFoundError) as exc:
        raise EmbedError(f"embed target {target.name!r}: {exc}") from exc
    for image, reason in result.failed:
        warn(f"{target.name}: unreadable {image}: {reason}")
    table = pd.read_parquet(result.out)
    preview = table[["image", "channel_names", "method"]].head(10).copy()
    preview["channel_names"] = preview["channel_names"].map(lambda names: ", ".join(names))
    if len(table) and len(result.dims) == 1:
        matrix = feature_matrix(table)
        for i in range(4):
            preview[f"f{i}"] = matrix[: len(preview), i].round(4)
    return TargetEmbedding(target.name, source, result, preview)


def embeddings_report(done: list[TargetEmbedding], model: Path) -> dict:
    """What the embeddings asset shows: rows and dimensions over all targets, one line per target,
    each target's preview and path (and its unreadable images)."""
    report = {
        "rows": sum(t.result.rows for t in done),
        "dims": sorted({int(d) for t in done for d in t.result.dims}),
        "targets": table(pd.DataFrame([t.summary() for t in done])),
        "model": model,
    }
    for target in done:
        report[f"{target.name}_preview"] = table(target.preview)
        report[f"{target.name}_path"] = target.result.out
        if target.result.failed:
            report[f"{target.name}_unreadable"] = [f"{i}: {r}" for i, r in target.result.failed[:20]]
    return report
