"""scikit-learn's random forest, grown on compressed targets: the same model, far faster.

**Why the trees are the same.** With the squared-error criterion a regression tree chooses every
split by the decrease of the within-node (weighted) sum of squares, summed over the outputs. For
the rows of a node that sum is ``sum_i w_i ||y_i - mean_w||^2``, which depends on the targets
only through their Gram matrix ``Y Yᵀ``. Any ``Z`` with ``Z Zᵀ = Y Yᵀ`` (``Z = U S`` from the
thin SVD ``Y = U S Vᵀ``) therefore makes exactly the splits ``Y`` makes. A bootstrap tree only
sees the rows it drew, so each tree is grown on the compressed targets *of its own rows*: at
most ~63 % of ``n_train`` columns instead of one per gene (about 464 instead of 5,000 on
Replogle K562), and the cost of evaluating a split is proportional to the number of outputs.

**Why the predictions are the same.** A leaf predicts the weighted mean of its rows' targets.
So the trees are kept only as their structure plus, per leaf, which training rows (and how many
bootstrap copies) fell there; a prediction is ``W(x) @ Y`` with ``W`` the forest's averaged leaf
weights. The model stores ``Y`` once instead of one output vector per node per tree (scikit-
learn's forest of 300 trees on 5,000 genes holds ~11 GB of node values at K562 scale; this one
holds ``Y`` and a few MB of structure).

**Randomness.** Tree seeds, bootstrap draws and feature draws are scikit-learn's own: tree ``k``
gets the ``k``-th ``randint(2**31 - 1)`` of ``check_random_state(random_state)`` and draws its
rows with ``RandomState(seed).randint(0, n, n)``, as ``RandomForestRegressor`` does. Rows with
no draw are left out of the tree's input, which is how scikit-learn's splitter treats rows of
zero weight. Thresholds are compared with ``X`` cast to float32, as scikit-learn does.

**The one difference is arithmetic.** Sums of squares computed from ``Z`` and from ``Y`` agree to
rounding, so where two candidate splits tie *exactly* the two forests may pick different ones.
With the default ``min_samples_leaf=1`` that happens at every two-row node (any feature that
separates the two rows is equally good) and scikit-learn's own pick is decided by rounding too.
With ``min_samples_leaf=5`` such ties vanish and the forests agree to 1e-12; at the default the
tests compare metrics against scikit-learn's seed-to-seed noise instead.

**Grid sharing.** The first ``k`` trees of a forest are the ``k``-tree forest (every tree's seed
is drawn in turn from one random state), so :meth:`CompressedTargetForest.first` gives the
smaller forests of a grid from one fit.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import scipy.sparse as sp
from joblib import Parallel, delayed, effective_n_jobs
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.tree import DecisionTreeRegressor
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, check_is_fitted
from threadpoolctl import threadpool_limits

__all__ = ["CompressedTargetForest", "compress_targets"]

#: Singular values below this fraction of the largest carry no target information (rank).
_RANK_TOLERANCE = 1e-12
#: scikit-learn draws tree seeds with ``randint(np.iinfo(np.int32).max)``.
_MAX_SEED = np.iinfo(np.int32).max


def compress_targets(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``Z = U S`` and ``Vᵀ`` of the thin SVD of ``y``, dropping null directions."""
    u, s, vt = np.linalg.svd(y, full_matrices=False)
    keep = s > _RANK_TOLERANCE * (s[0] if s.size else 0.0)
    return u[:, keep] * s[keep], vt[keep]


def _apply(x32: np.ndarray, left: np.ndarray, right: np.ndarray, feature, threshold):
    """The leaf node of each row of ``x32`` in one tree (float32 features compared with the
    float64 thresholds, as scikit-learn compares)."""
    node = np.zeros(len(x32), dtype=np.intp)
    rows = np.arange(len(x32))
    while True:
        inner = left[node] >= 0
        if not inner.any():
            return node
        goes_left = x32[rows, feature[node]] <= threshold[node]
        node = np.where(inner, np.where(goes_left, left[node], right[node]), node)


def _grow_tree(
    seed: int, x: np.ndarray, z: np.ndarray, params: dict[str, Any], bootstrap: bool
) -> dict[str, np.ndarray]:
    """One tree exactly as ``RandomForestRegressor`` grows it with this ``seed``, kept as its
    splits plus, per node, the training rows in it with their weights (bootstrap count over
    the leaf's total; internal nodes hold none)."""
    n = len(x)
    counts = (
        np.bincount(np.random.RandomState(seed).randint(0, n, n), minlength=n)
        if bootstrap
        else np.ones(n, dtype=np.int64)
    )
    rows = np.flatnonzero(counts)
    z_rows, _ = compress_targets(z[rows])
    x32 = x[rows].astype(np.float32)
    tree = DecisionTreeRegressor(criterion="squared_error", random_state=seed, **params)
    tree.fit(x32, z_rows if z_rows.shape[1] else np.zeros((len(rows), 1)), counts[rows])
    t = tree.tree_
    leaf = tree.apply(x32)
    order = np.argsort(leaf, kind="stable")
    totals = np.bincount(leaf, weights=counts[rows], minlength=t.node_count)
    return {
        "left": t.children_left.copy(),
        "right": t.children_right.copy(),
        "feature": t.feature.copy(),
        "threshold": t.threshold.copy(),
        "indptr": np.searchsorted(leaf[order], np.arange(t.node_count + 1)),
        "rows": rows[order],
        "weights": (counts[rows] / totals[leaf])[order],
    }


