"""Tests of perturb_assets.core.metrics (hand-computed values, scipy equality, reference quirks)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr

from perturb_assets.core.metrics import (
    ERROR_METRICS,
    LOWER_IS_BETTER,
    METRICS,
    bootstrap_ci,
    evaluate_predictions,
    higher_is_better,
    holm_adjust,
    holm_interval,
    holm_levels,
    paired_comparison,
    perturbation_metrics,
    rowwise_pearson,
    subgroup_summary,
    summarise_metrics,
    wilcoxon_p,
    wilcoxon_p_batch,
)
from perturb_assets.core.pp import de_lists_without_targets, reference_compat_de_lists

GENES = ["g1", "g2", "g3", "g4"]


@pytest.fixture
def hand() -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, dict[str, list[str]]]:
    """Two conditions x four genes; every expected value below is worked out by hand."""
    ctrl = pd.Series([1.0, 2.0, 0.0, 1.0], index=GENES)
    truth = pd.DataFrame([[1, 2, 3, 1], [0, 4, 0, 2]], index=["A", "B"], columns=GENES, dtype=float)
    pred = pd.DataFrame([[2, 2, 5, 3], [1, 3, 1, 1]], index=["A", "B"], columns=GENES, dtype=float)
    de = {"A": ["g3", "g1", "g2"], "B": ["g2", "g4", "g1"]}
    return pred, truth, ctrl, de


def test_hand_computed_example(hand):
    pred, truth, ctrl, de = hand
    out = perturbation_metrics(pred, truth, ctrl, de)
    assert list(out.columns) == ["pearson", "pearson_delta", "pearson_de_delta"]
    assert list(out.index) == ["A", "B"] and out.index.name == "condition"
    # A, pearson: truth [1,2,3,1] (mean 1.75) -> [-.75,.25,1.25,-.75], |.|^2 = 2.75;
    #   pred [2,2,5,3] (mean 3) -> [-1,-1,2,0], |.|^2 = 6; dot = .75-.25+2.5+0 = 3.
    assert out.loc["A", "pearson"] == pytest.approx(3 / math.sqrt(2.75 * 6), abs=1e-14)
    # A, delta: truth-ctrl [0,0,3,0] (mean .75) -> [-.75,-.75,2.25,-.75], |.|^2 = 6.75;
    #   pred-ctrl [1,0,5,2] (mean 2) -> [-1,-2,3,0], |.|^2 = 14; dot = .75+1.5+6.75 = 9.
    assert out.loc["A", "pearson_delta"] == pytest.approx(9 / math.sqrt(6.75 * 14), abs=1e-14)
    # A, DE {g1,g2,g3}: truth-ctrl [0,0,3] -> [-1,-1,2] (6); pred-ctrl [1,0,5] -> [-1,-2,3]
    #   (14); dot = 1+2+6 = 9.
    assert out.loc["A", "pearson_de_delta"] == pytest.approx(9 / math.sqrt(84), abs=1e-14)
    # B, pearson: truth [0,4,0,2] (mean 1.5) -> [-1.5,2.5,-1.5,.5] (11);
    #   pred [1,3,1,1] (mean 1.5) -> [-.5,1.5,-.5,-.5] (3); dot = .75+3.75+.75-.25 = 5.
    assert out.loc["B", "pearson"] == pytest.approx(5 / math.sqrt(33), abs=1e-14)
    # B, delta: truth-ctrl [-1,2,0,1] (mean .5) -> [-1.5,1.5,-.5,.5] (5);
    #   pred-ctrl [0,1,1,0] (mean .5) -> [-.5,.5,.5,-.5] (1); dot = .75+.75-.25-.25 = 1.
    assert out.loc["B", "pearson_delta"] == pytest.approx(1 / math.sqrt(5), abs=1e-14)
    # B, DE {g1,g2,g4}: truth-ctrl [-1,2,1] (mean 2/3) -> [-5/3,4/3,1/3] (42/9);
    #   pred-ctrl [0,1,0] (mean 1/3) -> [-1/3,2/3,-1/3] (6/9); dot = 12/9 -> r = 2/sqrt(7).
    assert out.loc["B", "pearson_de_delta"] == pytest.approx(2 / math.sqrt(7), abs=1e-14)


def test_without_de_genes_and_alignment(hand):
    pred, truth, ctrl, _ = hand
    base = perturbation_metrics(pred, truth, ctrl)
    assert list(base.columns) == ["pearson", "pearson_delta"]
    # pred with shuffled rows/columns plus an extra row and column gives the same values
    shuffled = pred.loc[["B", "A"], ["g4", "g2", "g1", "g3"]].copy()
    shuffled["extra"] = 7.0
    shuffled.loc["Z"] = 1.0
    pd.testing.assert_frame_equal(perturbation_metrics(shuffled, truth, ctrl[::-1]), base)
    # a plain array control mean in truth's column order works too
    pd.testing.assert_frame_equal(perturbation_metrics(pred, truth, ctrl.to_numpy()), base)


def test_missing_labels_raise(hand):
    pred, truth, ctrl, de = hand
    with pytest.raises(ValueError, match=r"pred lacks 1 condition\(s\) of truth: \['B'\]"):
        perturbation_metrics(pred.loc[["A"]], truth, ctrl)
    with pytest.raises(ValueError, match=r"pred lacks 1 gene\(s\) of truth: \['g4'\]"):
        perturbation_metrics(pred[["g1", "g2", "g3"]], truth, ctrl)
    with pytest.raises(ValueError, match="ctrl_mean lacks"):
        perturbation_metrics(pred, truth, ctrl.iloc[:3])
    with pytest.raises(ValueError, match="no entry for 1 condition"):
        perturbation_metrics(pred, truth, ctrl, {"A": de["A"]})
    with pytest.raises(TypeError):
        perturbation_metrics(pred.to_numpy(), truth, ctrl)


def test_de_lookup_like_reference(hand):
    """Names that are not columns are ignored, duplicates count once, only the first 20 count."""
    pred, truth, ctrl, de = hand
    expected = perturbation_metrics(pred, truth, ctrl, de)["pearson_de_delta"]
    noisy = {"A": ["g3", "gX", "g1", "g3", "g2"], "B": ["g2", "g4", "g1", "g1"]}
    got = perturbation_metrics(pred, truth, ctrl, noisy)["pearson_de_delta"]
    pd.testing.assert_series_equal(got, expected)
    # g4 at rank 21 of A is not used
    long_a = ["g3", "g1", "g2"] + [f"x{i}" for i in range(17)] + ["g4"]
    got = perturbation_metrics(pred, truth, ctrl, {"A": long_a, "B": de["B"]})
    assert got.loc["A", "pearson_de_delta"] == pytest.approx(expected["A"], abs=1e-15)
    # fewer than two usable DE genes: undefined
    got = perturbation_metrics(pred, truth, ctrl, {"A": ["g1", "gX"], "B": []})
    assert got["pearson_de_delta"].isna().all()


def _scipy_loop(pred, truth, ctrl, de):
    """The reference's per-condition loop (positions of DE genes in column order)."""
    rows = []
    cols = truth.columns
    c = ctrl.reindex(cols).to_numpy()
    for cond in truth.index:
        p = pred.loc[cond, cols].to_numpy()
        t = truth.loc[cond].to_numpy()
        idx = np.flatnonzero(cols.isin(list(de[cond])[:20]))
        rows.append(
            [
                pearsonr(p, t)[0],
                pearsonr(p - c, t - c)[0],
                pearsonr((p - c)[idx], (t - c)[idx])[0],
            ]
        )
    return np.array(rows)


