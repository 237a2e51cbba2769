"""Genetic interactions: Norman's classes on constructed doubles, the additive and the oracle
model's scores, and the ``genetic_interactions`` asset on a simulated combination screen."""

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from anndata import AnnData

from perturb_assets.core.evaluation import (
    INTERACTION_COLUMNS,
    interaction_class_counts,
    interaction_summary,
    interaction_table,
)
from perturb_assets.core.gears import simulation_split
from perturb_assets.core.metrics import bootstrap_ratio_ci
from perturb_assets.core.models import AdditiveModel, prediction_table
from perturb_assets.core.pp import pseudobulk_profiles
from perturb_assets.core.simulation import simulate_perturbseq
from perturb_assets.defs.metrics.assets import PREDICTION_INS
from perturb_assets.defs.metrics.interactions import genetic_interactions
from perturb_assets.defs.partitions import instance_with_datasets

N_GENES = 300
#: double -> factor on its singles' summed effect (2 = synergy, 0.3 = suppression, 1 = additive)
FACTORS = {"A+B": 2.0, "C+D": 0.3, "E+F": 1.0, "G+H": 1.6, "I+J": 0.5, "K+L": 1.05}
EXPECTED = {"A+B": "synergy", "C+D": "suppression", "E+F": "additive", "G+H": "synergy",
            "I+J": "suppression", "K+L": "additive"}  # fmt: skip


def _truth() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pseudo-bulk truth with known interactions, and its split (singles train, doubles test)."""
    rng = np.random.default_rng(0)
    genes = [f"g{i}" for i in range(N_GENES)]
    ctrl = rng.uniform(1, 3, N_GENES)
    singles = sorted({g for c in FACTORS for g in c.split("+")}) + ["M"]
    # Sparse single effects: a tenth of the genes respond to each perturbation.
    deltas = {s: rng.normal(0, 1, N_GENES) * (rng.random(N_GENES) < 0.1) for s in singles}
    rows = {"ctrl": ctrl, **{f"{s}+ctrl": ctrl + d for s, d in deltas.items()}}
    for double, factor in FACTORS.items():
        a, b = double.split("+")
        noise = rng.normal(0, 0.01, N_GENES)
        rows[double] = ctrl + factor * (deltas[a] + deltas[b]) + noise
    rows["M+N"] = ctrl + deltas["M"]  # N has no single: not scored
    truth = pd.DataFrame(rows, index=genes).T
    split = pd.DataFrame(
        {"split": ["test" if "ctrl" not in c else "train" for c in truth.index]},
        index=truth.index,
    )
    split["subgroup"] = np.where(split["split"] == "test", "combo_seen2", "train")
    return truth, split


def _table(frame: pd.DataFrame, model: str) -> AnnData:
    return prediction_table(frame, model=model, features="none", protocol="published_2025")


def _additive(truth: pd.DataFrame, split: pd.DataFrame) -> AnnData:
    train = split.index[split["split"] == "train"]
    model = AdditiveModel().fit(list(train), truth.loc[train].to_numpy())
    test = split.index[split["split"] == "test"]
    return _table(pd.DataFrame(model.predict(list(test)), test, truth.columns), "additive")


def test_classes_of_constructed_doubles_are_recovered():
    truth, split = _truth()
    table = interaction_table([_table(truth.loc[list(FACTORS)], "oracle")], truth, split, "toy")
    assert list(table.columns) == INTERACTION_COLUMNS
    by_double = table.set_index("condition")
    assert set(by_double.index) == set(FACTORS)  # M+N lacks a single
    assert by_double["true_class"].to_dict() == EXPECTED
    # Least squares recovers the factor on both singles (the noise is small).
    for double, factor in FACTORS.items():
        assert by_double.loc[double, ["true_c1", "true_c2"]].tolist() == pytest.approx(
            [factor, factor], abs=0.02
        )
    assert by_double.loc["E+F", "true_magnitude"] == pytest.approx(np.sqrt(2), abs=0.02)
    counts = interaction_class_counts(table).loc["observed"]
    assert counts.to_dict() == {"synergy": 2, "suppression": 2, "additive": 2}


def test_additive_model_has_zero_non_additivity_and_oracle_is_perfect():
    truth, split = _truth()
    oracle = _table(truth.loc[list(FACTORS)], "oracle")
    table = interaction_table([_additive(truth, split), oracle], truth, split, "toy")
    additive = table[table["model"] == "additive"]
    assert len(additive) == len(FACTORS)
    assert (additive["pred_class"] == "additive").all()
    assert additive[["pred_c1", "pred_c2"]].to_numpy() == pytest.approx(1.0)
    assert additive["error_ratio"].to_numpy() == pytest.approx(1.0)
    # No predicted non-additivity: its correlation with the observed one is undefined.
    assert additive["nonadditivity_pearson"].isna().all()
    summary = interaction_summary(table, n_boot=200)
    best = summary.loc[("oracle", "none", "published_2025")]
    assert best["nonadditivity_pearson"] == pytest.approx(1.0)
    assert best["error_ratio"] == 0 and best["ratio_ci_high"] == 0
    assert best["class_accuracy"] == 1.0 and best["beats_additive"]
    base = summary.loc[("additive", "none", "published_2025")]
    assert base["error_ratio"] == pytest.approx(1.0) and not base["beats_additive"]
    # 4 of 6 doubles are not additive: the additive model gets the two additive ones right.
    assert base["class_accuracy"] == pytest.approx(2 / 6)


def test_a_model_halfway_to_the_truth_has_a_quarter_of_the_error():
    truth, split = _truth()
    additive = _additive(truth, split)
    halfway = 0.5 * (additive.to_df() + truth.loc[additive.obs_names])
    table = interaction_table([_table(halfway, "halfway")], truth, split)
    assert table["error_ratio"].to_numpy() == pytest.approx(0.25)
    assert table["nonadditivity_pearson"].to_numpy() == pytest.approx(1.0)


def test_no_doubles_gives_an_empty_table():
    truth, split = _truth()
    singles = [c for c in truth.index if "ctrl" in c]
    table = interaction_table(
        [_table(truth.loc[singles], "oracle")], truth.loc[singles], split.loc[singles]
    )
    assert table.empty and list(table.columns) == INTERACTION_COLUMNS


def test_bootstrap_ratio_ci_is_the_ratio_of_means_with_a_paired_interval():
    rng = np.random.default_rng(1)
    den = rng.uniform(1, 2, 50)
    num = 0.5 * den * rng.uniform(0.9, 1.1, 50)
    ratio, low, high = bootstrap_ratio_ci(num, den, n_boot=500)
    assert ratio == pytest.approx(num.mean() / den.mean())
    assert low < ratio < high < 0.6
    assert np.isnan(bootstrap_ratio_ci([1.0], [0.0])[0])


class _Inputs(dg.IOManager):
    """Serves the asset's inputs from memory (missing ones as None) and keeps its output."""

    def __init__(self, values: dict):
        self.values = values
        self.output = None

    def handle_output(self, context, obj):
        self.output = obj

    def load_input(self, context):
        return self.values.get(context.asset_key.to_user_string())


