"""Start-up in the supervisor (service.__main__, service.process.startup): the order of its
steps, what it says about invalid settings, and a start-up check that dies."""

from __future__ import annotations

import logging
import os

import pytest
from pydantic import ValidationError

import service.__main__ as entry
from service.config import Settings
from service.process import startup


def test_the_allocator_is_set_before_the_start_up_child(monkeypatch):
    """glibc fixes how many malloc arenas a process may have when a thread first allocates, and
    what the supervisor sets its workers inherit: set after a start-up check that ran a pool's
    threads, the settings were lost and a worker's scoring threads kept memory after the idle
    release (34-54 MB against 21 MB of anonymous memory, docs/performance.md 2026-12-08)."""
    calls: list[str] = []
    monkeypatch.setattr(entry, "configure_logging", lambda level="INFO": None)
    monkeypatch.setattr(entry, "configure_process", lambda: calls.append("allocator"))
    monkeypatch.setattr(entry, "prepare_startup", lambda overrides: calls.append("start-up child") or 2)
    assert entry.main([]) == 2
    assert calls == ["allocator", "start-up child"]


def test_invalid_settings_are_described_without_their_values():
    with pytest.raises(ValidationError) as raised:
        Settings(port=0, log_level="s3cr3t-value")
    text = startup.describe(raised.value)
    assert "port:" in text and "log_level: " in text
    assert "s3cr3t-value" not in text


def test_a_logging_level_is_checked():
    assert Settings(log_level="warning").log_level == "WARNING"
    logging.addLevelName(15, "VERBOSE")  # as tf2onnx does, imported in the same test session
    for name in ("verbose", "loud"):
        with pytest.raises(ValidationError):
            Settings(log_level=name)


def _die(overrides):
    os._exit(9)  # as a segfault in onnxruntime or the OOM killer would end it


def test_a_start_up_check_that_dies_stops_start_up(monkeypatch, caplog):
    """A multiprocessing.Pool would wait for a dead child for ever; the service must stop instead."""
    monkeypatch.setattr(startup, "_prepare_here", _die)  # the forked child runs this copy
    assert startup.prepare_startup({}) == startup.CANNOT_SERVE
    assert "start-up check of the settings and the model died" in caplog.text
