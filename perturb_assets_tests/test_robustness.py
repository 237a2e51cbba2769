"""core.evaluation.robustness on a small constructed screen: what each degenerate prediction
does to the metrics (the asset on synthetic data is tested in test_benchmark_assets.py, which
materialises it with the main job)."""

import numpy as np
import pandas as pd
import pytest
from anndata import AnnData

from perturb_assets.core.evaluation import (
    ATTACKS,
    degenerate_predictions,
    evaluate_models,
    prediction_role,
    robustness_overview,
    robustness_table,
)
from perturb_assets.core.metrics import higher_is_better
from perturb_assets.core.models import prediction_table

N_GENES = 12
GENES = [f"ENSG{i:04d}" for i in range(N_GENES)]
SYMBOLS = [f"G{i}" for i in range(N_GENES)]
TRAIN = ["G1+ctrl", "G2+ctrl", "G3+ctrl", "G4+ctrl"]
TEST = ["G5+ctrl", "G6+ctrl", "G7+ctrl", "G8+ctrl", "G9+ctrl"]


def _screen():
    """Cells (log scale) with a knock-down of each target and a random program; their means."""
    rng = np.random.default_rng(0)
    base = rng.uniform(1.0, 3.0, N_GENES)
    blocks, labels = [], []
    for condition in ["ctrl", *TRAIN, *TEST]:
        mean = base.copy()
        if condition != "ctrl":
            mean += rng.normal(0, 0.4, N_GENES)
            mean[SYMBOLS.index(condition.split("+")[0])] -= 1.5
        blocks.append(mean + rng.normal(0, 0.3, (30, N_GENES)))
        labels += [condition] * 30
    cells = AnnData(np.vstack(blocks))
    cells.var_names = GENES
    cells.var["gene_name"] = SYMBOLS
    cells.obs["condition"] = labels
    pseudobulk = cells.to_df().groupby(cells.obs["condition"].to_numpy()).mean()
    split = pd.DataFrame(
        {"split": ["train"] * 5 + ["test"] * 5, "subgroup": [None] * 5 + ["unseen_single"] * 5},
        index=["ctrl", *TRAIN, *TEST],
    )
    delta = (pseudobulk.loc[TEST] - pseudobulk.loc["ctrl"]).abs()
    rows = [
        (method, targets, c, r + 1, g)
        for method in ("t-test", "wilcoxon")
        for targets in ("included", "excluded", "reference_compat")
        for c in TEST
        for r, g in enumerate(delta.loc[c].sort_values(ascending=False).index[:5])
    ]
    de = pd.DataFrame(rows, columns=["method", "targets", "condition", "rank", "gene_id"])
    return cells, pseudobulk, split, de


@pytest.fixture(scope="module")
def battery():
    cells, pseudobulk, split, de = _screen()
    names = cells.var["gene_name"]
    preds = degenerate_predictions(pseudobulk, split, de, cells, gene_names=names)
    # The honest models: Train Mean and a noisy oracle, scored by the metrics code.
    noisy = pseudobulk.loc[TEST] + np.random.default_rng(1).normal(0, 0.6, (len(TEST), N_GENES))
    tables = [
        prediction_table(preds["train_mean"], model="train_mean", features="none", protocol="p"),
        prediction_table(noisy, model="noisy_oracle", features="go", protocol="p"),
    ]
    honest, _ = evaluate_models(
        tables, pseudobulk, split, de, dataset="toy", n_boot=20, gene_names=names
    )
    table = robustness_table(preds, pseudobulk, split, de, honest, names)
    return cells, pseudobulk, preds, table


def _value(table, prediction, metric, de_method="none"):
    row = table[
        (table["prediction"] == prediction)
        & (table["metric"] == metric)
        & (table["de_method"] == de_method)
    ]
    assert len(row) == 1, (prediction, metric, de_method)
    return row.iloc[0]


def test_every_prediction_is_built_on_the_test_conditions(battery):
    _, pseudobulk, preds, _ = battery
    assert set(ATTACKS) <= set(preds)
    assert {"truth_x0.5", "truth_x2", "truth_plus_noise_0.05"} <= set(preds)
    for name, frame in preds.items():
        assert list(frame.index) == TEST, name
        assert list(frame.columns) == GENES, name
    truth = pseudobulk.loc[TEST]
    np.testing.assert_allclose(preds["count_scale"], np.expm1(truth))
    # A derangement: no condition gets its own truth, every truth is used once.
    shuffled = preds["shuffled_truth"].to_numpy()
    assert not np.isclose(shuffled, truth.to_numpy()).all(axis=1).any()
    assert sorted(map(tuple, shuffled)) == sorted(map(tuple, truth.to_numpy()))


