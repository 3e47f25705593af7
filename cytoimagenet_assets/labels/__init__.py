"""Label-side science: merging the source tables, weak-label assignment, the class table."""