def test_equals_scipy_pearsonr_loop_on_random_data():
    rng = np.random.default_rng(7)
    n, g = 60, 400
    genes = [f"ENSG{i:05d}" for i in range(g)]
    conds = [f"P{i}+ctrl" for i in range(n)]
    ctrl = pd.Series(rng.gamma(1.0, 1.0, g), index=genes)
    truth = pd.DataFrame(
        ctrl.to_numpy() + rng.normal(0, 0.3, (n, g)), index=conds, columns=genes
    ).astype(np.float32)  # float32 pseudobulk, as from AnnData
    pred = pd.DataFrame(
        truth.to_numpy(np.float64) * 0.6 + rng.normal(0, 0.2, (n, g)), index=conds, columns=genes
    )
    de = {
        c: list(rng.choice(genes, 22, replace=False)) + (["missing"] if i % 3 == 0 else [])
        for i, c in enumerate(conds)
    }
    out = perturbation_metrics(pred, truth.astype(np.float64), ctrl, de)
    np.testing.assert_allclose(
        out.to_numpy(), _scipy_loop(pred, truth.astype(np.float64), ctrl, de), rtol=0, atol=1e-12
    )
    # rowwise_pearson alone, with and without a mask
    x, y = rng.normal(size=(30, 50)), rng.normal(size=(30, 50))
    mask = rng.random((30, 50)) < 0.5
    want = [pearsonr(x[i], y[i])[0] for i in range(30)]
    np.testing.assert_allclose(rowwise_pearson(x, y), want, rtol=0, atol=1e-12)
    want = [pearsonr(x[i, mask[i]], y[i, mask[i]])[0] for i in range(30)]
    np.testing.assert_allclose(rowwise_pearson(x, y, mask), want, rtol=0, atol=1e-12)


