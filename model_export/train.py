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
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import keras
import numpy as np
import onnxruntime as ort
import tensorflow as tf

from cxr_common.model_metadata import LABELS, ModelMetadata
from cxr_common.preprocessing import IMAGE_SIZE, PREPROCESSING_VERSION, to_model_input
from model_export import architectures, dataset, export, metrics
from model_export.augment import AugmentConfig, make_augment_fn
from model_export.cache import cache_path, default_cache_dir, load_or_preprocess
from model_export.history import plot_history
from model_export.run_record import RunRecord, write_run

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
    # held out at each end of each patient-id series (0: none); see dataset.split_with_shift
    shift_block: float = 0.08
    seed: int = 42
    class_weights: bool = True  # ~1 normal : 2.9 pneumonia (~1.9 bacterial : 1 viral); weight classes equally
    label_smoothing: float = 0.0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    cache_dir: Path = field(default_factory=default_cache_dir)  # $CXR_CACHE_DIR or ~/.cache/cxr-pneumonia
    model_name: str = "cxr-pneumonia-gapnet"
    model_version: str = "1.0.0"


@dataclass
class Arrays:
    """One set's pixels and targets, in the order of its examples."""

    pixels: np.ndarray  # (N, S, S) uint8
    labels: np.ndarray  # 1 = pneumonia
    viral: np.ndarray  # 1 = viral; meaningful where typed
    typed: np.ndarray  # True where the pneumonia type is known

    @classmethod
    def of(cls, examples: list[dataset.Example], pixels: np.ndarray) -> Arrays:
        return cls(
            pixels,
            np.array([e.label for e in examples], dtype=np.float32),
            np.array([e.pneumonia_type == "viral" for e in examples], dtype=np.float32),
            np.array([e.pneumonia_type is not None for e in examples]),
        )


def run(config: TrainConfig) -> RunRecord:
    started = time.monotonic()
    keras.utils.set_random_seed(config.seed)
    config.out.mkdir(parents=True, exist_ok=True)

    found = dataset.discover(config.data, config.labels_csv, split="train")
    splits = dataset.split_with_shift(found.examples, config.validation_fraction, config.shift_block, config.seed)
    validation_sets = splits.validation_sets()
    log.info("split by patient: %d train; validation: %s", len(splits.train),
             ", ".join(f"{name} {len(v)}" for name, v in validation_sets.items()))
    all_examples = splits.train + [e for v in validation_sets.values() for e in v]
    from_cache = cache_path(all_examples, config.image_size, config.cache_dir).exists()
    pixels = load_or_preprocess(all_examples, config.image_size, config.cache_dir)
    train = Arrays.of(splits.train, pixels[: len(splits.train)])
    held: dict[str, Arrays] = {}
    start = len(splits.train)
    for name, examples in validation_sets.items():
        held[name] = Arrays.of(examples, pixels[start : start + len(examples)])
        start += len(examples)
    preprocess_seconds = time.monotonic() - started
    model = fit(config, train, held)
    timing = {
        "preprocess_seconds": round(preprocess_seconds, 1),
        "pixels_from_cache": from_cache,
        # fitting time summed over every invocation (resumes included), from the run's own state
        "train_seconds": round(_read_state(config.out).get("elapsed_seconds", 0.0), 1),
    }
    state = _read_state(config.out)
    return finish(config, model, found, splits, held, timing, state.get("epoch", 0), state.get("best_epoch"))


def load_sets(config: TrainConfig) -> tuple[dataset.Discovery, dataset.Splits, dict[str, Arrays]]:
    """The data, its splits and the validation sets' arrays, as `run` builds them."""
    found = dataset.discover(config.data, config.labels_csv, split="train")
    splits = dataset.split_with_shift(found.examples, config.validation_fraction, config.shift_block, config.seed)
    held = {name: Arrays.of(examples, load_or_preprocess(examples, config.image_size, config.cache_dir))
            for name, examples in splits.validation_sets().items()}
    return found, splits, held


