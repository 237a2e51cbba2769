"""The analyses in core: diversity, coherence, cell-eval's metrics, the noise ceiling."""

import logging

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from perturb_assets.core.analyses import (
    adequacy_problems,
    dataset_composition,
    dataset_diversity,
    derangement,
    embedding_coherence,
    set_mean_correlations,
)
from perturb_assets.core.analyses.coherence import _standardised
from perturb_assets.core.evaluation import (
    de_lists_by_metric,
    model_metrics,
    noise_ceiling,
    split_half_means,
)
from perturb_assets.core.metrics import discrimination_scores, error_metrics

# --- diversity ------------------------------------------------------------------------------


def _diversity_inputs():
    """Five perturbations (3 train+val, 2 test) with hand-made delta profiles."""
    rng = np.random.default_rng(0)
    base = rng.normal(size=50)
    deltas = {
        "A+ctrl": base, "B+ctrl": base + 0.1 * rng.normal(size=50),
        "C+ctrl": rng.normal(size=50), "D+ctrl": base + 0.05 * rng.normal(size=50),
        "E+ctrl": base + rng.normal(size=50),
    }  # fmt: skip
    ctrl = rng.normal(size=50)
    means = pd.DataFrame({"ctrl": ctrl, **{c: ctrl + d for c, d in deltas.items()}}).T
    split = pd.DataFrame(
        {"split": ["train", "train", "val", "train", "test", "test"]},
        index=["ctrl", "B+ctrl", "A+ctrl", "C+ctrl", "D+ctrl", "E+ctrl"],
    )
    # Cells appear in the order C, B, A, E, D: GEARS lists each split in that order.
    first_cell = pd.Series({"ctrl": 0, "C+ctrl": 1, "B+ctrl": 2, "A+ctrl": 3, "E+ctrl": 4,
                            "D+ctrl": 5})  # fmt: skip
    return means, split, first_cell, deltas


def test_diversity_matches_numpy_on_a_constructed_example():
    means, split, first_cell, deltas = _diversity_inputs()
    result = dataset_diversity(means, split, first_cell)
    order = ["C+ctrl", "B+ctrl", "A+ctrl", "E+ctrl", "D+ctrl"]  # train, val, test; cell order
    assert list(result.correlations.index) == order and result.n_trainval == 3
    corr = np.corrcoef(np.vstack([deltas[c] for c in order]))
    np.testing.assert_allclose(result.correlations.to_numpy(), corr, atol=1e-6)
    assert result.median == pytest.approx(np.median(corr[np.tril_indices(5, k=-1)]), abs=1e-6)
    assert result.test_train_median == pytest.approx(np.median(corr[3:, :3]), abs=1e-6)
    # The authors' slice takes the first n_test columns: here two of the three train+val ones.
    assert result.test_train_median_reference_compat == pytest.approx(
        np.median(corr[3:, :2]), abs=1e-6
    )
    assert result.test_train_median != pytest.approx(result.test_train_median_reference_compat)


def test_composition_and_adequacy_rule():
    _, split, _, _ = _diversity_inputs()
    n_cells = pd.Series({"ctrl": 100, "A+ctrl": 10, "B+ctrl": 12, "C+ctrl": 8, "D+ctrl": 9,
                         "E+ctrl": 11})  # fmt: skip
    assert dataset_composition(n_cells, split) == {
        "n_control_cells": 100, "n_perturbed_cells": 50, "n_perturbations": 5,
        "n_train": 2, "n_val": 1, "n_test": 2,
    }  # fmt: skip
    assert adequacy_problems(0.3, 0.2) == []
    assert len(adequacy_problems(0.66, 0.02)) == 2  # Adamson-like: alike and no range


# --- coherence --------------------------------------------------------------------------------


