"""core.evaluation.benchmark on a hand-built example: CIs, paired comparison, dropped conditions."""

import numpy as np
import pandas as pd
import pytest

from perturb_assets.core.evaluation import COLUMNS, better_than_train_mean, evaluate_models
from perturb_assets.core.metrics import DISCRIMINATION_METRICS, ERROR_METRICS
from perturb_assets.core.models import prediction_table

GENES = [f"g{i}" for i in range(6)]


def _inputs():
    rng = np.random.default_rng(0)
    ctrl = rng.random(6)
    truth = {c: ctrl + rng.normal(0, 1, 6) for c in ["D+ctrl", "B+ctrl", "C+ctrl", "A+B"]}
    pseudobulk = pd.DataFrame({"ctrl": ctrl, **truth}, index=GENES).T
    split = pd.DataFrame(
        {"split": ["train", "train", "test", "test", "test"],
         "subgroup": [None, None, "unseen_single", "unseen_single", "combo_seen2"]},
        index=["ctrl", "D+ctrl", "B+ctrl", "C+ctrl", "A+B"],
    )  # fmt: skip
    rows = [
        (method, targets, c, r + 1, g)
        for method in ("t-test", "wilcoxon")
        for targets in ("included", "excluded", "reference_compat")
        for c in ["B+ctrl", "C+ctrl", "A+B"]
        for r, g in enumerate(GENES[:4])
    ]
    de = pd.DataFrame(rows, columns=["method", "targets", "condition", "rank", "gene_id"])
    return pseudobulk, split, de


def test_perfect_model_beats_train_mean_on_every_condition_even_when_it_drops_one():
    pseudobulk, split, de = _inputs()
    genes = pseudobulk
    test = ["B+ctrl", "C+ctrl", "A+B"]
    train_mean = pd.DataFrame([genes.loc["D+ctrl"].to_numpy()] * 3, index=test, columns=GENES)
    noise = np.random.default_rng(1).normal(0, 0.01, (2, 6))
    oracle = genes.loc[["B+ctrl", "A+B"]] + noise  # dropped C+ctrl (no features)
    tables = [
        prediction_table(train_mean, model="train_mean", features="none", protocol="p"),
        prediction_table(oracle, model="oracle", features="go", protocol="p"),
    ]
    summary, per_condition = evaluate_models(
        tables, pseudobulk, split, de, dataset="toy", n_boot=200
    )
    row = summary[(summary["model"] == "oracle") & (summary["metric"] == "pearson_delta")
                  & (summary["subgroup"] == "all")].iloc[0]  # fmt: skip
    assert row["n_conditions"] == 2
    assert row["value"] == pytest.approx(1.0, abs=1e-3)
    assert row["win_rate_vs_train_mean"] == 1.0
    assert row["diff_ci_low"] > 0
    tm = summary[(summary["model"] == "train_mean") & (summary["subgroup"] == "all")]
    assert tm["diff_vs_train_mean"].isna().all() and (tm["n_conditions"] == 3).all()
    # pearson / pearson_delta once (de_method "none"); DE metrics per DE method.
    oracle_rows = summary[(summary["model"] == "oracle") & (summary["subgroup"] == "all")]
    assert oracle_rows.groupby("metric")["de_method"].apply(set).to_dict() == {
        "pearson": {"none"}, "pearson_delta": {"none"},
        "pearson_de_delta": {"t-test", "wilcoxon"},
        "pearson_delta_de_no_target": {"t-test", "wilcoxon"},
        "pearson_delta_de_no_target_reference_compat": {"t-test", "wilcoxon"},
        **{m: {"none"} for m in (*ERROR_METRICS, *DISCRIMINATION_METRICS)},
    }  # fmt: skip
    assert set(summary["subgroup"]) == {"all", "unseen_single", "combo_seen2"}
    assert set(per_condition["condition"]) == set(test)


def _many_conditions(n_test: int = 14, n_genes: int = 20):
    """Control, two train and ``n_test`` test single perturbations with random profiles."""
    rng = np.random.default_rng(2)
    genes = [f"g{i}" for i in range(n_genes)]
    names = ["ctrl", "T1+ctrl", "T2+ctrl", *[f"S{i}+ctrl" for i in range(n_test)]]
    ctrl = rng.uniform(1, 3, n_genes)
    profiles = [ctrl, *(ctrl + rng.normal(0, 1, n_genes) for _ in names[1:])]
    pseudobulk = pd.DataFrame(profiles, index=names, columns=genes)
    split = pd.DataFrame(
        {"split": ["train"] * 3 + ["test"] * n_test,
         "subgroup": [None] * 3 + ["unseen_single"] * n_test},
        index=names,
    )  # fmt: skip
    de = pd.DataFrame(
        [("t-test", targets, c, r + 1, g)
         for targets in ("included", "excluded", "reference_compat")
         for c in names[3:] for r, g in enumerate(genes[:8])],
        columns=["method", "targets", "condition", "rank", "gene_id"],
    )  # fmt: skip
    return pseudobulk, split, de


