"""How the service uses the machine: resolved once, at start-up, from the settings, the execution
provider that really runs and the cores, then passed whole to every worker process.

On the CPU: one worker process by default (under the supervisor, service.process.server), with
one scoring thread per core (each decodes a request and runs its model on a one-thread session)
and a multi-threaded session for a request that is alone. Decoding and onnxruntime release the
GIL, so the threads do not wait on one another: with model v3 (about 9 ms of model and 3 ms of
decoding per image) one process served as many images per second as one process per core (131
against 134 at concurrency 16, 122.6/126.1 against 124.5/125.2 at 64), with 2% less CPU per
image and one copy of the model and libraries instead of two. Measured in docs/performance.md
(2026-12-03, round 4). `CXR_WORKERS` starts more. No batching on the CPU (it buys little, see
service/inference/runners.py). With CUDA: one process, whose batches keep the GPU busy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from service.inference.providers import CUDA

if TYPE_CHECKING:  # the supervisor holds a plan, never pydantic (service.process.startup)
    from service.config import Settings


@dataclass(frozen=True)
class ServingPlan:
    workers: int  # server processes, each with its own copy of the model
    onnx_threads: int  # onnxruntime threads per run, per process
    solo_threads: int  # for a request alone in the whole service (see Classifier.predict)
    decode_threads: int  # uploads decoded (and, without batching, scored) at once per process
    batching: bool  # dynamic batching across requests


def make_plan(settings: Settings, provider: str, cores: int) -> ServingPlan:
    """A pure function: the same settings, provider and cores give the same plan."""
    cuda = provider == CUDA
    workers = settings.workers or 1
    cores_per_worker = max(1, cores // workers)  # the cores shared out among the processes
    batching = settings.batching if settings.batching is not None else cuda
    if settings.decode_threads:
        decode_threads = settings.decode_threads
    elif batching:  # decoding feeds one model run: while one thread waits for the GIL, another runs
        decode_threads = 2 * cores_per_worker
    else:  # each thread decodes and scores: one per core keeps every core busy, no more
        decode_threads = cores_per_worker
    # without batching each scoring thread runs the model on its own share of the cores
    per_run = cores_per_worker if batching else max(1, cores_per_worker // decode_threads)
    return ServingPlan(
        workers=workers,
        onnx_threads=settings.intra_op_threads or per_run,
        solo_threads=settings.intra_op_threads or cores,
        decode_threads=decode_threads,
        batching=batching,
    )


def single_process_plan(settings: Settings, provider: str, cores: int) -> ServingPlan:
    """The plan of an app that has the machine to itself in one process (tests, embedding)."""
    return make_plan(settings.model_copy(update={"workers": 1}), provider, cores)
