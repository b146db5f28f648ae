"""The threshold rule and the calibration error, on data whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from model_export.metrics import choose_threshold, classification_metrics, expected_calibration_error


def test_threshold_is_the_most_specific_of_the_equally_good_cuts():
    # 100 normals below 0.2 and 100 pneumonias above 0.8: every cut in between is perfect,
    # and the rule takes the highest of them (the lowest pneumonia score)
    rng = np.random.default_rng(0)
    labels = np.array([0] * 100 + [1] * 100)
    scores = np.concatenate([rng.uniform(0.0, 0.2, 100), rng.uniform(0.8, 1.0, 100)])
    assert choose_threshold(labels, scores) == pytest.approx(scores[100:].min())


def test_threshold_does_not_trade_much_sensitivity():
    # one pneumonia far down among the normals: giving it up costs 1 point of sensitivity,
    # within a standard error here, so the higher cut is allowed; a whole group is not
    labels = np.array([0] * 50 + [1] * 50)
    scores = np.concatenate([np.linspace(0.0, 0.3, 50), [0.25], np.linspace(0.7, 1.0, 49)])
    chosen = choose_threshold(labels, scores)
    metrics = classification_metrics(labels, scores, chosen)
    assert metrics["sensitivity"] >= 0.98 and metrics["specificity"] == 1.0


def test_calibration_error_of_a_calibrated_and_an_overconfident_model():
    rng = np.random.default_rng(1)
    p = rng.uniform(0, 1, 20000)
    labels = (rng.uniform(0, 1, 20000) < p).astype(int)
    assert expected_calibration_error(labels, p) < 0.02
    assert expected_calibration_error(labels, np.where(p > 0.5, 1.0, 0.0)) > 0.2
