"""What others download and reuse, built from the dataset and the model (no Dagster here).

``webdataset.py`` writes the dataset as WebDataset tar shards with a Parquet index, SHA256SUMS and a
Hugging Face dataset card (``release_dataset``); ``bioimageio_package.py`` writes the latest model as
a bioimage.io package (``package_model``), with ``architecture.py``, the standalone module it ships.
A new export format is a module here and an asset in ``defs/release.py``.
"""

from cytoimagenet_assets.release.webdataset import release_dataset, verify_release, write_release

__all__ = ["release_dataset", "verify_release", "write_release", "package_model"]


def __getattr__(name: str):
    """``package_model`` imports torch: loaded on first use, not by every process that imports this package."""
    if name == "package_model":
        from cytoimagenet_assets.release.bioimageio_package import package_model

        return package_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