def finish(config: TrainConfig, model: keras.Model, found: dataset.Discovery, splits: dataset.Splits,
           held: dict[str, Arrays], timing: dict[str, Any], epochs_run: int, best_epoch: int | None) -> RunRecord:
    """Threshold, metrics, ONNX export (parity-checked) and its evaluation, run.json."""
    validation_sets = splits.validation_sets()
    type_cut = recalibrate_type_head(model, held)
    keras_outputs = {name: predict(model, arrays.pixels) for name, arrays in held.items()}
    threshold = metrics.choose_threshold_across(
        [(held[name].labels, outputs[0]) for name, outputs in keras_outputs.items()])
    per_set_thresholds = {
        name: metrics.choose_threshold(held[name].labels, outputs[0])
        for name, outputs in keras_outputs.items() if len(np.unique(held[name].labels)) == 2
    }
    log.info("threshold %.4f (worst-case Youden J across sets); each set's own: %s", threshold,
             ", ".join(f"{k} {v:.4f}" for k, v in per_set_thresholds.items()))
    val_metrics = metrics.classification_metrics(held["validation"].labels, keras_outputs["validation"][0], threshold)
    metadata = ModelMetadata(
        model_name=config.model_name,
        model_version=config.model_version,
        input_size=config.image_size,
        labels=LABELS,
        threshold=threshold,
        preprocessing_version=PREPROCESSING_VERSION,
        training_data_sha256=dataset.fingerprint(splits.train),
        validation_metrics=val_metrics,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        extra={"architecture": config.architecture, "threshold_rule": metrics.THRESHOLD_RULE_ACROSS},
    )
    model.save(config.out / "best.keras")
    parity = export.export(
        model, metadata, to_model_input(held["validation"].pixels[:PARITY_IMAGES]), config.out / "model.onnx"
    )
    onnx_metrics = evaluate_onnx(config.out / "model.onnx", held, threshold)
    official = score_official_val(config.out / "model.onnx", config, threshold)
    summary: RunRecord = {
        "config": _jsonable(asdict(config)),
        "data": {
            "discovery": found.summary(),
            "shift_block": config.shift_block,
            "sets": {
                name: {
                    "images": len(examples),
                    "patients": len({e.patient for e in examples}),
                    "class_counts": dataset.class_counts(examples),
                    "type_counts": dataset.type_counts(examples),
                }
                for name, examples in {"train": splits.train, **validation_sets}.items()
            },
            "training_data_sha256": metadata.training_data_sha256,
        },
        "splits": splits.file_lists(),
        "model": {
            "architecture": config.architecture,
            "parameters": model.count_params(),
            "gflops_per_image": architectures.count_flops(model) / 1e9,
        },
        "threshold": threshold,
        "threshold_rule": metrics.THRESHOLD_RULE_ACROSS,
        "per_set_thresholds": per_set_thresholds,
        "type_recalibration": type_cut,
        "validation_metrics": val_metrics,
        "onnx_metrics": onnx_metrics,
        "official_val_metrics": official,
        "parity_max_abs_diff": parity,
        "timing": {
            **timing,
            "total_seconds": round(timing["preprocess_seconds"] + timing["train_seconds"], 1),
            "hardware": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, CPU only",
            "tensorflow": tf.__version__,
        },
        "epochs_run": epochs_run,
        "best_epoch": best_epoch,
        "created_at": metadata.created_at,
    }
    write_run(config.out, summary)
    log.info("run written to %s", config.out)
    return summary


TYPE_RULE = (
    "Youden's J on the typed pneumonia cases of all validation sets pooled; the viral head's bias is "
    "moved by the cut's logit, so that 0.5 is that cut (the class-weighted head leaned to bacterial)."
)


def recalibrate_type_head(model: keras.Model, held: dict[str, Arrays]) -> dict[str, Any] | None:
    """Moves the viral head's bias so that P(viral) = 0.5 falls on the TYPE_RULE cut; returns
    the cut, or None for a model without the type head or without typed validation cases."""
    heads = [layer for layer in _all_layers(model) if layer.name == "viral_map" and getattr(layer, "bias", None) is not None]
    if not heads:
        return None
    viral: list[np.ndarray] = []
    probabilities: list[np.ndarray] = []
    for arrays in held.values():
        typed = arrays.typed & (arrays.labels == 1)
        if typed.any():
            viral.append(arrays.viral[typed])
            probabilities.append(_viral_of(predict(model, arrays.pixels[typed])))
    if not viral or len(np.unique(np.concatenate(viral))) < 2:
        return None
    labels, scores = np.concatenate(viral), np.concatenate(probabilities)
    from sklearn.metrics import roc_curve

    fpr, tpr, cuts = roc_curve(labels, scores)
    cut = float(np.clip(cuts[int(np.argmax(tpr - fpr))], 1e-4, 1 - 1e-4))
    shift = float(np.log(cut / (1 - cut)))
    for head in heads:  # every member of an ensemble: their mean logit moves by the same amount
        head.bias.assign(head.bias.numpy() - shift)
    log.info("type head recalibrated: P(viral) cut %.4f (logit %+.3f) moved to 0.5", cut, shift)
    return {"cut": cut, "logit_shift": shift, "rule": TYPE_RULE, "cases": int(len(labels))}


