"""Benchmark folders → samples to extract features from, and a scorer for those features.

A benchmark is one of ``bbbc021``, ``coos7``, ``cyclops``, read from a folder laid out as the real
distribution (which is also how the demo writes it). Options default to the real layouts; a
catalog entry's ``parser_options`` override them (``benchmark_options``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from cytoimagenet_assets.errors import StepFailed
from cytoimagenet_assets.evaluation import protocols
from cytoimagenet_assets.evaluation.profiles import fit_scaler
from cytoimagenet_assets.images.readers import read_channels

# The variants of BBBC021 reported by default: the original's (raw, mean) and TVN beside it.
DEFAULT_VARIANTS = (protocols.BBBC021Variant(), protocols.BBBC021Variant(tvn=True))


class BenchmarkMissing(StepFailed, FileNotFoundError):
    """The benchmark's files are not in its folder: skip it and say what to download."""


@dataclass(frozen=True)
class BenchmarkKind:
    """One kind of benchmark: its name in reports, its reader's options (defaults: the real
    distribution's layout) and its reader. A new benchmark is a reader and one entry of ``KINDS``."""

    name: str
    options: dict[str, Any]
    read: Callable[..., Benchmark]  # (folder, options, variants, seed) -> Benchmark


def benchmark_kind(source) -> str | None:
    """Which benchmark a catalog source is: ``parser_options.benchmark``, else recognised by its
    role (an evaluation-only CellProfiler source with an MOA table is BBBC021-format; the real
    catalog's ``coos7`` / ``cyclops`` entries by name); None for a pretraining source."""
    explicit = source.parser_options.get("benchmark")
    if explicit is not None:
        if explicit not in KINDS:
            raise ValueError(f"source {source.dir_name}: parser_options.benchmark {explicit!r} is not one of {', '.join(KINDS)}")
        return explicit
    if not source.evaluation_only:
        return None
    if source.parser == "cellprofiler" and source.parser_options.get("annotations"):
        return "bbbc021"
    return source.dir_name if source.dir_name in ("coos7", "cyclops") else None


def benchmark_options(source, kind: str) -> dict[str, Any]:
    """The reader options of a catalog source (its parser_options, translated for BBBC021)."""
    options = dict(KINDS[kind].options)
    given = {k: v for k, v in source.parser_options.items() if k != "benchmark"}
    if kind == "bbbc021":
        options["image_table"] = given.get("image_table", options["image_table"])
        if given.get("annotations"):
            options["moa_table"] = given["annotations"][0]["table"]
        return options
    return {**options, **given}


class FieldSamples(Sequence):
    """BBBC021 fields read lazily: sample i = the channel images of row i's files."""

    def __init__(self, folder: Path, paths: list[tuple[str, ...]]):
        self.folder, self.paths = Path(folder), paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> list[np.ndarray]:
        return [c for path in self.paths[i] for c in read_channels(self.folder / path)]


class ArraySamples(Sequence):
    """Samples of an in-memory array N × channels × H × W: sample i = its channel images."""

    def __init__(self, array: np.ndarray):
        self.array = array

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, i: int) -> list[np.ndarray]:
        return list(self.array[i])


@dataclass
class Benchmark:
    kind: str
    name: str
    folder: Path
    samples: dict[str, Sequence]  # split → samples
    colours: list[str]  # a label per sample of umap_split, for the UMAP figure
    umap_split: str
    scorer: Callable[[list[dict[str, np.ndarray]], str], list[dict]]
    notes: list[str] = field(default_factory=list)

    def score(self, parts: list[dict[str, np.ndarray]], features: str) -> list[dict]:
        """Result rows (benchmark, variant, aggregation, accuracy, low, high, n, chance, majority, interval) of one
        backbone's features, or of several fused (each standardized on its own, then concatenated); ``features``
        names them ("cytoimagenet, concat_normalized") in the notes a scorer adds."""
        return self.scorer(parts, features)

    @property
    def size(self) -> int:
        return sum(len(s) for s in self.samples.values())


