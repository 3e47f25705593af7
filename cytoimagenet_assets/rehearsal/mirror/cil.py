"""The Cell Image Library's kinome set, which a user downloads and unzips by hand."""

from __future__ import annotations

import numpy as np

from cytoimagenet_assets.demo.formats import csv_bytes
from cytoimagenet_assets.rehearsal.mirror.context import MANUAL, Ctx

KINASE_GROUPS = {"TK": 90, "CAMK": 74, "AGC": 63, "CMGC": 61, "STE": 47, "TKL": 43, "atypical": 40, "other": 21, "CK1": 12, "RGC": 5}


def _cil_kinome(ctx: Ctx) -> int:
    """What a user unzips by hand: <CIL_ID>.tif per image and the original's group table."""
    groups = np.repeat(list(KINASE_GROUPS), [2 * v for v in KINASE_GROUPS.values()])
    picked = ctx.pick(len(groups), ctx.n)
    folder = ctx.out.root / MANUAL / ctx.dir_name
    for p in picked:
        ctx.out.file(folder / f"{53464 + p}.tif", ctx.image("tifrgb", "kinase", int(p)).data)
    table = [[f"{53464 + p}.zip", groups[p]] for p in picked]
    ctx.out.file(folder / "cil_kinome_metadata.csv", csv_bytes(["file_name", "kinase"], table))
    return len(picked)


WRITERS = {"cil_kinome": _cil_kinome}
