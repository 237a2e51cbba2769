"""Metric calibration: the arithmetic and the calibration table."""

import numpy as np
import pandas as pd
import pytest

from perturb_assets.core.evaluation import summarise, with_calibrated_scores
from perturb_assets.core.evaluation.calibration import (
    calibrated_score,
    dynamic_range_fraction,
    metric_calibration,
)
from perturb_assets.core.metrics import higher_is_better, worst_value


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


def _per_condition(values_by_model: dict, metric: str) -> pd.DataFrame:
    rows = []
    for model, values in values_by_model.items():
        protocol = "published_2025" if model != "noise_ceiling" else "none"
        for i, v in enumerate(values):
            rows.append({"model": model, "features": "none", "protocol": protocol,
                         "de_method": "none", "condition": f"C{i}+ctrl",
                         "subgroup": "unseen_single", "metric": metric, "value": v})  # fmt: skip
    return pd.DataFrame(rows)


def _calibrate(per_condition: pd.DataFrame, control: pd.DataFrame) -> pd.DataFrame:
    summary = with_calibrated_scores(summarise(per_condition, "toy", n_boot=50))
    return metric_calibration(summary, per_condition, control)


def test_calibration_flags_a_metric_that_leaves_train_mean_no_room() -> None:
    rng = np.random.default_rng(0)
    n = 30
    # Pearson Delta: the replicate beats Train Mean everywhere, but by little of the range
    # down to -1, so the DRF fails the gate.
    pd_rows = _per_condition(
        {
            "noise_ceiling": 0.9 + rng.normal(0, 0.01, n),
            "train_mean": 0.8 + rng.normal(0, 0.01, n),
            "model_a": 0.85 + rng.normal(0, 0.01, n),
        },
        "pearson_delta",
    )
    # MSE (lower is better): the worst case is the control mean's error.
    mse_rows = _per_condition(
        {
            "noise_ceiling": 0.1 + rng.normal(0, 0.01, n),
            "train_mean": 0.4 + rng.normal(0, 0.01, n),
            "model_a": 0.25 + rng.normal(0, 0.01, n),
        },
        "mse",
    )
    # A metric on which the replicate is no better than Train Mean.
    flat = rng.normal(0.5, 0.05, n)
    flat_rows = _per_condition(
        {"noise_ceiling": flat + rng.normal(0, 0.05, n), "train_mean": flat, "model_a": flat},
        "discrimination_l1",
    )
    per_condition = pd.concat([pd_rows, mse_rows, flat_rows], ignore_index=True)
    control = _per_condition({"control_mean": np.full(n, 0.5)}, "mse")
    table = _calibrate(per_condition, control).set_index(["metric", "model"])

    delta = table.loc[("pearson_delta", "model_a")]
    assert delta["discriminates"] and delta["replicate_win_rate"] == 1.0
    assert delta["drf"] == pytest.approx((0.9 - 0.8) / (0.9 + 1), abs=0.01)
    assert delta["uninformative"]  # below the 0.5 gate
    assert delta["calibrated_score"] == pytest.approx(0.5, abs=0.05)
    mse = table.loc[("mse", "model_a")]
    assert not mse["higher_is_better"] and mse["worst"] == pytest.approx(0.5)
    assert mse["drf"] == pytest.approx((0.1 - 0.4) / (0.1 - 0.5), abs=0.02)
    assert mse["discriminates"] and not mse["uninformative"]
    assert mse["calibrated_score"] == pytest.approx(0.5, abs=0.05)  # halfway, lower is better
    assert table.loc[("mse", "control_mean"), "calibrated_score"] < 0
    flat_row = table.loc[("discrimination_l1", "model_a")]
    assert not flat_row["discriminates"] and flat_row["uninformative"]
    assert set(table.index.get_level_values("model")) == {"train_mean", "model_a", "control_mean"}


def test_metric_direction_is_stated_once() -> None:
    assert not higher_is_better("mse") and not higher_is_better("mae_delta")
    assert higher_is_better("pearson_delta") and higher_is_better("overlap_at_N")
    assert worst_value("pearson_delta_de_no_target_reference_compat") == -1.0
    assert worst_value("discrimination_cosine") == 0.0 and worst_value("mse") is None
