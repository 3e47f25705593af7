"""The demo catalog's data: synthetic microscopy written in the formats of real sources.

``generate(source, raw_dir, seed)`` writes one demo source atomically (staged, then renamed), so
an interrupted run leaves no half-written folder and a rerun replaces it with identical bytes.
"""

from __future__ import annotations

from pathlib import Path

from cytoimagenet_assets.catalog import Source
from cytoimagenet_assets.demo.generators import GENERATORS
from cytoimagenet_assets.storage import atomic_path


def generate(source: Source, raw_dir: Path, seed: int) -> Path:
    if source.download.method != "demo":
        raise ValueError(f"{source.dir_name} is not a demo source (download method {source.download.method!r})")
    try:
        writer = GENERATORS[source.download.generator]
    except KeyError:
        raise ValueError(
            f"{source.dir_name}: unknown demo generator {source.download.generator!r}; known: {', '.join(GENERATORS)}"
        ) from None
    with atomic_path(Path(raw_dir), is_dir=True) as stage:
        writer(stage, seed, **source.download.generator_options)
    return Path(raw_dir)
