"""One place for every model, feature set and benchmark protocol of the platform.

Everything that depends on *which* model is meant reads it from here: the fitting code
(:func:`perturb_assets.core.models.fit_select_predict`), the Dagster asset factory, the metrics
(Train Mean, the reference of the paired comparison) and the tests. Adding a baseline model
means one new :class:`ModelSpec` entry in :data:`MODELS` plus the model's own code; a foundation
model also needs its runner (``core/models/foundation/runs.py``) and, if its settings class is
new, a Dagster config derived from it in ``defs/foundation/assets.py`` (``CONFIGS``).

The benchmark protocol
----------------------
The paper's numbers (``perturb_assets/reference/paper_metrics.csv``, e.g. RF on GO, Adamson,
Pearson Delta 0.7387) are the outputs of the **published** version of the authors' notebook,
``notebooks/bulk_models.ipynb`` at turbine-ai/PerturbSeqPredBenchmark commit ``e42855d``
(2025-04-03). Its ``hp_search`` fits every grid setting on the *train* conditions, keeps the
setting with the best mean validation Pearson Delta, and predicts test with that train-only
fit (no refit); a combination's features are the *sum* of its two genes' rows; Train Mean is
the mean of the training profiles. That matches the paper's Methods, except that the text says
the elastic net was tuned on ``l1_ratio`` while the code tunes ``alpha`` (0.1, 0.01) at
``l1_ratio=0.5``. :data:`PUBLISHED_2025` states it and is the default.

The **2024 preprint** version of the same notebook (commit ``c33d242``) fitted one fixed
setting per model (random forest with 300 trees, elastic net ``alpha=1, l1_ratio=0.5``, no
kNN) on *train + val*, computed Train Mean over train + val, and *subtracted* the second gene's
row from the first for a combination. :data:`PREPRINT_2024` reproduces it; it is not the code
behind the published numbers. Models the preprint did not have (kNN, the linear and additive
baselines) keep their grid under it: the setting is chosen on validation with train-only fits,
then refit on train + val.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import ElasticNet
from sklearn.neighbors import KNeighborsRegressor

from perturb_assets.core.models.estimators import AdditiveModel, LinearPCAModel, TrainMean
from perturb_assets.core.models.forest import CompressedTargetForest
from perturb_assets.core.models.foundation import runs
from perturb_assets.core.models.foundation.gears_model import GearsSettings
from perturb_assets.core.models.foundation.scgpt_training import FineTuneSettings

__all__ = [
    "TRAIN_MEAN",
    "BenchmarkProtocol",
    "DEFAULT_PROTOCOL",
    "FEATURE_SETS",
    "FeatureSetSpec",
    "GO_FEATURES",
    "MODELS",
    "ModelSpec",
    "PREPRINT_2024",
    "PROTOCOLS",
    "PUBLISHED_2025",
    "Predictor",
    "ProtocolName",
    "RANDOM_FOREST_GO",
    "embedding_sets",
    "feature_set",
    "model",
    "predictors",
    "protocol",
]

ProtocolName = Literal["published_2025", "preprint_2024"]
ModelInputs = Literal["none", "labels", "features", "cells"]
Grid = Mapping[str, Sequence[Any]]


# ----------------------------------------------------------------------------- protocols


@dataclass(frozen=True)
class BenchmarkProtocol:
    """How models are fitted, selected and fed, as one frozen, named object.

    Attributes
    ----------
    name
        Recorded on every prediction and metric row.
    fit_on
        Conditions the final model is fitted on: ``"train"`` (the chosen setting's train-only
        fit predicts test) or ``"train+val"`` (the chosen setting is refit on train + val).
    combine
        A combination ``A+B``'s features: ``"sum"`` (row A + row B) or ``"difference"``
        (row A - row B).
    selection_metric
        Mean over validation conditions of this metric picks the grid setting.
    random_state
        Seed of every stochastic estimator.
    train_on_control
        Whether ``ctrl`` is a training row (GEARS lists it under train; the authors drop it).
    source
        Where the protocol comes from.
    """

    name: str
    fit_on: Literal["train", "train+val"]
    combine: Literal["sum", "difference"]
    source: str
    selection_metric: str = "pearson_delta"
    random_state: int = 42
    train_on_control: bool = False


PUBLISHED_2025 = BenchmarkProtocol(
    name="published_2025",
    fit_on="train",
    combine="sum",
    source="turbine-ai/PerturbSeqPredBenchmark@e42855d (2025-04-03), notebooks/bulk_models.ipynb",
)
PREPRINT_2024 = BenchmarkProtocol(
    name="preprint_2024",
    fit_on="train+val",
    combine="difference",
    source="turbine-ai/PerturbSeqPredBenchmark@c33d242 (2024 preprint), bulk_models.ipynb",
)
PROTOCOLS: dict[str, BenchmarkProtocol] = {p.name: p for p in (PUBLISHED_2025, PREPRINT_2024)}
DEFAULT_PROTOCOL = PUBLISHED_2025


def protocol(name: str | BenchmarkProtocol) -> BenchmarkProtocol:
    """The protocol called ``name`` (a protocol object is returned unchanged)."""
    if isinstance(name, BenchmarkProtocol):
        return name
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ValueError(f"unknown protocol {name!r}; choose one of {list(PROTOCOLS)}") from None


# ----------------------------------------------------------------------------- models


def _always(params: Mapping[str, Any], n_train: int) -> bool:
    return True


@dataclass(frozen=True)
class ModelSpec:
    """Everything the platform needs to know about one model.

    Attributes
    ----------
    name
        Identifier used in asset names and metric rows.
    title
        Human-readable name (plots, reports).
    inputs
        What the model reads: ``"features"`` (perturbation feature rows; one asset per feature
        set), ``"labels"`` (condition strings), ``"none"`` (an empty design) or ``"cells"``
        (a foundation model trained on single cells, through :attr:`runner`).
    build
        ``build(params, random_state, n_jobs)`` returns an unfitted estimator (pseudo-bulk
        models).
    reference_build
        The reference implementation of the same model, where :attr:`build` is a faster
        equivalent (scikit-learn's forest on the raw targets for the random forest).
    nested
        A grid parameter whose smaller values are prefixes of the largest fit (the number of
        trees): the grid is scored from one fit of the largest value.
    grid
        Hyperparameter grid of the published protocol (setting order = tie-break order).
    protocol_grids
        What a protocol changes for this model: protocol name -> grid.
    feasible
        ``feasible(params, n_train)``: whether a setting can be fitted on ``n_train`` rows
        (infeasible settings are skipped with a NaN validation score).
    needs_control
        ``fit`` takes the control profile as ``ctrl_mean``.
    device
        ``"cpu"`` or ``"gpu"``: where the model trains (an op tag of its asset).
    kinds
        Dagster kinds of its asset (icons in the UI).
    in_paper
        Whether Csendes et al. 2025 report the model.
    features_label
        The ``features`` value of the model's metric rows when it uses no feature set (the
        paper writes ``finetuned`` for its fine-tuned foundation models).
    runner
        For ``inputs="cells"``: ``runner(FoundationInputs, settings, device, log)`` trains the
        model and returns a :class:`~perturb_assets.core.models.foundation.runs.FoundationRun`.
    settings_class
        For ``inputs="cells"``: the frozen dataclass of the runner's settings (defaults: the
        reference recipe).
    requires
        For ``inputs="cells"``: the per-dataset tables the runner reads (fields of
        :class:`~perturb_assets.core.models.foundation.runs.FoundationInputs`).
    files
        For ``inputs="cells"``: the user files the model reads (a checkpoint, an embedding).
    """

    name: str
    title: str
    inputs: ModelInputs
    build: Callable[[Mapping[str, Any], int, int], BaseEstimator] | None = None
    reference_build: Callable[[Mapping[str, Any], int, int], BaseEstimator] | None = None
    nested: str | None = None
    grid: Grid = field(default_factory=dict)
    protocol_grids: Mapping[str, Grid] = field(default_factory=dict)
    feasible: Callable[[Mapping[str, Any], int], bool] = _always
    needs_control: bool = False
    device: Literal["cpu", "gpu"] = "cpu"
    kinds: tuple[str, ...] = ("sklearn",)
    in_paper: bool = True
    features_label: str = "none"
    runner: Callable[..., Any] | None = None
    settings_class: type | None = None
    requires: tuple[str, ...] = ()
    files: tuple[str, ...] = ()

    @property
    def uses_features(self) -> bool:
        return self.inputs == "features"

    @property
    def is_foundation(self) -> bool:
        """Trained on single cells by :attr:`runner` (GPU-tagged), not on pseudo-bulk."""
        return self.inputs == "cells"

    def grid_for(self, protocol: BenchmarkProtocol) -> Grid:
        """The grid this model searches under ``protocol``."""
        return self.protocol_grids.get(protocol.name, self.grid)

    def settings(self, protocol: BenchmarkProtocol, grid: Grid | None = None) -> list[dict]:
        """Every grid setting, in tie-break order (one empty setting for a grid-less model)."""
        grid = self.grid_for(protocol) if grid is None else grid
        keys = list(grid)
        return [dict(zip(keys, v, strict=True)) for v in itertools.product(*grid.values())]

    def estimator(
        self,
        params: Mapping[str, Any] | None = None,
        random_state: int = 42,
        n_jobs: int = 1,
        reference: bool = False,
    ) -> BaseEstimator:
        """An unfitted estimator of this model with ``params`` (the reference implementation
        with ``reference``)."""
        build = self.reference_build if reference and self.reference_build else self.build
        return build(dict(params or {}), random_state, n_jobs)

    def design(self, conditions: Sequence[str], features: pd.DataFrame | None) -> Any:
        """The ``X`` this model's estimator gets for ``conditions``."""
        if self.inputs == "labels":
            return np.asarray(conditions, dtype=object)
        if self.inputs == "none":
            return np.zeros((len(conditions), 0))
        if features is None:
            raise ValueError(f"model {self.name!r} needs perturbation features")
        return features.loc[list(conditions)].to_numpy(np.float64)

    def fit(self, estimator: BaseEstimator, X: Any, Y: np.ndarray, ctrl: np.ndarray) -> Any:
        """Fit ``estimator`` on ``(X, Y)``, passing the control profile if it takes one."""
        if self.needs_control:
            return estimator.fit(X, Y, ctrl_mean=ctrl)
        return estimator.fit(X, Y)


