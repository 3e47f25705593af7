"""Readers on real images, processing properties, quality control, and building a class."""

import dataclasses
import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import mrc
import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

from cytoimagenet_assets.catalog.settings import LabelSettings
from cytoimagenet_assets.images.build_class import (
    LOW_CONTRAST,
    NOT_A_NUMBER,
    RELEASE_COLUMNS,
    ClassBuildError,
    ImageTask,
    build_class,
    channel_names,
    original_crops_per_image,
    process_image,
    top_up_crops_per_image,
    trim_to_target,
)
from cytoimagenet_assets.images.dataset import class_folder_problems, dataset_problems, publish_dataset, upsampling_figures
from cytoimagenet_assets.images.process import (
    MIN_CROP,
    SCALES,
    crop_problem,
    crop_scales,
    merge,
    plan_crops,
    quality_problem,
    to_uint8,
)
from cytoimagenet_assets.images.readers import ImageReadError, read_channels
from cytoimagenet_assets.intensity import normalize, percentiles
from cytoimagenet_assets.storage import DataHome, write_csv, write_parquet

EXAMPLES = "cellprofiler_examples"


def test_big_endian_16_bit_tiff(real):
    path = real / EXAMPLES / "ExampleSpeckles" / "images" / "1-162hrh2ax2.tif"
    (image,) = read_channels(path)
    with Image.open(path) as pil:  # Pillow decodes I;16B independently of tifffile
        assert pil.mode == "I;16B"
        expected = np.asarray(pil).astype(np.uint16)
    assert image.dtype == np.uint16 and image.shape == (1000, 1200)
    assert np.array_equal(image, expected) and image.max() == 4095


@pytest.mark.parametrize(
    "name", ["ExampleFly/images/01_POS002_D.TIF", "ExampleIlluminationCorrection/images/AS_09047_050428030001_O01f00d2.TIF"]
)
def test_palette_tiff_goes_through_its_colour_map(real, name):
    (image,) = read_channels(real / EXAMPLES / name)
    with Image.open(real / EXAMPLES / name) as pil:
        assert pil.mode == "P"
        expected = np.asarray(pil.convert("L")).astype(int)
    assert image.dtype == np.uint8 and image.shape == expected.shape
    assert np.abs(image.astype(int) - expected).max() <= 1  # luma rounding differs by at most one level


def test_8_bit_tiff_and_rxrx_png(real):
    (tif,) = read_channels(real / EXAMPLES / "ExampleHuman" / "images" / "AS_09125_050116030001_D03f00d0.tif")
    assert tif.dtype == np.uint8 and tif.shape == (512, 512)
    png_path = real / "rxrx1" / "images" / "train" / "HEPG2-01" / "Plate1" / "B02_s1_w1.png"
    (png,) = read_channels(png_path)
    with Image.open(png_path) as pil:
        assert np.array_equal(png, np.asarray(pil))
    assert png.dtype == np.uint8 and png.shape == (512, 512)


def test_bbbc021_npy_crop_gives_three_channels(real):
    path = next((real / "bbbc021" / "singlecell_crops_npy" / "DMSO").glob("*.npy"))
    channels = read_channels(path)
    raw = np.load(path)
    assert len(channels) == 3 and all(np.array_equal(c, raw[..., i]) for i, c in enumerate(channels))
    assert channels[0].dtype == np.uint16 and channels[0].shape == (68, 68)


def test_other_formats_written_here(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(rgb).convert("L")).astype(int)
    for suffix, fmt in ((".bmp", "BMP"), (".JPG", "JPEG"), (".png", "PNG")):
        Image.fromarray(rgb).save(tmp_path / f"x{suffix}", format=fmt)
        (gray,) = read_channels(tmp_path / f"x{suffix}")
        if fmt != "JPEG":
            assert np.abs(gray.astype(int) - expected).max() <= 1
        assert gray.shape == (40, 50)
    sixteen = np.arange(2000, dtype=np.uint16).reshape(40, 50) * 30
    Image.fromarray(sixteen).save(tmp_path / "s.png")
    (read,) = read_channels(tmp_path / "s.png")
    assert read.max() == sixteen.max() and np.array_equal(read.astype(np.uint16), sixteen)
    stack = np.stack([np.full((20, 30), v, np.uint16) for v in (5, 50, 9)])
    tifffile.imwrite(tmp_path / "z.tif", stack, photometric="minisblack")  # generic pages: a z-stack, max projection
    (projected,) = read_channels(tmp_path / "z.tif")
    assert projected.shape == (20, 30) and projected.max() == 50
    tifffile.imwrite(tmp_path / "c.tif", stack, photometric="minisblack", metadata={"axes": "CYX"})
    assert [c.max() for c in read_channels(tmp_path / "c.tif")] == [5, 50, 9]
    tifffile.imwrite(tmp_path / "o.flex", stack, photometric="minisblack")
    planar = np.stack([np.full((20, 30), v, np.uint8) for v in (100, 50, 200)])
    tifffile.imwrite(tmp_path / "rgb.tif", planar, photometric="rgb", planarconfig="separate")
    (gray,) = read_channels(tmp_path / "rgb.tif")
    assert gray.shape == (20, 30) and gray[0, 0] == round(0.299 * 100 + 0.587 * 50 + 0.114 * 200)
    assert len(read_channels(tmp_path / "o.flex")) == 3


