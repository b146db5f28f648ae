"""What a runner does with uploads, apart from how it reaches the model: decode each one,
then pair the decoded images with their predictions (an error stays in its place)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.classifier import Prediction
from service.decoding import DecodedImage, decode_upload
from service.errors import ApiError


@dataclass(frozen=True)
class Scored:
    decoded: DecodedImage
    prediction: Prediction


def decode_all(files: list[bytes], size: int, max_pixels: int) -> list[DecodedImage | ApiError]:
    """Each file decoded, or the ApiError that says why it cannot be (the others go on)."""
    decoded: list[DecodedImage | ApiError] = []
    for data in files:
        try:
            decoded.append(decode_upload(data, size, max_pixels))
        except ApiError as exc:
            decoded.append(exc)
    return decoded


def pixels_of(decoded: list[DecodedImage | ApiError]) -> np.ndarray | None:
    """(N, S, S) uint8 of the images that decoded, None when none did."""
    good = [d.pixels for d in decoded if isinstance(d, DecodedImage)]
    return np.stack(good) if good else None


def attach(decoded: list[DecodedImage | ApiError], predictions: list[Prediction]) -> list[Scored | ApiError]:
    """`predictions` are for the decoded images, in order."""
    remaining = iter(predictions)
    return [d if isinstance(d, ApiError) else Scored(d, next(remaining)) for d in decoded]
