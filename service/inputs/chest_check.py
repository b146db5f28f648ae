"""Is this a frontal chest X-ray? Decided here, in three parts that apply in turn:

1. the DICOM attributes, before any pixel is decoded: rules as data (cxr_common.dicom_rules,
   shared with the DICOM gateway; CXR_DICOM_* settings), applied by service.inputs.dicom;
2. the shape from the header (service.inputs.shape): no radiograph is 1 x 50,000,000 px;
3. the model's image score (cxr_common.image_check: a distance in its feature space) against
   the threshold the model carries, applied as CXR_INPUT_CHECK says (`InputCheck`).
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Any

from service.inputs.errors import NotChestXrayError

if TYPE_CHECKING:  # numpy: the supervisor reads the settings without loading it
    from cxr_common.image_check import ImageCheck

IMAGE_CHECK_REASON = "image_check"  # the refusal's metric label, beside the DICOM keywords


class InputCheck(str, Enum):
    refuse = "refuse"  # inputs that are not frontal chest X-rays are refused (not_chest_xray)
    flag = "flag"  # scored anyway, with a warning in the answer
    off = "off"  # no image check (the DICOM attribute checks still apply)


DEFAULT_MODE = InputCheck.refuse  # CXR_INPUT_CHECK


def describe(check: ImageCheck | None, mode: InputCheck) -> dict[str, Any]:
    """The input check as GET /model reports it: the mode, the DICOM rules, the image check."""
    image = None if check is None else {"method": "mahalanobis-features", "threshold": check.threshold, "rule": check.rule}
    return {"mode": mode.value, "dicom_attributes": True, "image_check": image}


def judge_image(score: float | None, check: ImageCheck | None, mode: InputCheck) -> str | None:
    """The image check for one scored image: None when it passes (or is not run), the warning
    to answer beside it in `flag` mode; raises NotChestXrayError in `refuse` mode."""
    if check is None or score is None or mode == InputCheck.off or score <= check.threshold:
        return None
    why = (f"the image check scores this image {score:.1f}, above its threshold {check.threshold:.1f}: "
           "it does not look like a frontal chest X-ray")
    if mode == InputCheck.refuse:
        raise NotChestXrayError(why, IMAGE_CHECK_REASON)
    return why
