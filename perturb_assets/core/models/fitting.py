"""Fitting, selecting and storing the pseudo-bulk baseline models. Dagster-free.

The paper compares foundation models with simple regressors that map a *perturbation feature
vector* (e.g. the sum of the PCA'd Gene-Ontology rows of the target genes) to the *pseudo-bulk
expression profile* of the perturbed cells. Which models exist, their grids and the benchmark
protocol are stated in :mod:`perturb_assets.core.models.registry`; this module runs them
(:func:`fit_select_predict`) and stores fitted models with skops (:func:`save_model`,
:func:`load_model`).

Tables
------
pseudo-bulk
    ``pandas.DataFrame``; index = condition (``"ctrl"``, ``"A+ctrl"``, ``"A+B"``, ...),
    columns = genes. The ``"ctrl"`` row is the mean profile of the control cells.
features
    ``pandas.DataFrame``; index = condition, columns = feature dimensions. A condition lacks
    features when it is not in the index or its row holds a NaN.
split
    ``pandas.DataFrame``; index = condition, column ``split`` in ``train`` / ``val`` / ``test``
    (as produced by :func:`perturb_assets.core.gears.simulation_split`).

Targets are pseudo-bulk *expression* profiles over *all* genes, not deltas to control, as in
the authors' code; Pearson Delta subtracts the control mean from prediction and truth
afterwards. ``ctrl`` is never a training row of their models (GEARS lists it under train, the
authors remove it); :attr:`~perturb_assets.core.models.BenchmarkProtocol.train_on_control`
says so.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning

from perturb_assets.core.features.perturbation import perturbation_features
from perturb_assets.core.gears.format import CONTROL
from perturb_assets.core.gears.split import SPLITS
from perturb_assets.core.metrics.perturbation import perturbation_metrics
from perturb_assets.core.models import registry
from perturb_assets.core.models.estimators import AdditiveModel
from perturb_assets.core.models.forest import predict_in_tree_order
from perturb_assets.core.models.predictions import prediction_table
from perturb_assets.core.models.registry import BenchmarkProtocol, Grid, ModelSpec

__all__ = [
    "BaselineRun",
    "FitResult",
    "fit_select_predict",
    "resolve_control",
    "run_baseline",
]


# ---------------------------------------------------------------------------------------------
# Selection
# ---------------------------------------------------------------------------------------------


@dataclass
class FitResult:
    """Outcome of :func:`fit_select_predict`.

    Attributes
    ----------
    model
        The fitted estimator of the chosen setting.
    best_params
        The chosen hyperparameters.
    validation_scores
        One row per grid setting (index ``setting``, e.g. ``"n_neighbors=1"``): the
        hyperparameter columns, ``mean_pearson_delta`` on the validation conditions (NaN when
        the setting could not be fitted, was not scored, or there is no validation condition)
        and ``n_val``.
    predictions
        Test conditions x genes; predicted pseudo-bulk expression (not deltas).
    protocol
        Name of the benchmark protocol followed.
    fit_on
        ``"train"`` or ``"train+val"``: the conditions the returned model was fitted on.
    n_conditions
        Conditions used per split (``train``, ``val``, ``test``).
    skipped
        Per split, conditions left out because they lack features (or a pseudo-bulk row,
        for train / val).
    fallback_conditions
        Test conditions predicted by the Train Mean fallback (additive model only).
    not_converged
        Per grid setting, how many fits stopped at ``max_iter`` before converging
        (scikit-learn's ``ConvergenceWarning``; ElasticNet warns once per output gene).
    """

    model: BaseEstimator
    best_params: dict[str, Any]
    validation_scores: pd.DataFrame
    predictions: pd.DataFrame
    protocol: str = registry.DEFAULT_PROTOCOL.name
    fit_on: str = "train"
    n_conditions: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, list[str]] = field(default_factory=dict)
    fallback_conditions: list[str] = field(default_factory=list)
    not_converged: dict[str, int] = field(default_factory=dict)

    @property
    def n_skipped(self) -> int:
        """Total number of skipped conditions over all splits."""
        return sum(len(v) for v in self.skipped.values())

    @property
    def n_fallback(self) -> int:
        """Number of test predictions that used the Train Mean fallback."""
        return len(self.fallback_conditions)


def resolve_control(
    pseudobulk: pd.DataFrame, ctrl_mean: pd.Series | np.ndarray | None = None
) -> pd.Series:
    """The control profile in ``pseudobulk``'s gene order: ``ctrl_mean`` or the ``ctrl`` row."""
    genes = pseudobulk.columns
    if ctrl_mean is None:
        if CONTROL not in pseudobulk.index:
            raise ValueError("pseudobulk has no 'ctrl' row and no ctrl_mean was given")
        return pseudobulk.loc[CONTROL].astype(np.float64)
    if isinstance(ctrl_mean, pd.Series):
        ctrl = ctrl_mean.reindex(genes).astype(np.float64)
        if ctrl.isna().any():
            raise ValueError("ctrl_mean lacks some genes of pseudobulk")
        return ctrl
    arr = np.asarray(ctrl_mean, dtype=np.float64).ravel()
    if arr.shape[0] != len(genes):
        raise ValueError(f"ctrl_mean has {arr.shape[0]} values, pseudobulk {len(genes)} genes")
    return pd.Series(arr, index=genes)


@dataclass
class _Data:
    """The usable conditions of each split and the arrays a model sees for them."""

    spec: ModelSpec
    features: pd.DataFrame | None
    pseudobulk: pd.DataFrame
    ctrl: pd.Series
    used: dict[str, list[str]]
    skipped: dict[str, list[str]]
    reference: bool = False
    not_converged: dict[str, int] = field(default_factory=dict)

    def X(self, conditions: Sequence[str]) -> Any:
        return self.spec.design(conditions, self.features)

    def Y(self, conditions: Sequence[str]) -> np.ndarray:
        return self.pseudobulk.loc[list(conditions)].to_numpy(np.float64)

    def fit(self, params: dict, conditions: Sequence[str], proto: BenchmarkProtocol, n_jobs: int):
        estimator = self.spec.estimator(params, proto.random_state, n_jobs, self.reference)
        # scikit-learn warns once per output gene that stops at max_iter: collected per
        # setting (FitResult.not_converged) instead of a console line per gene.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            fitted = self.spec.fit(
                estimator, self.X(conditions), self.Y(conditions), self.ctrl.to_numpy()
            )
        for warning in caught:
            if issubclass(warning.category, ConvergenceWarning):
                label = _setting_label(params)
                self.not_converged[label] = self.not_converged.get(label, 0) + 1
            else:  # anything else stays visible
                warnings.warn_explicit(
                    warning.message, warning.category, warning.filename, warning.lineno
                )
        return fitted

    def predict(self, model: BaseEstimator, conditions: Sequence[str]) -> pd.DataFrame:
        index = pd.Index(list(conditions), name="condition", dtype=object)
        if not len(index):
            return pd.DataFrame(
                np.empty((0, self.pseudobulk.shape[1])),
                index=index,
                columns=self.pseudobulk.columns,
            )
        # scikit-learn's forest (the reference option) adds its trees in the order its threads
        # finish; in tree order its predictions are the same bits on every run.
        return pd.DataFrame(
            predict_in_tree_order(model, self.X(index)),
            index=index,
            columns=self.pseudobulk.columns,
        )


