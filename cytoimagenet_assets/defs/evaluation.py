"""Transfer evaluation: ``evaluation_report`` over BBBC021 (NSC/NSCB), COOS-7 and CyCLoPs."""

import json
from typing import Optional

import dagster as dg
import numpy as np
import pandas as pd
import torch

from cytoimagenet_assets.catalog import Catalog, Source
from cytoimagenet_assets.defs.images import DATASET_KEY
from cytoimagenet_assets.defs.metadata import png_markdown
from cytoimagenet_assets.defs.model import MODEL_KEY
from cytoimagenet_assets.defs.resources import DataHomeResource
from cytoimagenet_assets.defs.sources import raw_key
from cytoimagenet_assets.evaluation import protocols
from cytoimagenet_assets.evaluation.features import (
    METHODS,
    BackboneUnavailable,
    FeatureExtractor,
    cytoimagenet_backbone,
    extract,
    imagenet_backbone,
    random_backbone,
)
from cytoimagenet_assets.evaluation.report import BACKBONES, before_after_umap_png, comparison_table, umap_png
from cytoimagenet_assets.imaging.readers import read_channels
from cytoimagenet_assets.markdown import markdown_table
from cytoimagenet_assets.storage import atomic_path, write_bytes

GROUP = "evaluation"
REPORT_KEY = dg.AssetKey("evaluation_report")
UMAP_KEY = dg.AssetKey("upsampling_umap")


class EvaluationConfig(dg.Config):
    backbones: list[str] = list(BACKBONES)
    methods: list[str] = list(METHODS)
    imagenet_weights: Optional[str] = None  # a file; default: the torch cache
    batch_size: int = 64


def _moa_benchmark(catalog: Catalog) -> Optional[Source]:
    """The catalog's BBBC021-format evaluation set (an evaluation-only source with an MOA table)."""
    for source in catalog.sources:
        if source.evaluation_only and source.parser == "cellprofiler" and source.parser_options.get("annotations"):
            return source
    return None


def evaluation_report_asset(catalog: Catalog) -> dg.AssetsDefinition:
    moa = _moa_benchmark(catalog)
    coos7, cyclops = catalog.by_dir_name.get("coos7"), catalog.by_dir_name.get("cyclops")
    deps = [MODEL_KEY] + [raw_key(s) for s in (moa, coos7, cyclops) if s is not None]

    @dg.asset(key=REPORT_KEY, deps=deps, group_name=GROUP, kinds={"pytorch", "csv"},
              description="k-NN transfer accuracy of random, ImageNet, CytoImageNet and fused features on BBBC021 (NSC, NSCB), "
                          "COOS-7 and CyCLoPs, with 95% intervals, beside the published figures. Missing benchmarks are skipped, "
                          "with what to download.")
    def evaluation_report(context: dg.AssetExecutionContext, config: EvaluationConfig, data: DataHomeResource) -> dg.MaterializeResult:
        home = data.home()
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        extractors, unavailable = _backbones(context, config, device)
        benchmarks, skipped = {}, {}
        for name, source, loader in (("BBBC021", moa, _load_bbbc021), ("COOS-7", coos7, _load_coos7), ("CyCLoPs", cyclops, _load_cyclops)):
            if source is None:
                skipped[name] = f"the catalog {catalog.name!r} lists no {name} evaluation source"
                continue
            folder = home.raw_dir(source.dir_name)
            try:
                benchmarks[source.dir_name] = loader(source, folder)
            except FileNotFoundError as exc:
                skipped[name] = f"{exc}. To provide it: {source.download.instructions()}, into {folder}"
        rows, features_for_umap = [], {}
        for dir_name, bench in benchmarks.items():
            for method in config.methods:
                feats = {name: {split: extract(ex, samples, method) for split, samples in bench["samples"].items()} for name, ex in extractors.items()}
                if "fusion" in config.backbones and {"imagenet", "cytoimagenet"} <= set(feats):
                    feats["fusion"] = {s: np.hstack([feats["imagenet"][s], feats["cytoimagenet"][s]]) for s in feats["imagenet"]}
                for backbone, by_split in feats.items():
                    for benchmark, score in bench["score"](by_split).items():
                        rows.append({"benchmark": benchmark, "backbone": backbone, "method": method, "accuracy": score.accuracy,
                                     "low": score.low, "high": score.high, "n": score.n})
                    if method == "concat_normalized":
                        features_for_umap[(dir_name, backbone)] = (by_split, bench["colour"])
                context.log.info(f"{dir_name} {method}: done")
        results = pd.DataFrame(rows, columns=["benchmark", "backbone", "method", "accuracy", "low", "high", "n"])
        comparison = comparison_table(results)
        out = home.report_dir("evaluation")
        out.mkdir(parents=True, exist_ok=True)
        figures = {}
        for (dir_name, backbone), (by_split, colour) in features_for_umap.items():
            split = next(iter(by_split))
            figures[f"umap_{dir_name}_{backbone}"] = umap_png(by_split[split], colour, f"{dir_name}, {backbone} features")
        markdown = _markdown(comparison, results, unavailable, skipped)
        for name, content in {"evaluation_report.md": markdown, "evaluation_report.json": json.dumps(
                {"results": rows, "unavailable_backbones": unavailable, "skipped_benchmarks": skipped}, indent=1)}.items():
            with atomic_path(out / name) as stage:
                stage.write_text(content, encoding="utf-8")
        with atomic_path(out / "evaluation_report.csv") as stage:
            results.to_csv(stage, index=False)
        for name, png in figures.items():
            write_bytes(out / f"{name}.png", png)
        return dg.MaterializeResult(metadata={
            "report": dg.MetadataValue.md(markdown),
            "results": len(results),
            "unavailable_backbones": dg.MetadataValue.json(unavailable),
            "skipped_benchmarks": dg.MetadataValue.json(skipped),
            "path": dg.MetadataValue.path(str(out)),
            **{name: png_markdown(png, name) for name, png in figures.items()},
        })

    return evaluation_report


