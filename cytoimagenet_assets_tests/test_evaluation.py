"""Evaluation protocols, k-NN, readers and feature extraction."""

import subprocess
import sys

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier

from cytoimagenet_assets.evaluation import protocols
from cytoimagenet_assets.evaluation.features import (
    METHODS,
    BackboneUnavailable,
    FeatureExtractor,
    extract,
    imagenet_backbone,
    prepare,
    random_backbone,
)
from cytoimagenet_assets.evaluation.knn import accuracy_interval, knn_predict


@pytest.mark.parametrize("k", [1, 5, 11])
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_knn_matches_scikit_learn(k, metric):
    rng = np.random.default_rng(k)
    train, labels, queries = rng.normal(size=(300, 12)), rng.integers(0, 5, 300), rng.normal(size=(97, 12))
    ours = knn_predict(train, labels, queries, k, metric=metric, chunk=32)
    theirs = KNeighborsClassifier(n_neighbors=k, algorithm="brute", metric=metric).fit(train, labels).predict(queries)
    assert np.array_equal(ours, theirs)


def test_knn_exclusion_and_leave_one_out():
    x = np.array([[0.0], [0.1], [5.0], [5.1]])
    y = np.array([0, 0, 1, 1])
    loo = knn_predict(x, y, x, 1, excluded=lambda rows: rows[:, None] == np.arange(4)[None, :])
    assert loo.tolist() == [0, 0, 1, 1]
    nothing_left = knn_predict(x, y, x, 1, excluded=lambda rows: np.ones((len(rows), 4), bool))
    assert nothing_left.tolist() == [-1, -1, -1, -1]


def test_wilson_interval():
    acc, low, high = accuracy_interval(np.array([True] * 83 + [False] * 20))
    assert acc == pytest.approx(83 / 103) and 0.71 < low < 0.73 and 0.87 < high < 0.88


def _treatments(rows):
    return pd.DataFrame(rows, columns=["compound", "concentration", "moa", "batches"])


def test_nsc_and_nscb_on_hand_made_profiles():
    treatments = _treatments([
        ("a", 1.0, "m1", ("w1",)), ("a", 2.0, "m1", ("w1",)),  # same compound: never each other's neighbour
        ("b", 1.0, "m1", ("w2",)),
        ("c", 1.0, "m2", ("w1",)), ("d", 1.0, "m2", ("w1",)),
    ])
    profiles = np.array([[1.0, 0.0], [0.9, 0.1], [0.8, 0.2], [0.0, 1.0], [0.1, 0.9]])
    score, predicted = protocols.nsc(treatments, profiles)
    assert predicted.tolist() == ["m1", "m1", "m1", "m2", "m2"] and score.accuracy == 1.0 and score.n == 5
    # NSCB: c and d (m2) are both in w1, like a; their only candidate from another batch is b (m1).
    score_b, predicted_b = protocols.nsc(treatments, profiles, exclude_batch=True)
    assert predicted_b.tolist() == ["m1", "m1", "m1", "m1", "m1"]
    assert score_b.accuracy == pytest.approx(3 / 5)


def test_bbbc021_treatment_table_on_the_real_metadata(real):
    images = protocols.bbbc021_images(real / "bbbc021" / "BBBC021_v1_image.csv", real / "bbbc021" / "BBBC021_v1_moa.csv")
    table = protocols.bbbc021_treatments(images)
    assert (len(table), table["compound"].nunique(), table["moa"].nunique()) == (103, 38, 12)
    assert "DMSO" not in set(table["moa"])
    assert images["path_DAPI"].iloc[0].startswith("Week") and images["batch"].str.match(r"Week\d+$").all()
    run = subprocess.run([sys.executable, "-m", "cytoimagenet_assets.evaluation", "bbbc021-treatments",
                          str(real / "bbbc021" / "BBBC021_v1_image.csv"), str(real / "bbbc021" / "BBBC021_v1_moa.csv")],
                         capture_output=True, text=True, timeout=120)
    assert run.stdout.strip() == "treatments=103 compounds=38 moas=12"