def test_all_zero_truth_skipped(hand):
    pred, truth, ctrl, de = hand
    truth = truth.copy()
    truth.loc["Z"] = 0.0
    pred = pred.copy()
    pred.loc["Z"] = [1.0, 2.0, 3.0, 4.0]
    de = dict(de, Z=["g1", "g2", "g3"])
    out = perturbation_metrics(pred, truth, ctrl, de)
    assert list(out.index) == ["A", "B"]
    long = evaluate_predictions(pred, truth, ctrl, {"pearson_de_delta": de})
    assert "Z" not in set(long["condition"])
    # truth zero on the DE genes only: the DE metric is skipped (NaN), the others are kept
    truth.loc["Z"] = [0.0, 0.0, 0.0, 5.0]
    out = perturbation_metrics(pred, truth, ctrl, de)
    assert np.isfinite(out.loc["Z", ["pearson", "pearson_delta"]]).all()
    assert np.isnan(out.loc["Z", "pearson_de_delta"])


def test_constant_prediction_is_nan_like_scipy(hand):
    pred, truth, ctrl, de = hand
    pred = pred.copy()
    pred.loc["A"] = ctrl  # "no change": pred - ctrl is exactly constant (0)
    pred.loc["B"] = 0.1  # constant prediction (0.1 is not exact in binary; still constant)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning, no crash
        out = perturbation_metrics(pred, truth, ctrl, de)
    assert np.isfinite(out.loc["A", "pearson"])
    assert np.isnan(out.loc["A", "pearson_delta"]) and np.isnan(out.loc["A", "pearson_de_delta"])
    assert np.isnan(out.loc["B", "pearson"])
    # scipy agrees on every value (NaN where it warns about constant input)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = _scipy_loop(pred, truth, ctrl, de)
    np.testing.assert_allclose(out.to_numpy(), want, rtol=0, atol=1e-12, equal_nan=True)
    # a constant truth row (not zero) is undefined for pearson, but not skipped
    truth = truth.copy()
    truth.loc["B"] = 2.0
    out = perturbation_metrics(pred, truth, ctrl)
    assert "B" in out.index and np.isnan(out.loc["B", "pearson"])
    # summaries leave undefined values out and count what they used
    summary = summarise_metrics(out, n_boot=50)
    assert summary.set_index("metric").loc["pearson", "n_conditions"] == 1


@pytest.fixture
def combo_case():
    """Vars v0..v23 with symbols; targets A (vA) and B (vB) rank high in every list."""
    names = ["vA", "vB"] + [f"v{i}" for i in range(1, 23)]
    symbols = pd.Series(["A", "B"] + [f"S{i}" for i in range(1, 23)], index=names)
    others = [f"v{i}" for i in range(1, 23)]
    ranked = {
        "A+B": ["vA", "v1", "vB"] + others[1:],  # both targets in the top 20
        "ctrl+A": ["v1", "vA"] + others[1:],
        "B+ctrl": others[:5] + ["vB"] + others[5:],
    }
    return ranked, symbols, others