def test_set_mean_correlation_equals_the_mean_of_the_correlation_submatrix():
    values = np.random.default_rng(1).normal(size=(30, 8))
    z = _standardised(values)
    members = [np.array([0, 3, 5, 7]), np.arange(10, 30)]
    corr = np.corrcoef(values)
    for got, rows in zip(set_mean_correlations(z, members), members, strict=True):
        sub = corr[np.ix_(rows, rows)]
        assert got == pytest.approx(sub[np.tril_indices(len(rows), k=-1)].mean(), abs=1e-6)


def test_coherent_gene_set_scores_above_a_random_one():
    rng = np.random.default_rng(2)
    genes = [f"G{i}" for i in range(200)]
    vectors = rng.normal(size=(200, 16))
    vectors[:20] = rng.normal(size=16) + 0.3 * rng.normal(size=(20, 16))  # set "coherent"
    embedding = pd.DataFrame(vectors, index=genes)
    # Every gene is in some set (the null draws vectors from all of them).
    sets = {"coherent": genes[:20], "random": genes[100:130], "tiny": genes[150:153],
            "background": genes}  # fmt: skip
    per_set = embedding_coherence({"emb": embedding}, sets)
    delta = per_set.set_index("gene_set")["delta"]
    assert "tiny" not in delta.index  # fewer than five genes
    assert delta["coherent"] > 0.5 and abs(delta["random"]) < 0.1
    assert (derangement(50, rng) != np.arange(50)).all()


# --- cell-eval's metrics ----------------------------------------------------------------------


def test_discrimination_score_perfect_constant_and_target_exclusion():
    rng = np.random.default_rng(3)
    truth = rng.normal(size=(40, 30))
    ctrl = np.zeros(30)
    for kind in ("l1", "l2", "cosine"):
        assert (discrimination_scores(truth, truth, ctrl, kind=kind) == 1.0).all()
        constant = np.tile(truth.mean(axis=0), (40, 1))
        scores = discrimination_scores(constant, truth, ctrl, kind=kind)
        assert scores.mean() == pytest.approx(0.5, abs=1e-9)  # every rank once
    # Leaving out each condition's target columns equals scipy's distances without them.
    from scipy.spatial.distance import cdist

    pred = truth + rng.normal(scale=1.5, size=truth.shape)
    excluded = [rng.choice(30, size=i % 3, replace=False) for i in range(40)]
    for kind, metric in (("l1", "cityblock"), ("l2", "euclidean"), ("cosine", "cosine")):
        expected = []
        for i, cols in enumerate(excluded):
            keep = np.setdiff1d(np.arange(30), cols)
            d = cdist(pred[i : i + 1, keep], truth[:, keep], metric=metric)[0]
            expected.append(1 - (d < d[i]).sum() / 39)
        got = discrimination_scores(pred, truth, ctrl, excluded, kind=kind)
        np.testing.assert_allclose(got, expected, err_msg=kind)


def test_error_metrics_are_means_over_genes():
    rng = np.random.default_rng(4)
    pred, truth, ctrl = rng.normal(size=(5, 9)), rng.normal(size=(5, 9)), rng.normal(size=9)
    got = error_metrics(pred, truth, ctrl)
    np.testing.assert_allclose(got["mse"], ((pred - truth) ** 2).mean(axis=1))
    np.testing.assert_allclose(got["mae_delta"], np.abs(pred - truth).mean(axis=1))


def _cells(labels) -> pd.DataFrame:
    """obs of cells with these ``target`` labels, named by string (as AnnData wants)."""
    return pd.DataFrame({"target": labels}, index=[f"cell{i}" for i in range(len(labels))])


