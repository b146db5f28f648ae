"""What `publish` writes into a model so that it can vouch for its inputs and for itself:
the image check (is this a chest X-ray?) and the reference check (does this machine compute
what the float model computed?). See cxr_common.image_check and cxr_common.reference_check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from sklearn.covariance import LedoitWolf

from cxr_common import image_check, reference_check
from cxr_common.image_check import ImageCheck
from cxr_common.model_metadata import INPUT_NAME
from cxr_common.preprocessing import to_model_input
from cxr_common.reference_check import ReferenceCheck, full, half
from model_export.evaluate import predict_onnx

# The image check's threshold: a high quantile of the training images' own distances, with a
# margin, since training images sit closer to the mean than unseen ones. Set on training data
# only; the card reports what share of each validation set passes (at least 99% required).
THRESHOLD_QUANTILE = 0.999
THRESHOLD_MARGIN = 1.25
THRESHOLD_RULE = (f"{THRESHOLD_MARGIN:g} x the {100 * THRESHOLD_QUANTILE:g}th percentile of the training "
                  "images' Mahalanobis distances (Ledoit-Wolf covariance of the pooled features)")
REFERENCE_IMAGES_PER_CLASS = 4
FLOAT_TOLERANCE = 0.01  # float kernels differ by ~1e-6 across CPUs; a broken model by far more
INT8_TOLERANCE = 0.1  # int8 on a CPU where it is exact: < 0.05 measured; saturating kernels: ~0.9


def fit_image_check(session: ort.InferenceSession, train_pixels: np.ndarray) -> tuple[ImageCheck, np.ndarray]:
    """The check fitted on the training images' features; also their distances."""
    features = predict_onnx(session, train_pixels).features
    if features is None:
        raise ValueError("the model has no 'features' output; the image check needs one")
    shrunk = LedoitWolf().fit(features.astype(np.float64))
    provisional = ImageCheck(shrunk.location_, shrunk.precision_, np.inf, THRESHOLD_RULE)
    distances = provisional.scores(features)
    threshold = float(THRESHOLD_MARGIN * np.quantile(distances, THRESHOLD_QUANTILE))
    return ImageCheck(shrunk.location_, shrunk.precision_, threshold, THRESHOLD_RULE), distances


def reference_indices(labels: np.ndarray, probabilities: np.ndarray, seed: int) -> list[int]:
    """A few clear normal and pneumonia validation images (seeded choice among each class's most
    confidently right quarter): a wrong kernel moves them far, a right one barely."""
    rng = np.random.default_rng(seed)
    chosen = []
    for label in (0, 1):
        members = np.flatnonzero(labels == label)
        confident = members[np.argsort(probabilities[members] if label == 0 else -probabilities[members])]
        pool = confident[: max(REFERENCE_IMAGES_PER_CLASS, len(confident) // 4)]
        chosen += sorted(rng.choice(pool, size=min(REFERENCE_IMAGES_PER_CLASS, len(pool)), replace=False).tolist())
    return chosen


def make_reference_check(float_session: ort.InferenceSession, pixels: np.ndarray, tolerance: float) -> ReferenceCheck:
    """`pixels` (N, S, S) uint8 stored at half resolution, with the float model's outputs."""
    images = [half(p) for p in pixels]
    names = [o.name for o in float_session.get_outputs() if o.name in reference_check.CHECKED_OUTPUTS]
    inputs = to_model_input(np.stack([full(image) for image in images]))
    found = float_session.run(names, {INPUT_NAME: inputs})
    return ReferenceCheck(images, {n: [float(v) for v in out.reshape(-1)] for n, out in zip(names, found)}, tolerance)


def largest_reference_difference(path: Path, check: ReferenceCheck) -> float:
    return check.largest_difference_on(ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]))


def update_metadata(path: Path, updates: dict[str, str]) -> None:
    """Set metadata keys of an ONNX file in place (others kept)."""
    model = onnx.load(str(path))
    props = {p.key: p.value for p in model.metadata_props} | updates
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, props)
    onnx.save(model, str(path))


def checks_metadata(check: ImageCheck, reference: ReferenceCheck) -> dict[str, str]:
    return {image_check.METADATA_KEY: check.to_json(), reference_check.METADATA_KEY: reference.to_json()}
