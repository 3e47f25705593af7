import subprocess
import sys

import pandas as pd


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "cytoimagenet_assets.sources", *args], capture_output=True, text=True, timeout=300)


def test_cli_parses_a_metadata_download_alone(real, tmp_path):
    out = tmp_path / "bbbc021.parquet"
    run = _cli("bbbc021", str(real / "bbbc021"), "--out", str(out), "--catalog", "cytoimagenet", "--top", "3")
    assert run.returncode == 0, run.stderr
    assert "bbbc021: 13200 rows" in run.stdout
    assert "referenced files: 39600, missing: 39600" in run.stdout
    assert "phenotype: 12 labels: microtubule stabilizers (1428)" in run.stdout
    assert len(pd.read_parquet(out)) == 13200


def test_cli_reports_an_unknown_source_and_a_missing_folder(tmp_path):
    run = _cli("bbbc999", str(tmp_path), "--out", str(tmp_path / "x.parquet"), "--catalog", "cytoimagenet")
    assert run.returncode == 2 and "catalog 'cytoimagenet' has no source 'bbbc999'" in run.stderr
    run = _cli("kag_hpa", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.parquet"), "--catalog", "cytoimagenet")
    assert run.returncode == 2 and "kaggle competitions download -c human-protein-atlas-image-classification" in run.stderr
    assert not (tmp_path / "x.parquet").exists()


def test_labels_cli_writes_the_class_table(tmp_path):
    from cytoimagenet_assets_tests.test_labels import generated

    merged = tmp_path / "merged.parquet"
    table = generated()
    table["channel_paths"] = [[] if i < 100 else [f"f{i}.tif"] for i in range(len(table))]  # 100 metadata-only rows
    table.to_parquet(merged)
    out = tmp_path / "classes.parquet"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "cytoimagenet_assets.labels",
            str(merged),
            "--out",
            str(out),
            "--threshold",
            "30",
            "--target",
            "60",
            "--cap",
            "200",
            "--seed",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    classes = pd.read_parquet(out)
    assert list(classes.columns) == ["idx", "label", "category", "class_key"]
    n_classes = classes["class_key"].nunique()
    assert run.stdout.startswith(f"{n_classes} classes, {len(classes)} images from 6000 rows (100 metadata-only left out)")
    assert not set(classes["idx"]) & set(table["idx"][:100])
    bad = subprocess.run(
        [sys.executable, "-m", "cytoimagenet_assets.labels", str(merged), "--out", str(out), "--threshold", "900", "--target", "10"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and "threshold <= target <= cap" in bad.stderr
