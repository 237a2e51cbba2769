"""The noise ceiling: how well one half of a condition's cells predicts the other half.

No model can be expected to predict a condition's pseudo-bulk profile better than the
condition's own cells do. For every test condition the cells are split at random into two
halves; the first half's mean is scored as a "prediction" of the second half's mean with every
metric of :func:`perturb_assets.core.evaluation.model_metrics` (same control mean, same DE
lists). This is repeated over ``n_repeats`` random splits and averaged per condition; the
metrics summary then reports it as the model ``noise_ceiling`` and places every model as a
fraction of the way from Train Mean to it.

cell-eval's DE family is scored the same way: the second half's cells are tested against the
control cells for the real DE table, the first half's mean as a pseudo-bulk prediction of the
same number of cells (as every model's is), so `metric_calibration` calibrates it too.

A half has half the cells, so its mean is noisier than the full pseudo-bulk profile a model is
scored against: the split-half ceiling is a conservative (low) estimate of the attainable
score. Conditions with fewer than two cells have no ceiling.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData

from perturb_assets.core.evaluation.benchmark import (
    CEILING_MODEL,
    _DEFamily,
    de_method_lists,
    model_metrics,
)
from perturb_assets.core.gears.format import CONTROL
from perturb_assets.core.metrics.de_family import ControlCells
from perturb_assets.core.pp.pseudobulk import group_codes, group_sums

__all__ = ["noise_ceiling", "split_half_means"]


def split_half_means(
    adata: AnnData, conditions: list[str], rng: np.random.Generator
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Mean expression of a random half of each condition's cells, and of the other half.

    One pass over ``X``: every cell gets the code ``2 * condition + half``.
    """
    first, second, _ = _split_half(adata, conditions, rng)
    return first, second


def _split_half(
    adata: AnnData, conditions: list[str], rng: np.random.Generator
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """:func:`split_half_means` and every cell's half code (-1: in neither half)."""
    codes, labels = group_codes(adata, "condition")
    wanted = pd.Index(labels).get_indexer(conditions)
    position = np.full(len(labels), -1)
    position[wanted] = np.arange(len(conditions))
    cell_group = np.where(codes >= 0, position[np.maximum(codes, 0)], -1)
    half_codes = np.full(len(codes), -1, dtype=np.int64)
    for k in range(len(conditions)):
        cells = rng.permutation(np.flatnonzero(cell_group == k))
        half = len(cells) // 2
        half_codes[cells[:half]] = 2 * k
        half_codes[cells[half : 2 * half]] = 2 * k + 1  # an odd cell out is left out
    sums, _ = group_sums(adata.X, half_codes, 2 * len(conditions))
    counts = np.bincount(half_codes[half_codes >= 0], minlength=2 * len(conditions))
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts[:, None]
    index = pd.Index(conditions, name="condition")
    first = pd.DataFrame(means[0::2], index=index, columns=adata.var_names)
    second = pd.DataFrame(means[1::2], index=index, columns=adata.var_names)
    return first, second, half_codes


def _de_family_scores(
    adata: AnnData,
    first: pd.DataFrame,
    second: pd.DataFrame,
    half_codes: np.ndarray,
    subgroups: pd.Series,
    is_control: np.ndarray,
    control: ControlCells,
) -> pd.DataFrame:
    """The DE family of the first half's mean against the second half's cells and the control
    cells (``is_control``; ``control`` prepared from them once for every repeat)."""
    second_half = (half_codes >= 0) & (half_codes % 2 == 1)
    real = adata[np.flatnonzero(second_half | is_control)]
    return _DEFamily(real, second, control).metrics(first, subgroups)


def noise_ceiling(
    adata: AnnData,
    split: pd.DataFrame,
    de_table: pd.DataFrame | None,
    pseudobulk: pd.DataFrame,
    n_repeats: int = 5,
    seed: int = 0,
    de_family: bool = True,
) -> pd.DataFrame:
    """Per test condition and metric: the split-half score averaged over ``n_repeats`` splits.

    Parameters
    ----------
    adata
        Log-normalised cells (``obs['condition']``, ``var['gene_name']``).
    split
        The condition split (``split`` and ``subgroup`` columns).
    de_table
        The DE table of :func:`perturb_assets.core.pp.de_gene_table`; ``None``: no DE metrics.
    pseudobulk
        Condition means with a ``ctrl`` row (the control mean of every score).
    n_repeats, seed
        Random half-splits and their seed.
    de_family
        Also score cell-eval's DE family (when ``adata`` has control cells).

    Returns
    -------
    pandas.DataFrame
        The tidy layout of :func:`perturb_assets.core.evaluation.per_condition_metrics` (model
        ``noise_ceiling``), plus ``sd``: the spread of the score over the repeats.
    """
    cells = adata.obs["condition"].astype(str).value_counts()
    test = [c for c in split.index[split["split"] == "test"] if cells.get(c, 0) >= 2]
    ctrl = pseudobulk.loc[CONTROL]
    lists = de_method_lists(de_table) if de_table is not None else {}
    gene_names = adata.var["gene_name"] if "gene_name" in adata.var else None
    rng = np.random.default_rng(seed)
    is_control = (adata.obs["condition"].astype(str) == CONTROL).to_numpy()
    control = None
    if de_family and is_control.any() and test:
        control = ControlCells(adata.X[np.flatnonzero(is_control)])
    runs = []
    for repeat in range(n_repeats):
        first, second, half_codes = _split_half(adata, test, rng)
        scores = model_metrics(first, second, ctrl, lists, split["subgroup"], gene_names)
        if control is not None:
            family = _de_family_scores(adata, first, second, half_codes, split["subgroup"],
                                       is_control, control)  # fmt: skip
            scores = pd.concat([scores, family], ignore_index=True)
        runs.append(scores.assign(repeat=repeat))
    keys = ["condition", "subgroup", "metric", "de_method"]
    every = pd.concat(runs, ignore_index=True)
    ceiling = every.groupby(keys, dropna=False, sort=False)["value"].agg(["mean", "std"])
    ceiling = ceiling.rename(columns={"mean": "value", "std": "sd"}).reset_index()
    return ceiling.assign(model=CEILING_MODEL, features="none", protocol="none")