def test_holm_adjustment_and_better_than_train_mean_follow_metric_direction():
    from statsmodels.stats.multitest import multipletests

    pseudobulk, split, de = _many_conditions()
    test = split.index[split["split"] == "test"]
    train = pseudobulk.loc[["T1+ctrl", "T2+ctrl"]].mean()
    train_mean = pd.DataFrame([train.to_numpy()] * len(test), index=test, columns=train.index)
    rng = np.random.default_rng(1)
    oracle = pseudobulk.loc[test] + rng.normal(0, 0.01, (len(test), pseudobulk.shape[1]))
    wild = pseudobulk.loc[test] + rng.normal(0, 5.0, oracle.shape)  # far worse errors
    tables = [
        prediction_table(train_mean, model="train_mean", features="none", protocol="p"),
        prediction_table(oracle, model="oracle", features="go", protocol="p"),
        prediction_table(wild, model="wild", features="go", protocol="p"),
    ]
    summary, _ = evaluate_models(tables, pseudobulk, split, de, dataset="toy", n_boot=400)
    tested = summary[summary["p_value_vs_train_mean"].notna()]
    assert set(tested["model"]) == {"oracle", "wild"}
    # One Holm family per DE method x subgroup, recomputed with statsmodels.
    for _, family in tested.groupby(["de_method", "subgroup"]):
        expected = multipletests(family["p_value_vs_train_mean"], method="holm")[1]
        assert family["p_holm"].to_numpy() == pytest.approx(expected)
    assert (tested["p_holm"] >= tested["p_value_vs_train_mean"] - 1e-15).all()
    # The simultaneous interval contains the unadjusted one.
    assert (tested["diff_ci_low_holm"] <= tested["diff_ci_low"] + 1e-12).all()
    assert (tested["diff_ci_high_holm"] >= tested["diff_ci_high"] - 1e-12).all()
    rows = summary[summary["subgroup"] == "all"].drop_duplicates(["model", "metric"])
    rows = rows.set_index(["model", "metric"]).sort_index()
    # Pearson: higher is better, so the interval must sit above zero; errors: below zero.
    assert rows.loc[("oracle", "pearson_delta"), "better_than_train_mean"]
    assert rows.loc[("oracle", "mse"), "diff_ci_high_holm"] < 0
    assert rows.loc[("oracle", "mse"), "better_than_train_mean"]
    assert rows.loc[("wild", "mse"), "diff_ci_low_holm"] > 0  # clearly worse ...
    assert rows.loc[("wild", "mse"), "p_holm"] <= 0.05  # ... significantly ...
    assert not rows.loc[("wild", "mse"), "better_than_train_mean"]  # ... so not "better"
    assert not summary.loc[summary["model"] == "train_mean", "better_than_train_mean"].any()
    assert summary["better_than_train_mean"].dtype == bool
    assert "oracle/go/p" in better_than_train_mean(summary)
    assert better_than_train_mean(summary, "mse") == ["oracle/go/p"]


def test_three_conditions_are_too_few_to_beat_train_mean():
    # Every resampled mean of the oracle's differences is positive (the interval excludes 0),
    # but the signed-rank test of 3 differences cannot go below p = 0.25: not "better".
    pseudobulk, split, de = _inputs()
    test = ["B+ctrl", "C+ctrl", "A+B"]
    train_mean = pd.DataFrame([pseudobulk.loc["D+ctrl"].to_numpy()] * 3, index=test, columns=GENES)
    oracle = pseudobulk.loc[test] + np.random.default_rng(1).normal(0, 0.01, (3, 6))
    tables = [
        prediction_table(train_mean, model="train_mean", features="none", protocol="p"),
        prediction_table(oracle, model="oracle", features="go", protocol="p"),
    ]
    summary, _ = evaluate_models(tables, pseudobulk, split, de, dataset="toy", n_boot=200)
    row = summary[(summary["model"] == "oracle") & (summary["metric"] == "pearson_delta")
                  & (summary["subgroup"] == "all")].iloc[0]  # fmt: skip
    assert row["diff_ci_low_holm"] > 0
    assert row["p_value_vs_train_mean"] == pytest.approx(0.25)
    assert not row["better_than_train_mean"]


def test_empty_predictions_are_skipped():
    pseudobulk, split, de = _inputs()
    empty = prediction_table(
        pd.DataFrame(columns=GENES, dtype=float), model="knn", features="scgpt", protocol="p"
    )
    summary, _ = evaluate_models([empty], pseudobulk, split, de, "x")
    assert summary.empty and list(summary.columns) == COLUMNS
