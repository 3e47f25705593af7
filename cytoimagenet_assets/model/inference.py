"""The model run on images: backbones, the one model loader, and the feature-extraction methods
(global-average-pooled penultimate layer), used by the evaluation and by ``embed`` alike.

Methods, as in the original: features of each channel concatenated (1280 × channels) or the
channels merged into one gray image (1280), each with or without 0.1/99.9-percentile normalization;
added, the bag of channels: each normalized channel's features averaged (1280), so they depend on
neither the channels' order nor their number. "Without normalization" divides the raw intensities
by 255 whatever the bit depth, as the original's Keras EfficientNet did inside the network (so
16-bit images reach values far above 1); the ``dtype_range`` raw scaling divides by the integer
type's range instead (uint16 /65535). Gray images are replicated to 3 channels and given
ImageNet's mean/std, exactly as in pretraining.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
import torchvision
import yaml

from cytoimagenet_assets.catalog.settings import METHODS
from cytoimagenet_assets.devices import fit_cpu_threads
from cytoimagenet_assets.errors import StepFailed
from cytoimagenet_assets.intensity import normalize

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the inputs' normalization in pretraining, evaluation and the package
IMAGENET_STD = (0.229, 0.224, 0.225)
FEATURES = 1280  # EfficientNet-B0's global-average-pooled penultimate layer: the transfer features
IMAGENET_WEIGHTS = torchvision.models.EfficientNet_B0_Weights.IMAGENET1K_V1


class BackboneUnavailable(StepFailed, RuntimeError):
    """A backbone whose weights cannot be had here; the message says why and how to provide them."""


def random_backbone(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torchvision.models.efficientnet_b0(weights=None)


def imagenet_backbone(weights_file: str | None = None) -> torch.nn.Module:
    """ImageNet EfficientNet-B0 from a configured file or the torch cache — never downloaded here."""
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(IMAGENET_WEIGHTS.url).name
    path = Path(weights_file) if weights_file else cached
    if not path.is_file():
        raise BackboneUnavailable(
            f"ImageNet weights not found at {path}. With network access, fill the torch cache once: "
            f"python -c \"import torchvision; torchvision.models.efficientnet_b0(weights='IMAGENET1K_V1')\" "
            f"(downloads {IMAGENET_WEIGHTS.url}), or configure imagenet_weights with the file's path"
        )
    model = torchvision.models.efficientnet_b0(weights=None)
    model.load_state_dict(torch.load(path, map_location="cpu"))
    return model


class ModelLoadError(StepFailed, ValueError):
    """A file or folder that is not a CytoImageNet model; the message names it and what is wrong."""


def _backbone(state: dict) -> torch.nn.Module:
    model = torchvision.models.efficientnet_b0(weights=None, num_classes=state["classifier.1.weight"].shape[0])
    model.load_state_dict(state)
    return model.eval()


@dataclass
class LoadedModel:
    model: torch.nn.Module
    sha256: str  # of the state dict's bytes: rows made with other weights are recomputed
    source: Path


def load_model(path: Path) -> LoadedModel:
    """The one loader of a CytoImageNet model: a training's ``model.pt`` (state dict), or a bioimage.io
    package (folder with rdf.yaml, or its zip) whose ``pytorch_state_dict`` weights are read (the
    package's architecture keeps torchvision's parameter names)."""
    path = Path(path)
    if path.is_dir():
        rdf_path = path / "rdf.yaml"
        if not rdf_path.is_file():
            raise ModelLoadError(f"{path}: a folder without rdf.yaml is not a model package")
        data = (path / _state_dict_file(rdf_path.read_text(encoding="utf-8"), rdf_path)).read_bytes()
    elif zipfile.is_zipfile(path) and path.suffix.lower() == ".zip":
        with zipfile.ZipFile(path) as archive:
            try:
                rdf = archive.read("rdf.yaml").decode("utf-8")
                data = archive.read(_state_dict_file(rdf, path))
            except KeyError as exc:
                raise ModelLoadError(f"{path}: package lacks {exc}") from None
    elif path.is_file():
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        try:
            return LoadedModel(_backbone(torch.load(path, map_location="cpu", weights_only=True)), sha, path)
        except Exception as exc:
            raise ModelLoadError(
                f"{path}: not a CytoImageNet model.pt (state dict of efficientnet_b0): {type(exc).__name__}: {exc}"
            ) from exc
    else:
        raise ModelLoadError(f"{path}: no such model file or package")
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    return LoadedModel(_backbone(state), hashlib.sha256(data).hexdigest(), path)


def _state_dict_file(rdf_text: str, where: Path) -> str:
    try:
        return yaml.safe_load(rdf_text)["weights"]["pytorch_state_dict"]["source"]
    except (yaml.YAMLError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"{where}: rdf.yaml has no weights.pytorch_state_dict.source ({exc})") from None


class FeatureExtractor:
    """Penultimate-layer features (1280, global average pooled) of gray images, batched on the device."""

    def __init__(self, model: torch.nn.Module, device: torch.device, batch_size: int = 64):
        # channels_last: EfficientNet's depthwise convolutions run ~1.5x faster on a CPU core (128 px, measured)
        net = torch.nn.Sequential(model.features, model.avgpool, torch.nn.Flatten())
        self.net = net.to(device, memory_format=torch.channels_last).eval()
        self.device, self.batch_size = device, batch_size
        if device.type == "cpu":
            fit_cpu_threads()
        self.mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)

    @torch.no_grad()
    def __call__(self, images: list[np.ndarray]) -> np.ndarray:
        """Features of gray float images in [0, 1]; batches group images of the same shape.

        On the CPU, denormal floats are flushed to zero while the network runs (restored after):
        a randomly initialized network produces many, and they made extraction up to 10× slower.
        """
        flush = self.device.type == "cpu" and torch.set_flush_denormal(True)
        try:
            return self._features(images)
        finally:
            if flush:
                torch.set_flush_denormal(False)

    def _features(self, images: list[np.ndarray]) -> np.ndarray:
        out = np.empty((len(images), FEATURES), np.float32)
        by_shape: dict[tuple, list[int]] = {}
        for i, image in enumerate(images):
            by_shape.setdefault(image.shape, []).append(i)
        for rows in by_shape.values():
            for start in range(0, len(rows), self.batch_size):
                chunk = rows[start : start + self.batch_size]
                x = torch.from_numpy(np.stack([images[i] for i in chunk])).to(self.device, torch.float32).unsqueeze(1)
                x = ((x.expand(-1, 3, -1, -1) - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
                    out[chunk] = self.net(x).float().cpu().numpy()
        return out


def scale_raw(channel: np.ndarray, scaling: str = "original") -> np.ndarray:
    """Raw intensities as the network's input: /255 (``original``), or by the integer type's range."""
    if scaling == "dtype_range" and channel.dtype.kind in "ui":
        return channel.astype(np.float32) / np.float32(np.iinfo(channel.dtype).max)
    if scaling == "dtype_range" or channel.dtype.kind == "f":
        return channel.astype(np.float32)
    return channel.astype(np.float32) / np.float32(255)


def prepare(channels: list[np.ndarray], method: str, raw_scaling: str = "original") -> list[np.ndarray]:
    """The gray images a method feeds the network for one sample (one per channel, or one merged)."""
    kind, normalized = METHODS[method]
    images = [normalize(c) if normalized else scale_raw(c, raw_scaling) for c in channels]
    if kind == "merge":
        return [np.mean(images, axis=0, dtype=np.float32)]
    return images


def extract_channels(
    extractor: FeatureExtractor, samples: Iterable[list[np.ndarray]], method: str, raw_scaling: str = "original"
) -> list[np.ndarray]:
    """Each sample's features per image ``method`` feeds the network, (channels, 1280) or (1, 1280) merged:
    the bag of channels before pooling, which ``embed`` keeps by channel name."""
    prepared = [prepare(channels, method, raw_scaling) for channels in samples]
    flat = extractor([image for images in prepared for image in images])
    bounds = np.cumsum([0, *map(len, prepared)])
    return [flat[start:end] for start, end in zip(bounds[:-1], bounds[1:])]


def pool_channels(per_channel: Sequence[np.ndarray]) -> np.ndarray:
    """The bag of channels: each sample's per-channel features averaged, (N, 1280) whatever the channels' order or number."""
    return np.stack([f.mean(axis=0) for f in per_channel]) if len(per_channel) else np.empty((0, FEATURES), np.float32)


def extract(extractor: FeatureExtractor, samples: Iterable[list[np.ndarray]], method: str, raw_scaling: str = "original") -> np.ndarray:
    """Features of every sample (a list of channel images) by ``method``: (N, 1280 × channels) or (N, 1280)."""
    if METHODS[method][0] == "bag":
        return pool_channels(extract_channels(extractor, samples, method, raw_scaling))
    prepared = [prepare(channels, method, raw_scaling) for channels in samples]
    per_sample = len(prepared[0]) if prepared else 0
    if any(len(p) != per_sample for p in prepared):
        raise ValueError("samples have different numbers of channels")
    flat = extractor([image for images in prepared for image in images])
    return flat.reshape(len(prepared), per_sample * flat.shape[1])


def extract_all(
    extractors: dict[str, FeatureExtractor],
    samples: Sequence[list[np.ndarray]],
    methods: Sequence[str],
    chunk: int = 64,
    progress: Callable[[int], None] | None = None,
    raw_scaling: str = "original",
) -> dict[str, dict[str, np.ndarray]]:
    """Features of every sample by every method and backbone: ``{backbone: {method: (N, D)}}``.

    Samples are read ``chunk`` at a time (a lazy sequence, e.g. BBBC021 fields read from disk) and
    each chunk is read once for all methods and backbones, so memory stays bounded and files are
    not read again per method. ``progress(n)`` is called after each chunk with the samples done.
    The bag of channels is pooled from concat_normalized's blocks when that is computed too (the same
    images through the same network): no second pass of every channel.
    """
    out: dict[str, dict[str, list[np.ndarray]]] = {b: {m: [] for m in methods} for b in extractors}
    shared = "bag_of_channels" in methods and "concat_normalized" in methods
    for start in range(0, len(samples), chunk):
        batch = [samples[i] for i in range(start, min(start + chunk, len(samples)))]
        for method in sorted(methods, key=lambda m: shared and m == "bag_of_channels"):
            for name, extractor in extractors.items():
                if shared and method == "bag_of_channels":
                    features = pool_channels([row.reshape(-1, FEATURES) for row in out[name]["concat_normalized"][-1]])
                else:
                    features = extract(extractor, batch, method, raw_scaling)
                out[name][method].append(features)
        if progress is not None:
            progress(len(batch))
    return {
        b: {m: np.concatenate(parts) if parts else np.empty((0, FEATURES), np.float32) for m, parts in by_method.items()}
        for b, by_method in out.items()
    }
