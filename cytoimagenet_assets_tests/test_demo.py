"""The demo generator: real formats, deterministic bytes, and images that differ by label."""

import hashlib

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

from cytoimagenet_assets.demo import generate
from cytoimagenet_assets.sources import parse_source
from cytoimagenet_assets.sources.table import missing_files, table_problems


def _digest(folder):
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(path.relative_to(folder).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def test_every_demo_source_parses_with_its_real_parser_and_all_files_exist(demo_catalog, demo_raw):
    for source in (s for s in demo_catalog.sources if s.parser is not None):  # COOS-7 and CyCLoPs: tested below
        parsed = parse_source(source, demo_raw / source.dir_name)
        assert len(parsed.table) > 0 and parsed.rejects.empty, source.dir_name
        assert table_problems(parsed.table) == []
        assert missing_files(parsed.table, demo_raw / source.dir_name).empty, source.dir_name


def test_generation_is_deterministic_and_replaces_the_folder(demo_catalog, demo_raw, tmp_path):
    source = demo_catalog.source("demo_leukemia")
    target = tmp_path / "demo_leukemia"
    target.mkdir()
    (target / "stale.txt").write_text("from an older run")
    generate(source, target, demo_catalog.seed)
    assert not (target / "stale.txt").exists()
    assert _digest(target) == _digest(demo_raw / "demo_leukemia")
    generate(source, target, demo_catalog.seed + 1)
    assert _digest(target) != _digest(demo_raw / "demo_leukemia")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folders left


def test_an_interrupted_generation_leaves_nothing(demo_catalog, tmp_path, monkeypatch):
    from cytoimagenet_assets.demo import generators

    def broken(raw, seed, **_):
        (raw / "half.png").write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setitem(generators.GENERATORS, "leukemia", broken)
    with pytest.raises(OSError, match="disk full"):
        generate(demo_catalog.source("demo_leukemia"), tmp_path / "demo_leukemia", 0)
    assert list(tmp_path.iterdir()) == []


def test_files_have_the_real_formats(demo_raw):
    tif = next((demo_raw / "demo_bbbc021").rglob("*_w1*.tif"))
    with tifffile.TiffFile(tif) as f:
        array = f.asarray()
    assert array.dtype == np.uint16 and array.max() < 4096 and array.max() > 100  # 12-bit camera data in 16 bits
    assert b"\r" in (demo_raw / "demo_bbbc021" / "BBBC021_v1_moa.csv").read_bytes()
    png = Image.open(next((demo_raw / "demo_rxrx1" / "train").rglob("*_w1.png")))
    assert png.mode == "L"
    assert Image.open(next((demo_raw / "demo_leukemia").rglob("*.bmp"))).mode == "RGB"
    jpg = Image.open(next((demo_raw / "demo_cell_cycle").rglob("*.jpg")))
    assert jpg.format == "JPEG" and jpg.mode == "RGB"
    tiff16 = tifffile.imread(next((demo_raw / "demo_idr_screen").rglob("*-ch1sk1fk1fl1.tiff")))
    assert tiff16.dtype == np.uint16


def _features(paths):
    """Simple hand-made image statistics: intensity quantiles and texture per channel."""
    out = []
    for path in paths:
        image = tifffile.imread(path).astype(np.float32) / 4095
        grad = np.abs(np.diff(image, axis=0)).mean() + np.abs(np.diff(image, axis=1)).mean()
        out += [*np.quantile(image, [0.5, 0.9, 0.99]), (image > 0.1).mean(), grad]
    return out


def test_demo_treatments_are_distinguishable_by_mechanism(demo_catalog, demo_raw):
    """1-NN over mean treatment profiles, neighbours from other compounds only (BBBC021's NSC
    protocol), on simple image statistics: well above chance (1/4) if mechanisms shape the images."""
    raw = demo_raw / "demo_bbbc021"
    images = pd.read_csv(raw / "BBBC021_v1_image.csv")
    images = images[images["Image_Metadata_Compound"] != "DMSO"]
    paths = [
        [raw / row[f"Image_PathName_{c}"] / row[f"Image_FileName_{c}"] for c in ("DAPI", "Tubulin", "Actin")]
        for _, row in images.iterrows()
    ]
    features = np.array([_features(p) for p in paths])
    features = (features - features.mean(0)) / (features.std(0) + 1e-9)
    moa = pd.read_csv(raw / "BBBC021_v1_moa.csv")
    moa_of = {(c, float(k)): m for c, k, m in moa.itertuples(index=False)}
    treatments = images.assign(_row=range(len(images))).groupby(["Image_Metadata_Compound", "Image_Metadata_Concentration"])
    profiles, compounds, moas = [], [], []
    for (compound, conc), group in treatments:
        profiles.append(features[group["_row"].to_numpy()].mean(0))
        compounds.append(compound)
        moas.append(moa_of[(compound, float(conc))])
    profiles = np.array(profiles)
    normed = profiles / np.linalg.norm(profiles, axis=1, keepdims=True)
    similarity = normed @ normed.T
    hits = []
    for i in range(len(profiles)):
        others = [j for j in range(len(profiles)) if compounds[j] != compounds[i]]
        hits.append(moas[max(others, key=lambda j: similarity[i, j])] == moas[i])
    assert len(profiles) == 16 and np.mean(hits) >= 0.5  # chance is 0.25 (4 MOAs); P(>= 8 of 16 by chance) < 0.03


def test_demo_coos7_and_cyclops_are_hdf5_in_the_layouts_their_readers_expect(demo_catalog, demo_raw, tmp_path):
    import h5py

    from cytoimagenet_assets.evaluation import benchmarks

    options = benchmarks.benchmark_options(demo_catalog.source("demo_coos7"), "coos7")
    coos7 = benchmarks.load_benchmark("coos7", demo_raw / "demo_coos7", options)
    assert {split: len(s) for split, s in coos7.samples.items()} == {"train": 84, "test1": 42, "test2": 42, "test3": 42, "test4": 42}
    with h5py.File(demo_raw / "demo_coos7" / "COOS7_v1.1_test3.hdf5") as f:
        assert set(f) == {"data", "labels"} and f["data"].shape == (42, 2, 64, 64) and f["data"].dtype == np.uint16
        assert sorted(set(f["labels"][()].tolist())) == list(range(7))
    cyclops = benchmarks.load_benchmark("cyclops", demo_raw / "demo_cyclops")
    with h5py.File(demo_raw / "demo_cyclops" / "datasets" / "Chong_train_set.hdf5") as f:
        assert {"data1", "data2", "Index1", "Index2", "Index1_columns"} <= set(f) and f["data1"].shape[1] == 2 * 64 * 64
        cells_in_train = len(f["data1"]) + len(f["data2"])
    assert cells_in_train == 29 and len(cyclops.samples["all"]) == 3 * 29 - 6  # one DEAD and one GHOST per file dropped
    assert sorted(set(cyclops.colours)) == ["ACTIN", "BUDNECK", "NUCLEI", "SPINDLE", "VACUOLE"]  # SPINDLEPOLE merged
    assert "5 classes after dropping DEAD and GHOST" in cyclops.notes[0]
    # Deterministic bytes: regenerating gives the same files.
    generate(demo_catalog.source("demo_cyclops"), tmp_path / "again", demo_catalog.seed)
    assert _digest(tmp_path / "again") == _digest(demo_raw / "demo_cyclops")
    # Label-dependent cells: the protein channel's mean profile differs between classes more than within one.
    images, labels = coos7.samples["train"], np.array([options["class_names"].index(c) for c in coos7.colours])
    protein = np.array([images[i][0].astype(float).ravel() for i in range(len(images))])
    centroids = np.array([protein[labels == c].mean(0) for c in range(7)])
    nearest = ((protein[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(1)
    assert (nearest == labels).mean() > 0.5  # chance is 1/7
