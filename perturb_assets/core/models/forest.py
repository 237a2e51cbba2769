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

**Determinism.** Fit and prediction are bitwise reproducible, whatever ``n_jobs`` and however
many BLAS threads the process has (outputs are content-hashed: a bit that moves between runs
makes a new data version downstream). Multi-threaded OpenBLAS splits its sums by the thread
count, so a matrix product or an SVD on 1 thread and on 2 differ in the last bits (from about
256 rows on), and a step's BLAS threads depend on the deployment (a step alone, steps side by
side, ``n_jobs``). Such bits are not harmless here: the compressed targets' rounding decides
the tied splits (see above), so a different SVD grows different trees. Therefore every SVD
runs on one BLAS thread (:data:`_BLAS_THREADS`; the trees run in parallel anyway, and the one
SVD of all targets is a small part of a fit), and ``W(x) @ Y`` is a sparse product (one
thread, no BLAS; faster than the dense product, as ``W`` is mostly zeros). Every other sum has
a fixed order: the trees come back from the worker threads in tree order, and a row's leaf
weights add up over the trees in tree order. The bits hold for one CPU type and library
build; another CPU's or BLAS's SVD kernels round otherwise. :func:`predict_in_tree_order` gives
scikit-learn's forest (the reference option) the same property: its own ``predict`` adds the
trees' outputs in the order its threads finish. The limit is set by the thread that calls
``fit`` and holds for the tree threads it starts; every executor here runs a step in its
process's main thread. A fit started from a secondary thread is outside the guarantee: once
the main thread has set and restored a limit, OpenBLAS does not reliably apply one set from
another thread (seen in ``test_forest.py``).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import scipy.sparse as sp
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.ensemble import ExtraTreesRegressor, RandomForestRegressor
from sklearn.tree import DecisionTreeRegressor
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, check_is_fitted
from threadpoolctl import threadpool_limits

__all__ = ["CompressedTargetForest", "compress_targets", "predict_in_tree_order"]

#: Singular values below this fraction of the largest carry no target information (rank).
_RANK_TOLERANCE = 1e-12
#: scikit-learn draws tree seeds with ``randint(np.iinfo(np.int32).max)``.
_MAX_SEED = np.iinfo(np.int32).max
#: BLAS threads of every SVD: results of threaded LAPACK depend on the thread count.
_BLAS_THREADS = 1

# The BLAS limit is process-wide: concurrent fits (threads) share one limit, set by the first
# and restored by the last, so that no fit restores the threads under another one's SVDs.
_limit_lock = threading.Lock()
_limit_users = 0
_limit: Any = None


@contextmanager
def _pinned_blas() -> Iterator[None]:
    """BLAS (and LAPACK) on :data:`_BLAS_THREADS` threads while any caller is inside."""
    global _limit, _limit_users
    with _limit_lock:
        if _limit_users == 0:
            _limit = threadpool_limits(_BLAS_THREADS, user_api="blas")
        _limit_users += 1
    try:
        yield
    finally:
        with _limit_lock:
            _limit_users -= 1
            if _limit_users == 0:
                _limit.restore_original_limits()
                _limit = None


def _compress(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`compress_targets` under the caller's BLAS thread limit."""
    u, s, vt = np.linalg.svd(y, full_matrices=False)
    keep = s > _RANK_TOLERANCE * (s[0] if s.size else 0.0)
    return u[:, keep] * s[keep], vt[keep]


def compress_targets(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``Z = U S`` and ``Vᵀ`` of the thin SVD of ``y``, dropping null directions (computed on
    :data:`_BLAS_THREADS` BLAS threads, so bitwise the same in every process)."""
    with _pinned_blas():
        return _compress(y)


def predict_in_tree_order(model: Any, X: Any) -> np.ndarray:
    """``model.predict(X)``, bitwise reproducible for scikit-learn's forest regressors too.

    :class:`sklearn.ensemble.RandomForestRegressor` predicts its trees in threads and adds each
    tree's output to the total as its thread finishes, so with ``n_jobs > 1`` the order of the
    float sums, and with it the last bits, changes from call to call. Here the trees still
    predict in parallel threads, but their outputs are added in tree order: bitwise the forest's
    own ``n_jobs=1`` prediction, for any ``n_jobs``. Other models are asked directly
    (:class:`CompressedTargetForest` is reproducible on its own).
    """
    if not isinstance(model, RandomForestRegressor | ExtraTreesRegressor):
        return model.predict(X)
    check_is_fitted(model)
    X = model._validate_X_predict(X)
    total = np.zeros((X.shape[0], model.n_outputs_) if model.n_outputs_ > 1 else X.shape[0])
    outputs = Parallel(n_jobs=model.n_jobs, prefer="threads", return_as="generator")(
        delayed(tree.predict)(X, check_input=False) for tree in model.estimators_
    )
    for output in outputs:  # in tree order, whichever thread finishes first
        total += output
    total /= len(model.estimators_)
    return total


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
    z_rows, _ = _compress(z[rows])  # on the fit's single BLAS thread
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
        params = {"max_features": self.max_features, "min_samples_leaf": self.min_samples_leaf}
        # Threads, as scikit-learn's forest: the tree builder releases the GIL. Every SVD runs
        # on one BLAS thread, whatever n_jobs: its bits would depend on the thread count (and
        # parallel trees would oversubscribe the cores). One limit for the whole fit, set and
        # restored here: the limit is process-wide, so workers must not set their own.
        with _pinned_blas():
            z, _ = _compress(y)
            # Parallel returns the trees in tree order, however the threads finish.
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
        return self._sparse_leaf_weights(X).toarray()

    def _sparse_leaf_weights(self, X: Any) -> sp.csr_matrix:
        """:meth:`leaf_weights` as a sparse matrix: per row, a row's weight adds up over the
        trees in tree order (scipy's sparse product, one thread)."""
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
        return (hits @ members) / n_trees

    def predict(self, X: Any) -> np.ndarray:
        """``W(X) @ Y``: the forest's prediction (a sparse product, BLAS-free, so bitwise the
        same for any thread count)."""
        return np.asarray(self._sparse_leaf_weights(X) @ self.train_targets_)

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
