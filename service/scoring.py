"""Decode uploads and score them, off the event loop (a worker thread per call)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from anyio import to_thread

from service.classifier import Classifier, Prediction
from service.decoding import DecodedImage, decode_upload
from service.errors import ApiError
from service.metrics import ServiceMetrics


@dataclass(frozen=True)
class Scored:
    decoded: DecodedImage
    prediction: Prediction


def _score_all(files: list[bytes], classifier: Classifier, max_pixels: int) -> list[Scored | ApiError]:
    """Decode each file (a bad one becomes its ApiError), then run the good ones as one batch."""
    decoded: list[DecodedImage | ApiError] = []
    for data in files:
        try:
            decoded.append(decode_upload(data, classifier.input_size, max_pixels))
        except ApiError as exc:
            decoded.append(exc)
    good = [d for d in decoded if isinstance(d, DecodedImage)]
    predictions = iter(classifier.predict(np.stack([d.pixels for d in good]))) if good else iter(())
    return [d if isinstance(d, ApiError) else Scored(d, next(predictions)) for d in decoded]


async def score(files: list[bytes], classifier: Classifier, max_pixels: int,
                metrics: ServiceMetrics) -> list[Scored | ApiError]:
    results = await to_thread.run_sync(_score_all, files, classifier, max_pixels)
    scored = [r for r in results if isinstance(r, Scored)]
    if scored:
        metrics.batch_size.observe(len(scored))
    for result in scored:
        metrics.predictions.labels(result.prediction.label).inc()
    return results
