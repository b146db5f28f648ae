"""Decode uploads off the event loop, then score them through the runner (batched or not)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from anyio import to_thread

from service.batching import DirectRunner
from service.classifier import Prediction
from service.decoding import DecodedImage, decode_upload
from service.errors import ApiError
from service.metrics import ServiceMetrics


@dataclass(frozen=True)
class Scored:
    decoded: DecodedImage
    prediction: Prediction


def _decode_all(files: list[bytes], size: int, max_pixels: int) -> list[DecodedImage | ApiError]:
    """Each file decoded, or the ApiError that says why it cannot be (the others go on)."""
    decoded: list[DecodedImage | ApiError] = []
    for data in files:
        try:
            decoded.append(decode_upload(data, size, max_pixels))
        except ApiError as exc:
            decoded.append(exc)
    return decoded


async def score(files: list[bytes], runner: DirectRunner, max_pixels: int,
                metrics: ServiceMetrics) -> list[Scored | ApiError]:
    # Pillow and pydicom release the GIL while decoding: threads decode in parallel
    with runner.decoding():
        decoded = await to_thread.run_sync(_decode_all, files, runner.classifier.input_size, max_pixels)
    good = [d for d in decoded if isinstance(d, DecodedImage)]
    predictions = iter(await runner.predict(np.stack([d.pixels for d in good])) if good else ())
    results = [d if isinstance(d, ApiError) else Scored(d, next(predictions)) for d in decoded]
    for result in results:
        if isinstance(result, Scored):
            metrics.predictions.labels(result.prediction.label).inc()
    return results
