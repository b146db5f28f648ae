"""The UIDs of what the gateway writes, derived (never random) from what was scored, so that
scoring the same image with the same model again yields the same objects: a PACS stores them
once, and a replayed or retried job writes nothing new."""

from __future__ import annotations

from pydicom.uid import UID, generate_uid

SR, SC = "sr", "sc"
SERIES_NUMBERS = {SR: 9901, SC: 9902}  # high numbers: after the modality's own series in viewers


def instance_uid(source_sop_instance_uid: str, model_sha256: str, kind: str) -> UID:
    """2.25.<128 bits of a hash of the source SOP Instance UID, the model and the kind>."""
    return generate_uid(prefix=None, entropy_srcs=[source_sop_instance_uid, model_sha256, kind])


def series_uid(study_uid: str, model_sha256: str, kind: str) -> UID:
    """One series per study, model and kind: all of a study's SRs (or SCs) together."""
    return generate_uid(prefix=None, entropy_srcs=[study_uid, model_sha256, kind, "series"])