def test_target_removal_combo(combo_case):
    ranked, symbols, others = combo_case
    correct = de_lists_without_targets(ranked, symbols)
    compat_norman = reference_compat_de_lists(ranked, symbols, "norman")
    compat_other = reference_compat_de_lists(ranked, symbols, "replogle_k562_essential")
    # correct rule: both targets of the combination are removed, the list refilled to 20
    assert correct["A+B"] == others[:20]
    # reference on Norman: the lookup of "A+B" finds no gene, so NOTHING is removed
    assert compat_norman["A+B"] == ["vA", "v1", "vB"] + others[1:18]
    # singles lose their target in both (refilled from rank 21)
    for lists in (correct, compat_norman, compat_other):
        assert lists["ctrl+A"] == others[:20]
        assert lists["B+ctrl"] == others[:20]
    # the non-Norman branch of the reference splits combinations correctly
    assert compat_other["A+B"] == correct["A+B"]
    assert all(len(v) == 20 for v in compat_norman.values())


def test_reference_compat_details():
    # a symbol shared by two vars: the reference's dict(zip(...)) keeps only the last var
    symbols = pd.Series(["A", "A", "C", "D"], index=["v1", "v2", "v3", "v4"])
    ranked = {"A+ctrl": ["v1", "v2", "v3", "v4"], "X+ctrl": ["v3", "v4"]}
    compat = reference_compat_de_lists(ranked, symbols, "norman", n_top=3)
    assert compat["A+ctrl"] == ["v1", "v3", "v4"]
    assert compat["X+ctrl"] == ["v3", "v4"]  # an unmeasured target removes nothing
    assert de_lists_without_targets(ranked, symbols, n_top=3)["A+ctrl"] == ["v3", "v4"]
    with pytest.raises(ValueError, match="two genes"):
        reference_compat_de_lists({"A+C+D": ["v1"]}, symbols, "adamson")


def test_target_removal_changes_the_metric(combo_case):
    """Targets kept (reference on Norman) vs removed: different values for the combination."""
    ranked, symbols, others = combo_case
    genes = list(symbols.index)
    rng = np.random.default_rng(3)
    ctrl = pd.Series(1.0, index=genes)
    delta = pd.Series(rng.normal(0, 0.1, len(genes)), index=genes)
    delta[["vA", "vB"]] = [4.0, 3.0]  # CRISPRa targets: strongly up
    truth = pd.DataFrame([ctrl + delta] * 3, index=list(ranked), columns=genes)
    noise = pd.Series(rng.normal(0, 0.1, len(genes)), index=genes)
    pred_row = ctrl + noise  # knows nothing but the targets
    pred_row[["vA", "vB"]] = ctrl[["vA", "vB"]] + delta[["vA", "vB"]]
    pred = pd.DataFrame([pred_row] * 3, index=list(ranked), columns=genes)
    de_lists = {
        "pearson_de_delta": {k: v[:20] for k, v in ranked.items()},
        "pearson_delta_de_no_target": de_lists_without_targets(ranked, symbols),
        "pearson_delta_de_no_target_reference_compat": reference_compat_de_lists(
            ranked, symbols, "norman"
        ),
    }
    long = evaluate_predictions(pred, truth, ctrl, de_lists)
    wide = long.pivot(index="condition", columns="metric", values="value")
    combo = wide.loc["A+B"]
    assert combo["pearson_delta_de_no_target_reference_compat"] == pytest.approx(
        combo["pearson_de_delta"], abs=1e-15
    )
    assert combo["pearson_de_delta"] > 0.99  # the trivially predicted targets dominate
    assert abs(combo["pearson_delta_de_no_target"]) < 0.8
    single = wide.loc["ctrl+A"]
    assert single["pearson_delta_de_no_target_reference_compat"] == pytest.approx(
        single["pearson_delta_de_no_target"], abs=1e-15
    )


