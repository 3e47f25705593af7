"""Every asset key and the class partitions, in one place: the domains depend on one another's assets
only through these names (``class_partitions.py`` keeps the partitions equal to the class table)."""

import dagster as dg

from cytoimagenet_assets.catalog import Source


def raw_key(source: Source) -> dg.AssetKey:
    return dg.AssetKey(["raw", source.dir_name])


def table_key(source: Source) -> dg.AssetKey:
    return dg.AssetKey(["source_metadata", source.dir_name])


MERGED_KEY = dg.AssetKey("merged_metadata")
CANDIDATES_KEY = dg.AssetKey("label_candidates")
LABELS_KEY = dg.AssetKey("cytoimagenet_labels")
CLASS_PARTITIONS = dg.DynamicPartitionsDefinition(name="cytoimagenet_class")
CLASS_IMAGES_KEY = dg.AssetKey("class_images")
DATASET_KEY = dg.AssetKey("cytoimagenet_dataset")
RELEASE_KEY = dg.AssetKey("dataset_shards")
SHARDS_KEY = dg.AssetKey("training_shards")
MODEL_KEY = dg.AssetKey("pretrained_model")
PACKAGE_KEY = dg.AssetKey("model_package")
EMBEDDINGS_KEY = dg.AssetKey("embeddings")
REPORT_KEY = dg.AssetKey("evaluation_report")
UMAP_KEY = dg.AssetKey("upsampling_umap")