def _usable(
    conditions: Sequence[str], features: pd.DataFrame | None, pseudobulk: pd.DataFrame | None
) -> tuple[list[str], list[str]]:
    """Split ``conditions`` into those with features (and a pseudo-bulk row) and the rest."""
    have_feat: set[str] | None = None
    if features is not None:
        complete = features.notna().all(axis=1)
        have_feat = set(complete.index[complete.to_numpy()])
    ok: list[str] = []
    bad: list[str] = []
    for c in conditions:
        missing_features = have_feat is not None and c not in have_feat
        missing_row = pseudobulk is not None and c not in pseudobulk.index
        (bad if missing_features or missing_row else ok).append(c)
    return ok, bad


def _partition_conditions(
    spec: ModelSpec,
    features: pd.DataFrame | None,
    pseudobulk: pd.DataFrame,
    split: pd.DataFrame,
    ctrl: pd.Series,
    proto: BenchmarkProtocol,
) -> _Data:
    """The train / val / test conditions a model can use, and those it must skip."""
    if "split" not in split.columns:
        raise ValueError("split table needs a 'split' column (train / val / test)")
    labels = split["split"].astype(str)
    used: dict[str, list[str]] = {}
    skipped: dict[str, list[str]] = {}
    for s in SPLITS:
        members = [str(c) for c in labels.index[labels.to_numpy() == s]]
        keep_ctrl = s == "train" and proto.train_on_control
        members = [c for c in members if keep_ctrl or c != CONTROL]
        truth = None if s == "test" else pseudobulk
        used[s], skipped[s] = _usable(members, features, truth)
    if not used["train"]:
        raise ValueError(f"no usable training condition for {spec.name!r}")
    return _Data(spec, features, pseudobulk, ctrl, used, skipped)