def _models(*specs: ModelSpec) -> dict[str, ModelSpec]:
    return {s.name: s for s in specs}


#: Every model, in display order.
MODELS: dict[str, ModelSpec] = _models(
    ModelSpec(
        name="train_mean",
        title="Train Mean",
        inputs="none",
        build=lambda params, rs, n_jobs: TrainMean(**params),
    ),
    ModelSpec(
        name="additive",
        title="Additive",
        inputs="labels",
        build=lambda params, rs, n_jobs: AdditiveModel(**params),
        needs_control=True,
        in_paper=False,
    ),
    ModelSpec(
        name="random_forest",
        title="Random Forest",
        inputs="features",
        build=lambda params, rs, n_jobs: CompressedTargetForest(
            random_state=rs, n_jobs=n_jobs, **params
        ),
        reference_build=lambda params, rs, n_jobs: RandomForestRegressor(
            random_state=rs, n_jobs=n_jobs, **params
        ),
        nested="n_estimators",
        grid={"n_estimators": (100, 300)},
        protocol_grids={PREPRINT_2024.name: {"n_estimators": (300,)}},
    ),
    ModelSpec(
        name="elastic_net",
        title="ElasticNet",
        inputs="features",
        build=lambda params, rs, n_jobs: ElasticNet(random_state=rs, **params),
        grid={"alpha": (0.1, 0.01), "l1_ratio": (0.5,)},
        protocol_grids={PREPRINT_2024.name: {"alpha": (1.0,), "l1_ratio": (0.5,)}},
    ),
    ModelSpec(
        name="knn",
        title="kNN",
        inputs="features",
        build=lambda params, rs, n_jobs: KNeighborsRegressor(n_jobs=n_jobs, **params),
        grid={"n_neighbors": (1, 2, 5)},
        feasible=lambda params, n_train: params.get("n_neighbors", 5) <= n_train,
    ),
    ModelSpec(
        name="linear_pca",
        title="Linear (Ahlmann-Eltze)",
        inputs="features",
        build=lambda params, rs, n_jobs: LinearPCAModel(**params),
        grid={"n_components": (10,), "ridge": (0.1,)},
        in_paper=False,
    ),
    ModelSpec(
        name="scgpt",
        title="scGPT (fine-tuned)",
        inputs="cells",
        device="gpu",
        kinds=("pytorch",),
        features_label="finetuned",
        runner=runs.run_scgpt,
        settings_class=FineTuneSettings,
        requires=("expression", "split", "pseudobulk"),
        files=("scgpt_checkpoint",),
    ),
    ModelSpec(
        name="gears",
        title="GEARS",
        inputs="cells",
        device="gpu",
        kinds=("pytorch",),
        features_label="go_graph",
        runner=runs.run_gears,
        settings_class=GearsSettings,
        requires=("expression", "split", "annotations"),
        in_paper=False,
    ),
    ModelSpec(
        name="gears_scfoundation_emb",
        title="GEARS + scFoundation gene embeddings (approximation)",
        inputs="cells",
        device="gpu",
        kinds=("pytorch",),
        features_label="scfoundation_emb",
        runner=functools.partial(runs.run_gears_with_embeddings, embedding="scfoundation"),
        settings_class=GearsSettings,
        requires=("expression", "split", "annotations"),
        files=("scfoundation_embedding_file",),
        in_paper=False,
    ),
)