def test_metrics_agree_with_cell_eval(tmp_path):
    """cell-eval 0.8.2 scores the same predictions; where it defines a metric differently
    (the discrimination score's normalisation), the relation is asserted."""
    from cell_eval import MetricsEvaluator

    logging.getLogger("cell_eval").setLevel(logging.ERROR)
    rng = np.random.default_rng(5)
    n_cond, n_genes, cells = 25, 60, 4
    genes = pd.Index([f"ENSG{i:05d}" for i in range(n_genes)])
    conditions = [f"P{i:02d}+ctrl" for i in range(n_cond)]
    means = rng.uniform(0.5, 3.0, size=(n_cond + 1, n_genes))
    labels = np.repeat(["ctrl", *conditions], cells)
    real_x = np.clip(
        np.repeat(means, cells, axis=0) + 0.3 * rng.normal(size=(len(labels), n_genes)), 0, None
    )
    real = ad.AnnData(real_x, obs=_cells(labels), var=pd.DataFrame(index=genes))
    truth = pd.DataFrame(real_x, index=labels, columns=genes).groupby(level=0).mean()
    pred_profiles = np.clip(
        truth.loc[conditions].to_numpy() + rng.normal(0, 0.4, (n_cond, n_genes)), 0, None
    )
    # The prediction's control cells are the real ones, so both sides share one control mean.
    pred_x = np.vstack([real_x[labels == "ctrl"], pred_profiles])
    pred_labels = ["ctrl"] * cells + conditions
    pred = ad.AnnData(pred_x, obs=_cells(pred_labels), var=pd.DataFrame(index=genes))
    results, _ = MetricsEvaluator(
        pred, real, control_pert="ctrl", pert_col="target", skip_de=True, num_threads=1,
        outdir=str(tmp_path),
    ).compute(profile="anndata", skip_metrics=["pearson_edistance", "clustering_agreement"],
              write_csv=False, break_on_error=True)  # fmt: skip
    theirs = results.to_pandas().set_index("perturbation").loc[conditions]

    pred_frame = pd.DataFrame(pred_profiles, index=conditions, columns=genes)
    ours = model_metrics(pred_frame, truth.loc[conditions], truth.loc["ctrl"], {},
                         pd.Series(dtype=str))  # fmt: skip
    ours = ours.pivot_table(index="condition", columns="metric", values="value").loc[conditions]
    for metric in ("pearson_delta", "mse", "mae", "mse_delta", "mae_delta"):
        np.testing.assert_allclose(ours[metric], theirs[metric], atol=1e-6, err_msg=metric)
    for kind in ("l1", "l2", "cosine"):
        # cell-eval: 1 - rank / n; ours: 1 - rank / (n - 1). No gene is named like a GEARS label,
        # so cell-eval excludes nothing; our target exclusion finds no gene named P00 either.
        rank = (1 - theirs[f"discrimination_score_{kind}"]) * n_cond
        np.testing.assert_allclose(
            ours[f"discrimination_{kind}"], 1 - rank / (n_cond - 1), atol=1e-6
        )
    # cell-eval refuses negative values: the platform scores raw predictions, so the README
    # says to clip at zero before handing them to cell-eval (as done above).
    with pytest.raises(ValueError, match="negative"):
        negative = ad.AnnData(pred_x.copy(), obs=pred.obs, var=pred.var)
        negative.X[-1, 0] = -0.5  # one slightly negative prediction
        MetricsEvaluator(
            negative, real, control_pert="ctrl", pert_col="target", skip_de=True,
            outdir=str(tmp_path),
        ).compute(profile="anndata", skip_metrics=["pearson_edistance", "clustering_agreement"],
                  write_csv=False, break_on_error=True)  # fmt: skip


# --- the noise ceiling ------------------------------------------------------------------------


