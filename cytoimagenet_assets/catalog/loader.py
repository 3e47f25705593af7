"""Finding and loading a catalog: a built-in one by name, or a user's YAML by path
(``CYTOIMAGENET_CATALOG``), with pydantic's errors turned into one message naming entry and field."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from cytoimagenet_assets.catalog.schema import BUILTIN, BUILTIN_DIR, CATALOG_ENV, Catalog, CatalogError


def catalog_path(name_or_path: str | os.PathLike | None = None) -> Path:
    """Resolve ``demo``, ``cytoimagenet`` or a YAML path (default: $CYTOIMAGENET_CATALOG, else demo)."""
    value = str(name_or_path or os.environ.get(CATALOG_ENV) or "demo")
    if value in BUILTIN:
        return BUILTIN_DIR / f"{value}.yaml"
    path = Path(value).expanduser()
    if not path.is_file():
        raise CatalogError(f"{CATALOG_ENV}={value!r} is neither a built-in catalog ({', '.join(BUILTIN)}) nor a YAML file")
    return path


def load_catalog(name_or_path: str | os.PathLike | None = None) -> Catalog:
    path = catalog_path(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise CatalogError(f"catalog {path}: not valid YAML: {exc}") from exc
    return parse_catalog(raw, path)


def parse_catalog(raw: Any, path: Path | None = None) -> Catalog:
    """Validate a catalog already read from YAML; errors name the entry (by dir_name) and field."""
    where = f"catalog {path}" if path else "catalog"
    if not isinstance(raw, dict):
        raise CatalogError(f"{where}: expected a mapping with 'name' and 'sources', got {type(raw).__name__}")
    try:
        return Catalog.model_validate({**raw, "path": path})
    except ValidationError as exc:
        raise CatalogError(f"{where}:\n" + "\n".join(_describe(err, raw) for err in exc.errors())) from None


def _describe(err: dict, raw: dict) -> str:
    loc = list(err["loc"])
    entry = ""
    if len(loc) >= 2 and loc[0] == "sources" and isinstance(loc[1], int):
        items = raw.get("sources") or []
        item = items[loc[1]] if loc[1] < len(items) else None
        dir_name = item.get("dir_name") if isinstance(item, dict) else None
        entry = f"source {dir_name!r} (entry {loc[1] + 1})" if dir_name else f"source entry {loc[1] + 1}"
        loc = loc[2:]
    field = ".".join(str(p) for p in loc) or "(entry)"
    return f"  {entry + ', ' if entry else ''}field {field!r}: {err['msg']}"
