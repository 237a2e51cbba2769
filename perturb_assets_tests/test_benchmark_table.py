"""core.evaluation.benchmark on a hand-built example: CIs, paired comparison, dropped conditions."""

import re

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


def test_a_model_of_several_seeds_is_averaged_over_them_with_its_seed_spread():
    from perturb_assets.core.models import seeded_prediction_table

    pseudobulk, split, de = _inputs()
    test = ["B+ctrl", "C+ctrl", "A+B"]
    rng = np.random.default_rng(2)
    runs = {seed: pseudobulk.loc[test] + rng.normal(0, 0.5 * (i + 1), (3, 6))
            for i, seed in enumerate([7, 8, 9])}  # fmt: skip
    train_mean = pd.DataFrame([pseudobulk.loc["D+ctrl"].to_numpy()] * 3, index=test, columns=GENES)
    tables = [
        prediction_table(train_mean, model="train_mean", features="none", protocol="p"),
        seeded_prediction_table(runs, model="scgpt", features="none", protocol="p"),
        seeded_prediction_table({7: runs[7]}, model="one_seed", features="none", protocol="p"),
    ]
    summary, per_condition = evaluate_models(tables, pseudobulk, split, de, "toy", n_boot=100)
    mse = per_condition[(per_condition["metric"] == "mse") & (per_condition["model"] == "scgpt")]
    assert sorted(mse["seed"].unique()) == [7, 8, 9] and len(mse) == 9
    per_seed = mse.groupby("seed")["value"].mean()
    row = summary[(summary["model"] == "scgpt") & (summary["metric"] == "mse")
                  & (summary["subgroup"] == "all")].iloc[0]  # fmt: skip
    assert row["n_seeds"] == 3 and row["n_conditions"] == 3
    assert row["value"] == pytest.approx(per_seed.mean())
    assert row["seed_sd"] == pytest.approx(per_seed.std(ddof=1))
    one = summary[(summary["model"] == "one_seed") & (summary["metric"] == "mse")
                  & (summary["subgroup"] == "all")].iloc[0]  # fmt: skip
    assert one["n_seeds"] == 1 and np.isnan(one["seed_sd"])
    assert one["value"] == pytest.approx(per_seed.loc[7])


def test_cells_add_cell_evals_de_metrics_with_cis_and_the_paired_comparison():
    """With the ``expression`` cells, every model gets cell-eval's DE family (de_method
    ``wilcoxon_bh``), equal per condition to de_family_metrics on the same inputs."""
    import anndata as ad
    import scipy.sparse as sp

    from perturb_assets.core.evaluation import DE_FAMILY_METHOD
    from perturb_assets.core.metrics import (
        DE_FAMILY_METRICS,
        de_family_metrics,
        pseudobulk_de_table,
        real_de_table,
    )

    _, split, de = _inputs()
    rng = np.random.default_rng(2)
    conditions = list(split.index)
    genes = [f"g{i}" for i in range(40)]
    effects = rng.normal(0, 1.5, (len(conditions), 40)) * (rng.random((len(conditions), 40)) < 0.4)
    effects[0] = 0.0
    labels = np.repeat(conditions, 30)
    rates = np.expm1(1.0 + np.clip(effects, -1, None))[np.repeat(np.arange(len(conditions)), 30)]
    x = np.log1p(rng.poisson(rates)).astype(np.float32)
    obs = pd.DataFrame({"condition": labels}, index=[f"c{i}" for i in range(len(labels))])
    cells = ad.AnnData(sp.csr_matrix(x), obs=obs,
                       var=pd.DataFrame(index=genes))  # fmt: skip
    pseudobulk = pd.DataFrame(x, columns=genes).groupby(labels).mean().loc[conditions]
    de = de.assign(gene_id=de["gene_id"].str.replace("g", "g1"))  # genes of this example
    test = ["B+ctrl", "C+ctrl", "A+B"]
    train_mean = pd.DataFrame([pseudobulk.loc["D+ctrl"].to_numpy()] * 3, index=test, columns=genes)
    oracle = pseudobulk.loc[test]
    tables = [
        prediction_table(train_mean, model="train_mean", features="none", protocol="p"),
        prediction_table(oracle, model="oracle", features="go", protocol="p"),
    ]
    summary, per_condition = evaluate_models(
        tables, pseudobulk, split, de, dataset="toy", n_boot=200, cells=cells
    )
    family = per_condition[per_condition["de_method"] == DE_FAMILY_METHOD]
    assert set(family["metric"]) == set(DE_FAMILY_METRICS)
    assert set(family["model"]) == {"train_mean", "oracle"}
    real = real_de_table(cells.X, labels, "ctrl", genes, test)
    direct = de_family_metrics(real, pseudobulk_de_table(oracle, pd.Series(30, index=test), x[:30]))
    got = family[family["model"] == "oracle"].set_index(["condition", "metric"])["value"]
    want = direct.set_index(["condition", "metric"])["value"]
    pd.testing.assert_series_equal(got.sort_index(), want.sort_index(), check_names=False)
    row = summary[(summary["model"] == "oracle") & (summary["metric"] == "overlap_at_N")
                  & (summary["subgroup"] == "all")].iloc[0]  # fmt: skip
    assert row["de_method"] == DE_FAMILY_METHOD and row["n_conditions"] == 3
    assert row["value"] > 0.5 and row["ci_low"] <= row["value"] <= row["ci_high"]
    assert row["diff_vs_train_mean"] > 0  # the paired comparison against Train Mean


