"""Dataset diversity: how alike the perturbations' pseudo-bulk responses are (the paper's Fig. 2).

Each perturbation's *delta profile* is its pseudo-bulk mean minus the control mean (over all
genes). The Pearson correlation of every pair of delta profiles measures how alike two
perturbations act; the median over all pairs is the dataset's diversity statistic (high: the
perturbations respond alike, so Train Mean is hard to beat; low: diverse responses).

The authors' ``notebooks/data_analysis.ipynb`` (turbine-ai/PerturbSeqPredBenchmark) orders the
perturbations train + val (GEARS ``set2conditions`` order, ``ctrl`` removed) then test, takes
``np.corrcoef`` of all of them and reports

* the median of the lower triangle (every pair once): :attr:`Diversity.median`;
* a "test-train median" as ``median(corr[n_trainval:, :n_test])``: rows are the test
  perturbations, but the columns are the *first n_test* perturbations of the ordering, not
  the train + val ones (a slicing slip; with more test than train + val perturbations they
  would include test ones). :attr:`Diversity.test_train_median_reference_compat` reproduces
  it (the paper's number); :attr:`Diversity.test_train_median` is the median over every (test,
  train + val) pair, the statistic the notebook means.

The order of the train + val perturbations matters only for the reference-compatible number;
GEARS lists each split's conditions in order of first appearance among the cells
(:func:`gears_condition_order`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from perturb_assets.core.gears.format import CONTROL
from perturb_assets.core.pp.deltas import delta_profiles, pairwise_correlations

__all__ = [
    "Diversity",
    "HIGH_MEDIAN_CORRELATION",
    "LOW_DYNAMIC_RANGE",
    "adequacy_problems",
    "dataset_composition",
    "dataset_diversity",
    "gears_condition_order",
]


@dataclass
class Diversity:
    """Pairwise delta correlations of a dataset's perturbations and their summaries.

    Attributes
    ----------
    correlations
        Perturbation × perturbation Pearson correlations (float32), train + val first, then
        test.
    n_trainval
        How many of the rows are train + val perturbations.
    median
        Median over all pairs (the paper's "median pairwise correlation").
    test_train_median
        Median over all (test, train + val) pairs.
    test_train_median_reference_compat
        The authors' notebook's number (see the module docstring).
    """

    correlations: pd.DataFrame
    n_trainval: int
    median: float
    test_train_median: float
    test_train_median_reference_compat: float

    def pairs(self) -> np.ndarray:
        """Every pair's correlation once (the lower triangle), for distributions."""
        values = self.correlations.to_numpy()
        return values[np.tril_indices(values.shape[0], k=-1)]

    def summary(self) -> dict[str, float | int]:
        n = self.correlations.shape[0]
        return {
            "n_perturbations": n,
            "n_trainval": self.n_trainval,
            "n_test": n - self.n_trainval,
            "median_pairwise_delta_corr": self.median,
            "test_train_median_delta_corr": self.test_train_median,
            "test_train_median_delta_corr_reference_compat": (
                self.test_train_median_reference_compat
            ),
        }


def gears_condition_order(split: pd.DataFrame, first_cell: pd.Series) -> list[str]:
    """Train, then val, then test perturbations, each in order of first appearance among the
    cells (GEARS' ``set2conditions`` order); ``ctrl`` left out.

    ``first_cell``: each condition's first cell position (``pseudobulk.obs['first_cell']``).
    """
    first_seen = first_cell.to_dict()
    labels = split["split"].astype(str)
    ordered = []
    for name in ("train", "val", "test"):
        members = [c for c in labels.index[labels == name] if c != CONTROL]
        ordered += sorted(members, key=lambda c: first_seen.get(c, len(first_seen)))
    return ordered


def dataset_diversity(means: pd.DataFrame, split: pd.DataFrame, first_cell: pd.Series) -> Diversity:
    """Pairwise delta correlations of every perturbation, train + val then test.

    Parameters
    ----------
    means
        Pseudo-bulk means (conditions × genes) with a ``ctrl`` row.
    split
        The condition split (``split`` column).
    first_cell
        Each condition's first cell position, for GEARS' ordering
        (``pseudobulk.obs['first_cell']``).
    """
    order = [c for c in gears_condition_order(split, first_cell) if c in means.index]
    labels = split["split"].astype(str).reindex(order)
    n_trainval = int(labels.isin(["train", "val"]).sum())
    deltas = delta_profiles(means).loc[order]
    corr = pairwise_correlations(deltas.to_numpy())
    n = len(order)
    lower = corr[np.tril_indices(n, k=-1)].astype(np.float64)
    n_test = n - n_trainval
    return Diversity(
        correlations=pd.DataFrame(corr, index=order, columns=order),
        n_trainval=n_trainval,
        median=float(np.nanmedian(lower)) if lower.size else float("nan"),
        test_train_median=_median(corr[n_trainval:, :n_trainval]),
        test_train_median_reference_compat=_median(corr[n_trainval:, :n_test]),
    )


def _median(block: np.ndarray) -> float:
    return float(np.nanmedian(block.astype(np.float64))) if block.size else float("nan")


#: Above this median pairwise delta correlation, perturbations respond so alike that Train
#: Mean is hard to beat (the paper's Adamson, 0.662, is the example).
HIGH_MEDIAN_CORRELATION = 0.5
#: Below this best-minus-Train-Mean Pearson Delta, the dataset cannot tell models apart.
LOW_DYNAMIC_RANGE = 0.05


def adequacy_problems(median_correlation: float, dynamic_range: float) -> list[str]:
    """Why a dataset may be unable to separate good models from Train Mean (empty: none)."""
    problems = []
    if median_correlation > HIGH_MEDIAN_CORRELATION:
        problems.append(
            f"median pairwise delta correlation {median_correlation:.3f} > "
            f"{HIGH_MEDIAN_CORRELATION}: perturbations respond alike, Train Mean is hard to beat"
        )
    if dynamic_range < LOW_DYNAMIC_RANGE:
        problems.append(
            f"dynamic range {dynamic_range:.3f} < {LOW_DYNAMIC_RANGE}: the best model is barely "
            "better than Train Mean on Pearson Delta"
        )
    return problems


def dataset_composition(n_cells: pd.Series, split: pd.DataFrame) -> dict[str, int]:
    """Cells and perturbations of a dataset (the paper's Fig. 2A/B and Supplementary Table 1).

    Parameters
    ----------
    n_cells
        Cells per condition (``ctrl`` included), e.g. ``pseudobulk.obs['n_cells']``.
    split
        The condition split.
    """
    labels = split["split"].astype(str)
    perturbations = [c for c in labels.index if c != CONTROL]
    return {
        "n_control_cells": int(n_cells.get(CONTROL, 0)),
        "n_perturbed_cells": int(n_cells.drop(CONTROL, errors="ignore").sum()),
        "n_perturbations": len(perturbations),
        **{
            f"n_{s}": int((labels.reindex(perturbations) == s).sum())
            for s in ("train", "val", "test")
        },
    }
