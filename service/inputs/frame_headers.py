"""The real size of a compressed image frame, read from its own header before it is decoded.

A DICOM's Rows x Columns can lie: a 650-byte file declaring 512x512 may hold a JPEG 2000 frame
of 20000x20000, which the decoder would allocate in full. So each frame's own header is read
(JPEG SOF of any kind, JPEG-LS SOF55, JPEG 2000 SIZ or JP2 'ihdr'), and its size checked
against the budget, before any decoder sees it.
"""

from __future__ import annotations

import struct
from typing import NamedTuple


class FrameSize(NamedTuple):
    width: int
    height: int
    components: int


# JPEG start-of-frame markers: SOF0-SOF15 except DHT (C4), JPG (C8) and DAC (CC); F7 is JPEG-LS
SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7}
STANDALONE_MARKERS = {0x01, *range(0xD0, 0xD9)}  # TEM, RSTn, SOI, EOI: no length field
J2K_SOC_SIZ = b"\xff\x4f\xff\x51"
JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
MAX_MARKERS = 1000  # a header is a few dozen segments; more is garbage, not a bigger image


def jpeg_size(data: bytes) -> FrameSize | None:
    """Width, height and components from the first SOF segment of a JPEG / JPEG-LS stream."""
    if not data.startswith(b"\xff\xd8"):
        return None
    position = 2
    for _ in range(MAX_MARKERS):
        if position + 4 > len(data) or data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in STANDALONE_MARKERS:
            position += 2
            continue
        (length,) = struct.unpack_from(">H", data, position + 2)
        if marker in SOF_MARKERS:
            if position + 10 > len(data):
                return None
            height, width = struct.unpack_from(">HH", data, position + 5)
            return FrameSize(width, height, data[position + 9])
        if marker == 0xDA:  # start of scan before any frame header
            return None
        position += 2 + length
    return None


def j2k_size(data: bytes) -> FrameSize | None:
    """From a JPEG 2000 codestream's SIZ segment, or a JP2 file's 'ihdr' box."""
    if data.startswith(J2K_SOC_SIZ) and len(data) >= 42:
        xsiz, ysiz, xosiz, yosiz = struct.unpack_from(">IIII", data, 8)
        (components,) = struct.unpack_from(">H", data, 40)
        return FrameSize(max(0, xsiz - xosiz), max(0, ysiz - yosiz), components)
    if data.startswith(JP2_SIGNATURE):
        at = data.find(b"ihdr")
        if at >= 0 and at + 14 <= len(data):
            height, width, components = struct.unpack_from(">IIH", data, at + 4)
            return FrameSize(width, height, components)
        codestream = data.find(J2K_SOC_SIZ)
        return j2k_size(data[codestream:]) if codestream >= 0 else None
    return None


def frame_size(data: bytes) -> FrameSize | None:
    """The size a compressed frame declares in its own header; None when it has none we know."""
    return jpeg_size(data) or j2k_size(data)
