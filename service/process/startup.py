"""What the supervisor starts from, worked out in a child process that then exits.

The settings are validated (pydantic) and the model loaded and checked (onnxruntime) in a child
forked for that alone, which hands back a plain `Start` and exits, so that the supervisor holds
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
from typing import TYPE_CHECKING, Any

from service.process.logs import configure_logging
from service.process.plan import ServingPlan, make_plan

if TYPE_CHECKING:
    from service.config import Settings

log = logging.getLogger("service")

# the supervisor has no thread and no onnxruntime, so a fork copies a plain interpreter
FORK = multiprocessing.get_context("fork")

INVALID_CONFIGURATION, CANNOT_SERVE = 2, 1  # exit statuses of `python -m service`


@dataclass(frozen=True)
class Start:
    """The serving plan and the few settings the supervisor itself uses."""

    plan: ServingPlan
    host: str
    port: int
    log_level: str
    drain_s: float
    graceful_shutdown_s: float


def settings_from(overrides: Mapping[str, Any]) -> Settings:
    """The settings of this service: the CXR_* variables, with the command line's `overrides`."""
    from service.config import Settings

    return Settings.from_env(os.environ, **overrides)


def prepare_start(overrides: Mapping[str, Any]) -> Start | int:
    """The start, or the exit status for settings that are invalid or a model that cannot be
    served (the child has said why on stderr). The model is checked before the port is bound, so
    that a bad one stops start-up with a clear message."""
    with FORK.Pool(1) as pool:
        result: Start | int = pool.apply(_prepare_here, (dict(overrides),))
    return result


def _prepare_here(overrides: dict[str, Any]) -> Start | int:
    from pydantic import ValidationError

    from cxr_common.hardware import available_cores

    try:
        settings = settings_from(overrides)
    except ValidationError as exc:
        print(f"invalid configuration:\n{exc}", file=sys.stderr)
        return INVALID_CONFIGURATION
    configure_logging(settings.log_level)
    from service.http.app import load_classifier
    from service.inference.classifier import ModelLoadError

    try:
        provider = load_classifier(settings).provider
    except ModelLoadError as exc:
        log.error("cannot start: %s", exc)
        return CANNOT_SERVE
    return Start(make_plan(settings, provider, available_cores()), settings.host, settings.port,
                 settings.log_level, settings.drain_s, settings.graceful_shutdown_s)