def _setting_label(params: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in params.items()) or "default"


def _mean_pearson_delta(pred: pd.DataFrame, truth: pd.DataFrame, ctrl_mean: pd.Series) -> float:
    """Mean over conditions of Pearson(pred - ctrl, truth - ctrl) on all genes.

    The per-condition values come from :func:`perturb_assets.core.metrics.perturbation_metrics`,
    so selection and evaluation share one definition. A condition whose correlation is
    undefined (NaN, e.g. a constant predicted delta) counts as 0, so a degenerate prediction is
    penalised rather than ignored. NaN when there is no condition to score.
    """
    per_condition = perturbation_metrics(pred, truth, ctrl_mean)["pearson_delta"].to_numpy(
        np.float64
    )
    if per_condition.size == 0:
        return float("nan")
    return float(np.nan_to_num(per_condition, nan=0.0).mean())


def _score_grid(
    data: _Data, settings: list[dict], proto: BenchmarkProtocol, n_jobs: int
) -> tuple[pd.DataFrame, list[BaseEstimator | None]]:
    """Fit every feasible setting on train and score it on the validation conditions.

    A single setting that the protocol refits on train + val anyway is neither fitted on train
    nor scored (its score is NaN).
    """
    val = data.used["val"]
    fit_on_train = len(settings) > 1 or proto.fit_on == "train"
    truth_val = data.pseudobulk.loc[val].astype(np.float64)
    fitted = _fit_grid(data, settings, proto, n_jobs) if fit_on_train else [None] * len(settings)
    rows = []
    for params, est in zip(settings, fitted, strict=True):
        score = float("nan")
        if est is not None and val:
            score = _mean_pearson_delta(data.predict(est, val), truth_val, data.ctrl)
        rows.append(
            {
                "setting": _setting_label(params),
                **params,
                "mean_pearson_delta": score,
                "n_val": len(val),
            }
        )
    return pd.DataFrame(rows).set_index("setting"), fitted


def _fit_grid(
    data: _Data, settings: list[dict], proto: BenchmarkProtocol, n_jobs: int
) -> list[BaseEstimator | None]:
    """Every feasible setting fitted on train. Settings that differ only in the model's nested
    parameter (the number of trees) share one fit of the largest value when the estimator can
    give its smaller versions (``first``); infeasible settings get ``None``."""
    spec, train = data.spec, data.used["train"]
    fitted: list[BaseEstimator | None] = [None] * len(settings)
    groups: dict[object, list[int]] = {}
    for i, params in enumerate(settings):
        if spec.feasible(params, len(train)):
            key = tuple((k, v) for k, v in params.items() if k != spec.nested) if spec.nested else i
            groups.setdefault(key, []).append(i)
    for members in groups.values():
        largest = max(members, key=lambda i: settings[i].get(spec.nested, 0) if spec.nested else 0)
        est = data.fit(settings[largest], train, proto, n_jobs)
        fitted[largest] = est
        for i in members:
            if i == largest:
                continue
            shared = hasattr(est, "first") and spec.nested
            fitted[i] = (
                est.first(settings[i][spec.nested])
                if shared
                else data.fit(settings[i], train, proto, n_jobs)
            )
    return fitted


