"""The settings of each step, one object per step (LabelSettings, TrainSettings, EvaluationSettings):
the catalog holds them (its ``labels:``, ``training:`` and ``evaluation:`` blocks, the catalog's ``seed``
filling theirs) and the steps take them as they are.
The Dagster launchpad overrides single fields of them (``cytoimagenet_assets.defs.settings``).

They are validated pydantic dataclasses: a bad value fails where it is set (the catalog entry, the
launchpad, the CLI) with the field named, and ``dataclasses.fields`` / ``replace`` / ``asdict`` work.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Literal, get_args

from pydantic import ConfigDict, model_validator
from pydantic.dataclasses import dataclass

# The label columns of the standardized table, in its column order.
LABEL_CATEGORIES = ("organism", "cell_type", "cell_visible", "phenotype", "compound", "sirna", "gene")
# How the image step fills classes: crops replacing the images as the original, or added to small classes.
Upsampling = Literal["original", "top_up"]
UPSAMPLING = get_args(Upsampling)
# Which crops the image step keeps: the original's check, or also none that only stretch background ("contrast").
CropCheck = Literal["original", "contrast"]
CROP_CHECKS = get_args(CropCheck)
# What the release holds of each image: CytoImageNet's merged gray image, or that and each channel kept apart.
Channels = Literal["merged", "preserved"]
CHANNELS = get_args(Channels)

# How a multi-channel image becomes features, one spelling for the evaluation, embed and the catalog's
# embed targets: (how channels are combined, whether each is normalized first). "bag": each channel
# through the network on its own and the features averaged, so neither the channels' order nor their
# number changes them (as channel-adaptive models do), and a model trained on gray images sees each stain as one.
METHODS = {
    "concat_normalized": ("concat", True),
    "concat_raw": ("concat", False),
    "merge_normalized": ("merge", True),
    "merge_raw": ("merge", False),
    "bag_of_channels": ("bag", True),
}
Method = Literal["concat_normalized", "concat_raw", "merge_normalized", "merge_raw", "bag_of_channels"]

STRICT = ConfigDict(extra="forbid")


@dataclass(frozen=True, config=STRICT)
class LabelSettings:
    """Weak-label assignment (methods: "Weak Label Assignment"): the original's 287 / 1,000 / 10,000,
    how the image step upsamples classes (``original``: crops replace the images, as the original;
    ``top_up``: images kept, crops only for classes under the target), and the release floor: a
    built class with fewer images is left out of the dataset (the original's 500 of its 1,000 target,
    applied after upsampling; unset, half the target, so it scales with it), and the crop check
    (``original``; ``contrast`` also drops crops spanning under a tenth of their image's intensity
    range, background the renormalization would stretch into noise), and ``channels`` (``merged``:
    the gray image only, as the original; ``preserved``: each channel of each output too, under the
    class's ``channels/`` folder and in a release of its own). Every field but ``categories`` and
    ``release_floor`` is part of each class's fingerprint or membership."""

    threshold: int = 287
    target: int = 1000
    cap: int = 10_000
    seed: int = 0
    categories: tuple[str, ...] = LABEL_CATEGORIES
    upsampling: Upsampling = "original"
    release_floor: int | None = None
    crop_check: CropCheck = "original"
    channels: Channels = "merged"

    @model_validator(mode="after")
    def _valid(self) -> "LabelSettings":
        if not 1 <= self.threshold <= self.target <= self.cap:
            raise ValueError(f"need 1 <= threshold <= target <= cap, got {self.threshold}, {self.target}, {self.cap}")
        if self.release_floor is not None and not 0 <= self.release_floor <= self.target:
            raise ValueError(f"need 0 <= release_floor <= target, got {self.release_floor} and {self.target}")
        unknown = set(self.categories) - set(LABEL_CATEGORIES)
        if unknown:
            raise ValueError(f"unknown label categories {sorted(unknown)}; known: {', '.join(LABEL_CATEGORIES)}")
        return self

    @property
    def floor(self) -> int:
        """The fewest images a built class needs to be released."""
        return math.ceil(self.target / 2) if self.release_floor is None else self.release_floor

    def record(self) -> dict:
        """The settings as JSON-ready values (stored with the class table, shown in the UI)."""
        return {**asdict(self), "categories": list(self.categories)}

    @classmethod
    def from_record(cls, record: dict) -> "LabelSettings":
        """The settings a class table was written with (its ``record``); a field it predates takes its default."""
        return cls(**{**record, "categories": tuple(record["categories"])})


# How the training model is compiled: not at all, by inductor, or graph capture only (eager: checks that it compiles, in seconds).
Compile = Literal["off", "inductor", "eager"]
# TrainSettings fields that change how fast a run trains, not what it learns: a run may resume with others.
EXECUTION = ("compile", "decode_workers")
# TrainSettings recipe fields added after runs were first named, with the defaults those runs trained with.
LATER = {"crop_scale": 1.0, "flip": False}


@dataclass(frozen=True, config=STRICT)
class TrainSettings:
    """The pretraining recipe (methods: "Model Training"), the original's by default."""

    epochs: int = 24
    batch_size: int = 64
    lr: float = 1e-3
    lr_schedule: Literal["constant", "cosine"] = "constant"  # constant: the original
    val_fraction: float = 0.1
    input_size: int = 224
    seed: int = 0
    amp: bool = True  # mixed precision on CUDA (bf16 where supported)
    channels_last: bool = True
    max_steps_per_epoch: int = 0  # 0: whole epochs; else a cap (smoke runs, benchmarks)
    crop_scale: float = 1.0  # random resized crops: the smallest share of the image's area a crop keeps (1: none, the original)
    flip: bool = False  # random horizontal flips (with the rotation: every mirror image), not in the original
    compile: Compile = "off"  # torch.compile the training model: inductor (fused kernels), eager (graph capture only: a check)
    decode_workers: int = 0  # processes decoding the streamed release's PNGs (0: the prefetch thread); the packed array needs none

    @model_validator(mode="after")
    def _valid(self) -> "TrainSettings":
        if self.epochs < 1 or self.batch_size < 1 or self.max_steps_per_epoch < 0 or self.decode_workers < 0:
            raise ValueError(
                f"need epochs >= 1, batch_size >= 1, max_steps_per_epoch >= 0, decode_workers >= 0, got {self.epochs}, "
                f"{self.batch_size}, {self.max_steps_per_epoch}, {self.decode_workers}"
            )
        if self.input_size < 32 or self.lr <= 0 or not 0 <= self.val_fraction < 1 or not 0 < self.crop_scale <= 1:
            raise ValueError(
                f"need input_size >= 32, lr > 0, 0 <= val_fraction < 1, 0 < crop_scale <= 1, got {self.input_size}, {self.lr}, "
                f"{self.val_fraction}, {self.crop_scale}"
            )
        return self

    def resumable_with(self, other: "TrainSettings") -> bool:
        """A checkpoint made with ``other`` can continue under this config: only the number of
        epochs may differ, and not even that under a cosine schedule (its length is in the schedule)."""
        if self.lr_schedule == "cosine" and self.epochs != other.epochs:
            return False
        return self.recipe() == other.recipe()

    def recipe(self) -> dict:
        """The settings apart from the run's length and its speed (``EXECUTION``): runs that differ only
        in those share a folder (``model.launch.run_name``) and resume one another. Fields added after
        runs were first named (``LATER``) are left out at their defaults, so those runs keep their folder."""
        fields = {k: v for k, v in asdict(self).items() if k not in EXECUTION and not (k in LATER and v == LATER[k])}
        return {**fields, "epochs": 0}


# The transfer evaluation's backbones: random weights, ImageNet's, the CytoImageNet model, and the last two concatenated.
BACKBONES = ("random", "imagenet", "cytoimagenet", "fusion")
AGGREGATIONS = ("mean", "median")  # how BBBC021's fields become treatment profiles: mean (the original), median
# How the *_raw methods scale intensities. "original": /255 whatever the bit depth, as the original's
# Keras EfficientNet did inside the network (its raw columns: 16-bit images far brighter than 1.0);
# "dtype_range": by the integer type's range (16-bit /65535), every input in [0, 1].
RawScaling = Literal["original", "dtype_range"]
RAW_SCALINGS = get_args(RawScaling)


@dataclass(frozen=True, config=STRICT)
class EvaluationSettings:
    """The transfer evaluation (methods: "Evaluation (Transfer Tasks)"): which backbones and feature
    methods, BBBC021's aggregation and TVN (on the components explaining ``tvn_variance`` of the
    controls' variance, or ``tvn_components`` of them), how raw intensities are scaled, the UMAP
    figures, the device (default: CUDA when present)."""

    backbones: tuple[str, ...] = BACKBONES
    methods: tuple[str, ...] = tuple(METHODS)
    imagenet_weights: str | None = None  # a file; default: the torch cache (never downloaded here)
    batch_size: int = 64
    tvn: bool = True  # report BBBC021 with TVN beside the raw figure
    aggregations: tuple[str, ...] = ("mean",)
    tvn_components: int | None = None
    tvn_variance: float = 0.99
    raw_scaling: RawScaling = "original"
    seed: int = 0
    umap: bool = True
    device: str | None = None

    @model_validator(mode="after")
    def _valid(self) -> "EvaluationSettings":
        for name, given, known in (
            ("backbone", self.backbones, BACKBONES),
            ("method", self.methods, tuple(METHODS)),
            ("aggregation", self.aggregations, AGGREGATIONS),
        ):
            unknown = [g for g in given if g not in known]
            if unknown:
                raise ValueError(f"unknown {name}(s) {', '.join(unknown)}; known: {', '.join(known)}")
        if self.batch_size < 1 or not 0 < self.tvn_variance <= 1 or (self.tvn_components is not None and self.tvn_components < 1):
            raise ValueError(
                f"need batch_size >= 1, 0 < tvn_variance <= 1, tvn_components >= 1 or unset, got {self.batch_size}, "
                f"{self.tvn_variance}, {self.tvn_components}"
            )
        return self
