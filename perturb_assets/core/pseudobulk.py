"""Per-group (pseudobulk) mean expression without densifying the expression matrix.

A Perturb-seq dataset such as Replogle K562 holds ~160,000 cells x 5,000 genes in a sparse
matrix. The obvious ``adata.to_df().groupby(adata.obs["condition"]).mean()`` densifies that
matrix (~3 GB in float32) and then copies it again inside pandas. This module instead builds a
sparse *group-indicator* matrix ``G`` (``n_groups x n_cells``, one ``1.0`` per cell) and computes
the per-group sums as the sparse product ``G @ X``. ``X`` is never densified: the product runs
over blocks of rows of ``X`` (blocks of columns for CSC), each cast to float64, so the extra
memory is one block plus the ``n_groups x n_genes`` result, and sums are accumulated in float64.

The same group sums (and sums of squares) are what :mod:`perturb_assets.core.de` needs for a
Welch t-test, so :func:`group_sums` is shared with it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

__all__ = [
    "group_codes",
    "group_indicator",
    "group_sizes",
    "group_sums",
    "pseudobulk",
]

#: Target number of stored entries per block of ``X`` in :func:`group_sums`. A block is cast to
#: float64 (8 bytes per entry), so this bounds the temporary memory at roughly 130 MB.
_BLOCK_NNZ = 1 << 24


def group_codes(adata: AnnData, groupby: str = "condition") -> tuple[np.ndarray, pd.Index]:
    """Integer group code of every cell and the group labels.

    Parameters
    ----------
    adata
        Annotated data matrix.
    groupby
        Column of ``adata.obs`` that holds the group of every cell.

    Returns
    -------
    codes : numpy.ndarray
        ``int64`` array of length ``n_obs``; ``codes[i]`` is the row of cell ``i``'s group in
        ``labels``, or ``-1`` for a cell whose group is missing (NaN), which belongs to no group.
    labels : pandas.Index
        Group labels as ``str``. For a categorical column this is the category order, restricted
        to categories that occur (unused categories are dropped); otherwise the sorted unique
        values.

    Raises
    ------
    ValueError
        If ``groupby`` is not a column of ``adata.obs``.
    """
    if groupby not in adata.obs.columns:
        available = ", ".join(repr(str(c)) for c in adata.obs.columns) or "none"
        raise ValueError(
            f"adata.obs has no column {groupby!r} to group cells by; available columns: {available}"
        )
    column = adata.obs[groupby]
    if isinstance(column.dtype, pd.CategoricalDtype):
        cat = column.cat.remove_unused_categories()
    else:
        cat = column.astype("category")  # categories are the sorted unique values
    codes = np.asarray(cat.cat.codes, dtype=np.int64)
    labels = pd.Index([str(c) for c in cat.cat.categories], dtype=object, name=groupby)
    if labels.has_duplicates:
        raise ValueError(
            f"adata.obs[{groupby!r}] has distinct values with the same string form; "
            "group labels must be unique as strings"
        )
    return codes, labels


def group_indicator(codes: np.ndarray, n_groups: int, dtype: Any = np.float64) -> sparse.csr_matrix:
    """Sparse ``n_groups x n_cells`` indicator matrix with one ``1`` per grouped cell.

    Parameters
    ----------
    codes
        Group code of every cell (``-1``: in no group), as returned by :func:`group_codes`.
    n_groups
        Number of groups (rows of the result).
    dtype
        Dtype of the stored ones.

    Returns
    -------
    scipy.sparse.csr_matrix
        ``M[g, i] == 1`` exactly when ``codes[i] == g``.
    """
    codes = np.asarray(codes)
    cells = np.flatnonzero(codes >= 0)
    return sparse.csr_matrix(
        (np.ones(cells.size, dtype=dtype), (codes[cells], cells)),
        shape=(n_groups, codes.size),
    )


def _square(block: Any, dtype: np.dtype) -> Any:
    """Element-wise square of ``block`` computed in ``dtype`` (sparse stays sparse)."""
    if sparse.issparse(block):
        out = block.astype(dtype, copy=True)
        out.data *= out.data
        return out
    block = np.asarray(block, dtype=dtype)
    return block * block


def group_sums(
    x: Any,
    codes: np.ndarray,
    n_groups: int,
    *,
    squares: bool = False,
    block_nnz: int = _BLOCK_NNZ,
) -> np.ndarray:
    """Per-group column sums of ``x`` (or of ``x**2``) in float64, without densifying ``x``.

    Computes ``G @ x`` with the sparse indicator ``G`` of :func:`group_indicator`, block by
    block: blocks of rows for CSR and dense ``x``, blocks of columns for CSC ``x`` (the cheap
    slicing direction of each format). Each block is cast to float64 before the product, so
    every sum is accumulated in float64; ``x`` itself is neither densified nor modified.

    Parameters
    ----------
    x
        ``n_cells x n_genes`` matrix: a numpy array or a scipy sparse CSR/CSC matrix or array.
    codes
        Group code of every cell (``-1``: in no group).
    n_groups
        Number of groups.
    squares
        Sum ``x * x`` instead of ``x``. The square is computed the way scanpy's
        ``_get_mean_var`` computes it, so variances match scanpy bit for bit whenever the sums
        are exact: in ``x``'s own dtype for CSR and dense ``x`` (for float32 data, the square
        is rounded to float32 before it is added in float64), and in float64 for CSC ``x``.
    block_nnz
        Approximate number of matrix entries per block; bounds the temporary memory.

    Returns
    -------
    numpy.ndarray
        ``float64`` array of shape ``(n_groups, n_genes)``.
    """
    codes = np.asarray(codes, dtype=np.int64)
    n_cells, n_genes = x.shape
    if codes.shape != (n_cells,):
        raise ValueError(f"codes has shape {codes.shape}; expected ({n_cells},)")
    out = np.zeros((n_groups, n_genes), dtype=np.float64)
    if n_cells == 0 or n_genes == 0:
        return out
    square_dtype = np.dtype(np.float64)

    if sparse.issparse(x) and x.format == "csc":
        indicator = group_indicator(codes, n_groups)
        indptr = x.indptr
        step = _block_len(indptr, block_nnz, n_genes)
        for left in range(0, n_genes, step):
            right = min(left + step, n_genes)
            start, stop = int(indptr[left]), int(indptr[right])
            block = sparse.csc_matrix(
                (x.data[start:stop], x.indices[start:stop], indptr[left : right + 1] - start),
                shape=(n_cells, right - left),
            )
            block = _square(block, square_dtype) if squares else block.astype(np.float64)
            out[:, left:right] = (indicator @ block).toarray()
        return out

    if sparse.issparse(x):
        if x.format != "csr":
            x = sparse.csr_matrix(x)  # e.g. COO: one conversion, still sparse
        indptr = x.indptr
        square_dtype = x.dtype
        step = _block_len(indptr, block_nnz, n_cells)
    else:
        x = np.asarray(x)
        square_dtype = x.dtype
        step = max(1, block_nnz // max(n_genes, 1))

    for top in range(0, n_cells, step):
        bottom = min(top + step, n_cells)
        block_codes = codes[top:bottom]
        if not np.any(block_codes >= 0):
            continue
        indicator = group_indicator(block_codes, n_groups)
        if sparse.issparse(x):
            start, stop = int(indptr[top]), int(indptr[bottom])
            block = sparse.csr_matrix(
                (x.data[start:stop], x.indices[start:stop], indptr[top : bottom + 1] - start),
                shape=(bottom - top, n_genes),
            )
        else:
            block = x[top:bottom]
        if squares:
            block = _square(block, square_dtype)
        if sparse.issparse(block):
            block = block.astype(np.float64)
            out += (indicator @ block).toarray()
        else:
            out += indicator @ np.asarray(block, dtype=np.float64)
    return out


def _block_len(indptr: np.ndarray, block_nnz: int, n_major: int) -> int:
    """Number of major-axis slices per block so a block holds about ``block_nnz`` entries."""
    nnz = int(indptr[-1])
    if nnz == 0:
        return n_major
    per_slice = nnz / n_major
    return max(1, int(block_nnz // max(per_slice, 1.0)))


def group_sizes(adata: AnnData, groupby: str = "condition") -> pd.Series:
    """Number of cells in every group.

    Parameters
    ----------
    adata
        Annotated data matrix.
    groupby
        Column of ``adata.obs`` that holds the group of every cell.

    Returns
    -------
    pandas.Series
        ``int64`` cell counts indexed by group label (``str``), in the order of
        :func:`group_codes` (category order for a categorical column, sorted otherwise). Only
        groups with at least one cell appear; cells with a missing group are not counted.

    Raises
    ------
    ValueError
        If ``groupby`` is not a column of ``adata.obs``.
    """
    codes, labels = group_codes(adata, groupby)
    counts = np.bincount(codes[codes >= 0], minlength=len(labels)).astype(np.int64)
    return pd.Series(counts, index=labels, name="n_cells")


def pseudobulk(adata: AnnData, groupby: str = "condition") -> pd.DataFrame:
    """Mean expression of ``adata.X`` in every group of cells.

    Equivalent to ``adata.to_df().groupby(adata.obs[groupby]).mean()`` but computed as a sparse
    indicator product (see :func:`group_sums`), so sparse ``X`` is never densified and the
    extra memory is about one block of ``X`` plus the result.

    Parameters
    ----------
    adata
        Annotated data matrix; ``X`` may be dense or scipy sparse (CSR or CSC).
    groupby
        Column of ``adata.obs`` that holds the group of every cell.

    Returns
    -------
    pandas.DataFrame
        ``float64`` means, one row per group and one column per gene. Rows are the group labels
        as ``str``: the category order for a categorical column (unused categories dropped),
        the sorted unique values otherwise. Columns are ``adata.var_names``. Cells whose group
        is missing (NaN) are ignored, as pandas ``groupby`` does.

    Raises
    ------
    ValueError
        If ``groupby`` is not a column of ``adata.obs``.
    """
    codes, labels = group_codes(adata, groupby)
    sums = group_sums(adata.X, codes, len(labels))
    counts = np.bincount(codes[codes >= 0], minlength=len(labels)).astype(np.float64)
    sums /= counts[:, None]
    return pd.DataFrame(sums, index=labels, columns=adata.var_names.copy())
