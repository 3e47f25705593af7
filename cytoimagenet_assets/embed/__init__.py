"""Features of a user's own images with the CytoImageNet model (``embed``), from a folder or a CSV of
channel paths (``inputs``); the ``embeddings`` asset runs it on the catalog's ``embed:`` list. See
``embedding.py`` for what is computed, how a rerun resumes and what is recomputed."""

from cytoimagenet_assets.embed.embedding import embed, embed_target, embeddings_report, feature_matrix, parts_dir
from cytoimagenet_assets.embed.inputs import EmbedError, csv_inputs, folder_inputs, inputs_from

__all__ = [
    "embed",
    "embed_target",
    "embeddings_report",
    "feature_matrix",
    "parts_dir",
    "inputs_from",
    "folder_inputs",
    "csv_inputs",
    "EmbedError",
]
