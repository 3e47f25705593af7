"""The trained model as a BioImage Model Zoo package (bioimage.io model spec 0.5) and TorchScript.

``build_package(models/<run>, out)`` writes ``out/<name>/`` — ``rdf.yaml``, TorchScript and state-dict
weights, the architecture file, test input and output tensors (``.npy``) and the same as sample
tensors (``.tif``), the class list, the model card, a README — and ``out/<name>.zip`` (the same files,
as bioimage.io tools upload them). Both are validated with ``bioimageio.spec`` before they are moved
into place; a package that does not validate is an error and nothing is written. The package passes
``bioimageio.core``'s ``test_model`` (what bioimage.io runs on an upload; the tests run it).

The package's input is a gray image replicated to three channels (batch, channel=3, y, x), as in
pretraining. Its preprocessing, declared in ``rdf.yaml`` so any bioimage.io consumer applies it:
0.1/99.9-percentile scaling per channel over y and x (``scale_range``), clipped to [0, 1], then
ImageNet's per-channel mean and std (``fixed_zero_mean_unit_variance``). Outputs: ``features``
(batch, 1280: the global-average-pooled penultimate layer, what ``embed`` and the evaluation use)
and ``logits`` (batch, one channel per CytoImageNet class, named by class key).
"""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
import torch
import yaml

from cytoimagenet_assets.errors import StepFailed
from cytoimagenet_assets.images.readers import ImageReadError, read_channels
from cytoimagenet_assets.intensity import HIGH, LOW, normalize
from cytoimagenet_assets.markdown import Figure, Markdown, table
from cytoimagenet_assets.model.inference import FEATURES, IMAGENET_MEAN, IMAGENET_STD
from cytoimagenet_assets.model.run_folder import ModelRun
from cytoimagenet_assets.release.architecture import CytoImageNetEfficientNetB0
from cytoimagenet_assets.storage import DataHome, atomic_path, sha256_file

PACKAGE_NAME = "cytoimagenet-efficientnet-b0"
SCALE_RANGE_EPS = 1e-6  # bioimage.io's scale_range default: (x - low) / (high - low + eps)
ARCHITECTURE_FILE = Path(__file__).with_name("architecture.py")
PAPER = {
    "text": "Hua, S. B. Z., Lu, A. X., Moses, A. M. CytoImageNet: A large-scale pretraining dataset for bioimage transfer "
    "learning. NeurIPS 2021 Workshop on Learning Meaningful Representations of Life (2021).",
    "doi": "10.48550/arXiv.2111.11646",
}
FILES = {
    "weights": "weights.pt",
    "torchscript": "weights_torchscript.pt",
    "architecture": "architecture.py",
    "test_input": "test_input.npy",
    "test_features": "test_output_features.npy",
    "test_logits": "test_output_logits.npy",
    "sample_input": "sample_input.tif",
    "sample_features": "sample_output_features.tif",
    "sample_logits": "sample_output_logits.tif",
    "classes": "classes.json",
    "card": "model_card.json",
    "readme": "README.md",
    "cover": "cover.png",
    "dataset_card": "training_data.md",
}


class PackageError(StepFailed, RuntimeError):
    """A package that cannot be built or does not validate; the message names the file."""


@dataclass
class PackageResult:
    folder: Path
    zip: Path
    validation: str  # bioimageio.spec's validation summary, as text
    status: str  # its status: "valid-format" (spec checks passed) or "failed"
    files: dict[str, int] = field(default_factory=dict)  # file name → bytes
    classes: int = 0

    def report(self) -> dict:
        files = pd.DataFrame({"file": list(self.files), "bytes": list(self.files.values())})
        return {
            "validation_status": self.status,
            "validation": Markdown(self.validation),
            "files": table(files, max_rows=50),
            "package_bytes": sum(v for k, v in self.files.items() if not k.endswith(".zip")),
            "zip_bytes": self.files[self.zip.name],
            "classes": self.classes,
            "path": self.folder,
            "zip": self.zip,
            "cover": Figure((self.folder / FILES["cover"]).read_bytes(), "test input, raw and normalized"),
        }


