"""Train EfficientNet-B0 from scratch on the packed dataset (methods: "Model Training").

The original recipe by default: torchvision ``efficientnet_b0`` from random initialization, one
output per class, a 90/10 train/validation split stratified by class (grouped by source image, so no
crop of a validation image is trained on), batches of 64, random
rotation 0-360° (reflect fill), Adam at 1e-3, cross-entropy, 24 epochs, 224×224 input with the gray
image replicated to 3 channels (so ImageNet weights stay interchangeable).

Input pipeline: batches are gathered from the memory-mapped uint8 array by a prefetch thread
(pinned memory, asynchronous copies); the augmentation (rotation, and the recipe's optional random
resized crops and flips, in one ``grid_sample``) and normalization run batched on the device. On
CUDA: bf16 autocast where supported (fp16 with loss scaling otherwise), channels_last, cudnn
benchmark, TF32, fused Adam, optionally ``torch.compile`` (the recipe's ``compile``); the step's
loss and hits are summed on the device, so no step waits for the GPU. Several processes
(``torchrun``) train with DistributedDataParallel (NCCL on GPUs, gloo on CPUs). Every epoch is
checkpointed (model, optimizer, scheduler, epoch, config, the data's fingerprint, RNG states); a
rerun resumes from the last checkpoint — refused when the checkpoint was trained on other data or
with another recipe (the speed settings, ``compile`` and ``decode_workers``, may change) — and, on
the CPU, ends with the same weights as an uninterrupted run (on CUDA, cudnn autotuning and TF32 make
runs close but not bitwise equal).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import torch.nn.functional as F
import torchvision

from cytoimagenet_assets.catalog.settings import TrainSettings
from cytoimagenet_assets.devices import fit_cpu_threads, pick_device
from cytoimagenet_assets.markdown import header_fields, report_header
from cytoimagenet_assets.model.inference import IMAGENET_MEAN, IMAGENET_STD
from cytoimagenet_assets.model.packed_dataset import PackedDataset
from cytoimagenet_assets.model.run_folder import ModelRun
from cytoimagenet_assets.model.stream import WebDatasetShards
from cytoimagenet_assets.storage import write_csv, write_text, write_torch

TrainingData = PackedDataset | WebDatasetShards  # the packed memory-mapped array (one node) or the streamed WebDataset release


def stratified_split(labels: np.ndarray, groups: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) row indices: about ``fraction`` of every class goes to validation, whole
    ``groups`` (source images) at a time, so the crops of one image never sit on both sides.

    Per class, its source images in a seeded random order go to validation until it holds at least
    round(fraction × class size) rows (at least one image of a class with two source images or
    more; never all of them). Deviation from the original, whose row-level split put crops of one
    image in both parts and so scored validation on near-copies of training images.
    """
    rng = np.random.default_rng(seed)
    train, val = [], []
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        codes, uniques = pd.factorize(groups[rows])
        order = rng.permutation(len(uniques))
        filled = np.cumsum(np.bincount(codes, minlength=len(uniques))[order])
        wanted = int(round(fraction * len(rows)))
        n_groups = int(np.searchsorted(filled, wanted)) + 1 if wanted > 0 else 0
        n_groups = min(max(n_groups, 1 if fraction > 0 else 0), len(uniques) - 1)
        in_val = np.isin(codes, order[:n_groups])
        val.append(rows[in_val])
        train.append(rows[~in_val])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def shared_sources(groups: np.ndarray, train_rows: np.ndarray, val_rows: np.ndarray) -> int:
    """Validation rows whose source image also gives a training row (0 for a leak-free split)."""
    return int(np.isin(groups[val_rows], groups[train_rows]).sum())


def build_model(num_classes: int) -> torch.nn.Module:
    return torchvision.models.efficientnet_b0(weights=None, num_classes=num_classes)


CROP_RATIO = (3 / 4, 4 / 3)  # a random crop's aspect ratio range (torchvision's RandomResizedCrop)
CROP_TRIES = 10  # draws for a crop that fits before the whole image is taken (torchvision's)


