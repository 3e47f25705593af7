"""Pretraining EfficientNet-B0 on the curated dataset (methods: "Model Training"), and the model run on
images; no Dagster here.

``packed_dataset.py`` packs the PNGs once into a memory-mapped uint8 array (decoding happens there, in
a process pool); ``loop.py`` trains from it (or from the release's shards, ``stream.py``) with the
augmentation on the device, checkpointing every epoch so a rerun resumes; ``launch.py`` names a run and
launches it (in process or under ``torchrun``); ``run_folder.py`` maps a run's files; ``inference.py``
loads a model and extracts features; ``__main__`` runs training standalone or under ``torchrun`` (DDP).
"""

from cytoimagenet_assets.model.inference import FeatureExtractor, extract, load_model
from cytoimagenet_assets.model.launch import latest_model, train_run, training_input
from cytoimagenet_assets.model.loop import train
from cytoimagenet_assets.model.packed_dataset import pack
from cytoimagenet_assets.model.run_folder import ModelRun

__all__ = ["pack", "train", "train_run", "training_input", "latest_model", "ModelRun", "load_model", "FeatureExtractor", "extract"]
