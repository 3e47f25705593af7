"""The map of one training run's folder (``models/<run>/``): training writes these files; the release,
embedding, evaluation and reports read them. No other module spells their names (``test_layout``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelRun:
    folder: Path

    @classmethod
    def of(cls, weights: Path) -> ModelRun:
        """The run whose final weights are ``weights`` (what ``models/latest`` and the CLIs point at)."""
        return cls(Path(weights).parent)

    @property
    def weights(self) -> Path:
        """The final state dict of torchvision's ``efficientnet_b0``: what the evaluation and embed load."""
        return self.folder / "model.pt"

    @property
    def checkpoint(self) -> Path:
        """The resumable checkpoint dict, rewritten every epoch."""
        return self.folder / "checkpoints" / "last.pt"

    @property
    def history(self) -> Path:
        return self.folder / "history.csv"

    @property
    def card(self) -> Path:
        """The model card's facts (classes in output order, recipe, data fingerprint) as JSON."""
        return self.folder / "model_card.json"

    @property
    def card_markdown(self) -> Path:
        return self.folder / "model_card.md"
