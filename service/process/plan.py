"""How the service uses the machine: resolved once, at start-up, from the settings, the execution
provider that really runs and the cores, then passed whole to every worker process.

On the CPU: one worker process per core, each with its own model and event loop, so the
processes never wait on one another's GIL; no batching (it buys little on a CPU, see
service/inference/runners.py). With CUDA: one process, whose batches keep the GPU busy.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.config import Settings
from service.inference.providers import CUDA


@dataclass(frozen=True)
class ServingPlan:
    workers: int  # server processes, each with its own copy of the model
    onnx_threads: int  # onnxruntime threads per process
    solo_threads: int  # for a request alone in the whole service (see Classifier.predict)
    decode_threads: int  # uploads decoded (and, without batching, scored) at once per process
    batching: bool  # dynamic batching across concurrent requests


def make_plan(settings: Settings, provider: str, cores: int) -> ServingPlan:
    """A pure function: the same settings, provider and cores give the same plan."""
    cuda = provider == CUDA
    workers = settings.workers or (1 if cuda else cores)
    cores_per_worker = max(1, cores // workers)  # the cores shared out among the processes
    if settings.decode_threads:
        decode_threads = settings.decode_threads
    elif workers > 1:  # one per core, shared out: each core busy, no GIL contention
        decode_threads = cores_per_worker
    else:  # one process: while one thread waits for the GIL, another runs
        decode_threads = 2 * cores
    return ServingPlan(
        workers=workers,
        onnx_threads=settings.intra_op_threads or cores_per_worker,
        solo_threads=settings.intra_op_threads or cores,
        decode_threads=decode_threads,
        batching=settings.batching if settings.batching is not None else cuda,
    )


def single_process_plan(settings: Settings, provider: str, cores: int) -> ServingPlan:
    """The plan of an app that has the machine to itself in one process (tests, embedding)."""
    return make_plan(settings.model_copy(update={"workers": 1}), provider, cores)
