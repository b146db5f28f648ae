"""The shipped models' heatmaps are faithful: hiding the map's hottest tenth lowers the pneumonia
logit more than hiding the same map's cells shuffled, on real held-out pneumonia X-rays."""

from __future__ import annotations

import json

import numpy as np
import pytest

from model_export.faithfulness import PASS_SHARE, held_out_pneumonia, hide_cells, measure
from tests.conftest import BUNDLED_INT8_MODEL, BUNDLED_MODEL, REPO_ROOT

CARD = REPO_ROOT / "models" / "model_card.json"


@pytest.mark.parametrize("model", [BUNDLED_MODEL, BUNDLED_INT8_MODEL], ids=["float", "int8"])
def test_shipped_heatmaps_pass_the_deletion_check(shared_data, model):
    card = json.loads(CARD.read_text())
    images = held_out_pneumonia(shared_data, card, 40)
    training = set(card["data"]["splits"]["train"])
    assert len(images) == 40 and not {p.name for p in images} & training  # never a training image
    result = measure(model, images, shuffles=5)
    assert result.share_hot_beats_random >= PASS_SHARE, result.summary()
    assert result.mean_drop_hot > result.mean_drop_random, result.summary()


def test_hidden_cells_are_the_named_patches_only():
    pixels = np.arange(81, dtype=np.uint8).reshape(9, 9).repeat(2, 0).repeat(2, 1)  # 18x18, 2x2 per cell
    hidden = hide_cells(pixels, np.array([0, 80]), (9, 9))
    fill = round(float(pixels.mean()))
    assert (hidden[:2, :2] == fill).all() and (hidden[-2:, -2:] == fill).all()
    changed = hidden != pixels
    assert changed.sum() == 8  # two cells of four pixels
