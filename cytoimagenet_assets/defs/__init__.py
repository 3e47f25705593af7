"""The Dagster layer: assets, checks and resources, split by domain. Thin on purpose — each
definition calls a library function and describes its result for the UI."""
