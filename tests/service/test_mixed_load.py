"""The bounded mixed load test (benchmarks/mixed_load.py) at concurrency 32 against the real
service with two workers: good, bad, slow and vanishing clients, scan bombs (refused 422) and a
trickling upload (cut off 408), every request answered, no 5xx, memory flat; and again with
SIGTERM half way, every accepted request answered."""

from __future__ import annotations

import pytest

from benchmarks.mixed_load import run

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("sigterm_at", [None, 8.0], ids=["steady", "sigterm"])
def test_mixed_clients_at_concurrency_32(bundled_model, shared_data, sigterm_at, capsys):
    passed = run(bundled_model, shared_data, seconds=16, concurrency=32, workers=2, sigterm_at=sigterm_at)
    assert passed, capsys.readouterr().out
