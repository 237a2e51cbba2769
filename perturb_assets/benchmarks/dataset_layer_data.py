"""The dataset-layer benchmark's data: a Replogle-sized dataset, simulated or generated.

It is saved as raw ``.npy`` arrays, so every measuring process loads it without temporaries.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

__all__ = [
    "build_dataset",
    "load_dataset",
    "make_benchmark_adata",
    "save_dataset",
    "stratified_subsample",
]

_CONTROL_FRACTION = 0.0625  # Replogle K562 essential: ~10,000 of ~160,000 cells are control


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def make_benchmark_adata(
    n_cells: int = 160_000,
    n_genes: int = 5_000,
    n_perturbations: int = 1_100,
    seed: int = 0,
    *,
    control_fraction: float = _CONTROL_FRACTION,
    chunk_cells: int = 8_192,
) -> AnnData:
    """A Replogle-like Perturb-seq dataset: sparse CSR float32, normalised and log1p'd.

    Counts are negative binomial (gamma-Poisson, dispersion ``r = 2``) around log-normal gene
    means (~26% of entries non-zero) times a log-normal library-size factor. Every
    perturbation knocks its target gene down to 15% and changes 25 other genes by a log-normal
    fold change. Counts are normalised to 10,000 per cell and ``log1p``'d in float32, as
    ``sc.pp.normalize_total(target_sum=1e4)`` + ``sc.pp.log1p`` do. Cells are in random order.

    Parameters
    ----------
    n_cells
        Number of cells; ``control_fraction`` of them are control (``"ctrl"``).
    n_genes
        Number of genes. ``var_names`` are Ensembl-like ids, ``var["gene_name"]`` symbols.
    n_perturbations
        Number of perturbation conditions. Conditions are singles ``"GENE+ctrl"`` (distinct
        targets) as in Replogle; beyond ``n_genes`` singles, combinations ``"A+B"`` are added.
    seed
        Seed of the random generator.
    control_fraction
        Fraction of control cells.
    chunk_cells
        Cells generated at a time (bounds the dense temporary).

    Returns
    -------
    anndata.AnnData
        ``X`` CSR float32; ``obs["condition"]`` categorical; ``var["gene_name"]``;
        ``uns["log1p"] = {"base": None}``.
    """
    rng = np.random.default_rng(seed)
    symbols = np.array([f"GENE{i}" for i in range(n_genes)], dtype=object)
    ids = np.array([f"ENSG{i:011d}" for i in range(n_genes)], dtype=object)

    n_single = min(n_perturbations, n_genes)
    targets: list[tuple[int, ...]] = [
        (int(g),) for g in rng.choice(n_genes, n_single, replace=False)
    ]
    while len(targets) < n_perturbations:
        a, b = sorted(int(g) for g in rng.choice(n_genes, 2, replace=False))
        if (a, b) not in targets:
            targets.append((a, b))
    conditions = ["ctrl"] + [
        f"{symbols[t[0]]}+ctrl" if len(t) == 1 else f"{symbols[t[0]]}+{symbols[t[1]]}"
        for t in targets
    ]

    n_ctrl = max(2, round(n_cells * control_fraction))
    n_pert_cells = n_cells - n_ctrl
    min_cells = 3
    if n_pert_cells < min_cells * n_perturbations:
        raise ValueError(
            f"{n_cells} cells leave fewer than {min_cells} cells per perturbation "
            f"({n_perturbations} perturbations)"
        )
    weights = rng.lognormal(0.0, 0.4, n_perturbations)
    per_pert = min_cells + rng.multinomial(
        n_pert_cells - min_cells * n_perturbations, weights / weights.sum()
    )
    codes = np.repeat(np.arange(n_perturbations + 1), np.concatenate([[n_ctrl], per_pert]))
    rng.shuffle(codes)

    base = rng.lognormal(np.log(0.2), 1.5, n_genes)
    fold = np.ones((n_perturbations + 1, n_genes), dtype=np.float64)
    for k, t in enumerate(targets, start=1):
        downstream = rng.choice(n_genes, 25, replace=False)
        fold[k, downstream] = rng.lognormal(0.0, 0.7, downstream.size)
        fold[k, list(t)] = 0.15
    library = rng.lognormal(0.0, 0.35, n_cells)
    dispersion = 2.0

    data_parts: list[np.ndarray] = []
    index_parts: list[np.ndarray] = []
    row_nnz = np.zeros(n_cells, dtype=np.int64)
    for top in range(0, n_cells, chunk_cells):
        bottom = min(top + chunk_cells, n_cells)
        mean = fold[codes[top:bottom]] * base * library[top:bottom, None]
        gamma = rng.standard_gamma(dispersion, size=mean.shape, dtype=np.float32)
        counts = rng.poisson(mean * (gamma / dispersion)).astype(np.float32)
        totals = counts.sum(axis=1, keepdims=True)
        scale = np.divide(np.float32(1e4), totals, out=np.zeros_like(totals), where=totals > 0)
        values = np.log1p(counts * scale, dtype=np.float32)
        block = sparse.csr_matrix(values)
        data_parts.append(block.data)
        index_parts.append(block.indices.astype(np.int32, copy=False))
        row_nnz[top:bottom] = np.diff(block.indptr)
        del mean, gamma, counts, values, block

    indptr = np.zeros(n_cells + 1, dtype=np.int64)
    np.cumsum(row_nnz, out=indptr[1:])
    index_dtype = np.int32 if indptr[-1] < np.iinfo(np.int32).max else np.int64
    data = np.concatenate(data_parts)
    data_parts.clear()
    indices = np.concatenate(index_parts).astype(index_dtype, copy=False)
    index_parts.clear()
    x = sparse.csr_matrix(
        (data, indices, indptr.astype(index_dtype)), shape=(n_cells, n_genes), copy=False
    )
    obs = pd.DataFrame(
        {"condition": pd.Categorical.from_codes(codes, categories=conditions)},
        index=pd.Index([f"cell{i}" for i in range(n_cells)], dtype=object),
    )
    obs["condition"] = obs["condition"].cat.reorder_categories(sorted(conditions))
    var = pd.DataFrame({"gene_name": symbols}, index=pd.Index(ids, dtype=object))
    adata = AnnData(X=x, obs=obs, var=var)
    adata.uns["log1p"] = {"base": None}
    return adata


def _simulated_adata(n_cells: int, n_genes: int, n_perturbations: int, seed: int) -> AnnData:
    """The colleague's simulator (``perturb_assets.core.simulation``), normalised for this use."""
    from perturb_assets.core.simulation import simulate_perturbseq

    kwargs: dict[str, Any] = {
        "n_cells": n_cells,
        "n_genes": n_genes,
        "n_perturbations": n_perturbations,
        "seed": seed,
    }
    if "compute_de" in inspect.signature(simulate_perturbseq).parameters:
        kwargs["compute_de"] = False  # its GEARS DE fields run scanpy: not needed here
    adata = simulate_perturbseq(**kwargs).adata
    if "condition" not in adata.obs.columns or not (adata.obs["condition"] == "ctrl").any():
        raise ValueError("simulated data lack obs['condition'] with 'ctrl' cells")
    x = adata.X
    x = sparse.csr_matrix(x, dtype=np.float32)
    if x.nnz and float(x.data.max()) > 50.0:  # raw counts: normalise + log1p like GEARS data
        import scanpy as sc

        adata.X = x
        sc.pp.normalize_total(adata, target_sum=1e4)
        sc.pp.log1p(adata)
        x = sparse.csr_matrix(adata.X, dtype=np.float32)
    adata.X = x
    if "gene_name" not in adata.var.columns:
        adata.var["gene_name"] = adata.var_names.astype(str)
    adata.obs["condition"] = adata.obs["condition"].astype(str).astype("category")
    adata.uns["log1p"] = {"base": None}
    return adata


