"""Training on CPU: packing, learning, resuming to identical weights, DDP with gloo, outputs; the
device-side augmentation against torchvision's per-image one; the history of a short CPU training as
it was before the step was reworked for GPUs."""

import json
import math
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

from cytoimagenet_assets import storage
from cytoimagenet_assets.catalog.settings import TrainSettings
from cytoimagenet_assets.demo.cells import Morphology, render_field
from cytoimagenet_assets.images.build_class import RELEASE_COLUMNS
from cytoimagenet_assets.model.launch import cli_parser, config_from_args, run_name, torchrun_command
from cytoimagenet_assets.model.loop import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    DeviceAugment,
    Learner,
    _set_rng_state,
    load_checkpoint,
    shared_sources,
    stratified_split,
    train,
    train_one_epoch,
)
from cytoimagenet_assets.model.packed_dataset import pack
from cytoimagenet_assets.model.stream import WebDatasetShards
from cytoimagenet_assets.release.webdataset import write_release
from cytoimagenet_assets.storage import DamagedRelease

TINY = TrainSettings(epochs=2, batch_size=8, input_size=32, max_steps_per_epoch=4, seed=0)
HISTORY = Path(__file__).parent / "snapshots" / "training_history_cpu.json"


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
    metadata = (
        pd.DataFrame(rows)
        .reindex(columns=RELEASE_COLUMNS)
        .assign(dir_name="demo", crop=True, scaling=0.5, x_min=0, x_max=48, y_min=0, y_max=48)
    )
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
    device = torch.device("cpu")
    learner = Learner.build(TrainSettings(input_size=32, seed=0, channels_last=False), 3, device)
    model = learner.model
    augment = DeviceAugment(32, device, channels_last=False)
    rows = np.arange(0, 72, 3)  # 24 images, all three classes
    x_u8, y = torch.from_numpy(shards.images[rows]), torch.from_numpy(shards.labels[rows])

    def loss():  # batch statistics (train mode), dropout masks fixed by the seed, no rotation
        model.train()
        torch.manual_seed(1)
        with torch.no_grad():
            return float(torch.nn.functional.cross_entropy(model(augment(x_u8, None)), y))

    before = loss()
    unrotated = lambda batch, seed: augment(batch, None)  # noqa: E731 - rotation has its own test; 12 random rotations of 24 tiny images are too hard to fit
    totals = train_one_epoch(learner, iter([(x_u8, y)] * 12), unrotated, 0, 0, 0)
    assert totals[3] == 12 * len(y)
    assert loss() < 0.7 * before


def test_resuming_after_an_epoch_gives_the_same_weights(shards, tmp_path):
    straight = train(TINY, shards, tmp_path / "straight", log=lambda _: None)
    first = train(TrainSettings(**{**TINY.__dict__, "epochs": 1}), shards, tmp_path / "resumed", log=lambda _: None)
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
    train(TrainSettings(**{**TINY.__dict__, "epochs": 1}), shards, tmp_path / "run", log=lambda _: None)
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
    train(TrainSettings(**{**TINY.__dict__, "epochs": 1}), shards, tmp_path / "run", log=lambda _: None)
    with pytest.raises(ValueError, match="made with another configuration"):
        train(TrainSettings(**{**TINY.__dict__, "lr": 0.1}), shards, tmp_path / "run", log=lambda _: None)


def test_a_checkpoint_trained_on_other_data_is_refused_naming_both_fingerprints(shards, release, tmp_path):
    """Resuming on other data would mix two datasets into one model under the first one's name."""
    train(TrainSettings(**{**TINY.__dict__, "epochs": 1}), shards, tmp_path / "run", log=lambda _: None)
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
    Learner.build(TINY, 3, torch.device("cpu")).model.load_state_dict(torch.load(result.weights))


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
    sha256_file = storage.sha256_file
    monkeypatch.setattr(storage, "sha256_file", lambda path: hashed.append(Path(path).name) or sha256_file(path))
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


