"""The model release: the bioimage.io package (validated offline by bioimageio.spec, its test tensors
reproduced through TorchScript) and ``embed`` (the evaluation's features, resumable), and README's
"Using the model" snippets."""

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch
import yaml
from PIL import Image

from cytoimagenet_assets.catalog import CatalogError, parse_catalog
from cytoimagenet_assets.embed import EmbedError, csv_inputs, embed, feature_matrix, folder_inputs, parts_dir
from cytoimagenet_assets.embed import embedding as embed_module
from cytoimagenet_assets.embed.__main__ import main as embed_main
from cytoimagenet_assets.images.readers import read_channels
from cytoimagenet_assets.model.inference import FeatureExtractor, extract, load_model
from cytoimagenet_assets.model.loop import build_model
from cytoimagenet_assets.release.bioimageio_package import PACKAGE_NAME, PackageError, build_package, preprocess, synthetic_image, validate
from cytoimagenet_assets.storage import DataHome

README = Path(__file__).resolve().parents[1] / "README.md"
CLASSES = ["cell-visible-nucleus-0123456789", "phenotype-mitosis-abcdef0123", "organism-human-0a0a0a0a0a"]


def _write_model(folder: Path, seed: int = 0) -> Path:
    """A tiny model saved as training saves it (state dict + card): random weights, batch-norm
    statistics from one batch so that activations are neither vanishingly small (bioimage.io refuses
    test outputs all below 1e-4) nor exploding (a randomly initialized network's are ~1e-6)."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = build_model(len(CLASSES))
    model.eval()  # stochastic depth and dropout off, batch norms collecting statistics
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None
            module.train()
    with torch.no_grad():  # statistics of inputs like the ones it will see: preprocessed gray images
        model(torch.from_numpy(preprocess(np.stack([np.broadcast_to(synthetic_image(64, s), (3, 64, 64)) for s in range(16)]))))
    torch.save(model.eval().state_dict(), folder / "model.pt")
    card = {
        "classes": CLASSES,
        "class_labels": [{"category": k.split("-")[0], "label": k} for k in CLASSES],
        "recipe": {"input_size": 64},
        "data": {"fingerprint": "test", "images": 100},
        "metrics": {"val_top1": 0.5},
    }
    (folder / "model_card.json").write_text(json.dumps(card))
    return folder / "model.pt"


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return _write_model(tmp_path_factory.mktemp("model") / "efficientnet_b0-test")


@pytest.fixture(scope="module")
def package(model, tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    return home, build_package(model.parent, home / "release" / "model")


def _images(folder: Path, count: int, start: int = 0) -> list[Path]:
    """16-bit TIFFs of blobs (sizes differ, so batches hold several shapes)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + count):
        rng = np.random.default_rng(i)
        size = 64 if i % 2 else 80
        image = rng.integers(100, 400, (size, size)).astype(np.uint16)
        y, x = rng.integers(10, size - 10, 2)
        image[y - 6 : y + 6, x - 6 : x + 6] += np.uint16(2000 + 100 * i)
        path = folder / f"img{i:02d}.tif"
        tifffile.imwrite(path, image)
        paths.append(path)
    return paths


def _evaluation_features(model: Path, samples: list[list[np.ndarray]], method: str) -> np.ndarray:
    return extract(FeatureExtractor(load_model(model).model, torch.device("cpu")), samples, method)


def test_the_package_validates_offline_with_bioimageio_spec(package, offline):
    _, result = package
    assert result.status == "valid-format", result.validation
    for source in (result.folder / "rdf.yaml", result.zip):
        status, text = validate(source)
        assert status == "valid-format", text
    rdf = yaml.safe_load((result.folder / "rdf.yaml").read_text())
    assert rdf["format_version"].startswith("0.5") and set(rdf["weights"]) == {"torchscript", "pytorch_state_dict"}
    assert [p["id"] for p in rdf["inputs"][0]["preprocessing"]] == ["scale_range", "clip", "fixed_zero_mean_unit_variance"]
    assert rdf["inputs"][0]["preprocessing"][0]["kwargs"]["min_percentile"] == 0.1
    assert rdf["outputs"][1]["axes"][1]["channel_names"] == CLASSES
    assert [c["class_key"] for c in json.loads((result.folder / "classes.json").read_text())] == CLASSES
    assert rdf["training_data"]["name"].startswith("CytoImageNet") and rdf["cite"][0]["doi"] == "10.48550/arXiv.2111.11646"
    assert result.files["weights.pt"] == result.folder.joinpath("weights.pt").stat().st_size > 1_000_000


