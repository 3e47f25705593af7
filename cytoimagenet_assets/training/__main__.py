"""Train from packed shards, standalone or on several GPUs with torchrun.

    python -m cytoimagenet_assets.training <shards_dir> <out_dir> [--epochs 24 --batch-size 64 ...]
    torchrun --standalone --nproc_per_node=8 -m cytoimagenet_assets.training <shards_dir> <out_dir> ...

<shards_dir> is the packed array (``shards/<size>px``, one node) or the WebDataset release
(``release/webdataset``, streamed: each process reads its own shards). Rerunning with the same
out_dir resumes from its last checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from cytoimagenet_assets.training.loop import TrainConfig, train, training_data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cytoimagenet_assets.training", description=__doc__.split("\n\n")[0])
    parser.add_argument("shards", type=Path)
    parser.add_argument("out", type=Path)
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        if field.type == "bool":
            parser.add_argument(flag, type=lambda v: v.lower() in ("1", "true", "yes"), default=field.default)
        else:
            parser.add_argument(flag, type={"int": int, "float": float}.get(field.type, str), default=field.default)
    args = parser.parse_args(argv)
    config = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
    args.out.mkdir(parents=True, exist_ok=True)
    result = train(config, training_data(args.shards), args.out)
    print(f"trained {len(result.history)} epochs ({result.images_per_second:.1f} images/s) -> {result.weights}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