@pytest.mark.parametrize("decode_workers", [0, 2])
def test_a_streamed_sample_that_does_not_decode_names_its_shard_and_key(shards, tmp_path, decode_workers):
    """A PNG broken before the release was written passes the checksums; decoding it (here or in a
    decoding worker) names where it is."""
    dataset = shutil.copytree(shards.folder.parent / "dataset", tmp_path / "dataset")
    metadata = pd.read_csv(dataset / "metadata.csv")
    broken = dataset / metadata["path"][5] / metadata["filename"][5]
    broken.write_bytes(broken.read_bytes()[:100])  # truncated: the header reads, the pixels do not
    write_release(metadata, dataset, tmp_path / "release", {}, "test", shard_bytes=12_000)
    streamed = WebDatasetShards(tmp_path / "release")
    shard = streamed.index.set_index("key").loc[broken.stem, "shard"]
    batches = streamed.batches(np.arange(72), 8, torch.device("cpu"), 32, decode_workers=decode_workers)
    with pytest.raises(DamagedRelease, match=rf"{shard}: sample {broken.stem}: its PNG does not decode \(OSError"):
        list(batches(batches.plan(0, 0, False, 0, 1, 0)))


@pytest.mark.parametrize("source", ["memmap", "webdataset"])
def test_a_short_cpu_training_keeps_the_history_it_had_before_the_gpu_rework(shards, release, source, tmp_path):
    """TINY on this file's data, one CPU thread: the history (timings aside) the code before the rework
    for GPUs (the Learner, totals kept on the device, decoding in chunks, the new recipe fields at their
    defaults) wrote, captured from it into the snapshot. Bitwise equal on the machine it was captured
    on; the tolerance leaves room for another CPU's kernels."""
    history = train(TINY, shards if source == "memmap" else release, tmp_path / "run", log=lambda _: None).history
    expected = pd.DataFrame(json.loads(HISTORY.read_text())[source])
    pd.testing.assert_frame_equal(history.drop(columns=["seconds", "images_per_s"]), expected, rtol=1e-5)


def _source_maps(augment: DeviceAugment, n: int, seed: int) -> torch.Tensor:
    """Per image, the linear part of the map from output to source coordinates ([-1, 1] units),
    fitted from how two ramps (x and y position as brightness) come out on the output's central
    disc, which no reflection reaches."""
    size, step = augment.size, 4  # ramps 0, 4, ..., 252 at 64 px
    ramp = (torch.arange(size) * step).to(torch.uint8)
    centres = (torch.arange(size) * 2 + 1) / size - 1
    v, u = torch.meshgrid(centres, centres, indexing="ij")
    disc = u**2 + v**2 < 0.8**2
    coords = []
    for image in (ramp[None, :].expand(size, size), ramp[:, None].expand(size, size)):
        out = augment(image.expand(n, size, size).contiguous().to(augment.device), seed)[:, 0].cpu().double()
        pixel = (out * IMAGENET_STD[0] + IMAGENET_MEAN[0]) * 255 / step
        coords.append(((pixel * 2 + 1) / size - 1)[:, disc])
    design = torch.stack([u[disc], v[disc], torch.ones(int(disc.sum()))], 1).double()
    solution = torch.linalg.lstsq(design.expand(n, -1, -1), torch.stack(coords, 2)).solution
    return solution[:, :2].transpose(1, 2)


@pytest.mark.parametrize(
    "device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"))]
)
def test_device_augmentation_draws_the_crops_and_flips_of_torchvisions_per_image_transforms(device):
    """The batched augmentation (one affine map per image, after the copy) against the per-image CPU
    transforms a DataLoader worker would run (torchvision's RandomResizedCrop and RandomHorizontalFlip):
    the same distribution of crop area and aspect ratio, within the scale range, and half the images
    mirrored; the output is the input size whatever the crop."""
    from scipy.stats import ks_2samp
    from torchvision.transforms import RandomResizedCrop

    n, scale = 1000, 0.25
    augment = DeviceAugment(64, torch.device(device), channels_last=False, crop_scale=scale, flip=True)
    assert augment(torch.zeros(n, 64, 64, dtype=torch.uint8, device=device), 3).shape == (n, 3, 64, 64)
    maps = _source_maps(augment, n, seed=3)
    det = torch.linalg.det(maps)
    area, aspect = det.abs(), torch.linalg.svdvals(maps).log().diff(dim=1).abs().squeeze(1)
    torch.manual_seed(3)
    reference = [RandomResizedCrop.get_params(torch.empty(1, 224, 224), [scale, 1.0], [3 / 4, 4 / 3]) for _ in range(n)]
    ref_area = [h * w / 224**2 for _, _, h, w in reference]
    ref_aspect = [abs(math.log(w / h)) for _, _, h, w in reference]
    assert ks_2samp(area.numpy(), ref_area).pvalue > 0.01 and ks_2samp(aspect.numpy(), ref_aspect).pvalue > 0.01
    assert scale - 1e-3 < float(area.min()) and float(area.max()) < 1 + 1e-3
    assert abs(float((det < 0).double().mean()) - 0.5) < 4 * math.sqrt(0.25 / n)
    side_uniform = np.random.default_rng(0).uniform(math.sqrt(scale), 1, n) ** 2  # a wrong law, told apart
    assert ks_2samp(area.numpy(), side_uniform).pvalue < 0.01  # the same threshold: the check can fail


