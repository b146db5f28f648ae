"""Runs the app under uvicorn in worker processes, one or more, on one port, under a supervisor.

Each worker process holds its own copy of the model, event loop and threads, so the processes
never wait on one another's GIL. Each binds its own listening socket with SO_REUSEPORT and the
kernel spreads new connections across them. (uvicorn's own --workers shares one socket, and the
process that wakes first accepts a whole burst: measured, 16 keep-alive connections landed
16/0, 9/7 and 14/2 on two workers, leaving a core idle; here 9/7, 11/5, 9/7.) Metrics then live
in per-process files that /metrics adds up (prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import os
import shutil
import signal
import socket
import tempfile
import time
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any

from service.metrics import MULTIPROCESS_DIR, MULTIPROCESS_DIR_PREFIX, mark_dead
from service.process.logs import configure_logging
from service.process.memory import keep_freed_memory, release_freed_memory
from service.process.peers import Counts, PeerLoad, shared_counts
from service.process.plan import ServingPlan
from service.process.startup import FORK, INVALID_CONFIGURATION, Startup, describe, settings_from

# The supervisor imports none of these (pydantic, uvicorn, FastAPI, the app, onnxruntime, numpy):
# they load in the processes that serve. Measured: the supervisor 103 -> 18 MB RSS.
if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI

    from service.config import Settings

log = logging.getLogger("service")

# Every thread of a serving process runs under SCHED_BATCH (Linux): a thread that wakes up, such
# as the event loop when a segment of an upload arrives or a job finishes, then waits for the next
# scheduler tick instead of preempting a thread in the middle of decoding or inference, and handles
# whatever became ready meanwhile in one go. Measured at concurrency 16 on 2 cores: context
# switches per image 10 -> 4, throughput +1% (5 alternating pairs); at concurrency 4, 254/277 ->
# 275/288 images/s; p50 at concurrency 1 unchanged, as an idle core takes the wakeup at once.
# No privilege is needed: SCHED_BATCH is a normal-priority policy, unlike the real-time ones.
SCHEDULING_POLICY = getattr(os, "SCHED_BATCH", None)

# The supervisor forks its workers and its start-up check (service.process.startup.FORK). It never
# loads pydantic, onnxruntime, numpy or the app (tests/service/test_workers.py checks the imports)
# and runs no thread of its own, so a fork copies a plain one-threaded interpreter, and each
# worker loads the serving libraries itself. Unlike spawn, fork starts no resource tracker
# process (12 MB at rest) and re-imports nothing.
SUPERVISOR_SIGNALS = {signal.SIGTERM, signal.SIGINT}

# A worker that dies is replaced after a pause that doubles with each death in a row (1, 2, 4 ...
# 30 s), and the run of deaths is forgotten once a worker has served for STABLE_S. The service
# gives up only when START_FAILURES workers in a row die before they ever became ready: a model
# or a configuration that cannot serve, not a worker killed in passing (OOM killer, kill -9).
FIRST_BACKOFF_S, MAX_BACKOFF_S, STABLE_S = 1.0, 30.0, 60.0
START_FAILURES = 3
PR_SET_PDEATHSIG, PR_SET_NAME = 1, 15  # prctl(2), Linux
WORKER_NAME = b"cxr-worker"  # a worker's name in ps and top (/proc/PID/comm)


def configure_process() -> None:
    """What the service sets first, before any thread or child process (both inherit it): the
    allocator (glibc fixes its number of arenas when the first thread allocates) and scheduling."""
    keep_freed_memory()
    if SCHEDULING_POLICY is not None:
        try:
            os.sched_setscheduler(0, SCHEDULING_POLICY, os.sched_param(0))
        except OSError as exc:  # a sandbox that filters the call: serve all the same
            log.warning("cannot set the SCHED_BATCH policy (%s); keeping the default", exc)


def serve(startup: Startup) -> int:
    """Serve until SIGTERM/SIGINT; returns the exit status. Always through the supervisor, one
    worker included: a worker that dies (a decoder's crash, the OOM killer, kill -9) is replaced
    without an orchestrator, for the supervisor's 18 MB (measured 2026-12-08: 158 MB at rest with
    one worker, the supervisor included). Each worker loads its own copy of the model (an
    onnxruntime session cannot cross processes); the supervisor holds none
    (service.process.startup)."""
    release_freed_memory()
    own_dir = MULTIPROCESS_DIR not in os.environ
    if own_dir:  # the workers find the directory in the environment
        os.environ[MULTIPROCESS_DIR] = tempfile.mkdtemp(prefix=MULTIPROCESS_DIR_PREFIX)
    try:
        return _supervise(startup)
    finally:
        if own_dir:
            shutil.rmtree(os.environ.pop(MULTIPROCESS_DIR), ignore_errors=True)


def uvicorn_config(settings: Settings, app: FastAPI) -> uvicorn.Config:
    import uvicorn

    from service.http.protocol import protocol_class

    return uvicorn.Config(
        app, host=settings.host, port=settings.port, log_config=None,  # keep our JSON logs
        # uvicorn annotates both as int; it passes them to asyncio, which takes any seconds
        http=protocol_class(settings.connection_limits()), timeout_keep_alive=settings.keep_alive_s,  # type: ignore[arg-type]
        timeout_graceful_shutdown=settings.graceful_shutdown_s)  # type: ignore[arg-type]


def _server(settings: Settings, app: FastAPI) -> uvicorn.Server:
    """uvicorn's server, with the drain on SIGTERM (service.process.drain): /health/ready says
    not ready (app.state.draining) for CXR_DRAIN_S before the listener closes."""
    from service.process.drain import DrainingServer

    return DrainingServer(uvicorn_config(settings, app), settings.drain_s,
                          on_drain=lambda: setattr(app.state, "draining", True))


def _socket(host: str, reuse_port: bool) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    return sock


def _listening_socket(host: str, port: int) -> socket.socket:
    sock = _socket(host, reuse_port=True)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def claim_port(host: str, port: int) -> socket.socket:
    """A socket that holds the port for this instance while it lives. Binding first without
    SO_REUSEPORT fails if anything serves the port, our own workers of an earlier instance
    included; the socket kept is bound with SO_REUSEPORT, so that the workers can join it, and
    never listens, so it takes no connections. Raises OSError when the port is taken."""
    with _socket(host, reuse_port=False) as probe:
        probe.bind((host, port))
    holder = _socket(host, reuse_port=True)
    holder.bind((host, port))
    return holder


def _freeze_imports() -> None:
    """The objects made so far (modules, classes, functions: some 90,000, all alive for good)
    are left out of the garbage collector's full passes (gc.freeze), which otherwise walk them
    all: one full pass took 133 ms, about once per 1,600 requests at concurrency 16. Its effect
    on CPU per image is below what this machine resolves (-4.6% in one A/B run, +3.2% in the
    next: docs/performance.md); the pauses are gone."""
    gc.collect()
    gc.freeze()


def _die_with_parent(parent: int) -> None:
    """Linux: this process gets SIGTERM (uvicorn's graceful shutdown) when its supervisor dies,
    even by SIGKILL, instead of serving on as an orphan."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM) != 0:
        log.warning("cannot ask to die with the supervisor (prctl errno %d)", ctypes.get_errno())
    if os.getppid() != parent:  # it died before the call: nobody would send the signal
        os.kill(os.getpid(), signal.SIGTERM)


def _name_worker() -> None:
    """Linux: WORKER_NAME in ps and top; a forked worker's command line is the supervisor's."""
    ctypes.CDLL(ctypes.util.find_library("c") or None).prctl(PR_SET_NAME, WORKER_NAME)


def _worker(overrides: dict[str, Any], plan: ServingPlan, load_counts: Counts, ready_flags: Counts,
            slot: int, parent: int) -> None:
    """One worker process: its own socket on the shared port, its own app and model; its slot
    in `load_counts` tells the others how busy it is, in `ready_flags` that it has started."""
    for signum in SUPERVISOR_SIGNALS:  # the supervisor's handlers came with the fork; not ours
        signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SUPERVISOR_SIGNALS)  # blocked over the fork (start)
    _name_worker()
    _die_with_parent(parent)
    from pydantic import ValidationError  # here, not in the supervisor (service.process.startup)

    try:  # the start-up check built the same ones; a file they name may have gone since
        settings = settings_from(overrides)
    except ValidationError as exc:
        log.error("cannot start a worker: invalid configuration", extra={"errors": describe(exc)})
        raise SystemExit(INVALID_CONFIGURATION) from None
    configure_logging(settings.log_level)
    try:
        sock = _listening_socket(settings.host, settings.port)
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", settings.host, settings.port, exc)
        raise SystemExit(1) from None
    from service.http.app import create_app

    # the peers' load matters only when there are peers (a lone worker would start a helper thread)
    peers = PeerLoad(load_counts, slot) if plan.workers > 1 else None
    app = create_app(settings, peers=peers, plan=plan)
    _freeze_imports()
    app.state.on_ready = lambda: ready_flags.__setitem__(slot, 1)
    _server(settings, app).run(sockets=[sock])