def build_dataset(
    n_cells: int, n_genes: int, n_perturbations: int, seed: int, generator: str
) -> tuple[AnnData, str]:
    """Dataset for the benchmark and a description of where it came from."""
    if generator in ("auto", "simulate"):
        try:
            return (
                _simulated_adata(n_cells, n_genes, n_perturbations, seed),
                "perturb_assets.core.simulation.simulate_perturbseq",
            )
        except Exception as exc:
            if generator == "simulate":
                raise
            print(f"  simulator unavailable ({type(exc).__name__}: {exc}); using builtin")
    return (
        make_benchmark_adata(n_cells, n_genes, n_perturbations, seed),
        "make_benchmark_adata (builtin)",
    )


def stratified_subsample(adata: AnnData, n_cells: int, seed: int = 0) -> AnnData:
    """Keep the same fraction of every condition's cells (at least 3) - about ``n_cells``."""
    rng = np.random.default_rng(seed)
    fraction = min(1.0, n_cells / adata.n_obs)
    keep: list[np.ndarray] = []
    codes = adata.obs["condition"].cat.codes.to_numpy()
    for code in range(len(adata.obs["condition"].cat.categories)):
        cells = np.flatnonzero(codes == code)
        if cells.size == 0:
            continue
        k = min(cells.size, max(3, round(cells.size * fraction)))
        keep.append(rng.choice(cells, k, replace=False))
    rows = np.sort(np.concatenate(keep))
    return adata[rows].copy()


def save_dataset(adata: AnnData, folder: Path) -> None:
    """Write ``adata`` (CSR ``X``, condition, var) as plain ``.npy`` arrays plus JSON."""
    folder.mkdir(parents=True, exist_ok=True)
    x = sparse.csr_matrix(adata.X)
    np.save(folder / "data.npy", x.data)
    np.save(folder / "indices.npy", x.indices)
    np.save(folder / "indptr.npy", x.indptr)
    condition = adata.obs["condition"]
    np.save(folder / "codes.npy", condition.cat.codes.to_numpy())
    meta = {
        "shape": list(x.shape),
        "categories": [str(c) for c in condition.cat.categories],
        "var_names": [str(v) for v in adata.var_names],
        "gene_name": [str(v) for v in adata.var["gene_name"]],
    }
    (folder / "meta.json").write_text(json.dumps(meta))


def load_dataset(folder: Path) -> AnnData:
    """Inverse of :func:`save_dataset`; reads arrays straight into place (no temporaries)."""
    meta = json.loads((folder / "meta.json").read_text())
    x = sparse.csr_matrix(
        (
            np.load(folder / "data.npy"),
            np.load(folder / "indices.npy"),
            np.load(folder / "indptr.npy"),
        ),
        shape=tuple(meta["shape"]),
        copy=False,
    )
    codes = np.load(folder / "codes.npy")
    obs = pd.DataFrame(
        {"condition": pd.Categorical.from_codes(codes, categories=meta["categories"])},
        index=pd.Index(np.arange(x.shape[0]).astype(str), dtype=object),
    )
    var = pd.DataFrame(
        {"gene_name": meta["gene_name"]}, index=pd.Index(meta["var_names"], dtype=object)
    )
    adata = AnnData(X=x, obs=obs, var=var)
    adata.uns["log1p"] = {"base": None}
    return adata
