"""The baseline estimators of the benchmark, with the scikit-learn estimator API.

* :class:`TrainMean`: the paper's "Train Mean" (features ignored).
* :class:`LinearPCAModel`: the bilinear ridge baseline of Ahlmann-Eltze et al. (beyond the paper).
* :class:`AdditiveModel`: combination = control + the effects of its singles (beyond the paper).

Random forest, elastic net and kNN are scikit-learn's own; which estimator a model name builds,
with which grid, is stated once in :mod:`perturb_assets.core.models.registry`. Dagster-free.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.decomposition import PCA
from sklearn.utils.validation import check_array, check_is_fitted

from perturb_assets.core.gears.format import CONTROL, parse_condition

__all__ = ["AdditiveModel", "LinearPCAModel", "TrainMean"]


def _n_rows(X: Any) -> int:
    """Number of rows of an array-like, a DataFrame or a sequence of labels."""
    shape = getattr(X, "shape", None)
    if shape is not None and len(shape) > 0:
        return int(shape[0])
    return len(X)


def _labels(X: Any) -> list[str]:
    """Condition labels from a 1-D array-like (or a one-column 2-D array-like)."""
    arr = np.asarray(X, dtype=object)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"expected a 1-D sequence of condition labels, got shape {arr.shape}")
    labels = [str(x) for x in arr]
    return labels


class TrainMean(RegressorMixin, BaseEstimator):
    """Predict the mean training pseudo-bulk profile for every condition.

    The "Train Mean" baseline of Csendes et al. 2025. Features are ignored; only the number of
    rows of ``X`` matters, so ``X`` may have zero columns.

    Which rows are "training" is the caller's choice. To match the paper, fit it on the
    pseudo-bulk profiles of the *train* conditions *without* ``ctrl`` (the authors remove
    ``ctrl`` from the training conditions, although GEARS assigns it to ``train``), which is
    what :func:`perturb_assets.core.models.fit_select_predict` does under both protocols.

    Attributes
    ----------
    mean_ : numpy.ndarray
        Shape ``(n_genes,)``; the column means of ``Y`` seen in :meth:`fit`.
    n_outputs_ : int
        Number of genes.
    """

    def fit(self, X: Any, Y: Any) -> TrainMean:
        """Store the mean of the training profiles.

        Parameters
        ----------
        X : array-like of shape (n_conditions, n_features)
            Ignored except for its number of rows, which must match ``Y``.
        Y : array-like of shape (n_conditions, n_genes)
            Training pseudo-bulk profiles.

        Returns
        -------
        TrainMean
            ``self``.
        """
        Y = check_array(Y, ensure_2d=False, dtype=np.float64)
        if Y.ndim == 1:
            Y = Y[:, None]
        if _n_rows(X) != Y.shape[0]:
            raise ValueError(f"X has {_n_rows(X)} rows but Y has {Y.shape[0]}")
        self.mean_ = Y.mean(axis=0)
        self.n_outputs_ = int(Y.shape[1])
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Return :attr:`mean_` once per row of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_conditions, n_features)
            Only its number of rows is used.

        Returns
        -------
        numpy.ndarray
            Shape ``(n_conditions, n_genes)``.
        """
        check_is_fitted(self, "mean_")
        return np.tile(self.mean_, (_n_rows(X), 1))


