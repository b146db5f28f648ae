"""The result as a Secondary Capture image every PACS viewer shows: the X-ray with the heatmap
over it (as the service drew it) under a burned-in banner naming the label, the probability,
the model and that this is an aid, not a diagnosis (BurnedInAnnotation YES)."""

from __future__ import annotations

import io

import highdicom as hd
import numpy as np
import pydicom
from PIL import Image, ImageDraw, ImageFont

from gateway import MANUFACTURER
from gateway.identity import SC, SERIES_NUMBERS, instance_uid, series_uid
from gateway.scoring import Score

SERIES_DESCRIPTION = "AI heatmap: pneumonia (an aid, not a diagnosis)"
DISCLAIMER = "AI result - an aid, not a diagnosis"
MIN_WIDTH = 512  # the service's overlay is at most 512 px; small ones are enlarged to keep text legible


def banner_lines(score: Score) -> list[str]:
    prediction = score.prediction
    return [
        f"{prediction.label.upper()}  p(pneumonia) = {prediction.p_pneumonia:.3f}  (threshold {prediction.threshold:.3f})",
        f"{score.model_name} {prediction.model_version}",
        DISCLAIMER,
    ]


def composed(score: Score) -> np.ndarray:
    """(H, W, 3) uint8: the banner on top of the heatmap overlay."""
    with Image.open(io.BytesIO(score.heatmap_png)) as png:
        overlay = png.convert("RGB")
    if overlay.width < MIN_WIDTH:
        overlay = overlay.resize((MIN_WIDTH, round(overlay.height * MIN_WIDTH / overlay.width)), Image.Resampling.BICUBIC)
    size = max(12, overlay.width // 32)
    font = ImageFont.load_default(size=size)
    lines = banner_lines(score)
    height = int(len(lines) * size * 1.35 + size)
    canvas = Image.new("RGB", (overlay.width, overlay.height + height), "black")
    canvas.paste(overlay, (0, height))
    draw = ImageDraw.Draw(canvas)
    colour = (255, 80, 80) if score.prediction.label == "pneumonia" else (255, 255, 255)
    for number, line in enumerate(lines):
        draw.text((size // 2, size // 2 + int(number * size * 1.35)), line, fill=colour if number == 0 else "white", font=font)
    return np.asarray(canvas, dtype=np.uint8)


def orientation(source: pydicom.Dataset) -> tuple[str, str]:
    """The source's PatientOrientation (the overlay keeps its rows and columns); where it has
    none, a chest radiograph's display convention: rows towards the patient's left, columns to the feet."""
    values = source.get("PatientOrientation")
    if values is not None and len(values) == 2 and all(values):
        return str(values[0]), str(values[1])
    return "L", "F"


def build_sc(source: pydicom.Dataset, score: Score) -> hd.sc.SCImage:
    """`source`: the scored image; same study, patient and study modules, a new series."""
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source,
        pixel_array=composed(score),
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        patient_orientation=orientation(source),
        series_instance_uid=series_uid(source.StudyInstanceUID, score.model_sha256, SC),
        series_number=SERIES_NUMBERS[SC],
        sop_instance_uid=instance_uid(source.SOPInstanceUID, score.model_sha256, SC),
        instance_number=int(source.get("InstanceNumber") or 1),
        manufacturer=MANUFACTURER,
        transfer_syntax_uid=pydicom.uid.ExplicitVRLittleEndian,
    )
    sc.BurnedInAnnotation = "YES"
    # the chest, as the source says or (left out by the sender) as the service judged it; without
    # it the General Series module wants Laterality, which a chest does not have
    sc.BodyPartExamined = source.get("BodyPartExamined") or "CHEST"
    sc.SeriesDescription = SERIES_DESCRIPTION
    sc.ImageComments = DISCLAIMER
    sc.SoftwareVersions = f"{score.model_name} {score.prediction.model_version}"
    sc.DerivationDescription = f"pneumonia heatmap by {score.model_name} {score.prediction.model_version}"
    reference = pydicom.Dataset()
    reference.ReferencedSOPClassUID = source.SOPClassUID
    reference.ReferencedSOPInstanceUID = source.SOPInstanceUID
    sc.SourceImageSequence = [reference]
    return sc
