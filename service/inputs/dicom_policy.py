"""What the service needs of DICOM before a DICOM arrives: how to recognise one, and the policy
its attributes are checked against. Kept apart from service.inputs.dicom, which reads them, so
that pydicom and its codecs (GDCM, OpenJPEG: 43 MB of each process's memory) load with the first
DICOM a worker receives, not at start-up, and never in the supervisor."""

from __future__ import annotations

from dataclasses import dataclass

from cxr_common.dicom_rules import DEFAULT_RULES, ChestRules


@dataclass(frozen=True)
class DicomPolicy:
    """Which DICOMs are taken as frontal chest radiographs (`rules`, from the CXR_DICOM_*
    settings); `check=False` takes any attributes and shape (to measure the image check alone)."""

    rules: ChestRules = DEFAULT_RULES
    check: bool = True


def is_dicom(data: bytes) -> bool:
    """Part 10 files carry 'DICM' after a 128-byte preamble."""
    return len(data) >= 132 and data[128:132] == b"DICM"
