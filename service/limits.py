"""What one upload may cost, and which DICOMs are taken: resolved from the settings once."""

from __future__ import annotations

from dataclasses import dataclass, field

from service.dicom import DicomPolicy
from service.image_shape import DEFAULT_MAX_PIXELS


@dataclass(frozen=True)
class Limits:
    max_pixels: int = DEFAULT_MAX_PIXELS
    dicom: DicomPolicy = field(default_factory=DicomPolicy)
    image_check: str = "refuse"  # CXR_INPUT_CHECK: refuse | flag | off
