"""What the supervisor starts from, worked out in a child process that then exits.

The settings are validated (pydantic) and the model loaded and checked (onnxruntime) in a child
forked for that alone, which hands back a plain `Startup` and exits, so that the supervisor holds
neither: its RSS counts once per service (33 -> 18 MB measured, docs/performance.md 2026-12-08).
Each worker builds its own Settings again from the same environment and options (`settings_from`).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from service.process.logs import configure_logging
from service.process.plan import ServingPlan, make_plan

if TYPE_CHECKING:
    from pydantic import ValidationError

    from service.config import Settings

log = logging.getLogger("service")

# the supervisor loads no onnxruntime and runs no thread: a fork copies a plain interpreter
FORK = multiprocessing.get_context("fork")

INVALID_CONFIGURATION, CANNOT_SERVE = 2, 1  # exit statuses of `python -m service`


@dataclass(frozen=True)
class Startup:
    """The serving plan and the few settings the supervisor itself uses; `overrides`: the command
    line's settings, which each worker applies over the CXR_* variables as the check did."""

    plan: ServingPlan
    host: str
    port: int
    log_level: str
    drain_s: float
    graceful_shutdown_s: float
    overrides: dict[str, Any]


def settings_from(overrides: Mapping[str, Any]) -> Settings:
    """The settings of this service: the CXR_* variables, with the command line's `overrides`."""
    from service.config import Settings

    return Settings.from_env(os.environ, **overrides)


def describe(error: ValidationError) -> str:
    """Each invalid setting and why, without the value given (it may be an API key)."""
    return "\n".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in error.errors())


def prepare_startup(overrides: Mapping[str, Any]) -> Startup | int:
    """The start-up, or the exit status for settings that are invalid or a model that cannot be
    served (the child has said why). The model is checked before the port is bound, so that a
    bad one stops start-up with a clear message. A child that dies (a crash in onnxruntime, the
    OOM killer) is reported too. One child and a pipe, no pool: a multiprocessing.Pool waits for
    a dead child for ever, and a pool's threads in the supervisor cost its workers memory
    (measured: 13 MB more in two workers after a load with concurrent.futures' pool)."""
    receiving, sending = FORK.Pipe(duplex=False)
    child = FORK.Process(target=_prepare_and_send, args=(sending, dict(overrides)), name="cxr-startup")
    child.start()
    sending.close()  # the child's copy is the only one left: its end of the pipe closes with it
    try:
        result: Startup | int = receiving.recv()
    except EOFError:
        child.join()
        log.error("cannot start: the start-up check of the settings and the model died (exit status %s)",
                  child.exitcode)
        return CANNOT_SERVE
    child.join()
    return result


def _prepare_and_send(sending: Connection, overrides: dict[str, Any]) -> None:
    sending.send(_prepare_here(overrides))
    sending.close()


def _prepare_here(overrides: dict[str, Any]) -> Startup | int:
    from pydantic import ValidationError

    from cxr_common.hardware import available_cores

    try:
        settings = settings_from(overrides)
    except ValidationError as exc:
        print(f"invalid configuration:\n{describe(exc)}", file=sys.stderr)
        return INVALID_CONFIGURATION
    configure_logging(settings.log_level)
    from service.http.app import load_classifier
    from service.inference.classifier import ModelLoadError

    try:
        provider = load_classifier(settings).provider
    except ModelLoadError as exc:
        log.error("cannot start: %s", exc)
        return CANNOT_SERVE
    return Startup(make_plan(settings, provider, available_cores()), settings.host, settings.port,
                   settings.log_level, settings.drain_s, settings.graceful_shutdown_s, overrides)