def test_exclude_targets_of_top_de_genes_matches():
    """top_de_genes(exclude_targets=True) removes both genes of a combination, as the helper."""
    anndata = pytest.importorskip("anndata")
    from perturb_assets.core.pp import top_de_genes

    rng = np.random.default_rng(0)
    n_genes = 12
    symbols = ["A", "B"] + [f"S{i}" for i in range(n_genes - 2)]
    var = pd.DataFrame({"gene_name": symbols}, index=[f"ENSG{i}" for i in range(n_genes)])
    shift = np.linspace(0.0, 1.0, n_genes)
    shift[:2] = 5.0  # both targets are the most DE genes
    ctrl_x = rng.normal(2.0, 0.5, (30, n_genes))
    combo_x = rng.normal(2.0, 0.5, (30, n_genes)) + shift
    obs = pd.DataFrame({"condition": ["ctrl"] * 30 + ["A+B"] * 30})
    obs.index = obs.index.astype(str)
    adata = anndata.AnnData(np.vstack([ctrl_x, combo_x]).astype(np.float32), obs=obs, var=var)
    plain = top_de_genes(adata, n_top=5)["A+B"]
    assert {"ENSG0", "ENSG1"} <= set(plain)
    excluded = top_de_genes(adata, n_top=5, exclude_targets=True)["A+B"]
    assert "ENSG0" not in excluded and "ENSG1" not in excluded and len(excluded) == 5
    helper = de_lists_without_targets(top_de_genes(adata, n_top=7), var["gene_name"], n_top=5)
    assert helper["A+B"] == excluded
    compat = reference_compat_de_lists(top_de_genes(adata, n_top=7), var["gene_name"], "norman", 5)
    assert compat["A+B"] == plain


def test_evaluate_predictions_tidy(hand):
    pred, truth, ctrl, de = hand
    lists = {m: de for m in METRICS[2:]}
    long = evaluate_predictions(pred, truth, ctrl, lists, pd.Series({"A": "combo_seen1"}))
    assert list(long.columns) == ["condition", "metric", "value", "subgroup"]
    assert list(long["metric"].unique()) == list(METRICS)
    assert len(long) == 2 * len(METRICS)
    assert long.loc[long["condition"] == "A", "subgroup"].eq("combo_seen1").all()
    assert long.loc[long["condition"] == "B", "subgroup"].isna().all()
    wide = perturbation_metrics(pred, truth, ctrl, de)
    got = long[long["metric"] == "pearson_delta"].set_index("condition")["value"]
    np.testing.assert_array_equal(got.to_numpy(), wide["pearson_delta"].to_numpy())
    with pytest.raises(ValueError, match="collides"):
        evaluate_predictions(pred, truth, ctrl, {"pearson": de})


def test_bootstrap_ci():
    values = np.random.default_rng(1).normal(0.5, 0.1, 200)
    mean, low, high = bootstrap_ci(values, n_boot=500, seed=4)
    assert mean == pytest.approx(values.mean())
    assert low < mean < high and high - low < 0.1
    assert bootstrap_ci(values, n_boot=500, seed=4) == (mean, low, high)
    assert bootstrap_ci(values, n_boot=500, seed=5) != (mean, low, high)
    assert bootstrap_ci(np.r_[values, np.nan], n_boot=500, seed=4) == (mean, low, high)
    assert all(np.isnan(bootstrap_ci([np.nan])))
    assert bootstrap_ci([0.3]) == (0.3, 0.3, 0.3)
    with pytest.raises(ValueError):
        bootstrap_ci(values, n_boot=0)


def test_paired_comparison_hand_example():
    model = pd.Series({"a": 0.5, "b": 0.7, "c": 0.6, "d": np.nan, "e": 0.9})
    baseline = pd.Series({"a": 0.4, "b": 0.7, "c": 0.3, "d": 0.1, "f": 0.2})
    # common conditions a, b, c, d; d dropped (NaN) -> differences .1, 0, .3
    res = paired_comparison(model, baseline, n_boot=400, seed=0)
    assert res["n"] == 3
    assert res["mean_diff"] == pytest.approx(0.4 / 3)
    assert res["win_rate"] == pytest.approx(2.5 / 3)  # a and c win, b ties (half)
    assert 0.0 <= res["ci_low"] <= res["mean_diff"] <= res["ci_high"] <= 0.3 + 1e-12
    assert paired_comparison(model, baseline, n_boot=400, seed=0) == res
    empty = paired_comparison(model[["e"]], baseline[["f"]])
    assert empty["n"] == 0 and np.isnan(empty["mean_diff"])


