"""What one upload may cost, and which DICOMs are taken: resolved from the settings once
(Settings.limits); the defaults here are the settings' own, for tools that decode alone."""

from __future__ import annotations

from dataclasses import dataclass, field

from service.inputs.chest_check import DEFAULT_MODE, InputCheck
from service.inputs.cost import CostLimits
from service.inputs.dicom_policy import DicomPolicy
from service.inputs.shape import DEFAULT_MAX_PIXELS


@dataclass(frozen=True)
class Limits:
    max_pixels: int = DEFAULT_MAX_PIXELS
    dicom: DicomPolicy = field(default_factory=DicomPolicy)
    image_check: InputCheck = DEFAULT_MODE
    cost: CostLimits = field(default_factory=CostLimits)  # decoding work beyond the pixel count
