"""Training pairs for perturbation models that read cells, as GEARS builds them.

GEARS (and the scGPT perturbation tutorial on top of it) pairs every perturbed cell with one
random control cell: the control cell's expression is the model's input, the perturbed cell's
its target, and the perturbed genes are flagged. Control cells are paired with themselves
(input = target, nothing flagged). :func:`pair_cells` draws the pairs once, from a seed;
:meth:`CellPairs.batch` densifies one batch of rows at a time from the sparse matrix, so a
Replogle-sized dataset is never dense in memory.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from perturb_assets.core.gears.format import CONTROL, parse_condition

__all__ = ["Batch", "CellPairs", "pair_cells"]


@dataclass
class Batch:
    """Dense arrays for one batch (float32, int64 flags)."""

    values: np.ndarray  # (B, G) control expression: the input
    flags: np.ndarray  # (B, G) 1 at perturbed genes
    targets: np.ndarray  # (B, G) perturbed-cell expression
    conditions: np.ndarray  # (B,) condition of each pair


@dataclass
class CellPairs:
    """(control cell, target cell) pairs of some conditions of one dataset.

    Attributes
    ----------
    x
        The dataset's expression matrix (CSR), shared, never copied.
    control_rows, target_rows
        Row of ``x`` of each pair's input and target cell.
    condition_codes
        Index into :attr:`conditions` of each pair.
    conditions
        The conditions the pairs cover.
    flag_columns
        Per condition, the gene columns to flag (its measured target genes).
    """

    x: sp.csr_matrix
    control_rows: np.ndarray
    target_rows: np.ndarray
    condition_codes: np.ndarray
    conditions: list[str]
    flag_columns: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.target_rows)

    @property
    def n_genes(self) -> int:
        return self.x.shape[1]

    def batch(self, pairs: np.ndarray) -> Batch:
        """The dense arrays of the pairs at positions ``pairs``."""
        values = self.x[self.control_rows[pairs]].toarray().astype(np.float32, copy=False)
        targets = self.x[self.target_rows[pairs]].toarray().astype(np.float32, copy=False)
        flags = np.zeros(values.shape, dtype=np.int64)
        codes = self.condition_codes[pairs]
        for row, code in enumerate(codes):
            flags[row, self.flag_columns[code]] = 1
        return Batch(values, flags, targets, np.asarray(self.conditions, dtype=object)[codes])

    def batches(self, batch_size: int, rng: np.random.Generator | None = None, drop_last=False):
        """Positions of each batch: shuffled with ``rng`` (then the last partial batch is
        dropped when ``drop_last``, as GEARS' train loader does), else in order."""
        order = rng.permutation(len(self)) if rng is not None else np.arange(len(self))
        stop = len(order) - len(order) % batch_size if drop_last else len(order)
        return [order[i : i + batch_size] for i in range(0, stop, batch_size)]


def pair_cells(
    adata: AnnData,
    conditions: Iterable[str],
    seed: int = 0,
    max_cells_per_condition: int | None = None,
) -> CellPairs:
    """Pair every cell of ``conditions`` with a random control cell (controls with themselves).

    Parameters
    ----------
    adata
        Log-normalised data with ``obs['condition']`` and ``var['gene_name']``.
    conditions
        The conditions to pair (e.g. the training conditions, ``ctrl`` included).
    seed
        Seed of the random control draws (and of the cell subsample).
    max_cells_per_condition
        Use at most this many cells of each condition (a random subset); ``None``: all.

    Returns
    -------
    CellPairs
        Pairs ordered by condition.
    """
    rng = np.random.default_rng(seed)
    x = sp.csr_matrix(adata.X)
    cell_condition = adata.obs["condition"].astype(str).to_numpy()
    controls = np.flatnonzero(cell_condition == CONTROL)
    if controls.size == 0:
        raise ValueError("no control cells to pair the perturbed cells with")
    column_of = pd.Series(np.arange(adata.n_vars), index=adata.var["gene_name"].astype(str))
    column_of = column_of[~column_of.index.duplicated()]
    wanted = list(dict.fromkeys(str(c) for c in conditions))
    parts = []
    for code, condition in enumerate(wanted):
        rows = np.flatnonzero(cell_condition == condition)
        if max_cells_per_condition is not None and rows.size > max_cells_per_condition:
            rows = np.sort(rng.choice(rows, max_cells_per_condition, replace=False))
        paired = rows if condition == CONTROL else rng.choice(controls, size=rows.size)
        parts.append((paired, rows, np.full(rows.size, code, dtype=np.int64)))
    flag_columns = [
        column_of.reindex(list(parse_condition(c))).dropna().to_numpy(np.int64) for c in wanted
    ]
    control_rows, target_rows, codes = (np.concatenate(p) for p in zip(*parts, strict=True))
    return CellPairs(x, control_rows, target_rows, codes, wanted, flag_columns)
