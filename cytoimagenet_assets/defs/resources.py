"""Resources: where the data lives."""

import os
from pathlib import Path
from typing import Callable

import dagster as dg

from cytoimagenet_assets.download import IDR_MIRROR
from cytoimagenet_assets.download.http import throttled_progress
from cytoimagenet_assets.download.mirrors import configured_mirrors
from cytoimagenet_assets.download.plan import Fetching
from cytoimagenet_assets.storage import DataHome, default_home

KAGGLE_ENV = ("KAGGLE_USERNAME", "KAGGLE_KEY")


class DataHomeResource(dg.ConfigurableResource):
    """The data home (``CYTOIMAGENET_HOME``, default ``~/cytoimagenet``) and the SQL catalog URL
    (``CYTOIMAGENET_DB_URL``, default an SQLite file in the data home)."""

    root: str = ""

    def home(self) -> DataHome:
        return DataHome(Path(self.root).expanduser().resolve() if self.root else default_home())


class DownloadsResource(dg.ConfigurableResource):
    """How sources are fetched. Kaggle credentials are given as ``dg.EnvVar``s, so the UI shows
    the variable's name, never its value; the mirror can point at a local copy of IDR's."""

    kaggle_username: str | None = None
    kaggle_key: str | None = None
    kaggle_api: str | None = None  # Kaggle's API by default; a proxy or a test server otherwise
    idr_mirror: str = IDR_MIRROR
    mirrors: dict[str, str] = {}  # the catalog's URL prefixes redirected to other servers (CYTOIMAGENET_MIRRORS wins)

    def fetching(self, log: Callable[[str], None]) -> Fetching:
        return Fetching(
            progress=throttled_progress(log),
            log=log,
            kaggle_username=self.kaggle_username,
            kaggle_key=self.kaggle_key,
            kaggle_api=self.kaggle_api,
            idr_mirror=self.idr_mirror,
            mirrors=configured_mirrors(self.mirrors),
        )


def downloads_from_env(**settings) -> DownloadsResource:
    """Kaggle credentials from KAGGLE_USERNAME / KAGGLE_KEY when both are set; none otherwise
    (Kaggle sources then fail saying what to set, the others are unaffected)."""
    if all(os.environ.get(name) for name in KAGGLE_ENV):
        return DownloadsResource(kaggle_username=dg.EnvVar(KAGGLE_ENV[0]), kaggle_key=dg.EnvVar(KAGGLE_ENV[1]), **settings)
    return DownloadsResource(**settings)
