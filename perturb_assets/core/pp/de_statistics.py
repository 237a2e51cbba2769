"""The DE test statistics behind :func:`perturb_assets.core.pp.top_de_genes`, as scanpy scores them.

``_welch_t_scores`` is scanpy's ``t-test`` (Welch, ``rankby_abs``) and ``_wilcoxon_scores`` its
``wilcoxon`` (tie-corrected rank sums), computed for every condition against ``ctrl`` at once
with numba kernels over sparse or dense ``X``, in gene blocks of ``_WILCOXON_BLOCK`` values.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
from scipy import sparse

from perturb_assets.core.pp.pseudobulk import group_sums

# --------------------------------------------------------------------------------------------
# t-test
# --------------------------------------------------------------------------------------------


def _welch_t_scores(x: Any, codes: np.ndarray, sizes: np.ndarray, iref: int) -> np.ndarray:
    """Welch t of every non-reference group vs the reference, as scanpy computes it."""
    n_groups = sizes.size
    sums, sumsq = group_sums(x, codes, n_groups, squares=True)
    n = sizes.astype(np.float64)[:, None]
    # like scanpy: NaN from 0/0 or sqrt of a tiny negative variance is silent (then set to 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        # scanpy's _get_mean_var: mean = sum / n; var = (sumsq / n - mean**2) * (n / (n - 1))
        means = sums / n
        del sums
        variances = sumsq / n
        del sumsq
        variances -= means**2
        variances *= (sizes / (sizes - 1)).astype(np.float64)[:, None]
        # scanpy passes std = sqrt(var) to scipy.stats.ttest_ind_from_stats, which squares it
        variances = np.sqrt(variances) ** 2

        keep = np.arange(n_groups) != iref
        mean_ref = means[iref]
        vn_ref = variances[iref] / sizes[iref]
        means = means[keep]
        vn = variances[keep]
        del variances
        vn /= sizes[keep][:, None]
        # scipy: denom = sqrt(v1 / n1 + v2 / n2); t = (mean1 - mean2) / denom
        vn += vn_ref
        denom = np.sqrt(vn, out=vn)
        means -= mean_ref
        scores = np.divide(means, denom, out=means)
    scores[np.isnan(scores)] = 0
    return scores


# --------------------------------------------------------------------------------------------
# Wilcoxon rank-sum
# --------------------------------------------------------------------------------------------


#: Stored values per block when a CSR (or dense) matrix is transposed block by block for the
#: Wilcoxon test: the temporary copy holds an int64 row and the value per entry, i.e. about
#: ``12 * _WILCOXON_BLOCK`` bytes (~100 MB) for float32 data.
_WILCOXON_BLOCK = 1 << 23


@numba.njit(cache=True, inline="always")
def _lower_bound(ref_data: np.ndarray, lo: int, hi: int, value: Any) -> int:  # pragma: no cover
    """First index in ``[lo, hi)`` of sorted ``ref_data`` whose value is ``>= value``, else hi.

    Branch-free binary search (the comparison selects the next base without a jump).
    """
    base = lo
    n = hi - lo
    while n > 1:
        half = n >> 1
        base = base + half if ref_data[base + half] < value else base
        n -= half
    return base + 1 if (n == 1 and ref_data[base] < value) else base


@numba.njit(cache=True, inline="always")
def _upper_bound(ref_data: np.ndarray, lo: int, hi: int, value: Any) -> int:  # pragma: no cover
    """First index in ``[lo, hi)`` of sorted ``ref_data`` whose value is ``> value``, else hi."""
    base = lo
    n = hi - lo
    while n > 1:
        half = n >> 1
        base = base + half if ref_data[base + half] <= value else base
        n -= half
    return base + 1 if (n == 1 and ref_data[base] <= value) else base


@numba.njit(cache=True)
def _zero_counts(
    ref_data: np.ndarray, ref_indptr: np.ndarray, ref_zeros: np.ndarray
) -> np.ndarray:  # pragma: no cover - numba
    """``2 * #(ref < 0) + #(ref == 0)`` of every gene, implicit (unstored) zeros included."""
    n = ref_indptr.size - 1
    out = np.zeros(n, dtype=np.int64)
    for j in range(n):
        start = ref_indptr[j]
        stop = ref_indptr[j + 1]
        lo = _lower_bound(ref_data, start, stop, 0.0)
        hi = _upper_bound(ref_data, lo, stop, 0.0)
        out[j] = 2 * (lo - start) + (hi - lo) + ref_zeros[j]
    return out


