"""What decoding a file will cost beyond its pixel count, read from its markers before any decoder runs.

The pixel budget (CXR_MAX_PIXELS) bounds memory, not work. Some formats multiply the work per
pixel, and the multiplier is written in the file:

- a progressive JPEG is decoded once per scan: libjpeg passes over every block of the image in
  each one, even at a draft scale. Real encoders write 1 (baseline) to 10 scans (libjpeg's
  progressive colour script; 6 for grayscale); a crafted 311 KB file with 4,000 refinement scans
  kept a core busy for minutes. So the scans are counted (SOS markers) and more than
  `max_jpeg_scans` refused.
- a JPEG 2000 codestream is decoded tile by tile, layer by layer: one 6000 px image cut into
  64 x 64 tiles has 8,836 of them, each with its own headers and transforms. So tiles (from SIZ)
  and quality layers (from every COD) are bounded.

PNG needs no such check: Adam7 interlacing makes seven passes over the same pixels (a constant
factor), PNG palettes are 8-bit at most, and Pillow caps its text chunks. DICOM palettes are
bounded by the pixel budget too (16-bit LUTs hold at most 65,536 entries).

Every refusal is an ImageTooCostlyError (an ImageTooLargeError: answered as image_too_large)
naming the setting.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from service.inputs.errors import ImageTooLargeError

# libjpeg's own progressive scripts write 6 (grayscale) and 10 (YCbCr) scans; mozjpeg's scan
# optimisation at most ~12. 32 leaves room for any real encoder and bounds a crafted file at 3x
# the work of a real one.
DEFAULT_MAX_JPEG_SCANS = 32
# Radiographs are stored as one tile or as tiles of 256-1024 px (a 6000 px image in 256 px
# tiles has 576); quality layers run to a few dozen (Kakadu's medical presets use ~20).
DEFAULT_MAX_J2K_TILES = 1024
DEFAULT_MAX_J2K_LAYERS = 64

SOS, SOT, SOD = 0xDA, 0x90, 0x93
STANDALONE = {0x01, *range(0xD0, 0xD9)}  # TEM, RSTn, SOI, EOI: no length field
J2K_COD = 0x52
J2K_SOC_SIZ = b"\xff\x4f\xff\x51"
MAX_SEGMENTS = 10_000  # marker segments walked before the data is called garbage


class ImageTooCostlyError(ImageTooLargeError):
    """Within the pixel budget, but its markers ask for far more decoding work than any radiograph."""


@dataclass(frozen=True)
class CostLimits:
    max_jpeg_scans: int = DEFAULT_MAX_JPEG_SCANS  # CXR_MAX_JPEG_SCANS
    max_j2k_tiles: int = DEFAULT_MAX_J2K_TILES
    max_j2k_layers: int = DEFAULT_MAX_J2K_LAYERS


def jpeg_scans(data: bytes) -> int:
    """The number of scans (SOS segments) in a JPEG stream; 0 when it has none.

    The header is walked segment by segment up to the first scan, so that an embedded thumbnail
    (APP1) is not counted. After it, only entropy-coded data and table segments follow; in
    entropy-coded data 0xFF is always followed by 0x00 (stuffing), RSTn or a marker, so every
    FF DA is a scan header. A table segment could hold those two bytes by chance: that only
    overcounts, by far less than the limit allows. Counted in C (bytes.count): ~1 ms per 10 MB."""
    position = 2
    for _ in range(MAX_SEGMENTS):
        if position + 4 > len(data) or data[position] != 0xFF:
            return 0
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
        elif marker in STANDALONE:
            position += 2
        elif marker == SOS:
            return 1 + data.count(b"\xff\xda", position + 2)
        else:
            (length,) = struct.unpack_from(">H", data, position + 2)
            position += 2 + length
    return 0


def check_jpeg(data: bytes, limits: CostLimits) -> None:
    scans = jpeg_scans(data)
    if scans > limits.max_jpeg_scans:
        raise ImageTooCostlyError(
            f"the JPEG has {scans} scans; at most {limits.max_jpeg_scans} are decoded (CXR_MAX_JPEG_SCANS): "
            "each scan is a pass over the whole image, and no radiograph needs more than a dozen")


@dataclass(frozen=True)
class J2kLayout:
    tiles: int
    layers: int  # the most any COD segment (main or tile-part header) asks for


def j2k_layout(data: bytes) -> J2kLayout | None:
    """Tiles and quality layers of a JPEG 2000 codestream (SOC SIZ ...), or None when it is
    not one or its headers are cut short. Tile-part headers are walked too (by their Psot
    lengths): a tile may override the layers of the main header."""
    if not data.startswith(J2K_SOC_SIZ) or len(data) < 42:
        return None
    xsiz, ysiz, xosiz, yosiz, xtsiz, ytsiz, xtosiz, ytosiz = struct.unpack_from(">8I", data, 8)
    if xtsiz == 0 or ytsiz == 0:
        return None
    tiles = -(-max(0, xsiz - xtosiz) // xtsiz) * -(-max(0, ysiz - ytosiz) // ytsiz)
    layers = 0
    position = 2  # SIZ, right after SOC
    for _ in range(MAX_SEGMENTS):
        if data[position : position + 2] == b"\xff\xd9":  # EOC
            break
        if position + 4 > len(data) or data[position] != 0xFF:
            return None
        marker = data[position + 1]
        (length,) = struct.unpack_from(">H", data, position + 2)
        if marker == J2K_COD and position + 9 <= len(data):
            layers = max(layers, struct.unpack_from(">H", data, position + 6)[0])
        if marker == SOT:
            if position + 10 > len(data):
                return None
            (part_length,) = struct.unpack_from(">I", data, position + 6)
            # the tile-part's own header markers, then the next SOT after its data
            end = position + part_length if part_length else len(data)
            layers = max(layers, _tile_part_layers(data, position + 2 + length, end))
            if part_length == 0:
                break
            position = end
            continue
        position += 2 + length
    else:
        return None  # more segments than any real file: treated as garbage, not walked further
    return J2kLayout(tiles, layers)


def _tile_part_layers(data: bytes, position: int, end: int) -> int:
    layers = 0
    for _ in range(MAX_SEGMENTS):
        if position + 4 > min(end, len(data)) or data[position] != 0xFF or data[position + 1] == SOD:
            break
        (length,) = struct.unpack_from(">H", data, position + 2)
        if data[position + 1] == J2K_COD and position + 9 <= len(data):
            layers = max(layers, struct.unpack_from(">H", data, position + 6)[0])
        position += 2 + length
    return layers


def check_j2k(data: bytes, limits: CostLimits) -> None:
    """For a JPEG 2000 codestream (a JP2 file's codestream is found after its boxes)."""
    start = 0 if data.startswith(J2K_SOC_SIZ) else data.find(J2K_SOC_SIZ, 0, 1 << 16)  # JP2: after its boxes
    layout = j2k_layout(data[start:] if start > 0 else data) if start >= 0 else None
    if layout is None:
        return  # not a codestream we can read: the decoder's own header checks apply
    if layout.tiles > limits.max_j2k_tiles:
        raise ImageTooCostlyError(
            f"the JPEG 2000 frame has {layout.tiles} tiles; at most {limits.max_j2k_tiles} are decoded")
    if layout.layers > limits.max_j2k_layers:
        raise ImageTooCostlyError(
            f"the JPEG 2000 frame has {layout.layers} quality layers; at most {limits.max_j2k_layers} are decoded")


def check_frame(data: bytes, limits: CostLimits) -> None:
    """A compressed frame (a JPEG upload, or a DICOM's encapsulated JPEG / JPEG 2000 frame)."""
    if data.startswith(b"\xff\xd8"):
        check_jpeg(data, limits)
    else:
        check_j2k(data, limits)
