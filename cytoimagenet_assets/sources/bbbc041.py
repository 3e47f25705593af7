"""BBBC041, P. vivax (malaria) infected blood smears: bounding boxes from JSON, one image per box.

``malaria/training.json`` and ``malaria/test.json`` each list images as
``{"image": {"pathname": "/images/<name>.png", "shape": {"r", "c", "channels"}, ...},
"objects": [{"category": "trophozoite", "bounding_box": {"minimum": {"r", "c"}, "maximum": {"r", "c"}}}, ...]}``,
``pathname`` relative to the JSON's folder. As in the original, every box is cropped out as an
image of its own whose category (red blood cell, trophozoite, ring, schizont, gametocyte, leukocyte,
difficult) is its label, in ``cell_type``. The box is the row's ``region`` (see :mod:`regions`),
``y<r_min>:<r_max>,x<c_min>:<c_max>``; ``field`` stays null (a smear is one field of view).
``source_row`` is the image's position in its JSON list; a box that cannot be used (no category,
coordinates missing, empty or outside the image) is rejected with its object number.

Options::

    tables: [malaria/training.json, malaria/test.json]
    category_to: cell_type
"""

from __future__ import annotations

import json
import math
from pathlib import Path, PurePosixPath

from cytoimagenet_assets.catalog import Source
from cytoimagenet_assets.sources.common import channel_rows, find_file, frame
from cytoimagenet_assets.sources.regions import format_region
from cytoimagenet_assets.sources.table import LABEL_CATEGORIES, ParsedSource, ParseError, rejects_frame

OPTIONS = {"tables": ["malaria/training.json", "malaria/test.json"], "category_to": "cell_type"}


def _load(source: Source, path: Path, name: str) -> list:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ParseError(f"{source.dir_name}: {name} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except (UnicodeDecodeError, OSError) as exc:
        raise ParseError(f"{source.dir_name}: cannot read {name}: {exc}") from exc
    if not isinstance(data, list):
        raise ParseError(f"{source.dir_name}: {name} must hold a list of images, found a JSON {type(data).__name__}")
    return data


def _coordinate(box, corner: str, axis: str) -> int | None:
    value = box.get(corner, {}).get(axis) if isinstance(box, dict) and isinstance(box.get(corner), dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value != int(value):
        return None
    return int(value)


def _box(obj, shape) -> tuple[str, tuple[int, int, int, int]] | str:
    """(category, (top, bottom, left, right)) of one object, or why it cannot be used."""
    if not isinstance(obj, dict):
        return "not a JSON object"
    category = obj.get("category")
    if not isinstance(category, str) or not category.strip():
        return f"no category (got {category!r})"
    box = obj.get("bounding_box")
    top, left = _coordinate(box, "minimum", "r"), _coordinate(box, "minimum", "c")
    bottom, right = _coordinate(box, "maximum", "r"), _coordinate(box, "maximum", "c")
    if None in (top, left, bottom, right):
        return f"bounding_box lacks integer minimum/maximum r and c (got {box!r})"
    if not (0 <= top < bottom and 0 <= left < right):
        return f"empty or negative box r {top}:{bottom}, c {left}:{right}"
    height, width = (shape.get("r"), shape.get("c")) if isinstance(shape, dict) else (None, None)
    if isinstance(height, int) and isinstance(width, int) and (bottom > height or right > width):
        return f"box r {top}:{bottom}, c {left}:{right} outside the {height}x{width} image"
    return category.strip(), (top, bottom, left, right)


def parse(source: Source, raw_dir: Path, options: dict) -> ParsedSource:
    target = options["category_to"]
    if target not in LABEL_CATEGORIES:
        raise ParseError(
            f"{source.dir_name}: parser_options.category_to {target!r} is not a label category ({', '.join(LABEL_CATEGORIES)})"
        )
    if len(source.channels) != 1:
        raise ParseError(f"{source.dir_name}: the catalog must list exactly one channel (the smear image), not {len(source.channels)}")
    key = source.channels[0].key
    rows, rejects = [], []
    for name in options["tables"]:
        path = find_file(source, raw_dir, name)
        source_file = path.relative_to(raw_dir).as_posix()
        folder = PurePosixPath(source_file).parent
        for i, entry in enumerate(_load(source, path, source_file), start=1):
            image = entry.get("image") if isinstance(entry, dict) else None
            pathname = image.get("pathname") if isinstance(image, dict) else None
            objects = entry.get("objects") if isinstance(entry, dict) else None
            if not isinstance(pathname, str) or not pathname.strip("/ "):
                rejects.append((source_file, i, "no image.pathname"))
                continue
            if not isinstance(objects, list) or not objects:
                rejects.append((source_file, i, f"{pathname}: no objects (no box to crop)"))
                continue
            image_path = (folder / pathname.strip().lstrip("/")).as_posix()
            for n, obj in enumerate(objects, start=1):
                found = _box(obj, image.get("shape"))
                if isinstance(found, str):
                    rejects.append((source_file, i, f"{pathname} object {n}: {found}"))
                    continue
                category, (top, bottom, left, right) = found
                base = {"source_file": source_file, "source_row": i, target: category, "region": format_region(top, bottom, left, right)}
                rows.extend(channel_rows(base, {key: image_path}, source.channels))
    return ParsedSource(frame(rows), rejects_frame(rejects))