def _viral_of(outputs: tuple[np.ndarray, np.ndarray | None]) -> np.ndarray:
    assert outputs[1] is not None, "the model has a viral head (recalibrate_type_head checked)"
    return outputs[1]


def _all_layers(model: keras.Model) -> Iterator[Any]:
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
        else:
            yield layer


def fit(config: TrainConfig, train: Arrays, held: dict[str, Arrays]) -> keras.Model:
    """Fit, keeping the epoch whose worst validation AUC across the held-out sets is best;
    resumes from checkpoints/last.keras if present."""
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
        heads = [name for name in architectures.HEADS if name in model.output_names]
        loss = keras.losses.BinaryCrossentropy(label_smoothing=config.label_smoothing)
        model.compile(
            optimizer=keras.optimizers.Adam(config.learning_rate),
            loss={name: loss for name in heads},
            metrics={name: [keras.metrics.AUC(name="auc")] for name in heads},
        )
    weights = _sample_weights(train, config.class_weights)
    train_data = _train_dataset(config, train, weights, model.output_names)
    progress = TrainingProgress(config, checkpoint_dir, state, held)
    model.fit(
        train_data,
        epochs=config.epochs,
        initial_epoch=state.get("epoch", 0),
        # progress first: it adds the validation columns that the CSV logger writes
        callbacks=[progress, keras.callbacks.CSVLogger(config.out / "history.csv", append=True)],
        verbose=1 if os.isatty(2) else 2,  # a progress bar on a terminal, a line per epoch in logs
    )
    progress.finish()
    model.load_weights(checkpoint_dir / "best.weights.h5")
    return model


def _to_float(images: Any) -> Any:
    # (N, S, S) uint8 -> (N, S, S, 1) float32 in 0..1: cxr_common.preprocessing.to_model_input in TF
    return tf.cast(images, tf.float32)[..., tf.newaxis] / 255.0


