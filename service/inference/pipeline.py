"""What a runner does with uploads, apart from how it reaches the model: decode each one,
then pair the decoded images with their predictions (an error stays in its place, so a batch
fails per file, always), then draw the heatmaps asked for."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np

from service.http.errors import ApiError, api_error_for
from service.inference.classifier import Classifier, Prediction
from service.inference.heatmap import Heatmap, make_heatmap
from service.inputs.chest_check import InputCheck, judge_image
from service.inputs.decoding import DecodedImage, decode_upload
from service.inputs.errors import NotChestXrayError
from service.inputs.limits import Limits

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scored:
    decoded: DecodedImage
    prediction: Prediction
    warning: str | None = None  # CXR_INPUT_CHECK=flag: why the image may not be a chest X-ray
    heatmap: Heatmap | None = None  # ?heatmap=true


def decode_one(data: bytes, size: int, limits: Limits, with_preview: bool = False) -> DecodedImage | ApiError:
    """The decoded file, or the ApiError that says why it cannot be; never raises."""
    try:
        return decode_upload(data, size, limits.max_pixels, limits.dicom, with_preview)
    except Exception as exc:  # noqa: BLE001 - each file's failure stays with that file
        error = api_error_for(exc)
        if error.status >= 500:
            log.exception("unexpected error while decoding an upload")
        return error


def decode_all(files: list[bytes], size: int, limits: Limits,
               with_preview: bool = False) -> list[DecodedImage | ApiError]:
    return [decode_one(data, size, limits, with_preview) for data in files]


def pixels_of(decoded: list[DecodedImage | ApiError]) -> np.ndarray | None:
    """(N, S, S) uint8 of the images that decoded, None when none did."""
    good = [d.pixels for d in decoded if isinstance(d, DecodedImage)]
    return np.stack(good) if good else None


def attach(decoded: list[DecodedImage | ApiError], predictions: list[Prediction]) -> list[Scored | ApiError]:
    """`predictions` are for the decoded images, in order."""
    remaining = iter(predictions)
    return [d if isinstance(d, ApiError) else Scored(d, next(remaining)) for d in decoded]


def with_heatmaps(results: list[Scored | ApiError]) -> list[Scored | ApiError]:
    """Each scored image with its heatmap (it was decoded with a preview and scored with its CAM)."""
    return [
        replace(r, heatmap=make_heatmap(r.prediction.cam, r.decoded.preview))
        if isinstance(r, Scored) and r.prediction.cam is not None and r.decoded.preview is not None else r
        for r in results
    ]


def check_images(results: list[Scored | ApiError], classifier: Classifier, mode: InputCheck) -> list[Scored | ApiError]:
    """The image check (service.inputs.chest_check) applied to each scored image: a refusal in
    the file's place, a warning beside its answer, or nothing."""
    checked: list[Scored | ApiError] = []
    for result in results:
        if not isinstance(result, Scored):
            checked.append(result)
            continue
        try:
            warning = judge_image(result.prediction.image_score, classifier.image_check, mode)
        except NotChestXrayError as exc:
            checked.append(api_error_for(exc))
            continue
        checked.append(replace(result, warning=warning) if warning else result)
    return checked