def _backbones(context, config: EvaluationConfig, device) -> tuple[dict, dict]:
    extractors, unavailable = {}, {}
    wanted = set(config.backbones) | ({"imagenet", "cytoimagenet"} if "fusion" in config.backbones else set())
    if "random" in wanted:
        extractors["random"] = FeatureExtractor(random_backbone(0), device, config.batch_size)
    if "imagenet" in wanted:
        try:
            extractors["imagenet"] = FeatureExtractor(imagenet_backbone(config.imagenet_weights), device, config.batch_size)
        except BackboneUnavailable as exc:
            unavailable["imagenet"] = str(exc)
            context.log.warning(str(exc))
    if "cytoimagenet" in wanted:
        event = context.instance.get_latest_materialization_event(MODEL_KEY)
        if event is None:
            unavailable["cytoimagenet"] = "pretrained_model has not been materialized"
        else:
            path = event.asset_materialization.metadata["path"].value
            extractors["cytoimagenet"] = FeatureExtractor(cytoimagenet_backbone(f"{path}/model.pt"), device, config.batch_size)
    if "fusion" in config.backbones and not {"imagenet", "cytoimagenet"} <= set(extractors):
        unavailable["fusion"] = "needs both the ImageNet and the CytoImageNet backbone"
    return extractors, unavailable


def _load_bbbc021(source: Source, folder) -> dict:
    options = source.parser_options
    image_csv, moa_csv = folder / options["image_table"], folder / options["annotations"][0]["table"]
    for path in (image_csv, moa_csv):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found")
    images = protocols.bbbc021_images(image_csv, moa_csv)
    samples = [[c for key in ("path_DAPI", "path_Tubulin", "path_Actin") for c in read_channels(folder / row[key])] for _, row in images.iterrows()]

    def score(by_split):
        treatments, profiles = protocols.treatment_profiles(images, by_split["all"])
        return {"BBBC021 NSC": protocols.nsc(treatments, profiles)[0], "BBBC021 NSCB": protocols.nsc(treatments, profiles, exclude_batch=True)[0]}

    return {"samples": {"all": samples}, "score": score, "colour": images["moa"].tolist()}


def _load_coos7(source: Source, folder) -> dict:
    options = source.parser_options
    data, labels = {}, {}
    for split in protocols.COOS7_SPLITS:
        path = folder / options["files"].format(split=split)
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found")
        data[split], labels[split] = protocols.read_coos7(path, options["data_key"], options["labels_key"])

    def score(by_split):
        return {f"COOS-7 {split}": s for split, s in protocols.coos7(by_split, labels).items()}

    return {"samples": {split: [list(x) for x in array] for split, array in data.items()}, "score": score,
            "colour": [str(v) for v in labels["train"]]}