def test_every_summary_row_is_its_own_bootstrap_and_paired_comparison_exactly():
    # The summary computes its rows together (p-values batched by sample size, bootstrap
    # draws shared by size, arrays instead of frame slices); each row must be bitwise what
    # bootstrap_ci and paired_comparison give on that row's conditions alone.
    from perturb_assets.core.metrics import bootstrap_ci, paired_comparison

    pseudobulk, split, de = _many_conditions(n_test=16)
    test = split.index[split["split"] == "test"]
    split.loc[test[:6], "subgroup"] = "combo_seen1"  # two subgroups of different sizes
    train = pseudobulk.loc[["T1+ctrl", "T2+ctrl"]].mean()
    rng = np.random.default_rng(5)
    train_mean = pd.DataFrame([train.to_numpy()] * len(test), index=test, columns=train.index)
    near = pseudobulk.loc[test] + rng.normal(0, 0.5, (len(test), pseudobulk.shape[1]))
    tables = [
        prediction_table(train_mean, model="train_mean", features="none", protocol="p"),
        prediction_table(near, model="near", features="go", protocol="p"),
        prediction_table(near.iloc[2:], model="partial", features="go", protocol="p"),
        prediction_table(train_mean.round(0), model="rounded", features="go", protocol="p"),
    ]
    summary, per_condition = evaluate_models(tables, pseudobulk, split, de, "toy", n_boot=300)
    assert set(summary["subgroup"]) == {"all", "unseen_single", "combo_seen1"}
    base = per_condition[per_condition["model"] == "train_mean"]
    checked = 0
    for row in summary[summary["model"] != "train_mean"].itertuples():
        part = per_condition[(per_condition["model"] == row.model)
                             & (per_condition["metric"] == row.metric)
                             & (per_condition["de_method"] == row.de_method)]  # fmt: skip
        if row.subgroup != "all":
            part = part[part["subgroup"] == row.subgroup]
        values = part.set_index("condition")["value"]
        reference = base[(base["metric"] == row.metric) & (base["de_method"] == row.de_method)]
        paired = paired_comparison(values, reference.set_index("condition")["value"], n_boot=300)
        expected = (*bootstrap_ci(values, n_boot=300), paired["mean_diff"], paired["ci_low"],
                    paired["ci_high"], paired["win_rate"], paired["p_value"])  # fmt: skip
        got = (row.value, row.ci_low, row.ci_high, row.diff_vs_train_mean, row.diff_ci_low,
               row.diff_ci_high, row.win_rate_vs_train_mean, row.p_value_vs_train_mean)  # fmt: skip
        np.testing.assert_array_equal(got, expected, err_msg=f"{row}")
        checked += 1
    assert checked > 100


def test_the_summary_benchmark_finds_both_ways_identical(capsys):
    from perturb_assets.benchmarks import summary

    argv = ["--models", "3", "--metrics", "4", "--conditions", "24", "--n-boot", "100"]
    summary.main(argv)
    out = capsys.readouterr().out
    assert "every value identical to the last bit: True" in out
    assert re.search(r"summarise \(rows together\)\s+[\d.]+\s+[\d.]+x", out)
