"""The source catalog: which datasets feed the pipeline, where they come from, how to parse them.

A catalog is a YAML file. Two ship with the package (``demo`` — synthetic data in real on-disk
formats, the default — and ``cytoimagenet`` — the 40 sources of the original plus its evaluation
sets); a user points ``CYTOIMAGENET_CATALOG`` at their own YAML to build their own dataset.
Entries are validated on load: a bad entry is a :class:`CatalogError` naming the entry and field.
"""

from cytoimagenet_assets.catalog.loader import catalog_path, load_catalog, parse_catalog
from cytoimagenet_assets.catalog.schema import (
    BUILTIN_DIR,
    CATALOG_ENV,
    PARSER_MODULES,
    URL_PLACEHOLDER,
    Catalog,
    CatalogError,
    Channel,
    EmbedTarget,
    RemoteFile,
    Source,
    mirror_url_problem,
)

__all__ = [
    "load_catalog",
    "parse_catalog",
    "catalog_path",
    "Catalog",
    "CatalogError",
    "Source",
    "Channel",
    "EmbedTarget",
    "RemoteFile",
    "PARSER_MODULES",
    "URL_PLACEHOLDER",
    "CATALOG_ENV",
    "BUILTIN_DIR",
    "mirror_url_problem",
]
