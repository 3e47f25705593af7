"""Which torch device a step runs on: the one asked for, else this process's GPU when there is one."""

from __future__ import annotations

import torch


def pick_device(requested: str | None = None, local_rank: int = 0) -> torch.device:
    """``requested`` (e.g. ``cpu``, ``cuda:1``) when given; else ``cuda:<local_rank>`` when CUDA is
    available (one GPU per torchrun process), else the CPU."""
    if requested:
        return torch.device(requested)
    return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
