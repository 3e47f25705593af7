"""Human Protein Atlas Kaggle competitions (2018 ``kag_hpa``, 2021 ``kag_hpa_single``).

``train.csv`` lists each image Id with its integer localization labels; images are four files
``<Id>_{red,green,blue,yellow}.png``. As in the original, each channel is its own image: the
landmark stains (nucleus, microtubules, ER) label what they show, and the protein channel
carries the image's localization labels, with the most common compartments dropped from
multi-labels so that rarer localizations get their classes.

Options::

    table: train.csv
    id_column: Id
    target_column: Target
    separator: " "            # 2021 uses "|"
    label_names: [Nucleoplasm, Nuclear membrane, ...]   # index = integer label
    protein_channel: green
    drop_from_multilabels: [nucleus, er, golgi, nucleoli, mitochondria, actin]
    image_dir: train
    extension: png
"""

from __future__ import annotations

from pathlib import Path

from cytoimagenet_assets.catalog import Source
from cytoimagenet_assets.sources.common import find_file, frame, read_table
from cytoimagenet_assets.sources.table import ParsedSource, normalize_label, rejects_frame


def parse(source: Source, raw_dir: Path) -> ParsedSource:
    options = source.parser_options
    id_column, target_column = options.get("id_column", "Id"), options.get("target_column", "Target")
    names: list[str] = options["label_names"]
    protein = options.get("protein_channel", "green")
    drop = set(options.get("drop_from_multilabels", []))
    separator = options.get("separator", " ")
    image_dir = options.get("image_dir", "train")
    extension = options.get("extension", "png")
    path = find_file(source, raw_dir, options.get("table", "train.csv"))
    source_file = path.relative_to(raw_dir).as_posix()
    table = read_table(source, path, required=[id_column, target_column])

    rows, rejects = [], []
    for i, (image_id, target) in enumerate(zip(table[id_column].str.strip(), table[target_column])):
        codes = [t for t in target.replace(separator, " ").split() if t]
        unknown = [c for c in codes if not (c.isdigit() and int(c) < len(names))]
        if not image_id or not codes or unknown:
            rejects.append((source_file, i + 1, f"bad Id/label: Id={image_id!r} {target_column}={target!r}"))
            continue
        labels = [normalize_label(names[int(c)], "cell_visible") for c in codes]
        labels = [label for label in dict.fromkeys(labels) if label]
        if len(labels) > 1:
            labels = [label for label in labels if label not in drop] or labels
        for channel in source.channels:
            # '' (not None) for a protein channel without a localization: no default stain fills it in.
            shows = "|".join(labels) if channel.key == protein else channel.name
            rows.append({
                "source_file": source_file, "source_row": i + 1, "field": channel.key, "cell_visible": shows,
                "channel_names": [channel.name], "channel_paths": [f"{image_dir}/{image_id}_{channel.key}.{extension}"],
            })
    return ParsedSource(frame(rows), rejects_frame(rejects))
