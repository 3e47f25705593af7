"""A region of an image file, named in the ``field`` column of the standardized table.

Some sources' images are parts of a file: BBBC041's bounding boxes (one image per annotated
cell) and BBBC045's montages (the original kept the top-left 715x825 pixels). The standardized
table has no region columns, so such a row's ``field`` ends in ``y<top>:<bottom>,x<left>:<right>``:
half-open pixel ranges, rows then columns, as in a numpy slice ``image[top:bottom, left:right]``.
Text before it (``object 0003 ``) only tells rows apart. :func:`parse_region` reads it back.
"""

from __future__ import annotations

import re

REGION = re.compile(r"y(\d+):(\d+),x(\d+):(\d+)$")


def region_field(top: int, bottom: int, left: int, right: int, prefix: str | None = None) -> str:
    region = f"y{top}:{bottom},x{left}:{right}"
    return f"{prefix} {region}" if prefix else region


def parse_region(field: str | None) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right) of a ``field`` naming a region, else None (the whole image)."""
    match = REGION.search(field) if isinstance(field, str) else None
    return tuple(int(g) for g in match.groups()) if match else None