def test_the_default_augmentation_is_a_rotation_alone():
    maps = _source_maps(DeviceAugment(64, torch.device("cpu"), channels_last=False), 50, seed=1)
    assert torch.allclose(torch.linalg.det(maps), torch.ones(50, dtype=torch.float64), atol=1e-3)
    assert torch.allclose(maps @ maps.transpose(1, 2), torch.eye(2, dtype=torch.float64).expand(50, 2, 2), atol=1e-3)


def test_speed_options_keep_the_run_folder_and_resume_while_recipe_options_do_not():
    """compile and decode_workers change how fast a run trains, not what it learns; crop_scale and flip
    change the recipe, and at their defaults stay out of it (runs named before keep their folder)."""
    fast = TrainSettings(**{**TINY.__dict__, "compile": "inductor", "decode_workers": 4})
    assert run_name("f", fast) == run_name("f", TINY) and fast.resumable_with(TINY)
    assert "crop_scale" not in TINY.recipe() and "flip" not in TINY.recipe() and "compile" not in TINY.recipe()
    for change in ({"crop_scale": 0.5}, {"flip": True}):
        other = TrainSettings(**{**TINY.__dict__, **change})
        assert run_name("f", other) != run_name("f", TINY) and not other.resumable_with(TINY)
    for bad in ({"crop_scale": 0}, {"crop_scale": 1.5}, {"decode_workers": -1}, {"compile": "fast"}):
        with pytest.raises(ValueError):
            TrainSettings(**bad)


def test_training_with_crops_flips_and_a_compiled_model_names_its_augmentation(shards, tmp_path):
    """The recipe's options end to end on the CPU (compiled by graph capture only: inductor takes minutes here)."""
    config = TrainSettings(**{**TINY.__dict__, "crop_scale": 0.5, "flip": True, "compile": "eager"})
    result = train(config, shards, tmp_path / "run", log=lambda _: None)
    card = json.loads((tmp_path / "run" / "model_card.json").read_text())
    assert result.history["train_loss"].notna().all() and len(result.history) == 2
    assert (
        card["recipe"]["augmentation"]
        == "random resized crop (area 0.5-1, aspect 3/4-4/3), random horizontal flip, random rotation 0-360°, reflect fill"
    )
    Learner.build(TINY, 3, torch.device("cpu")).model.load_state_dict(torch.load(result.weights))  # no compiled-module prefixes


def test_decode_workers_give_the_batches_of_the_prefetch_thread(release):
    """Decoding in worker processes (persistent, several batches in flight) changes nothing of what is read."""
    plans = lambda batches: [batches.plan(2, 0, True, 0, 1, 0), batches.plan(2, 0, False, 0, 1, 0)]  # noqa: E731 - train, validation
    here = release.batches(np.arange(72), 8, torch.device("cpu"), 32)
    workers = release.batches(np.arange(72), 8, torch.device("cpu"), 32, decode_workers=2)
    for a, b in zip(plans(here), plans(workers)):
        expected, got = list(here(a)), list(workers(b))
        assert len(got) == len(expected) > 0 and all(torch.equal(x, u) and torch.equal(y, v) for (x, y), (u, v) in zip(expected, got))
