"""The ``region`` column of the standardized table: the part of an image file a row is about.

Some sources' images are parts of a file: BBBC041's bounding boxes (one image per annotated cell)
and BBBC045's montages (the original kept the top-left 715x825 pixels). Such a row's ``region`` is
``y<top>:<bottom>,x<left>:<right>``: half-open pixel ranges, rows then columns, as in the numpy
slice ``image[top:bottom, left:right]``; null means the whole image. Numbers are written without
leading zeros, so two rows name the same region exactly when their texts are equal. This module is
the one place that writes (:func:`format_region`) and reads (:func:`parse_region`) that text.
"""

from __future__ import annotations

import math
import re

import pandas as pd

REGION = re.compile(r"y(0|[1-9]\d*):(0|[1-9]\d*),x(0|[1-9]\d*):(0|[1-9]\d*)")
FORMAT = "y<top>:<bottom>,x<left>:<right> (non-negative integers, top < bottom, left < right)"


def format_region(top: int, bottom: int, left: int, right: int) -> str:
    """The ``region`` text of rows ``top:bottom`` and columns ``left:right`` (half-open)."""
    values = (top, bottom, left, right)
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values) or not (top < bottom and left < right):
        raise ValueError(f"not a region: rows {top}:{bottom}, columns {left}:{right}; expected {FORMAT}")
    return f"y{top}:{bottom},x{left}:{right}"


def parse_region(text) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right) of a ``region`` value; None for null (the whole image).

    Raises ValueError, saying what is expected, for anything else than :func:`format_region` writes.
    """
    if text is None or text is pd.NA or (isinstance(text, float) and math.isnan(text)):
        return None
    match = REGION.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"malformed region {text!r}: expected {FORMAT}")
    top, bottom, left, right = (int(g) for g in match.groups())
    if not (top < bottom and left < right):
        raise ValueError(f"malformed region {text!r}: an empty or reversed range; expected {FORMAT}")
    return top, bottom, left, right


def region_problem(text) -> str | None:
    """Why a ``region`` value is malformed, or None when it is sound (or null)."""
    try:
        parse_region(text)
    except ValueError as exc:
        return str(exc)
    return None


def order_key(text) -> str:
    """A sort key ordering regions numerically (top, bottom, left, right); '' for the whole image."""
    region = parse_region(text)
    return "" if region is None else ",".join(f"{v:012d}" for v in region)
