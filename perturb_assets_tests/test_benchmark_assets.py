"""End-to-end on synthetic data: features → every baseline model → metrics → summary."""

import numpy as np
import pandas as pd
import pytest

from perturb_assets.core.evaluation import (
    ALL_SUBGROUPS,
    ATTACKS,
    CEILING_MODEL,
    attach_paper_values,
)
from perturb_assets.core.io import VersionedStore
from perturb_assets.core.metrics import DE_FAMILY_METRICS, DISCRIMINATION_METRICS, ERROR_METRICS
from perturb_assets.core.models import (
    PREPRINT_2024,
    PUBLISHED_2025,
    CompressedTargetForest,
    load_model,
    predictors,
)
from perturb_assets.defs.resources import build_resources


@pytest.fixture(scope="module")
def materialised(synthetic_run):
    """The data root of the session's shared main-job run (conftest.py)."""
    return synthetic_run[0]


def _metrics(root) -> pd.DataFrame:
    return VersionedStore(root).read("assets", "metrics", "synthetic")


def test_full_model_feature_metric_table_with_cis(materialised):
    table = _metrics(materialised)
    overall = table[table["subgroup"] == ALL_SUBGROUPS]
    pairs = set(zip(overall["model"], overall["features"], strict=True))
    expected = {(p.model.name, p.features_label) for p in predictors(foundation=False)}
    assert pairs == expected | {(CEILING_MODEL, "none")}
    models = overall[overall["model"] != CEILING_MODEL]
    assert set(models["protocol"]) == {PUBLISHED_2025.name}
    metrics = set(overall["metric"])
    assert metrics == {
        "pearson", "pearson_delta", "pearson_de_delta", "pearson_delta_de_no_target",
        "pearson_delta_de_no_target_reference_compat", *ERROR_METRICS,
        *DISCRIMINATION_METRICS, *DE_FAMILY_METRICS,
    }  # fmt: skip
    assert set(overall["de_method"]) == {"none", "t-test", "wilcoxon", "wilcoxon_bh"}
    # cell-eval's DE family for every model (not the ceiling, which has no predicted cells)
    family = models[models["de_method"] == "wilcoxon_bh"]
    assert set(zip(family["model"], family["features"], strict=True)) == expected
    assert family.groupby("model")["metric"].nunique().eq(len(DE_FAMILY_METRICS)).all()
    assert (overall["ci_low"] <= overall["value"]).all()
    assert (overall["value"] <= overall["ci_high"]).all()
    rf = overall[overall["model"] == "random_forest"]
    assert rf["diff_vs_train_mean"].notna().all()
    assert rf["win_rate_vs_train_mean"].between(0, 1).all()
    # Combination dataset: per-subgroup rows exist for the GEARS test subgroups.
    assert {"combo_seen2", "unseen_single"} <= set(table["subgroup"])


def test_random_forest_on_go_beats_train_mean(materialised):
    table = _metrics(materialised)
    row = table[
        (table["metric"] == "pearson_delta") & (table["subgroup"] == ALL_SUBGROUPS)
    ].set_index(["model", "features"])["value"]
    assert row[("random_forest", "go")] > row[("train_mean", "none")] + 0.02


def test_summary_collects_the_dataset_and_models_are_persisted(materialised, tmp_path):
    summary = VersionedStore(materialised).read("assets", "benchmark_summary")
    assert set(summary["dataset"]) == {"synthetic"}
    assert len(summary) == len(_metrics(materialised))
    sources = build_resources(materialised)["data_sources"]
    model_file = sources.model_file("random_forest_go_predictions", "synthetic", tmp_path)
    assert model_file.name == "model.skops" and model_file.stat().st_size > 0
    assert isinstance(load_model(model_file), CompressedTargetForest)


def test_predictions_cover_test_conditions_and_all_genes(materialised):
    store = VersionedStore(materialised)
    split = store.read("assets", "perturbation_split", "synthetic")
    pb = store.read("assets", "pseudobulk", "synthetic")
    pred = store.read("assets", "knn_go_predictions", "synthetic")
    assert set(pred.obs_names) == set(split.index[split["split"] == "test"])
    assert list(pred.var_names) == list(pb.var_names)
    assert np.isfinite(pred.X).all()
    # Every row says which model, features and protocol made it.
    assert (pred.obs[["model", "features", "protocol"]].drop_duplicates().values.tolist()
            == [["knn", "go", PUBLISHED_2025.name]])  # fmt: skip