def test_one_cell_is_a_real_cell_of_its_condition(battery):
    cells, _, preds, _ = battery
    for condition, row in preds["one_cell"].iterrows():
        own = cells[cells.obs["condition"] == condition].X
        assert np.isclose(own, row.to_numpy()).all(axis=1).any(), condition


def test_train_mean_plus_target_differs_from_train_mean_only_at_the_target(battery):
    _, pseudobulk, preds, table = battery
    changed = preds["train_mean_plus_target"] != preds["train_mean"]
    for condition in TEST:
        target = GENES[SYMBOLS.index(condition.split("+")[0])]
        assert list(changed.columns[changed.loc[condition]]) == [target]
        assert preds["train_mean_plus_target"].loc[condition, target] == pytest.approx(
            pseudobulk.loc[condition, target]
        )
    # Metrics over all genes reward the known knock-down ...
    for metric in ("pearson_delta", "mse"):
        sign = 1 if higher_is_better(metric) else -1
        plus = _value(table, "train_mean_plus_target", metric)["value"]
        assert sign * plus > sign * _value(table, "train_mean", metric)["value"]
    # ... the discrimination score leaves the target out, so it is exactly Train Mean's.
    assert _value(table, "train_mean_plus_target", "discrimination_l1")["value"] == (
        pytest.approx(_value(table, "train_mean", "discrimination_l1")["value"])
    )


def test_scaled_truth_keeps_the_correlation_but_not_the_error(battery):
    _, _, _, table = battery
    half, double = (_value(table, p, "pearson_delta")["value"] for p in ("truth_x0.5", "truth_x2"))
    assert half == pytest.approx(1.0) and double == pytest.approx(1.0)
    # mse = mean(((k - 1) delta)^2): ×2 errs by the whole delta, ×0.5 by half of it.
    mse_half, mse_double = (_value(table, p, "mse")["value"] for p in ("truth_x0.5", "truth_x2"))
    assert mse_double == pytest.approx(4 * mse_half, rel=1e-9)
    # ×2 is as far from the truth as no change at all: the same mse as the control mean.
    assert mse_double == pytest.approx(_value(table, "control_mean", "mse")["value"])
    control = _value(table, "control_mean", "pearson_delta")["value"]
    assert np.isnan(control) or control == 0.0


def test_direction_rank_and_flags(battery):
    _, _, _, table = battery
    assert not higher_is_better("mse") and not higher_is_better("mae_delta")
    assert higher_is_better("pearson_delta") and higher_is_better("discrimination_cosine")
    assert prediction_role("truth_plus_noise_0.2") == "anchor"
    assert prediction_role("shuffled_truth") == "attack"
    # Near-truth anchors beat both honest models on mse (lower), and are never flagged.
    near = _value(table, "truth_plus_noise_0.05", "mse")
    assert near["rank"] == 1 and near["beats_best_honest"] and not near["fools_metric"]
    assert near["value"] < near["best_honest_value"]
    anchors = table[table["role"] == "anchor"]
    assert not anchors["fools_metric"].any()
    # train_mean ties the honest Train Mean: no win, so never flagged.
    assert not table.loc[table["prediction"] == "train_mean", "beats_best_honest"].any()
    # The DE leak is the truth on exactly the DE list: a perfect score, and an attack's win.
    leak = _value(table, "truth_top_de_only", "pearson_de_delta", "t-test")
    assert leak["value"] == pytest.approx(1.0) and leak["fools_metric"] and leak["rank"] == 1
    # fools_metric is exactly an attack beating the best honest model.
    expected = table["beats_best_honest"] & (table["role"] == "attack")
    assert (table["fools_metric"] == expected).all()
    assert (table["n_honest"] == 2).all()


def test_overview_marks_fooled_cells(battery):
    _, _, _, table = battery
    wide = robustness_overview(table)
    assert wide.loc["pearson_de_delta [t-test]", "truth_top_de_only"].startswith("FOOLS")
    # Ranks are out of the honest models plus the prediction itself.
    assert wide.loc["mse", "truth_plus_noise_0.05"] == "1/3"
    assert "pearson_de_delta [wilcoxon]" not in wide.index
