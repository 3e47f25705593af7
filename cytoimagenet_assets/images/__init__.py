"""Image science: readers for every source format, channel merging, upsampling crops, quality
control, building one class's images and publishing the dataset (no Dagster here)."""

from cytoimagenet_assets.images.dataset import publish_dataset
from cytoimagenet_assets.images.partition_inputs import build_class_images, class_rows, fetch_class_images
from cytoimagenet_assets.images.readers import read_channels

__all__ = ["class_rows", "fetch_class_images", "build_class_images", "publish_dataset", "read_channels"]
