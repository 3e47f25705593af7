"""The whole transfer evaluation: backbones × benchmarks × extraction methods → a report.

``run_evaluation`` is what the ``evaluation_report`` asset and ``python -m
cytoimagenet_assets.evaluation run`` both call: it loads the backbones it can (saying why for the
others), reads each benchmark folder (skipping, with what to download, those that are absent),
extracts features once per sample for every method and backbone (with a progress bar), scores
each backbone and the ImageNet ⊕ CytoImageNet fusion, and renders the report: headed by what it is
(catalog, model run, the model's data fingerprint, date), with a banner where the figures only show
that the pipeline runs, and chance levels beside every accuracy.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from cytoimagenet_assets.catalog.settings import EvaluationSettings
from cytoimagenet_assets.devices import pick_device
from cytoimagenet_assets.evaluation.benchmarks import (
    DEFAULT_VARIANTS,
    KINDS,
    Benchmark,
    BenchmarkMissing,
    benchmark_options,
    load_benchmark,
)
from cytoimagenet_assets.evaluation.protocols import BBBC021Variant
from cytoimagenet_assets.evaluation.report import PUBLISHED_LABEL, comparison_table, pipeline_check_reasons, umap_png
from cytoimagenet_assets.markdown import (
    Figure,
    Markdown,
    header_fields,
    markdown_table,
    pipeline_check_banner,
    pipeline_check_note,
    report_header,
)
from cytoimagenet_assets.model.inference import (
    BackboneUnavailable,
    FeatureExtractor,
    extract_all,
    imagenet_backbone,
    load_model,
    random_backbone,
)
from cytoimagenet_assets.model.report import trained_on
from cytoimagenet_assets.storage import DataHome, write_bytes, write_csv, write_text

COLUMNS = ["benchmark", "variant", "aggregation", "backbone", "method", "accuracy", "low", "high", "n", "chance", "majority", "interval"]


@dataclass
class BenchmarkInput:
    kind: str  # bbbc021, coos7, cyclops
    folder: Path
    options: dict | None = None
    how_to_get: str = ""  # said when the folder lacks the files


@dataclass
class Evaluation:
    results: pd.DataFrame
    unavailable: dict[str, str] = field(default_factory=dict)  # backbone → why
    skipped: dict[str, str] = field(default_factory=dict)  # benchmark → why, and what to download
    notes: list[str] = field(default_factory=list)
    figures: dict[str, bytes] = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    catalog: str | None = None  # whose benchmark sources were scored; None for folders given by hand
    model_run: str | None = None  # the CytoImageNet model's run folder (or file), None without one
    fingerprint: str | None = None  # of the data that model was trained on, as its card records
    date: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    @property
    def comparison(self) -> pd.DataFrame:
        return comparison_table(self.results)

    @property
    def header(self) -> dict[str, str]:
        return header_fields(self.catalog, self.model_run, self.fingerprint, self.date)

    @property
    def caveats(self) -> list[str]:
        return pipeline_check_reasons(self.catalog, self.results)

    def preamble(self) -> list[str]:
        """Title, header and (where the figures mean nothing) the banner: what the report, the UI and the CLI open with."""
        lines = ["# CytoImageNet transfer evaluation", "", *report_header(self.catalog, self.model_run, self.fingerprint, self.date)]
        return lines + pipeline_check_banner(self.caveats)

    def report(self, out: Path) -> dict:
        return {
            **self.header,
            "banner": pipeline_check_note(self.caveats) or "none",
            "report": Markdown(self.markdown()),
            "results": len(self.results),
            "unavailable_backbones": self.unavailable,
            "skipped_benchmarks": self.skipped,
            "path": out,
            **{name: Figure(png, name) for name, png in self.figures.items()},
        }

    def markdown(self) -> str:
        comparison = self.comparison
        parts = [
            *self.preamble(),
            "## Accuracy (%) [95% interval] beside chance and the published figures",
            "",
            "Each cell is the best of the extraction methods evaluated, **chosen on the test data itself** (so it is "
            "optimistic); every method is listed under *Every method*. The chance columns are what guessing scores on the "
            "items scored here: 1/classes, and always answering the commonest class. BBBC021 rows are raw (the original's "
            f"protocol) and TVN (typical variation normalization on DMSO) side by side. The columns *{PUBLISHED_LABEL}* "
            "are the paper's figures for the raw protocol — its model on the real benchmarks, not this run's.",
            "",
            markdown_table(comparison, max_rows=len(comparison)),
            "",
        ]
        if self.notes:
            parts += ["## Protocols", ""] + [f"- {n}" for n in self.notes] + [""]
        if len(self.results):
            per_method = self.results.assign(
                accuracy=(100 * self.results["accuracy"]).round(2),
                low=(100 * self.results["low"]).round(1),
                high=(100 * self.results["high"]).round(1),
                chance=(100 * self.results["chance"]).round(1),
                majority=(100 * self.results["majority"]).round(1),
            )
            parts += ["## Every method", "", markdown_table(per_method, max_rows=len(per_method)), ""]
        for title, entries in (("Backbones unavailable", self.unavailable), ("Benchmarks skipped", self.skipped)):
            if entries:
                parts += [f"## {title}", ""] + [f"- **{k}**: {v}" for k, v in entries.items()] + [""]
        return "\n".join(parts)

    def to_json(self) -> str:
        return json.dumps(
            {
                **self.header,
                "pipeline_check_only": self.caveats,
                "results": self.results.replace({np.nan: None}).to_dict("records"),
                "unavailable_backbones": self.unavailable,
                "skipped_benchmarks": self.skipped,
                "notes": self.notes,
                "settings": self.settings,
            },
            indent=1,
        )

    def write(self, out: Path) -> Path:
        """evaluation_report.{md,json,csv} and the UMAP PNGs under ``out``, each written atomically."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        for name, content in {"evaluation_report.md": self.markdown(), "evaluation_report.json": self.to_json()}.items():
            write_text(out / name, content)
        write_csv(self.results, out / "evaluation_report.csv")
        for name, png in self.figures.items():
            write_bytes(out / f"{name}.png", png)
        return out


