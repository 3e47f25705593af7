"""The jobs: the stages the headless build (``cytoimagenet_assets.build``) runs one after another, and
``class_images_job`` (one run per class: what the class sensor, a backfill and the build launch). The
sources are a job of their own so that one failing source does not stop the merge of the others."""

import dagster as dg

from cytoimagenet_assets.catalog import Catalog
from cytoimagenet_assets.defs.keys import CLASS_IMAGES_KEY

class_images_job = dg.define_asset_job("class_images_job", selection=[CLASS_IMAGES_KEY])
_images = dg.AssetSelection.assets(CLASS_IMAGES_KEY)
_sources = dg.AssetSelection.groups("sources")
sources_job = dg.define_asset_job(
    "sources_job",
    selection=_sources,
    description="Each source's files and table (and the evaluation sets' files); a failing source fails alone.",
)
tables_job = dg.define_asset_job(
    "tables_job",
    selection=dg.AssetSelection.all() - _images.downstream() - _sources,
    description="The merged table (of the sources that have a table), the candidates and the class table.",
)
release_job = dg.define_asset_job(
    "release_job",
    selection=_images.downstream() - _images,
    description="Everything after the class images: the dataset and its release, the model, its package and embeddings, the evaluation.",
)


def defs(catalog: Catalog) -> dg.Definitions:
    """Every job; the same for each catalog."""
    return dg.Definitions(jobs=[sources_job, tables_job, class_images_job, release_job])