def _noisy_dataset(sigma: float, cells: int, seed: int = 6):
    """Conditions with known means and Gaussian cell noise of SD ``sigma``."""
    rng = np.random.default_rng(seed)
    n_genes, conditions = 40, ["ctrl"] + [f"G{i}+ctrl" for i in range(12)]
    means = 3.0 + rng.normal(size=(len(conditions), n_genes))
    labels = np.repeat(conditions, cells)
    x = np.repeat(means, cells, axis=0) + sigma * rng.normal(size=(len(labels), n_genes))
    adata = ad.AnnData(sp.csr_matrix(x.astype(np.float32)),
                       obs=pd.DataFrame({"condition": pd.Categorical(labels)},
                                       index=[f"cell{i}" for i in range(len(labels))]),
                       var=pd.DataFrame({"gene_name": [f"S{i}" for i in range(n_genes)]},
                                        index=[f"ENSG{i}" for i in range(n_genes)]))  # fmt: skip
    split = pd.DataFrame(
        {"split": ["train"] + ["test"] * 12, "subgroup": [None] + ["unseen_single"] * 12},
        index=conditions,
    )
    truth = pd.DataFrame(x, columns=adata.var_names).groupby(labels).mean().loc[conditions]
    return adata, split, truth


def test_split_half_means_use_disjoint_halves():
    adata, _, _ = _noisy_dataset(1.0, 10)
    first, second = split_half_means(adata, ["G0+ctrl", "G1+ctrl"], np.random.default_rng(0))
    cells = adata.X.toarray()[(adata.obs["condition"] == "G0+ctrl").to_numpy()]
    np.testing.assert_allclose((first.loc["G0+ctrl"] + second.loc["G0+ctrl"]) / 2,
                               cells.mean(axis=0), rtol=1e-5)  # fmt: skip


def test_ceiling_error_matches_the_noise_it_was_simulated_with():
    sigma, cells = 0.8, 40
    adata, split, truth = _noisy_dataset(sigma, cells)
    ceiling = noise_ceiling(adata, split, None, truth, n_repeats=10)
    mse = ceiling[ceiling["metric"] == "mse"]["value"].mean()
    # Two independent half means of 20 cells: E[(a - b)^2] = sigma^2 (1/20 + 1/20).
    assert mse == pytest.approx(sigma**2 * (2 / (cells // 2)), rel=0.15)
    # Less noise, a higher ceiling.
    quiet = noise_ceiling(*_noisy_dataset(0.1, cells)[:2], None, truth, n_repeats=3)
    assert quiet[quiet["metric"] == "pearson"]["value"].mean() > ceiling[
        ceiling["metric"] == "pearson"]["value"].mean()  # fmt: skip


def test_ceiling_scores_cell_evals_de_family_on_the_other_halfs_cells():
    from perturb_assets.core.evaluation.benchmark import DE_FAMILY_METHOD

    def family(sigma: float, **kw) -> pd.Series:
        adata, split, truth = _noisy_dataset(sigma, 40)
        table = noise_ceiling(adata, split, None, truth, n_repeats=2, **kw)
        rows = table[table["de_method"] == DE_FAMILY_METHOD]
        return rows.groupby("metric")["value"].mean()

    quiet, noisy = family(0.1), family(3.0)
    assert {"overlap_at_N", "de_direction_match", "pr_auc"} <= set(quiet.index)
    # The means differ by about 1 per gene: with little noise both halves find the same
    # DE genes with the same signs; with much noise they agree less.
    assert quiet["de_direction_match"] > 0.95
    assert quiet["overlap_at_N"] > noisy["overlap_at_N"]
    assert family(0.1, de_family=False).empty


def test_de_lists_feed_the_de_metrics():
    de = pd.DataFrame({"method": "t-test", "targets": "included", "condition": "A+ctrl",
                       "rank": [1, 2, 3], "gene_id": ["g2", "g0", "g1"]})  # fmt: skip
    assert de_lists_by_metric(de, "t-test")["pearson_de_delta"] == {"A+ctrl": ["g2", "g0", "g1"]}


def test_sweep_point_is_the_same_with_threaded_trees():
    from perturb_assets.core.analyses import sweep_point

    size = {"n_cells": 1500, "n_genes": 120, "n_perturbations": 40}
    one, two = sweep_point(0.5, n_jobs=1, **size), sweep_point(0.5, n_jobs=2, **size)
    assert one == two and np.isfinite(one["random_forest_go"])
