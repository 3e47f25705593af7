"""Train from packed shards, standalone or on several GPUs with torchrun.

    python -m cytoimagenet_assets.model <shards_dir> <out_dir> [--catalog NAME] [--epochs 24 --batch-size 64 ...]
    torchrun --standalone --nproc_per_node=8 -m cytoimagenet_assets.model <shards_dir> <out_dir> ...
    # several nodes: the same line on every node, <out_dir> on a volume they all see
    torchrun --nnodes=4 --nproc_per_node=8 --rdzv-backend=c10d --rdzv-endpoint=<first node>:29500 --rdzv-id=<run> \
        -m cytoimagenet_assets.model <shards_dir> <out_dir> ...

<shards_dir> is the packed array (``shards/<size>px``, one node, or a copy on each) or the WebDataset
release (``release/webdataset``, streamed: each process reads its own shards). Rerunning with the same
out_dir resumes from its last checkpoint (rank 0 writes it, every rank reads it: across nodes,
out_dir must be shared).
"""

from __future__ import annotations

import sys

from cytoimagenet_assets.model.launch import cli_parser, config_from_args
from cytoimagenet_assets.model.loop import train, training_data


def main(argv: list[str] | None = None) -> int:
    args = cli_parser("python -m cytoimagenet_assets.model", __doc__.split("\n\n")[0]).parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    result = train(config_from_args(args), training_data(args.shards), args.out, catalog=args.catalog)
    print(f"trained {len(result.history)} epochs ({result.images_per_second:.1f} images/s) -> {result.weights}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
