"""Kaggle's datasets and competitions (cell cycle, HPA, leukemia): one zip each, at the API's path."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np

from cytoimagenet_assets.demo.formats import csv_bytes
from cytoimagenet_assets.demo.generators import HPA_COLORS, cell_cycle_path, leukemia_path
from cytoimagenet_assets.download.kaggle import kaggle_competition_url, kaggle_dataset_url
from cytoimagenet_assets.rehearsal.mirror.context import Ctx


def _kaggle_zip(ctx: Ctx) -> Path:
    spec = ctx.source.download
    url = kaggle_dataset_url(spec.slug) if spec.method == "kaggle_dataset" else kaggle_competition_url(spec.slug)
    return ctx.at(url)


def _kag_cell_cycle(ctx: Ctx) -> int:
    drawn = ctx.draw(np.array([57.0, 33.0]))
    with ctx.out.zip(_kaggle_zip(ctx)) as z:
        for i, phase in enumerate(drawn):
            name = ["interphase", "mitosis"][phase]
            z.add(cell_cycle_path(name, i), ctx.image("jpgrgb", name, i))
    return len(drawn)


HPA_2018 = [
    12885,
    1254,
    3621,
    1561,
    1858,
    2513,
    1008,
    2822,
    53,
    45,
    28,
    1093,
    688,
    537,
    1066,
    21,
    530,
    210,
    902,
    1482,
    172,
    3777,
    802,
    2965,
    322,
    8228,
    328,
    11,
]
# HPA 2021's 19 labels (estimate, in the 2018 set's proportions; 18 = Negative).
HPA_2021 = [8797, 1126, 2506, 1080, 1289, 2159, 871, 1818, 948, 638, 1058, 113, 1038, 2597, 2016, 222, 5653, 2007, 34]


def _hpa(ctx: Ctx, counts: list[int], images_real: int, kind: str) -> int:
    """train.csv (Id and integer labels) and train/<Id>_<colour>.png, from Kaggle's competition zip."""
    options = ctx.source.parser_options
    images = -(-ctx.n // 4)
    tokens = ctx.draw(np.array(counts, np.float64), max(images, round(sum(counts) * images / images_real)))
    labels: list[list[int]] = [[] for _ in range(images)]
    for i, token in enumerate(tokens):
        slot = i if i < images else int(ctx.rng.integers(images))
        if token not in labels[slot]:
            labels[slot].append(int(token))
    ids = [str(uuid.UUID(bytes=ctx.rng.bytes(16))) for _ in range(images)]
    rows = [[image_id, options["separator"].join(str(t) for t in sorted(set(found), reverse=True))] for image_id, found in zip(ids, labels)]
    with ctx.out.zip(_kaggle_zip(ctx)) as z:
        z.add(options["table"], csv_bytes([options["id_column"], options["target_column"]], rows))
        z.add("sample_submission.csv", csv_bytes([options["id_column"], "Predicted"], []))
        for i, image_id in enumerate(ids):
            for colour in HPA_COLORS:
                z.add(f"{options['image_dir']}/{image_id}_{colour}.png", ctx.image(kind, colour, i))
    return 4 * images


def _kag_leukemia(ctx: Ctx) -> int:
    """C-NMC_Leukemia: training folds of all/hem cells, and the (unlabelled here) validation and test data."""
    drawn = ctx.draw(np.array([7272.0, 3389.0]))
    with ctx.out.zip(_kaggle_zip(ctx)) as z:
        for i, cls in enumerate(drawn):
            label = ["all", "hem"][cls]
            patient = f"H{i % 40 + 1}" if label == "hem" else str(i % 78 + 1)
            z.add(leukemia_path(i % 3, label, patient, i // 120 + 1, i % 120 + 1), ctx.image("bmprgb", label, i))
        labels = []
        for i in range(ctx.count(1867)):
            z.add(f"C-NMC_Leukemia/validation_data/C-NMC_test_prelim_phase_data/{i + 1}.bmp", ctx.image("bmprgb", "validation", i))
            labels.append([f"UID_{i % 20 + 1}_{i + 1}_1_all.bmp", f"{i + 1}.bmp", 1 - i % 3 // 2])
        z.add(
            "C-NMC_Leukemia/validation_data/C-NMC_test_prelim_phase_data_labels.csv",
            csv_bytes(["Patient_ID", "new_names", "labels"], labels),
        )
        for i in range(ctx.count(2586)):
            z.add(f"C-NMC_Leukemia/testing_data/C-NMC_test_final_phase_data/{i + 1}.bmp", ctx.image("bmprgb", "test", i))
    return len(drawn)


WRITERS = {
    "kag_cell_cycle": _kag_cell_cycle,
    "kag_hpa_single": lambda ctx: _hpa(ctx, HPA_2021, 21_806, "png16"),
    "kag_hpa": lambda ctx: _hpa(ctx, HPA_2018, 31_072, "png8"),
    "kag_leukemia": _kag_leukemia,
}
