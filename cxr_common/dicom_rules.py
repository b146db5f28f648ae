"""Which DICOM objects are frontal chest radiographs, as data: the rules the service applies
before decoding a pixel, and that a DICOM gateway applies before forwarding an object.

The rules read four attributes. An attribute that is absent (or empty, or malformed) does not
refuse: many senders leave BodyPartExamined or ViewPosition out, and the image check then has
the last word. A present value outside its set refuses, naming the attribute and, for coded
values (Modality, ViewPosition...), the value; never a free-text or identifying element, which
can hold patient data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # pydicom (with its codecs, 43 MB) loads with the first DICOM read, not with the rules
    import pydicom


# SOP classes of projection radiographs: CR, DX for presentation, DX for processing
RADIOGRAPH_SOP_CLASSES = frozenset({
    "1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.5.1.4.1.1.1.1", "1.2.840.10008.5.1.4.1.1.1.1.1",
})
# BodyPartExamined values meaning the chest (DICOM's CHEST, and spellings seen in the wild)
CHEST_BODY_PARTS = frozenset({"CHEST", "THORAX", "LUNG", "LUNGS", "TORAX", "TORSO_CHEST", "CHEST_PA",
                              "CHEST_AP", "PECHO", "BRUST", "THORAX_CHEST", "POUMON", "TORACE"})
FRONTAL_VIEWS = frozenset({"AP", "PA"})
RADIOGRAPH_MODALITIES = frozenset({"CR", "DX"})
# DICOM's Code String (CS): at most 16 of A-Z, 0-9, space and underscore. A value that is not
# one ('MRN-PHI-778899', 200 KB of text) is no coded value and may be patient data: not quoted.
CODE_STRING = re.compile(r"[A-Z0-9 _]{1,16}")


def shown(value: str) -> str:
    """`value` quoted when it is a short coded string, else a mention that it is not one."""
    return f"'{value}'" if CODE_STRING.fullmatch(value) else "not a coded value (not shown)"


class Refusal(NamedTuple):
    attribute: str  # the DICOM keyword that refused it: a bounded label for metrics
    reason: str  # a short sentence for the sender


def values_of(dataset: pydicom.Dataset, keyword: str) -> list[str]:
    """Every value of a (possibly multi-valued) string element, upper-cased; [] when absent."""
    from pydicom.multival import MultiValue  # loaded already: `dataset` came from pydicom

    try:
        value = dataset.get(keyword)
    except Exception:  # a malformed element is as good as absent for these rules
        return []
    if value is None or value == "":
        return []
    items = value if isinstance(value, (list, tuple, MultiValue)) else [value]
    return [str(item).strip().upper() for item in items if str(item).strip()]


@dataclass(frozen=True)
class ChestRules:
    """The attribute values taken as a frontal chest radiograph (upper case)."""

    modalities: frozenset[str] = RADIOGRAPH_MODALITIES
    sop_classes: frozenset[str] = RADIOGRAPH_SOP_CLASSES
    body_parts: frozenset[str] = CHEST_BODY_PARTS
    frontal_views: frozenset[str] = FRONTAL_VIEWS

    def refused_by(self, dataset: pydicom.Dataset) -> Refusal | None:
        """The first rule `dataset` breaks, or None when its attributes allow a frontal chest X-ray."""
        for modality in values_of(dataset, "Modality"):
            if modality not in self.modalities:
                return Refusal("Modality", f"DICOM Modality is {shown(modality)}; this service takes "
                               f"{', '.join(sorted(self.modalities))}")
        sop_class = values_of(dataset, "SOPClassUID")
        if sop_class and sop_class[0] not in self.sop_classes:
            from pydicom.uid import UID

            uid = UID(sop_class[0])
            name = uid.name if uid.is_valid else "an unknown SOP class"
            return Refusal("SOPClassUID", f"DICOM SOPClassUID is {name}; only CR and DX image storage are taken")
        for part in values_of(dataset, "BodyPartExamined"):
            if part not in self.body_parts:
                return Refusal("BodyPartExamined", f"DICOM BodyPartExamined is {shown(part)}, not the chest")
        for view in values_of(dataset, "ViewPosition"):
            if view not in self.frontal_views:
                return Refusal("ViewPosition", f"DICOM ViewPosition is {shown(view)}; only frontal views "
                               f"({', '.join(sorted(self.frontal_views))}) are taken")
        return None

    def refusal(self, dataset: pydicom.Dataset) -> str | None:
        """A short reason why `dataset` is no frontal chest radiograph; None when it may be one."""
        refused = self.refused_by(dataset)
        return None if refused is None else refused.reason


DEFAULT_RULES = ChestRules()