def _choose(data: _Data, settings: list[dict], scores: pd.DataFrame) -> int:
    """Index of the feasible setting with the best validation score (ties: first)."""
    n_train = len(data.used["train"])
    feasible = [i for i, params in enumerate(settings) if data.spec.feasible(params, n_train)]
    if not feasible:
        raise ValueError(f"no setting of {data.spec.name!r} can be fitted on {n_train} rows")
    values = scores["mean_pearson_delta"].to_numpy(np.float64)
    return max(feasible, key=lambda i: (-np.inf if np.isnan(values[i]) else values[i], -i))


def fit_select_predict(
    model: str | ModelSpec,
    features: pd.DataFrame | None,
    pseudobulk: pd.DataFrame,
    split: pd.DataFrame,
    ctrl_mean: pd.Series | np.ndarray | None = None,
    *,
    protocol: str | BenchmarkProtocol = registry.DEFAULT_PROTOCOL,
    n_jobs: int = 1,
    grid: Grid | None = None,
    reference: bool = False,
) -> FitResult:
    """Fit every grid setting on train, pick the best on validation, predict test.

    Under the published protocol (the default) each setting of the model's grid is fitted on
    the *train* conditions (features -> pseudo-bulk expression of all genes) and scored by the
    mean Pearson Delta of its predictions for the *val* conditions; the best setting's
    train-only fit predicts every *test* condition (ties: first in grid order). A protocol
    with ``fit_on="train+val"`` refits the chosen setting on train + val first.

    Conditions without features (not in ``features``' index, or a NaN in their row) are
    skipped and listed in :attr:`FitResult.skipped`; so are train / val conditions without a
    pseudo-bulk row.

    Parameters
    ----------
    model
        A name of :data:`perturb_assets.core.models.MODELS`, or its spec.
    features
        Perturbation features (conditions x dims). Ignored, and may be ``None``, for models
        without features.
    pseudobulk
        Pseudo-bulk expression (conditions x genes), with a ``ctrl`` row unless ``ctrl_mean``
        is given.
    split
        Split table with a ``split`` column (``train`` / ``val`` / ``test``).
    ctrl_mean
        Control profile for Pearson Delta and the additive model; defaults to
        ``pseudobulk.loc["ctrl"]``. An array must follow ``pseudobulk``'s gene order.
    protocol
        A :class:`~perturb_assets.core.models.BenchmarkProtocol` or its name.
    n_jobs
        Parallel jobs for random forest and kNN (``-1`` = all cores).
    grid
        Override of the model's grid under ``protocol``.
    reference
        Use the model's reference implementation (scikit-learn's forest on the raw targets)
        instead of its faster equivalent, each setting fitted on its own.

    Returns
    -------
    FitResult
        The chosen model, its parameters, validation scores per setting and test predictions.

    Raises
    ------
    ValueError
        Unknown model or protocol; features missing for a model that needs them; no usable
        training condition; several settings but no usable validation condition; no ctrl
        profile; bad ``split`` table.
    """
    spec, proto = registry.model(model), registry.protocol(protocol)
    if spec.uses_features and features is None:
        raise ValueError(f"model {spec.name!r} needs perturbation features")
    ctrl = resolve_control(pseudobulk, ctrl_mean)
    feats = features if spec.uses_features else None
    data = _partition_conditions(spec, feats, pseudobulk, split, ctrl, proto)
    data.reference = reference
    settings = spec.settings(proto, grid)
    if len(settings) > 1 and not data.used["val"]:
        raise ValueError(
            f"{len(settings)} settings for {spec.name!r} but no usable validation condition"
        )
    scores, fitted = _score_grid(data, settings, proto, n_jobs)
    best = _choose(data, settings, scores)
    fitted_model, fit_on = _final_fit(data, settings[best], fitted[best], proto, n_jobs)
    test = data.used["test"]
    fallback: list[str] = []
    if isinstance(fitted_model, AdditiveModel) and test:
        mask = fitted_model.fallback_mask(np.asarray(test, dtype=object))
        fallback = [c for c, m in zip(test, mask, strict=True) if m]
    return FitResult(
        model=fitted_model,
        best_params=dict(settings[best]),
        validation_scores=scores,
        predictions=data.predict(fitted_model, test),
        protocol=proto.name,
        fit_on=fit_on,
        n_conditions={s: len(data.used[s]) for s in SPLITS},
        skipped=data.skipped,
        fallback_conditions=fallback,
        not_converged=data.not_converged,
    )