def test_two_samples_per_pixel_are_two_channels(tmp_path):
    rng = np.random.default_rng(3)
    samples = rng.integers(0, 4000, (64, 80, 2)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "contig.tif", samples, photometric="minisblack", planarconfig="contig")  # axes YXS
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(samples, -1, 0), photometric="minisblack", planarconfig="separate")  # SYX
    for name in ("contig.tif", "planar.tif"):
        channels = read_channels(tmp_path / name)
        assert len(channels) == 2 and all(np.array_equal(c, samples[..., i]) for i, c in enumerate(channels)), name


def test_broken_and_unknown_files_name_the_file(tmp_path):
    (tmp_path / "broken.tif").write_bytes(b"II*\x00garbage")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (tmp_path / "image.xyz").write_bytes(b"?")
    for name in ("broken.tif", "broken.png", "image.xyz"):
        with pytest.raises(ImageReadError, match=name):
            read_channels(tmp_path / name)
    with pytest.raises(FileNotFoundError, match="missing.tif"):
        read_channels(tmp_path / "missing.tif")


def test_normalize_and_merge():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 4096, (64, 64)).astype(np.uint16)
    b = rng.integers(0, 256, (64, 64)).astype(np.uint8)
    for image in (a, b, a.astype(np.float32)):
        out = normalize(image)
        assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
        low, high = np.percentile(image, (0.1, 99.9))
        assert np.allclose(out, np.clip((image - low) / (high - low), 0, 1), atol=1e-6)
    merged = merge([a, b])
    assert np.allclose(merged, (normalize(a) + normalize(b)) / 2)
    assert not normalize(np.full((5, 5), 7, np.uint16)).any()
    with pytest.raises(ValueError, match="differ in shape"):
        merge([a, b[:10]])


def test_histogram_percentiles_match_numpy():
    rng = np.random.default_rng(1)
    for image in (rng.integers(0, 65535, (97, 101)).astype(np.uint16), rng.integers(0, 3, (10, 10)).astype(np.uint8)):
        q = [0, 0.1, 25, 50, 75, 99.9, 100]
        assert np.allclose(percentiles(image, q), np.percentile(image, q))


