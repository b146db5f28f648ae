"""The benchmark script runs end to end on real servers and images (a short run: the numbers
themselves are not asserted, only that each is measured and nothing failed)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow  # a whole (short) benchmark run


def test_a_short_benchmark_run_measures_every_figure_without_errors(shared_data, bundled_model):
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.serve", "--model", str(bundled_model), "--data", str(shared_data),
         "--seconds", "1", "--rounds", "1", "--cpu-rounds", "1", "--by-format"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    for figure in ("P preprocess-only", "M model-only", "bound", "naive baseline", "round 1:",
                   "service / naive baseline at c=16:", "service / bound at c=16, paired:",
                   "p50 at c=1 / one image:", "JPEGs only 1:", "DICOM only 1:", "  JPEGs only:", "  DICOM only:",
                   "cpu round 1:", "CPU per image: inherent"):
        assert figure in out, out
    for concurrency in (1, 4, 16, 64):
        assert re.search(rf"^service\s+c={concurrency}\s+\d+\.\d img/s .* errors 0$", out, re.M), out
    assert "errors at any concurrency:        0" in out
