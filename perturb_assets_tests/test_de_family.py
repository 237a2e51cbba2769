"""cell-eval's DE metric family, computed by our own code, against pdex and cell-eval 0.8.2."""

import logging

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.metrics import auc, average_precision_score, roc_curve

from perturb_assets.core.metrics import (
    DE_FAMILY_METRICS,
    DETable,
    de_family_metrics,
    pseudobulk_de_table,
    real_de_table,
)
from perturb_assets.core.metrics.de_family import _aucs

PDEX_COLUMNS = ("target_mean", "ref_mean", "log2_fold_change", "statistic", "p_value", "fdr")


def _dataset(seed: int = 0, n_cond: int = 12, n_genes: int = 250, ctrl_cells: int = 60):
    """Poisson cells (log1p, float32) of conditions with sparse effects, and predictions.

    ``P00`` has no effect (no real DE expected), ``P01`` has a single cell (nothing can be
    significant, real or predicted), and ``P02``'s prediction is the control mean."""
    rng = np.random.default_rng(seed)
    conditions = [f"P{i:02d}+ctrl" for i in range(n_cond)]
    sizes = rng.integers(5, 30, n_cond)
    sizes[1] = 1
    effects = rng.normal(0, 1, (n_cond, n_genes)) * (rng.random((n_cond, n_genes)) < 0.2)
    effects[0] = 0.0
    labels = np.concatenate([["ctrl"] * ctrl_cells, np.repeat(conditions, sizes)])
    codes = pd.Series(range(n_cond + 1), index=["ctrl", *conditions])[labels].to_numpy()
    base = rng.uniform(0, 2, n_genes)
    rates = np.expm1(np.clip(base + np.vstack([np.zeros(n_genes), effects]), 0, None))[codes]
    x = np.log1p(rng.poisson(rates)).astype(np.float32)
    genes = pd.Index([f"G{i:03d}" for i in range(n_genes)])
    truth = pd.DataFrame(x, columns=genes).groupby(labels).mean()
    noise = rng.normal(0, 0.3, (n_cond, n_genes))
    profiles = np.clip(truth.loc[conditions].to_numpy() + noise, 0, None).astype(np.float32)
    profiles[2] = truth.loc["ctrl"].to_numpy()
    profiles = pd.DataFrame(profiles, index=conditions, columns=genes)
    return x, labels, genes, conditions, pd.Series(sizes, index=conditions), profiles


def _adata(x, labels, genes, prefix: str) -> ad.AnnData:
    obs = pd.DataFrame({"target": labels}, index=[f"{prefix}{i}" for i in range(len(labels))])
    return ad.AnnData(x, obs=obs, var=pd.DataFrame(index=genes))


def _pdex_frame(adata: ad.AnnData) -> pd.DataFrame:
    from pdex import pdex

    # cell-eval's settings (_evaluator._build_pdex_kwargs)
    frame = pdex(adata, groupby="target", mode="ref", reference="ctrl", is_log1p=True,
                 epsilon=0.0, threads=1)  # fmt: skip
    return frame.to_pandas().set_index(["target", "feature"])


def _assert_same_table(ours: DETable, theirs: pd.DataFrame) -> None:
    frame = ours.to_frame().set_index(["target", "feature"])
    theirs = theirs.loc[frame.index]
    for column in PDEX_COLUMNS:
        np.testing.assert_array_equal(
            frame[column].to_numpy(), theirs[column].to_numpy(np.float64), err_msg=column
        )


@pytest.mark.parametrize("layout", ["csr", "dense"])
def test_real_de_table_is_pdex_bit_for_bit(layout):
    """Means, fold changes, U, p-values and FDRs equal pdex's exactly (sparse and dense)."""
    x, labels, genes, conditions, _, _ = _dataset(seed=1, n_cond=6, n_genes=120)
    x = sp.csr_matrix(x) if layout == "csr" else x
    ours = real_de_table(x, labels, "ctrl", genes, conditions)
    _assert_same_table(ours, _pdex_frame(_adata(x, labels, genes, "c")))
    assert np.isinf(ours.log2_fold_change).any()  # one-sided zeros kept as pdex keeps them
    assert ours.fdr.min() < 0.05 < ours.fdr.max()


