"""The shapes a radiograph can have, checked from the header before any pixel is decoded.

A 1 x 50,000,000 PNG is within the pixel budget yet is no X-ray, and decoding it costs 2 GB;
a 1x1 DICOM with megabytes of data is no X-ray either. Real chest radiographs run from the
224-px copies of public datasets to about 4300 px, in aspect ratios near 1:1.5.
"""

from __future__ import annotations

from service.inputs.errors import ImageShapeError

# 6000 x 6000: above any chest detector; decoding it costs well under the 1.5 GB a request may take
DEFAULT_MAX_PIXELS = 36_000_000
MIN_SIDE = 128  # px: below this nothing of the lungs can be seen
MAX_ASPECT = 4.0  # longest side / shortest side


def check_shape(width: int, height: int) -> None:
    if min(width, height) < MIN_SIDE:
        raise ImageShapeError(f"image is {width}x{height}; both sides must be at least {MIN_SIDE} px")
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise ImageShapeError(
            f"image is {width}x{height}; a side longer than {MAX_ASPECT:g}x the other is no radiograph")