def test_treatment_profiles_are_means():
    images = pd.DataFrame({"compound": ["a", "a", "b"], "concentration": [1.0, 1.0, 1.0], "moa": ["m", "m", "n"], "batch": ["w1", "w1", "w2"]})
    treatments, profiles = protocols.treatment_profiles(images, np.array([[1.0, 3.0], [3.0, 5.0], [7.0, 7.0]]))
    assert treatments["compound"].tolist() == ["a", "b"] and profiles.tolist() == [[2.0, 4.0], [7.0, 7.0]]


def test_coos7_reader_and_protocol(tmp_path):
    rng = np.random.default_rng(0)
    features, labels = {}, {}
    for split in protocols.COOS7_SPLITS:
        y = rng.integers(0, 7, 70)
        with h5py.File(tmp_path / f"COOS7_v1.1_{split}.hdf5", "w") as f:
            f["data"] = rng.integers(0, 65535, (70, 2, 64, 64)).astype(np.uint16)
            f["labels"] = y
        data, read_labels = protocols.read_coos7(tmp_path / f"COOS7_v1.1_{split}.hdf5")
        assert data.shape == (70, 2, 64, 64) and np.array_equal(read_labels, y)
        features[split] = np.eye(7)[y] * 10 + rng.normal(size=(70, 7))  # separable
        labels[split] = y
    scores = protocols.coos7(features, labels)
    assert set(scores) == {"test1", "test2", "test3", "test4"} and all(s.accuracy > 0.9 for s in scores.values())
    with pytest.raises(KeyError, match="no dataset 'images'"):
        protocols.read_coos7(tmp_path / "COOS7_v1.1_train.hdf5", data_key="images")


def test_cyclops_reader_pools_drops_and_merges(tmp_path):
    names = [b"ACTIN", b"DEAD", b"SPINDLE", b"SPINDLEPOLE", b"GHOST", b"VACUOLE"]
    rng = np.random.default_rng(1)
    paths = []
    for name in ("Chong_train_set.hdf5", "Chong_valid_set.hdf5", "Chong_test_set.hdf5"):
        picks = np.tile([0, 1, 2, 3, 4, 5, 0, 5], 5)
        with h5py.File(tmp_path / name, "w") as f:
            f["data1"] = rng.random((len(picks), 2 * 64 * 64)).astype(np.float32)
            f["Index1"] = np.eye(len(names))[picks]
            f["Index1_columns"] = np.array(names)
        paths.append(tmp_path / name)
    images, labels, classes = protocols.read_cyclops(paths)
    assert classes == ["ACTIN", "SPINDLE", "VACUOLE"] and images.shape == (90, 2, 64, 64)
    assert np.bincount(labels).tolist() == [30, 30, 30]
    with h5py.File(paths[0]) as f:  # the first 4096 values are the GFP channel
        assert np.array_equal(images[0, 0].ravel(), f["data1"][0, :4096])
    separable = np.eye(3)[labels] * 10 + rng.normal(size=(90, 3))
    assert protocols.cyclops(separable, labels).accuracy == 1.0


def test_the_four_methods_shapes_and_normalization():
    rng = np.random.default_rng(2)
    channels = [rng.integers(0, 4096, (48, 48)).astype(np.uint16), rng.integers(0, 255, (48, 48)).astype(np.uint8)]
    assert len(prepare(channels, "concat_normalized")) == 2 and len(prepare(channels, "merge_raw")) == 1
    normalized = prepare(channels, "concat_normalized")
    assert all(img.min() == 0.0 and img.max() == 1.0 for img in normalized)
    raw = prepare(channels, "concat_raw")
    assert raw[0].max() == pytest.approx(channels[0].max() / 65535) and raw[1].max() == pytest.approx(channels[1].max() / 255)
    assert np.allclose(prepare(channels, "merge_normalized")[0], (normalized[0] + normalized[1]) / 2)
    extractor = FeatureExtractor(random_backbone(0), torch.device("cpu"), batch_size=4)
    samples = [channels, channels, channels]
    shapes = {method: extract(extractor, samples, method).shape for method in METHODS}
    assert shapes == {"concat_normalized": (3, 2560), "concat_raw": (3, 2560), "merge_normalized": (3, 1280), "merge_raw": (3, 1280)}


def test_missing_imagenet_weights_say_how_to_get_them(tmp_path):
    with pytest.raises(BackboneUnavailable, match="IMAGENET1K_V1"):
        imagenet_backbone(str(tmp_path / "absent.pth"))
