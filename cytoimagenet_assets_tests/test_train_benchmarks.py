"""The training benchmarks run on the CPU, so they are ready the day a GPU is: ``device_check.py
--smoke`` (every part of the GPU check at tiny sizes) and ``bench_train.py --input-only``. Their
figures are not judged here (a CPU's say nothing of a GPU's), only that each part ran and reported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _results(script: str, *args: str) -> list[dict[str, str]]:
    """The RESULT lines of a benchmark run, as dicts (``name`` and each key=value)."""
    run = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = []
    for line in run.stdout.splitlines():
        if line.startswith("RESULT "):
            name, *pairs = line.split()[1:]
            results.append({"name": name, **dict(pair.split("=", 1) for pair in pairs)})
    return results


def test_the_device_check_smoke_run_goes_through_every_part():
    results = _results("device_check.py", "--smoke")
    train = [r for r in results if r["name"] == "device_check_train"]
    assert [(r["batch"], r["compile"]) for r in train] == [("4", "off"), ("4", "eager"), ("8", "off"), ("8", "eager")]
    assert all(float(r["images_per_s"]) > 0 and float(r["of_ceiling"]) > 0 and r["peak_gib"] == "na" for r in train)
    (resume,) = [r for r in results if r["name"] == "device_check_resume"]
    assert resume["killed_after_epoch"] == "1" and resume["resumed_after_epoch_1"] == "true"
    assert resume["history_epochs"] == "1,2" and resume["continuous"] == "true"
    (features,) = [r for r in results if r["name"] == "device_check_features"]
    assert features["dims"] == "1280" and features["images"] == "16" and float(features["images_per_s"]) > 0
    (embedded,) = [r for r in results if r["name"] == "device_check_embed"]
    assert embedded["images"] == "16" and embedded["failed"] == "0" and float(embedded["images_per_s"]) > 0
    assert results[-1]["name"] == "device_check" and results[-1]["ok"] == "true" and results[-1]["smoke"] == "true"


def test_the_input_benchmark_reports_both_inputs_per_core():
    (result,) = _results("bench_train.py", "--input-only", "--images", "64", "--size", "32", "--batch-size", "16", "--classes", "4")
    assert result["name"] == "bench_train_input" and result["images"] == "64"
    keys = ("memmap_per_core", "webdataset_per_core", "memmap_of_copy", "webdataset_of_decode", "webdataset_trainer_per_core")
    assert all(float(result[k]) > 0 for k in keys)