def test_paired_p_value_is_scipys_wilcoxon_and_resamples_give_the_ci():
    from scipy.stats import wilcoxon

    rng = np.random.default_rng(3)
    index = [f"c{i}" for i in range(30)]
    base = pd.Series(rng.normal(0.5, 0.1, 30), index=index)
    model = base + rng.normal(0.03, 0.05, 30)
    res = paired_comparison(model, base, n_boot=500, seed=2, return_resamples=True)
    assert res["p_value"] == pytest.approx(wilcoxon((model - base).to_numpy()).pvalue)
    assert res["resamples"].shape == (500,)
    # The 95% level of the same resamples is the row's own interval; a higher level is wider.
    assert holm_interval(res["resamples"], 0.95) == pytest.approx((res["ci_low"], res["ci_high"]))
    low, high = holm_interval(res["resamples"], 0.999)
    assert low < res["ci_low"] and high > res["ci_high"]
    assert all(np.isnan(holm_interval(np.empty(0), 0.95)))
    # No difference at all: nothing to reject; no pair: NaN.
    assert wilcoxon_p(np.zeros(5)) == 1.0 and np.isnan(wilcoxon_p(np.array([np.nan])))
    assert paired_comparison(base, base)["p_value"] == 1.0


def test_wilcoxon_p_equals_scipy_with_ties_and_zeros():
    # Small samples with ties or zeros take our enumeration of the sign flips; scipy runs a
    # permutation test there. Larger or tie-free samples go to scipy itself. Same p-values.
    from scipy.stats import wilcoxon

    rng = np.random.default_rng(11)
    n_enumerated = 0
    for n in [2, 3, 5, 8, 13, 14, 20]:
        for _ in range(12):
            d = rng.integers(-3, 4, size=n) * 0.25  # many ties and zeros
            if not np.any(d != 0):
                continue
            n_enumerated += n <= 13
            assert wilcoxon_p(d) == pytest.approx(wilcoxon(d).pvalue, rel=1e-12, abs=0)
    assert n_enumerated > 50
    tied = np.array([0.5, 0.5, -0.25, 0.0, 1.0, 0.5])
    assert wilcoxon_p(tied) == pytest.approx(wilcoxon(tied).pvalue, rel=1e-12, abs=0)


def _untied(d: np.ndarray) -> bool:
    """No zeros and no ties: scipy's exact test up to 50 values."""
    return bool(np.all(d)) and np.unique(np.abs(d)).size == d.size


def test_wilcoxon_p_batch_is_each_samples_wilcoxon_p_bitwise():
    # One scipy call per (size, method) must give every sample the value of its own call:
    # scipy's "auto" (exact, asymptotic) and our sign-flip enumeration, with ties, zeros,
    # NaNs, sizes on both sides of 13 and 50, all-zero and empty samples, in mixed order.
    from scipy.stats import wilcoxon

    rng = np.random.default_rng(4)
    samples = [np.zeros(4), np.array([np.nan]), np.empty(0)]
    for n in [*range(1, 56), 80, 120]:
        samples += [rng.normal(0.1, 1, n), rng.integers(-3, 4, n) * 0.25,
                    np.where(rng.random(n) < 0.2, np.nan, rng.normal(0, 1, n))]  # fmt: skip
    order = rng.permutation(len(samples))
    samples = [samples[i] for i in order]
    batch = wilcoxon_p_batch(samples)
    expected = np.array([wilcoxon_p(d) for d in samples])
    np.testing.assert_array_equal(batch, expected)
    finite = [(i, d[~np.isnan(d)]) for i, d in enumerate(samples)]
    scipy_scored = [(i, d) for i, d in finite if np.any(d) and (d.size > 13 or _untied(d))]
    assert len(scipy_scored) > 100
    for i, d in scipy_scored:  # scipy's own call, one sample at a time: bitwise
        assert batch[i] == wilcoxon(d, zero_method="wilcox").pvalue, (i, d)