#: The reference of every paired comparison ("diff vs Train Mean").
TRAIN_MEAN: ModelSpec = MODELS["train_mean"]


def model(name: str | ModelSpec) -> ModelSpec:
    """The model called ``name`` (a spec is returned unchanged)."""
    if isinstance(name, ModelSpec):
        return name
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {list(MODELS)}") from None


# ----------------------------------------------------------------------------- feature sets


@dataclass(frozen=True)
class FeatureSetSpec:
    """A source of per-gene prior knowledge that becomes perturbation features.

    Attributes
    ----------
    name
        Identifier used in asset names and metric rows.
    title
        Human-readable name.
    source
        ``"annotations"`` (a gene × GO-term matrix) or ``"embedding"`` (a gene-embedding file).
    extracted_by
        An asset that extracts this embedding from a model checkpoint: used when the user gave
        no embedding file.
    """

    name: str
    title: str
    source: Literal["annotations", "embedding"]
    extracted_by: str | None = None

    @property
    def asset_name(self) -> str:
        """Name of the gene × PC feature table asset."""
        return f"{self.name}_pca_features"


#: Every feature set, in display order.
FEATURE_SETS: dict[str, FeatureSetSpec] = {
    f.name: f
    for f in (
        FeatureSetSpec("go", "GO-PCA", "annotations"),
        FeatureSetSpec("scgpt", "scGPT", "embedding", extracted_by="scgpt_gene_embeddings"),
        FeatureSetSpec("scfoundation", "scFoundation", "embedding"),
        FeatureSetSpec("scelmo", "scELMo", "embedding"),
    )
}