def _final_fit(
    data: _Data,
    params: dict,
    train_fit: BaseEstimator | None,
    proto: BenchmarkProtocol,
    n_jobs: int,
) -> tuple[BaseEstimator, str]:
    """The model that predicts test: the train-only fit, or a refit on train + val."""
    if proto.fit_on == "train+val" and data.used["val"]:
        return data.fit(params, data.used["train"] + data.used["val"], proto, n_jobs), "train+val"
    if train_fit is None:
        train_fit = data.fit(params, data.used["train"], proto, n_jobs)
    return train_fit, "train"


@dataclass
class BaselineRun:
    """A baseline model run end to end: its prediction table, the fit and the feature report.

    Attributes
    ----------
    table
        The prediction table (:func:`perturb_assets.core.models.prediction_table`), with
        the ``fallback`` (additive model) and ``zero_filled`` (a target without features)
        flags.
    fit
        The :class:`FitResult`.
    feature_report
        :func:`perturb_assets.core.features.perturbation_features`' report, or ``None`` for a
        model without features.
    """

    table: AnnData
    fit: FitResult
    feature_report: dict[str, Any] | None = None


def run_baseline(
    model: str | ModelSpec,
    profiles: AnnData,
    split: pd.DataFrame,
    gene_features: pd.DataFrame | None = None,
    *,
    feature_set: str = "none",
    protocol: str | BenchmarkProtocol = registry.DEFAULT_PROTOCOL,
    missing_gene_policy: Literal["zero", "drop"] = "zero",
    n_jobs: int = 1,
    reference: bool = False,
) -> BaselineRun:
    """Features → :func:`fit_select_predict` → prediction table, for one model.

    Parameters
    ----------
    model
        A registered model (name or spec).
    profiles
        Pseudo-bulk profiles (:func:`perturb_assets.core.pp.pseudobulk_profiles`).
    split
        The condition split.
    gene_features
        Gene × dimension table (e.g. GO-PCA) for a model with features; each condition's
        vector follows the protocol's combination rule.
    feature_set
        Name of ``gene_features``, written on the prediction rows.
    protocol, n_jobs
        As in :func:`fit_select_predict`.
    missing_gene_policy
        A target gene without features: a zero row (``"zero"``) or drop the condition.
    reference
        Fit the model's reference implementation (see :func:`fit_select_predict`).
    """
    spec, proto = registry.model(model), registry.protocol(protocol)
    means = profiles.to_df()
    features, report = None, None
    if spec.uses_features:
        if gene_features is None:
            raise ValueError(f"model {spec.name!r} needs gene features")
        features, report = perturbation_features(
            means.index, gene_features, missing=missing_gene_policy, combine=proto.combine
        )
    fit = fit_select_predict(
        spec, features, means, split, protocol=proto, n_jobs=n_jobs, reference=reference
    )
    zero_filled = report["zero_filled_conditions"] if report else []
    table = prediction_table(
        fit.predictions,
        model=spec.name,
        features=feature_set,
        protocol=proto.name,
        var=profiles.var,
        flags={"fallback": fit.fallback_conditions, "zero_filled": zero_filled},
    )
    return BaselineRun(table=table, fit=fit, feature_report=report)
