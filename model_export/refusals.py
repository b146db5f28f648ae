"""What the service's input check refuses, measured for the model card: the image check's
refusal rate on a set of X-rays, and the whole check (DICOM attributes, shape, image check) on
the out-of-distribution inputs of model_export.ood. This is the one part of training that runs
the service's own decoding, on purpose: the card reports what the service will do. The service
is imported only when that measurement runs, so no other command of model_export loads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from cxr_common.image_check import ImageCheck
from model_export.evaluate import predict_onnx
from model_export.ood import ood_sets


def image_scores(check: ImageCheck, session: ort.InferenceSession, pixels: np.ndarray) -> np.ndarray:
    features = predict_onnx(session, pixels).features
    if features is None:
        raise ValueError("the model carries an image check but no features output")
    return check.scores(features)


def refusal_rate(check: ImageCheck, session: ort.InferenceSession, pixels: np.ndarray) -> dict[str, Any]:
    scores = image_scores(check, session, pixels)
    return {"n": int(len(scores)), "refused": int((scores > check.threshold).sum()),
            "rate": float((scores > check.threshold).mean()) if len(scores) else 0.0}


def ood_refusals(session: ort.InferenceSession, check: ImageCheck, chest_xray: Path) -> dict[str, dict[str, Any]]:
    """Per out-of-distribution set: refused by the service's whole input check (DICOM attributes,
    shape, image check) and by the image check alone (attributes bypassed)."""
    from cxr_common.preprocessing import load_pixels
    from service.inputs.decoding import decode_upload
    from service.inputs.dicom import DicomPolicy, is_dicom
    from service.inputs.errors import ImageShapeError, NotChestXrayError
    from service.inputs.shape import DEFAULT_MAX_PIXELS

    size = session.get_inputs()[0].shape[1]
    result: dict[str, dict[str, Any]] = {}
    for set_name, inputs in ood_sets(chest_xray).items():
        rows: list[dict[str, Any]] = []
        for name, data in inputs.items():
            row: dict[str, Any] = {"input": name}
            try:
                pixels = decode_upload(data, size, DEFAULT_MAX_PIXELS).pixels
                row["refused_by"] = None
            except (NotChestXrayError, ImageShapeError) as exc:
                row["refused_by"] = getattr(exc, "reason", "shape")
                pixels = None
            if pixels is None:  # the image check alone, as if the attributes and shape had passed
                pixels = (decode_upload(data, size, DEFAULT_MAX_PIXELS, DicomPolicy(check=False)).pixels
                          if is_dicom(data) else load_pixels(data, size))
            score = float(image_scores(check, session, pixels[np.newaxis])[0])
            row["image_check_score"] = score
            row["image_check_refuses"] = score > check.threshold
            if row["refused_by"] is None and row["image_check_refuses"]:
                row["refused_by"] = "image_check"
            rows.append(row)
        result[set_name] = {
            "n": len(rows),
            "refused": sum(r["refused_by"] is not None for r in rows),
            "refused_by_image_check_alone": sum(r["image_check_refuses"] for r in rows),
            "inputs": rows,
        }
    return result