def test_pseudobulk_de_table_is_pdex_on_the_repeated_profiles():
    """The closed form for a constant group equals pdex on the profile repeated n times."""
    x, labels, genes, conditions, sizes, profiles = _dataset(seed=2, n_cond=6, n_genes=120)
    control = x[labels == "ctrl"]
    ours = pseudobulk_de_table(profiles, sizes, control)
    cells = np.vstack([control, np.repeat(profiles.to_numpy(), sizes.to_numpy(), axis=0)])
    cell_labels = np.concatenate([["ctrl"] * len(control), np.repeat(conditions, sizes)])
    _assert_same_table(ours, _pdex_frame(_adata(cells, cell_labels, genes, "p")))
    # sparse control cells: the same test (ranks); only the control mean's rounding may differ,
    # as it does in pdex (scipy's sparse mean)
    from_sparse = pseudobulk_de_table(profiles, sizes, sp.csr_matrix(control))
    np.testing.assert_array_equal(from_sparse.p_value, ours.p_value)
    np.testing.assert_allclose(from_sparse.ref_mean, ours.ref_mean, rtol=1e-6)
    with pytest.raises(ValueError, match="at least one cell"):
        pseudobulk_de_table(profiles, sizes * 0, control)


def test_de_family_metrics_agree_with_cell_eval(tmp_path):
    """cell-eval 0.8.2 (its own pdex DE, profile "de") on real cells and on the predictions
    repeated per real cell with the real control cells: every metric per condition equals
    ours, or its ``_reference_compat`` twin where the definitions differ."""
    from cell_eval import MetricsEvaluator

    logging.getLogger("cell_eval").setLevel(logging.ERROR)
    x, labels, genes, conditions, sizes, profiles = _dataset()
    control = x[labels == "ctrl"]
    pred_x = np.vstack([control, np.repeat(profiles.to_numpy(), sizes.to_numpy(), axis=0)])
    pred_labels = np.concatenate([["ctrl"] * len(control), np.repeat(conditions, sizes)])
    results, _ = MetricsEvaluator(
        _adata(pred_x, pred_labels, genes, "p"), _adata(sp.csr_matrix(x), labels, genes, "c"),
        control_pert="ctrl", pert_col="target", num_threads=1, outdir=str(tmp_path),
    ).compute(profile="de", write_csv=False, break_on_error=True)  # fmt: skip
    theirs = results.to_pandas().set_index("perturbation").reindex(conditions)

    real = real_de_table(sp.csr_matrix(x), labels, "ctrl", genes, conditions)
    pred = pseudobulk_de_table(profiles, sizes, control)
    tidy = de_family_metrics(real, pred)
    assert list(tidy.columns) == ["condition", "metric", "value"]
    assert set(tidy["metric"]) == set(DE_FAMILY_METRICS)
    ours = tidy.pivot(index="condition", columns="metric", values="value").loc[conditions]
    names = {c.removesuffix("_reference_compat") for c in ours.columns}
    assert set(theirs.columns) == names
    for metric in theirs.columns:
        twin = f"{metric}_reference_compat"
        mine = ours[twin if twin in ours else metric].to_numpy(np.float64)
        np.testing.assert_allclose(
            mine, theirs[metric].to_numpy(np.float64), atol=1e-6, equal_nan=True, err_msg=metric
        )

    # where the definitions differ, the difference is the documented one
    n_real, n_pred = ours["de_nsig_counts_real"], ours["de_nsig_counts_pred"]
    assert n_real["P01+ctrl"] == 0  # a single cell: no real DE gene
    assert np.isnan(ours.loc["P01+ctrl", "overlap_at_N"])
    assert ours.loc["P01+ctrl", "overlap_at_N_reference_compat"] == 0.0
    for kind, n in (("overlap", n_real), ("precision", n_pred)):
        for k in ("N", 50, 100, 200, 500):
            same = ours[f"{kind}_at_{k}"].fillna(0.0) == ours[f"{kind}_at_{k}_reference_compat"]
            assert same.all()
            assert ours[f"{kind}_at_{k}"].isna().equals(n == 0)
    assert (n_real == 0).any()  # the compat correlation drops those conditions
    assert ours["de_spearman_sig"].iloc[0] != ours["de_spearman_sig_reference_compat"].iloc[0]
    assert ours["overlap_at_N"].dropna().between(0, 1).all() and ours["overlap_at_N"].max() > 0.3


