"""Why bytes give no image, shared by training, the service and the gateway. Kept apart from
cxr_common.preprocessing (Pillow, numpy) so that a process that only names these errors, such as
the service's supervisor reading its settings, does not load the imaging libraries."""

from __future__ import annotations


class ImageDecodeError(ValueError):
    """The bytes are a known image type that could not be decoded."""


class ImageTooLargeError(ImageDecodeError):
    """The image decodes to more pixels than allowed (decompression-bomb guard)."""


class UnsupportedImageError(ValueError):
    """The bytes are no image format we read."""