def device_for(settings: EvaluationSettings) -> torch.device:
    return pick_device(settings.device)


def load_backbones(
    settings: EvaluationSettings, model: Path | None, device: torch.device
) -> tuple[dict[str, FeatureExtractor], dict[str, str]]:
    """The wanted backbones as feature extractors, and why each unavailable one is missing."""
    extractors, unavailable = {}, {}
    wanted = set(settings.backbones) | ({"imagenet", "cytoimagenet"} if "fusion" in settings.backbones else set())
    if "random" in wanted:
        extractors["random"] = FeatureExtractor(random_backbone(settings.seed), device, settings.batch_size)
    if "imagenet" in wanted:
        try:
            extractors["imagenet"] = FeatureExtractor(imagenet_backbone(settings.imagenet_weights), device, settings.batch_size)
        except BackboneUnavailable as exc:
            unavailable["imagenet"] = str(exc)
    if "cytoimagenet" in wanted:
        if model is None:
            unavailable["cytoimagenet"] = "no CytoImageNet model given (--model, or materialize pretrained_model)"
        elif not Path(model).is_file():
            unavailable["cytoimagenet"] = f"model file {model} not found"
        else:
            extractors["cytoimagenet"] = FeatureExtractor(load_model(Path(model)).model, device, settings.batch_size)
    if "fusion" in settings.backbones and not {"imagenet", "cytoimagenet"} <= set(extractors):
        unavailable["fusion"] = "needs both the ImageNet and the CytoImageNet backbone"
    return extractors, unavailable


def _progress_bar(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="sample", disable=not enabled, dynamic_ncols=True)


