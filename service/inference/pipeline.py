"""One request's uploads, from bytes to answers: decode each one, predict the images that
decoded, check that each is a chest X-ray, draw the heatmaps asked for. `score_uploads` is the
whole pipeline in order; a runner that runs the model elsewhere (BatchingRunner) calls its two
halves, `decode_all` and `finish`, around its own prediction, so both runners do the same work.

A file that fails keeps its place as its domain error (service.inputs.errors), so a batch fails
per file, always; the HTTP edge turns each error into its answer (service.http.errors).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from service.inference.classifier import Classifier, Prediction
from service.inference.errors import DeadlineExceededError
from service.inference.heatmap import Heatmap, make_heatmap
from service.inputs.chest_check import judge_image
from service.inputs.decoding import DecodedImage, decode_upload
from service.inputs.errors import NotChestXrayError
from service.inputs.frame_decoder import DecodeStoppedError, request_stop
from service.inputs.limits import Limits


@dataclass(frozen=True)
class Scored:
    decoded: DecodedImage
    prediction: Prediction
    warning: str | None = None  # CXR_INPUT_CHECK=flag: why the image may not be a chest X-ray
    heatmap: Heatmap | None = None  # ?heatmap=true


# Each file's outcome, in order: its answer, or the error that says why it has none
Outcome = Scored | Exception
Decoded = DecodedImage | Exception
STOPPED = "not scored: its request ran past the deadline or its client left"


def stopped(stop: threading.Event | None) -> bool:
    """Whether the request this work is for has been answered without it (deadline, client gone)."""
    return stop is not None and stop.is_set()


def score_uploads(files: list[bytes], heatmap: bool, classifier: Classifier, limits: Limits,
                  predict: Callable[[np.ndarray, bool], list[Prediction]],
                  stop: threading.Event | None = None) -> list[Outcome]:
    """The pipeline: decode -> predict ((N, S, S) uint8 -> N predictions, with the CAM when
    `heatmap`) -> the image check -> heatmaps. Never raises for a file's fault. Once `stop` is
    set (the request was answered without this work), no further file is decoded or scored."""
    decoded = decode_all(files, classifier.input_size, limits, heatmap, stop)
    if stopped(stop):
        return [DeadlineExceededError(STOPPED) for _ in files]
    pixels = pixels_of(decoded)
    predictions = predict(pixels, heatmap) if pixels is not None else []
    return finish(decoded, predictions, classifier, limits, heatmap)


def decode_all(files: list[bytes], size: int, limits: Limits, with_preview: bool = False,
               stop: threading.Event | None = None) -> list[Decoded]:
    """Each file decoded, or its error; `stop` is looked at between files and by a compressed
    DICOM's decode in the child process, which is abandoned when it is set. A decode in this
    thread (JPEG, PNG, uncompressed DICOM) runs to its end: its cost is bounded before it starts
    (service.inputs.cost)."""
    token = request_stop.set(stop)
    try:
        return [DeadlineExceededError(STOPPED) if stopped(stop) else _decode_one(data, size, limits, with_preview)
                for data in files]
    finally:
        request_stop.reset(token)


def _decode_one(data: bytes, size: int, limits: Limits, with_preview: bool) -> Decoded:
    try:
        return decode_upload(data, size, limits.max_pixels, limits.dicom, with_preview, limits.cost)
    except DecodeStoppedError:
        return DeadlineExceededError(STOPPED)
    except Exception as exc:  # noqa: BLE001 - each file's failure stays with that file
        return exc


def pixels_of(decoded: list[Decoded]) -> np.ndarray | None:
    """(N, S, S) uint8 of the images that decoded, None when none did."""
    good = [d.pixels for d in decoded if isinstance(d, DecodedImage)]
    return np.stack(good) if good else None


def finish(decoded: list[Decoded], predictions: list[Prediction], classifier: Classifier, limits: Limits,
           heatmap: bool) -> list[Outcome]:
    """`predictions` (for the decoded images, in order) paired with their files, checked, and
    with their heatmaps when asked for."""
    remaining = iter(predictions)
    results = [_checked(Scored(d, next(remaining)), classifier, limits) if isinstance(d, DecodedImage) else d
               for d in decoded]
    return with_heatmaps(results) if heatmap else results


def _checked(result: Scored, classifier: Classifier, limits: Limits) -> Outcome:
    """The image check (service.inputs.chest_check): a refusal in the file's place, a warning
    beside its answer, or the answer as it is."""
    try:
        warning = judge_image(result.prediction.image_score, classifier.image_check, limits.image_check)
    except NotChestXrayError as exc:
        return exc
    return replace(result, warning=warning) if warning else result


def with_heatmaps(results: list[Outcome]) -> list[Outcome]:
    """Each scored image with its heatmap (it was decoded with a preview and scored with its CAM)."""
    return [
        replace(r, heatmap=make_heatmap(r.prediction.cam, r.decoded.preview))
        if isinstance(r, Scored) and r.prediction.cam is not None and r.decoded.preview is not None else r
        for r in results
    ]
