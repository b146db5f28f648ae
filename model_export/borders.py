"""Do frames, letterboxes and burned-in text change the label? `python -m model_export borders`.

Each held-out validation image (every set the model card lists) is re-encoded as an upload
would arrive (JPEG, quality 90) with and without what scanners and exports add around the
chest; both go through the shared preprocessing and the ONNX model, and we count how often the
label at the model's threshold stays the same. Model v2 with preprocessing version 1 flipped 7 of
17 pneumonias with a 5 % black frame (issue 25); borders are now removed by the preprocessing and
the pretrained member is trained with border, letterbox and text augmentation.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageDraw, ImageOps

from cxr_common.model_metadata import ModelMetadata
from cxr_common.preprocessing import load_pixels
from model_export import dataset
from model_export.evaluate import predict_onnx

log = logging.getLogger(__name__)


def framed(image: Image.Image, share: float, value: int) -> Image.Image:
    """A uniform frame of `share` of the size on every side, grey level `value`."""
    pad_x, pad_y = round(image.width * share), round(image.height * share)
    canvas = Image.new("L", (image.width + 2 * pad_x, image.height + 2 * pad_y), value)
    canvas.paste(image, (pad_x, pad_y))
    return canvas


def letterboxed(image: Image.Image, wide: float, tall: float) -> Image.Image:
    """Centred on a black canvas `wide` x `tall` times its size."""
    canvas = Image.new("L", (round(image.width * wide), round(image.height * tall)), 0)
    canvas.paste(image, ((canvas.width - image.width) // 2, (canvas.height - image.height) // 2))
    return canvas


def _with_text(image: Image.Image) -> Image.Image:
    """A side marker, a label and a date burned in near the corners, as exports carry them."""
    marked = image.copy()
    draw = ImageDraw.Draw(marked)
    size = max(12, image.height // 25)
    draw.text((image.width * 0.05, image.height * 0.05), "R", fill=255, font_size=size * 2)
    draw.text((image.width * 0.55, image.height * 0.04), "PORTABLE AP  SUPINE", fill=255, font_size=size)
    draw.text((image.width * 0.05, image.height * 0.92), "2026-11-30 03:14  ACC 778899", fill=255, font_size=size)
    return marked


VARIANTS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "5% black frame": lambda image: framed(image, 0.05, 0),
    "5% white frame": lambda image: framed(image, 0.05, 255),
    "letterbox 1.8x wide": lambda image: letterboxed(image, 1.8, 1.0),
    "letterbox 1.2x tall": lambda image: letterboxed(image, 1.0, 1.2),
    "burned-in text": _with_text,
}


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def measure(model: Path, data: Path, card: Path, out: Path | None = None) -> dict[str, Any]:
    """Label agreement and mean |dp| of every variant against the plain re-encoded image."""
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    metadata = ModelMetadata.from_props(session.get_modelmeta().custom_metadata_map)
    record = json.loads(card.read_text())
    found = dataset.discover(data, None, split="train")
    held = dataset.from_file_lists(found.examples, record["data"]["splits"]).validation_sets()
    examples = [example for examples in held.values() for example in examples]
    uploads: dict[str, list[Any]] = {name: [] for name in ("plain", *VARIANTS)}
    for example in examples:
        with Image.open(example.path) as opened:
            image = ImageOps.exif_transpose(opened).convert("L")
        uploads["plain"].append(load_pixels(_jpeg(image), metadata.input_size))
        for name, make in VARIANTS.items():
            uploads[name].append(load_pixels(_jpeg(make(image)), metadata.input_size))
    labels = np.array([example.label for example in examples])
    plain = predict_onnx(session, np.stack(uploads["plain"])).pneumonia
    result: dict[str, Any] = {"model": f"{metadata.model_name} {metadata.model_version}", "images": len(examples),
                    "threshold": metadata.threshold, "preprocessing_version": metadata.preprocessing_version,
                    "variants": {}}
    for name in VARIANTS:
        varied = predict_onnx(session, np.stack(uploads[name])).pneumonia
        flipped = (varied >= metadata.threshold) != (plain >= metadata.threshold)
        result["variants"][name] = {
            "labels_agree": float(1 - flipped.mean()),
            "pneumonia_called_normal": int((flipped & (labels == 1)).sum()),
            "normal_called_pneumonia": int((flipped & (labels == 0)).sum()),
            "mean_abs_probability_change": float(np.mean(np.abs(varied - plain))),
        }
        log.info("%s: labels agree on %.4f of %d images", name, result["variants"][name]["labels_agree"], len(examples))
    if out is not None:
        out.write_text(json.dumps(result, indent=2))
    return result
