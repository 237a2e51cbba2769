"""Log-normalisation as GEARS datasets have it: ``normalize_total(1e4)`` then ``log1p``.

GEARS' Dataverse files are already log-normalised and pass unchanged; raw counts (a user's file)
are normalised with scanpy exactly as GEARS' authors did, and the result records what was done
in ``uns['perturb_assets']``.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import scanpy as sc
import scipy.sparse as sp

from perturb_assets.core import gears
from perturb_assets.core.errors import DatasetError
from perturb_assets.core.gears.format import UNS_KEY
from perturb_assets.core.gears.validation import validate_expression

__all__ = [
    "is_log_normalized",
    "normalize_expression",
]


# ----------------------------------------------------------------------------- normalisation


def is_log_normalized(adata: ad.AnnData) -> bool:
    """Guess whether ``X`` is already normalise_total + log1p transformed (the GEARS scale).

    Heuristic: ``X`` is log-normalised when it holds at least one non-integer value and its
    maximum passes :func:`perturb_assets.core.gears.is_log_scale` (at most ``log1p(1e6)`` ~ 13.8).
    An all-integer ``X`` is taken to be raw counts. A non-integer ``X`` with larger values
    (e.g. normalised but not logged) is neither; :func:`normalize_expression` refuses it.

    Parameters
    ----------
    adata
        The dataset; ``X`` is scanned once (sparse ``.data`` only).

    Returns
    -------
    bool
        ``True`` for log-normalised data.
    """
    all_int, vmax = gears.scan_values(adata.X)
    return (not all_int) and gears.is_log_scale(vmax)


def normalize_expression(adata: ad.AnnData) -> ad.AnnData:
    """Bring ``X`` to the GEARS scale: normalise_total(1e4) followed by log1p.

    Already log-normalised data (see :func:`is_log_normalized`) is returned unchanged (as a
    copy). Raw counts (integer-valued ``X``) are normalised with
    ``sc.pp.normalize_total(target_sum=1e4)`` and ``sc.pp.log1p``; the counts are kept in
    ``layers['counts']``. ``adata.uns['perturb_assets']['normalization']`` records the path
    taken: ``'already_log_normalized'`` or ``'normalize_total_1e4_log1p'``.

    Parameters
    ----------
    adata
        The dataset; not modified.

    Returns
    -------
    anndata.AnnData
        A new AnnData whose ``X`` is a CSR sparse matrix (dense input is converted).

    Raises
    ------
    DatasetError
        If ``X`` is invalid (see :func:`validate_expression`) or neither raw counts nor
        log-normalised (non-integer values above ``gears.LOG1P_MAX``).
    """
    validate_expression(adata, None)
    all_int, vmax = gears.scan_values(adata.X)
    out = adata.copy()
    uns = dict(out.uns.get(UNS_KEY, {}))
    if not all_int and gears.is_log_scale(vmax):
        if not sp.issparse(out.X):
            out.X = sp.csr_matrix(out.X)
        uns["normalization"] = "already_log_normalized"
    elif all_int:
        counts = sp.csr_matrix(out.X)
        out.layers["counts"] = counts.copy()
        out.X = counts.astype(np.float32)
        sc.pp.normalize_total(out, target_sum=gears.TARGET_SUM)
        sc.pp.log1p(out)
        if not sp.issparse(out.X):  # pragma: no cover - scanpy keeps CSR input sparse
            out.X = sp.csr_matrix(out.X)
        uns["normalization"] = "normalize_total_1e4_log1p"
    else:
        raise DatasetError(
            uns.get("source_path"),
            "X",
            f"values are non-integer with maximum {vmax:.4g} > log1p(1e6) = {gears.LOG1P_MAX:.4g}: "
            "neither raw counts nor normalise_total+log1p data; provide raw counts or "
            "log1p-normalised expression",
        )
    out.uns[UNS_KEY] = uns
    return out
