"""Hostile inputs built from real ones, shared by the load benchmarks and the tests."""

from __future__ import annotations

import io
import struct

from PIL import Image


def progressive_jpeg(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", progressive=True, **options)
    return buffer.getvalue()


def scan_bomb(image: Image.Image, scans: int) -> bytes:
    """A grayscale progressive JPEG of `image` with `scans` extra AC refinement scans (Ss=1,
    Se=63, Ah=1, Al=0), each one end-of-band run over the whole image: ~80 bytes a scan at
    6000 px, and a full pass over every block for the decoder. Its AC table (id 1) has one
    code, '0', for EOB14."""
    data = progressive_jpeg(image.convert("L"), quality=30)
    assert data.endswith(b"\xff\xd9")
    blocks = ((image.width + 7) // 8) * ((image.height + 7) // 8)
    table = b"\xff\xc4" + struct.pack(">H", 20) + bytes([0x11, 1] + [0] * 15 + [0xE0])
    symbols = -(-blocks // 16384)  # EOB14 with extra bits 0: a run of 16,384 blocks
    body = bytearray(-(-15 * symbols // 8))
    padding = len(body) * 8 - 15 * symbols
    if padding:
        body[-1] |= (1 << padding) - 1  # padded with 1 bits, as the standard says
    scan = b"\xff\xda" + struct.pack(">H", 8) + bytes([1, 1, 0x01, 1, 63, 0x10]) + bytes(body)
    return data[:-2] + table + scan * scans + b"\xff\xd9"