class LinearPCAModel(RegressorMixin, BaseEstimator):
    r"""Bilinear ridge baseline of Ahlmann-Eltze, Huber & Anders (Nature Methods 2025).

    "Deep learning-based predictions of gene perturbation effects do not yet outperform simple
    linear methods" model the genes x perturbations matrix of pseudo-bulk profiles as

    .. math::

        Y \approx G\,W\,P^\top + b\,\mathbf{1}^\top

    with

    * :math:`Y` (``n_genes x n_train``): training pseudo-bulk profiles, one column per training
      condition (the transpose of the ``Y`` passed to :meth:`fit`);
    * :math:`b` (``n_genes``): row means of :math:`Y`, i.e. each gene's mean over the training
      perturbations;
    * :math:`G` (``n_genes x K``): gene embedding, the scores of the top ``K`` principal
      components of :math:`Y` with genes as observations and training perturbations as
      variables (each perturbation column centred, not scaled; as ``prcomp`` in the reference R
      code);
    * :math:`P` (``n_train x L``): perturbation embedding. The reference code can take it from
      the PCA too; here it is the perturbation *feature* matrix ``X`` given to :meth:`fit`, so
      the model sees the same features as RF / EN / kNN;
    * :math:`W` (``K x L``): the ridge solution with penalty :math:`\lambda` on both sides

      .. math::

          W = (G^\top G + \lambda I_K)^{-1}\, G^\top (Y - b\mathbf{1}^\top)\, P\,
              (P^\top P + \lambda I_L)^{-1}.

    A new condition with features :math:`p` is predicted as :math:`G W p + b`.

    Modelling expression with :math:`b` = row means is the same model as the reference's
    modelling of the change ``Y - ctrl`` plus ``ctrl`` afterwards (subtracting a per-gene
    constant from every column does not change :math:`Y - b\mathbf{1}^\top`); only the PCA for
    :math:`G` is taken from the expression, as in the reference code. The reference also puts
    ``ctrl`` among the training perturbations with a zero embedding; here ``ctrl`` is a
    training row only under a protocol with ``train_on_control=True`` (see
    :class:`perturb_assets.core.models.BenchmarkProtocol`).

    Parameters
    ----------
    n_components : int, default 10
        ``K``, the number of gene principal components (capped at ``min(n_genes, n_train)``).
    ridge : float, default 0.1
        ``lambda``, the ridge penalty on both sides.

    Attributes
    ----------
    gene_embedding_ : numpy.ndarray
        :math:`G`, shape ``(n_genes, K)``.
    coef_ : numpy.ndarray
        :math:`W`, shape ``(K, L)``.
    intercept_ : numpy.ndarray
        :math:`b`, shape ``(n_genes,)``.
    n_features_in_ : int
        ``L``.
    """

    def __init__(self, n_components: int = 10, ridge: float = 0.1) -> None:
        self.n_components = n_components
        self.ridge = ridge

    def fit(self, X: Any, Y: Any) -> LinearPCAModel:
        """Compute :math:`G`, :math:`b` and :math:`W` from the training conditions.

        Parameters
        ----------
        X : array-like of shape (n_train, L)
            Perturbation features :math:`P` of the training conditions.
        Y : array-like of shape (n_train, n_genes)
            Their pseudo-bulk profiles (rows = conditions).

        Returns
        -------
        LinearPCAModel
            ``self``.
        """
        P = check_array(X, dtype=np.float64)
        Y = check_array(Y, dtype=np.float64)
        if P.shape[0] != Y.shape[0]:
            raise ValueError(f"X has {P.shape[0]} rows but Y has {Y.shape[0]}")
        if self.n_components < 1:
            raise ValueError(f"n_components must be >= 1, got {self.n_components}")
        if self.ridge < 0:
            raise ValueError(f"ridge must be >= 0, got {self.ridge}")
        Yg = Y.T  # genes x perturbations
        n_genes, n_train = Yg.shape
        k = int(min(self.n_components, n_genes, n_train))
        b = Yg.mean(axis=1)
        # Genes are the observations, training perturbations the variables (centred per column).
        G = PCA(n_components=k, svd_solver="full").fit_transform(Yg)
        lam = float(self.ridge)
        left = np.linalg.solve(G.T @ G + lam * np.eye(k), G.T @ (Yg - b[:, None]))  # K x n
        right = np.linalg.solve(P.T @ P + lam * np.eye(P.shape[1]), P.T)  # L x n
        self.coef_ = left @ right.T  # K x L  ==  left @ P @ (P'P + lam I)^-1
        self.gene_embedding_ = G
        self.intercept_ = b
        self.n_features_in_ = int(P.shape[1])
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predict pseudo-bulk profiles :math:`(G W P_\\mathrm{new}^\\top + b)^\\top`.

        Parameters
        ----------
        X : array-like of shape (n_conditions, L)
            Perturbation features.

        Returns
        -------
        numpy.ndarray
            Shape ``(n_conditions, n_genes)``.
        """
        check_is_fitted(self, "coef_")
        P = check_array(X, dtype=np.float64)
        if P.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {P.shape[1]} features, the model {self.n_features_in_}")
        return P @ (self.gene_embedding_ @ self.coef_).T + self.intercept_


class AdditiveModel(RegressorMixin, BaseEstimator):
    """Additive baseline on condition labels: a combination is ctrl plus its singles' effects.

    Beyond the paper (cf. the "additive" baseline of Ahlmann-Eltze et al. 2025). From the
    training conditions it learns, for every gene ``X`` with a *single* training condition
    (``X+ctrl`` or ``ctrl+X``), the effect ``delta(X) = pseudobulk(single) - ctrl``. It predicts

    * ``A+B``: ``ctrl + delta(A) + delta(B)`` when both singles were seen, else Train Mean;
    * ``A+ctrl`` / ``ctrl+A``: ``ctrl + delta(A)`` (its own training profile) when seen, else
      Train Mean (normally the case for test singles, which are unseen by construction);
    * ``ctrl``: ``ctrl``.

    The Train Mean fallback is the mean of the training profiles *other than* ``ctrl``, as
    :class:`TrainMean`. :meth:`fallback_mask` tells which predictions used it.

    ``X`` holds condition *labels*, not features. ``ctrl`` is taken from the ``ctrl_mean``
    argument of :meth:`fit` or, failing that, from a ``ctrl`` row in the training data.

    Attributes
    ----------
    ctrl_mean_ : numpy.ndarray
        Control profile, shape ``(n_genes,)``.
    single_genes_ : list of str
        Genes with a training single, sorted.
    single_deltas_ : numpy.ndarray
        ``delta`` of each of :attr:`single_genes_`, shape ``(n_singles, n_genes)``; the mean
        if a gene has several single conditions (``A+ctrl`` and ``ctrl+A``).
    train_mean_ : numpy.ndarray
        Fallback profile, shape ``(n_genes,)``.
    """

    def fit(self, X: Any, Y: Any, ctrl_mean: Any = None) -> AdditiveModel:
        """Learn single-gene deltas from the training conditions.

        Parameters
        ----------
        X : sequence of str, length n_train
            Training condition labels.
        Y : array-like of shape (n_train, n_genes)
            Their pseudo-bulk profiles.
        ctrl_mean : array-like of shape (n_genes,), optional
            Control profile. Defaults to the ``ctrl`` row of ``X`` / ``Y``.

        Returns
        -------
        AdditiveModel
            ``self``.
        """
        labels = _labels(X)
        Y = check_array(Y, dtype=np.float64)
        if len(labels) != Y.shape[0]:
            raise ValueError(f"X has {len(labels)} labels but Y has {Y.shape[0]} rows")
        is_ctrl = np.array([lab == CONTROL for lab in labels], dtype=bool)
        if ctrl_mean is None:
            if not is_ctrl.any():
                raise ValueError("no ctrl_mean given and no 'ctrl' row among the training data")
            ctrl = Y[is_ctrl].mean(axis=0)
        else:
            ctrl = np.asarray(ctrl_mean, dtype=np.float64).ravel()
            if ctrl.shape[0] != Y.shape[1]:
                raise ValueError(f"ctrl_mean has {ctrl.shape[0]} genes, Y has {Y.shape[1]}")
        if (~is_ctrl).sum() == 0:
            raise ValueError("no training condition other than 'ctrl'")
        rows: dict[str, list[int]] = {}
        for i, lab in enumerate(labels):
            genes = parse_condition(lab)
            if len(genes) == 1:
                rows.setdefault(genes[0], []).append(i)
        self.single_genes_ = sorted(rows)
        n_genes = Y.shape[1]
        deltas = np.empty((len(self.single_genes_), n_genes), dtype=np.float64)
        for j, gene in enumerate(self.single_genes_):
            deltas[j] = Y[rows[gene]].mean(axis=0) - ctrl
        self.single_deltas_ = deltas
        self.ctrl_mean_ = ctrl
        self.train_mean_ = Y[~is_ctrl].mean(axis=0)
        self.n_outputs_ = int(n_genes)
        return self

    def _plan(self, X: Any) -> tuple[list[str], list[tuple[int, ...] | None]]:
        check_is_fitted(self, "single_deltas_")
        index = {g: j for j, g in enumerate(self.single_genes_)}
        labels = _labels(X)
        plan: list[tuple[int, ...] | None] = []
        for lab in labels:
            genes = parse_condition(lab)
            if all(g in index for g in genes):
                plan.append(tuple(index[g] for g in genes))
            else:
                plan.append(None)
        return labels, plan

    def fallback_mask(self, X: Any) -> np.ndarray:
        """Which conditions of ``X`` need an unseen single and get the Train Mean.

        Parameters
        ----------
        X : sequence of str
            Condition labels.

        Returns
        -------
        numpy.ndarray
            Boolean, ``True`` where :meth:`predict` falls back to :attr:`train_mean_`.
        """
        _, plan = self._plan(X)
        return np.array([p is None for p in plan], dtype=bool)

    def predict(self, X: Any) -> np.ndarray:
        """Predict ``ctrl + sum of single deltas`` or the Train Mean fallback.

        Parameters
        ----------
        X : sequence of str
            Condition labels.

        Returns
        -------
        numpy.ndarray
            Shape ``(n_conditions, n_genes)``.
        """
        _, plan = self._plan(X)
        out = np.empty((len(plan), self.n_outputs_), dtype=np.float64)
        for i, p in enumerate(plan):
            if p is None:
                out[i] = self.train_mean_
            else:
                out[i] = self.ctrl_mean_ + self.single_deltas_[list(p)].sum(axis=0)
        return out