#: The feature set built from GO annotations (the others come from embedding files).
GO_FEATURES: FeatureSetSpec = FEATURE_SETS["go"]


def feature_set(name: str) -> FeatureSetSpec:
    """The feature set called ``name``."""
    try:
        return FEATURE_SETS[name]
    except KeyError:
        raise ValueError(
            f"unknown feature set {name!r}; choose one of {list(FEATURE_SETS)}"
        ) from None


def embedding_sets() -> list[FeatureSetSpec]:
    """The feature sets read from gene-embedding files."""
    return [f for f in FEATURE_SETS.values() if f.source == "embedding"]


# ----------------------------------------------------------------------------- predictors


@dataclass(frozen=True)
class Predictor:
    """One prediction asset: a model, on one feature set when it uses features."""

    model: ModelSpec
    features: FeatureSetSpec | None

    @property
    def name(self) -> str:
        """The prediction asset's name, e.g. ``random_forest_go_predictions``."""
        middle = f"_{self.features.name}" if self.features else ""
        return f"{self.model.name}{middle}_predictions"

    @property
    def features_label(self) -> str:
        """The ``features`` value of its metric rows."""
        return self.features.name if self.features else self.model.features_label


def predictors(foundation: bool | None = None) -> Iterator[Predictor]:
    """Every (model, feature set) pair that gets a prediction asset, in display order; only
    the foundation models (``True``) or only the others (``False``)."""
    for spec in MODELS.values():
        if foundation is not None and spec.is_foundation != foundation:
            continue
        if spec.uses_features:
            yield from (Predictor(spec, fs) for fs in FEATURE_SETS.values())
        else:
            yield Predictor(spec, None)


#: The paper's hardest-to-beat baseline, Random Forest on GO features (the diversity sweep's
#: "best model").
RANDOM_FOREST_GO = Predictor(MODELS["random_forest"], GO_FEATURES)
