"""The catalog a rehearsal builds: the real one, unchanged but for four things — every download
host redirected to the loopback mirror (its ``mirrors:`` block, the same setting users have), the
label thresholds scaled with the data so classes form as they would at full size, the real files'
sizes and MD5s dropped (the mirror's files are synthetic), and a training run of a few steps (the
rehearsal measures the pipeline, not the model)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterable
from urllib.parse import urlsplit

import yaml

from cytoimagenet_assets.catalog import catalog_path, load_catalog, parse_catalog
from cytoimagenet_assets.download.idr import IDR_MIRROR
from cytoimagenet_assets.download.kaggle import KAGGLE_API
from cytoimagenet_assets.rehearsal.mirror import MANUAL
from cytoimagenet_assets.storage import DataHome, write_text

REAL = "cytoimagenet"
KAGGLE_AUTH = ("rehearsal", "rehearsal-key")  # what the mirror's Kaggle API accepts
REHEARSAL_TRAINING = {"epochs": 1, "batch_size": 32, "input_size": 64, "max_steps_per_epoch": 4}


def download_hosts(name: str = REAL) -> list[str]:
    """``scheme://host`` of every server the catalog's downloads reach (its files, IDR's mirror, Kaggle's API)."""
    urls = [f.url for s in load_catalog(name).sources for f in s.download.files] + [IDR_MIRROR, KAGGLE_API]
    return sorted({f"{urlsplit(u).scheme}://{urlsplit(u).netloc}" for u in urls})


def scaled_labels(labels: dict, scale: float) -> dict:
    """The class-size settings times ``scale`` (at least 2 images per class, the order kept)."""
    threshold = max(2, round(labels["threshold"] * scale))
    target = max(threshold, round(labels["target"] * scale))
    scaled = {**labels, "threshold": threshold, "target": target, "cap": max(target, round(labels["cap"] * scale))}
    if labels.get("release_floor") is not None:
        scaled["release_floor"] = min(target, round(labels["release_floor"] * scale))
    return scaled


def write_rehearsal_catalog(
    path: Path, label_scale: float, mirror_url: str, name: str = REAL, only: Iterable[str] | None = None, scale: float | None = None
) -> Path:
    """The real catalog ``name`` with its hosts served from ``mirror_url`` (``<mirror_url>/<host>/<path>``),
    its class sizes scaled by ``label_scale`` (the data's ``scale`` forms classes as the real data
    does; a larger one, only the largest labels: fewer classes) and a short training run, validated
    and written to ``path``; ``only``: just these sources (dir names), for rehearsals of a part of the build."""
    raw = yaml.safe_load(catalog_path(name).read_text(encoding="utf-8"))
    if only is not None:
        wanted = set(only)
        raw["sources"] = [s for s in raw["sources"] if s["dir_name"] in wanted]
        unknown = wanted - {s["dir_name"] for s in raw["sources"]}
        if unknown:
            raise ValueError(f"catalog {name} has no source(s) {', '.join(sorted(unknown))}")
    raw["name"] = f"{raw['name']}-rehearsal"
    raw["description"] = f"Rehearsal (data scale {scale or label_scale}, class sizes × {label_scale}) of: {raw.get('description', '')}"
    raw["labels"] = scaled_labels(raw.get("labels") or {}, label_scale)
    raw["training"] = {**(raw.get("training") or {}), **REHEARSAL_TRAINING}
    for source in raw["sources"]:  # the mirror's files are synthetic: the real files' sizes and checksums do not apply
        for remote in (source.get("download") or {}).get("files") or []:
            remote.pop("size", None)
            remote.pop("md5", None)
    raw["mirrors"] = {host: f"{mirror_url.rstrip('/')}/{urlsplit(host).netloc}" for host in download_hosts(name)}
    parse_catalog(raw, path)  # a rehearsal catalog the pipeline would refuse fails here, not in the build
    return write_text(path, yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))


def rehearsal_environment(
    mirror_root: Path,
    run_dir: Path,
    mirror_url: str,
    *,
    label_scale: float,
    scale: float,
    instance_config: Path,
    only: Iterable[str] | None = None,
) -> dict[str, str]:
    """A fresh run folder for a rehearsal build — data home (with the manual sources put in their raw
    folders by hand, as a user would), Dagster home (``instance_config`` as its dagster.yaml), the
    rehearsal catalog — and the environment that points a build at them and at the mirror's Kaggle."""
    shutil.rmtree(run_dir, ignore_errors=True)
    home, dagster_home = run_dir / "home", run_dir / "dagster"
    dagster_home.mkdir(parents=True)
    shutil.copy(instance_config, dagster_home / "dagster.yaml")
    for manual in sorted((Path(mirror_root) / MANUAL).glob("*")):
        if only is None or manual.name in set(only):
            shutil.copytree(manual, DataHome(home).raw_dir(manual.name))
    catalog = write_rehearsal_catalog(run_dir / "catalog.yaml", label_scale, mirror_url, only=only, scale=scale)
    return {
        "CYTOIMAGENET_HOME": str(home),
        "CYTOIMAGENET_CATALOG": str(catalog),
        "DAGSTER_HOME": str(dagster_home),
        "KAGGLE_USERNAME": KAGGLE_AUTH[0],
        "KAGGLE_KEY": KAGGLE_AUTH[1],
    }