def _row(benchmark: str, score: protocols.Score, variant: str = "raw", aggregation: str = "") -> dict:
    return {
        "benchmark": benchmark,
        "variant": variant,
        "aggregation": aggregation,
        "accuracy": score.accuracy,
        "low": score.low,
        "high": score.high,
        "n": score.n,
        "chance": score.chance,
        "majority": score.majority,
        "interval": score.interval,
    }


def _need(path: Path) -> Path:
    if not path.is_file():
        raise BenchmarkMissing(f"{path} not found")
    return path


def read_bbbc021(folder: Path, options: dict, variants: Sequence[protocols.BBBC021Variant], seed: int) -> Benchmark:
    image_csv, moa_csv = _need(folder / options["image_table"]), _need(folder / options["moa_table"])
    with_controls = any(v.tvn for v in variants)
    images = protocols.bbbc021_images(image_csv, moa_csv, controls=with_controls)
    columns = [f"path_{c}" for c in protocols.BBBC021_CHANNELS]
    paths = list(images[columns].itertuples(index=False, name=None))
    for row, files in zip(images["source_row"], paths):
        for path in files:
            if not (folder / path).is_file():
                raise FileNotFoundError(
                    f"{image_csv.name} data row {row}: image file {folder / path} not found "
                    f"({len(images)} fields are referenced; put the image folders beside the tables)"
                )
    treatments = protocols.bbbc021_treatments(images)
    eligible = protocols.nscb_eligible(treatments)
    notes = [
        f"BBBC021: {len(treatments)} treatments ({treatments['compound'].nunique()} compounds, {treatments['moa'].nunique()} MOAs) "
        f"in NSC; NSCB scores the {int(eligible.sum())} whose MOA occurs in more than one batch, leaving out "
        f"{', '.join(sorted(set(treatments.loc[~eligible, 'moa']))) or 'none'} (the standard convention). "
        "Features are standardized per image (scaler fit on every evaluated image, as the original) before "
        "treatment profiles are formed; intervals are bootstrap 95% over treatments."
    ]

    def score(parts: list[dict[str, np.ndarray]], features: str) -> list[dict]:
        rows = []
        for variant in variants:
            scores, details = protocols.bbbc021_scores(images, [p["all"] for p in parts], variant, seed)
            if details["tvn"]:
                tvn_note = f"BBBC021 TVN ({features}, {variant.aggregate}): {details['tvn']}."
                if tvn_note not in notes:
                    notes.append(tvn_note)
            rows += [_row(name, s, variant.name, variant.aggregate) for name, s in scores.items()]
        return rows

    colours = images["moa"].tolist()
    return Benchmark("bbbc021", "BBBC021", folder, {"all": FieldSamples(folder, paths)}, colours, "all", score, notes)


def read_coos7(folder: Path, options: dict, variants: Sequence[protocols.BBBC021Variant], seed: int) -> Benchmark:
    data, labels = {}, {}
    for split in protocols.COOS7_SPLITS:
        path = _need(folder / options["files"].format(split=split))
        data[split], labels[split] = protocols.read_coos7(path, options["data_key"], options["labels_key"])

    def score(parts: list[dict[str, np.ndarray]], features: str) -> list[dict]:
        # Each backbone standardized by its own train-fit scaler, then concatenated (fusion).
        standardized = [_standardize_on(p, "train") for p in parts]
        stacked = {split: np.hstack([p[split] for p in standardized]) for split in parts[0]}
        return [_row(f"COOS-7 {split}", s) for split, s in protocols.coos7(stacked, labels).items()]

    notes = [
        f"COOS-7: {len(labels['train'])} training cells, test sets of "
        f"{', '.join(str(len(labels[s])) for s in protocols.COOS7_SPLITS[1:])}; 11-NN on features standardized by the train "
        "split's scaler; Wilson 95% intervals."
    ]
    return Benchmark(
        "coos7", "COOS-7", folder, {s: ArraySamples(a) for s, a in data.items()}, _class_names(labels, options), "train", score, notes
    )