def test_bioimageio_core_test_model_passes_offline(package, offline):
    """What bioimage.io runs on an upload, on the zip it uploads: the package loads with bioimageio.core's
    pinned spec, the declared preprocessing reproduces the test outputs with each weight format, inference
    runs at other sizes and batch sizes; and every tensor has its sample (a FAIR warning otherwise)."""
    from bioimageio.core import test_model

    _, result = package
    summary = test_model(result.zip)
    assert summary.status == "passed", summary.format()
    passed = {detail.name for detail in summary.details if detail.status == "passed"}
    assert {f"Reproduce test outputs from test inputs ({w})" for w in ("pytorch_state_dict", "torchscript")} <= passed
    tensor_warnings = [w for detail in summary.details for w in detail.warnings if w.loc[:1] in (("inputs",), ("outputs",))]
    assert not tensor_warnings, tensor_warnings


def test_a_broken_package_fails_validation(package, tmp_path):
    _, result = package
    rdf = yaml.safe_load((result.folder / "rdf.yaml").read_text())
    rdf["inputs"][0]["preprocessing"][0]["kwargs"]["min_percentile"] = 120  # not a percentile
    broken = tmp_path / "rdf.yaml"
    for file in result.folder.iterdir():
        if file.name != "rdf.yaml":
            (tmp_path / file.name).symlink_to(file)
    broken.write_text(yaml.safe_dump(rdf))
    status, text = validate(broken)
    assert status == "failed" and "min_percentile" in text


def _declared_preprocessing(raw: np.ndarray, steps: list[dict]) -> np.ndarray:
    """rdf.yaml's preprocessing, implemented here from the kwargs alone (as a bioimage.io consumer would)."""
    x = raw.astype(np.float64)
    for step in steps:
        kw = step["kwargs"]
        if step["id"] == "scale_range":
            assert kw["axes"] == ["y", "x"]
            low, high = np.percentile(x, (kw["min_percentile"], kw["max_percentile"]), axis=(2, 3), keepdims=True)
            x = (x - low) / (high - low + kw["eps"])
        elif step["id"] == "clip":
            x = np.clip(x, kw["min"], kw["max"])
        elif step["id"] == "fixed_zero_mean_unit_variance":
            x = (x - np.array(kw["mean"])[None, :, None, None]) / np.array(kw["std"])[None, :, None, None]
        else:
            raise AssertionError(step["id"])
    return x.astype(np.float32)


def test_the_test_tensors_reproduce_through_torchscript_and_the_state_dict(package):
    _, result = package
    rdf = yaml.safe_load((result.folder / "rdf.yaml").read_text())
    raw = np.load(result.folder / rdf["inputs"][0]["test_tensor"]["source"])
    assert raw.shape == (1, 3, 64, 64) and np.array_equal(raw[0, 0], raw[0, 2])
    expected = [np.load(result.folder / o["test_tensor"]["source"]) for o in rdf["outputs"]]
    x = torch.from_numpy(_declared_preprocessing(raw, rdf["inputs"][0]["preprocessing"]))
    scripted = torch.jit.load(str(result.folder / rdf["weights"]["torchscript"]["source"]))
    spec = importlib.util.spec_from_file_location("architecture", result.folder / "architecture.py")
    architecture = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(architecture)
    weights = rdf["weights"]["pytorch_state_dict"]
    eager = getattr(architecture, weights["architecture"]["callable"])(**weights["architecture"]["kwargs"])
    eager.load_state_dict(torch.load(result.folder / weights["source"], weights_only=True))
    with torch.no_grad():
        for net in (scripted, eager.eval()):
            outputs = [t.numpy() for t in net(x)]
            assert [o.shape for o in outputs] == [(1, 1280), (1, len(CLASSES))]
            for got, want in zip(outputs, expected):
                np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert np.abs(expected[0]).max() > 1e-3  # not a vanishing output that any model would match


