"""Prediction assets, built by a factory: ``<model>_<features>_predictions``.

Each asset fits its model on the training conditions' pseudo-bulk profiles (all genes),
chooses the hyperparameter by validation Pearson Delta, predicts the test conditions, and
persists the fitted model with skops in the platform's own storage (never loaded from a
user-supplied path). The science is in :func:`perturb_assets.core.models.fit_select_predict`.

No ``from __future__ import annotations``: Dagster reads types at runtime.
"""

from pathlib import Path

import dagster as dg
import pandas as pd

from perturb_assets.core import features as F
from perturb_assets.core import models as M
from perturb_assets.core.atomic import atomic_write
from perturb_assets.defs.features.assets import FEATURE_SETS, feature_asset_name
from perturb_assets.defs.metadata import markdown_table
from perturb_assets.defs.partitions import dataset_partitions
from perturb_assets.defs.resources import DataSources

GROUP = "models"
FEATURE_MODELS = ("random_forest", "elastic_net", "knn", "linear_pca")
FEATURELESS = ("train_mean", "additive")
RANDOM_STATE = 42


def prediction_asset_name(model: str, feature_set: str | None) -> str:
    return f"{model}_predictions" if feature_set is None else f"{model}_{feature_set}_predictions"


# (model, feature set or None) for every prediction asset, in display order.
PREDICTORS: list[tuple[str, str | None]] = [(m, None) for m in FEATURELESS] + [
    (m, fs) for m in FEATURE_MODELS for fs in FEATURE_SETS
]


def model_file(root: Path, model: str, feature_set: str | None, dataset: str) -> Path:
    """Where a prediction asset keeps its fitted model."""
    return root / "models" / prediction_asset_name(model, feature_set) / f"{dataset}.skops"


class MissingGeneConfig(dg.Config):
    """What to do with a condition whose target gene has no features: ``zero`` (a zero vector,
    the default) or ``drop`` (leave the condition out of training and prediction)."""

    missing_gene_policy: str = "zero"


def _fit(
    context: dg.AssetExecutionContext,
    data_sources: DataSources,
    model: str,
    feature_set: str | None,
    pseudobulk: pd.DataFrame,
    split: pd.DataFrame,
    gene_features: pd.DataFrame | None,
    missing_gene_policy: str = "zero",
) -> dg.Output[pd.DataFrame]:
    name = prediction_asset_name(model, feature_set)
    profiles = pseudobulk.drop(columns=["n_cells"])
    meta: dict = {"model": model, "features": feature_set or "none"}
    features = None
    if feature_set is not None:
        if gene_features.empty:
            context.log.warning(f"{name}: no {feature_set} features; skipped")
            return dg.Output(pd.DataFrame(), metadata={**meta, "status": "skipped: no features"})
        if missing_gene_policy not in ("zero", "drop"):
            raise dg.Failure(f"missing_gene_policy={missing_gene_policy!r}; use 'zero' or 'drop'")
        features, report = F.perturbation_features(
            profiles.index, gene_features, missing=missing_gene_policy
        )
        meta |= {
            "missing_gene_policy": report["policy"],
            "n_missing_genes": report["n_missing_genes"],
            "missing_genes": ", ".join(map(str, report["missing_genes"][:50])) or "none",
        }
    context.log.info(f"{name}: fitting {model} on {context.partition_key}")
    # refit=False: the chosen setting is the one fitted on train only, as the issue specifies.
    result = M.fit_select_predict(
        model, features, profiles, split, ctrl_mean=profiles.loc["ctrl"],
        random_state=RANDOM_STATE, refit=False, n_jobs=-1,
    )  # fmt: skip
    model_path = model_file(data_sources.root, model, feature_set, context.partition_key)
    atomic_write(model_path, lambda tmp: M.save_model(result.model, tmp))
    meta |= {
        "status": "ok",
        "best_params": str(result.best_params),
        "validation_scores": markdown_table(result.validation_scores),
        "n_train": result.n_conditions.get("train", 0),
        "n_val": result.n_conditions.get("val", 0),
        "n_test": result.n_conditions.get("test", 0),
        "n_skipped_conditions": result.n_skipped,
        "n_fallback_predictions": result.n_fallback,
        "model_file": dg.MetadataValue.path(str(model_path)),
    }
    return dg.Output(result.predictions, metadata=meta)


def _prediction_asset(model: str, feature_set: str | None) -> dg.AssetsDefinition:
    name = prediction_asset_name(model, feature_set)
    common = dict(
        name=name,
        partitions_def=dataset_partitions,
        group_name=GROUP,
        code_version="1",
        kinds={"sklearn", "parquet"},
        op_tags={"device": "cpu"},
        # Recompute when features or pseudo-bulk change (e.g. a new embedding file).
        automation_condition=dg.AutomationCondition.eager(),
        metadata={"model": model, "features": feature_set or "none"},
        description=f"Test-set pseudo-bulk predictions of {model}"
        + (f" on {feature_set} features." if feature_set else "."),
    )
    if feature_set is None:

        @dg.asset(**common)
        def predictions(
            context: dg.AssetExecutionContext,
            data_sources: DataSources,
            pseudobulk: pd.DataFrame,
            perturbation_split: pd.DataFrame,
        ) -> dg.Output[pd.DataFrame]:
            return _fit(context, data_sources, model, None, pseudobulk, perturbation_split, None)

        return predictions

    @dg.asset(**common, ins={"gene_features": dg.AssetIn(feature_asset_name(feature_set))})
    def predictions_on_features(
        context: dg.AssetExecutionContext,
        config: MissingGeneConfig,
        data_sources: DataSources,
        pseudobulk: pd.DataFrame,
        perturbation_split: pd.DataFrame,
        gene_features: pd.DataFrame,
    ) -> dg.Output[pd.DataFrame]:
        return _fit(
            context, data_sources, model, feature_set, pseudobulk, perturbation_split,
            gene_features, config.missing_gene_policy,
        )  # fmt: skip

    return predictions_on_features


prediction_assets = [_prediction_asset(m, fs) for m, fs in PREDICTORS]
