"""Model-only throughput of an ONNX model on this machine (onnxruntime, all cores).

All cores can be used two ways: one session with a thread per core, or one single-threaded
session per core in separate processes, as the service runs on a CPU. The best of the two,
over batch sizes, is what the model allows here.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from cxr_common.hardware import SPAWN, available_cores
from cxr_common.model_metadata import INPUT_NAME

CUDA_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")


def images_per_second(model: Path | str, batch_size: int, seconds: float = 3.0, threads: int = 0,
                      providers: tuple[str, ...] = ("CPUExecutionProvider",), start: Any = None) -> float:
    """Steady-state images/s at `batch_size` (after a warm-up run), for about `seconds`;
    `start` (a multiprocessing barrier) lines up the timing with other processes."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(model), options, providers=list(providers))
    size = session.get_inputs()[0].shape[1]
    batch = np.random.default_rng(0).random((batch_size, size, size, 1), dtype=np.float32)
    session.run(None, {INPUT_NAME: batch})
    if start is not None:
        start.wait()
    runs, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        session.run(None, {INPUT_NAME: batch})
        runs += 1
    return runs * batch_size / elapsed


def _report(results: Any, *args: Any) -> None:
    results.put(images_per_second(*args))


def per_core_images_per_second(model: Path | str, batch_size: int, seconds: float = 3.0) -> float:
    """Images/s of one single-threaded session per core, all running at the same time."""
    cores = available_cores()
    start, results = SPAWN.Barrier(cores), SPAWN.Queue()
    processes = [SPAWN.Process(target=_report, args=(results, str(model), batch_size, seconds, 1,
                                                     ("CPUExecutionProvider",), start))
                 for _ in range(cores)]
    for process in processes:
        process.start()
    total: float = sum(results.get(timeout=seconds + 120) for _ in processes)
    for process in processes:
        process.join()
    return total


@dataclass(frozen=True)
class Layout:
    """How the model's runs use the machine."""

    batch_size: int
    per_core: bool = False  # one single-threaded session per core (else one with a thread per core)
    device: str = "cpu"

    def __str__(self) -> str:
        if self.device == "cuda":
            return f"batch {self.batch_size}, GPU"
        way = "a one-thread session per core" if self.per_core else "one session with a thread per core"
        return f"batch {self.batch_size}, {way}"


def layout_images_per_second(model: Path | str, layout: Layout, seconds: float = 3.0) -> float:
    if layout.device == "cuda":
        return images_per_second(model, layout.batch_size, seconds, providers=CUDA_PROVIDERS)
    if layout.per_core:
        return per_core_images_per_second(model, layout.batch_size, seconds)
    return images_per_second(model, layout.batch_size, seconds)


def best_images_per_second(model: Path | str, batch_sizes: tuple[int, ...] = (1, 4, 8, 16, 32), seconds: float = 3.0,
                           device: str = "cpu") -> tuple[float, Layout]:
    """(images/s, layout): the best over batch sizes and, on the CPU, over the two ways of using
    all cores; on CUDA, one session on the GPU."""
    if device == "cuda":
        layouts = [Layout(b, device="cuda") for b in batch_sizes]
    else:
        ways = (False, True) if available_cores() > 1 else (False,)
        layouts = [Layout(b, per_core) for per_core in ways for b in batch_sizes]
    return max(((layout_images_per_second(model, layout, seconds), layout) for layout in layouts),
               key=lambda measured: measured[0])


def paired_speedup(baseline: Path | str, baseline_layout: Layout, candidate: Path | str, candidate_layout: Layout,
                   rounds: int = 5, seconds: float = 2.0) -> tuple[list[float], float, float]:
    """Candidate over baseline in `rounds` back-to-back pairs, each model in its own layout:
    (the ratios, the baseline's and the candidate's median images/s). This machine's speed drifts
    by several percent within a minute; two runs seconds apart share the drift."""
    speeds = [(layout_images_per_second(baseline, baseline_layout, seconds),
               layout_images_per_second(candidate, candidate_layout, seconds)) for _ in range(rounds)]
    ratios = [b / a for a, b in speeds]
    return ratios, statistics.median(a for a, _ in speeds), statistics.median(b for _, b in speeds)