def test_paper_value_sits_beside_ours_only_where_comparable():
    summary = pd.DataFrame(
        {
            "dataset": ["adamson"] * 3, "model": ["random_forest"] * 3, "features": ["go"] * 3,
            "protocol": [PUBLISHED_2025.name] * 3,
            "de_method": ["none", "wilcoxon", "t-test"], "subgroup": ["all"] * 3,
            "metric": ["pearson_delta", "pearson_de_delta",
                       "pearson_delta_de_no_target_reference_compat"],
            "value": [0.7, 0.7, 0.8],
        }
    )  # fmt: skip
    out = attach_paper_values(summary)
    assert out.loc[0, "paper_value"] == pytest.approx(0.7387)
    assert pd.isna(out.loc[1, "paper_value"])  # the paper's DE lists are t-test
    assert out.loc[2, "paper_value"] == pytest.approx(0.7958)  # pearson_delta_de_no_knockout
    # The paper's numbers come from the published protocol: not beside a preprint row.
    preprint = attach_paper_values(summary.assign(protocol=PREPRINT_2024.name))
    assert preprint["paper_value"].isna().all()


def test_metric_calibration_reads_the_controls_from_the_metrics_table(materialised):
    table = VersionedStore(materialised).read("assets", "metric_calibration", "synthetic")
    metrics = _metrics(materialised)
    whole = metrics[(metrics["subgroup"] == ALL_SUBGROUPS) & (metrics["de_method"] == "none")]
    delta = table[(table["metric"] == "pearson_delta") & (table["de_method"] == "none")]
    ceiling = whole[(whole["model"] == CEILING_MODEL) & (whole["metric"] == "pearson_delta")]
    assert delta["positive_control"].iloc[0] == pytest.approx(ceiling["value"].iloc[0])
    rf = delta[(delta["model"] == "random_forest") & (delta["features"] == "go")].iloc[0]
    expected = whole[(whole["model"] == "random_forest") & (whole["features"] == "go")
                     & (whole["protocol"] == rf["protocol"])
                     & (whole["metric"] == "pearson_delta")]  # fmt: skip
    assert rf["calibrated_score"] == pytest.approx(expected["calibrated_score"].iloc[0])
    # The control mean predicts no change: its delta is constant, so Pearson Delta is undefined.
    assert np.isnan(delta[delta["model"] == "control_mean"]["value"].iloc[0])
    mse = table[(table["metric"] == "mse") & (table["model"] == "control_mean")].iloc[0]
    assert mse["value"] > mse["train_mean"] > mse["positive_control"]  # the errors' ladder
    assert table["uninformative"].dtype == bool and 0 < table["drf"].notna().sum()


def test_metric_robustness_places_every_attack_among_the_honest_models(materialised):
    store = VersionedStore(materialised)
    table = store.read("assets", "metric_robustness", "synthetic")
    metrics = _metrics(materialised)
    assert set(ATTACKS) <= set(table["prediction"])
    honest = metrics[(metrics["subgroup"] == ALL_SUBGROUPS) & (metrics["model"] != CEILING_MODEL)]
    n_models = len(honest.drop_duplicates(["model", "features"]))
    assert (table["n_honest"] == n_models).all()
    assert table["rank"].dropna().between(1, n_models + 1).all()
    # The battery's train_mean is the Train Mean model itself: it ties, it never wins.
    own = table[table["prediction"] == "train_mean"].set_index(["metric", "de_method"])
    model = honest[honest["model"] == "train_mean"].set_index(["metric", "de_method"])["value"]
    np.testing.assert_allclose(own["value"], model.reindex(own.index), rtol=1e-6)
    assert not own["beats_best_honest"].any()
    # Mildly noisy truth beats every honest model on the errors (lower is better).
    near = table[(table["prediction"] == "truth_plus_noise_0.05") & (table["metric"] == "mse")]
    assert (near["rank"] == 1).all() and (near["value"] < near["best_honest_value"]).all()
    assert (table["fools_metric"] == table["beats_best_honest"] & (table["role"] == "attack")).all()
