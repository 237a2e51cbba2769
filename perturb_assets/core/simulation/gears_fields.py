"""The DE-gene ``uns`` fields cell-gears writes into its datasets, for simulated data."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from perturb_assets.core import gears
from perturb_assets.core.gears.format import CONTROL
from perturb_assets.core.pp.pseudobulk import group_sums

__all__ = [
    "gears_de_fields",
]


def gears_de_fields(adata: AnnData) -> dict[str, dict[str, np.ndarray]]:
    """Compute the GEARS DE-gene ``uns`` fields of a dataset.

    Reimplements cell-gears 0.1.2 ``get_DE_genes`` (``rank_genes_groups_cov_all``: for each
    cell type, ``sc.tl.rank_genes_groups`` of ``condition_name`` against ``{cell_type}_ctrl_1``,
    t-test, ``rankby_abs=True``, all genes) and ``get_dropout_non_zero_genes`` (top-20 DE genes
    among the non-dropout / non-zero genes of each condition, and those gene index sets).

    Parameters
    ----------
    adata
        Dataset with GEARS ``obs`` (``condition``, ``cell_type``, ``condition_name``) and
        log-normalised ``X``. It is not modified.

    Returns
    -------
    dict
        ``{key: {condition_name: array}}`` for the keys of
        :data:`perturb_assets.core.gears.UNS_DE_KEYS`.
    """
    import scanpy as sc

    x = adata.X
    obs = adata.obs
    rank: dict[str, np.ndarray] = {}
    for cov in pd.unique(obs["cell_type"].astype(str)):
        sel = np.flatnonzero((obs["cell_type"].astype(str) == cov).to_numpy())
        sub = AnnData(
            X=x if len(sel) == adata.n_obs else x[sel],
            obs=pd.DataFrame(
                {"condition_name": obs["condition_name"].astype(str).to_numpy()[sel]},
                index=obs.index[sel],
            ).astype("category"),
            var=pd.DataFrame(index=adata.var_names),
        )
        with warnings.catch_warnings():
            # scanpy fills its result frame column by column.
            warnings.simplefilter("ignore", pd.errors.PerformanceWarning)
            sc.tl.rank_genes_groups(
                sub,
                groupby="condition_name",
                reference=f"{cov}_{CONTROL}_1",
                rankby_abs=True,
                n_genes=adata.n_vars,
                use_raw=False,
            )
        names = sub.uns["rank_genes_groups"]["names"]
        for group in names.dtype.names:
            rank[group] = np.asarray(names[group]).astype(str)

    conditions = obs["condition"].astype(str).to_numpy()
    uniq, codes = np.unique(conditions, return_inverse=True)
    n_nonzero, _ = group_sums(_nonzero_indicator(x), codes, len(uniq))
    ctrl_zero = n_nonzero[np.flatnonzero(uniq == CONTROL)[0]] == 0
    name_to_condition = dict(
        zip(obs["condition_name"].astype(str), obs["condition"].astype(str), strict=True)
    )
    cond_row = {c: i for i, c in enumerate(uniq)}
    gene_idx = {g: i for i, g in enumerate(adata.var_names)}
    var_names = np.asarray(adata.var_names).astype(str)

    top_non_dropout: dict[str, np.ndarray] = {}
    top_non_zero: dict[str, np.ndarray] = {}
    non_dropout_idx: dict[str, np.ndarray] = {}
    non_zero_idx: dict[str, np.ndarray] = {}
    for name, ranked in rank.items():
        row = n_nonzero[cond_row[name_to_condition[name]]]
        non_zero = row > 0
        non_dropout = non_zero | ctrl_zero
        order = np.fromiter((gene_idx[g] for g in ranked), dtype=np.int64, count=len(ranked))
        top_non_dropout[name] = var_names[order[non_dropout[order]][: gears.N_TOP_DE]]
        top_non_zero[name] = var_names[order[non_zero[order]][: gears.N_TOP_DE]]
        non_zero_idx[name] = np.flatnonzero(non_zero).astype(np.int64)
        non_dropout_idx[name] = np.flatnonzero(non_dropout).astype(np.int64)
    return {
        "rank_genes_groups_cov_all": rank,
        "top_non_dropout_de_20": top_non_dropout,
        "top_non_zero_de_20": top_non_zero,
        "non_dropout_gene_idx": non_dropout_idx,
        "non_zeros_gene_idx": non_zero_idx,
    }


def _nonzero_indicator(x: Any) -> Any:
    """``x != 0`` as float32, sparse when ``x`` is (a small copy, for the GEARS DE fields)."""
    if sp.issparse(x):
        out = sp.csr_matrix(x, dtype=np.float32, copy=True)
        out.data = (out.data != 0).astype(np.float32)
        return out
    return (np.asarray(x) != 0).astype(np.float32)
