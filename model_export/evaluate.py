"""Score an exported ONNX model on any labelled folder, at the model's own threshold.

Writes metrics.json, roc.png and samples.png to the output folder and logs a table.
Uses only onnxruntime (not TensorFlow), exactly as the service runs the model.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from cxr_common.model_metadata import (  # noqa: E402
    FEATURES_OUTPUT,
    INPUT_NAME,
    LABELS,
    OUTPUT_NAME,
    VIRAL_OUTPUT,
    ModelMetadata,
)
from cxr_common.preprocessing import load_pixels, to_model_input  # noqa: E402
from model_export import dataset, metrics  # noqa: E402

log = logging.getLogger(__name__)

SAMPLE_GRID = (4, 6)  # rows, columns of the sample image grid
BATCH = 32


@dataclass(frozen=True)
class OnnxOutputs:
    pneumonia: np.ndarray  # (N,)
    viral: np.ndarray | None  # (N,) P(viral | pneumonia), where the model has the type head
    features: np.ndarray | None  # (N, D), where the model declares them


def predict_onnx(session: ort.InferenceSession, pixels: np.ndarray) -> OnnxOutputs:
    """The model's probabilities (and features) for uint8 pixels, in batches."""
    available = {output.name for output in session.get_outputs()}
    names = [name for name in (OUTPUT_NAME, VIRAL_OUTPUT, FEATURES_OUTPUT) if name in available]
    batches = [session.run(names, {INPUT_NAME: to_model_input(pixels[i : i + BATCH])})
               for i in range(0, len(pixels), BATCH)]
    joined = {name: np.concatenate([batch[k] for batch in batches]) for k, name in enumerate(names)}
    return OnnxOutputs(
        joined[OUTPUT_NAME][:, 0],
        joined[VIRAL_OUTPUT][:, 0] if VIRAL_OUTPUT in joined else None,
        joined.get(FEATURES_OUTPUT),
    )


def evaluate(model_path: Path, data: Path, out: Path, labels_csv: Path | None = None,
             split: str | None = None) -> dict[str, Any]:
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    metadata = ModelMetadata.from_props(session.get_modelmeta().custom_metadata_map)
    folder = Path(data) / split if split else Path(data)
    found = dataset.discover(folder, labels_csv)
    examples = found.examples
    pixels = np.stack([load_pixels(e.path, metadata.input_size) for e in examples])
    labels = np.array([e.label for e in examples])
    outputs = predict_onnx(session, pixels)
    probabilities = outputs.pneumonia
    result = metrics.classification_metrics(labels, probabilities, metadata.threshold)
    typed = np.array([e.pneumonia_type is not None for e in examples])
    if outputs.viral is not None and typed.any():
        viral = np.array([e.pneumonia_type == "viral" for e in examples])
        result["pneumonia_type"] = metrics.type_metrics(viral[typed], outputs.viral[typed])
    result["model"] = f"{metadata.model_name} {metadata.model_version}"
    result["data"] = f"{folder}: {found.summary()}"

    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    plot_roc(labels, probabilities, metadata.threshold, result["roc_auc"], out / "roc.png")
    plot_samples(examples, pixels, probabilities, metadata.threshold, out / "samples.png")
    log.info("\n%s", metrics.format_table(result, f"{result['model']} on {result['data']}"))
    if "pneumonia_type" in result:
        log.info("\n%s", metrics.format_type_table(result["pneumonia_type"]))
    log.info("wrote %s, roc.png and samples.png", out / "metrics.json")
    return result


def plot_roc(labels: np.ndarray, probabilities: np.ndarray, threshold: float, auc: float, path: Path) -> None:
    figure, axis = plt.subplots(figsize=(5, 5))
    if len(np.unique(labels)) == 2:
        fpr, tpr, _ = roc_curve(labels, probabilities)
        axis.plot(fpr, tpr, label=f"ROC (AUC {auc:.3f})")
        predicted = probabilities >= threshold
        axis.plot(
            [predicted[labels == 0].mean()], [predicted[labels == 1].mean()], "o",
            label=f"threshold {threshold:.3f}",
        )
    axis.plot([0, 1], [0, 1], "--", color="grey", linewidth=1)
    axis.set_xlabel("1 - specificity (false positive rate)")
    axis.set_ylabel("sensitivity (true positive rate)")
    axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_samples(examples: list[dataset.Example], pixels: np.ndarray, probabilities: np.ndarray, threshold: float, path: Path,
                 seed: int = 0) -> None:
    """A grid of random images titled actual / predicted (p), mistakes in red."""
    rows, columns = SAMPLE_GRID
    chosen = np.random.default_rng(seed).permutation(len(examples))[: rows * columns]
    figure, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.4 * rows))
    for axis in np.ravel(axes):
        axis.axis("off")
    for axis, i in zip(np.ravel(axes), chosen):
        predicted = int(probabilities[i] >= threshold)
        axis.imshow(pixels[i], cmap="gray")
        axis.set_title(
            f"{LABELS[examples[i].label]} / {LABELS[predicted]}\np={probabilities[i]:.2f}",
            fontsize=8, color="black" if predicted == examples[i].label else "red",
        )
    figure.suptitle("actual / predicted (p = pneumonia probability)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