def _load_cyclops(source: Source, folder) -> dict:
    options = source.parser_options
    paths = [folder / f for f in options["files"]]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found")
    images, labels, classes = protocols.read_cyclops(paths, options["data_key"], options["labels_key"], options["names_key"])
    return {"samples": {"all": [list(x) for x in images]}, "score": lambda by_split: {"CyCLoPs": protocols.cyclops(by_split["all"], labels)},
            "colour": [classes[i] for i in labels]}


def _markdown(comparison: pd.DataFrame, results: pd.DataFrame, unavailable: dict, skipped: dict) -> str:
    parts = ["## Accuracy (%), best extraction method per cell, [95% interval], beside the published figures", "",
             markdown_table(comparison, max_rows=len(comparison)), ""]
    if len(results):
        per_method = results.assign(accuracy=(100 * results["accuracy"]).round(2), low=(100 * results["low"]).round(1),
                                    high=(100 * results["high"]).round(1))
        parts += ["## Every method", "", markdown_table(per_method, max_rows=len(per_method)), ""]
    for title, entries in (("Backbones unavailable", unavailable), ("Benchmarks skipped", skipped)):
        if entries:
            parts += [f"## {title}", ""] + [f"- **{k}**: {v}" for k, v in entries.items()] + [""]
    return "\n".join(parts)


class UpsamplingUmapConfig(dg.Config):
    classes: int = 20
    images_per_class: int = 30
    seed: int = 0
    imagenet_weights: Optional[str] = None


@dg.asset(key=UMAP_KEY, deps=[DATASET_KEY, MODEL_KEY], group_name=GROUP, kinds={"umap"},
          description="UMAP of ImageNet features of random classes before upsampling (original images) and after "
                      "(originals and crops), as in the methods file's 'Upsampling Classes' figure. Without ImageNet "
                      "weights it uses the CytoImageNet backbone and says so.")
def upsampling_umap(context: dg.AssetExecutionContext, config: UpsamplingUmapConfig, data: DataHomeResource) -> dg.MaterializeResult:
    home = data.home()
    metadata = pd.read_csv(home.dataset_dir() / "metadata.csv")
    upsampled = sorted(metadata.loc[metadata["crop"], "path"].unique())
    rng = np.random.default_rng(config.seed)
    chosen = sorted(rng.choice(upsampled, size=min(config.classes, len(upsampled)), replace=False)) if upsampled else []
    if not chosen:
        return dg.MaterializeResult(metadata={"note": "no class needed upsampling: nothing to compare"})
    try:
        model, backbone, note = imagenet_backbone(config.imagenet_weights), "imagenet", ""
    except BackboneUnavailable as exc:
        event = context.instance.get_latest_materialization_event(MODEL_KEY)
        if event is None:
            raise dg.Failure(description=f"{exc}; and pretrained_model, the fallback backbone, has not been materialized") from exc
        model = cytoimagenet_backbone(f"{event.asset_materialization.metadata['path'].value}/model.pt")
        backbone, note = "cytoimagenet", f"ImageNet weights unavailable ({exc}); CytoImageNet features instead"
        context.log.warning(note)
    extractor = FeatureExtractor(model, torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    rows = metadata[metadata["path"].isin(chosen)].sample(frac=1.0, random_state=config.seed)
    rows = rows.groupby("path").head(config.images_per_class).sort_values(["path", "filename"])
    images = [read_channels(home.dataset_dir() / p / f)[0] for p, f in zip(rows["path"], rows["filename"])]
    features = extract(extractor, [[image] for image in images], "merge_normalized")
    png = before_after_umap_png(features, rows["path"].tolist(), rows["crop"].to_numpy(bool), f"{backbone} features", config.seed)
    out = home.report_dir("upsampling_umap")
    out.mkdir(parents=True, exist_ok=True)
    write_bytes(out / "upsampling_umap.png", png)
    return dg.MaterializeResult(metadata={
        "classes": len(chosen), "images": len(rows), "backbone": backbone, "note": note or "ImageNet features",
        "umap": png_markdown(png, "before and after upsampling"), "path": dg.MetadataValue.path(str(out / "upsampling_umap.png")),
    })