def test_a_card_that_does_not_match_the_weights_is_refused_and_nothing_is_written(model, tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "model.pt").symlink_to(model)
    (folder / "model_card.json").write_text(json.dumps({"classes": CLASSES[:2], "recipe": {"input_size": 64}}))
    with pytest.raises(PackageError, match="model_card.json lists 2 classes"):
        build_package(folder, tmp_path / "out")
    assert not (tmp_path / "out" / PACKAGE_NAME).exists()


def test_embed_a_folder_gives_the_evaluations_features(model, package, tmp_path):
    _, result = package
    files = _images(tmp_path / "images", 5)
    (tmp_path / "images" / "sub").mkdir()
    Image.fromarray((np.arange(96 * 96) % 251).reshape(96, 96).astype(np.uint8)).save(tmp_path / "images" / "sub" / "x.png")
    inputs = folder_inputs(tmp_path / "images")
    assert [s.image for s in inputs.samples] == [f.name for f in files] + ["sub/x.png"]
    for method in ("merge_normalized", "concat_raw"):
        out = tmp_path / f"{method}.parquet"
        done = embed(inputs, model, method, out, progress=False)  # batches of 64 samples, as the evaluation's
        table = pd.read_parquet(out)
        assert done.rows == 6 and done.dims == [1280] and list(table["image"]) == [s.image for s in inputs.samples]
        assert list(table["channel_names"].iloc[0]) == ["gray"] and list(table["channel_paths"].iloc[-1]) == ["sub/x.png"]
        expected = _evaluation_features(model, [read_channels(tmp_path / "images" / s.image) for s in inputs.samples], method)
        np.testing.assert_allclose(feature_matrix(table), expected, rtol=1e-5, atol=1e-6)
    from_zip = embed(inputs, result.zip, "merge_normalized", tmp_path / "zip.parquet", progress=False)
    from_folder = embed(inputs, result.folder, "merge_normalized", tmp_path / "folder.parquet", progress=False)
    for done in (from_zip, from_folder):
        np.testing.assert_allclose(
            feature_matrix(pd.read_parquet(done.out)),
            feature_matrix(pd.read_parquet(tmp_path / "merge_normalized.parquet")),
            rtol=1e-5,
            atol=1e-6,
        )


