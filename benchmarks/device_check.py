#!/usr/bin/env python3
"""Everything the model step needs a GPU to measure, in one short call (≤ 8 minutes on one GPU):
a GPU is available to this project rarely and briefly, so this script is ready, and proven on the
CPU by ``--smoke`` (the same code paths at tiny sizes, in CI), before one comes.

  train     training throughput through the real input (memory-mapped shards → device augmentation
            → the training step, ``loop.Learner``) at batch 64 and 256, eager and compiled (inductor;
            its warm-up steps untimed): images/s, the share of the model-only ceiling (the same step
            on a batch already in device memory), peak device memory;
  resume    a 2-epoch training (the training CLI, a separate process) killed (SIGKILL) once its
            epoch-1 checkpoint is written, then rerun: it must resume after epoch 1 and end with a
            continuous history (epochs 1, 2; the epoch-1 row the killed run wrote);
  features  feature extraction (``evaluation.features.FeatureExtractor``, bf16 on CUDA) of the
            resumed model at batch 256: images/s, peak memory;
  embed     ``embed`` (files read, features, Parquet written) of a folder of PNGs at batch 256.

Each part prints its RESULT line (``error=...`` when it failed, and the others still run); the last
line sums up, with the hours CytoImageNet's 24 epochs would take at the best throughput measured.

    python benchmarks/device_check.py            # on the GPU (CUDA); ≤ 8 minutes, the two compilations the most of it
    python benchmarks/device_check.py --smoke    # on the CPU, tiny sizes, torch.compile by graph capture only
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from bench_train import make_shards, training_throughput
from PIL import Image

from cytoimagenet_assets.catalog.settings import TrainSettings
from cytoimagenet_assets.devices import fit_cpu_threads
from cytoimagenet_assets.embed import embed, folder_inputs
from cytoimagenet_assets.model.inference import FeatureExtractor, load_model
from cytoimagenet_assets.model.loop import prepare_device
from cytoimagenet_assets.model.run_folder import ModelRun

REPO = Path(__file__).resolve().parents[1]
DATASET_IMAGES = 890_737  # the original CytoImageNet (the paper); each epoch trains on 90% of it (validation not counted)


@dataclass(frozen=True)
class Sizes:
    """What one run measures: full sizes on a GPU, tiny ones for the CPU smoke run."""

    size: int
    images: int
    classes: int
    batches: tuple[int, int]
    warmup: int
    steps: int
    compile: str
    resume_batch: int
    resume_steps: int
    features: int
    embed: int


GPU = Sizes(224, 8192, 894, (64, 256), 10, 50, "inductor", 256, 12, 5120, 2048)
SMOKE = Sizes(32, 96, 4, (4, 8), 1, 2, "eager", 8, 6, 16, 16)


def peak_gib(device: torch.device) -> str:
    return f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f}" if device.type == "cuda" else "na"


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def check_training(sizes: Sizes, shards, device: torch.device) -> dict[str, float]:
    """RESULT per (batch, compile); the end-to-end images/s of each."""
    rates = {}
    for batch in sizes.batches:
        for compile in ("off", sizes.compile):
            reset_peak(device)
            config = TrainSettings(batch_size=batch, input_size=sizes.size, compile=compile)
            end_to_end, ceiling = training_throughput(config, shards, device, sizes.warmup, sizes.steps)
            rates[f"{batch}/{compile}"] = end_to_end
            print(
                f"RESULT device_check_train batch={batch} compile={compile} images_per_s={end_to_end:.1f} "
                f"ceiling_images_per_s={ceiling:.1f} of_ceiling={end_to_end / ceiling:.2f} peak_gib={peak_gib(device)}",
                flush=True,
            )
    return rates


def check_resume(sizes: Sizes, shards, out: Path, device: torch.device) -> Path:
    """Kill a 2-epoch training after its first checkpoint, rerun it; RESULT; the final weights.
    The training CLI picks the GPU when there is one: on the CPU run, none is visible to it."""
    command = [
        sys.executable,
        "-m",
        "cytoimagenet_assets.model",
        str(shards.folder),
        str(out),
        "--epochs",
        "2",
        "--batch-size",
        str(sizes.resume_batch),
        "--input-size",
        str(sizes.size),
        "--max-steps-per-epoch",
        str(sizes.resume_steps),
    ]
    env = {**os.environ, **({"CUDA_VISIBLE_DEVICES": ""} if device.type == "cpu" else {})}
    run = ModelRun(out)
    checkpoint = run.checkpoint
    started = time.perf_counter()
    with subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as killed:
        while not checkpoint.exists() and killed.poll() is None:
            time.sleep(0.005)
        killed.send_signal(signal.SIGKILL)
        _, err = killed.communicate()
    if not checkpoint.exists():
        raise RuntimeError(f"the first run wrote no checkpoint: {err[-2000:]}")
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    if state["epoch"] != 0:
        raise RuntimeError("the first run finished epoch 2 before it was killed: give it more steps per epoch")
    resumed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if resumed.returncode:
        raise RuntimeError(f"the rerun failed: {resumed.stderr[-2000:]}")
    history = pd.read_csv(run.history)
    first = {k: v for k, v in state["history"][0].items() if k not in ("seconds", "images_per_s")}
    continuous = history["epoch"].tolist() == [1, 2] and all(np.isclose(history.iloc[0][k], v) for k, v in first.items())
    resumed_from = "resuming after epoch 1" in resumed.stdout + resumed.stderr
    print(
        f"RESULT device_check_resume killed_after_epoch={state['epoch'] + 1} resumed_after_epoch_1={str(resumed_from).lower()} "
        f"history_epochs={','.join(map(str, history['epoch']))} continuous={str(continuous).lower()} "
        f"train_loss={history['train_loss'].iloc[-1]:.4f} seconds={time.perf_counter() - started:.1f}",
        flush=True,
    )
    if not (continuous and resumed_from):
        raise RuntimeError("the rerun did not continue the killed run's history")
    return run.weights


def check_features(sizes: Sizes, weights: Path, device: torch.device, batch: int) -> None:
    extractor = FeatureExtractor(load_model(weights).model, device, batch)
    rng = np.random.default_rng(0)
    images = [rng.random((sizes.size, sizes.size), dtype=np.float32) for _ in range(sizes.features)]
    extractor(images[:batch])  # warm-up: cudnn autotuning
    reset_peak(device)
    started = time.perf_counter()
    features = extractor(images)
    rate = len(images) / (time.perf_counter() - started)
    print(
        f"RESULT device_check_features batch={batch} images={len(images)} dims={features.shape[1]} images_per_s={rate:.1f} "
        f"peak_gib={peak_gib(device)}",
        flush=True,
    )


def check_embed(sizes: Sizes, weights: Path, shards, device: torch.device, batch: int, folder: Path) -> None:
    folder.mkdir()
    for i in range(sizes.embed):
        Image.fromarray(np.asarray(shards.images[i])).save(folder / f"{i:06d}.png", compress_level=3)
    started = time.perf_counter()
    out = folder.parent / "embed.parquet"
    result = embed(
        folder_inputs(folder), weights, "merge_raw", out, batch_size=batch, device=str(device), progress=False, log=lambda _: None
    )
    rate = result.computed / (time.perf_counter() - started)
    print(
        f"RESULT device_check_embed batch={batch} images={result.computed} failed={len(result.failed)} images_per_s={rate:.1f}", flush=True
    )


def attempt(name: str, part, failed: list[str]):
    """``part()``, or None with an error RESULT line when it fails: one part failing must not cost the GPU time of the others."""
    try:
        return part()
    except Exception as exc:
        failed.append(name)
        print(f"RESULT device_check_{name} error={type(exc).__name__}: {' '.join(str(exc).split())[:300]}", flush=True)
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="the same code paths on the CPU at tiny sizes (CI)")
    args = parser.parse_args()
    sizes = SMOKE if args.smoke else GPU
    if not args.smoke and not torch.cuda.is_available():
        parser.error("no CUDA device: run on a GPU, or --smoke on the CPU")
    device = prepare_device(torch.device("cpu") if args.smoke else torch.device("cuda", 0))
    if device.type == "cpu":
        fit_cpu_threads(print)  # as training does: threads sharing a core with another busy process stall it
    gpu = torch.cuda.get_device_name(device).replace(" ", "_") if device.type == "cuda" else "none"
    print(f"device {device} ({gpu}), torch {torch.__version__}, {os.cpu_count()} CPUs, {sizes}", flush=True)
    started, failed = time.perf_counter(), []
    with tempfile.TemporaryDirectory() as tmp:
        shards = make_shards(Path(tmp) / "shards", sizes.images, sizes.size, sizes.classes)
        rates = attempt("train", lambda: check_training(sizes, shards, device), failed) or {}
        weights = attempt("resume", lambda: check_resume(sizes, shards, Path(tmp) / "run", device), failed)
        if weights is None:
            failed += ["features", "embed"]
            print("RESULT device_check_features error=no trained model (resume failed)\nRESULT device_check_embed error=no trained model")
        else:
            attempt("features", lambda: check_features(sizes, weights, device, sizes.batches[1]), failed)
            attempt("embed", lambda: check_embed(sizes, weights, shards, device, sizes.batches[1], Path(tmp) / "pngs"), failed)
    best = max(rates.values(), default=0.0)
    hours = 24 * 0.9 * DATASET_IMAGES / best / 3600 if best else float("nan")
    print(
        f"RESULT device_check device={device.type} gpu={gpu} smoke={str(args.smoke).lower()} ok={str(not failed).lower()} "
        f"failed={','.join(failed) or 'none'} best_images_per_s={best:.1f} hours_24_epochs={hours:.2f} "
        f"seconds={time.perf_counter() - started:.0f}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