def test_holm_hand_example_and_statsmodels():
    # Sorted: .005 (x4 = .02), .01 (x3 = .03), .03 (x2 = .06), .04 (x1 = .04 -> running max .06).
    p = np.array([0.01, 0.04, 0.03, 0.005])
    assert holm_adjust(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_levels(p, alpha=0.05) == pytest.approx(
        [1 - 0.05 / 3, 1 - 0.05 / 1, 1 - 0.05 / 2, 1 - 0.05 / 4]
    )
    with_nan = holm_adjust(np.r_[p, np.nan])  # NaN is not a hypothesis: m stays 4
    assert np.isnan(with_nan[-1]) and with_nan[:4] == pytest.approx(holm_adjust(p))
    assert np.isnan(holm_levels([np.nan, 0.2])[0]) and holm_levels([np.nan, 0.2])[1] == 0.95
    with pytest.raises(ValueError):
        holm_adjust([1.2])
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    rng = np.random.default_rng(0)
    for size in (1, 7, 200):
        raw = np.concatenate([rng.uniform(0, 1, size), rng.uniform(0, 1e-3, size // 3)])
        reject, expected, _, _ = multitest.multipletests(raw, alpha=0.05, method="holm")
        assert holm_adjust(raw) == pytest.approx(expected, abs=1e-12)
        assert np.array_equal(holm_adjust(raw) <= 0.05, reject)


def test_metric_direction():
    assert LOWER_IS_BETTER == set(ERROR_METRICS)
    assert not higher_is_better("mse") and not higher_is_better("mae_delta")
    assert higher_is_better("pearson_delta") and higher_is_better("discrimination_l1")


def test_summaries_and_subgroups():
    per_condition = pd.DataFrame(
        {"pearson_delta": [0.2, 0.4, 0.9, np.nan, 0.5], "pearson": [0.9, 0.9, 0.8, 0.7, 1.0]},
        index=pd.Index(["x+y", "x+z", "q+ctrl", "r+ctrl", "u+v"], name="condition"),
    )
    subgroups = pd.Series(
        {
            "x+y": "combo_seen1",
            "x+z": "combo_seen1",
            "q+ctrl": "unseen_single",
            "r+ctrl": "unseen_single",
            "u+v": "combo_seen0",
        }
    )
    out = subgroup_summary(per_condition, subgroups, n_boot=200)
    assert list(out.columns) == ["subgroup", "metric", "value", "ci_low", "ci_high", "n_conditions"]
    assert list(out["subgroup"].unique()) == ["unseen_single", "combo_seen0", "combo_seen1"]
    got = out.set_index(["subgroup", "metric"])
    assert got.loc[("combo_seen1", "pearson_delta"), "value"] == pytest.approx(0.3)
    assert got.loc[("combo_seen1", "pearson"), "value"] == pytest.approx(0.9)
    assert got.loc[("unseen_single", "pearson_delta"), "value"] == pytest.approx(0.9)
    assert got.loc[("unseen_single", "pearson_delta"), "n_conditions"] == 1
    assert got.loc[("unseen_single", "pearson"), "value"] == pytest.approx(0.75)
    assert got.loc[("combo_seen0", "pearson"), "value"] == pytest.approx(1.0)
    # tidy input gives the same summary
    tidy = per_condition.reset_index().melt(id_vars="condition", var_name="metric")
    pd.testing.assert_frame_equal(subgroup_summary(tidy, subgroups, n_boot=200), out)
    summary = summarise_metrics(per_condition, n_boot=200).set_index("metric")
    assert summary.loc["pearson_delta", "value"] == pytest.approx(0.5)
    assert summary.loc["pearson_delta", "n_conditions"] == 4
    row = summary.loc["pearson"]
    assert row["ci_low"] <= row["value"] <= row["ci_high"]


def test_parallel_kernel_matches_serial(hand, monkeypatch):
    """Large tables use the multi-threaded kernel; force it on a small one and compare."""
    import perturb_assets.core.metrics.pearson as pearson_module

    pred, truth, ctrl, de = hand
    rng = np.random.default_rng(11)
    extra = [f"C{i}" for i in range(40)]
    truth = pd.concat([truth, pd.DataFrame(rng.random((40, 4)), index=extra, columns=GENES)])
    pred = pd.concat([pred, pd.DataFrame(rng.random((40, 4)), index=extra, columns=GENES)])
    truth.loc["C0"] = 0.0  # skipped
    pred.loc["C1"] = ctrl  # pearson_delta undefined
    serial = perturbation_metrics(pred, truth, ctrl)
    monkeypatch.setattr(pearson_module, "_PARALLEL_MIN_ENTRIES", 0)
    parallel = perturbation_metrics(pred, truth, ctrl)
    assert "C0" not in parallel.index and np.isnan(parallel.loc["C1", "pearson_delta"])
    pd.testing.assert_frame_equal(parallel, serial, check_exact=False, rtol=0, atol=1e-14)
