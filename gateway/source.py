"""The scored image's header as the result builders need it: read without its pixels, with
the patient and study attributes that DICOM requires to be present (type 2) added empty where
the sender left them out, so the results copy what there is and invent nothing."""

from __future__ import annotations

import io

import pydicom

TYPE2_PATIENT_STUDY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
                       "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber")


def header(dicom: bytes) -> pydicom.Dataset:
    dataset = pydicom.dcmread(io.BytesIO(dicom), stop_before_pixels=True)
    for keyword in TYPE2_PATIENT_STUDY:
        if keyword not in dataset:
            setattr(dataset, keyword, "")
    return dataset