def test_de_spearman_sig_counts_every_condition():
    """Ours correlates the significant-gene counts over all conditions; cell-eval's twin leaves
    out the conditions without a real significant gene."""
    genes = pd.Index(["a", "b", "c", "d"])
    fdr_real = np.array([[0.01, 0.01, 0.01, 0.9], [0.01, 0.01, 0.9, 0.9], [0.01, 0.9, 0.9, 0.9],
                         [0.9, 0.9, 0.9, 0.9]])  # fmt: skip
    fdr_pred = np.array([[0.01, 0.9, 0.9, 0.9], [0.01, 0.01, 0.9, 0.9], [0.01, 0.01, 0.01, 0.9],
                         [0.01, 0.01, 0.01, 0.01]])  # fmt: skip

    def table(fdr, conditions=("w", "x", "y", "z")):
        lfc = np.ones_like(fdr)
        return DETable(np.array(conditions, dtype=object), genes, lfc, np.ones(4), lfc, lfc,
                       fdr, fdr)  # fmt: skip

    # counts: real 3, 2, 1, 0; predicted 1, 2, 3, 4 -> -1 over all four and over w, x, y
    ours = de_family_metrics(table(fdr_real), table(fdr_pred)).set_index(["condition", "metric"])
    assert ours.loc[("w", "de_spearman_sig"), "value"] == pytest.approx(-1.0)
    assert ours.loc[("z", "de_spearman_sig_reference_compat"), "value"] == pytest.approx(-1.0)
    # z predicted without DE too: 3, 2, 1, 0 vs 1, 2, 3, 0 -> 1 - 6 * 8 / 60 = 0.2 over all four;
    # cell-eval drops z (no real DE) and still sees -1
    fdr_pred[3] = 0.9
    ours = de_family_metrics(table(fdr_real), table(fdr_pred)).set_index(["condition", "metric"])
    assert ours.loc[("w", "de_spearman_sig"), "value"] == pytest.approx(0.2)
    assert ours.loc[("w", "de_spearman_sig_reference_compat"), "value"] == pytest.approx(-1.0)
    for metric in ("de_direction_match", "de_sig_genes_recall", "de_spearman_lfc_sig"):
        assert np.isnan(ours.loc[("z", metric), "value"])  # no real DE gene
    assert ours.loc[("x", "de_sig_genes_recall"), "value"] == 1.0
    assert ours.loc[("w", "de_sig_genes_recall"), "value"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="share"):
        de_family_metrics(table(fdr_real), table(fdr_pred, ("z", "y", "x", "w")))


def test_auc_kernel_is_sklearn_with_ties():
    """Average precision and ROC AUC with heavily tied scores, as sklearn computes them."""
    rng = np.random.default_rng(3)
    for _ in range(20):
        labels = rng.random(200) < rng.uniform(0.05, 0.6)
        scores = np.round(rng.normal(size=200) + labels, 1)  # many ties
        ap, roc = _aucs(labels, scores)
        fpr, tpr, _ = roc_curve(labels, scores)
        assert ap == pytest.approx(average_precision_score(labels, scores), abs=1e-12)
        assert roc == pytest.approx(auc(fpr, tpr), abs=1e-12)
