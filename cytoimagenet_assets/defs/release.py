"""The model's release assets: ``model_package`` (TorchScript + bioimage.io package of the latest
``pretrained_model``) and ``embeddings`` (features of the catalog's ``embed:`` folders). They resolve
inputs and describe results; ``cytoimagenet_assets.model_release`` and ``.embed`` do the work."""

from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from cytoimagenet_assets.catalog import Catalog, EmbedTarget
from cytoimagenet_assets.defs.evaluation import _latest_model
from cytoimagenet_assets.defs.metadata import png_markdown
from cytoimagenet_assets.defs.model import MODEL_KEY
from cytoimagenet_assets.defs.resources import DataHomeResource
from cytoimagenet_assets.defs.sources import raw_key
from cytoimagenet_assets.embed import EmbedError, embed, feature_matrix, inputs_from
from cytoimagenet_assets.imaging.readers import ImageReadError, read_channels
from cytoimagenet_assets.markdown import markdown_table
from cytoimagenet_assets.model_release.package import FILES, PackageError, build_package
from cytoimagenet_assets.storage import DataHome

GROUP = "model"
PACKAGE_KEY = dg.AssetKey("model_package")
EMBEDDINGS_KEY = dg.AssetKey("embeddings")


def _model_file(context) -> Path:
    model = _latest_model(context)
    if model is None or not model.is_file():
        raise dg.Failure(description=f"no trained model ({model or 'pretrained_model never materialized'}): materialize pretrained_model first")
    return model


def _test_image(home: DataHome, size: int) -> np.ndarray | None:
    """The dataset's first image at ``size`` (rounded to a multiple of 32), as the package's test input."""
    from PIL import Image

    metadata = home.dataset_dir() / "metadata.csv"
    if not metadata.is_file():
        return None
    first = pd.read_csv(metadata, nrows=1)
    if first.empty:
        return None
    try:
        image = read_channels(home.dataset_dir() / first["path"].iloc[0] / first["filename"].iloc[0])[0]
    except (ImageReadError, OSError, KeyError):
        return None
    side = max(32, round(size / 32) * 32)
    return np.asarray(Image.fromarray(image).resize((side, side), Image.Resampling.BILINEAR), np.float32)


def model_package_asset(catalog: Catalog) -> dg.AssetsDefinition:
    input_size = catalog.training.input_size

    @dg.asset(key=PACKAGE_KEY, deps=[MODEL_KEY], group_name=GROUP, kinds={"pytorch", "yaml"},
              automation_condition=dg.AutomationCondition.eager(),
              description="The latest pretrained_model as TorchScript and a bioimage.io model package (spec 0.5 rdf.yaml with "
                          "preprocessing, test tensors, both weight formats, classes, training data, citation) under "
                          "release/model/, folder and zip, validated with bioimageio.spec.")
    def model_package(context: dg.AssetExecutionContext, data: DataHomeResource) -> dg.MaterializeResult:
        home = data.home()
        model = _model_file(context)
        card = home.dataset_dir() / "README.md"
        try:
            result = build_package(model.parent, home.root / "release" / "model", _test_image(home, input_size),
                                   card if card.is_file() else None)
        except PackageError as exc:
            raise dg.Failure(description=str(exc)) from exc
        context.log.info(result.validation)
        files = pd.DataFrame({"file": list(result.files), "bytes": list(result.files.values())})
        return dg.MaterializeResult(metadata={
            "validation_status": result.status,
            "validation": dg.MetadataValue.md(result.validation),
            "files": dg.MetadataValue.md(markdown_table(files, max_rows=50)),
            "package_bytes": sum(v for k, v in result.files.items() if not k.endswith(".zip")),
            "zip_bytes": result.files[result.zip.name],
            "classes": result.classes,
            "model": dg.MetadataValue.path(str(model)),
            "path": dg.MetadataValue.path(str(result.folder)),
            "zip": dg.MetadataValue.path(str(result.zip)),
            "cover": png_markdown((result.folder / FILES["cover"]).read_bytes(), "test input, raw and normalized"),
        })

    return model_package


def target_input(home: DataHome, target: EmbedTarget) -> Path:
    if target.source is not None:
        return home.raw_dir(target.source)
    path = Path(target.path).expanduser()
    return path if path.is_absolute() else home.root / path


def embeddings_asset(catalog: Catalog) -> dg.AssetsDefinition:
    sources = {t.source for t in catalog.embed if t.source is not None}
    deps = [MODEL_KEY] + [raw_key(catalog.source(s)) for s in sorted(sources)]

    @dg.asset(key=EMBEDDINGS_KEY, deps=deps, group_name=GROUP, kinds={"pytorch", "parquet"},
              automation_condition=dg.AutomationCondition.eager(),
              description="1280-d CytoImageNet features of the folders (or channel CSVs) in the catalog's `embed:` list, with the "
                          "latest model and the evaluation's extraction, into embeddings/<name>/features.parquet; rows already "
                          "computed with the same model are kept, so a grown folder costs only its new images.")
    def embeddings(context: dg.AssetExecutionContext, data: DataHomeResource) -> dg.MaterializeResult:
        home = data.home()
        if not catalog.embed:
            return dg.MaterializeResult(metadata={"note": f"the catalog {catalog.name!r} lists no embed targets (embed:)"})
        model = _model_file(context)
        metadata, summary = {}, []
        for target in catalog.embed:
            source = target_input(home, target)
            try:
                inputs = inputs_from(source, target.channels, target.glob)
                result = embed(inputs, model, target.method, home.root / "embeddings" / target.name / "features.parquet",
                               progress=False, log=context.log.info)
            except (EmbedError, FileNotFoundError) as exc:
                raise dg.Failure(description=f"embed target {target.name!r}: {exc}") from exc
            for image, reason in result.failed:
                context.log.warning(f"{target.name}: unreadable {image}: {reason}")
            table = pd.read_parquet(result.out)
            preview = table[["image", "channel_names", "method"]].head(10).copy()
            preview["channel_names"] = preview["channel_names"].map(lambda names: ", ".join(names))
            if len(table) and len(result.dims) == 1:
                matrix = feature_matrix(table)
                for i in range(4):
                    preview[f"f{i}"] = matrix[: len(preview), i].round(4)
            summary.append({"target": target.name, "input": str(source), "rows": result.rows, "dims": ", ".join(map(str, result.dims)),
                            "computed": result.computed, "reused": result.reused, "unreadable": len(result.failed)})
            metadata[f"{target.name}_preview"] = dg.MetadataValue.md(markdown_table(preview))
            metadata[f"{target.name}_path"] = dg.MetadataValue.path(str(result.out))
            if result.failed:
                metadata[f"{target.name}_unreadable"] = dg.MetadataValue.json([f"{i}: {r}" for i, r in result.failed[:20]])
        return dg.MaterializeResult(metadata={
            "rows": sum(s["rows"] for s in summary),
            "dims": dg.MetadataValue.json(sorted({int(d) for s in summary for d in s["dims"].split(", ") if d})),
            "targets": dg.MetadataValue.md(markdown_table(pd.DataFrame(summary))),
            "model": dg.MetadataValue.path(str(model)),
            **metadata,
        })

    return embeddings
