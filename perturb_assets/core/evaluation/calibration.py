"""Metric calibration: is a metric informative on this dataset, and where does each model sit
between the baseline and the replicate?

For every metric (and DE method) of the metrics table:

positive control ``r``
    The split-half replicate (the noise ceiling): half of each condition's cells predicting the
    other half, the best any model can be expected to do.
negative controls
    Train Mean ``b`` (the mean response: the baseline of the paper and of cell-eval2) and the
    control mean (a "no change" prediction).
calibrated score
    cell-eval2's ``s = (u - b) / (r - b)`` per model: 0 at Train Mean, 1 at the replicate, the
    same for metrics where lower is better. It is the ``calibrated_score`` column of the
    metrics table.
dynamic range fraction (DRF)
    CellSimBench's ``(r - b) / (r - w)``: where Train Mean lies between the replicate (0) and
    the metric's worst case ``w`` (1). ``w`` is the metric's bound where it has one (-1 for
    correlations, 0 for fractions; :func:`perturb_assets.core.metrics.worst_value`), and the
    control mean's score for the unbounded errors. A DRF near 0 means Train Mean already scores
    like the replicate: the metric leaves no room to tell models apart. CellSimBench and
    scPertEval gate metrics at 0.5 (:data:`DRF_GATE`).
discrimination between the controls
    Across conditions, whether the replicate beats Train Mean: the share of conditions where it
    does, and a two-sided Wilcoxon signed-rank test of the paired per-condition values
    (``discriminates``: p < 0.05 with the replicate better).

A metric is ``uninformative`` on a dataset when it does not discriminate the controls or its
DRF is below the gate; the report marks it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from perturb_assets.core.metrics.direction import higher_is_better, worst_value
from perturb_assets.core.models import registry

__all__ = [
    "CALIBRATION_COLUMNS",
    "CONTROL_MEAN_MODEL",
    "DRF_GATE",
    "calibrated_score",
    "control_mean_predictions",
    "dynamic_range_fraction",
    "metric_calibration",
]

#: CellSimBench's and scPertEval's gate: a metric whose DRF is below it is flagged.
DRF_GATE = 0.5
#: The ``model`` of the "no change" prediction (the control mean for every condition).
CONTROL_MEAN_MODEL = "control_mean"
_ALPHA = 0.05

CALIBRATION_COLUMNS = [
    "de_method", "metric", "model", "features", "protocol", "value", "calibrated_score",
    "positive_control", "train_mean", "control_mean", "worst", "drf", "replicate_win_rate",
    "p_value", "discriminates", "uninformative", "higher_is_better",
]  # fmt: skip


def calibrated_score(u: np.ndarray, b: np.ndarray, r: np.ndarray) -> np.ndarray:
    """cell-eval2's calibrated score ``s = (u - b) / (r - b)``.

    Parameters
    ----------
    u, b, r : numpy.ndarray
        Model score, baseline (Train Mean) score and positive-control (split-half
        replicate) score of one metric.

    Returns
    -------
    numpy.ndarray
        0 at the baseline, 1 at the replicate; NaN where ``r == b`` (no range to
        calibrate against) or an input is NaN.
    """
    u, b, r = (np.asarray(x, dtype=float) for x in (u, b, r))
    span = r - b
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(span != 0, (u - b) / span, np.nan)


def dynamic_range_fraction(positive: float, negative: float, worst: float) -> float:
    """Dynamic range fraction (CellSimBench): where the negative control lies
    between the worst case (0) and the positive control (1), reported as
    ``1 - position`` so that 1 means the metric separates them fully.

    Returns NaN where ``positive == worst`` or an input is NaN.
    """
    span = positive - worst
    if span == 0 or not np.isfinite([positive, negative, worst]).all():
        return float("nan")
    return float(1.0 - (negative - worst) / span)


def control_mean_predictions(pseudobulk: pd.DataFrame, conditions: pd.Index) -> pd.DataFrame:
    """The "no change" prediction: the control mean (``ctrl`` row) for every condition."""
    ctrl = pseudobulk.drop(columns=["n_cells"], errors="ignore").loc["ctrl"]
    return pd.DataFrame(
        np.tile(ctrl.to_numpy(float), (len(conditions), 1)),
        index=pd.Index(conditions, name="condition"),
        columns=ctrl.index,
    )


def _controls_test(replicate: pd.Series, baseline: pd.Series, higher: bool) -> dict[str, float]:
    """Does the replicate beat Train Mean across conditions (paired by condition)?"""
    both = pd.concat([replicate, baseline], axis=1, keys=["r", "b"]).dropna()
    gain = (both["r"] - both["b"]) * (1 if higher else -1)
    if len(gain) < 2 or (gain == 0).all():
        return {"replicate_win_rate": np.nan, "p_value": np.nan, "discriminates": False}
    p_value = float(stats.wilcoxon(gain).pvalue)
    return {
        "replicate_win_rate": float((gain > 0).mean()),
        "p_value": p_value,
        "discriminates": bool(p_value < _ALPHA and gain.mean() > 0),
    }


def _values(per_condition: pd.DataFrame, model: str) -> pd.Series:
    rows = per_condition[per_condition["model"] == model]
    if model == registry.TRAIN_MEAN.name:  # the baseline: the default protocol's Train Mean
        rows = rows[rows["protocol"] == registry.DEFAULT_PROTOCOL.name]
    return rows.groupby("condition")["value"].mean()  # a model of several seeds: their mean


def metric_calibration(
    summary: pd.DataFrame,
    per_condition: pd.DataFrame,
    control_mean: pd.DataFrame,
    ceiling_model: str = "noise_ceiling",
) -> pd.DataFrame:
    """The calibration table of one dataset (see the module docstring).

    Parameters
    ----------
    summary
        The metrics table (:func:`perturb_assets.core.evaluation.evaluate_models`), with its
        ``calibrated_score`` column.
    per_condition
        Its per-condition values, the noise ceiling's rows included.
    control_mean
        Per-condition metrics of :func:`control_mean_predictions` (same layout).
    ceiling_model
        The ``model`` of the positive control's rows.

    Returns
    -------
    pandas.DataFrame
        One row per DE method × metric × model (subgroup ``all``, the default protocol's
        Train Mean as the baseline): the model's ``value`` and ``calibrated_score``, and the
        metric's ``positive_control``, ``train_mean``, ``control_mean``, ``worst``, ``drf``,
        ``replicate_win_rate``, ``p_value``, ``discriminates``, ``uninformative`` and
        ``higher_is_better``.
    """
    whole = summary[summary["subgroup"] == "all"]
    rows = []
    for (method, metric), part in whole.groupby(["de_method", "metric"], sort=True):
        keys = (per_condition["de_method"] == method) & (per_condition["metric"] == metric)
        cond, ctrl_cond = (
            per_condition[keys],
            control_mean[
                (control_mean["de_method"] == method) & (control_mean["metric"] == metric)
            ],
        )
        r_values, b_values = _values(cond, ceiling_model), _values(cond, registry.TRAIN_MEAN.name)
        if r_values.empty or b_values.empty:
            continue
        higher = higher_is_better(metric)
        r, b = float(r_values.mean()), float(b_values.mean())
        c = float(ctrl_cond["value"].mean()) if not ctrl_cond.empty else np.nan
        worst = worst_value(metric)
        worst = c if worst is None else worst
        drf = dynamic_range_fraction(r, b, worst)
        facts = {"de_method": method, "metric": metric, "positive_control": r, "train_mean": b,
                 "control_mean": c, "worst": worst, "drf": drf,
                 **_controls_test(r_values, b_values, higher),
                 "higher_is_better": higher}  # fmt: skip
        facts["uninformative"] = (not facts["discriminates"]) or not drf >= DRF_GATE
        models = part[~part["model"].isin([ceiling_model])]
        for row in models.itertuples():
            rows.append({**facts, "model": row.model, "features": row.features,
                         "protocol": row.protocol, "value": row.value,
                         "calibrated_score": row.calibrated_score})  # fmt: skip
        score = calibrated_score(c, b, r)
        rows.append({**facts, "model": CONTROL_MEAN_MODEL, "features": "none",
                     "protocol": "none", "value": c, "calibrated_score": float(score)})  # fmt: skip
    return pd.DataFrame(rows, columns=CALIBRATION_COLUMNS)
