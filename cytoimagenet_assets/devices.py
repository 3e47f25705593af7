"""Which torch device a step runs on, and on a CPU how many threads it can use well."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

import torch

THREADS_ENV = "OMP_NUM_THREADS"


def pick_device(requested: str | None = None, local_rank: int = 0) -> torch.device:
    """``requested`` (e.g. ``cpu``, ``cuda:1``) when given; else ``cuda:<local_rank>`` when CUDA is
    available (one GPU per torchrun process), else the CPU."""
    if requested:
        return torch.device(requested)
    return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")


def _cpu_ticks() -> tuple[int, int] | None:
    """(busy, total) clock ticks of the whole machine since boot, from /proc/stat; None elsewhere."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    idle = values[3] + values[4]  # idle, iowait
    return sum(values) - idle, sum(values)


def busy_cores_of_others(interval_s: float = 0.2) -> float:
    """How many cores other processes kept busy over ``interval_s``: the machine's busy time less this
    process's own (all its threads); 0 where /proc/stat is not available."""
    before, own_before = _cpu_ticks(), os.times()
    time.sleep(interval_s)
    after, own_after = _cpu_ticks(), os.times()
    if before is None or after is None:
        return 0.0
    busy_s = (after[0] - before[0]) / os.sysconf("SC_CLK_TCK")
    own_s = (own_after.user + own_after.system) - (own_before.user + own_before.system)
    return max(0.0, (busy_s - own_s) / interval_s)


def fit_cpu_threads(log: Callable[[str], None] | None = None) -> int:
    """Use as many CPU threads as there are cores other processes leave free (at least one), unless
    OMP_NUM_THREADS says otherwise. OpenMP threads that share a core with another busy process wait
    for it at every barrier: the demo's training fell from 167 to 10 images/s on 2 cores with one of
    them busy; one thread on the free core keeps about half the speed."""
    if os.environ.get(THREADS_ENV):
        return torch.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = max(1, min(cores, round(cores - busy_cores_of_others())))
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
        if log:
            log(f"CPU threads: {threads} of {cores} cores (the others are busy)")
    return threads
