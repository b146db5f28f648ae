"""The UIDs of what the gateway writes, derived (never random) from what was scored, so that
scoring the same image with the same model again yields the same objects: a PACS stores them
once, and a replayed, retried or restarted job writes nothing new.

The form is DICOM's 2.25.<UUID as an integer> (PS3.5 B.2) with a name-based UUID (version 5).
Not pydicom's generate_uid(prefix=None, entropy_srcs=...): with no prefix it ignores the
sources and returns a random UUID."""

from __future__ import annotations

import uuid

SR, SC = "sr", "sc"
SERIES_NUMBERS = {SR: 9901, SC: 9902}  # high numbers: after the modality's own series in viewers
NAMESPACE = uuid.UUID("5d0c7f3e-4c1b-5a7e-9f0e-6a1c2b3d4e5f")  # this gateway's, fixed forever


def derived_uid(*parts: str) -> str:
    return f"2.25.{uuid.uuid5(NAMESPACE, chr(0).join(parts)).int}"


def instance_uid(source_sop_instance_uid: str, model_sha256: str, kind: str) -> str:
    """From the source SOP Instance UID, the model and the kind."""
    return derived_uid("instance", source_sop_instance_uid, model_sha256, kind)


def series_uid(study_uid: str, model_sha256: str, kind: str) -> str:
    """One series per study, model and kind: all of a study's SRs (or SCs) together."""
    return derived_uid("series", study_uid, model_sha256, kind)
