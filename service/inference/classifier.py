"""The ONNX model behind the API: one onnxruntime session, shared by all requests."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from cxr_common import image_check, reference_check
from cxr_common.image_check import ImageCheck
from cxr_common.model_metadata import (
    CAM_OUTPUT,
    FEATURES_OUTPUT,
    INPUT_NAME,
    OUTPUT_NAME,
    PNEUMONIA_TYPES,
    VIRAL_OUTPUT,
    ModelMetadata,
    ModelMetadataError,
)
from cxr_common.preprocessing import PREPROCESSING_VERSION, to_model_input
from cxr_common.reference_check import ReferenceCheck
from service.config import Device
from service.inference.providers import CPU as CPU  # re-exported: callers import both from here
from service.inference.providers import CUDA as CUDA

log = logging.getLogger(__name__)



def _same_file(seen: os.stat_result, path: Path) -> bool:
    """Whether `path` is still the file `seen` describes (not replaced, not rewritten)."""
    now = path.stat()
    return (now.st_dev, now.st_ino, now.st_size, now.st_mtime_ns) == (
        seen.st_dev, seen.st_ino, seen.st_size, seen.st_mtime_ns)


class ModelLoadError(RuntimeError):
    """The model cannot be served: missing, corrupt, mismatched, or the device is unavailable."""


@dataclass(frozen=True)
class Prediction:
    probability: float  # of pneumonia
    label: str
    viral: float | None = None  # P(viral | pneumonia), for models with the type head
    image_score: float | None = None  # the image check's distance, for models that carry one
    cam: np.ndarray | None = None  # (h, w) pneumonia logit per cell, when asked for (heatmaps)

    @property
    def pneumonia_type(self) -> str | None:
        if self.viral is None:
            return None
        return PNEUMONIA_TYPES[1] if self.viral >= 0.5 else PNEUMONIA_TYPES[0]


@dataclass(frozen=True)
class ReferenceResult:
    """What the start-up self-check found (None fields: the model carries no reference data)."""

    images: int = 0
    largest_difference: float | None = None
    tolerance: float | None = None

    @property
    def passed(self) -> bool | None:
        if self.largest_difference is None or self.tolerance is None:
            return None
        return self.largest_difference <= self.tolerance


class Classifier:
    """Loads and checks the model, picks the execution provider, runs batches of pixels."""

    def __init__(self, path: Path, device: Device = Device.auto, intra_op_threads: int = 0,
                 solo_threads: int = 0):
        """`solo_threads` above `intra_op_threads`: on the CPU, a second session with that many
        threads runs the requests that have the process to themselves (see `predict`)."""
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelLoadError(f"model file '{self.path}' does not exist")
        # onnxruntime reads the file itself: sessions made from its bytes in memory held 16 MB
        # more for good (measured, both sessions and the checks: 65 against 49 MB;
        # tests/service/test_model_loading.py). The hash still names what is loaded: the file
        # hashed must be the one at the path once the sessions are made
        with self.path.open("rb") as model_file:
            hashed = os.fstat(model_file.fileno())
            self.sha256 = hashlib.file_digest(model_file, "sha256").hexdigest()
        self.session = self._create_session(device, intra_op_threads)  # also validates the file
        self.provider = self.session.get_providers()[0]  # what really runs, not what is installed
        self._solo_session = (self._create_session(Device.cpu, solo_threads, spin=True)
                              if self.provider == CPU and solo_threads > intra_op_threads else None)
        if not _same_file(hashed, self.path):
            raise ModelLoadError(f"model file '{self.path}' was replaced while it was loading; start again")
        try:
            self.metadata = ModelMetadata.from_props(self.session.get_modelmeta().custom_metadata_map)
        except ModelMetadataError as exc:
            raise ModelLoadError(f"model file '{self.path}': {exc}") from exc
        if self.metadata.preprocessing_version != PREPROCESSING_VERSION:
            raise ModelLoadError(
                f"model was trained with preprocessing version {self.metadata.preprocessing_version}, "
                f"this service implements version {PREPROCESSING_VERSION}"
            )
        self._check_signature()
        available = [o.name for o in self.session.get_outputs()]
        self.outputs = [name for name in available if name in (OUTPUT_NAME, VIRAL_OUTPUT)]
        self.has_cam = CAM_OUTPUT in available
        self.image_check = self._load_image_check()
        if self.image_check is not None:
            self.outputs.append(FEATURES_OUTPUT)
        self.reference = self._check_references()

    @property
    def name(self) -> str:
        return f"{self.metadata.model_name} {self.metadata.model_version} ({self.path.name})"

    def _load_image_check(self) -> ImageCheck | None:
        text = self.metadata.extra.get(image_check.METADATA_KEY)
        if text is None:
            return None
        if FEATURES_OUTPUT not in [o.name for o in self.session.get_outputs()]:
            raise ModelLoadError(f"model {self.name} declares an image check but has no '{FEATURES_OUTPUT}' output")
        try:
            return ImageCheck.from_json(text)
        except ValueError as exc:
            raise ModelLoadError(f"model {self.name}: {exc}") from exc

    def _check_references(self) -> ReferenceResult:
        """Run the reference inputs the model carries; refuse it when its outputs are not the
        float model's (see cxr_common.reference_check)."""
        text = self.metadata.extra.get(reference_check.METADATA_KEY)
        if text is None:
            log.warning("model carries no reference inputs: its numerics are not checked at start-up",
                        extra={"model": self.name})
            return ReferenceResult()
        try:
            check = ReferenceCheck.from_json(text)
        except ValueError as exc:
            raise ModelLoadError(f"model {self.name}: {exc}") from exc
        difference = check.largest_difference_on(self.session)
        result = ReferenceResult(len(check.images), difference, check.tolerance)
        if not result.passed:
            raise ModelLoadError(
                f"model {self.name} fails its reference check on this machine ({self.provider}): "
                f"largest difference {difference:.4g} on {len(check.images)} reference images, "
                f"tolerance {check.tolerance:g}")
        return result

    def _create_session(self, device: Device, threads: int, spin: bool = False) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        # ORT's threads spin after each run by default; in the sessions that run under load they
        # would burn the cores that the decoding threads need (measured: +8% throughput at
        # concurrency 16 without it). The solo session runs only while the service is otherwise
        # idle, and there spinning is what lets several threads share one run of a model of many
        # small layers: model v3 at concurrency 1, 73-76 -> 91-95 images/s (round 4,
        # docs/performance.md)
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        # no arena: onnxruntime's CPU arena keeps the largest batch it ever ran (the reference
        # check's 8 images) for good; glibc, set to keep freed memory (service.process.memory),
        # reuses a run's buffers as fast. Measured with two workers: 72 MB less at rest, CPU per
        # image the same (9.72 against 9.70 ms, 4 alternating pairs)
        options.enable_cpu_mem_arena = False
        wants_cuda = device in (Device.auto, Device.cuda) and CUDA in ort.get_available_providers()
        providers = [CUDA, CPU] if wants_cuda else [CPU]
        try:
            session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ModelLoadError(f"model file '{self.path}' is not a loadable ONNX model: {exc}") from exc
        active = session.get_providers()
        if CUDA not in active:
            if device == Device.cuda:
                raise ModelLoadError(
                    "CXR_DEVICE=cuda but the CUDA execution provider is not active "
                    f"(available: {ort.get_available_providers()}, active: {active})"
                )
            if device == Device.auto:
                log.warning("CUDA is not available; running on the CPU", extra={"provider": active[0]})
        return session

    def _check_signature(self) -> None:
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        size = self.metadata.input_size
        if inputs[0].name != INPUT_NAME or list(inputs[0].shape[1:]) != [size, size, 1]:
            raise ModelLoadError(
                f"model input is {inputs[0].name} {inputs[0].shape}, expected {INPUT_NAME} [N, {size}, {size}, 1]"
            )
        if outputs[0].name != OUTPUT_NAME:
            raise ModelLoadError(f"model output is '{outputs[0].name}', expected '{OUTPUT_NAME}'")

    @property
    def input_size(self) -> int:
        return self.metadata.input_size

    @property
    def threshold(self) -> float:
        return self.metadata.threshold

    def predict(self, pixels: np.ndarray, alone: bool = False, cam: bool = False) -> list[Prediction]:
        """(N, S, S) uint8 -> one Prediction per image. Thread-safe: ORT sessions are.

        `cam`: also fetch each image's pneumonia CAM (models that have it: `has_cam`).

        `alone`: nothing else is running in this process or the other workers, so the solo
        session (when there is one) may use more cores: with one worker process per core, a lone
        request would otherwise run the model on one core (p50 at concurrency 1: 7.0 -> 6.3 ms
        measured)."""
        session = self._solo_session if alone and self._solo_session is not None else self.session
        names = [*self.outputs, CAM_OUTPUT] if cam and self.has_cam else self.outputs
        found = dict(zip(names, session.run(names, {INPUT_NAME: to_model_input(pixels)})))
        probabilities = found[OUTPUT_NAME][:, 0]
        cams = found[CAM_OUTPUT] if CAM_OUTPUT in found else [None] * len(pixels)
        viral = found[VIRAL_OUTPUT][:, 0] if VIRAL_OUTPUT in found else [None] * len(pixels)
        scores = (self.image_check.scores(found[FEATURES_OUTPUT]) if self.image_check is not None
                  else [None] * len(pixels))
        labels = self.metadata.labels
        return [
            Prediction(float(p), labels[1] if p >= self.threshold else labels[0],
                       None if v is None else float(v), None if d is None else float(d), c)
            for p, v, d, c in zip(probabilities, viral, scores, cams)
        ]

    def warm_up(self) -> None:
        """One inference so the first request does not pay for lazy initialisation."""
        self.predict(np.zeros((1, self.input_size, self.input_size), dtype=np.uint8))
