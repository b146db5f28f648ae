"""Runs the app under uvicorn: in this process, or in several worker processes on one port.

Each worker process holds its own copy of the model, event loop and threads, so the processes
never wait on one another's GIL. Each binds its own listening socket with SO_REUSEPORT and the
kernel spreads new connections across them. (uvicorn's own --workers shares one socket, and the
process that wakes first accepts a whole burst: measured, 16 keep-alive connections landed
16/0, 9/7 and 14/2 on two workers, leaving a core idle; here 9/7, 11/5, 9/7.) Metrics then live
in per-process files that /metrics adds up (prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from multiprocessing.connection import wait

import uvicorn
from fastapi import FastAPI

from cxr_common.hardware import SPAWN
from service.app import create_app
from service.classifier import CUDA, Classifier
from service.config import Settings
from service.logging_setup import configure_logging
from service.memory import keep_freed_memory
from service.metrics import MULTIPROCESS_DIR
from service.peers import PeerLoad, shared_counts

log = logging.getLogger("service")

# The event loop shares the GIL with the decoding threads. CPython's default 5 ms switch interval
# lets a thread in pure Python (pydicom parsing a header, say) keep the loop and the other threads
# waiting while cores sit idle; measured at concurrency 16 on 2 cores, 1 ms served 5-10% more.
SWITCH_INTERVAL_S = 0.001

# Every thread of a serving process runs under SCHED_BATCH (Linux): a thread that wakes up, such
# as the event loop when a segment of an upload arrives or a job finishes, then waits for the next
# scheduler tick instead of preempting a thread in the middle of decoding or inference, and handles
# whatever became ready meanwhile in one go. Measured at concurrency 16 on 2 cores: context
# switches per image 10 -> 4, throughput +1% (5 alternating pairs); at concurrency 4, 254/277 ->
# 275/288 images/s; p50 at concurrency 1 unchanged, as an idle core takes the wakeup at once.
# No privilege is needed: SCHED_BATCH is a normal-priority policy, unlike the real-time ones.
SCHEDULING_POLICY = getattr(os, "SCHED_BATCH", None)

CRASH_LOOP_S = 10.0  # a worker that dies sooner than this after starting is not restarted


def configure_process(settings: Settings) -> None:
    """What every serving process sets first: logs, allocator, GIL switch interval, scheduling."""
    configure_logging(settings.log_level)
    keep_freed_memory()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    if SCHEDULING_POLICY is not None:  # before any thread starts: threads inherit the policy
        try:
            os.sched_setscheduler(0, SCHEDULING_POLICY, os.sched_param(0))
        except OSError as exc:  # a sandbox that filters the call: serve all the same
            log.warning("cannot set the SCHED_BATCH policy (%s); keeping the default", exc)


def serve(settings: Settings, classifier: Classifier) -> int:
    """Serve until SIGTERM/SIGINT; returns the exit status. `classifier` is already loaded (a bad
    model stopped start-up before the port was bound): the app uses it in this process, while
    several workers each load their own copy."""
    settings = settings.model_copy(update={"workers": settings.worker_count(classifier.provider == CUDA)})
    if settings.workers == 1:
        _server(settings, create_app(settings, classifier)).run()
        return 0
    del classifier
    own_dir = MULTIPROCESS_DIR not in os.environ
    if own_dir:  # the workers are new interpreters: they find the directory in the environment
        os.environ[MULTIPROCESS_DIR] = tempfile.mkdtemp(prefix="cxr-metrics-")
    try:
        return _supervise(settings)
    finally:
        if own_dir:
            shutil.rmtree(os.environ.pop(MULTIPROCESS_DIR), ignore_errors=True)


def _server(settings: Settings, app: FastAPI) -> uvicorn.Server:
    return uvicorn.Server(uvicorn.Config(
        app, host=settings.host, port=settings.port, log_config=None,  # keep our JSON logs
        timeout_graceful_shutdown=settings.graceful_shutdown_s))


def _listening_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def _worker(settings: Settings, load_counts, slot: int) -> None:
    """One worker process: its own socket on the shared port, its own app and model; its slot
    in `load_counts` tells the others how busy it is."""
    configure_process(settings)
    try:
        sock = _listening_socket(settings.host, settings.port)
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", settings.host, settings.port, exc)
        sys.exit(1)
    _server(settings, create_app(settings, peers=PeerLoad(load_counts, slot))).run(sockets=[sock])


def _supervise(settings: Settings) -> int:
    """Start the workers, restart one that dies, and on SIGTERM/SIGINT pass SIGTERM on to each
    (uvicorn's graceful shutdown) and wait for them."""
    stopping = False
    load_counts = shared_counts(settings.workers)

    def start(slot: int) -> multiprocessing.Process:
        process = SPAWN.Process(target=_worker, args=(settings, load_counts, slot), name="cxr-worker")
        process.start()
        process.started_at = time.monotonic()
        return process

    def stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True
        for process in workers:
            if process.is_alive():
                os.kill(process.pid, signal.SIGTERM)

    workers: list[multiprocessing.Process] = []
    signal.signal(signal.SIGTERM, stop)  # before the first start: no worker is ever left behind
    signal.signal(signal.SIGINT, stop)
    for slot in range(settings.workers):
        if not stopping:
            workers.append(start(slot))
    if stopping:  # the signal came while they were starting: make sure each one heard it
        stop(None, None)
    log.info("started %d worker processes", len(workers))
    status = 0
    while not stopping:
        wait([process.sentinel for process in workers], timeout=1.0)
        for i, process in enumerate(workers):
            if process.is_alive() or stopping:
                continue
            if time.monotonic() - process.started_at < CRASH_LOOP_S:
                log.error("a worker process exited with status %s during start-up; stopping", process.exitcode)
                status = 1
                stop(None, None)
                break
            log.warning("a worker process exited with status %s; starting another", process.exitcode)
            workers[i] = start(i)
    deadline = time.monotonic() + settings.graceful_shutdown_s + 5
    for process in workers:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
    return status