def test_asset_on_a_simulated_combination_screen():
    sim = simulate_perturbseq(
        n_cells=3000, n_genes=200, n_perturbations=80, combo_fraction=0.45, seed=0,
        compute_de=False,
    )  # fmt: skip
    profiles = pseudobulk_profiles(sim.adata)
    split = simulation_split(profiles.obs_names)
    truth = profiles.to_df()
    additive = _additive(truth, split)
    io = _Inputs({"pseudobulk": profiles, "perturbation_split": split, "additive_predictions":
                  additive})  # fmt: skip
    sources = [dg.SourceAsset(k) for k in ["pseudobulk", "perturbation_split", *PREDICTION_INS]]
    result = dg.materialize(
        [genetic_interactions, *sources],
        partition_key="synthetic",
        instance=instance_with_datasets(),
        resources={"io_manager": io},
    )
    assert result.success
    table = io.output
    metadata = result.asset_materializations_for_node("genetic_interactions")[0].metadata
    doubles = split.index[(split["split"] == "test") & ~split.index.str.contains("ctrl")]
    assert 0 < table["condition"].nunique() <= len(doubles)
    assert set(table["model"]) == {"additive"}
    assert metadata["n_doubles"].value == table["condition"].nunique()
    assert "error_ratio" in metadata["summary_by_model"].value
    assert "synergy" in metadata["class_counts"].value
    # Where both singles are in train the additive model is exactly the additive expectation
    # (elsewhere it falls back to Train Mean: a single in val or test).
    train = {c.replace("ctrl", "").strip("+") for c in split.index[split["split"] == "train"]}
    seen = table["gene_a"].isin(train) & table["gene_b"].isin(train)
    assert seen.any() and table.loc[seen, "error_ratio"].to_numpy() == pytest.approx(1.0)
    assert (np.abs(table.loc[~seen, "error_ratio"] - 1) > 1e-6).all()
