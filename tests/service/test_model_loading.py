"""Loading the model: its weights held once per session, not the model file's bytes as well
(issue 24: memory per worker), and a hash that names what was loaded."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from service.inference.classifier import _same_file
from tests.conftest import REPO_ROOT

# RSS growth of a fresh process while it loads and checks the model as a worker does: both
# sessions (one thread, and the solo session), the image check, the reference check
PROBE = """
import sys
from pathlib import Path
from service.process.memory import keep_freed_memory, release_freed_memory, resident_bytes
keep_freed_memory()
from service.inference.classifier import Classifier
release_freed_memory(); before = resident_bytes()
classifier = Classifier(Path(sys.argv[1]), intra_op_threads=1, solo_threads=2)
release_freed_memory(); print(resident_bytes() - before)
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="reads /proc and trims with glibc's malloc_trim")
def test_the_loaded_model_does_not_keep_the_file_in_memory(bundled_model):
    grown = int(subprocess.run([sys.executable, "-c", PROBE, str(bundled_model)], cwd=REPO_ROOT,
                               capture_output=True, text=True, check=True).stdout)
    size = bundled_model.stat().st_size
    # measured: 49 MB for the 16 MB file (two copies of the weights, and onnxruntime's own start-up
    # of about 10 MB); sessions made from the file's bytes in memory held 65 MB
    assert grown < 2 * size + 24 * 2**20, f"{grown / 2**20:.1f} MB for a {size / 2**20:.1f} MB model"


def test_a_model_file_replaced_while_it_loads_is_noticed(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"the model that was hashed")
    hashed = os.stat(path)
    assert _same_file(hashed, path)
    replacement = tmp_path / "new.onnx"
    replacement.write_bytes(b"another model, put in its place")
    replacement.replace(path)  # how a deployment swaps a file
    assert not _same_file(hashed, path)
