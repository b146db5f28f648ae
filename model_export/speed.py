"""Model-only throughput of an ONNX model on this machine (onnxruntime, all cores)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from cxr_common.model_metadata import INPUT_NAME


def images_per_second(model: Path | str, batch_size: int, seconds: float = 3.0, threads: int = 0) -> float:
    """Steady-state images/s at `batch_size` (after a warm-up run), for about `seconds`."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    size = session.get_inputs()[0].shape[1]
    batch = np.random.default_rng(0).random((batch_size, size, size, 1), dtype=np.float32)
    session.run(None, {INPUT_NAME: batch})
    runs, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        session.run(None, {INPUT_NAME: batch})
        runs += 1
    return runs * batch_size / elapsed


def best_images_per_second(model: Path | str, batch_sizes=(1, 4, 8, 16, 32), seconds: float = 3.0) -> tuple[float, int]:
    """(images/s, batch size) at the best of `batch_sizes`."""
    return max((images_per_second(model, b, seconds), b) for b in batch_sizes)
