"""Evaluation protocols, k-NN, readers and feature extraction."""

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier

from cytoimagenet_assets.evaluation import benchmarks, profiles, protocols
from cytoimagenet_assets.evaluation.knn import accuracy_interval, knn_predict
from cytoimagenet_assets.model.inference import (
    METHODS,
    BackboneUnavailable,
    FeatureExtractor,
    extract,
    extract_all,
    imagenet_backbone,
    prepare,
    random_backbone,
)


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
    treatments = _treatments(
        [
            ("a", 1.0, "m1", ("w1",)),
            ("a", 2.0, "m1", ("w1",)),  # same compound: never each other's neighbour
            ("b", 1.0, "m1", ("w2",)),
            ("c", 1.0, "m2", ("w1",)),
            ("d", 1.0, "m2", ("w1",)),
        ]
    )
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
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "cytoimagenet_assets.evaluation",
            "bbbc021-treatments",
            str(real / "bbbc021" / "BBBC021_v1_image.csv"),
            str(real / "bbbc021" / "BBBC021_v1_moa.csv"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.stdout.strip() == "treatments=103 compounds=38 moas=12 nscb_treatments=92"


def test_treatment_profiles_are_means():
    images = pd.DataFrame(
        {"compound": ["a", "a", "b"], "concentration": [1.0, 1.0, 1.0], "moa": ["m", "m", "n"], "batch": ["w1", "w1", "w2"]}
    )
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
    with pytest.raises(protocols.BenchmarkFileError, match="no dataset 'images'"):
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


def test_the_methods_shapes_and_normalization():
    rng = np.random.default_rng(2)
    channels = [rng.integers(0, 4096, (48, 48)).astype(np.uint16), rng.integers(0, 255, (48, 48)).astype(np.uint8)]
    assert len(prepare(channels, "concat_normalized")) == 2 and len(prepare(channels, "merge_raw")) == 1
    normalized = prepare(channels, "concat_normalized")
    assert all(img.min() == 0.0 and img.max() == 1.0 for img in normalized)
    raw = prepare(channels, "concat_raw")  # /255 whatever the bit depth, as the original's Keras model
    assert raw[0].max() == pytest.approx(channels[0].max() / 255) and raw[0].max() > 10
    assert raw[1].max() == pytest.approx(channels[1].max() / 255)
    by_range = prepare(channels, "concat_raw", raw_scaling="dtype_range")
    assert by_range[0].max() == pytest.approx(channels[0].max() / 65535) and by_range[1].max() == pytest.approx(channels[1].max() / 255)
    assert np.allclose(prepare(channels, "merge_normalized")[0], (normalized[0] + normalized[1]) / 2)
    extractor = FeatureExtractor(random_backbone(0), torch.device("cpu"), batch_size=4)
    samples = [channels, channels, channels]
    shapes = {method: extract(extractor, samples, method).shape for method in METHODS}
    assert shapes == {
        "concat_normalized": (3, 2560),
        "concat_raw": (3, 2560),
        "merge_normalized": (3, 1280),
        "merge_raw": (3, 1280),
        "bag_of_channels": (3, 1280),
    }


def test_the_bag_of_channels_is_the_mean_of_concat_normalized_blocks_whatever_the_channels_order_or_number():
    rng = np.random.default_rng(3)
    samples = [[rng.integers(0, 4096, (48, 48)).astype(np.uint16) for _ in range(3)] for _ in range(4)]
    extractor = FeatureExtractor(random_backbone(0), torch.device("cpu"), batch_size=4)
    bag = extract(extractor, samples, "bag_of_channels")
    concat = extract(extractor, samples, "concat_normalized")
    close = {"rtol": 1e-4, "atol": 1e-4 * np.abs(bag).max()}  # a random network's features are tiny (~1e-14)
    assert bag.shape == (4, 1280) and np.abs(bag).max() > 0
    np.testing.assert_allclose(bag, concat.reshape(4, 3, 1280).mean(axis=1), **close)
    shuffled = [[s[i] for i in rng.permutation(3)] for s in samples]
    np.testing.assert_allclose(extract(extractor, shuffled, "bag_of_channels"), bag, **close)
    assert not np.allclose(extract(extractor, shuffled, "concat_normalized"), concat, **close)  # concat does depend on the order
    fewer = extract(extractor, [samples[0], samples[1][:2]], "bag_of_channels")  # samples of different channel counts pool alike
    np.testing.assert_allclose(fewer[1], concat[1, :2560].reshape(2, 1280).mean(axis=0), **close)
    alone = extract_all({"random": extractor}, samples, ["bag_of_channels"], chunk=3)["random"]["bag_of_channels"]
    shared = extract_all({"random": extractor}, samples, ["bag_of_channels", "concat_normalized"], chunk=3)["random"]["bag_of_channels"]
    np.testing.assert_array_equal(shared, alone)  # pooled from concat_normalized's pass when both are asked: the same bytes


def test_missing_imagenet_weights_say_how_to_get_them(tmp_path):
    with pytest.raises(BackboneUnavailable, match="IMAGENET1K_V1"):
        imagenet_backbone(str(tmp_path / "absent.pth"))


def test_nscb_leaves_out_moas_found_in_one_batch_only():
    treatments = _treatments(
        [
            ("a", 1.0, "m1", ("w1",)),
            ("b", 1.0, "m1", ("w2",)),
            ("c", 1.0, "m2", ("w1",)),
            ("d", 1.0, "m2", ("w1",)),  # m2 only in w1: no other-batch answer exists
            ("e", 1.0, "m3", ("w2",)),
            ("f", 1.0, "m3", ("w3",)),
        ]
    )
    profiles = np.array([[1.0, 0, 0], [0.9, 0.1, 0], [0, 1.0, 0], [0, 0.9, 0.1], [0, 0, 1.0], [0.1, 0, 0.9]])
    assert protocols.nscb_eligible(treatments).tolist() == [True, True, False, False, True, True]
    score, predicted = protocols.nscb(treatments, profiles)
    assert score.n == 4 and score.accuracy == 1.0 and score.interval == "bootstrap"
    assert predicted.tolist() == ["m1", "m1", None, None, "m3", "m3"]


def test_nscb_on_the_real_metadata_scores_92_treatments(real):
    images = protocols.bbbc021_images(real / "bbbc021" / "BBBC021_v1_image.csv", real / "bbbc021" / "BBBC021_v1_moa.csv", controls=True)
    assert images["control"].sum() == 1320 and (images.loc[images["control"], "moa"] == "DMSO").all()
    features = np.random.default_rng(0).normal(size=(len(images), 8))
    scores, details = protocols.bbbc021_scores(images, [features])
    assert scores["BBBC021 NSC"].n == 103 and scores["BBBC021 NSCB"].n == 92
    assert details["nscb_excluded_moas"] == ["Cholesterol-lowering", "Kinase inhibitors"]
    tvn_scores, tvn_details = protocols.bbbc021_scores(images, [features], protocols.BBBC021Variant(tvn=True))
    assert tvn_scores["BBBC021 NSCB"].n == 92 and "1320 control profiles" in tvn_details["tvn"]


def _bbbc021_images(per_treatment=3):
    """Four compounds, two MOAs, each treatment in its own batch."""
    rows = [
        (c, 1.0, moa, batch, False)
        for c, moa, batch in (("a", "m1", "w1"), ("b", "m1", "w2"), ("c", "m2", "w1"), ("d", "m2", "w2"))
        for _ in range(per_treatment)
    ]
    return pd.DataFrame(rows, columns=["compound", "concentration", "moa", "batch", "control"])


def test_standardization_changes_the_neighbour_an_unscaled_dimension_decided():
    images = _bbbc021_images()
    rng = np.random.default_rng(0)
    # Dimension 0: large, varies a lot, and pairs a with c and b with d (different MOAs).
    misleading = {"a": 300.0, "c": 290.0, "b": -300.0, "d": -290.0}
    # Dimensions 1-4: small, but they carry the MOA.
    signal = {"m1": np.array([1.0, 1.0, -1.0, 1.0]), "m2": np.array([-1.0, -1.0, 1.0, -1.0])}
    features = np.array(
        [[misleading[c] + rng.normal(0, 5), *(signal[m] + rng.normal(0, 0.1, 4))] for c, m in zip(images["compound"], images["moa"])]
    )
    raw, _ = protocols.bbbc021_scores(images, [features], protocols.BBBC021Variant(standardize=False))
    standardized, _ = protocols.bbbc021_scores(images, [features])
    assert raw["BBBC021 NSC"].accuracy == 0.0 and standardized["BBBC021 NSC"].accuracy == 1.0


def test_fusion_standardizes_each_backbone_before_concatenating():
    images = _bbbc021_images()
    rng = np.random.default_rng(1)
    loud = np.array(
        [[{"a": 1e4, "c": 0.9e4, "b": -1e4, "d": -0.9e4}[c] + rng.normal(0, 100), rng.normal(0, 100)] for c in images["compound"]]
    )
    quiet = np.array(
        [np.array({"m1": [1.0, -1.0, 1.0, 1.0], "m2": [-1.0, 1.0, -1.0, -1.0]}[m]) + rng.normal(0, 0.1, 4) for m in images["moa"]]
    )
    fused, _ = protocols.bbbc021_scores(images, [loud, quiet])
    unscaled, _ = protocols.bbbc021_scores(images, [loud, quiet], protocols.BBBC021Variant(standardize=False))
    assert fused["BBBC021 NSC"].accuracy == 1.0 and unscaled["BBBC021 NSC"].accuracy == 0.0
    both = profiles.standardize_parts([loud, quiet])
    assert both.shape == (12, 6) and np.allclose(both.std(0), 1)


def test_tvn_makes_the_controls_identity_covariance_per_batch():
    rng = np.random.default_rng(2)  # every direction whitened (variance_share=1): the mechanics exactly
    mixing = rng.normal(size=(6, 6))
    batches = np.repeat(["w1", "w2"], 400)
    features = rng.normal(size=(800, 6)) @ mixing + np.where(batches == "w1", 0.0, 5.0)[:, None]  # a batch shift
    features[batches == "w2"] *= 1.5  # and a batch scale
    controls = np.arange(800) % 2 == 0
    out, info = profiles.tvn(features, controls, batches, variance_share=1.0)
    assert info.components == 6 and info.batches_whitened == ["w1", "w2"]
    for batch in ("w1", "w2"):
        own = out[controls & (batches == batch)]
        assert np.allclose(np.cov(own, rowvar=False), np.eye(6), atol=1e-8) and np.allclose(own.mean(0), 0, atol=1e-8)
    pooled, info = profiles.tvn(features, controls, variance_share=1.0)  # one whitening for all: the pooled controls are white
    assert np.allclose(np.cov(pooled[controls], rowvar=False), np.eye(6), atol=1e-8) and info.batches_whitened == []
    few = np.isin(np.arange(800), [0, 2, 4, 400, 402])  # 3 and 2 controls per batch: centred, not whitened
    _, info = profiles.tvn(features, few, batches, variance_share=1.0)
    assert info.components == 4 and info.batches_centred == ["w1", "w2"]


def test_tvn_whitens_the_components_explaining_99_percent_of_the_control_variance_not_the_noise():
    rng = np.random.default_rng(3)
    signal = rng.normal(size=(400, 3)) * [10.0, 5.0, 2.0]
    features = np.hstack([signal, rng.normal(size=(400, 3)) * 1e-2])  # three directions of pure noise
    probe = np.vstack([features[:1], features[:1] + [0, 0, 0, 0.1, 0, 0]])  # a shift far below the signal's scale
    controls = np.r_[np.ones(400, bool), False, False]
    out, info = profiles.tvn(np.vstack([features, probe]), controls)
    assert info.components == 3 and info.variance_explained > 0.99 and "3 dimensions kept, 100.0% of their variance" in info.describe()
    assert np.linalg.norm(out[-1] - out[-2]) < 0.01  # the noise is not whitened: the probe barely moves
    alike = np.vstack([features, features[:1].repeat(5, 0)])  # a batch of five identical controls: centred, never a crash
    _, info = profiles.tvn(alike, np.ones(405, bool), np.r_[np.zeros(400), np.ones(5)])
    assert info.batches_centred == ["1.0"] and info.batches_whitened == ["0.0"]
    every, info = profiles.tvn(np.vstack([features, probe]), controls, variance_share=1.0)
    assert info.components == 6 and np.linalg.norm(every[-1] - every[-2]) > 5  # whitened noise: 0.1 becomes ~10 SDs


def test_tvn_variant_needs_controls_and_median_aggregation():
    images = _bbbc021_images(per_treatment=3)
    features = np.arange(len(images) * 2, dtype=float).reshape(-1, 2) ** 2
    with pytest.raises(ValueError, match="DMSO control"):
        protocols.bbbc021_profiles(images, [features], protocols.BBBC021Variant(tvn=True))
    _, median = protocols.treatment_profiles(images, features, how="median")
    assert median[0].tolist() == features[1].tolist()  # a's rows are 0, 1, 2: the median is row 1
    _, mean = protocols.treatment_profiles(images, features)
    assert mean[0].tolist() == features[:3].mean(0).tolist() != median[0].tolist()


def test_bootstrap_interval_over_treatments():
    correct, labels = np.array([True] * 83 + [False] * 20), np.arange(103) % 2
    score = protocols.Score.bootstrap(correct, labels, seed=0)
    assert score.accuracy == pytest.approx(83 / 103) and score.interval == "bootstrap"
    assert 0.70 < score.low < 0.76 and 0.85 < score.high < 0.89
    assert protocols.Score.bootstrap(correct, labels, seed=0) == score  # seeded: the same every run


def test_bad_bbbc021_metadata_names_file_and_row(tmp_path):
    header = (
        "Image_FileName_DAPI,Image_PathName_DAPI,Image_FileName_Tubulin,Image_PathName_Tubulin,Image_FileName_Actin,"
        "Image_PathName_Actin,Image_Metadata_Plate_DAPI,Image_Metadata_Compound,Image_Metadata_Concentration\n"
    )
    (tmp_path / "image.csv").write_text(
        header + "a.tif,Week1/P,b.tif,Week1/P,c.tif,Week1/P,Week1_1,taxol,0.3\n"
        "d.tif,Week1/P,e.tif,Week1/P,f.tif,Week1/P,Week1_1,taxol,lots\n"
    )
    (tmp_path / "moa.csv").write_text("compound,concentration,moa\ntaxol,0.3,Microtubule stabilizers\n")
    with pytest.raises(ValueError, match=r"image.csv: data row 2: Image_Metadata_Concentration 'lots' is not a number"):
        protocols.bbbc021_images(tmp_path / "image.csv", tmp_path / "moa.csv")
    (tmp_path / "image.csv").write_text(header + "a.tif,Week1/P,b.tif,Week1/P,c.tif,Week1/P,Week1_1,taxol,0.3\n")
    with pytest.raises(FileNotFoundError, match=r"image.csv data row 1: image file .*Week1/P/a.tif not found"):
        benchmarks.load_benchmark("bbbc021", tmp_path, {"image_table": "image.csv", "moa_table": "moa.csv"})
    with pytest.raises(benchmarks.BenchmarkMissing, match="absent.csv not found"):
        benchmarks.load_benchmark("bbbc021", tmp_path, {"image_table": "absent.csv", "moa_table": "moa.csv"})


def test_every_chunk_of_a_deeploc_style_file_is_read(tmp_path):
    names = np.array([b"ACTIN", b"NUCLEI", b"SPINDLEPOLE", b"DEAD"])
    picks = {1: [0, 1, 2, 3], 2: [1, 1, 0], 3: [2, 0]}
    with h5py.File(tmp_path / "Chong_train_set.hdf5", "w") as f:
        for k, chunk in picks.items():
            f[f"data{k}"] = np.full((len(chunk), 2 * 64 * 64), k, np.float32)
            f[f"Index{k}"] = np.eye(4)[chunk]
        f["Index1_columns"] = names
    images, labels, classes = protocols.read_cyclops([tmp_path / "Chong_train_set.hdf5"])
    assert classes == ["ACTIN", "NUCLEI", "SPINDLE"] and len(images) == 8  # 9 cells, the DEAD one dropped
    assert sorted(images[:, 0, 0, 0].tolist()) == [1, 1, 1, 2, 2, 2, 3, 3]
    assert np.bincount(labels).tolist() == [3, 3, 2]
    with h5py.File(tmp_path / "COOS7_v1.1_train.hdf5", "w") as f:  # COOS-7 in chunks: data1/labels1, data2/labels2
        f["data1"], f["labels1"] = np.zeros((3, 2, 8, 8), np.uint16), [0, 1, 2]
        f["data2"], f["labels2"] = np.ones((2, 2, 8, 8), np.uint16), [3, 4]
    data, coos_labels = protocols.read_coos7(tmp_path / "COOS7_v1.1_train.hdf5")
    assert data.shape == (5, 2, 8, 8) and coos_labels.tolist() == [0, 1, 2, 3, 4] and data[3:].min() == 1
    with h5py.File(tmp_path / "gap.hdf5", "w") as f:
        f["data1"], f["Index1"], f["data3"], f["Index3"] = (
            np.zeros((1, 8192), np.float32),
            np.eye(4)[[0]],
            np.zeros((1, 8192)),
            np.eye(4)[[0]],
        )
        f["Index1_columns"] = names
    with pytest.raises(ValueError, match="data3 also exist: a chunk is missing"):
        protocols.read_cyclops([tmp_path / "gap.hdf5"])


def test_the_cli_evaluates_a_saved_model_on_the_demo_benchmarks_without_dagster(demo_raw, tmp_path):
    import torchvision

    model = tmp_path / "model.pt"
    torch.manual_seed(0)
    torch.save(torchvision.models.efficientnet_b0(weights=None, num_classes=7).state_dict(), model)
    args = [
        "run",
        "--model",
        str(model),
        "--benchmark",
        f"bbbc021={demo_raw / 'demo_bbbc021'}",
        "--benchmark",
        f"coos7={demo_raw / 'demo_coos7'}",
        "--benchmark",
        f"cyclops={demo_raw / 'demo_cyclops'}",
        "--backbones",
        "cytoimagenet",
        "fusion",
        "--methods",
        "merge_normalized",
        "--aggregation",
        "mean",
        "median",
        "--imagenet-weights",
        str(tmp_path / "absent.pth"),
        "--no-umap",
        "--out",
        str(tmp_path / "report"),
    ]
    code = (
        "import sys; from cytoimagenet_assets.evaluation.__main__ import main; rc = main(sys.argv[1:]); "
        "assert not [m for m in sys.modules if m.split('.')[0] == 'dagster'], 'dagster was imported'; sys.exit(rc)"
    )
    run = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "features: 100%" in run.stderr  # the progress bar
    results = pd.read_csv(tmp_path / "report" / "evaluation_report.csv", keep_default_na=False)
    assert set(results["backbone"]) == {"cytoimagenet"} and set(results["method"]) == {"merge_normalized"}
    bbbc021 = results[results["benchmark"].str.startswith("BBBC021")]
    assert sorted(set(zip(bbbc021["variant"], bbbc021["aggregation"]))) == [
        ("TVN", "mean"),
        ("TVN", "median"),
        ("raw", "mean"),
        ("raw", "median"),
    ]
    assert set(results["benchmark"]) >= {"COOS-7 test4", "CyCLoPs"} and (bbbc021["n"] == 16).all()
    report = json.loads((tmp_path / "report" / "evaluation_report.json").read_text())
    assert "fusion" in report["unavailable_backbones"] and "imagenet" in report["unavailable_backbones"]
    assert report["skipped_benchmarks"] == {} and report["settings"]["aggregations"] == ["mean", "median"]
    markdown = (tmp_path / "report" / "evaluation_report.md").read_text()
    assert "chosen on the test data itself" in markdown and "| BBBC021 NSCB (TVN) |" in markdown and "| BBBC021 NSC (median) |" in markdown
    tvn_notes = [line for line in markdown.splitlines() if line.startswith("- BBBC021 TVN")]  # each says whose whitening it is
    assert {n.split(":")[0] for n in tvn_notes} == {f"- BBBC021 TVN (cytoimagenet, merge_normalized, {a})" for a in ("mean", "median")}
    assert "report:" in run.stdout and "BBBC021 NSC" in run.stdout


def test_the_bag_of_channels_is_reported_beside_the_other_methods_on_the_demo_benchmarks(demo_raw):
    from cytoimagenet_assets.evaluation.run import BenchmarkInput, EvaluationSettings, run_evaluation

    settings = EvaluationSettings(backbones=("random",), tvn=False, umap=False)
    assert settings.methods == ("concat_normalized", "concat_raw", "merge_normalized", "merge_raw", "bag_of_channels")
    evaluation = run_evaluation(
        [BenchmarkInput(kind, demo_raw / f"demo_{kind}") for kind in benchmarks.KINDS], None, settings, progress=False, catalog="demo"
    )
    results = evaluation.results
    bag = results[results["method"] == "bag_of_channels"]
    names = {"BBBC021 NSC", "BBBC021 NSCB", *(f"COOS-7 test{i}" for i in range(1, 5)), "CyCLoPs"}
    assert set(bag["benchmark"]) == names and bag["accuracy"].between(0, 1).all() and len(results) == 5 * len(bag)
    every_method = evaluation.markdown().split("## Every method", 1)[1].splitlines()
    assert {line.split(" | ")[0].lstrip("| ") for line in every_method if "| random | bag_of_channels |" in line} == names


def test_an_absent_benchmark_is_skipped_with_what_to_download(tmp_path):
    from cytoimagenet_assets.evaluation.run import BenchmarkInput, EvaluationSettings, run_evaluation

    evaluation = run_evaluation(
        [BenchmarkInput("cyclops", tmp_path / "cyclops", how_to_get="download DeepLoc_full_datasets.zip")],
        None,
        EvaluationSettings(backbones=("random", "cytoimagenet")),
        progress=False,
    )
    assert evaluation.results.empty
    assert evaluation.skipped == {"CyCLoPs": f"{tmp_path / 'cyclops'} does not exist. To provide it: download DeepLoc_full_datasets.zip"}
    assert "no CytoImageNet model given" in evaluation.unavailable["cytoimagenet"]
    (tmp_path / "cyclops").mkdir()
    evaluation = run_evaluation(
        [BenchmarkInput("cyclops", tmp_path / "cyclops")], None, EvaluationSettings(backbones=("random",)), progress=False
    )
    assert "Chong_train_set.hdf5 not found" in evaluation.skipped["CyCLoPs"]
    with pytest.raises(ValueError, match="unknown method"):
        run_evaluation([], None, EvaluationSettings(methods=("concat",)))


def test_a_truncated_benchmark_table_names_itself_in_the_cli(real, tmp_path):
    """A .gz cut short (an interrupted download) is an error naming the file and where it ends, not an EOFError traceback."""
    import gzip

    whole = gzip.compress((real / "bbbc021" / "BBBC021_v1_image.csv").read_bytes())
    (tmp_path / "image.csv.gz").write_bytes(whole[: len(whole) // 2])
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "cytoimagenet_assets.evaluation",
            "bbbc021-treatments",
            str(tmp_path / "image.csv.gz"),
            str(real / "bbbc021" / "BBBC021_v1_moa.csv"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.startswith(f"error: cannot read {tmp_path / 'image.csv.gz'}") and "EOFError" in run.stderr


def test_a_damaged_benchmark_hdf5_names_itself_in_the_cli(tmp_path, capsys):
    """A truncated download, an HTML page saved as .hdf5 or a wrong dataset key is one line naming the
    file and what is wrong (exit 2), not an h5py traceback."""
    from cytoimagenet_assets.evaluation.__main__ import main

    folder = tmp_path / "coos7"
    folder.mkdir()
    for split in protocols.COOS7_SPLITS:
        with h5py.File(folder / f"COOS7_v1.1_{split}.hdf5", "w") as f:
            f["data"], f["labels"] = np.zeros((4, 2, 8, 8), np.uint16), [0, 1, 2, 3]
    args = ["run", "--benchmark", f"coos7={folder}", "--backbones", "random", "--no-umap", "--quiet", "--out", str(tmp_path / "report")]
    test1 = folder / "COOS7_v1.1_test1.hdf5"
    test1.write_bytes(test1.read_bytes()[:1000])
    run = subprocess.run([sys.executable, "-m", "cytoimagenet_assets.evaluation", *args], capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith(f"error: cannot read {test1}: it is truncated or damaged (1000 bytes; h5py:")
    test1.write_text("<!DOCTYPE html><html><body>Please sign in</body></html>")
    assert main(args) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith(
            f"error: cannot read {test1}: it is an HTML page, not HDF5 (an error or login page saved in its place?); download it again"
        )
    )
    with h5py.File(test1, "w") as f:
        f["images"], f["labels"] = np.zeros((4, 2, 8, 8), np.uint16), [0, 1, 2, 3]
    assert main(args) == 2
    assert f"error: {test1}: no dataset 'data' (nor chunks data1, data2, …); it has ['images', 'labels']" in capsys.readouterr().err
    assert not (tmp_path / "report").exists()


def _results(benchmarks_n: dict[str, int], chance: float = 0.25, majority: float = 0.4) -> pd.DataFrame:
    """Result rows of the random backbone on each benchmark, scored on ``n`` items with these chance levels."""
    from cytoimagenet_assets.evaluation.run import COLUMNS

    rows = [
        {"benchmark": b, "variant": "raw", "aggregation": "", "backbone": "random", "method": "merge_raw", "accuracy": 0.5}
        | {"low": 0.4, "high": 0.6, "n": n, "chance": chance, "majority": majority, "interval": "wilson"}
        for b, n in benchmarks_n.items()
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def test_the_report_opens_with_catalog_model_run_data_fingerprint_and_utc_date(tmp_path):
    from cytoimagenet_assets.evaluation.run import EvaluationSettings, run_evaluation

    run = tmp_path / "models" / "efficientnet_b0-0123456789abcdef-feedbeef"
    run.mkdir(parents=True)
    (run / "model_card.json").write_text(json.dumps({"data": {"fingerprint": "0123456789abcdef"}}))
    evaluation = run_evaluation([], run / "model.pt", EvaluationSettings(backbones=("random",)), progress=False, catalog="cytoimagenet")
    assert (evaluation.model_run, evaluation.fingerprint) == (run.name, "0123456789abcdef")
    evaluation.date = datetime(2024, 5, 1, 14, 30, tzinfo=timezone(timedelta(hours=2)))
    header = [
        "# CytoImageNet transfer evaluation",
        "",
        "- **Catalog**: `cytoimagenet`",
        f"- **Model run**: `{run.name}`",
        "- **Data fingerprint**: `0123456789abcdef`",
        "- **Date (UTC)**: `2024-05-01T12:30:00+00:00`",
        "",
    ]
    assert (evaluation.write(tmp_path / "report") / "evaluation_report.md").read_text().splitlines()[: len(header)] == header
    shown = evaluation.report(tmp_path / "report")
    assert {k: shown[k] for k in ("catalog", "model_run", "data_fingerprint", "date")} == {
        "catalog": "cytoimagenet",
        "model_run": run.name,
        "data_fingerprint": "0123456789abcdef",
        "date": "2024-05-01T12:30:00+00:00",
    }
    assert json.loads((tmp_path / "report" / "evaluation_report.json").read_text())["catalog"] == "cytoimagenet"
    unknown = run_evaluation([], tmp_path / "elsewhere.pt", EvaluationSettings(backbones=("random",)), progress=False)
    assert unknown.header["model_run"] == str(tmp_path / "elsewhere.pt") and unknown.header["data_fingerprint"].startswith("unknown")
    assert run_evaluation([], None, EvaluationSettings(backbones=("random",)), progress=False).header["model_run"] == "none"


def test_the_banner_marks_the_demo_catalog_and_too_small_benchmarks_only():
    from cytoimagenet_assets.evaluation.report import MIN_SAMPLES
    from cytoimagenet_assets.evaluation.run import Evaluation

    enough = _results({"COOS-7 test1": MIN_SAMPLES, "CyCLoPs": 28_000})
    banner = "These figures only show that the pipeline runs"
    real = Evaluation(enough, catalog="cytoimagenet")
    assert banner not in real.markdown() and real.report(None)["banner"] == "none"
    demo = Evaluation(enough, catalog="demo")
    assert f"> **{banner}: the 'demo' catalog's benchmarks are synthetic" in demo.markdown()
    assert demo.report(None)["banner"].startswith(f"{banner}: the 'demo' catalog's")
    small = Evaluation(_results({"COOS-7 test1": MIN_SAMPLES - 1, "CyCLoPs": 28_000}), catalog="cytoimagenet")
    assert f"COOS-7 test1 ({MIN_SAMPLES - 1}) scored fewer than {MIN_SAMPLES} samples" in small.report(None)["banner"]
    assert "CyCLoPs (" not in small.report(None)["banner"] and small.markdown().count(banner) == 1


def test_chance_columns_come_from_the_labels_of_the_items_scored():
    from cytoimagenet_assets.evaluation.report import comparison_table

    treatments = _treatments(
        [
            ("a", 1.0, "m1", ("w1",)),
            ("a", 2.0, "m1", ("w1",)),
            ("b", 1.0, "m1", ("w2",)),
            ("c", 1.0, "m2", ("w1",)),
            ("d", 1.0, "m3", ("w1",)),
        ]
    )
    profiles_ = np.array([[1.0, 0.0], [0.9, 0.1], [0.8, 0.2], [0.0, 1.0], [0.1, 0.9]])
    nsc, _ = protocols.nsc(treatments, profiles_)
    assert (nsc.chance, nsc.majority) == (pytest.approx(1 / 3), pytest.approx(3 / 5))  # m1 m1 m1 m2 m3
    nscb, _ = protocols.nscb(treatments, profiles_)
    assert (nscb.n, nscb.chance, nscb.majority) == (3, 1.0, 1.0)  # only m1 spans two batches: only m1 is scored
    coos = protocols.coos7({"train": np.eye(3), "test1": np.eye(3)[[0, 0, 0, 1]]}, {"train": np.arange(3), "test1": np.array([0, 0, 0, 1])})
    assert (coos["test1"].chance, coos["test1"].majority) == (0.5, 0.75)
    cyclops = protocols.cyclops(np.eye(5), np.array([0, 0, 1, 1, 2]))
    assert (cyclops.chance, cyclops.majority) == (pytest.approx(1 / 3), 0.4)
    results = pd.DataFrame(
        [
            benchmarks._row(name, score) | {"backbone": "random", "method": "merge_raw"}
            for name, score in [("BBBC021 NSC", nsc), ("CyCLoPs", cyclops)]
        ]
    )
    table = comparison_table(results).set_index("benchmark")
    assert table.loc["BBBC021 NSC", ["chance: 1/classes", "chance: majority class"]].tolist() == ["33.3", "60.0"]
    assert table.loc["CyCLoPs", ["chance: 1/classes", "chance: majority class"]].tolist() == ["33.3", "40.0"]
    assert table.loc["COOS-7 test1", "chance: 1/classes"] == "—"  # not evaluated: its published figures only
    published = [c for c in table.columns if "published" in c]
    assert published == [f"{b} published (paper, on the paper's data)" for b in ("random", "imagenet", "cytoimagenet", "fusion")]


def test_the_cli_table_opens_with_the_header_and_the_banner(tmp_path, capsys):
    from cytoimagenet_assets.evaluation.__main__ import main

    folder = tmp_path / "coos7"
    folder.mkdir()
    for split in protocols.COOS7_SPLITS:
        with h5py.File(folder / f"COOS7_v1.1_{split}.hdf5", "w") as f:
            f["data"], f["labels"] = np.random.default_rng(0).integers(0, 255, (4, 2, 8, 8)).astype(np.uint8), [0, 1, 1, 1]
    args = ["run", "--benchmark", f"coos7={folder}", "--backbones", "random", "--methods", "merge_raw", "--no-umap", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "report")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:5] == [
        "# CytoImageNet transfer evaluation",
        "",
        "- **Catalog**: `none`",
        "- **Model run**: `none`",
        "- **Data fingerprint**: `none`",
    ]
    assert out[5].startswith("- **Date (UTC)**: `") and out[5].endswith("+00:00`")
    assert "COOS-7 test1 (4), COOS-7 test2 (4), COOS-7 test3 (4), COOS-7 test4 (4) scored fewer than" in out[7]
    assert "chance: 1/classes" in out[9] and "chance: majority class" in out[9] and "published (paper, on the paper's data)" in out[9]
    assert out[10].split()[:4] == ["COOS-7", "test1", "50.0", "75.0"]


def test_the_coos7_umap_names_its_classes_when_the_catalog_does(demo_raw):
    from cytoimagenet_assets.catalog import load_catalog
    from cytoimagenet_assets.demo.hdf5 import COOS7_CLASSES

    entry = load_catalog("demo").source("demo_coos7")
    options = benchmarks.benchmark_options(entry, "coos7")
    assert options["class_names"] == list(COOS7_CLASSES)  # the demo catalog names its classes as its generator draws them
    named = benchmarks.load_benchmark("coos7", demo_raw / "demo_coos7", options)
    assert set(named.colours) == set(COOS7_CLASSES)
    unnamed = benchmarks.load_benchmark("coos7", demo_raw / "demo_coos7")  # the real files' order is unconfirmed: numbers, not guesses
    assert set(unnamed.colours) == {f"class {n}" for n in range(7)}
    with pytest.raises(protocols.BenchmarkFileError, match=r"labels \[0, 1, 2, 3, 4, 5, 6\] do not all name one of the 3"):
        benchmarks.load_benchmark("coos7", demo_raw / "demo_coos7", {**options, "class_names": ["a", "b", "c"]})
