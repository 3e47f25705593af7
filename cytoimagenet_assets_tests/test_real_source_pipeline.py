"""A real (https) source through Dagster, metadata first: raw/ indexes the image zip served on
127.0.0.1, the class table is built from the index alone, and each class fetches only its images."""

import io
import zipfile

import dagster as dg
import numpy as np
import pandas as pd
import tifffile
import yaml

from cytoimagenet_assets.catalog import load_catalog
from cytoimagenet_assets.definitions import build_definitions
from cytoimagenet_assets.storage import DataHome

COMPOUNDS = {"taxol": 6, "nocodazole": 5}


def _image(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:96, :96]
    cells = (3000 * np.exp(-((yy - rng.integers(20, 76)) ** 2 + (xx - rng.integers(20, 76)) ** 2) / 200)).astype(np.uint16)
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, cells + rng.integers(100, 300, (96, 96), dtype=np.uint16))
    return buffer.getvalue()


def _archive() -> tuple[bytes, dict[str, bytes]]:
    files = {}
    for compound, n in COMPOUNDS.items():
        for i in range(n):
            files[f"plate1/{compound}_A{i + 1:02d}_w1.tif"] = _image(len(files))
    files["plate1/dmso_B01_w1.tif"] = _image(99)  # a label too rare to become a class: never fetched
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue(), files


def _catalog(url: str, tmp_path):
    text = yaml.safe_dump(
        {
            "name": "loopback",
            "seed": 0,
            "labels": {"threshold": 4, "target": 10, "cap": 10},
            "training": {"epochs": 1, "batch_size": 4, "input_size": 32},
            "sources": [
                {
                    "dir_name": "bbbc_loop",
                    "name": "Loopback screen",
                    "database": "Broad Bioimage Benchmark Collection",
                    "landing_page": "https://example.org",
                    "license": "CC0",
                    "approx_size_gb": 0,
                    "download": {"method": "https", "files": [{"url": url}]},
                    "defaults": {"organism": "human", "cell_type": "u2os"},
                    "channels": [{"name": "nucleus", "key": "w1"}],
                    "parser": "file_pattern",
                    "parser_options": {"pattern": r"(?P<compound>[a-z]+)_(?P<well>[A-H]\d\d)_(?P<channel>w1)\.tif$"},
                }
            ],
        }
    )
    path = tmp_path / "catalog.yaml"
    path.write_text(text)
    return load_catalog(str(path))


def test_classes_fetch_only_their_own_images_from_the_indexed_zip(remote, tmp_path):
    archive, files = _archive()
    catalog = _catalog(remote.put("/bbbc/loop_images.zip", archive), tmp_path)
    home = tmp_path / "home"
    defs = build_definitions(catalog, data_home=str(home))
    instance = dg.DagsterInstance.ephemeral()
    tables = dg.AssetSelection.assets(
        ["raw", "bbbc_loop"], ["source_metadata", "bbbc_loop"], "merged_metadata", "label_candidates", "cytoimagenet_labels"
    )
    everything = [*defs.assets, *defs.asset_checks]
    assert dg.materialize(everything, resources=defs.resources, instance=instance, selection=tables).success

    raw = DataHome(home).raw_dir("bbbc_loop")
    assert not (raw / "plate1").exists()  # the class table was built from the remote index alone
    raw_event = instance.get_latest_materialization_event(dg.AssetKey(["raw", "bbbc_loop"])).asset_materialization
    assert raw_event.metadata["files_indexed_remotely"].value == len(files)
    assert raw_event.metadata["bytes_downloaded"].value < len(archive) / 4

    classes = pd.read_parquet(DataHome(home).table_path("cytoimagenet_classes"))
    assert sorted(classes["label"]) == sorted(COMPOUNDS)
    for key, label in zip(classes["class_key"], classes["label"]):
        result = dg.materialize(everything, resources=defs.resources, instance=instance, selection="class_images", partition_key=key)
        assert result.success
        event = instance.get_latest_materialization_event(dg.AssetKey("class_images")).asset_materialization
        assert event.metadata["files_fetched"].value == COMPOUNDS[label]
        # its own members (plus request overhead), not the archive: about its share of the files
        assert 0 < event.metadata["bytes_fetched"].value < len(archive) * (COMPOUNDS[label] + 1) / len(files)
        assert event.metadata["images"].value >= COMPOUNDS[label]
    fetched = sorted(p.relative_to(raw).as_posix() for p in (raw / "plate1").iterdir() if not p.name.startswith("."))
    assert fetched == sorted(n for n in files if not n.startswith("plate1/dmso"))
    assert all((raw / name).read_bytes() == files[name] for name in fetched)


def test_kaggle_credentials_come_from_the_environment_and_never_show(remote, tmp_path, monkeypatch):
    """KAGGLE_USERNAME / KAGGLE_KEY become EnvVars of the resource: the download authenticates with
    them, and neither the run's events, its metadata nor its stored config holds the key."""
    from cytoimagenet_assets.catalog import load_catalog as load
    from cytoimagenet_assets.defs.resources import downloads_from_env

    secret = "kaggle-secret-0123456789"
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    monkeypatch.setenv("KAGGLE_KEY", secret)
    remote.auth = ("alice", secret)
    archive, files = _archive()
    remote.put("/api/v1/datasets/download/andrewmvd/leukemia-classification", archive)
    real = load("cytoimagenet")
    catalog = real.model_copy(update={"sources": (real.source("kag_leukemia"),)})
    defs = build_definitions(catalog, data_home=str(tmp_path))
    downloads = downloads_from_env(kaggle_api=remote.base + "/api/v1")
    assert (downloads.kaggle_username, downloads.kaggle_key) == ("KAGGLE_USERNAME", "KAGGLE_KEY")  # EnvVars: names, not values
    resources = {**defs.resources, "downloads": downloads}
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([*defs.assets], resources=resources, instance=instance, selection="raw/kag_leukemia")
    assert result.success
    raw = DataHome(tmp_path).raw_dir("kag_leukemia")
    assert all((raw / name).read_bytes() == data for name, data in files.items())
    logged = [str(event) for event in instance.all_logs(result.run_id)]
    stored = str(instance.get_run_by_id(result.run_id).run_config)
    assert logged and not any(secret in text for text in logged) and secret not in stored
