"""Image science: readers for every source format, normalization and channel merging, upsampling
crops, quality control, and building one class's images (no Dagster here)."""