def _class_names(labels: dict[str, np.ndarray], options: dict) -> list[str]:
    """The training cells' class names for the UMAP legend: the catalog's ``class_names`` by label, or "class <n>"."""
    names = options["class_names"]
    if names is None:
        return [f"class {v}" for v in labels["train"]]
    present = sorted({int(v) for split in labels.values() for v in split})
    if present and (present[0] < 0 or present[-1] >= len(names)):
        raise protocols.BenchmarkFileError(f"COOS-7: labels {present} do not all name one of the {len(names)} class_names {names}")
    return [str(names[int(v)]) for v in labels["train"]]


def _standardize_on(by_split: dict[str, np.ndarray], fit_split: str) -> dict[str, np.ndarray]:
    scale = fit_scaler(by_split[fit_split])
    return {split: scale(x) for split, x in by_split.items()}


def read_cyclops(folder: Path, options: dict, variants: Sequence[protocols.BBBC021Variant], seed: int) -> Benchmark:
    paths = [_need(folder / f) for f in options["files"]]
    images, labels, classes = protocols.read_cyclops(paths, options["data_key"], options["labels_key"], options["names_key"])

    def score(parts: list[dict[str, np.ndarray]], features: str) -> list[dict]:
        stacked = np.hstack([_standardize_on(p, "all")["all"] for p in parts])
        return [_row("CyCLoPs", protocols.cyclops(stacked, labels))]

    notes = [
        f"CyCLoPs: {len(labels)} cells pooled from {len(paths)} files; {protocols.cyclops_class_note(classes)}; "
        "11-NN leave-one-out on standardized features; Wilson 95% intervals."
    ]
    return Benchmark("cyclops", "CyCLoPs", folder, {"all": ArraySamples(images)}, [classes[i] for i in labels], "all", score, notes)


def load_benchmark(
    kind: str, folder: Path, options: dict | None = None, variants: Sequence[protocols.BBBC021Variant] = DEFAULT_VARIANTS, seed: int = 0
) -> Benchmark:
    """Read a benchmark folder (``options`` over the kind's defaults); :class:`BenchmarkMissing` when its files are not there."""
    if kind not in KINDS:
        raise ValueError(f"unknown benchmark {kind!r}; known: {', '.join(KINDS)}")
    if not Path(folder).is_dir():
        raise BenchmarkMissing(f"{folder} does not exist")
    return KINDS[kind].read(Path(folder), {**KINDS[kind].options, **(options or {})}, variants, seed)


KINDS = {
    "bbbc021": BenchmarkKind("BBBC021", {"image_table": "BBBC021_v1_image.csv", "moa_table": "BBBC021_v1_moa.csv"}, read_bbbc021),
    # class_names: the names of labels 0, 1, … in the UMAP's legend; unset, "class <n>" (the real files' order is unconfirmed)
    "coos7": BenchmarkKind(
        "COOS-7", {"files": "COOS7_v1.1_{split}.hdf5", "data_key": "data", "labels_key": "labels", "class_names": None}, read_coos7
    ),
    "cyclops": BenchmarkKind(
        "CyCLoPs",
        {
            "files": ["datasets/Chong_train_set.hdf5", "datasets/Chong_valid_set.hdf5", "datasets/Chong_test_set.hdf5"],
            "data_key": "data1",
            "labels_key": "Index1",
            "names_key": "Index1_columns",
        },
        read_cyclops,
    ),
}


def catalog_benchmarks(sources) -> dict[str, object]:
    """The first catalog source of each benchmark kind (bbbc021, coos7, cyclops) among ``sources``."""
    found: dict = {}
    for source in sources:
        kind = benchmark_kind(source)
        if kind is not None and kind not in found:
            found[kind] = source
    return found