def test_embed_a_csv_of_channel_paths(model, tmp_path, capsys):
    dapi = _images(tmp_path / "dapi", 3)
    actin = _images(tmp_path / "actin", 3, start=10)
    table = pd.DataFrame({"DAPI": [f"dapi/{p.name}" for p in dapi], "Actin": [str(p) for p in actin], "plate": ["p1", "p1", "p2"]})
    table.to_csv(tmp_path / "plates.csv", index=False)
    out = tmp_path / "features.parquet"
    code = embed_main(
        [
            str(tmp_path / "plates.csv"),
            "--channels",
            "DAPI,Actin",
            "--model",
            str(model),
            "--method",
            "concat_normalized",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0 and "3 rows, features of length 2560" in capsys.readouterr().out
    features = pd.read_parquet(out)
    assert list(features["channel_names"].iloc[0]) == ["DAPI", "Actin"] and list(features["plate"]) == ["p1", "p1", "p2"]
    assert features["image"].iloc[0] == f"dapi/{dapi[0].name}|{actin[0]}"
    expected = _evaluation_features(model, [read_channels(d) + read_channels(a) for d, a in zip(dapi, actin)], "concat_normalized")
    np.testing.assert_allclose(feature_matrix(features), expected, rtol=1e-5, atol=1e-6)
    assert embed_main([str(tmp_path / "plates.csv"), "--channels", "DAPI,GFP", "--model", str(model), "--out", str(out)]) == 2
    assert "plates.csv: no column 'GFP'" in capsys.readouterr().err


def test_embed_bag_of_channels_keeps_each_channels_features_by_name(model, tmp_path, capsys):
    dapi = _images(tmp_path / "dapi", 3)
    actin = _images(tmp_path / "actin", 3, start=10)
    plates = pd.DataFrame({"DAPI": [f"dapi/{p.name}" for p in dapi], "Actin": [f"actin/{p.name}" for p in actin]})
    plates.to_csv(tmp_path / "plates.csv", index=False)
    tables = {}
    for channels in ("DAPI,Actin", "Actin,DAPI"):
        out = tmp_path / f"{channels}.parquet"
        args = ["--channels", channels, "--model", str(model), "--method", "bag_of_channels", "--out", str(out), "--no-progress"]
        assert embed_main([str(tmp_path / "plates.csv"), *args]) == 0 and "3 rows, features of length 1280" in capsys.readouterr().out
        tables[channels] = pd.read_parquet(out)
    table = tables["DAPI,Actin"]
    assert list(table["channel_names"].iloc[0]) == ["DAPI", "Actin"] and list(table["method"].unique()) == ["bag_of_channels"]
    per_channel = np.stack([np.stack(vectors) for vectors in table["channel_features"]])
    assert per_channel.shape == (3, 2, 1280) and per_channel.dtype == np.float32
    np.testing.assert_allclose(per_channel.mean(axis=1), feature_matrix(table), rtol=1e-6, atol=1e-7)
    concat = _evaluation_features(model, [read_channels(d) + read_channels(a) for d, a in zip(dapi, actin)], "concat_normalized")
    np.testing.assert_allclose(per_channel.reshape(3, -1), concat, rtol=1e-5, atol=1e-6)  # each channel as concat_normalized embeds it
    swapped = tables["Actin,DAPI"]
    np.testing.assert_allclose(feature_matrix(swapped), feature_matrix(table), rtol=1e-5, atol=1e-6)  # the channels' order does not matter
    by_name = [dict(zip(names, vectors)) for names, vectors in zip(swapped["channel_names"], swapped["channel_features"])]
    np.testing.assert_allclose(np.stack([row["DAPI"] for row in by_name]), per_channel[:, 0], rtol=1e-5, atol=1e-6)
    embed(csv_inputs(tmp_path / "plates.csv"), model, "concat_normalized", tmp_path / "concat.parquet", progress=False)
    assert "channel_features" not in pd.read_parquet(tmp_path / "concat.parquet").columns  # other methods' tables are unchanged


class _Counting:
    """Wraps ``embed.extract``: counts the samples computed, optionally dies at a given call."""

    def __init__(self, die_at: int | None = None):
        self.samples, self.calls, self.die_at = 0, 0, die_at

    def __call__(self, extractor, samples, method):
        self.calls += 1
        if self.die_at is not None and self.calls == self.die_at:
            raise KeyboardInterrupt("killed")
        self.samples += len(samples)
        return extract(extractor, samples, method)


def test_a_second_run_computes_only_new_images(model, tmp_path, monkeypatch):
    folder = tmp_path / "images"
    _images(folder, 3)
    out = tmp_path / "features.parquet"
    first = embed(folder_inputs(folder), model, "merge_normalized", out, batch_size=2, progress=False)
    before = pd.read_parquet(out)
    _images(folder, 2, start=3)
    counting = _Counting()
    monkeypatch.setattr(embed_module, "extract", counting)
    second = embed(folder_inputs(folder), model, "merge_normalized", out, batch_size=2, progress=False)
    after = pd.read_parquet(out)
    assert (first.computed, second.computed, second.reused, counting.samples) == (3, 2, 3, 2)
    assert len(after) == 5 and not parts_dir(out).exists()
    np.testing.assert_array_equal(feature_matrix(after)[:3], feature_matrix(before))
    other = _write_model(tmp_path / "other", seed=1)
    third = embed(folder_inputs(folder), other, "merge_normalized", out, batch_size=2, progress=False, log=lambda _: None)
    assert third.computed == 5 and third.reused == 0  # another model: nothing reused


def test_a_killed_run_leaves_no_corrupt_output_and_resumes(model, tmp_path, monkeypatch):
    folder = tmp_path / "images"
    _images(folder, 5)
    out = tmp_path / "features.parquet"
    monkeypatch.setattr(embed_module, "extract", _Counting(die_at=2))
    with pytest.raises(KeyboardInterrupt):
        embed(folder_inputs(folder), model, "merge_normalized", out, batch_size=2, progress=False)
    assert not out.exists() and len(list(parts_dir(out).glob("part-*.parquet"))) == 1
    (parts_dir(out) / "part-000009.parquet").write_bytes(b"PAR1 truncated")  # a part a crash cut short
    (tmp_path / f".{out.name}.1234abcd.partial").write_bytes(b"half")  # a merge a crash cut short
    counting = _Counting()
    monkeypatch.setattr(embed_module, "extract", counting)
    resumed = embed(folder_inputs(folder), model, "merge_normalized", out, batch_size=2, progress=False)
    assert (resumed.reused, resumed.computed, counting.samples) == (2, 3, 3)
    fresh = embed(folder_inputs(folder), model, "merge_normalized", tmp_path / "fresh.parquet", batch_size=2, progress=False)
    table = pd.read_parquet(out)
    assert list(table["image"]) == list(pd.read_parquet(fresh.out)["image"])
    np.testing.assert_allclose(feature_matrix(table), feature_matrix(pd.read_parquet(fresh.out)), rtol=1e-5, atol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features.parquet", "fresh.parquet", "images"]


def test_unreadable_images_are_reported_and_retried(model, tmp_path, capsys):
    folder = tmp_path / "images"
    _images(folder, 2)
    (folder / "broken.tif").write_bytes(b"not a tiff")
    out = tmp_path / "features.parquet"
    assert embed_main([str(folder), "--model", str(model), "--out", str(out), "--no-progress"]) == 1
    assert "unreadable: broken.tif" in capsys.readouterr().err and len(pd.read_parquet(out)) == 2
    _images(folder, 1, start=7)[0].rename(folder / "broken.tif")
    assert embed_main([str(folder), "--model", str(model), "--out", str(out), "--no-progress"]) == 0
    assert "computed 1, already done 2" in capsys.readouterr().out


def test_bad_inputs_name_the_file(model, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmbedError, match="empty: no image files"):
        folder_inputs(tmp_path / "empty")
    (tmp_path / "rows.csv").write_text("DAPI,Actin\na.tif,b.tif\na.tif,b.tif\n")
    with pytest.raises(EmbedError, match="rows.csv line 3: the same channel paths as line 2"):
        csv_inputs(tmp_path / "rows.csv")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    _images(tmp_path / "i", 1)
    with pytest.raises(EmbedError, match="junk.pt: not a CytoImageNet model.pt"):
        embed(folder_inputs(tmp_path / "i"), tmp_path / "junk.pt", "merge_normalized", tmp_path / "o.parquet")


def test_the_catalog_embed_targets_are_validated():
    base = {"name": "x", "sources": []}
    with pytest.raises(CatalogError, match="give exactly one of path and source"):
        parse_catalog({**base, "embed": [{"name": "lab", "path": "a", "source": "b"}]})
    with pytest.raises(CatalogError, match="source 'nope' is not in the catalog"):
        parse_catalog({**base, "embed": [{"name": "lab", "source": "nope"}]})
    assert parse_catalog({**base, "embed": [{"name": "lab", "path": "/plates", "method": "merge_raw"}]}).embed[0].method == "merge_raw"


def test_the_readme_snippets_for_the_model_run(package, tmp_path, monkeypatch):
    home, result = package
    section = README.read_text().split("## Using the model", 1)[1].split("\n## ", 1)[0]
    shell = re.findall(r"```bash\n(.*?)```", section, re.S)
    python = re.findall(r"```python\n(.*?)```", section, re.S)
    assert shell and python
    _images(tmp_path / "my_images", 3)
    _images(tmp_path / "dapi", 2)
    pd.DataFrame(
        {
            "DAPI": ["dapi/img00.tif", "dapi/img01.tif"],
            "Tubulin": ["my_images/img00.tif", "my_images/img01.tif"],
            "Actin": ["my_images/img01.tif", "my_images/img02.tif"],
            "well": ["B02", "B03"],
        }
    ).to_csv(tmp_path / "plates.csv", index=False)
    monkeypatch.setenv("CYTOIMAGENET_HOME", str(home))
    env = dict(os.environ)
    commands = [line.split("#", 1)[0].strip() for block in shell for line in block.splitlines()]
    for command in filter(None, commands):
        args = [sys.executable if a == "python" else os.path.expandvars(a) for a in shlex.split(command)]
        done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert done.returncode == 0, (command, done.stderr)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec("\n".join(python), namespace)
    assert namespace["features"].shape == (3, 1280) and namespace["status"] == "valid-format"
    assert namespace["predicted"] in CLASSES


def test_the_release_assets_build_from_the_latest_model(model, tmp_path):
    import dagster as dg

    from cytoimagenet_assets.catalog import load_catalog
    from cytoimagenet_assets.definitions import build_definitions

    defs = build_definitions(load_catalog("demo"), data_home=str(tmp_path))
    instance = dg.DagsterInstance.ephemeral()
    home = DataHome(tmp_path)  # the trained model, found as pretrained_model leaves it: models/<run> and models/latest
    home.model_dir(model.parent.name).parent.mkdir(parents=True)
    home.model_dir(model.parent.name).symlink_to(model.parent)
    home.latest_model_pointer().write_text(model.parent.name)
    selection = dg.AssetSelection.assets(dg.AssetKey(["raw", "demo_bbbc021"]), "model_package", "embeddings")
    for _ in range(2):  # the second run reuses every feature row
        result = dg.materialize(
            [*defs.assets, *defs.asset_checks], resources=defs.resources, instance=instance, selection=selection, raise_on_error=False
        )
        assert result.success
    package = instance.get_latest_materialization_event(dg.AssetKey("model_package")).asset_materialization.metadata
    assert package["validation_status"].value == "valid-format" and "weights_torchscript.pt" in package["files"].value
    assert (tmp_path / "release" / "model" / f"{PACKAGE_NAME}.zip").stat().st_size == package["zip_bytes"].value
    embedded = instance.get_latest_materialization_event(dg.AssetKey("embeddings")).asset_materialization.metadata
    table = pd.read_parquet(tmp_path / "embeddings" / "demo_bbbc021_week1" / "features.parquet")
    week1_site1 = sorted((tmp_path / "raw" / "demo_bbbc021" / "Week1").glob("**/*_s1_*.tif"))
    assert embedded["rows"].value == len(table) == len(week1_site1) > 0 and embedded["dims"].value == [1280]
    assert (
        "| demo_bbbc021_week1 |" in embedded["targets"].value
        and f"| {len(table)} | 1280 | 0 | {len(table)} | 0 |" in embedded["targets"].value
    )


def test_a_barely_trained_model_with_small_features_still_validates(tmp_path):
    """bioimage.io refuses an absolute tolerance above 1 % of a test output's largest value: a model
    after a few steps (the rehearsal's) has features far below 0.1, so the tolerance follows them."""
    path = _write_model(tmp_path / "efficientnet_b0-small")
    state = torch.load(path)
    last_norm = [k for k in state if k.endswith(".weight") and k.replace(".weight", ".running_var") in state][-1]
    for name in (last_norm, last_norm.replace(".weight", ".bias")):
        state[name] = state[name] * 0.005
    torch.save(state, path)
    result = build_package(path.parent, tmp_path / "release")
    assert result.status == "valid-format", result.validation
    rdf = yaml.safe_load((result.folder / "rdf.yaml").read_text())
    features = np.load(result.folder / rdf["outputs"][0]["test_tensor"]["source"])
    assert np.abs(features).max() < 0.1  # the default 1e-3 would have been refused
    (features_tolerance,) = [t for t in rdf["config"]["bioimageio"]["reproducibility_tolerance"] if t["output_ids"] == ["features"]]
    assert 0 < features_tolerance["absolute_tolerance"] <= 0.01 * np.abs(features).max()