class CompressedTargetForest(RegressorMixin, BaseEstimator):
    """``RandomForestRegressor`` grown tree by tree on compressed targets (see module notes).

    Parameters are those of :class:`sklearn.ensemble.RandomForestRegressor` that the benchmark
    uses (squared-error criterion only).

    Attributes
    ----------
    node_offsets_ : numpy.ndarray
        Where each tree's nodes start in the concatenated node arrays ``left_``, ``right_``,
        ``feature_`` and ``threshold_`` (scikit-learn's ``children_left`` etc., tree-local).
    indptr_, rows_, weights_ : numpy.ndarray
        Per node (CSR), the training rows in it and their weights in its prediction.
    train_targets_ : numpy.ndarray
        ``Y`` of the training rows (n_train × n_outputs): every prediction is a weighted mean of
        its rows.
    """

    def __init__(
        self,
        n_estimators: int = 100,
        random_state: Any = None,
        n_jobs: int | None = None,
        max_features: Any = 1.0,
        min_samples_leaf: int = 1,
        bootstrap: bool = True,
    ):
        self.n_estimators = n_estimators
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.max_features = max_features
        self.min_samples_leaf = min_samples_leaf
        self.bootstrap = bootstrap

    def fit(self, X: Any, y: Any) -> CompressedTargetForest:
        """Grow the forest on the compressed targets of ``y``."""
        X = check_array(X, dtype=np.float64)
        y = check_array(y, dtype=np.float64, ensure_2d=False).reshape(len(X), -1)
        rng = check_random_state(self.random_state)
        seeds = [int(rng.randint(_MAX_SEED)) for _ in range(self.n_estimators)]
        z, _ = compress_targets(y)
        params = {"max_features": self.max_features, "min_samples_leaf": self.min_samples_leaf}
        # Threads, as scikit-learn's forest: the tree builder releases the GIL. Trees in
        # parallel get single-threaded BLAS for their SVDs, so cores are not oversubscribed.
        blas_threads = None if effective_n_jobs(self.n_jobs) == 1 else 1
        with threadpool_limits(blas_threads, user_api="blas"):
            trees = Parallel(n_jobs=self.n_jobs, prefer="threads")(
                delayed(_grow_tree)(seed, X, z, params, self.bootstrap) for seed in seeds
            )
        self._store(trees)
        self.train_targets_ = y
        self.n_outputs_ = y.shape[1]
        self.n_features_in_ = X.shape[1]
        return self

    def _store(self, trees: list[dict[str, np.ndarray]]) -> None:
        """Concatenate the trees' arrays (plain arrays are what skops stores safely)."""
        sizes = [len(t["left"]) for t in trees]
        self.node_offsets_ = np.concatenate([[0], np.cumsum(sizes)])
        for key in ("left", "right", "feature", "threshold", "rows", "weights"):
            setattr(self, f"{key}_", np.concatenate([t[key] for t in trees]))
        starts = np.cumsum([0] + [len(t["rows"]) for t in trees])
        self.indptr_ = np.concatenate(
            [[0]] + [t["indptr"][1:] + start for t, start in zip(trees, starts, strict=False)]
        )

    def leaf_weights(self, X: Any) -> np.ndarray:
        """``W(X)``: each row's leaf weights over the training rows, averaged over the trees
        (every row sums to 1)."""
        check_is_fitted(self, "node_offsets_")
        x32 = check_array(X, dtype=np.float64).astype(np.float32)
        n_trees = len(self.node_offsets_) - 1
        leaves = np.empty((len(x32), n_trees), dtype=np.intp)
        for k in range(n_trees):
            nodes = slice(self.node_offsets_[k], self.node_offsets_[k + 1])
            local = (self.left_[nodes], self.right_[nodes], self.feature_[nodes])
            leaves[:, k] = self.node_offsets_[k] + _apply(x32, *local, self.threshold_[nodes])
        n_nodes, n_train = self.node_offsets_[-1], len(self.train_targets_)
        members = sp.csr_matrix((self.weights_, self.rows_, self.indptr_), (n_nodes, n_train))
        hits = sp.csr_matrix(
            (np.ones(leaves.size), leaves.ravel(), np.arange(0, leaves.size + 1, n_trees)),
            (len(x32), n_nodes),
        )
        return (hits @ members).toarray() / n_trees

    def predict(self, X: Any) -> np.ndarray:
        """``W(X) @ Y``: the forest's prediction."""
        return self.leaf_weights(X) @ self.train_targets_

    def first(self, n_trees: int) -> CompressedTargetForest:
        """The forest of the first ``n_trees`` trees: the ``n_trees``-tree forest itself."""
        check_is_fitted(self, "node_offsets_")
        if not 1 <= n_trees < len(self.node_offsets_):
            raise ValueError(f"n_trees must lie in [1, {len(self.node_offsets_) - 1}]")
        smaller = copy.copy(self)
        end = self.node_offsets_[n_trees]
        smaller.node_offsets_ = self.node_offsets_[: n_trees + 1]
        for key in ("left_", "right_", "feature_", "threshold_"):
            setattr(smaller, key, getattr(self, key)[:end])
        smaller.indptr_ = self.indptr_[: end + 1]
        smaller.rows_ = self.rows_[: smaller.indptr_[-1]]
        smaller.weights_ = self.weights_[: smaller.indptr_[-1]]
        smaller.n_estimators = n_trees
        return smaller
