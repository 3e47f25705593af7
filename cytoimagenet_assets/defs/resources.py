"""Resources: where the data lives."""

from pathlib import Path

import dagster as dg
from sqlalchemy.engine import make_url

from cytoimagenet_assets.storage import DataHome, default_home


class DataHomeResource(dg.ConfigurableResource):
    """The data home (``CYTOIMAGENET_HOME``, default ``~/cytoimagenet``) and the SQL catalog URL
    (``CYTOIMAGENET_DB_URL``, default an SQLite file in the data home)."""

    root: str = ""

    def home(self) -> DataHome:
        return DataHome(Path(self.root).expanduser().resolve() if self.root else default_home())


def redacted(url: str) -> str:
    """A database URL safe to show in logs and metadata (password hidden)."""
    return make_url(url).render_as_string(hide_password=True)
