"""Label-side science: merging the source tables (and, later, weak-label assignment)."""