def crop_boxes(n: int, scale: float, generator: torch.Generator, device: torch.device) -> tuple[torch.Tensor, ...]:
    """``n`` random resized crops of a square image, drawn as torchvision's ``RandomResizedCrop``
    draws one (area share uniform in [scale, 1], log aspect ratio uniform in ``CROP_RATIO``, the first
    of ``CROP_TRIES`` that fits, else the whole image) but for a whole batch at once on the device:
    half width, half height and centre (x, y), in ``grid_sample``'s [-1, 1] coordinates."""
    area = torch.empty(n, CROP_TRIES, device=device).uniform_(scale, 1, generator=generator)
    log_ratio = torch.empty(n, CROP_TRIES, device=device).uniform_(math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]), generator=generator)
    width, height = torch.sqrt(area * torch.exp(log_ratio)), torch.sqrt(area * torch.exp(-log_ratio))
    fits = (width <= 1) & (height <= 1)
    first = fits.to(torch.uint8).argmax(1, keepdim=True)
    whole = ~fits.any(1)
    width = torch.where(whole, 1.0, width.gather(1, first).squeeze(1))
    height = torch.where(whole, 1.0, height.gather(1, first).squeeze(1))
    centre = torch.rand(n, 2, device=device, generator=generator) * 2 - 1
    return width, height, centre[:, 0] * (1 - width), centre[:, 1] * (1 - height)


