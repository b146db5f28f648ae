"""Models that carry their own check: a few real inputs and the float model's outputs for them.

Written by `publish` into every model's metadata ('reference_check'); run by the service at
start-up, which refuses a model whose outputs differ by more than the tolerance: int8 kernels
that compute something else on some CPU, a damaged or tampered file, a runtime upgrade that
changes numerics, a wrong execution provider.

Inputs are stored at half resolution (the network averages 2x2 blocks first), as 8-bit PNG,
and restored by repeating each pixel 2x2: an exact input of the model's size, 4x smaller.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from cxr_common.preprocessing import to_model_input

if TYPE_CHECKING:
    import onnxruntime as ort

METADATA_KEY = "reference_check"
CHECKED_OUTPUTS = ("pneumonia_probability", "viral_probability")


def _png(pixels: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(pixels, "L").save(buffer, format="PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode()


def _unpng(text: str) -> np.ndarray:
    with Image.open(io.BytesIO(base64.b64decode(text)), formats=("PNG",)) as image:
        return np.asarray(image.convert("L"), dtype=np.uint8)


def half(pixels: np.ndarray) -> np.ndarray:
    """(S, S) uint8 -> (S/2, S/2) uint8, the 2x2 block mean (what the network sees), rounded."""
    size = pixels.shape[0] // 2
    blocks = pixels[: 2 * size, : 2 * size].astype(np.float32).reshape(size, 2, size, 2)
    halved: np.ndarray = np.rint(blocks.mean(axis=(1, 3))).astype(np.uint8)
    return halved


def full(pixels: np.ndarray) -> np.ndarray:
    """Each pixel repeated 2x2: the exact model input for stored half-resolution pixels."""
    return pixels.repeat(2, axis=0).repeat(2, axis=1)


@dataclass(frozen=True)
class ReferenceCheck:
    images: list[np.ndarray]  # (S/2, S/2) uint8 each
    outputs: dict[str, list[float]]  # the float model's outputs, per output name
    tolerance: float  # largest |difference| allowed on any of them

    def inputs(self) -> np.ndarray:
        return np.stack([full(image) for image in self.images])

    def largest_difference(self, outputs: dict[str, np.ndarray]) -> float:
        """Over the outputs both sides have; inf when the model lacks an expected output."""
        largest = 0.0
        for name, expected in self.outputs.items():
            if name not in outputs:
                return float("inf")
            got = np.asarray(outputs[name], dtype=np.float64).reshape(-1)
            difference = np.abs(got - np.asarray(expected, dtype=np.float64))
            largest = max(largest, float(np.max(difference)) if np.all(np.isfinite(got)) else float("inf"))
        return largest

    def subset(self, indices: list[int]) -> ReferenceCheck:
        """The same check on some of its images (a slow, emulated CPU runs only a few)."""
        per_image = {name: np.asarray(values).reshape(len(self.images), -1) for name, values in self.outputs.items()}
        return ReferenceCheck([self.images[i] for i in indices],
                              {name: values[indices].ravel().tolist() for name, values in per_image.items()},
                              self.tolerance)

    def largest_difference_on(self, session: ort.InferenceSession) -> float:
        """Runs the reference inputs through an onnxruntime session and compares."""
        names = [o.name for o in session.get_outputs() if o.name in self.outputs]
        found = session.run(names, {session.get_inputs()[0].name: to_model_input(self.inputs())})
        return self.largest_difference(dict(zip(names, found)))

    def to_json(self) -> str:
        return json.dumps({"images": [_png(image) for image in self.images], "outputs": self.outputs,
                           "tolerance": self.tolerance})

    @classmethod
    def from_json(cls, text: str) -> ReferenceCheck:
        try:
            found = json.loads(text)
            return cls([_unpng(t) for t in found["images"]],
                       {k: [float(x) for x in v] for k, v in found["outputs"].items()},
                       float(found["tolerance"]))
        except (KeyError, TypeError, ValueError, OSError) as exc:
            raise ValueError(f"model metadata 'reference_check' is invalid: {exc}") from exc
