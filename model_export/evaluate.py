"""Score an exported ONNX model on any labelled folder, at the model's own threshold.

Writes metrics.json, roc.png and samples.png to the output folder and logs a table.
Uses only onnxruntime (not TensorFlow), exactly as the service runs the model.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from cxr_common.model_metadata import INPUT_NAME, LABELS, ModelMetadata  # noqa: E402
from cxr_common.preprocessing import load_pixels, to_model_input  # noqa: E402
from model_export import dataset, metrics  # noqa: E402

log = logging.getLogger(__name__)

SAMPLE_GRID = (4, 6)  # rows, columns of the sample image grid
BATCH = 32


def predict_onnx(session: ort.InferenceSession, pixels: np.ndarray) -> np.ndarray:
    return np.concatenate([
        session.run(None, {INPUT_NAME: to_model_input(pixels[i : i + BATCH])})[0][:, 0]
        for i in range(0, len(pixels), BATCH)
    ])


def evaluate(model_path: Path, data: Path, out: Path, labels_csv: Path | None = None,
             split: str | None = None) -> dict:
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    metadata = ModelMetadata.from_props(session.get_modelmeta().custom_metadata_map)
    folder = Path(data) / split if split else Path(data)
    found = dataset.discover(folder, labels_csv)
    examples = found.examples
    pixels = np.stack([load_pixels(e.path, metadata.input_size) for e in examples])
    labels = np.array([e.label for e in examples])
    probabilities = predict_onnx(session, pixels)
    result = metrics.classification_metrics(labels, probabilities, metadata.threshold)
    result["model"] = f"{metadata.model_name} {metadata.model_version}"
    result["data"] = f"{folder}: {found.summary()}"

    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    plot_roc(labels, probabilities, metadata.threshold, result["roc_auc"], out / "roc.png")
    plot_samples(examples, pixels, probabilities, metadata.threshold, out / "samples.png")
    log.info("\n%s", metrics.format_table(result, f"{result['model']} on {result['data']}"))
    log.info("wrote %s, roc.png and samples.png", out / "metrics.json")
    return result


def plot_roc(labels, probabilities, threshold: float, auc: float, path: Path) -> None:
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


def plot_samples(examples, pixels, probabilities, threshold: float, path: Path, seed: int = 0) -> None:
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
