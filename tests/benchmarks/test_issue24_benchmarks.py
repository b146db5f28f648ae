"""The CPU and memory benchmarks of issue 24 run end to end on real servers and images (short
runs: the figures are checked for being measured and plausible, not for their values)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow  # each starts real servers


def _run(module: str, *args: str, bundled_model, shared_data) -> str:
    run = subprocess.run([sys.executable, "-m", module, "--model", str(bundled_model), "--data", str(shared_data),
                          "--jpegs-only", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


def test_against_plain_measures_both_servers_at_each_level(shared_data, bundled_model):
    out = _run("benchmarks.against_plain", "--rounds", "1", "--seconds", "1", "--levels", "1", "4",
               bundled_model=bundled_model, shared_data=shared_data)
    for name in ("service", "plain"):
        for level in (1, 4):
            assert re.search(rf"^round 1 c={level}\s+{name}\s+\d+\.\d img/s .* CPU \d+\.\d\d ms/img$", out, re.M), out
        rest, after = map(float, re.search(rf"^{name}: RSS at rest (\d+) MB, after the rounds (\d+) MB$",
                                           out, re.M).groups())
        assert 30 < rest <= after, out
    assert re.search(r"^c=4: service / plain \d+\.\d\dx images/s", out, re.M), out


def test_memory_minute_reports_each_process_and_the_tree(shared_data, bundled_model):
    out = _run("benchmarks.memory_minute", "--seconds", "2", bundled_model=bundled_model, shared_data=shared_data)
    assert re.search(r"^process \d+ \(cxr-worker\): \d+ MB at rest$", out, re.M), out
    assert re.search(r"^\d+ images in 2 s at c=16, errors 0;", out, re.M), out
    assert re.search(r"^RSS, whole tree \(1 worker\): \d+ MB at rest, \d+ MB 1 s after the load, \d+ MB 4 s after$",
                     out, re.M), out
