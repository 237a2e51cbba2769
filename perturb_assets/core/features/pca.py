"""PCA features: the GO annotation matrix or a gene embedding reduced to at most 256 components.

As Csendes et al. (Methods): ``sklearn.decomposition.PCA`` on the binary gene × GO-term matrix
(:func:`pca_features`), and on a gene-embedding table (:func:`embedding_pca`), giving one
gene × PC table per feature set.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA

__all__ = [
    "DEFAULT_N_COMPONENTS",
    "embedding_pca",
    "pca_features",
]
DEFAULT_N_COMPONENTS = 256


# ---------------------------------------------------------------------------------------------
# PCA
# ---------------------------------------------------------------------------------------------


def pca_features(
    matrix: pd.DataFrame,
    n_components: int = DEFAULT_N_COMPONENTS,
    random_state: int = 0,
    svd_solver: Literal["randomized", "full", "covariance_eigh", "arpack"] = "randomized",
) -> pd.DataFrame:
    """Reduce a gene × feature matrix to its leading principal components.

    The paper reduces the binary gene × GO-term matrix to 256 components; the authors call
    ``PCA(n_components=256, random_state=0)``, whose ``svd_solver="auto"`` picks the randomized
    solver for the GO matrix (about 17,000 genes × 7,700 terms). Here the solver is named
    explicitly so the result does not depend on scikit-learn's "auto" policy, and the randomized
    solver's settings (``n_oversamples=10``, ``iterated_power="auto"``,
    ``power_iteration_normalizer="auto"``) are pinned. With a fixed ``random_state`` the result
    is reproducible (bit-identical on the same platform and BLAS); scikit-learn's sign
    convention fixes each component's sign. The randomized solver is exact when
    ``n_components + 10`` reaches the matrix rank (small matrices); for large ones it is the
    close approximation the authors used. ``svd_solver="full"`` gives the exact LAPACK SVD,
    which takes tens of minutes on the full GO matrix.

    Parameters
    ----------
    matrix
        Genes × features (GO terms or embedding dimensions), numeric and finite, unique index.
    n_components
        Requested number of components. The number kept is
        ``k = min(n_components, n_genes, n_features)``: PCA cannot return more components than
        the smaller dimension of the matrix (e.g. a GO file with 100 terms gives 100 columns).
    random_state
        Seed of the randomized solver (the authors use 0).
    svd_solver
        scikit-learn PCA solver; ``"arpack"`` needs ``k < min(n_genes, n_features)``.

    Returns
    -------
    pandas.DataFrame
        Genes × ``PC1`` ... ``PCk`` (``float64``), same index as ``matrix``. ``df.attrs``
        records ``explained_variance_ratio`` (list), ``explained_variance`` (list),
        ``n_components_requested``, ``n_components``, ``svd_solver`` and ``random_state``.

    Raises
    ------
    ValueError
        If ``n_components < 1``, the matrix is empty, not numeric, not finite, or its index
        repeats.
    """
    if int(n_components) < 1:
        raise ValueError(f"n_components must be >= 1, got {n_components}")
    if matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise ValueError(f"cannot run PCA on an empty matrix of shape {matrix.shape}")
    if not matrix.index.is_unique:
        dup = matrix.index[matrix.index.duplicated()].unique().tolist()[:10]
        raise ValueError(f"matrix index repeats genes, e.g. {dup}")
    try:
        values = matrix.to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"matrix is not numeric: {exc}") from exc
    if not np.isfinite(values).all():
        raise ValueError("matrix holds NaN or infinite values")
    k = int(min(int(n_components), values.shape[0], values.shape[1]))
    options: dict[str, Any] = {}
    if svd_solver == "randomized":
        options = {
            "n_oversamples": 10,
            "iterated_power": "auto",
            "power_iteration_normalizer": "auto",
        }
    pca = PCA(n_components=k, svd_solver=svd_solver, random_state=random_state, **options)
    transformed = pca.fit_transform(values)
    out = pd.DataFrame(
        transformed,
        index=matrix.index.copy(),
        columns=pd.Index([f"PC{i + 1}" for i in range(k)]),
    )
    out.attrs = {
        "explained_variance_ratio": [float(v) for v in pca.explained_variance_ratio_],
        "explained_variance": [float(v) for v in pca.explained_variance_],
        "n_components_requested": int(n_components),
        "n_components": k,
        "svd_solver": svd_solver,
        "random_state": random_state,
    }
    return out


def embedding_pca(
    emb: pd.DataFrame,
    n_components: int = DEFAULT_N_COMPONENTS,
    random_state: int = 0,
) -> pd.DataFrame:
    """Apply the GO preprocessing (PCA to 256 components) to a gene-embedding table.

    The paper applies "the same preprocessing" to scGPT, scFoundation and scELMo embeddings as
    to the GO matrix; this is :func:`pca_features` with the same defaults.

    Parameters
    ----------
    emb
        Genes × embedding dimensions, e.g. from :func:`read_embedding`.
    n_components, random_state
        As in :func:`pca_features`.

    Returns
    -------
    pandas.DataFrame
        Genes × ``PC1`` ... ``PCk`` with the explained variance in ``df.attrs``.
    """
    return pca_features(emb, n_components=n_components, random_state=random_state)
