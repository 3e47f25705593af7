"""Training on CPU: packing, learning, resuming to identical weights, DDP with gloo, outputs."""

import json
import os
import re
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from cytoimagenet_assets.catalog.settings import TrainConfig
from cytoimagenet_assets.demo.cells import Morphology, render_field
from cytoimagenet_assets.images import release as release_module
from cytoimagenet_assets.images.classes import RELEASE_COLUMNS
from cytoimagenet_assets.images.release import DamagedRelease, write_release
from cytoimagenet_assets.model.launch import cli_parser, config_from_args, torchrun_command
from cytoimagenet_assets.model.loop import (
    DeviceAugment,
    _set_rng_state,
    build_model,
    load_checkpoint,
    shared_sources,
    stratified_split,
    train,
    train_one_epoch,
)
from cytoimagenet_assets.model.shards import pack
from cytoimagenet_assets.model.stream import WebDatasetShards

TINY = TrainConfig(epochs=2, batch_size=8, input_size=32, max_steps_per_epoch=4, seed=0)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Three demo-style classes (different morphologies), 24 images each (two crops of each of 12
    source images), packed at 32 px."""
    root = tmp_path_factory.mktemp("train")
    rows = []
    for k, label in enumerate(("round", "elongated", "dense")):
        morphology = Morphology().perturbed(label, strength=1.5)
        folder = root / "dataset" / f"phenotype-{label}"
        folder.mkdir(parents=True)
        for i in range(24):
            image = render_field(np.random.default_rng([k, i]), morphology, ["nucleus"], (48, 48))["nucleus"]
            name = f"phenotype-{label}-{i + 1:08d}.png"
            Image.fromarray((image * 255).astype(np.uint8)).save(folder / name)
            rows.append(
                {"path": f"phenotype-{label}", "filename": name, "idx": f"{label}-{i // 2}", "label": label, "category": "phenotype"}
            )
    metadata = pd.DataFrame(rows).reindex(columns=RELEASE_COLUMNS).assign(dir_name="demo", crop=True, scaling=0.5)
    metadata.to_csv(root / "dataset" / "metadata.csv", index=False)
    return pack(pd.DataFrame(rows), root / "dataset", root / "shards", 32, workers=2)


@pytest.fixture(scope="module")
def release(shards):
    """The same images as WebDataset shards (dataset_shards' layout), ~8 images a shard."""
    dataset = shards.folder.parent / "dataset"
    write_release(pd.read_csv(dataset / "metadata.csv"), dataset, shards.folder.parent / "release", {}, "test", shard_bytes=12_000)
    return WebDatasetShards(shards.folder.parent / "release")


def test_pack_writes_a_memory_mapped_array_with_labels(shards):
    assert shards.images.shape == (72, 32, 32) and shards.images.dtype == np.uint8
    assert isinstance(shards.images, np.memmap)
    assert np.bincount(shards.labels).tolist() == [24, 24, 24]
    assert [c["label"] for c in shards.classes] == ["dense", "elongated", "round"]  # class-key order


def test_stratified_split_keeps_every_class_in_both_parts():
    labels = np.repeat([0, 1, 2], [50, 10, 2])
    train_rows, val_rows = stratified_split(labels, np.arange(62).astype(str), 0.1, 0)
    assert sorted(np.concatenate([train_rows, val_rows]).tolist()) == list(range(62))
    assert np.bincount(labels[val_rows]).tolist() == [5, 1, 1] and set(labels[train_rows]) == {0, 1, 2}


def test_the_crops_of_one_source_image_stay_on_one_side_of_the_split():
    labels = np.repeat([0, 1], [400, 40])
    groups = np.array([f"img-{i // 4}" for i in range(440)])  # four crops of each source image
    train_rows, val_rows = stratified_split(labels, groups, 0.1, 0)
    assert shared_sources(groups, train_rows, val_rows) == 0
    assert np.bincount(labels[val_rows]).tolist() == [40, 4] and set(labels[train_rows]) == {0, 1}
    rows = np.random.default_rng(0).permutation(440)  # a row-level split, as the original's, leaks
    assert shared_sources(groups, rows[44:], rows[:44]) > 30


def test_rotation_is_reproducible_and_fills_by_reflection():
    augment = DeviceAugment(32, torch.device("cpu"), channels_last=False)
    batch = torch.full((2, 32, 32), 200, dtype=torch.uint8)
    out = augment(batch, seed=5)
    assert out.shape == (2, 3, 32, 32) and torch.equal(out, augment(batch, seed=5))
    for c in range(3):  # a flat image stays flat: the corners are reflected, not black
        assert torch.allclose(out[:, c], out[0, c, 0, 0])
    ramp = torch.arange(32, dtype=torch.uint8).repeat(32, 1)[None] * 8
    assert not torch.equal(augment(ramp, seed=1), augment(ramp, seed=2))


def test_a_few_steps_lower_the_loss(shards):
    """Twelve steps of the real training step on one batch of demo-style images (the usual
    can-it-learn check: a fixed batch, so the drop is not noise between batches)."""
    torch.manual_seed(0)
    model = build_model(3)
    device = torch.device("cpu")
    augment = DeviceAugment(32, device, channels_last=False)
    rows = np.arange(0, 72, 3)  # 24 images, all three classes
    x_u8, y = torch.from_numpy(shards.images[rows]), torch.from_numpy(shards.labels[rows])

    def loss():  # batch statistics (train mode), dropout masks fixed by the seed, no rotation
        model.train()
        torch.manual_seed(1)
        with torch.no_grad():
            return float(torch.nn.functional.cross_entropy(model(augment(x_u8, None)), y))

    before = loss()
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    unrotated = lambda batch, seed: augment(batch, None)  # noqa: E731 - rotation has its own test; 12 random rotations of 24 tiny images are too hard to fit
    totals = train_one_epoch(model, optimizer, scaler, iter([(x_u8, y)] * 12), unrotated, 0, 0, 0, device, amp=False)
    assert totals[3] == 12 * len(y)
    assert loss() < 0.7 * before


def test_resuming_after_an_epoch_gives_the_same_weights(shards, tmp_path):
    straight = train(TINY, shards, tmp_path / "straight", log=lambda _: None)
    first = train(TrainConfig(**{**TINY.__dict__, "epochs": 1}), shards, tmp_path / "resumed", log=lambda _: None)
    assert len(first.history) == 1 and first.resumed_from_epoch is None
    second = train(TINY, shards, tmp_path / "resumed", log=lambda _: None)  # a rerun after "a crash" at epoch 1
    assert second.resumed_from_epoch == 1 and len(second.history) == 2
    a = torch.load(tmp_path / "straight" / "model.pt")
    b = torch.load(tmp_path / "resumed" / "model.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    pd.testing.assert_frame_equal(
        straight.history.drop(columns=["seconds", "images_per_s"]), second.history.drop(columns=["seconds", "images_per_s"])
    )


def test_a_checkpoint_loads_for_another_device_with_its_rng_states_on_the_cpu(shards, tmp_path):
    """On CUDA, mapping the whole checkpoint to the GPU moved the RNG byte tensors there and
    ``torch.set_rng_state`` refused them; the meta device reproduces that on a CPU machine."""
    train(TrainConfig(**{**TINY.__dict__, "epochs": 1}), shards, tmp_path / "run", log=lambda _: None)
    path = tmp_path / "run" / "checkpoints" / "last.pt"
    mapped = torch.load(path, map_location="meta", weights_only=False)
    with pytest.raises((TypeError, RuntimeError)):
        torch.set_rng_state(mapped["rng"]["torch"])
    state = load_checkpoint(path, torch.device("meta"))
    assert all(t.device.type == "meta" for t in state["model"].values())
    assert state["rng"]["torch"].device.type == "cpu"
    _set_rng_state(state["rng"])
    assert torch.equal(torch.get_rng_state(), state["rng"]["torch"])


def test_a_checkpoint_of_another_recipe_is_refused(shards, tmp_path):
    train(TrainConfig(**{**TINY.__dict__, "epochs": 1}), shards, tmp_path / "run", log=lambda _: None)
    with pytest.raises(ValueError, match="made with another configuration"):
        train(TrainConfig(**{**TINY.__dict__, "lr": 0.1}), shards, tmp_path / "run", log=lambda _: None)


def test_a_checkpoint_trained_on_other_data_is_refused_naming_both_fingerprints(shards, release, tmp_path):
    """Resuming on other data would mix two datasets into one model under the first one's name."""
    train(TrainConfig(**{**TINY.__dict__, "epochs": 1}), shards, tmp_path / "run", log=lambda _: None)
    with pytest.raises(
        ValueError, match=rf"trained on data with fingerprint {shards.fingerprint()}, .*release has fingerprint {release.fingerprint()}"
    ):
        train(TINY, release, tmp_path / "run", log=lambda _: None)
    path = tmp_path / "run" / "checkpoints" / "last.pt"
    state = torch.load(path, weights_only=False)
    del state["data_fingerprint"]  # as a checkpoint written before fingerprints were stored
    torch.save(state, path)
    logged = []
    assert train(TINY, shards, tmp_path / "run", log=logged.append).resumed_from_epoch == 1
    assert "predates data fingerprints in checkpoints: resuming without checking its data" in logged[0]


def test_model_card_and_history_are_written(shards, tmp_path):
    result = train(TINY, shards, tmp_path / "run", log=lambda _: None)
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert history["epoch"].tolist() == [1, 2]
    assert {"train_loss", "train_top1", "train_top5", "val_loss", "val_top1", "val_top5"} <= set(history.columns)
    card = json.loads((tmp_path / "run" / "model_card.json").read_text())
    assert len(card["classes"]) == 3 and card["recipe"]["batch_size"] == 8 and card["data"]["images"] == 72
    assert card["data"]["train"] + card["data"]["validation"] == 72 and len(card["data"]["fingerprint"]) == 16
    assert card["data"]["val_images_sharing_source_with_train"] == 0 and card["data"]["validation"] == 3 * 2  # one source image a class
    assert (tmp_path / "run" / "model_card.md").read_text().startswith("# CytoImageNet EfficientNet-B0")
    model = build_model(3)
    model.load_state_dict(torch.load(result.weights))


def test_the_model_card_opens_with_catalog_run_data_fingerprint_and_utc_date(shards, tmp_path):
    before = datetime.now(timezone.utc).replace(microsecond=0)
    train(TINY, shards, tmp_path / "efficientnet_b0-run", log=lambda _: None, catalog="demo")
    card = json.loads((tmp_path / "efficientnet_b0-run" / "model_card.json").read_text())
    assert card["catalog"] == "demo" and before <= datetime.fromisoformat(card["date"]) <= datetime.now(timezone.utc)
    lines = (tmp_path / "efficientnet_b0-run" / "model_card.md").read_text().splitlines()
    assert lines[:7] == [
        "# CytoImageNet EfficientNet-B0",
        "",
        "- **Catalog**: `demo`",
        "- **Model run**: `efficientnet_b0-run`",
        f"- **Data fingerprint**: `{shards.fingerprint()}`",
        f"- **Date (UTC)**: `{card['date']}`",
        "",
    ]
    assert card["date"].endswith("+00:00")


def test_a_torchrun_launch_passes_the_catalog_to_each_process():
    command = torchrun_command(Path("shards"), Path("out"), TINY, 2, "demo")
    args = cli_parser("prog", "").parse_args(command[command.index("cytoimagenet_assets.model") + 1 :])
    assert args.catalog == "demo" and config_from_args(args) == TINY
    assert cli_parser("prog", "").parse_args(["shards", "out"]).catalog is None


def _two_process_run(folder, out) -> pd.DataFrame:
    """One epoch of three steps by torchrun with two gloo processes; the history it wrote."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "cytoimagenet_assets.model",
            str(folder),
            str(out),
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--input-size",
            "32",
            "--max-steps-per-epoch",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert (out / "model.pt").exists()
    return pd.read_csv(out / "history.csv")


def test_two_process_ddp_with_gloo_completes(shards, tmp_path):
    history = _two_process_run(shards.folder, tmp_path / "ddp")
    assert len(history) == 1 and history["train_loss"].notna().all()


def test_streamed_shards_give_the_packed_images_labels_and_split(shards, release):
    assert [c["class_key"] for c in release.classes] == [c["class_key"] for c in shards.classes]
    assert np.array_equal(release.labels, shards.labels) and np.array_equal(release.sources, shards.sources)
    rows = np.arange(72)
    streamed = release.batches(rows, 72, torch.device("cpu"), 32)
    ((x, y),) = list(streamed(streamed.plan(0, 0, False, 0, 1, 0)))
    assert torch.equal(y, torch.from_numpy(shards.labels)) and torch.equal(x, torch.from_numpy(np.array(shards.images)))


def test_each_process_streams_its_own_shards_and_all_take_the_same_steps(release):
    batches = release.batches(np.arange(72), 8, torch.device("cpu"), 32)
    plans = [batches.plan(3, 0, True, rank, 2, 0) for rank in range(2)]
    assert not set(plans[0].shards) & set(plans[1].shards)
    assert set(plans[0].shards) | set(plans[1].shards) == {str(release.folder / s) for s in release.index["shard"].unique()}
    assert plans[0].steps == plans[1].steps > 0
    seen = [int(y.numel()) for plan in plans for _, y in batches(plan)]
    assert seen == [8] * (2 * plans[0].steps)
    assert batches.plan(4, 0, True, 0, 2, 0).shards != plans[0].shards or len(plans[0].shards) == 1  # reshuffled per epoch


def test_training_streams_the_webdataset_release(release, tmp_path):
    result = train(TINY, release, tmp_path / "run", log=lambda _: None)
    card = json.loads((tmp_path / "run" / "model_card.json").read_text())
    assert len(result.history) == 2 and result.history["train_loss"].notna().all()
    assert card["data"]["fingerprint"] == release.fingerprint() and card["data"]["val_images_sharing_source_with_train"] == 0


def test_two_process_ddp_with_gloo_streams_the_release(release, tmp_path):
    history = _two_process_run(release.folder, tmp_path / "ddp")
    assert len(history) == 1 and history["train_loss"].notna().all()


def test_each_streamed_shard_is_hashed_once_and_a_damaged_or_missing_one_is_named(release, tmp_path, monkeypatch):
    """A shard changed since SHA256SUMS was written stops streaming before its samples are used; an
    intact one is hashed the first time the process opens it, not every epoch."""
    hashed = []
    sha256_file = release_module.sha256_file
    monkeypatch.setattr(release_module, "sha256_file", lambda path: hashed.append(Path(path).name) or sha256_file(path))
    intact = WebDatasetShards(shutil.copytree(release.folder, tmp_path / "intact"))
    batches = intact.batches(np.arange(72), 8, torch.device("cpu"), 32)
    for epoch in range(2):
        assert sum(len(y) for _, y in batches(batches.plan(epoch, 0, False, 0, 1, 0))) == 72
    assert sorted(hashed) == sorted(intact.index["shard"].unique())
    damaged = WebDatasetShards(shutil.copytree(release.folder, tmp_path / "damaged"))
    shard = damaged.folder / sorted(damaged.index["shard"].unique())[1]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 1  # one bit flipped, the size unchanged
    shard.write_bytes(bytes(data))
    batches = damaged.batches(np.arange(72), 8, torch.device("cpu"), 32)
    with pytest.raises(DamagedRelease, match=rf"{re.escape(str(shard))}: SHA256 [0-9a-f]{{64}} does not match SHA256SUMS"):
        list(batches(batches.plan(0, 0, False, 0, 1, 0)))
    shard.unlink()
    with pytest.raises(DamagedRelease, match=rf"shard\(s\) {shard.name} of index.parquet are missing"):
        damaged.batches(np.arange(72), 8, torch.device("cpu"), 32)


def test_a_streamed_sample_that_does_not_decode_names_its_shard_and_key(shards, tmp_path):
    """A PNG broken before the release was written passes the checksums; decoding it names where it is."""
    dataset = shutil.copytree(shards.folder.parent / "dataset", tmp_path / "dataset")
    metadata = pd.read_csv(dataset / "metadata.csv")
    broken = dataset / metadata["path"][5] / metadata["filename"][5]
    broken.write_bytes(broken.read_bytes()[:100])  # truncated: the header reads, the pixels do not
    write_release(metadata, dataset, tmp_path / "release", {}, "test", shard_bytes=12_000)
    streamed = WebDatasetShards(tmp_path / "release")
    shard = streamed.index.set_index("key").loc[broken.stem, "shard"]
    batches = streamed.batches(np.arange(72), 8, torch.device("cpu"), 32)
    with pytest.raises(DamagedRelease, match=rf"{shard}: sample {broken.stem}: its PNG does not decode \(OSError"):
        list(batches(batches.plan(0, 0, False, 0, 1, 0)))