class DeviceAugment:
    """uint8 gray batch (B, H, W) on the device → normalized float (B, 3, S, S).

    Training batches are rotated by a uniform random angle in [0, 360°) with reflection filling
    the corners (the original's augmentation); with ``flip``, half of them are mirrored; with
    ``crop_scale`` < 1, each shows a random resized crop (:func:`crop_boxes`). All three are one
    affine map per image, sampled from the uint8 batch after its copy in one ``grid_sample``, not
    per image on the CPU. The draws come from a generator seeded per batch (so the augmentation never
    depends on what ran before), the angle first: without crops and flips, the original's draws.
    """

    def __init__(self, size: int, device: torch.device, channels_last: bool, crop_scale: float = 1.0, flip: bool = False):
        self.size, self.device, self.channels_last = size, device, channels_last
        self.crop_scale, self.flip = crop_scale, flip
        self.mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)

    @classmethod
    def of(cls, config: TrainSettings, device: torch.device) -> "DeviceAugment":
        return cls(config.input_size, device, config.channels_last, config.crop_scale, config.flip)

    def __call__(self, batch: torch.Tensor, seed: int | None) -> torch.Tensor:
        x = batch.to(torch.float32).div_(255).unsqueeze(1)
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        if seed is not None:
            grid = F.affine_grid(self._theta(x.shape[0], seed), list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        x = (x.expand(-1, 3, -1, -1) - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x.contiguous()

    def _theta(self, n: int, seed: int) -> torch.Tensor:
        """Per image, the map from output to source coordinates: crop box ∘ flip ∘ rotation."""
        generator = torch.Generator(device=self.device).manual_seed(seed)
        angle = torch.rand(n, device=self.device, generator=generator) * (2 * math.pi)
        cos, sin = torch.cos(angle), torch.sin(angle)
        zero = torch.zeros_like(cos)
        rows = [[cos, -sin, zero], [sin, cos, zero]]
        if self.flip:
            mirror = torch.where(torch.rand(n, device=self.device, generator=generator) < 0.5, -1.0, 1.0)
            rows[0] = [rows[0][0] * mirror, rows[0][1] * mirror, zero]
        if self.crop_scale < 1:
            width, height, x, y = crop_boxes(n, self.crop_scale, generator, self.device)
            rows = [[rows[0][0] * width, rows[0][1] * width, x], [rows[1][0] * height, rows[1][1] * height, y]]
        return torch.stack([torch.stack(rows[0], 1), torch.stack(rows[1], 1)], 1)


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> "Distributed":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world > 1 and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
        return cls(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))

    @property
    def main(self) -> bool:
        return self.rank == 0

    def sum(self, values: list[float], device) -> list[float]:
        if self.world == 1:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def barrier(self):
        if self.world > 1:
            dist.barrier()


def _step_seed(seed: int, epoch: int, step: int, rank: int) -> int:
    return int.from_bytes(hashlib.sha1(f"{seed}:{epoch}:{step}:{rank}".encode()).digest()[:7], "little")


def prepare_device(device: torch.device) -> torch.device:
    """``device``, made current with the CUDA settings training runs with (cudnn autotuning, TF32)."""
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return device


def _autocast(device: torch.device, amp: bool):
    if device.type == "cuda" and amp:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast(device.type, enabled=False)


def _hits(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-1 and top-5 hits of a batch, left on the device (reading them would wait for the GPU)."""
    k = min(5, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    return (top[:, 0] == y).sum(), (top == y[:, None]).any(1).sum()


@dataclass
class Learner:
    """The model and what trains it, built from the recipe in one place for ``train`` and the
    benchmarks, so they measure the step that trains."""

    model: torch.nn.Module  # the weights (what checkpoints and model.pt hold)
    net: torch.nn.Module  # what a step calls: the model, in DDP across processes, compiled when the recipe asks
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    device: torch.device
    amp: bool

    @classmethod
    def build(cls, config: TrainSettings, num_classes: int, device: torch.device, world: int = 1, state: dict | None = None) -> "Learner":
        """Seeded initial weights (the same on every rank and every run), then ``state`` (a checkpoint)
        when resuming; Adam is fused on CUDA (one kernel for all parameters instead of several per tensor)."""
        torch.manual_seed(config.seed)
        model = build_model(num_classes).to(device)
        if config.channels_last:
            model = model.to(memory_format=torch.channels_last)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, fused=True if device.type == "cuda" else None)
        scheduler = (
            torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
            if config.lr_schedule == "cosine"
            else torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
        )
        scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and config.amp and not torch.cuda.is_bf16_supported())
        if state is not None:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
        net = model
        if world > 1:
            net = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None, gradient_as_bucket_view=True
            )
        if config.compile != "off":  # a fixed batch shape: one graph, compiled on the first step
            net = torch.compile(net, backend=config.compile, dynamic=False)
        return cls(model, net, optimizer, scheduler, scaler, device, config.amp)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step on an augmented batch; its loss and logits, on the device."""
        with _autocast(self.device, self.amp):
            logits = self.net(x)
            loss = F.cross_entropy(logits.float(), y)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.detach(), logits.detach()


def train_one_epoch(learner: Learner, batches: Iterator, augment: DeviceAugment, seed: int, epoch: int, rank: int) -> list[float]:
    """One pass over this rank's batches; returns [loss sum, top-1 hits, top-5 hits, images]
    (summed in float64 on the device and read once, at the end)."""
    learner.net.train()
    totals = torch.zeros(4, dtype=torch.float64, device=learner.device)
    for step, (x_u8, y) in enumerate(batches):
        loss, logits = learner.step(augment(x_u8, _step_seed(seed, epoch, step, rank)), y)
        top1, top5 = _hits(logits, y)
        totals[0] += loss.double() * len(y)
        totals[1] += top1
        totals[2] += top5
        totals[3] += len(y)
    return totals.tolist()


@torch.no_grad()
def evaluate(model, batches: Iterator, augment: DeviceAugment, device: torch.device, amp: bool) -> list[float]:
    model.eval()
    totals = torch.zeros(4, dtype=torch.float64, device=device)
    for x_u8, y in batches:
        with _autocast(device, amp):
            logits = model(augment(x_u8, None)).float()
        top1, top5 = _hits(logits, y)
        totals[0] += F.cross_entropy(logits, y, reduction="sum").double()
        totals[1] += top1
        totals[2] += top5
        totals[3] += len(y)
    return totals.tolist()


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def load_checkpoint(path: Path, device: torch.device) -> dict:
    """A checkpoint with its tensors on ``device``, except the RNG states, which stay on the CPU
    (``torch.set_rng_state`` takes only CPU byte tensors; mapping them to a GPU broke resuming there)."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    for part in ("model", "optimizer", "scheduler", "scaler"):
        state[part] = _to_device(state[part], device)
    return state


def _to_device(value, device: torch.device):
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: _to_device(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_device(v, device) for v in value)
    return value


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class TrainResult:
    history: pd.DataFrame
    weights: Path
    resumed_from_epoch: int | None
    images_per_second: float


def training_data(folder: Path) -> TrainingData:
    """A packed array folder (images.npy) or a WebDataset release folder (SHA256SUMS), by its contents."""
    folder = Path(folder)
    if (folder / "images.npy").is_file():
        return PackedDataset(folder)
    if (folder / "SHA256SUMS").is_file():
        return WebDatasetShards(folder)
    raise ValueError(f"{folder} holds neither packed shards (images.npy) nor a WebDataset release (SHA256SUMS)")


def train(
    config: TrainSettings, shards: TrainingData, out_dir: Path, log: Callable[[str], None] = print, catalog: str | None = None
) -> TrainResult:
    """Train (or resume) under ``out_dir``, the files of :class:`ModelRun` (checkpoint, weights, history, card)
    (the card's header names ``catalog``, the catalog whose dataset this is)."""
    ddp = Distributed.from_env()
    device = prepare_device(pick_device(local_rank=ddp.local_rank))
    classes, fingerprint = shards.classes, shards.fingerprint()
    labels, sources = shards.labels, shards.sources
    train_rows, val_rows = stratified_split(labels, sources, config.val_fraction, config.seed)
    leak = shared_sources(sources, train_rows, val_rows)

    run = ModelRun(out_dir)
    checkpoint_path = run.checkpoint
    state = None
    if checkpoint_path.exists():
        state = load_checkpoint(checkpoint_path, device)
        saved = TrainSettings(**state["config"])
        if not config.resumable_with(saved):
            raise ValueError(f"{checkpoint_path} was made with another configuration ({saved}); use a new output folder")
        if state.get("data_fingerprint") is None:
            log(f"warning: {checkpoint_path} predates data fingerprints in checkpoints: resuming without checking its data")
        elif state["data_fingerprint"] != fingerprint:
            raise ValueError(
                f"{checkpoint_path} was trained on data with fingerprint {state['data_fingerprint']}, {shards.folder} has "
                f"fingerprint {fingerprint}; use a new output folder"
            )
    learner = Learner.build(config, len(classes), device, ddp.world, state)
    history: list[dict] = []
    start_epoch, resumed = 0, None
    if state is not None:
        history = state["history"]
        start_epoch = resumed = state["epoch"] + 1
        _set_rng_state(state["rng"])
        log(f"resuming after epoch {state['epoch'] + 1} from {checkpoint_path}")

    augment = DeviceAugment.of(config, device)
    loader = {"decode_workers": config.decode_workers} if isinstance(shards, WebDatasetShards) else {}
    train_batches = shards.batches(train_rows, config.batch_size, device, config.input_size, **loader)
    val_batches = shards.batches(val_rows, config.batch_size, device, config.input_size, **loader)
    seen, seconds = 0.0, 0.0
    for epoch in range(start_epoch, config.epochs):
        if device.type == "cpu":
            fit_cpu_threads(log)  # the machine's load may have changed since the last epoch
        started = time.perf_counter()
        plan = train_batches.plan(epoch, config.seed, True, ddp.rank, ddp.world, config.max_steps_per_epoch)
        if not plan:
            raise ValueError(
                f"{len(train_rows)} training images cannot fill one batch of {config.batch_size} per process "
                f"({ddp.world}); lower batch_size"
            )
        train_totals = ddp.sum(train_one_epoch(learner, train_batches(plan), augment, config.seed, epoch, ddp.rank), device)
        elapsed = time.perf_counter() - started
        seen, seconds = seen + train_totals[3], seconds + elapsed
        val_plan = val_batches.plan(epoch, config.seed, False, ddp.rank, ddp.world, 0)
        val_totals = ddp.sum(evaluate(learner.model, val_batches(val_plan), augment, device, config.amp), device)
        learner.scheduler.step()
        row = {
            "epoch": epoch + 1,
            "lr": learner.optimizer.param_groups[0]["lr"],
            "seconds": round(elapsed, 2),
            "images_per_s": round(train_totals[3] / max(elapsed, 1e-9), 1),
            **_rates("train", train_totals),
            **_rates("val", val_totals),
        }
        history.append(row)
        log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
        if ddp.main:
            _save_checkpoint(checkpoint_path, learner, epoch, config, fingerprint, history)
        ddp.barrier()
    weights = run.weights
    if ddp.main:
        _write_outputs(out_dir, learner.model, config, fingerprint, classes, history, len(train_rows), len(val_rows), leak, catalog)
    ddp.barrier()
    return TrainResult(pd.DataFrame(history), weights, resumed, seen / seconds if seconds else 0.0)


def augmentation(config: TrainSettings) -> str:
    """The recipe's augmentation in words (the model card's)."""
    parts = [f"random resized crop (area {config.crop_scale:g}-1, aspect 3/4-4/3)"] if config.crop_scale < 1 else []
    parts += ["random horizontal flip"] if config.flip else []
    return ", ".join([*parts, "random rotation 0-360°, reflect fill"])


def _rates(split: str, totals: list[float]) -> dict:
    n = max(totals[3], 1.0)
    return {f"{split}_loss": totals[0] / n, f"{split}_top1": totals[1] / n, f"{split}_top5": totals[2] / n}


def _save_checkpoint(path: Path, learner: Learner, epoch: int, config: TrainSettings, fingerprint: str, history: list[dict]) -> None:
    write_torch(
        {
            "model": learner.model.state_dict(),
            "optimizer": learner.optimizer.state_dict(),
            "scheduler": learner.scheduler.state_dict(),
            "scaler": learner.scaler.state_dict(),
            "epoch": epoch,
            "config": dataclasses.asdict(config),
            "data_fingerprint": fingerprint,
            "history": history,
            "rng": _rng_state(),
        },
        path,
    )


def _write_outputs(
    out_dir: Path,
    model,
    config: TrainSettings,
    fingerprint: str,
    classes: list[dict],
    history: list[dict],
    n_train: int,
    n_val: int,
    leak: int,
    catalog: str | None,
) -> None:
    run = ModelRun(out_dir)
    write_torch(model.state_dict(), run.weights)
    write_csv(pd.DataFrame(history), run.history)
    last = history[-1] if history else {}
    now = datetime.now(timezone.utc)
    card = {
        "catalog": catalog,
        "date": header_fields(catalog, out_dir.name, fingerprint, now)["date"],
        "architecture": "torchvision efficientnet_b0, random initialization",
        "classes": [c["class_key"] for c in classes],
        "class_labels": [{"category": c["category"], "label": c["label"]} for c in classes],
        "recipe": dataclasses.asdict(config)
        | {
            "optimizer": "Adam",
            "loss": "cross-entropy",
            "augmentation": augmentation(config),
            "input": "gray replicated to 3 channels, ImageNet mean/std",
        },
        "data": {
            "fingerprint": fingerprint,
            "images": n_train + n_val,
            "train": n_train,
            "validation": n_val,
            "split": "stratified by class, grouped by source image",
            "val_images_sharing_source_with_train": leak,
        },
        "metrics": {k: last[k] for k in ("train_loss", "train_top1", "train_top5", "val_loss", "val_top1", "val_top5") if k in last},
        "epochs_trained": len(history),
        "torch": torch.__version__,
    }
    write_text(run.card, json.dumps(card, indent=1))
    metrics = "\n".join(f"| {k} | {v:.4f} |" for k, v in card["metrics"].items())
    header = "\n".join(report_header(catalog, out_dir.name, fingerprint, now))
    write_text(
        run.card_markdown,
        f"# CytoImageNet EfficientNet-B0\n\n{header}\n{card['architecture']}, {len(classes)} classes, trained {len(history)} epochs "
        f"on {n_train} images (validation {n_val}, split by source image: {leak} validation images share a source image "
        "with training).\n\n"
        f"Recipe: {json.dumps(card['recipe'])}\n\n| metric | value |\n|---|---|\n{metrics}\n\n"
        f"Load: `m = torchvision.models.efficientnet_b0(num_classes=N); m.load_state_dict(torch.load('{run.weights.name}'))`; "
        f"class order in {run.card.name}.\n",
    )
