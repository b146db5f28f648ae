"""Training does not import the service: what both need lives in cxr_common. Only the model
card's refusal measurement (model_export.refusals.ood_refusals) runs the service's decoding, and
it imports it when it runs."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT

IMPORT_EVERY_MODULE = """
import importlib, pkgutil, sys
import model_export
for module in pkgutil.walk_packages(model_export.__path__, "model_export."):
    importlib.import_module(module.name)
print(sorted(name for name in sys.modules if name == "service" or name.startswith("service.")))
"""


def test_no_module_of_model_export_loads_the_service():
    loaded = subprocess.run([sys.executable, "-c", IMPORT_EVERY_MODULE], cwd=REPO_ROOT, capture_output=True,
                            text=True, check=True, timeout=300).stdout.strip().splitlines()[-1]
    assert loaded == "[]"