def load_state_dict(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise PackageError(f"{path}: not a PyTorch state dict ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict) or "classifier.1.weight" not in state:
        raise PackageError(f"{path}: not an EfficientNet-B0 state dict (no classifier.1.weight); expected a training's model.pt")
    return state


def shipped_architecture(state: dict) -> CytoImageNetEfficientNetB0:
    """The weights in the architecture the package ships (architecture.py), as bioimage.io tools will load them."""
    model = CytoImageNetEfficientNetB0(num_classes=state["classifier.1.weight"].shape[0])
    model.load_state_dict(state)
    return model.eval()


def preprocess(raw: np.ndarray) -> np.ndarray:
    """What ``rdf.yaml`` declares, applied to a (batch, 3, y, x) raw tensor: per-channel
    0.1/99.9-percentile scaling (with bioimage.io's eps), clipped to [0, 1], ImageNet mean/std."""
    out = np.empty(raw.shape, np.float32)
    mean, std = np.asarray(IMAGENET_MEAN, np.float32), np.asarray(IMAGENET_STD, np.float32)
    for b in range(raw.shape[0]):
        for c in range(raw.shape[1]):
            low, high = np.percentile(raw[b, c].astype(np.float64), (LOW, HIGH))
            scaled = np.clip((raw[b, c] - low) / (high - low + SCALE_RANGE_EPS), 0.0, 1.0)
            out[b, c] = (scaled - mean[c]) / std[c]
    return out


def synthetic_image(size: int, seed: int = 0) -> np.ndarray:
    """A deterministic gray test image (16-bit range, blobs on background) when none is given."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    image = np.full((size, size), 200.0, np.float32)
    for cy, cx, r in rng.uniform([0, 0, size / 12], [size, size, size / 5], size=(6, 3)):
        image += 3000.0 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    return (image + rng.normal(0, 20, image.shape)).astype(np.float32)


def _not_a_run(path: Path) -> FileNotFoundError:
    run = ModelRun(path.parent)
    return FileNotFoundError(f"{path} not found: build_package takes a training output folder ({run.weights.name}, {run.card.name})")


def _card(model_dir: Path) -> dict:
    path = ModelRun(model_dir).card
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _not_a_run(path) from None
    except json.JSONDecodeError as exc:
        raise PackageError(f"{path}: not valid JSON ({exc})") from exc


def _cover(image: np.ndarray) -> bytes:
    """A 2:1 cover (bioimage.io's recommended aspect): the test image beside its normalized view."""
    from PIL import Image

    gray = (normalize(image) * 255).round().astype(np.uint8)
    side = max(gray.shape[0], 128)
    tile = np.asarray(Image.fromarray(gray).resize((side, side), Image.Resampling.NEAREST))
    raw = image - image.min()
    raw = (255 * raw / max(float(raw.max()), 1e-12)).astype(np.uint8)
    raw_tile = np.asarray(Image.fromarray(raw).resize((side, side), Image.Resampling.NEAREST))
    buffer = io.BytesIO()
    Image.fromarray(np.concatenate([raw_tile, tile], axis=1)).save(buffer, format="PNG")
    return buffer.getvalue()


def _readme(card: dict, classes: list[dict], input_size: int) -> str:
    metrics = "\n".join(f"| {k} | {v:.4f} |" for k, v in card.get("metrics", {}).items())
    data = card.get("data", {})
    return (
        f"# CytoImageNet EfficientNet-B0\n\n"
        f"EfficientNet-B0 trained from random initialization on CytoImageNet-style weakly labelled microscopy "
        f"({len(classes)} classes, {data.get('images', '?')} images, data fingerprint `{data.get('fingerprint', '?')}`), "
        f"by the cytoimagenet-assets pipeline (a re-implementation of CytoImageNet, arXiv:2111.11646). "
        f"Use it as a feature extractor for microscopy: the `features` output is the 1280-d global-average-pooled "
        f"penultimate layer.\n\n"
        f"## Input\n\nOne gray image per sample, replicated to 3 channels: tensor `image` (batch, channel=3, y, x), "
        f"float32, any size from 32 px in steps of 32 (trained at {input_size} px). A multi-channel image: one sample per "
        f"channel (concatenate the features), or the channels averaged after normalization (merge).\n\n"
        f"Preprocessing (declared in rdf.yaml): per channel, scale the 0.1th..99.9th percentiles to 0..1, clip to [0, 1], "
        f"then subtract ImageNet's mean {list(IMAGENET_MEAN)} and divide by its std {list(IMAGENET_STD)} per channel.\n\n"
        f"## Outputs\n\n* `features` (batch, 1280)\n* `logits` (batch, {len(classes)}): one per class, in the order of "
        f"`classes.json` (class key, category, label)\n\n"
        f"## Training\n\nRecipe: `{json.dumps(card.get('recipe', {}))}`\n\n| metric | value |\n|---|---|\n{metrics}\n\n"
        f"## Files\n\n* `weights_torchscript.pt`: TorchScript, `torch.jit.load`; returns (features, logits)\n"
        f"* `weights.pt`: state dict of torchvision `efficientnet_b0(num_classes={len(classes)})` (also `architecture.py`)\n"
        f"* `test_input.npy`, `test_output_features.npy`, `test_output_logits.npy`: a raw input and its expected outputs\n"
        f"* `sample_input.tif`, `sample_output_features.tif`, `sample_output_logits.tif`: the same, as images\n\n"
        f"## Validation\n\n{_validation_text(card)}\n\n"
        f"## Citation\n\n{PAPER['text']} doi:{PAPER['doi']}\n"
    )


def _validation_text(card: dict) -> str:
    """What the package's README says about how the model was validated."""
    metrics = card.get("metrics", {})
    held_out = ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if k.startswith("val_")) or "not recorded"
    return (
        "Held-out validation (10% of the images, split by source image so no crop of a validation image is trained on): "
        f"{held_out}. Transfer to other microscopy tasks (k-NN on the features: BBBC021 mechanism of action, COOS-7, "
        "CyCLoPs) is reported by the pipeline's evaluation_report, beside the published figures."
    )


def _dataset_card(card: dict, classes: list[dict]) -> str:
    data = card.get("data", {})
    return (
        f"# CytoImageNet training data\n\n{data.get('images', '?')} images in {len(classes)} classes (data fingerprint "
        f"`{data.get('fingerprint', '?')}`), weakly labelled from public microscopy sources by the cytoimagenet-assets "
        "pipeline. Each source keeps its own license; the published dataset's card lists them.\n\n"
        f"{PAPER['text']} doi:{PAPER['doi']}\n"
    )


def absolute_tolerance(test_output: np.ndarray) -> float | None:
    """bioimage.io's default absolute tolerance (1e-3), or half of 1 % of the test output's maximum when
    smaller: the spec refuses a tolerance above 1 % of it (a barely trained model's features are small).
    None when that maximum is not positive: no tolerance passes the spec's check then."""
    top = float(np.max(test_output))
    return min(1e-3, 0.005 * top) if top > 0 else None


def _rdf(card: dict, classes: list[dict], input_size: int, torch_version: str, description: str, tolerances: dict[str, float]) -> dict:
    data = card.get("data", {})
    return {
        "format_version": "0.5.4",
        "type": "model",
        "name": "CytoImageNet EfficientNet-B0",
        "description": description,
        "authors": [{"name": "cytoimagenet-assets contributors"}],
        "cite": [dict(PAPER)],
        "license": "MIT",
        "tags": ["microscopy", "feature-extraction", "classification", "pretraining", "efficientnet", "2d", "pytorch", "cytoimagenet"],
        "documentation": FILES["readme"],
        "covers": [FILES["cover"]],
        "attachments": [{"source": FILES["classes"]}, {"source": FILES["card"]}],
        "version": "0.1.0",
        "inputs": [
            {
                "id": "image",
                "description": "A gray microscopy image replicated to 3 channels (as in pretraining), raw intensities.",
                "axes": [
                    {"type": "batch"},
                    {
                        "type": "channel",
                        "channel_names": ["gray_r", "gray_g", "gray_b"],
                        "description": "the same gray image in each channel",
                    },
                    {"type": "space", "id": "y", "size": {"min": 32, "step": 32}},
                    {"type": "space", "id": "x", "size": {"min": 32, "step": 32}},
                ],
                "test_tensor": {"source": FILES["test_input"]},
                "sample_tensor": {"source": FILES["sample_input"]},
                "data": {"type": "float32"},
                "preprocessing": [
                    {
                        "id": "scale_range",
                        "kwargs": {"axes": ["y", "x"], "min_percentile": LOW, "max_percentile": HIGH, "eps": SCALE_RANGE_EPS},
                    },
                    {"id": "clip", "kwargs": {"min": 0.0, "max": 1.0}},
                    {
                        "id": "fixed_zero_mean_unit_variance",
                        "kwargs": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "axis": "channel"},
                    },
                ],
            }
        ],
        "outputs": [
            {
                "id": "features",
                "description": "1280-d global-average-pooled penultimate layer (the transfer features).",
                "axes": [{"type": "batch"}, {"type": "index", "id": "feature", "size": FEATURES}],
                "test_tensor": {"source": FILES["test_features"]},
                "sample_tensor": {"source": FILES["sample_features"]},
                "data": {"type": "float32"},
            },
            {
                "id": "logits",
                "description": f"Class scores, one per CytoImageNet class ({len(classes)}; classes.json).",
                "axes": [{"type": "batch"}, {"type": "channel", "channel_names": [c["class_key"] for c in classes]}],
                "test_tensor": {"source": FILES["test_logits"]},
                "sample_tensor": {"source": FILES["sample_logits"]},
                "data": {"type": "float32"},
            },
        ],
        "weights": {
            "pytorch_state_dict": {
                "source": FILES["weights"],
                "architecture": {
                    "source": FILES["architecture"],
                    "callable": "CytoImageNetEfficientNetB0",
                    "kwargs": {"num_classes": len(classes)},
                },
                "pytorch_version": torch_version,
            },
            "torchscript": {"source": FILES["torchscript"], "pytorch_version": torch_version, "parent": "pytorch_state_dict"},
        },
        "training_data": {
            "type": "dataset",
            "format_version": "0.3.0",
            "name": "CytoImageNet (as built by cytoimagenet-assets)",
            "description": f"Weakly labelled microscopy images from public sources: {len(classes)} classes, "
            f"{data.get('images', '?')} images; data fingerprint {data.get('fingerprint', '?')}. "
            "The original release: 890,737 images, 894 classes, 40 source datasets "
            "(https://www.kaggle.com/datasets/stanleyhua/cytoimagenet).",
            "authors": [{"name": "Stanley Bryan Z. Hua"}, {"name": "Alex X. Lu"}, {"name": "Alan M. Moses"}],
            "cite": [dict(PAPER)],
            "documentation": FILES["dataset_card"],
            "tags": ["microscopy", "weak-labels", "pretraining"],
        },
        "config": {
            "bioimageio": {
                "reproducibility_tolerance": [
                    {"output_ids": [name], "absolute_tolerance": tolerance, "relative_tolerance": 1e-3}
                    for name, tolerance in tolerances.items()
                ]
            },
            "cytoimagenet": {
                "data_fingerprint": data.get("fingerprint"),
                "input_size": input_size,
                "classes": len(classes),
                "metrics": card.get("metrics", {}),
            },
        },
    }


def validate(source: Path | zipfile.ZipFile) -> tuple[str, str]:
    """(status, summary text) of bioimageio.spec's validation of an ``rdf.yaml`` or package zip.

    Offline: every file the package names is local, so the I/O checks (file presence, SHA-256,
    test and sample tensors readable) need no network. The package holds no URL field, which
    bioimageio.spec would request (the original dataset's address is in the training data's
    description); the citation's DOI is checked for format only.
    """
    from bioimageio.spec import load_description

    descr = load_description(source, perform_io_checks=True)
    summary = descr.validation_summary
    return summary.status, summary.format()


def build_package(
    model_dir: Path, out_dir: Path, image: np.ndarray | None = None, dataset_card: Path | None = None, name: str = PACKAGE_NAME
) -> PackageResult:
    """Package the training run in ``model_dir`` (its weights and card: :class:`ModelRun`) under ``out_dir``.

    ``image``: the raw gray test input (sides multiples of 32; default a synthetic one at the
    training input size). ``dataset_card``: the published dataset's README.md, shipped as the
    training data's documentation (default: a short description from the model card).
    """
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    card = _card(model_dir)
    weights_path = ModelRun(model_dir).weights
    if not weights_path.is_file():
        raise _not_a_run(weights_path)
    state = load_state_dict(weights_path)
    n_classes = state["classifier.1.weight"].shape[0]
    keys = card.get("classes", [])
    if len(keys) != n_classes:
        raise PackageError(f"{ModelRun(model_dir).card} lists {len(keys)} classes but {weights_path} has {n_classes} outputs")
    labels = card.get("class_labels") or [{} for _ in keys]
    classes = [{"index": i, "class_key": k, **labels[i]} for i, k in enumerate(keys)]
    input_size = int(card.get("recipe", {}).get("input_size", 224))
    model = shipped_architecture(state)

    if image is None:
        image = synthetic_image(max(32, input_size))
    image = np.asarray(image, np.float32)
    if image.ndim != 2 or min(image.shape) < 32 or image.shape[0] % 32 or image.shape[1] % 32:
        raise PackageError(f"test image of shape {image.shape}: expected a 2-D image with sides multiples of 32 (at least 32)")
    raw = np.ascontiguousarray(np.broadcast_to(image, (1, 3, *image.shape)))
    scripted = torch.jit.script(model)
    with torch.no_grad():
        features, logits = (t.numpy() for t in scripted(torch.from_numpy(preprocess(raw))))

    description = (
        f"EfficientNet-B0 pretrained on CytoImageNet-style weakly labelled microscopy ({n_classes} classes): "
        "1280-d features for transfer to other microscopy tasks, and class logits."
    )
    with atomic_path(out_dir / name, is_dir=True) as stage:
        shutil.copyfile(weights_path, stage / FILES["weights"])
        scripted.save(str(stage / FILES["torchscript"]))
        shutil.copyfile(ARCHITECTURE_FILE, stage / FILES["architecture"])
        np.save(stage / FILES["test_input"], raw)
        np.save(stage / FILES["test_features"], features)
        np.save(stage / FILES["test_logits"], logits)
        for key, tensor in (("sample_input", raw), ("sample_features", features), ("sample_logits", logits)):
            tifffile.imwrite(stage / FILES[key], tensor, photometric="minisblack")  # the test tensors as images viewers open
        (stage / FILES["classes"]).write_text(json.dumps(classes, indent=1), encoding="utf-8")
        (stage / FILES["card"]).write_text(json.dumps(card, indent=1), encoding="utf-8")
        (stage / FILES["readme"]).write_text(_readme(card, classes, input_size), encoding="utf-8")
        (stage / FILES["cover"]).write_bytes(_cover(image))
        if dataset_card is not None:
            shutil.copyfile(dataset_card, stage / FILES["dataset_card"])
        else:
            (stage / FILES["dataset_card"]).write_text(_dataset_card(card, classes), encoding="utf-8")
        tolerances = {name: absolute_tolerance(t) for name, t in (("features", features), ("logits", logits))}
        tolerances = {name: t for name, t in tolerances.items() if t is not None}
        rdf = _rdf(card, classes, input_size, torch.__version__.split("+")[0], description, tolerances)
        for entry in (
            rdf["weights"]["pytorch_state_dict"],
            rdf["weights"]["torchscript"],
            rdf["weights"]["pytorch_state_dict"]["architecture"],
        ):
            entry["sha256"] = sha256_file(stage / entry["source"])
        (stage / "rdf.yaml").write_text(yaml.safe_dump(rdf, sort_keys=False, allow_unicode=True), encoding="utf-8")
        status, text = validate(stage / "rdf.yaml")
        if status == "failed":
            raise PackageError(f"{stage / 'rdf.yaml'} does not validate with bioimageio.spec:\n{text}")
        files = {p.name: p.stat().st_size for p in sorted(stage.iterdir())}
        text = text.replace(str(stage), str(out_dir / name))
    zip_path = out_dir / f"{name}.zip"
    with atomic_path(zip_path) as stage_zip:
        with zipfile.ZipFile(stage_zip, "w", zipfile.ZIP_DEFLATED) as archive:
            for file in files:
                archive.write(out_dir / name / file, file)
        with zipfile.ZipFile(stage_zip) as archive:
            zip_status, zip_text = validate(archive)
        if zip_status == "failed":
            raise PackageError(f"{zip_path} does not validate with bioimageio.spec:\n{zip_text}")
    return PackageResult(out_dir / name, zip_path, text, status, {**files, zip_path.name: zip_path.stat().st_size}, n_classes)


def dataset_test_image(home: DataHome, size: int) -> np.ndarray | None:
    """The published dataset's first image at ``size`` (rounded to a multiple of 32), as the package's
    test input; None when there is no dataset to take it from (a synthetic one is used then)."""
    from PIL import Image

    metadata = home.dataset_metadata()
    if not metadata.is_file():
        return None
    first = pd.read_csv(metadata, nrows=1)
    if first.empty:
        return None
    try:
        image = read_channels(home.dataset_dir() / first["path"].iloc[0] / first["filename"].iloc[0])[0]
    except (ImageReadError, OSError, KeyError):
        return None
    side = max(32, round(size / 32) * 32)
    return np.asarray(Image.fromarray(image).resize((side, side), Image.Resampling.BILINEAR), np.float32)


def package_model(home: DataHome, model: Path) -> PackageResult:
    """:func:`build_package` of ``model``'s training folder into ``release/model/``, its test input the
    dataset's first image at the size the run trained at, its training data documented by the dataset card
    (when there is one)."""
    run = ModelRun.of(model)
    input_size = int(_card(run.folder).get("recipe", {}).get("input_size", 224))
    card = home.dataset_card()
    return build_package(run.folder, home.model_package_dir(), dataset_test_image(home, input_size), card if card.is_file() else None)
