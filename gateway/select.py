"""Which received instances are scored: the service's own attribute rules (one definition in
cxr_common.dicom_rules), and never anything the gateway wrote (its SR and SC come back to it
when the PACS routes the study again after the results arrive)."""

from __future__ import annotations

import pydicom

from cxr_common.dicom_rules import DEFAULT_RULES, ChestRules, Refusal
from gateway import MANUFACTURER


def is_own_output(dataset: pydicom.Dataset) -> bool:
    """Written by this gateway: its Manufacturer is on every SR and SC it makes."""
    return str(dataset.get("Manufacturer", "")).strip() == MANUFACTURER


def passed_over(dataset: pydicom.Dataset, rules: ChestRules = DEFAULT_RULES) -> Refusal | None:
    """Why this instance is not scored, or None when it may be a frontal chest radiograph.
    SR and Secondary Capture fail the SOP class rule: only CR and DX images pass."""
    if is_own_output(dataset):
        return Refusal("Manufacturer", "written by this gateway")
    return rules.refused_by(dataset)
