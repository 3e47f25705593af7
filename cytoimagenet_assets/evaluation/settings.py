"""The evaluation's settings and the names they choose from, apart from the code that runs it, so
that reading them (the Dagster layer, the CLI) does not import torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

from cytoimagenet_assets.catalog.settings import METHODS

BACKBONES = ("random", "imagenet", "cytoimagenet", "fusion")
# How the *_raw methods scale intensities. "original": /255 whatever the bit depth, as the original's
# Keras EfficientNet did inside the network (its raw columns: 16-bit images far brighter than 1.0);
# "dtype_range": by the integer type's range (16-bit /65535), every input in [0, 1].
RAW_SCALINGS = ("original", "dtype_range")


@dataclass
class EvaluationSettings:
    backbones: Sequence[str] = BACKBONES
    methods: Sequence[str] = tuple(METHODS)
    imagenet_weights: str | None = None  # a file; default: the torch cache (never downloaded here)
    batch_size: int = 64
    tvn: bool = True  # report BBBC021 with TVN beside the raw figure
    aggregations: Sequence[str] = ("mean",)  # BBBC021 treatment aggregation(s): mean (the original), median
    tvn_components: int | None = None
    tvn_variance: float = 0.99  # TVN whitens the components explaining this share of the controls' variance
    raw_scaling: Literal["original", "dtype_range"] = "original"
    seed: int = 0
    umap: bool = True
    device: str | None = None  # default: cuda when present

    def variants(self) -> list:
        from cytoimagenet_assets.evaluation.benchmarks import DEFAULT_VARIANTS
        from cytoimagenet_assets.evaluation.protocols import BBBC021Variant

        out = [BBBC021Variant(aggregate=a) for a in self.aggregations]
        if self.tvn:
            out += [
                BBBC021Variant(tvn=True, aggregate=a, tvn_components=self.tvn_components, tvn_variance=self.tvn_variance)
                for a in self.aggregations
            ]
        return out or list(DEFAULT_VARIANTS)

    def check(self) -> None:
        for name, given, known in (
            ("backbone", self.backbones, BACKBONES),
            ("method", self.methods, METHODS),
            ("aggregation", self.aggregations, ("mean", "median")),
            ("raw scaling", [self.raw_scaling], RAW_SCALINGS),
        ):
            unknown = [g for g in given if g not in known]
            if unknown:
                raise ValueError(f"unknown {name}(s) {', '.join(unknown)}; known: {', '.join(known)}")