def _train_dataset(config: TrainConfig, train: Arrays, weights: dict[str, np.ndarray], heads: list[str]) -> Any:
    targets = {"pneumonia": train.labels, "viral": train.viral}
    targets = {name: targets[name] for name in heads}
    weights = {name: weights[name] for name in heads}
    augment = make_augment_fn(config.augment, config.seed)
    return (
        tf.data.Dataset.from_tensor_slices((train.pixels, targets, weights))
        .shuffle(len(train.pixels), seed=config.seed, reshuffle_each_iteration=True)
        .batch(config.batch_size)
        .map(lambda x, y, w: augment(_to_float(x), y, w), num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(2)
    )


def _balanced(positive: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-example weights n / (2 * n_class) inside `mask` (each class half of the loss), 0 outside."""
    n = mask.sum()
    n_positive = (positive * mask).sum()
    n_negative = n - n_positive
    weights = np.zeros(len(positive), dtype=np.float32)
    if n_positive and n_negative:
        weights[mask & (positive == 1)] = n / (2 * n_positive)
        weights[mask & (positive == 0)] = n / (2 * n_negative)
    return weights


def _sample_weights(train: Arrays, balance: bool) -> dict[str, np.ndarray]:
    everything = np.ones(len(train.labels), dtype=bool)
    typed = train.typed & (train.labels == 1)
    if not balance:
        return {"pneumonia": everything.astype(np.float32), "viral": typed.astype(np.float32)}
    weights = {"pneumonia": _balanced(train.labels, everything), "viral": _balanced(train.viral, typed)}
    log.info("class weights: normal %.3f, pneumonia %.3f; typed pneumonia cases %d",
             weights["pneumonia"][train.labels == 0][:1].sum(), weights["pneumonia"][train.labels == 1][:1].sum(),
             typed.sum())
    return weights


def predict(model: keras.Model, pixels: np.ndarray, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray | None]:
    """Keras (pneumonia, viral or None) probabilities for uint8 pixels."""
    pneumonia, viral = [], []
    for i in range(0, len(pixels), batch_size):
        out = model.predict(to_model_input(pixels[i : i + batch_size]), verbose=0)
        pneumonia.append(out["pneumonia"][:, 0])
        if "viral" in out:
            viral.append(out["viral"][:, 0])
    return np.concatenate(pneumonia), np.concatenate(viral) if viral else None


def set_metrics(arrays: Arrays, pneumonia: np.ndarray, viral: np.ndarray | None, threshold: float) -> dict[str, Any]:
    """Every metric of one set: the pneumonia decision, and the type among typed pneumonia cases."""
    result = metrics.classification_metrics(arrays.labels, pneumonia, threshold)
    typed = arrays.typed & (arrays.labels == 1)
    if viral is not None and typed.any():
        result["pneumonia_type"] = metrics.type_metrics(arrays.viral[typed], viral[typed])
    return result


def evaluate_onnx(path: Path, held: dict[str, Arrays], threshold: float) -> dict[str, Any]:
    """The exported file scored on every validation set with onnxruntime, as the service runs it."""
    from model_export.evaluate import predict_onnx

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    result = {}
    for name, arrays in held.items():
        outputs = predict_onnx(session, arrays.pixels)
        result[name] = set_metrics(arrays, outputs.pneumonia, outputs.viral, threshold)
        log.info("\n%s", metrics.format_table(result[name], f"ONNX on {name}"))
    return result


def score_official_val(model_path: Path, config: TrainConfig, threshold: float) -> dict[str, Any] | None:
    """The official 16-image val/ split through the ONNX file, reported apart (never used for choices)."""
    from model_export.evaluate import predict_onnx

    folder = Path(config.data) / "val"
    if config.labels_csv is not None or not folder.is_dir():
        return None
    examples = dataset.discover(folder).examples
    arrays = Arrays.of(examples, load_or_preprocess(examples, config.image_size, config.cache_dir))
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    outputs = predict_onnx(session, arrays.pixels)
    result = set_metrics(arrays, outputs.pneumonia, outputs.viral, threshold)
    log.info("\n%s", metrics.format_table(result, "official val/ (16 images)"))
    return result


class TrainingProgress(keras.callbacks.Callback):  # type: ignore[misc]  # Keras is untyped
    """Per epoch: each validation set's AUCs (added to the logs), last checkpoint, best weights
    by the worst pneumonia AUC across the sets, state for resuming, early stopping (patience),
    the optional time budget and the loss/AUC PNG."""

    MONITOR = "val_worst_auc"

    def __init__(self, config: TrainConfig, checkpoint_dir: Path, state: dict[str, Any], held: dict[str, Arrays]):
        super().__init__()
        self.config, self.checkpoint_dir, self.held = config, checkpoint_dir, held
        self.best = state.get("best", -np.inf)
        self.best_epoch = state.get("best_epoch")
        self.wait = state.get("wait", 0)
        self.started = time.monotonic() - state.get("elapsed_seconds", 0.0)
        checkpoint_dir.mkdir(parents=True, exist_ok=True)

    def _validate(self, logs: dict[str, Any]) -> None:
        aucs = []
        for name, arrays in self.held.items():
            pneumonia, viral = predict(self.model, arrays.pixels)
            found = set_metrics(arrays, pneumonia, viral, 0.5)
            logs[f"{name}_auc"] = found["roc_auc"]
            logs[f"{name}_accuracy"] = found["accuracy"]
            if "pneumonia_type" in found:
                logs[f"{name}_type_auc"] = found["pneumonia_type"]["roc_auc"]
            if np.isfinite(found["roc_auc"]):
                aucs.append(found["roc_auc"])
        logs[self.MONITOR] = min(aucs) if aucs else float("nan")
        log.info("epoch validation: %s", ", ".join(
            f"{k} {v:.4f}" for k, v in logs.items() if k.endswith("auc") and k != "auc"))

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs if logs is not None else {}
        self._validate(logs)
        value = float(logs[self.MONITOR])
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

    def finish(self) -> None:
        plot_history(self.config.out / "history.csv", self.config.out / "history.png")
        state = _read_state(self.config.out)
        _write_state(self.config.out, state | {"finished": True})


def _read_state(out: Path) -> dict[str, Any]:
    path = out / "checkpoints" / "state.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _write_state(out: Path, state: dict[str, Any]) -> None:
    path = out / "checkpoints" / "state.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(state))
    temporary.replace(path)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return str(value) if isinstance(value, Path) else value
