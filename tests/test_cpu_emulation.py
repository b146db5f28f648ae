"""The shipped models on a CPU this machine is not: Haswell (AVX2, no AVX-512, no VNNI), run by
Debian's qemu-user. Each must pass its own reference check there, as the service runs it at
start-up; a full-range int8 twin, which saturates on such CPUs, must fail it (so the check and
the emulation can see the fault, and the 7-bit weights are what prevents it)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest

from cxr_common.hardware import cpu_features
from tests.conftest import BUNDLED_INT8_MODEL, BUNDLED_MODEL, REPO_ROOT

QEMU = shutil.which("qemu-x86_64")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(QEMU is None, reason="qemu-user is not installed (apt-get install qemu-user); "
                                            "the AVX2-only CPU cannot be emulated here"),
]
# The model's own reference check on EMULATED_IMAGES of its reference images (the first, a normal,
# and the last, a pneumonia), in a process that
# imports only onnxruntime and cxr_common: emulated, the 1.2 GFLOP v3 graph runs some 50x slower
# than natively, and the service's full start-up (8 images, warm-up) took 6.5 minutes per model.
EMULATED_IMAGES = 2
CHECK = """
import sys
import numpy as np, onnxruntime as ort
from cxr_common.reference_check import METADATA_KEY, ReferenceCheck
options = ort.SessionOptions(); options.intra_op_num_threads = 1
session = ort.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
check = ReferenceCheck.from_json(session.get_modelmeta().custom_metadata_map[METADATA_KEY])
chosen = np.linspace(0, len(check.images) - 1, int(sys.argv[2])).round().astype(int).tolist()  # normals first, then pneumonias
largest = check.subset(chosen).largest_difference_on(session)
if not largest <= check.tolerance:
    print(f"the model fails its reference check: largest difference {largest:.3g}"); sys.exit(1)
print(largest, check.tolerance)
"""


def _on_haswell(model) -> subprocess.CompletedProcess:
    return subprocess.run([QEMU, "-cpu", "Haswell", sys.executable, "-c", CHECK, str(model), str(EMULATED_IMAGES)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("model", [BUNDLED_MODEL, BUNDLED_INT8_MODEL], ids=["float", "int8"])
def test_shipped_models_pass_their_reference_check_on_an_avx2_only_cpu(model):
    result = _on_haswell(model)
    assert result.returncode == 0, result.stdout + result.stderr
    difference, tolerance = map(float, result.stdout.split()[-2:])
    assert difference <= tolerance


def test_a_full_range_int8_twin_fails_its_reference_check_on_an_avx2_only_cpu(tmp_path, shared_data):
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from cxr_common.reference_check import METADATA_KEY
    from model_export.checks import update_metadata
    from model_export.quantize import PixelsReader
    from service.inference.classifier import Classifier

    paths = [p for kind in ("NORMAL", "PNEUMONIA") for p in sorted((shared_data / "train" / kind).iterdir())[:64]]
    calibration = np.stack([np.asarray(_pixels(p)) for p in paths])
    twin = tmp_path / "full-range-int8.onnx"
    quantize_static(str(BUNDLED_MODEL), str(twin), PixelsReader(calibration), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax)  # 8-bit weights: what v1 shipped
    props = {p.key: p.value for p in onnx.load(str(BUNDLED_INT8_MODEL)).metadata_props}
    update_metadata(twin, props)  # the shipped int8 model's metadata, reference check included
    assert METADATA_KEY in props
    if "avx512_vnni" in cpu_features():
        Classifier(twin)  # where the kernels are exact, the twin passes...
    result = _on_haswell(twin)  # ...and where they saturate, it is refused
    assert result.returncode == 1, result.stdout + result.stderr
    assert "fails its reference check" in result.stdout


def _pixels(path):
    from cxr_common.preprocessing import load_pixels

    return load_pixels(path)
