"""Pretraining EfficientNet-B0 on the curated dataset (methods: "Model Training"); no Dagster here.

``shards.py`` packs the PNGs once into a memory-mapped uint8 array (decoding happens there, in a
process pool); ``loop.py`` trains from it with the augmentation on the device, checkpointing every
epoch so a rerun resumes; ``__main__`` runs it standalone or under ``torchrun`` (DDP).
"""
