"""A chest study as a PACS holds it, from real X-rays: a frontal CR (PA), a lateral (LL) and a
CT slice, one patient, one study, a series each."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydicom.uid import generate_uid

from tests.dicoms import chest_dataset, to_bytes

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


@dataclass(frozen=True)
class Study:
    study_uid: str
    frontal: list[bytes]  # what the gateway must score
    others: list[bytes]  # what it must pass over

    @property
    def instances(self) -> list[bytes]:
        return self.frontal + self.others


def chest_study(frontal_images: list[Path], lateral_image: Path, patient_id: str = "GW-TEST-1") -> Study:
    study_uid = generate_uid()
    common = {"StudyInstanceUID": study_uid, "PatientID": patient_id, "PatientName": "Gateway^Test",
              "PatientBirthDate": "19700101", "PatientSex": "F", "StudyDate": "20240501", "StudyTime": "101500",
              "AccessionNumber": "ACC-" + patient_id, "StudyID": "1", "ReferringPhysicianName": ""}

    def instance(image: Path, series_uid: str, number: int, **attributes: object) -> bytes:
        return to_bytes(chest_dataset(image, SeriesInstanceUID=series_uid, SeriesNumber=number, InstanceNumber=number,
                                      **common, **attributes))

    frontal_series = generate_uid()
    frontal = [instance(image, frontal_series, 1 + index) for index, image in enumerate(frontal_images)]
    lateral = instance(lateral_image, generate_uid(), 2, ViewPosition="LL")
    ct = instance(lateral_image, generate_uid(), 3, Modality="CT", SOPClassUID=CT_IMAGE_STORAGE, ViewPosition=None)
    return Study(study_uid, frontal, [lateral, ct])
