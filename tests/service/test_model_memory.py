"""A loaded model holds its weights once per session, not the model file's bytes as well (issue 24:
memory per worker)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT

# RSS growth of a fresh process while it loads and checks the model as a worker does: both
# sessions (one thread, and the solo session), the image check, the reference check
PROBE = """
import ctypes, gc, sys
from pathlib import Path
from service.process.memory import keep_freed_memory, resident_bytes
keep_freed_memory()
from service.inference.classifier import Classifier
trim = ctypes.CDLL(None).malloc_trim
gc.collect(); trim(0); before = resident_bytes()
classifier = Classifier(Path(sys.argv[1]), intra_op_threads=1, solo_threads=2)
gc.collect(); trim(0); print(resident_bytes() - before)
"""


def test_the_loaded_model_does_not_keep_the_file_in_memory(bundled_model):
    grown = int(subprocess.run([sys.executable, "-c", PROBE, str(bundled_model)], cwd=REPO_ROOT,
                               capture_output=True, text=True, check=True).stdout)
    size = bundled_model.stat().st_size
    # measured: 49 MB for the 16 MB file (two copies of the weights, and onnxruntime's own start-up
    # of about 10 MB); sessions made from the file's bytes in memory held 65 MB
    assert grown < 2 * size + 28 * 2**20, f"{grown / 2**20:.1f} MB for a {size / 2**20:.1f} MB model"
