"""Sampling the simulated UMI counts: negative binomial per cell and gene, in chunks."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from perturb_assets.core import gears

_PENETRANCE_LEVELS = np.array([0.0, 0.5, 1.0], dtype=np.float32)

_NB_DIRECT_LAMBDA = 2.0  # above this mean, sample NB directly instead of by CDF inversion
_CHUNK_ENTRIES = 4_000_000


def _sample_nb(rng: np.random.Generator, lam: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Negative binomial counts with means ``lam`` (cells × genes) and inverse dispersion.

    Entries with a small mean are sampled by inverting the CDF from one uniform draw, which
    only iterates over the (few) non-zero entries; entries with a large mean are drawn with
    ``Generator.negative_binomial``. Both are exact samples of NB(mean, theta).

    Returns
    -------
    numpy.ndarray
        ``int32`` counts, same shape as ``lam``.
    """
    shape = lam.shape
    theta_b = np.broadcast_to(theta[None, :], shape)
    p_zero = np.power(1.0 + lam / theta_b, -theta_b, dtype=np.float32)
    u = rng.random(shape, dtype=np.float32)
    direct = lam > _NB_DIRECT_LAMBDA
    out = np.zeros(shape, dtype=np.int32)

    idx = np.flatnonzero((u > p_zero) & ~direct)
    if idx.size:
        lam_s = lam.ravel()[idx].astype(np.float64)
        th_s = theta_b.ravel()[idx].astype(np.float64)
        u_s = u.ravel()[idx].astype(np.float64)
        q = lam_s / (th_s + lam_s)
        pk = np.exp(th_s * np.log1p(-q))
        cdf = pk.copy()
        result = np.ones(idx.size, dtype=np.int32)
        active = np.arange(idx.size)
        k = 0
        while active.size:
            k += 1
            pk = pk * ((k - 1 + th_s) / k) * q
            cdf = cdf + pk
            done = cdf >= u_s
            if k >= 10_000:
                done[:] = True
            result[active[done]] = max(k, 1)
            keep = ~done
            active, pk, cdf, th_s, q, u_s = (
                active[keep],
                pk[keep],
                cdf[keep],
                th_s[keep],
                q[keep],
                u_s[keep],
            )
        out.ravel()[idx] = result

    idx = np.flatnonzero(direct)
    if idx.size:
        lam_s = lam.ravel()[idx].astype(np.float64)
        th_s = theta_b.ravel()[idx].astype(np.float64)
        out.ravel()[idx] = rng.negative_binomial(th_s, th_s / (th_s + lam_s))
    return out


def _sample_counts(
    rng: np.random.Generator,
    *,
    mu: np.ndarray,
    theta: np.ndarray,
    effects: np.ndarray,
    cond_of_cell: np.ndarray,
    level_of_cell: np.ndarray,
    phase_of_cell: np.ndarray,
    phase_multiplier: np.ndarray,
    library: np.ndarray,
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Sample the count matrix chunk by chunk; return (counts, log-normalised X) as CSR."""
    n_cells = len(cond_of_cell)
    n_genes = len(mu)
    n_levels = len(_PENETRANCE_LEVELS)
    # Expected expression of every (condition, penetrance level): (conditions * levels) × genes.
    table = (
        mu[None, None, :] * np.exp(_PENETRANCE_LEVELS[None, :, None] * effects[:, None, :])
    ).astype(np.float32)
    table = table.reshape(-1, n_genes)
    key = cond_of_cell * n_levels + level_of_cell
    chunk = max(1, _CHUNK_ENTRIES // n_genes)
    data_parts: list[np.ndarray] = []
    x_parts: list[np.ndarray] = []
    index_parts: list[np.ndarray] = []
    row_nnz = np.zeros(n_cells, dtype=np.int64)
    for start in range(0, n_cells, chunk):
        stop = min(start + chunk, n_cells)
        lam = table[key[start:stop]]
        lam *= phase_multiplier[phase_of_cell[start:stop]]
        lam *= library[start:stop, None]
        block = _sample_nb(rng, lam, theta)
        del lam
        flat = np.flatnonzero(block)
        rows = flat // n_genes
        values = block.ravel()[flat].astype(np.float32)
        totals = block.sum(axis=1, dtype=np.float64)
        factor = np.divide(gears.TARGET_SUM, totals, out=np.zeros_like(totals), where=totals > 0)
        data_parts.append(values)
        x_parts.append(np.log1p(values * factor[rows].astype(np.float32)))
        index_parts.append((flat % n_genes).astype(np.int32))
        row_nnz[start:stop] = np.bincount(rows, minlength=stop - start)
    indptr = np.zeros(n_cells + 1, dtype=np.int64)
    np.cumsum(row_nnz, out=indptr[1:])
    if indptr[-1] < np.iinfo(np.int32).max:
        indptr = indptr.astype(np.int32)
    indices = np.concatenate(index_parts) if index_parts else np.zeros(0, np.int32)
    del index_parts
    counts = sp.csr_matrix(
        (np.concatenate(data_parts), indices, indptr), shape=(n_cells, n_genes), copy=False
    )
    del data_parts
    x = sp.csr_matrix(
        (np.concatenate(x_parts), indices.copy(), indptr.copy()),
        shape=(n_cells, n_genes),
        copy=False,
    )
    return counts, x
