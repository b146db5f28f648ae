"""Train the classifier on real X-rays, pick its threshold on validation, export it to ONNX.

Top to bottom: discover data -> split by patient -> preprocess (cached) -> tf.data with
augmentation -> fit with early stopping and checkpoints (resumable) -> best weights ->
threshold on validation -> metrics -> ONNX export with parity check -> run.json.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from cxr_common.model_metadata import LABELS, ModelMetadata
from cxr_common.preprocessing import IMAGE_SIZE, PREPROCESSING_VERSION, to_model_input
from model_export import architectures, dataset, export, metrics
from model_export.augment import AugmentConfig, make_augment_fn
from model_export.cache import DEFAULT_CACHE_DIR, cache_path, load_or_preprocess
from model_export.history import plot_history

log = logging.getLogger(__name__)

PARITY_IMAGES = 64  # validation images the ONNX export is checked on


@dataclass
class TrainConfig:
    data: Path  # class folders (DIR/train/{NORMAL,PNEUMONIA}) or images + metadata CSV
    out: Path  # run folder: checkpoints, history.csv, history.png, model.onnx, run.json
    labels_csv: Path | None = None  # the CSV layout's metadata file
    architecture: str = "gapnet"
    image_size: int = IMAGE_SIZE
    batch_size: int = 32
    epochs: int = 60  # the published run's maximum; early stopping usually ends sooner
    learning_rate: float = 1e-4  # Adam, as published
    patience: int = 8  # epochs without a better validation AUC before stopping
    max_minutes: float | None = None  # stop after the epoch that crosses this wall time
    validation_fraction: float = 0.2
    seed: int = 42
    class_weights: bool = True  # ~1 normal : 2.9 pneumonia; weight classes equally
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    cache_dir: Path = DEFAULT_CACHE_DIR
    model_name: str = "cxr-pneumonia-gapnet"
    model_version: str = "1.0.0"


def run(config: TrainConfig) -> dict:
    started = time.monotonic()
    keras.utils.set_random_seed(config.seed)
    config.out.mkdir(parents=True, exist_ok=True)

    found = dataset.discover(config.data, config.labels_csv, split="train")
    train_examples, val_examples = dataset.split_by_patient(
        found.examples, config.validation_fraction, config.seed
    )
    log.info("split by patient: %d train, %d validation images", len(train_examples), len(val_examples))
    all_examples = train_examples + val_examples
    from_cache = cache_path(all_examples, config.image_size, config.cache_dir).exists()
    pixels = load_or_preprocess(all_examples, config.image_size, config.cache_dir)
    train_pixels, val_pixels = pixels[: len(train_examples)], pixels[len(train_examples):]
    train_labels = np.array([e.label for e in train_examples], dtype=np.float32)
    val_labels = np.array([e.label for e in val_examples], dtype=np.float32)
    preprocess_seconds = time.monotonic() - started

    model = fit(config, train_pixels, train_labels, val_pixels, val_labels)
    # fitting time summed over every invocation (resumes included), from the run's own state
    train_seconds = _read_state(config.out).get("elapsed_seconds", 0.0)

    val_probabilities = predict(model, val_pixels)
    threshold = metrics.choose_threshold(val_labels, val_probabilities)
    val_metrics = metrics.classification_metrics(val_labels, val_probabilities, threshold)
    log.info("\n%s", metrics.format_table(val_metrics, "validation (patient split)"))
    official = score_official_val(model, config, threshold)

    metadata = ModelMetadata(
        model_name=config.model_name,
        model_version=config.model_version,
        input_size=config.image_size,
        labels=LABELS,
        threshold=threshold,
        preprocessing_version=PREPROCESSING_VERSION,
        training_data_sha256=dataset.fingerprint(train_examples),
        validation_metrics=val_metrics,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        extra={"architecture": config.architecture, "threshold_rule": metrics.THRESHOLD_RULE},
    )
    model.save(config.out / "best.keras")
    parity = export.export(
        model, metadata, to_model_input(val_pixels[:PARITY_IMAGES]), config.out / "model.onnx"
    )
    summary = {
        "config": _jsonable(asdict(config)),
        "data": {
            "discovery": found.summary(),
            "train_images": len(train_examples),
            "validation_images": len(val_examples),
            "train_patients": len({e.patient for e in train_examples}),
            "validation_patients": len({e.patient for e in val_examples}),
            "train_class_counts": dataset.class_counts(train_examples),
            "validation_class_counts": dataset.class_counts(val_examples),
            "training_data_sha256": metadata.training_data_sha256,
        },
        "model": {
            "architecture": config.architecture,
            "parameters": model.count_params(),
            "gflops_per_image": architectures.count_flops(model) / 1e9,
        },
        "threshold": threshold,
        "threshold_rule": metrics.THRESHOLD_RULE,
        "validation_metrics": val_metrics,
        "official_val_metrics": official,
        "parity_max_abs_diff": parity,
        "timing": {
            "preprocess_seconds": round(preprocess_seconds, 1),
            "pixels_from_cache": from_cache,
            "train_seconds": round(train_seconds, 1),
            "total_seconds": round(preprocess_seconds + train_seconds, 1),
            "hardware": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, CPU only",
            "tensorflow": tf.__version__,
        },
        "epochs_run": _read_state(config.out).get("epoch", 0),
        "best_epoch": _read_state(config.out).get("best_epoch"),
        "created_at": metadata.created_at,
    }
    (config.out / "run.json").write_text(json.dumps(summary, indent=2))
    log.info("run written to %s", config.out)
    return summary


def fit(config, train_pixels, train_labels, val_pixels, val_labels) -> keras.Model:
    """Fit with early stopping on validation AUC; resumes from out/last.keras if present."""
    checkpoint_dir = config.out / "checkpoints"
    state = _read_state(config.out)
    if state and (checkpoint_dir / "last.keras").exists() and not state.get("finished"):
        log.info("resuming from epoch %d", state["epoch"])
        model = keras.models.load_model(checkpoint_dir / "last.keras")
    elif state.get("finished"):
        log.info("training already finished; loading best weights")
        model = keras.models.load_model(checkpoint_dir / "last.keras")
        model.load_weights(checkpoint_dir / "best.weights.h5")
        return model
    else:
        model = architectures.build(config.architecture, config.image_size)
        model.compile(
            optimizer=keras.optimizers.Adam(config.learning_rate),
            loss="binary_crossentropy",
            metrics=["accuracy", keras.metrics.AUC(name="auc")],
        )
    weights = _class_weights(train_labels) if config.class_weights else (1.0, 1.0)
    log.info("class weights: normal %.3f, pneumonia %.3f", *weights)
    train_data = _train_dataset(config, train_pixels, train_labels, weights)
    val_data = (
        tf.data.Dataset.from_tensor_slices((val_pixels, val_labels))
        .batch(config.batch_size)
        .map(lambda x, y: (_to_float(x), y))
        .prefetch(2)
    )
    progress = TrainingProgress(config, checkpoint_dir, state)
    model.fit(
        train_data,
        validation_data=val_data,
        epochs=config.epochs,
        initial_epoch=state.get("epoch", 0),
        callbacks=[keras.callbacks.CSVLogger(config.out / "history.csv", append=True), progress],
        verbose=1 if os.isatty(2) else 2,  # a progress bar on a terminal, a line per epoch in logs
    )
    progress.finish()
    model.load_weights(checkpoint_dir / "best.weights.h5")
    return model


def _to_float(images):
    # (N, S, S) uint8 -> (N, S, S, 1) float32 in 0..1: cxr_common.preprocessing.to_model_input in TF
    return tf.cast(images, tf.float32)[..., tf.newaxis] / 255.0


def _train_dataset(config, pixels, labels, weights):
    sample_weights = np.where(labels == 1, weights[1], weights[0]).astype(np.float32)
    augment = make_augment_fn(config.augment, config.seed)
    return (
        tf.data.Dataset.from_tensor_slices((pixels, labels, sample_weights))
        .shuffle(len(pixels), seed=config.seed, reshuffle_each_iteration=True)
        .batch(config.batch_size)
        .map(lambda x, y, w: augment(_to_float(x), y, w), num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(2)
    )


def _class_weights(labels: np.ndarray) -> tuple[float, float]:
    """n / (2 * n_class): each class contributes half of the loss."""
    positives = float(labels.sum())
    negatives = float(len(labels) - positives)
    return len(labels) / (2 * negatives), len(labels) / (2 * positives)


def predict(model: keras.Model, pixels: np.ndarray, batch_size: int = 64) -> np.ndarray:
    return np.concatenate(
        [model.predict(to_model_input(pixels[i : i + batch_size]), verbose=0)[:, 0]
         for i in range(0, len(pixels), batch_size)]
    )


def score_official_val(model, config: TrainConfig, threshold: float) -> dict | None:
    """The official 16-image val/ split, reported separately (never used for choices)."""
    folder = Path(config.data) / "val"
    if config.labels_csv is not None or not folder.is_dir():
        return None
    examples = dataset.discover(folder).examples
    pixels = load_or_preprocess(examples, config.image_size, config.cache_dir)
    labels = np.array([e.label for e in examples])
    result = metrics.classification_metrics(labels, predict(model, pixels), threshold)
    log.info("\n%s", metrics.format_table(result, "official val/ (16 images)"))
    return result


class TrainingProgress(keras.callbacks.Callback):
    """Per epoch: last checkpoint, best weights by validation AUC, state for resuming,
    early stopping (patience), the optional time budget and the loss/accuracy PNG."""

    MONITOR = "val_auc"

    def __init__(self, config: TrainConfig, checkpoint_dir: Path, state: dict):
        super().__init__()
        self.config, self.checkpoint_dir = config, checkpoint_dir
        self.best = state.get("best", -np.inf)
        self.best_epoch = state.get("best_epoch")
        self.wait = state.get("wait", 0)
        self.started = time.monotonic() - state.get("elapsed_seconds", 0.0)
        checkpoint_dir.mkdir(parents=True, exist_ok=True)

    def on_epoch_end(self, epoch, logs=None):
        value = float((logs or {})[self.MONITOR])
        if value > self.best:
            self.best, self.best_epoch, self.wait = value, epoch + 1, 0
            self.model.save_weights(self.checkpoint_dir / "best.weights.h5")
        else:
            self.wait += 1
        self.model.save(self.checkpoint_dir / "last.keras")  # weights + optimizer state
        elapsed = time.monotonic() - self.started
        _write_state(self.config.out, {
            "epoch": epoch + 1, "best": self.best, "best_epoch": self.best_epoch,
            "wait": self.wait, "elapsed_seconds": elapsed, "finished": False,
        })
        plot_history(self.config.out / "history.csv", self.config.out / "history.png")
        out_of_time = self.config.max_minutes and elapsed > 60 * self.config.max_minutes
        if self.wait >= self.config.patience or out_of_time:
            reason = "time budget" if out_of_time else f"no better {self.MONITOR} in {self.wait} epochs"
            log.info("stopping after epoch %d (%s); best epoch %s", epoch + 1, reason, self.best_epoch)
            self.model.stop_training = True

    def finish(self):
        state = _read_state(self.config.out)
        _write_state(self.config.out, state | {"finished": True})


def _read_state(out: Path) -> dict:
    path = out / "checkpoints" / "state.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _write_state(out: Path, state: dict) -> None:
    path = out / "checkpoints" / "state.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(state))
    temporary.replace(path)


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return str(value) if isinstance(value, Path) else value