@numba.njit(cache=True, parallel=True)
def _twice_u_columns(
    data: np.ndarray,
    indices: np.ndarray,
    indptr: np.ndarray,
    first_gene: int,
    cell_row: np.ndarray,
    test_sizes: np.ndarray,
    ref_data: np.ndarray,
    ref_indptr: np.ndarray,
    ref_zeros: np.ndarray,
    zero_count: np.ndarray,
    out: np.ndarray,
) -> None:  # pragma: no cover - numba
    """2U of every test group for the genes of a CSC block (gene ``first_gene + jj``).

    One gene per task. Every stored value of the gene is located among the gene's sorted
    reference values (a few KB, in cache) through a bucket table (~2 equal-width buckets per
    reference value over the reference range): the bucket narrows the search to a few values,
    and the exact position is then found by comparing values, so the result is exact whatever
    the rounding of the bucket arithmetic. Groups' unstored zeros are added in one step per
    group.
    ``cell_row``: result row of a cell, ``-1`` for reference or ungrouped cells.
    """
    n_groups = test_sizes.size
    for jj in numba.prange(indptr.size - 1):
        j = first_gene + jj
        start = ref_indptr[j]
        stop = ref_indptr[j + 1]
        m = stop - start
        n_zeros = ref_zeros[j]
        acc = np.zeros(n_groups, dtype=np.int64)
        stored = np.zeros(n_groups, dtype=np.int64)

        # bucket b covers [vmin + b * width, vmin + (b + 1) * width); table[b] is the first
        # reference value >= the bucket's lower edge (edges are recomputed identically below)
        n_buckets = max(1, min(2 * m, 16384))
        vmin = np.float64(ref_data[start]) if m > 0 else 0.0
        vmax = np.float64(ref_data[stop - 1]) if m > 0 else 0.0
        width = (vmax - vmin) / n_buckets
        if not width > 0.0:
            n_buckets = 1
            width = 1.0
        inverse = 1.0 / width
        table = np.empty(n_buckets + 1, dtype=np.int64)
        i = start
        for b in range(n_buckets):
            edge = vmin + b * width
            while i < stop and ref_data[i] < edge:
                i += 1
            table[b] = i
        table[n_buckets] = stop

        for p in range(indptr[jj], indptr[jj + 1]):
            g = cell_row[indices[p]]
            if g < 0:
                continue
            value = data[p]
            v = np.float64(value)
            if m == 0 or v < vmin:
                lo = start
                hi = start
            elif not v <= vmax:  # above every reference value (NaN too: never out of bounds)
                lo = stop
                hi = stop
            else:
                # bucket b with edge(b) <= v < edge(b + 1) (or the last bucket): every value
                # equal to v lies in [table[b], table[b + 1]), so both bounds are found there
                b = min(int((v - vmin) * inverse), n_buckets - 1)
                while b > 0 and v < vmin + b * width:
                    b -= 1
                while b < n_buckets - 1 and v >= vmin + (b + 1) * width:
                    b += 1
                lo = _lower_bound(ref_data, table[b], table[b + 1], value)
                hi = _upper_bound(ref_data, lo, table[b + 1], value)
            less = lo - start
            equal = hi - lo
            if value > 0:
                less += n_zeros
            elif value == 0:
                equal += n_zeros
            acc[g] += 2 * less + equal
            stored[g] += 1
        for g in range(n_groups):
            out[g, j] = acc[g] + (test_sizes[g] - stored[g]) * zero_count[j]


