"""What one upload may cost, and which DICOMs are taken: resolved from the settings once."""

from __future__ import annotations

from dataclasses import dataclass, field

from service.inputs.chest_check import InputCheck
from service.inputs.dicom import DicomPolicy
from service.inputs.shape import DEFAULT_MAX_PIXELS


@dataclass(frozen=True)
class Limits:
    max_pixels: int = DEFAULT_MAX_PIXELS
    dicom: DicomPolicy = field(default_factory=DicomPolicy)
    image_check: InputCheck = InputCheck.refuse  # CXR_INPUT_CHECK
