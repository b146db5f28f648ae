"""Why an upload cannot be scored, in the service's own terms (no HTTP here).

Decoding and checking raise these; `service.http.errors` gives each its code, status and Retry-After
at the HTTP edge. Messages name the attribute and the rule it broke, never an element's value
(values can be patient data), except for coded values that are not (Modality, ViewPosition...).
The image errors shared with training live in cxr_common.image_errors and are re-exported.
"""

from __future__ import annotations

from cxr_common.image_errors import ImageDecodeError, ImageTooLargeError, UnsupportedImageError

__all__ = [
    "EmptyUploadError", "ImageDecodeError", "ImageShapeError",
    "ImageTooLargeError", "NotChestXrayError", "UnsupportedDicomError", "UnsupportedImageError",
]


class EmptyUploadError(ValueError):
    """The upload has no bytes."""


class ImageShapeError(ImageDecodeError):
    """Too small, or an aspect ratio no radiograph has (e.g. 1 x 50,000,000)."""


class UnsupportedDicomError(ImageDecodeError):
    """A valid DICOM this service does not read (transfer syntax, photometric interpretation...)."""


class NotChestXrayError(ValueError):
    """The input is not a frontal chest radiograph: a DICOM attribute says so, or the image check."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason  # short machine-readable cause, the Prometheus label: 'Modality', 'image_check'
