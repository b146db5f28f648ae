"""Inputs that are not frontal chest X-rays, built from what installed packages ship, to measure
the refusal rate of the service's input checks (DICOM attributes, then the image check).

Sets: DICOMs of other modalities and body parts (pydicom-data), photographs and graphics
(scikit-image, scikit-learn, matplotlib), and synthetic images (blank, noise, gradients, text
pages, checkerboards, a chest X-ray turned into a negative). Each input is the bytes a client
would upload, so the measurement runs the service's own decoding.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps

# pydicom-data files of other modalities, and a radiograph of a limb
OTHER_DICOMS = {
    "CT 693_UNCR": "693_UNCR.dcm", "CT CT_small": "CT_small.dcm", "MR MR2_UNCR": "MR2_UNCR.dcm",
    "MR MR_small": "MR_small.dcm", "MR with overlays": "MR-SIEMENS-DICOM-WithOverlays.dcm",
    "US US1_UNCR": "US1_UNCR.dcm", "US JPEG lossless": "JPGLosslessP14SV1_1s_1f_8b.dcm",
    "NM JPEG-LL": "JPEG-LL.dcm", "secondary capture RGB": "SC_rgb.dcm",
    "extremity CR RG3_UNCR": "RG3_UNCR.dcm",
}
SKIMAGE_IMAGES = ("astronaut", "camera", "coffee", "chelsea", "rocket", "page", "text", "coins",
                  "moon", "horse", "brick", "grass", "gravel", "retina", "hubble_deep_field", "cell")
SIDE = 512


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def other_dicoms() -> dict[str, bytes]:
    from pydicom.data import get_testdata_file

    found = {}
    for name, file in OTHER_DICOMS.items():
        path = get_testdata_file(file)
        if path is not None:
            found[name] = Path(path).read_bytes()
    return found


def package_images() -> dict[str, bytes]:
    """Photographs, graphics and scans shipped with scikit-image, scikit-learn and matplotlib."""
    import matplotlib
    import skimage.data
    from sklearn.datasets import load_sample_images

    found = {}
    for name in SKIMAGE_IMAGES:
        array = getattr(skimage.data, name)().astype(np.float64)
        if array.ndim == 3 and array.shape[-1] == 4:
            array = array[..., :3]  # drop alpha
        found[f"skimage {name}"] = _png((255 * (array - array.min()) / max(np.ptp(array), 1e-9)).astype(np.uint8))
    for path in load_sample_images().filenames:
        found[f"sklearn {Path(path).stem}"] = Path(path).read_bytes()
    sample_data = Path(matplotlib.get_data_path()) / "sample_data"
    for file in ("grace_hopper.jpg", "logo2.png", "Minduka_Present_Blue_Pack.png"):
        if (sample_data / file).exists():
            found[f"matplotlib {Path(file).stem}"] = (sample_data / file).read_bytes()
    return found


def _text_page(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    page = Image.new("L", (SIDE, int(SIDE * 1.41)), 250)
    draw = ImageDraw.Draw(page)
    words = ["patient", "request", "radiology", "chest", "x-ray", "signature", "date", "ward", "clinical"]
    for row in range(20, page.height - 20, 18):
        draw.text((24, row), " ".join(rng.choice(words, size=8)), fill=20)
    return np.asarray(page)


def synthetic_images(chest_xray: Path) -> dict[str, bytes]:
    """Blank, noise, gradients, checkerboards, text pages, and `chest_xray` as a negative."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, SIDE, dtype=np.float64)
    yy, xx = np.mgrid[0:SIDE, 0:SIDE]
    radial = np.hypot(yy - SIDE / 2, xx - SIDE / 2)
    squares = ((yy // 32 + xx // 32) % 2 * 255).astype(np.uint8)
    arrays = {
        "black": np.zeros((SIDE, SIDE), np.uint8),
        "white": np.full((SIDE, SIDE), 255, np.uint8),
        "mid grey": np.full((SIDE, SIDE), 128, np.uint8),
        "uniform noise": rng.integers(0, 256, (SIDE, SIDE), dtype=np.uint8),
        "gaussian noise": np.clip(rng.normal(128, 40, (SIDE, SIDE)), 0, 255).astype(np.uint8),
        "horizontal gradient": np.tile(ramp, (SIDE, 1)).astype(np.uint8),
        "vertical gradient": np.tile(ramp[:, None], (1, SIDE)).astype(np.uint8),
        "radial gradient": (255 * radial / radial.max()).astype(np.uint8),
        "checkerboard 32 px": squares,
        "checkerboard 8 px": ((yy // 8 + xx // 8) % 2 * 255).astype(np.uint8),
        "text page": _text_page(1),
        "dense text page": _text_page(2),
    }
    found = {name: _png(array) for name, array in arrays.items()}
    with Image.open(chest_xray) as image:
        found["chest X-ray negative"] = _jpeg(ImageOps.invert(image.convert("L")))
    return found


def ood_sets(chest_xray: Path) -> dict[str, dict[str, bytes]]:
    return {"other DICOMs (pydicom-data)": other_dicoms(), "package images": package_images(),
            "synthetic": synthetic_images(chest_xray)}
