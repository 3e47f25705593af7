"""Label-side science: merging the source tables, weak-label assignment, the class table."""

from cytoimagenet_assets.labels.tables import rows_with_images, write_candidates, write_class_table, write_merged

__all__ = ["write_merged", "rows_with_images", "write_candidates", "write_class_table"]