def test_crops_stay_in_their_windows_and_above_70_px():
    rng = np.random.default_rng(2)
    for shape in [(512, 512), (1024, 1280), (300, 200), (150, 150)]:
        for count in range(1, 6):
            crops = plan_crops(shape, count, rng)
            assert len(crops) == min(count, 4)
            quadrants = set()
            for crop in crops:
                side = crop.x_max - crop.x_min
                assert side == crop.y_max - crop.y_min >= MIN_CROP
                assert crop.scaling in (1 / 2, 1 / 4, 1 / 8, 1 / 16)
                qy, qx = int(crop.y_min >= shape[0] // 2), int(crop.x_min >= shape[1] // 2)
                assert crop.y_max <= (shape[0] // 2 if qy == 0 else shape[0]) and crop.x_max <= (shape[1] // 2 if qx == 0 else shape[1])
                quadrants.add((qy, qx))
            assert len(quadrants) == len(crops)  # one crop per window
    assert plan_crops((120, 120), 4, rng) == []  # no 70 px crop fits a 60 px window


def test_crop_scales_are_spread_as_the_originals_get_slicers():
    rng = np.random.default_rng(0)
    for _ in range(200):
        assert sorted(crop_scales(list(SCALES), 4, rng)) == sorted(SCALES)  # as many scales as crops: each once
        two = crop_scales([1 / 2, 1 / 4], 4, rng)  # fewer: every usable scale, then random repeats
        assert len(two) == 4 and {1 / 2, 1 / 4} == set(two)
        drawn = crop_scales(list(SCALES), 2, rng)  # more: a random draw (with repeats, as np.random.choice)
        assert len(drawn) == 2 and set(drawn) <= set(SCALES)
    # On a 1,200 px image all four scales are usable: every image cut into four crops gets all four.
    for seed in range(300):
        assert sorted(c.scaling for c in plan_crops((1200, 1200), 4, np.random.default_rng(seed))) == sorted(SCALES)


def test_quality_filters():
    rng = np.random.default_rng(3)
    assert quality_problem(np.full((50, 50), 9, np.uint8)) == "uniform"
    binary = np.where(rng.random((50, 50)) < 0.5, 0, 255).astype(np.uint8)
    assert quality_problem(binary) == "binary"
    dim = np.zeros((50, 50), np.uint8)
    dim[:5, :] = rng.integers(1, 255, (5, 50))
    assert quality_problem(dim) == "dim"
    assert quality_problem(rng.integers(0, 255, (50, 50)).astype(np.uint8)) is None
    assert to_uint8(np.array([[0.0, 1.0]], np.float32)).tolist() == [[0, 255]]


def test_top_up_crops_per_image_reaches_target_when_it_can():
    assert top_up_crops_per_image(40, 80) == [1] * 40
    assert sum(top_up_crops_per_image(30, 100)) == 70 and max(top_up_crops_per_image(30, 100)) == 3
    assert top_up_crops_per_image(10, 1000) == [4] * 10
    assert top_up_crops_per_image(100, 80) == [0] * 100


def test_original_crops_per_image_by_class_size_scaled_to_the_target():
    # the original's supplement_label at its target of 1000: 1 at 1000, 2 from 550, 3 from 400, else 4
    assert [original_crops_per_image(n, 1000) for n in (1000, 999, 550, 549, 400, 399, 287)] == [1, 2, 2, 3, 3, 4, 4]
    # the demo's target of 80: the bounds become 44 (55%) and 32 (40%)
    assert [original_crops_per_image(n, 80) for n in (80, 79, 44, 43, 32, 31)] == [1, 2, 2, 3, 3, 4]


def _class_rows(raw: Path, n: int, broken: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(4)
    rows = []
    for i in range(n):
        paths = []
        for c in range(2):
            image = (rng.random((160, 160)) * 3000).astype(np.uint16)
            image[40:80, 40:90] += 900  # some structure
            tifffile.imwrite(raw / f"f{i}_w{c}.tif", image)
            paths.append(f"f{i}_w{c}.tif")
        if i < broken:
            (raw / paths[0]).write_bytes(b"II*\x00broken")
        rows.append(
            {
                "idx": f"s-{i}",
                "dir_name": "s",
                "channel_paths": paths,
                "channel_names": ["nucleus", "actin"],
                "database": "db",
                "name": "n",
                "organism": "human",
                "cell_type": None,
                "cell_visible": "nucleus|actin",
                "phenotype": None,
                "compound": "x",
                "sirna": None,
                "gene": None,
                "microscopy": "fluorescence",
            }
        )
    return pd.DataFrame(rows)


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def test_build_class_upsamples_drops_bad_images_and_is_deterministic(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    rows = _class_rows(raw, 12, broken=2)
    out = tmp_path / "dataset" / "compound-x"
    result = build_class(
        "compound-x", "x", "compound", rows, {"s": raw}, out, target=30, threshold=10, seed=0, upsampling="top_up", workers=2
    )
    meta = result.metadata
    assert list(meta.columns)[:8] == ["label", "category", "database", "name", "dir_name", "path", "filename", "idx"]
    # 12 rows, 2 of them corrupt files: those are on disk, so crops are planned for all 12 (18 to reach 30, as the original
    # counted every file present); the 10 that decode are kept whole with their crops.
    assert (~meta["crop"]).sum() == 10
    assert meta["crop"].sum() == sum(top_up_crops_per_image(12, 30)[2:]) - int((result.drops["stage"] == "quality").sum())
    assert set(result.drops.loc[result.drops["stage"] == "read", "idx"]) == {"s-0", "s-1"}
    assert result.drops["reason"].str.contains("broken|f0_w0.tif|f1_w0.tif").all()
    assert meta["filename"].tolist() == [f"compound-x-{i:08d}.png" for i in range(1, len(meta) + 1)]
    files = sorted(p.name for p in out.glob("*.png"))
    assert files == sorted(meta["filename"]) and (out / "metadata.csv").exists()
    crops = meta[meta["crop"]]
    assert ((crops["x_max"] - crops["x_min"]) >= MIN_CROP).all()
    first = _digest(out)
    again = build_class(
        "compound-x", "x", "compound", rows, {"s": raw}, out, target=30, threshold=10, seed=0, upsampling="top_up", workers=1
    )
    assert _digest(out) == first and again.metadata.equals(meta)  # 1 or 2 workers: same bytes
    assert [p.name for p in out.parent.iterdir()] == ["compound-x"]  # no staging left


def test_original_upsampling_replaces_each_large_image_by_its_crops_and_trims_to_the_target(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    rows = _class_rows(raw, 9)  # 160 px: cropped
    rng = np.random.default_rng(8)
    for i in range(2):  # 120 px on one side: below the original's 140, kept as they are
        for c in range(2):
            tifffile.imwrite(raw / f"small{i}_w{c}.tif", (rng.random((120, 200)) * 3000).astype(np.uint16))
    small = _class_rows(raw, 2).assign(idx=["t-0", "t-1"], channel_paths=[[f"small{i}_w0.tif", f"small{i}_w1.tif"] for i in range(2)])
    absent = _class_rows(raw, 2).assign(idx=["u-0", "u-1"], channel_paths=[["gone_w0.tif", "gone_w1.tif"]] * 2)  # not on disk
    rows = pd.concat([rows, small, absent], ignore_index=True)
    out = tmp_path / "dataset" / "k"
    result = build_class("k", "x", "compound", rows, {"s": raw}, out, target=30, threshold=10, seed=0)
    meta = result.metadata
    large = meta[meta["idx"].str.startswith("s-")]
    assert large["crop"].all() and set(large["scaling"]) <= set(SCALES)  # no large original survives
    assert not meta.loc[meta["idx"].str.startswith("t-"), "crop"].any()
    # 11 images on disk (the 2 absent ones do not count): k = 4 (11 < 12); 9 × 4 crops + 2 originals = 38, trimmed by 8,
    # at most one per image. Counting the 13 rows would have given k = 3 and 29 images.
    assert original_crops_per_image(11, 30) == 4 and original_crops_per_image(13, 30) == 3
    assert sorted(result.drops["idx"]) == ["u-0", "u-1"] and result.drops["reason"].str.contains("no such file").all()
    assert len(meta) == 30 and result.trimmed == 8
    assert large.groupby("idx").size().min() >= 3
    assert sorted(p.name for p in out.glob("*.png")) == sorted(meta["filename"])
    again = build_class("k", "x", "compound", rows, {"s": raw}, tmp_path / "again" / "k", target=30, threshold=10, seed=0)
    assert again.metadata.drop(columns="path").equals(meta.drop(columns="path"))


def test_trimming_removes_one_output_per_source_image_before_any_second():
    outputs = pd.DataFrame({"idx": ["a"] * 4 + ["b"] * 4 + ["c"] * 2})
    removed = trim_to_target(outputs, 8, np.random.default_rng(0))
    assert len(removed) == 2 and outputs["idx"].iloc[removed].nunique() == 2
    removed = trim_to_target(outputs, 5, np.random.default_rng(0))  # 5 to remove, only 3 images: one each, then 2 more
    assert len(removed) == 5 and set(outputs["idx"].iloc[removed]) == {"a", "b", "c"}
    assert np.array_equal(removed, trim_to_target(outputs, 5, np.random.default_rng(0)))
    assert len(trim_to_target(outputs, 10, np.random.default_rng(0))) == 0


def _task(tmp_path: Path, image: np.ndarray, crops: int, replace: bool = True) -> ImageTask:
    path = tmp_path / f"im-{crops}-{replace}.tif"
    tifffile.imwrite(path, image)
    stage = tmp_path / f"stage-{crops}-{replace}"
    stage.mkdir()
    return ImageTask(0, "s-0", (str(path),), crops, (0, 1), str(stage), replace_with_crops=replace)


def test_a_crop_is_checked_on_the_merged_image_before_it_is_renormalized(tmp_path):
    rng = np.random.default_rng(2)
    image = rng.choice(np.array([0, 1, 3], np.uint8), size=(160, 160), p=[0.6, 0.3, 0.1])  # dark: mean 0.6 on the 8-bit scale
    image[:80, :80] = rng.integers(0, 256, (80, 80))  # one quadrant of real structure spans 0-255, so the image maps to itself
    image[:4, :80] = 255
    assert np.array_equal(to_uint8(normalize(image)), image)
    dark = image[80:, 80:]
    assert crop_problem(dark) == "dark crop"
    assert quality_problem(to_uint8(normalize(dark))) is None  # renormalized first, the dark corner would pass
    written, dropped = process_image(_task(tmp_path, image, crops=4))  # 160 px: four 80 px crops, one per quadrant
    assert [w["crop"] for w in written] == [True] and written[0]["x_max"] == 80 and written[0]["y_max"] == 80
    assert sorted(d["reason"] for d in dropped) == ["dark crop"] * 3
    assert crop_problem(np.full((80, 80), 254, np.uint8)) == "saturated crop"
    assert crop_problem(np.where(np.arange(6400).reshape(80, 80) % 5 == 0, 200, 0).astype(np.uint8)) == "dim crop"


def test_an_image_none_of_whose_crops_pass_is_kept_whole(tmp_path):
    image = np.zeros((160, 160), np.uint8)
    image[:80, 80:], image[80:, :80], image[80:, 80:] = 100, 150, 200  # four flat quadrants: each crop renormalizes to a flat image
    written, dropped = process_image(_task(tmp_path, image, crops=4))
    assert [w["crop"] for w in written] == [False] and len(dropped) == 4
    written, _ = process_image(_task(tmp_path, image, crops=4, replace=False))
    assert [w["crop"] for w in written] == [False]


def test_a_dim_sparse_field_is_still_cropped_and_its_bright_crops_kept(tmp_path):
    rng = np.random.default_rng(4)
    image = np.zeros((320, 320), np.uint16)  # a sparse field: 75th percentile 0 as a whole
    image[20:140, 20:140] = rng.integers(500, 4000, (120, 120))  # cells in one quadrant
    assert quality_problem(to_uint8(normalize(image))) == "dim"
    written, dropped = process_image(_task(tmp_path, image, crops=4))
    assert written and all(w["crop"] for w in written)  # the original crops before its dim test
    assert "dim" not in {d["reason"] for d in dropped}
    nothing = np.zeros((320, 320), np.uint16)
    nothing[5:17, 5:17] = rng.integers(1000, 3000, (12, 12))  # dim everywhere: no crop passes, and kept whole it is dim
    written, dropped = process_image(_task(tmp_path, nothing, crops=3))
    assert written == [] and [d["reason"] for d in dropped if d["crop"] == 0] == ["dim"]
    small = np.zeros((100, 100), np.uint16)  # too small to crop: the dim test applies to it whole
    small[:10, :10] = rng.integers(100, 900, (10, 10))
    written, dropped = process_image(_task(tmp_path, small, crops=2))
    assert written == [] and [d["reason"] for d in dropped] == ["dim"]
    binary = np.where(rng.random((320, 320)) < 0.5, 0, 1000).astype(np.uint16)  # uniform and binary: dropped before cropping
    written, dropped = process_image(_task(tmp_path, binary, crops=1))
    assert written == [] and [(d["crop"], d["reason"]) for d in dropped] == [(None, "binary")]


def test_the_contrast_crop_check_drops_background_crops_the_original_lets_through(tmp_path):
    rng = np.random.default_rng(5)
    image = rng.integers(2, 9, (160, 160)).astype(np.uint8)  # background noise: mean > 1 and 75th percentile > 0
    image[:80, :80] = rng.integers(0, 256, (80, 80))  # one quadrant of cells spans the whole range
    assert [crop_problem(image[y : y + 80, x : x + 80]) for y in (0, 80) for x in (0, 80)] == [None] * 4
    written, dropped = process_image(_task(tmp_path, image, crops=4))  # the original's check: the noise tiles are kept
    assert sorted(w["low_contrast"] for w in written) == [False, True, True, True] and dropped == []
    task = dataclasses.replace(_task(tmp_path, image, crops=4, replace=False), crop_check="contrast")
    written, dropped = process_image(task)
    assert [(w["crop"], w["low_contrast"]) for w in written] == [(False, False), (True, False)]
    assert [d["reason"] for d in dropped] == [LOW_CONTRAST] * 3


def test_pixels_that_are_not_numbers_have_their_own_drop_reason(tmp_path):
    image = np.random.default_rng(0).random((100, 100)).astype(np.float32)
    image[3, 4] = np.nan
    written, dropped = process_image(_task(tmp_path, image, crops=0))
    assert written == [] and [d["reason"] for d in dropped] == [NOT_A_NUMBER]


def test_a_class_below_threshold_or_without_its_source_fails_with_the_reason(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    rows = _class_rows(raw, 6, broken=4)
    with pytest.raises(
        ClassBuildError,
        match=r"only 2 usable images of 6 rows \(threshold 10\); dropped: \{'unreadable': 4\}; "
        r"first: unreadable: .*f0_w0.tif: cannot decode",
    ):
        build_class("k", "x", "compound", rows, {"s": raw}, tmp_path / "dataset" / "k", target=6, threshold=10, seed=0)
    assert not (tmp_path / "dataset" / "k").exists()
    with pytest.raises(ClassBuildError, match="raw folder of source 's' is missing"):
        build_class("k", "x", "compound", rows, {"s": tmp_path / "nowhere"}, tmp_path / "dataset" / "k", target=6, threshold=1, seed=0)


def test_a_region_is_cut_from_each_channel_before_merging_and_one_outside_its_image_is_dropped(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    rng = np.random.default_rng(5)
    channels = [(rng.random((120, 160)) * 4000).astype(np.uint16) for _ in range(2)]
    channels[0][:10] = 65000  # bright rows outside the region: they would change its normalization if it were cut after merging
    for c, image in enumerate(channels):
        tifffile.imwrite(raw / f"smear_w{c}.tif", image)
    rows = _class_rows(raw, 3).assign(channel_paths=[["smear_w0.tif", "smear_w1.tif"]] * 3)
    rows["region"] = pd.array(["y10:90,x20:100", None, "y100:200,x0:50"], dtype="string")
    out = tmp_path / "dataset" / "k"
    result = build_class("k", "x", "compound", rows, {"s": raw}, out, target=3, threshold=2, seed=0)
    meta = result.metadata.set_index("idx")
    with Image.open(out / meta.loc["s-0", "filename"]) as png:
        boxed = np.asarray(png)
    assert boxed.shape == (80, 80)
    assert np.array_equal(boxed, to_uint8(merge([c[10:90, 20:100] for c in channels])))
    assert meta.loc["s-0", ["x_min", "x_max", "y_min", "y_max"]].tolist() == [20, 100, 10, 90]  # the slice of the file
    with Image.open(out / meta.loc["s-1", "filename"]) as png:
        assert np.asarray(png).shape == (120, 160)  # no region: the whole image
    assert "s-2" not in meta.index
    assert result.drops[["idx", "stage"]].values.tolist() == [["s-2", "region"]]
    assert result.drops["reason"].item() == (
        "region outside the image: y100:200,x0:50 does not fit in the 120x160 image (smear_w0.tif, smear_w1.tif)"
    )
    rows.loc[2, "region"] = "y0:1,x0:1|y0:2,x0:2"
    result = build_class("k", "x", "compound", rows, {"s": raw}, out, target=3, threshold=2, seed=0)
    assert result.drops["reason"].item().startswith("malformed region: 'y0:1,x0:1|y0:2,x0:2'")


KILLED_BUILD = """
import sys, pandas as pd
from pathlib import Path
from cytoimagenet_assets.images import build_class
original = build_class.process_image
def slow(task):
    import time
    if task.ordinal == 5:
        print("half way", flush=True)
        time.sleep(60)
    return original(task)
build_class.process_image = slow
rows = pd.read_pickle(sys.argv[1])
build_class.build_class("k", "x", "compound", rows, {"s": Path(sys.argv[2])}, Path(sys.argv[3]), target=20, threshold=5, seed=0)
"""


def test_a_build_killed_in_the_middle_leaves_nothing_and_a_rerun_gives_the_same_class(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    rows = _class_rows(raw, 10)
    rows.to_pickle(tmp_path / "rows.pkl")
    out = tmp_path / "dataset" / "k"
    reference = tmp_path / "reference" / "k"
    build_class("k", "x", "compound", rows, {"s": raw}, reference, target=20, threshold=5, seed=0)
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_BUILD, str(tmp_path / "rows.pkl"), str(raw), str(out)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout.readline().strip() == "half way"
    staged = [p for p in out.parent.iterdir()]
    assert staged and all(p.name.startswith(".k.") for p in staged)  # work in progress is hidden
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert not out.exists()
    build_class("k", "x", "compound", rows, {"s": raw}, out, target=20, threshold=5, seed=0)
    assert _digest(out) == _digest(reference)
    assert [p.name for p in out.parent.iterdir()] == ["k"]  # the killed run's staging is gone too


def test_signed_and_float_images_use_exact_percentiles():
    signed = np.array([[-300, -10], [0, 900]], dtype=np.int16)
    assert np.allclose(normalize(signed), np.clip((signed - np.percentile(signed, 0.1)) / np.ptp(np.percentile(signed, [0.1, 99.9])), 0, 1))
    assert np.allclose(percentiles(signed, [50]), np.percentile(signed, [50]))


def test_the_class_folder_check_finds_stray_colour_and_out_of_bounds_images(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    out = tmp_path / "dataset" / "k"
    meta = build_class("k", "x", "compound", _class_rows(raw, 6), {"s": raw}, out, target=30, threshold=5, seed=0).metadata
    assert class_folder_problems(out, meta, 5, 30) == []
    assert class_folder_problems(out, meta, len(meta) + 1, 100) == [f"{len(meta)} images, outside [{len(meta) + 1}, 100]"]
    Image.new("RGB", (8, 8)).save(out / meta["filename"].iloc[0])
    Image.new("L", (8, 8)).save(out / "stray.png")
    problems = class_folder_problems(out, meta, 5, 30)
    assert len(problems) == 2 and "unlisted: ['stray.png']" in problems[0] and "(RGB)" in problems[1]


def test_the_dataset_check_finds_unlisted_classes_and_images_in_two_classes():
    metadata = pd.DataFrame(
        {"path": ["a", "a", "b"], "idx": ["s-1", "s-1", "s-2"], "crop": [True, True, False], "scaling": [0.5, 0.25, 1.0]}
    )
    assert dataset_problems(metadata, ["a", "b"]) == []
    assert dataset_problems(metadata, ["a", "b", "c"]) == ["1 built classes missing from metadata.csv: c"]
    shared = metadata.assign(idx=["s-1", "s-2", "s-2"])
    assert dataset_problems(shared, ["a", "b"]) == ["1 source images in two or more classes: s-2"]
    assert upsampling_figures(metadata) == {"crop_share": round(2 / 3, 4), "scaling_histogram": {"1": 1, "0.5": 1, "0.25": 1}}


@pytest.mark.parametrize("step", [256, 257])
def test_a_gray_ramp_palette_tiff_reproduces_its_indices_exactly(tmp_path, step):
    """A palette TIFF whose colour map is a gray ramp (level i stored as i << 8, as ImageJ and
    libtiff's tools write it, or as i * 257) is its indices: no two neighbouring levels merge."""
    indices = np.arange(256, dtype=np.uint8).reshape(16, 16)
    ramp = np.arange(256, dtype=np.uint16) * step
    path = tmp_path / "ramp.tif"
    tifffile.imwrite(path, indices, photometric="palette", colormap=np.stack([ramp, ramp, ramp]))
    (image,) = read_channels(path)
    assert image.dtype == np.uint8 and np.array_equal(image, indices)


def test_a_garbage_tiff_is_dropped_with_the_decoders_complaint(tmp_path):
    """A file with a TIFF header and garbage after it: tifffile finds no page and says why (an
    invalid offset); the reason quotes that, not an IndexError from an empty page list."""
    path = tmp_path / "garbage.tif"
    path.write_bytes(b"II*\x00" + bytes(range(256)) * 8)
    with pytest.raises(ImageReadError) as caught:
        read_channels(path)
    assert "IndexError" not in caught.value.reason
    assert "invalid offset" in caught.value.reason and "garbage.tif" in str(caught.value)


POOL_KILLED = """
import os, sys, pandas as pd
from pathlib import Path
from cytoimagenet_assets.images import build_class
original = build_class.process_image
def slow(task):
    import time
    if task.ordinal == 5:
        print(f"worker {os.getpid()}", flush=True)
        time.sleep(60)
    return original(task)
build_class.process_image = slow
rows = pd.read_pickle(sys.argv[1])
build_class.build_class("k", "x", "compound", rows, {"s": Path(sys.argv[2])}, Path(sys.argv[3]), target=20, threshold=5, seed=0, workers=2)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux-only")
def test_the_class_image_pool_workers_die_with_their_run(tmp_path):
    """A class run killed by the OS (SIGKILL, as the OOM killer sends) takes its pool workers with it:
    none is left orphaned, still holding its memory."""
    raw = tmp_path / "raw"
    raw.mkdir()
    _class_rows(raw, 10).to_pickle(tmp_path / "rows.pkl")
    child = subprocess.Popen(
        [sys.executable, "-c", POOL_KILLED, str(tmp_path / "rows.pkl"), str(raw), str(tmp_path / "out" / "k")],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = child.stdout.readline().split()
    assert line[0] == "worker", line
    worker = int(line[1])
    assert _alive(worker)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    import time

    deadline = time.monotonic() + 10
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = _alive(worker)
    if alive:
        os.kill(worker, signal.SIGKILL)  # do not leave the orphan behind this test
    assert not alive, "the pool worker outlived its killed run"


def test_deltavision_files_give_one_channel_per_wavelength_projected_over_z(tmp_path):
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 4000, (2, 3, 40, 50), dtype=np.uint16)  # wavelengths, sections, y, x
    mrc.imsave(str(tmp_path / "cell_SIR_PRJ.dv"), stack)
    channels = read_channels(tmp_path / "cell_SIR_PRJ.dv")
    assert [c.dtype for c in channels] == [np.uint16, np.uint16]
    assert all(np.array_equal(c, stack[w].max(axis=0)) for w, c in enumerate(channels))
    (tmp_path / "broken.dv").write_bytes(b"\0" * 2000)
    with pytest.raises(ImageReadError, match="broken.dv"):
        read_channels(tmp_path / "broken.dv")


def _built_classes(home: DataHome, sizes: dict[str, int], settings: LabelSettings) -> None:
    """A class table and built class folders of these sizes (metadata only: publishing reads no PNG)."""
    write_parquet(pd.DataFrame({"class_key": list(sizes)}), home.classes_table())
    write_parquet(pd.DataFrame({"idx": ["x"], "class_key": ["a"]}), home.labels_table(), metadata={"settings": settings.record()})
    for key, n in sizes.items():
        rows = pd.DataFrame({c: "v" for c in RELEASE_COLUMNS}, index=range(n))
        rows = rows.assign(path=key, idx=[f"{key}-{i}" for i in range(n)], filename=[f"{key}-{i}.png" for i in range(n)])
        write_csv(rows.assign(crop=True, scaling=0.5, low_contrast=[i % 5 == 0 for i in range(n)]), home.class_metadata(key))


def test_classes_below_the_release_floor_are_built_but_left_out_of_the_dataset(tmp_path, monkeypatch):
    monkeypatch.delenv("CYTOIMAGENET_DB_URL", raising=False)
    home = DataHome(tmp_path)
    settings = LabelSettings(threshold=4, target=10, cap=20)
    assert settings.floor == 5  # unset: half the target, the original's 500 of 1,000
    _built_classes(home, {"a": 10, "b": 4, "c": 5, "d": 3}, settings)
    dataset = publish_dataset(home, "test")
    assert sorted(dataset.metadata["path"].unique()) == ["a", "c"]
    assert sorted(pd.read_csv(home.dataset_metadata())["path"].unique()) == ["a", "c"]  # what shards and training read
    assert dataset.left_out.to_dict() == {"b": 4, "d": 3} and dataset.problems == []
    assert "## Classes below the release floor (5 images)" in dataset.card and "| b | 4 |" in dataset.card
    assert dataset.report(home)["release_floor"] == 5
    assert "- **Catalog**: `test`" in dataset.card and "- **Data fingerprint**: `" in dataset.card
    assert "Date" not in dataset.card  # a rerun gives the same card
    assert "15 crops in the dataset" in dataset.card and "3 are in this dataset, kept" in dataset.card  # a: 2, c: 1
    assert "low_contrast" not in pd.read_csv(home.dataset_metadata()).columns  # the release's columns are the original's
    _built_classes(home, {"a": 10, "b": 4}, LabelSettings(threshold=4, target=10, cap=20, release_floor=0))
    assert sorted(publish_dataset(home, "test").metadata["path"].unique()) == ["a", "b"]  # floor 0: every built class
    with pytest.raises(ValueError, match="release_floor <= target"):
        LabelSettings(threshold=4, target=10, cap=20, release_floor=11)


def test_preserved_channels_write_each_outputs_channels_named_and_leave_the_merged_class_unchanged(tmp_path):
    """channels: preserved writes, beside each merged PNG, one PNG per channel: that channel normalized on
    the same window (0.1/99.9 percentiles, as the merged image's channels), named as the row names it; the
    merged PNGs and metadata.csv stay byte for byte those of channels: merged."""
    raw = tmp_path / "raw"
    raw.mkdir()
    rows = _class_rows(raw, 6)
    merged = build_class("k", "x", "compound", rows, {"s": raw}, tmp_path / "merged" / "k", target=12, threshold=2, seed=0)
    preserved = build_class(
        "k", "x", "compound", rows, {"s": raw}, tmp_path / "preserved" / "k", target=12, threshold=2, seed=0, channels="preserved"
    )
    before, after = tmp_path / "merged" / "k", tmp_path / "preserved" / "k"
    assert not (before / "channels").exists()
    assert sorted(p.name for p in before.iterdir()) == sorted(p.name for p in after.iterdir() if p.name != "channels")
    assert all((before / p.name).read_bytes() == (after / p.name).read_bytes() for p in before.iterdir())
    assert preserved.metadata.equals(merged.metadata)
    index = pd.read_csv(after / "channels" / "index.csv")
    assert index.groupby("filename")["name"].agg(list).to_dict() == {f: ["nucleus", "actin"] for f in merged.metadata["filename"]}
    assert sorted(index["file"]) == sorted(p.name for p in (after / "channels").glob("*.png"))
    crop = merged.metadata[merged.metadata["crop"]].iloc[0]
    source = rows.set_index("idx").loc[crop["idx"], "channel_paths"]
    for j, file in enumerate(index.loc[index["filename"] == crop["filename"], "file"]):
        window = tifffile.imread(raw / source[j])[crop["y_min"] : crop["y_max"], crop["x_min"] : crop["x_max"]]
        with Image.open(after / "channels" / file) as png:
            assert np.array_equal(np.asarray(png), to_uint8(normalize(window)))


def test_channel_names_follow_the_files_a_row_names():
    assert channel_names(("nucleus", "actin"), [1, 1]) == ["nucleus", "actin"]
    assert channel_names(("nucleus|er|actin", "brightfield"), [3, 1]) == ["nucleus", "er", "actin", "brightfield"]
    assert channel_names(("stain",), [2]) == ["stain_0", "stain_1"]


def test_a_multi_channel_source_gives_preserved_outputs_whose_channels_are_the_catalogs(demo_raw, demo_catalog, tmp_path):
    """The demo's RxRx1 (six channels, named in the catalog): each output of a class built with channels: preserved
    has one file per catalog channel, named as the catalog names them, in its order."""
    from cytoimagenet_assets.sources import parse_source

    source = demo_catalog.source("demo_rxrx1")
    rows = parse_source(source, demo_raw / "demo_rxrx1").table.head(4)
    out = tmp_path / "k"
    built = build_class(
        "k", "x", "sirna", rows, {"demo_rxrx1": demo_raw / "demo_rxrx1"}, out, target=4, threshold=1, seed=0, channels="preserved"
    )
    index = pd.read_csv(out / "channels" / "index.csv")
    catalog_names = [c.name for c in source.channels]
    assert len(catalog_names) == 6
    assert index.groupby("filename")["name"].agg(list).to_dict() == {f: catalog_names for f in built.metadata["filename"]}
    assert all((out / "channels" / f).is_file() for f in index["file"])


def test_the_dataset_card_lists_the_channels_kept_apart_by_stain(tmp_path, monkeypatch):
    monkeypatch.delenv("CYTOIMAGENET_DB_URL", raising=False)
    home = DataHome(tmp_path)
    settings = LabelSettings(threshold=2, target=4, cap=8, channels="preserved")
    _built_classes(home, {"a": 4, "b": 4}, settings)
    for key in ("a", "b"):
        names = ["dapi", "actin"] if key == "a" else ["nucleus"]
        listed = [
            {"filename": f"{key}-{i}.png", "channel": j, "name": n, "file": f"{key}-{i}.c{j}.png"}
            for i in range(4)
            for j, n in enumerate(names)
        ]
        write_csv(pd.DataFrame(listed), home.class_dir(key) / "channels" / "index.csv")
    card = publish_dataset(home, "test").card
    assert "## Channels" in card and "12 channels are also kept apart" in card
    assert "| nucleus | 8 |" in card and "| actin | 4 |" in card  # dapi is nucleus in the shared vocabulary
    _built_classes(home, {"a": 4, "b": 4}, LabelSettings(threshold=2, target=4, cap=8))
    assert "## Channels" not in publish_dataset(home, "test").card
