"""Calibration arithmetic (issue 15 item 2)."""

import numpy as np

from perturb_assets.core.evaluation.calibration import (
    calibrated_score,
    dynamic_range_fraction,
)


def test_calibrated_score_is_zero_at_baseline_one_at_replicate() -> None:
    s = calibrated_score(
        np.array([0.2, 0.8, 0.5, 1.0]), np.full(4, 0.2), np.array([0.8, 0.8, 0.8, 0.2])
    )
    np.testing.assert_allclose(s[:3], [0.0, 1.0, 0.5])
    assert np.isnan(s[3])


def test_drf_hand_values() -> None:
    assert dynamic_range_fraction(1.0, 0.25, 0.0) == 0.75
    assert dynamic_range_fraction(1.0, 1.0, 0.0) == 0.0
    assert np.isnan(dynamic_range_fraction(0.5, 0.1, 0.5))
