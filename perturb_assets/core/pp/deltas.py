"""Delta profiles and their pairwise correlations: how alike the perturbations respond.

A perturbation's *delta profile* is its pseudo-bulk mean minus the control mean. The Pearson
correlation of two delta profiles says how alike two perturbations act; the median over all
pairs is the dataset-diversity statistic of the paper's Fig. 2
(:func:`perturb_assets.core.analyses.dataset_diversity` builds on these functions, and the
simulator reports the same statistic for what it simulated).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData

from perturb_assets.core.gears.format import CONTROL
from perturb_assets.core.pp.pseudobulk import pseudobulk

__all__ = [
    "delta_profiles",
    "median_pairwise_delta_correlation",
    "pairwise_correlations",
    "pseudobulk_deltas",
]

_CHUNK_ROWS = 512


def delta_profiles(means: pd.DataFrame, control: str = CONTROL) -> pd.DataFrame:
    """Every perturbation's pseudo-bulk mean minus the control mean (``ctrl`` dropped)."""
    if control not in means.index:
        raise ValueError(f"the pseudo-bulk table has no {control!r} row")
    return means.drop(index=control) - means.loc[control]


def pairwise_correlations(profiles: np.ndarray, dtype: type = np.float32) -> np.ndarray:
    """Pearson correlations between the rows (``np.corrcoef``), computed in row blocks.

    A constant row (e.g. all zeros) correlates NaN with everything, as in ``np.corrcoef``.
    Memory: the float64 centred rows and the result (``dtype``: float32 by default, which
    halves a Replogle-sized matrix; float64 agrees with ``np.corrcoef`` to ~1e-15).
    """
    x = np.asarray(profiles, dtype=np.float64)
    x = x - x.mean(axis=1, keepdims=True)
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    with np.errstate(invalid="ignore", divide="ignore"):
        x /= norms[:, None]
    out = np.empty((x.shape[0], x.shape[0]), dtype=dtype)
    for start in range(0, x.shape[0], _CHUNK_ROWS):
        block = x[start : start + _CHUNK_ROWS] @ x.T
        out[start : start + _CHUNK_ROWS] = np.clip(block, -1.0, 1.0)
    return out


def pseudobulk_deltas(adata: AnnData, condition_key: str = "condition") -> pd.DataFrame:
    """Delta profiles of every perturbation of a dataset, from its cells.

    Parameters
    ----------
    adata
        Dataset with a ``ctrl`` condition.
    condition_key
        ``obs`` column holding the conditions.

    Returns
    -------
    pandas.DataFrame
        Perturbation condition (sorted, ``ctrl`` excluded) × ``var_names``, ``float64``.
    """
    means = pseudobulk(adata, groupby=condition_key)
    means.index = means.index.astype(str)
    if CONTROL not in means.index:
        raise ValueError(f"obs[{condition_key!r}] has no {CONTROL!r} cells")
    deltas = delta_profiles(means).sort_index()
    deltas.index.name = condition_key
    return deltas


def median_pairwise_delta_correlation(adata: AnnData, condition_key: str = "condition") -> float:
    """Median pairwise Pearson correlation of a dataset's delta profiles.

    Parameters
    ----------
    adata
        Dataset with a ``ctrl`` condition.
    condition_key
        ``obs`` column holding the conditions.

    Returns
    -------
    float
        Median over every pair of perturbations (each pair once) of
        :func:`pairwise_correlations` of :func:`pseudobulk_deltas`; ``nan`` with fewer than two
        perturbations.
    """
    deltas = pseudobulk_deltas(adata, condition_key).to_numpy()
    if deltas.shape[0] < 2:
        return float("nan")
    corr = pairwise_correlations(deltas, dtype=np.float64)
    return float(np.nanmedian(corr[np.triu_indices_from(corr, k=1)]))
