"""Metric calibration: calibrated score and dynamic range fraction (issue 15 item 2).

Dagster-free; the ``metric_calibration`` asset that wires it is not built yet.
"""

from __future__ import annotations

import numpy as np

__all__ = ["calibrated_score", "dynamic_range_fraction"]


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
        calibrate against).
    """
    u, b, r = (np.asarray(x, dtype=float) for x in (u, b, r))
    span = r - b
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(span != 0, (u - b) / span, np.nan)


def dynamic_range_fraction(positive: float, negative: float, worst: float) -> float:
    """Dynamic range fraction (CellSimBench): where the negative control lies
    between the worst case (0) and the positive control (1), reported as
    ``1 - position`` so that 1 means the metric separates them fully.

    Returns NaN where ``positive == worst``.
    """
    span = positive - worst
    if span == 0:
        return float("nan")
    return float(1.0 - (negative - worst) / span)