def score_benchmark(
    bench: Benchmark, extractors: dict[str, FeatureExtractor], settings: EvaluationSettings, progress: bool = True
) -> tuple[list[dict], dict[str, bytes]]:
    """Result rows of every backbone (and the fusion) × method on one benchmark, and its UMAPs."""
    rows, figures = [], {}
    if not extractors:
        return rows, figures
    features: dict[str, dict[str, dict[str, np.ndarray]]] = {b: {m: {} for m in settings.methods} for b in extractors}
    for split, samples in bench.samples.items():
        with _progress_bar(len(samples), f"{bench.name} {split}: features", progress) as bar:
            by_backbone = extract_all(
                extractors, samples, settings.methods, chunk=settings.batch_size, progress=bar.update, raw_scaling=settings.raw_scaling
            )
        for backbone, by_method in by_backbone.items():
            for method, array in by_method.items():
                features[backbone][method][split] = array
    combos = {b: [b] for b in extractors if b in settings.backbones}
    if "fusion" in settings.backbones and {"imagenet", "cytoimagenet"} <= set(extractors):
        combos["fusion"] = ["imagenet", "cytoimagenet"]
    for backbone, members in combos.items():
        for method in settings.methods:
            for row in bench.score([features[m][method] for m in members], f"{backbone}, {method}"):
                rows.append({**row, "backbone": backbone, "method": method})
        if settings.umap and "concat_normalized" in settings.methods and len(members) == 1:
            figures[f"umap_{bench.kind}_{backbone}"] = umap_png(
                features[backbone]["concat_normalized"][bench.umap_split],
                bench.colours,
                f"{bench.name}, {backbone} features",
                settings.seed,
            )
    return rows, figures


def bbbc021_variants(settings: EvaluationSettings) -> list[BBBC021Variant]:
    """The BBBC021 profiles the settings ask for: each aggregation, raw and (with ``tvn``) whitened."""
    out = [BBBC021Variant(aggregate=a) for a in settings.aggregations]
    if settings.tvn:
        out += [
            BBBC021Variant(tvn=True, aggregate=a, tvn_components=settings.tvn_components, tvn_variance=settings.tvn_variance)
            for a in settings.aggregations
        ]
    return out or list(DEFAULT_VARIANTS)


def run_evaluation(
    benchmarks: Sequence[BenchmarkInput],
    model: Path | None,
    settings: EvaluationSettings = EvaluationSettings(),
    progress: bool = True,
    log: Callable[[str], None] = lambda _: None,
    catalog: str | None = None,
) -> Evaluation:
    """Evaluate the backbones on every benchmark that is present (the benchmarks of ``catalog``, when
    given, for the report's header); see the module docstring."""
    device = device_for(settings)
    extractors, unavailable = load_backbones(settings, model, device)
    for name, why in unavailable.items():
        log(f"backbone {name} unavailable: {why}")
    rows, figures, notes, skipped = [], {}, [], {}
    for given in benchmarks:
        name = KINDS[given.kind].name if given.kind in KINDS else given.kind
        try:
            bench = load_benchmark(given.kind, Path(given.folder), given.options, bbbc021_variants(settings), settings.seed)
        except BenchmarkMissing as exc:
            skipped[name] = f"{exc}." + (f" To provide it: {given.how_to_get}" if given.how_to_get else "")
            log(f"benchmark {name} skipped: {skipped[name]}")
            continue
        log(f"{name}: {bench.size} samples from {bench.folder}, backbones {', '.join(extractors) or 'none'} on {device}")
        bench_rows, bench_figures = score_benchmark(bench, extractors, settings, progress)
        rows += bench_rows
        figures.update(bench_figures)
        notes += bench.notes
    results = pd.DataFrame(rows, columns=COLUMNS)
    settings_record = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(settings).items()}
    run, fingerprint = trained_on(model)
    return Evaluation(
        results,
        unavailable,
        skipped,
        notes,
        figures,
        {**settings_record, "model": str(model) if model else None},
        catalog,
        run,
        fingerprint,
    )


def evaluate_catalog(
    home: DataHome,
    catalog_name: str,
    benchmarks: dict,
    model: Path | None,
    settings: EvaluationSettings,
    log: Callable[[str], None] = print,
) -> tuple[Evaluation, Path]:
    """Evaluate ``model`` on the catalog's benchmark sources (their raw folders); benchmarks the catalog
    lacks are reported as skipped. The report is written to ``reports/evaluation/``."""
    inputs = [
        BenchmarkInput(
            kind, home.raw_dir(s.dir_name), benchmark_options(s, kind), f"{s.download.instructions()}, into {home.raw_dir(s.dir_name)}"
        )
        for kind, s in benchmarks.items()
    ]
    evaluation = run_evaluation(inputs, model, settings, progress=False, log=log, catalog=catalog_name)
    absent = {
        kind.name: f"the catalog {catalog_name!r} lists no {kind.name} evaluation source"
        for k, kind in KINDS.items()
        if k not in benchmarks
    }
    evaluation.skipped = {**absent, **evaluation.skipped}
    return evaluation, evaluation.write(home.report_dir("evaluation"))
