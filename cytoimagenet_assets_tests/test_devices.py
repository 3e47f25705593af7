"""CPU threads fitted to the cores other processes leave free."""

import os
import subprocess
import sys
import time

import pytest
import torch

from cytoimagenet_assets.devices import THREADS_ENV, busy_cores_of_others, fit_cpu_threads

CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="busy cores are read from /proc/stat (Linux)")
def test_a_core_another_process_keeps_busy_is_left_to_it(threads, monkeypatch):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        assert busy_cores_of_others() >= 0.7  # the spinner (other work can only add to it)
        fitted = fit_cpu_threads()
        assert fitted == torch.get_num_threads() and 1 <= fitted <= max(1, CORES - 1)
    finally:
        spinner.kill()


def test_this_process_own_work_is_not_counted_and_omp_num_threads_wins(threads, monkeypatch):
    """Over 1 s the machine was busy 1.8 core-seconds, 1.5 of them this process's threads: 0.3 cores
    were others'. With OMP_NUM_THREADS set, the thread count is left alone."""
    ticks = os.sysconf("SC_CLK_TCK")
    machine = iter([(0, 10 * ticks), (round(1.8 * ticks), 12 * ticks)])
    own = iter([os.times_result((0.0, 0.0, 0.0, 0.0, 0.0)), os.times_result((1.0, 0.5, 0.0, 0.0, 1.0))])
    monkeypatch.setattr("cytoimagenet_assets.devices._cpu_ticks", lambda: next(machine))
    monkeypatch.setattr("cytoimagenet_assets.devices.os.times", lambda: next(own))
    monkeypatch.setattr("cytoimagenet_assets.devices.time.sleep", lambda s: None)
    assert busy_cores_of_others(1.0) == pytest.approx(0.3)
    monkeypatch.setenv(THREADS_ENV, "1")
    torch.set_num_threads(1)
    assert fit_cpu_threads() == 1 and torch.get_num_threads() == 1