@numba.njit(cache=True)
def _csr_gene_block(
    data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, cursor: np.ndarray, lo: int, hi: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - numba
    """Columns ``lo:hi`` of a CSR matrix with sorted indices, as CSC arrays.

    Blocks must be requested in increasing order: ``cursor[r]`` is where row ``r``'s entries
    of column ``lo`` onward start (initially ``indptr[:-1]``) and is advanced to ``hi``.
    """
    n_rows = indptr.size - 1
    width = hi - lo
    col_ptr = np.zeros(width + 1, dtype=np.int64)
    for r in range(n_rows):
        p = cursor[r]
        end = indptr[r + 1]
        while p < end and indices[p] < hi:
            col_ptr[indices[p] - lo + 1] += 1
            p += 1
    for c in range(width):
        col_ptr[c + 1] += col_ptr[c]
    rows = np.empty(col_ptr[width], dtype=np.int64)
    values = np.empty(col_ptr[width], dtype=data.dtype)
    fill = col_ptr[:width].copy()
    for r in range(n_rows):
        p = cursor[r]
        end = indptr[r + 1]
        while p < end and indices[p] < hi:
            c = indices[p] - lo
            q = fill[c]
            rows[q] = r
            values[q] = data[p]
            fill[c] = q + 1
            p += 1
        cursor[r] = p
    return col_ptr, rows, values


def _sorted_reference(x: Any, ref_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every gene's reference values sorted: (values, per-gene offsets, implicit zeros)."""
    m = ref_rows.size
    if sparse.issparse(x):
        ref = sparse.csc_matrix(x[ref_rows])
        ref_data = np.array(ref.data, copy=True)
        ref_indptr = np.asarray(ref.indptr, dtype=np.int64)
        for j in range(ref_indptr.size - 1):  # numpy's sort is SIMD-accelerated
            ref_data[ref_indptr[j] : ref_indptr[j + 1]].sort()
    else:
        ref_t = np.sort(np.asarray(x)[ref_rows].T, axis=1)  # genes x m
        ref_data = np.ascontiguousarray(ref_t).reshape(-1)
        ref_indptr = np.arange(ref_t.shape[0] + 1, dtype=np.int64) * m
    ref_zeros = m - np.diff(ref_indptr)
    return ref_data, ref_indptr, ref_zeros


def _gene_blocks(n_genes: int, values_per_gene: float) -> list[tuple[int, int]]:
    """Consecutive gene ranges holding about ``_WILCOXON_BLOCK`` values each."""
    step = max(1, int(_WILCOXON_BLOCK // max(values_per_gene, 1.0)))
    return [(lo, min(lo + step, n_genes)) for lo in range(0, n_genes, step)]


def _wilcoxon_scores(x: Any, codes: np.ndarray, sizes: np.ndarray, iref: int) -> np.ndarray:
    """Wilcoxon rank-sum z-scores (no tie correction) of every non-reference group."""
    n_groups = sizes.size
    keep = np.arange(n_groups) != iref
    # row of every non-reference group in the result; -1 for the reference and ungrouped cells
    test_row = np.full(n_groups, -1, dtype=np.int64)
    test_row[keep] = np.arange(n_groups - 1)
    cell_row = np.where(codes >= 0, test_row[np.maximum(codes, 0)], -1)
    test_sizes = sizes[keep]

    ref_rows = np.flatnonzero(codes == iref)
    ref_data, ref_indptr, ref_zeros = _sorted_reference(x, ref_rows)
    zero_count = _zero_counts(ref_data, ref_indptr, ref_zeros)
    reference = (ref_data, ref_indptr, ref_zeros, zero_count)

    n_cells, n_genes = x.shape
    twice_u = np.zeros((n_groups - 1, n_genes), dtype=np.int64)
    if sparse.issparse(x) and x.format == "csc":
        _twice_u_columns(x.data, x.indices, x.indptr, 0, cell_row, test_sizes, *reference, twice_u)
    elif sparse.issparse(x):
        # Gene by gene is fast (the gene's reference values stay in cache), so the CSR matrix
        # is transposed one block of genes at a time (bounded memory, x itself untouched).
        if not x.has_sorted_indices:
            x = x.sorted_indices()
        cursor = np.array(x.indptr[:-1], dtype=np.int64)
        for lo, hi in _gene_blocks(n_genes, x.nnz / max(n_genes, 1)):
            col_ptr, rows, values = _csr_gene_block(x.data, x.indices, x.indptr, cursor, lo, hi)
            _twice_u_columns(values, rows, col_ptr, lo, cell_row, test_sizes, *reference, twice_u)
    else:
        x = np.asarray(x)
        all_rows = np.arange(n_cells, dtype=np.int64)
        for lo, hi in _gene_blocks(n_genes, n_cells):
            values = np.ascontiguousarray(x[:, lo:hi].T).reshape(-1)
            col_ptr = np.arange(hi - lo + 1, dtype=np.int64) * n_cells
            rows = np.broadcast_to(all_rows, (hi - lo, n_cells)).reshape(-1)
            _twice_u_columns(values, rows, col_ptr, lo, cell_row, test_sizes, *reference, twice_u)

    n = test_sizes[:, None]
    m = int(sizes[iref])
    # rank sum R = U + n(n+1)/2; 2R is an integer, so R is exact, like scanpy's sum of ranks.
    rank_sum = (twice_u + n * (n + 1)).astype(np.float64) / 2.0
    del twice_u
    # scanpy: (R - n * ((n + m + 1) / 2.0)) / sqrt(1 * n * m * (n + m + 1) / 12.0)
    expected = n * ((n + m + 1) / 2.0)
    std_dev = np.sqrt((n * m * (n + m + 1)) / 12.0)
    rank_sum -= expected
    rank_sum /= std_dev
    rank_sum[np.isnan(rank_sum)] = 0
    return rank_sum
