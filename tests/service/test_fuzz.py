"""Property: no upload, however mangled, gets a 5xx or outlives its deadline.

Seeded and bounded (hypothesis, derandomized): real seeds in every format we read (JPEG, PNG,
and DICOM uncompressed, deflated, RLE, JPEG 2000, JPEG baseline), bit-flipped, truncated,
spliced, through the real app."""

from __future__ import annotations

import io
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    RLELossless,
)

from tests.dicoms import encoded

EXAMPLES = 300
DEADLINE_S = 10.0


@pytest.fixture(scope="module")
def seeds(val_images, tmp_path_factory) -> list[bytes]:
    folder = tmp_path_factory.mktemp("fuzz")
    with Image.open(val_images[0]) as image:
        small = image.convert("L").resize((384, 320))
    small.save(folder / "x.png")
    jpeg, png = io.BytesIO(), io.BytesIO()
    small.save(jpeg, "JPEG")
    small.save(png, "PNG")
    syntaxes = (ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, RLELossless, JPEG2000Lossless, JPEGBaseline8Bit)
    return [jpeg.getvalue(), png.getvalue(), *(encoded(folder / "x.png", s) for s in syntaxes)]


CLIENT_SETTINGS = {"request_deadline_s": DEADLINE_S}  # for the `client` fixture


@st.composite
def mangled(draw, seeds):
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "zero"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del data[max(132, at):]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        else:
            data[at : at + 4] = b"\xff\xff\xff\xff"
    return bytes(data)


def test_mangled_uploads_never_get_a_5xx(client, seeds, val_images):
    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(data=mangled(seeds))
    def check(data):
        started = time.perf_counter()
        response = client.post("/predict", content=data, headers={"Content-Type": "application/octet-stream"})
        assert response.status_code < 500, response.text
        assert time.perf_counter() - started < DEADLINE_S + 2

    check()
    good = client.post("/predict", content=val_images[0].read_bytes(), headers={"Content-Type": "image/jpeg"})
    assert good.status_code == 200
