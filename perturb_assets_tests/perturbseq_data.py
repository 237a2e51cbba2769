"""Small Perturb-seq-like AnnData shared by the pseudobulk and DE tests."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
from scipy import sparse


def make_adata(seed: int, fmt: str = "csr", n_cells: int = 1500, n_genes: int = 120) -> ad.AnnData:
    """Small Perturb-seq-like data: NB counts -> normalize_total(1e4) -> log1p, float32.

    Conditions: ``ctrl``, singles ``A+ctrl`` and ``ctrl+A``, combinations ``A+B``, a target that
    is not measured, a two-cell group; five genes are never expressed.
    """
    rng = np.random.default_rng(seed)
    symbols = np.array([f"G{i}" for i in range(n_genes)])
    targets = rng.choice(n_genes - 5, 8, replace=False)
    conditions = [
        f"{symbols[g]}+ctrl" if k % 2 else f"ctrl+{symbols[g]}" for k, g in enumerate(targets)
    ]
    conditions += [
        f"{symbols[targets[0]]}+{symbols[targets[1]]}",
        f"{symbols[targets[2]]}+{symbols[targets[3]]}",
    ]
    conditions += ["NOTMEASURED+ctrl"]
    labels = np.array(
        ["ctrl"] * 300 + list(rng.choice(conditions, n_cells - 302)) + ["ZZ+ctrl"] * 2
    )
    rng.shuffle(labels)
    mean = np.exp(rng.normal(-0.5, 1.3, n_genes))
    mean[-5:] = 0.0
    fold = {c: np.ones(n_genes) for c in set(labels)}
    for c, f in fold.items():
        if c != "ctrl":
            f[rng.choice(n_genes - 5, 8, replace=False)] = np.exp(rng.normal(0, 1.2, 8))
            for t in c.split("+"):
                f[symbols == t] = 0.1
    mu = np.stack([fold[c] for c in labels]) * mean * rng.lognormal(0, 0.3, (n_cells, 1))
    counts = rng.negative_binomial(2.0, 2.0 / (2.0 + mu)).astype(np.float32)
    adata = ad.AnnData(sparse.csr_matrix(counts))
    adata.obs_names = [f"cell{i}" for i in range(n_cells)]
    adata.var_names = [f"ENSG{i:011d}" for i in range(n_genes)]
    adata.var["gene_name"] = symbols
    adata.obs["condition"] = pd.Categorical(labels)
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    x = adata.X.astype(np.float32)
    adata.X = {"csr": x, "csc": sparse.csc_matrix(x), "dense": x.toarray()}[fmt]
    return adata