class _Slot:
    """One worker's place: its process, when it started, its run of deaths."""

    def __init__(self, index: int):
        self.index = index
        self.process: BaseProcess | None = None
        self.started_at = 0.0
        self.deaths_in_a_row = 0
        self.restart_at: float | None = None


def _supervise(startup: Startup) -> int:
    """Start the workers and replace one that dies (with backoff); on SIGTERM/SIGINT pass
    SIGTERM on to each (uvicorn's graceful shutdown) and wait for them."""
    try:
        holder = claim_port(startup.host, startup.port)
    except OSError as exc:
        log.error("cannot start: %s:%s is already served or taken (%s)", startup.host, startup.port, exc)
        return 1
    stopping = False
    plan = startup.plan
    load_counts = shared_counts(plan.workers)
    ready_flags = shared_counts(plan.workers)
    slots = [_Slot(i) for i in range(plan.workers)]
    failures_before_ready = 0

    def start_worker(slot: _Slot) -> None:
        ready_flags[slot.index] = 0
        process = FORK.Process(target=_worker, name=WORKER_NAME.decode(),
                               args=(startup.overrides, plan, load_counts, ready_flags, slot.index, os.getpid()))
        # blocked until the child has put back the default handlers: the supervisor's own must
        # never run in a worker
        signal.pthread_sigmask(signal.SIG_BLOCK, SUPERVISOR_SIGNALS)
        try:
            process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, SUPERVISOR_SIGNALS)
        slot.process = process
        slot.started_at, slot.restart_at = time.monotonic(), None

    def stop(signum: int | None, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for slot in slots:
            if slot.process is not None and slot.process.pid is not None and slot.process.is_alive():
                os.kill(slot.process.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)  # before the first start: no worker is ever left behind
    signal.signal(signal.SIGINT, stop)
    for slot in slots:
        if not stopping:
            start_worker(slot)
    if stopping:  # the signal came while they were starting: make sure each one heard it
        stop(None, None)
    log.info("started %d worker processes", plan.workers)
    status = 0
    while not stopping:
        alive = [s.process.sentinel for s in slots if s.process is not None and s.process.is_alive()]
        wait(alive, timeout=0.5)
        now = time.monotonic()
        for slot in slots:
            if stopping:
                break
            if slot.process is None:  # waiting out its backoff
                if slot.restart_at is not None and now >= slot.restart_at:
                    start_worker(slot)
                continue
            if slot.process.is_alive():
                if now - slot.started_at > STABLE_S:
                    slot.deaths_in_a_row = 0
                continue
            if slot.process.pid is not None:
                mark_dead(slot.process.pid)  # its requests died with its connections
            was_ready = bool(ready_flags[slot.index])
            failures_before_ready = 0 if was_ready else failures_before_ready + 1
            if failures_before_ready >= START_FAILURES:
                log.error("%d worker processes in a row exited before they were ready (the last with "
                          "status %s); stopping", failures_before_ready, slot.process.exitcode)
                status = 1
                stop(None, None)
                break
            pause = min(MAX_BACKOFF_S, FIRST_BACKOFF_S * 2 ** slot.deaths_in_a_row)
            slot.deaths_in_a_row += 1
            log.warning("a worker process exited with status %s; starting another in %g s",
                        slot.process.exitcode, pause)
            slot.process, slot.restart_at = None, now + pause
    deadline = time.monotonic() + startup.drain_s + startup.graceful_shutdown_s + 5
    for slot in slots:
        if slot.process is not None:
            slot.process.join(max(0.0, deadline - time.monotonic()))
            if slot.process.is_alive():
                slot.process.kill()
    holder.close()
    return status
