"""The release group: what others download and reuse. ``dataset_shards`` (the dataset as WebDataset
shards with a Hugging Face card) and ``model_package`` (the latest model as a bioimage.io package).
``cytoimagenet_assets.release`` does the work; a new export format is one more asset here."""

import functools

import dagster as dg

from cytoimagenet_assets.catalog import Catalog
from cytoimagenet_assets.defs.failures import step_failures
from cytoimagenet_assets.defs.freshness import EAGER, EAGER_NOTE
from cytoimagenet_assets.defs.keys import DATASET_KEY, MODEL_KEY, PACKAGE_KEY, RELEASE_KEY
from cytoimagenet_assets.defs.metadata import result
from cytoimagenet_assets.defs.resources import DataHomeResource
from cytoimagenet_assets.release.channels import channels_preserved, release_channels
from cytoimagenet_assets.release.webdataset import DEFAULT_SHARD_BYTES, release_dataset

asset = functools.partial(dg.asset, group_name="release")  # every asset of this domain is in its group


class DatasetShardsConfig(dg.Config):
    shard_bytes: int = DEFAULT_SHARD_BYTES  # at most this many bytes per tar shard


def dataset_shards_asset(catalog: Catalog) -> dg.AssetsDefinition:
    licenses = {s.dir_name: (s.name, s.license) for s in catalog.sources}

    @asset(
        key=RELEASE_KEY,
        deps=[DATASET_KEY],
        kinds={"webdataset", "parquet"},
        description="The published dataset as WebDataset tar shards (PNG + JSON of the release's columns + class index per "
        "sample), a Parquet index, SHA-256 checksums and a dataset card with the Hugging Face YAML header, under "
        "release/webdataset/: what multi-node training streams and the Hub reads. Under the label setting "
        "channels: preserved, also the same samples with each channel kept apart, named, under release/webdataset-channels/.",
    )
    def dataset_shards(context: dg.AssetExecutionContext, config: DatasetShardsConfig, data: DataHomeResource) -> dg.MaterializeResult:
        home = data.home()
        report = release_dataset(home, licenses, catalog.name, config.shard_bytes, log=context.log.info).report()
        if channels_preserved(home):
            with step_failures():
                channels = release_channels(home, catalog.name, config.shard_bytes, log=context.log.info).report()
            report |= {f"channels_{k}": v for k, v in channels.items() if not k.startswith("dagster/")}
        return result(report)

    return dataset_shards


def model_package_asset(catalog: Catalog) -> dg.AssetsDefinition:
    @asset(
        key=PACKAGE_KEY,
        deps=[MODEL_KEY],
        kinds={"pytorch", "yaml"},
        automation_condition=EAGER,
        description="The latest pretrained_model as TorchScript and a bioimage.io model package (spec 0.5 rdf.yaml with "
        "preprocessing, test tensors, both weight formats, classes, training data, citation) under "
        "release/model/, folder and zip, validated with bioimageio.spec." + EAGER_NOTE,
    )
    def model_package(context: dg.AssetExecutionContext, data: DataHomeResource) -> dg.MaterializeResult:
        from cytoimagenet_assets.model.launch import required_latest_model
        from cytoimagenet_assets.release.bioimageio_package import package_model

        with step_failures():
            model = required_latest_model(data.home())
            package = package_model(data.home(), model)
        context.log.info(package.validation)
        return result({**package.report(), "model": model})

    return model_package


def defs(catalog: Catalog) -> dg.Definitions:
    """The release domain: the WebDataset release and the bioimage.io model package."""
    return dg.Definitions(assets=[dataset_shards_asset(catalog), model_package_asset(catalog)])
