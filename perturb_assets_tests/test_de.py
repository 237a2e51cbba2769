"""``top_de_genes`` gives exactly scanpy's ``rank_genes_groups`` lists, as GEARS computes them."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from perturbseq_data import make_adata  # shared test data
from scipy import sparse

from perturb_assets.core.gears import parse_condition
from perturb_assets.core.pp import rank_de_genes, select_top_n, top_de_genes

pytestmark = [
    pytest.mark.filterwarnings("ignore::pandas.errors.PerformanceWarning"),
    # scanpy's own log fold changes of genes a group never expresses (log2 of 0 / 0); the
    # reference lists are ranked by score, which those NaNs do not touch.
    pytest.mark.filterwarnings(
        r"ignore:invalid value encountered in log2:RuntimeWarning:scanpy\.tools\._rank_genes_groups"
    ),
]

FORMATS = ("csr", "csc", "dense")
METHODS = ("t-test", "wilcoxon")


def scanpy_rank(
    adata: ad.AnnData, method: str, n_genes: int | None, key: str = "names"
) -> dict[str, np.ndarray]:
    """GEARS' call: ``rank_genes_groups(reference='ctrl', rankby_abs=True, use_raw=False)``."""
    other = adata.copy()
    sc.tl.rank_genes_groups(
        other,
        groupby="condition",
        reference="ctrl",
        rankby_abs=True,
        use_raw=False,
        method=method,
        n_genes=n_genes,
    )
    rec = other.uns["rank_genes_groups"][key]
    return {g: np.asarray(rec[g]) for g in rec.dtype.names}


def target_vars(adata: ad.AnnData, condition: str) -> set[str]:
    names = adata.var["gene_name"].to_numpy()
    return {
        v for v, s in zip(adata.var_names, names, strict=True) if s in parse_condition(condition)
    }


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("seed", [0, 1])
def test_top_de_genes_identical_to_scanpy(fmt: str, method: str, seed: int) -> None:
    adata = make_adata(seed, fmt)
    for n_top in (20, adata.n_vars):  # all genes: includes the tied zero scores at the end
        expected = scanpy_rank(adata, method, n_top)
        result = top_de_genes(adata, method=method, n_top=n_top)
        assert list(result) == list(expected)  # same conditions, same (category) order
        assert "ctrl" not in result
        for group, names in expected.items():
            assert result[group] == list(names), (group, n_top)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("method", METHODS)
def test_scores_identical_to_scanpy(fmt: str, method: str) -> None:
    adata = make_adata(2, fmt)
    scores = rank_de_genes(adata, method=method)
    names = scanpy_rank(adata, method, None)
    ref_scores = scanpy_rank(adata, method, None, key="scores")  # float32 in scanpy's uns
    assert list(scores.index) == list(names)
    for group in names:
        mine = scores.loc[group, names[group]].to_numpy().astype(np.float32)
        np.testing.assert_array_equal(mine, ref_scores[group])


def test_does_not_modify_adata() -> None:
    adata = make_adata(3, "csr")
    x = adata.X.copy()
    obs = adata.obs.copy()
    for method in METHODS:
        top_de_genes(adata, method=method, exclude_targets=True)
    assert (adata.X != x).nnz == 0 and adata.X.format == "csr"
    pd.testing.assert_frame_equal(adata.obs, obs)
    assert "rank_genes_groups" not in adata.uns


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("fmt", ["csr", "dense"])
def test_exclude_targets(method: str, fmt: str) -> None:
    adata = make_adata(4, fmt)
    n_top = 20
    plain = top_de_genes(adata, method=method, n_top=n_top)
    result = top_de_genes(adata, method=method, n_top=n_top, exclude_targets=True)
    full = scanpy_rank(adata, method, None)
    combos = [g for g in result if len(parse_condition(g)) == 2]
    assert combos, "the test data must hold combinations"
    by_k: dict[int, dict[str, np.ndarray]] = {}
    for group, genes in result.items():
        targets = target_vars(adata, group)
        assert len(genes) == n_top
        assert not targets & set(genes)
        # as defined: scanpy's selection of n_top + k genes, targets dropped, first n_top kept
        k = len(targets)
        if k not in by_k:
            by_k[k] = scanpy_rank(adata, method, n_top + k)
        expected = by_k[k][group]
        assert genes == [g for g in expected if g not in targets][:n_top]
        # ... which (no ties near the top here) is the full ranking without the targets
        assert genes == [g for g in full[group] if g not in targets][:n_top]
        if not targets:  # unmeasured target, or the two-cell group of an unmeasured gene
            assert genes == plain[group]
    for group in combos:  # both genes of a combination are measured and removed
        assert len(target_vars(adata, group)) == 2
    # the knocked-down targets are DE, so excluding them changes the lists
    assert any(target_vars(adata, g) & set(plain[g]) for g in combos)


def test_singles_spelled_both_ways_drop_their_gene() -> None:
    adata = make_adata(5, "csr")
    result = top_de_genes(adata, n_top=adata.n_vars, exclude_targets=True)
    symbol_of = dict(zip(adata.var_names, adata.var["gene_name"], strict=True))
    spellings = set()
    for group, genes in result.items():
        removed = {symbol_of[v] for v in adata.var_names} - {symbol_of[g] for g in genes}
        assert removed == set(parse_condition(group)) & set(symbol_of.values())
        if len(parse_condition(group)) == 1 and group != "NOTMEASURED+ctrl":
            spellings.add(group.startswith("ctrl+"))
    assert spellings == {True, False}


def test_zero_variance_edge_cases_match_scanpy() -> None:
    """NaN scores (never-expressed gene) become 0; +-inf (constant, different means) stay."""
    x = np.zeros((8, 5), dtype=np.float32)
    x[:, 1] = [0, 0, 0, 0, 1, 1, 0, 0]  # constant 1 in group A, constant 0 in ctrl: t = +inf
    x[:, 2] = [1, 2, 1, 2, 3, 3, 0.5, 1]
    x[:, 3] = [0, 1, 0, 1, 0, 0, 2, 0]
    x[:, 4] = 0.1  # constant everywhere: variance 0 or a rounding-negative one -> 0/0 -> 0
    obs = pd.DataFrame(
        {"condition": pd.Categorical(["ctrl"] * 4 + ["A+ctrl"] * 2 + ["B+C"] * 2)},
        index=[f"c{i}" for i in range(8)],
    )
    var = pd.DataFrame(
        {"gene_name": ["A", "B", "C", "D", "E"]}, index=[f"ENSG{i}" for i in range(5)]
    )
    for fmt in FORMATS:
        mat = {"csr": sparse.csr_matrix, "csc": sparse.csc_matrix, "dense": np.asarray}[fmt](x)
        adata = ad.AnnData(mat, obs=obs, var=var)
        for method in METHODS:
            expected = scanpy_rank(adata, method, 5)
            result = top_de_genes(adata, method=method, n_top=5)
            assert {g: list(v) for g, v in expected.items()} == result
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # NaNs are silent, as in scanpy
            scores = rank_de_genes(adata, method="t-test")
        assert np.isposinf(scores.loc["A+ctrl", "ENSG1"])
        assert scores.loc["A+ctrl", "ENSG0"] == 0 and scores.loc["A+ctrl", "ENSG4"] == 0


def test_string_column_and_other_reference() -> None:
    adata = make_adata(6, "csr")
    adata.obs["plain"] = adata.obs["condition"].astype(str)
    result = top_de_genes(adata, groupby="plain", n_top=10)
    assert list(result) == sorted(result)
    assert result == top_de_genes(adata, n_top=10)
    other = top_de_genes(adata, n_top=10, reference="NOTMEASURED+ctrl")
    assert "ctrl" in other and "NOTMEASURED+ctrl" not in other
    more = top_de_genes(adata, n_top=10_000)
    assert all(len(v) == adata.n_vars for v in more.values())


def test_select_top_n_is_scanpys() -> None:
    from scanpy.tools._rank_genes_groups import _select_top_n

    rng = np.random.default_rng(0)
    scores = np.round(rng.normal(size=500), 1)  # many ties
    scores[:50] = 0.0
    for n in (1, 7, 20, 499, 500):
        np.testing.assert_array_equal(
            select_top_n(np.abs(scores), n), _select_top_n(np.abs(scores), n)
        )


def test_errors() -> None:
    adata = make_adata(7, "csr")
    with pytest.raises(ValueError, match="no column 'perturbation'"):
        top_de_genes(adata, groupby="perturbation")
    with pytest.raises(ValueError, match="reference 'control'"):
        top_de_genes(adata, reference="control")
    with pytest.raises(ValueError, match="method"):
        top_de_genes(adata, method="logreg")
    with pytest.raises(ValueError, match="n_top"):
        top_de_genes(adata, n_top=0)
    no_names = adata.copy()
    del no_names.var["gene_name"]
    with pytest.raises(ValueError, match="gene_name"):
        top_de_genes(no_names, exclude_targets=True)
    labels = adata.obs["condition"].astype(str).to_numpy()
    labels[np.flatnonzero(labels == "ZZ+ctrl")[0]] = "ctrl"
    single = adata.copy()
    single.obs["condition"] = pd.Categorical(labels)
    with pytest.raises(ValueError, match="only contain one sample"):
        top_de_genes(single)


@pytest.mark.parametrize("method", METHODS)
def test_negative_values_and_explicit_zeros(method: str) -> None:
    """Scaled data (negative values) and explicitly stored zeros rank like scanpy."""
    adata = make_adata(8, "dense", n_cells=700, n_genes=60)
    x = adata.X.copy()
    x[:, ::3] -= np.float32(0.75)  # negative values; ties at 0 remain in the other genes
    csr = sparse.csr_matrix(x)
    csr.data[::7] = 0.0  # explicit zeros (scanpy eliminates them in place first)
    for mat in (x, csr, sparse.csc_matrix(csr)):
        other = ad.AnnData(mat, obs=adata.obs, var=adata.var)
        expected = scanpy_rank(other, method, other.n_vars)
        result = top_de_genes(other, method=method, n_top=other.n_vars)
        assert {g: list(v) for g, v in expected.items()} == result


@pytest.mark.parametrize("fmt", FORMATS)
def test_wilcoxon_gene_blocks(fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """CSR/dense data are transposed in gene blocks; many small blocks give the same lists."""
    import perturb_assets.core.pp.de_statistics as de_statistics

    adata = make_adata(9, fmt, n_cells=800, n_genes=90)
    expected = top_de_genes(adata, method="wilcoxon", n_top=adata.n_vars)
    monkeypatch.setattr(de_statistics, "_WILCOXON_BLOCK", 997)  # ~ a few genes per block
    assert top_de_genes(adata, method="wilcoxon", n_top=adata.n_vars) == expected
    ref = scanpy_rank(adata, "wilcoxon", adata.n_vars)
    assert {g: list(v) for g, v in ref.items()} == expected


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_heavy_ties(dtype: type) -> None:
    """Values on a coarse grid (many exact ties, average ranks in scanpy) and float64 data."""
    adata = make_adata(10, "dense", n_cells=700, n_genes=60)
    x = (np.round(adata.X * 2) / 2).astype(dtype)
    for mat in (x, sparse.csr_matrix(x), sparse.csc_matrix(x)):
        other = ad.AnnData(mat, obs=adata.obs, var=adata.var)
        for method in METHODS:
            expected = scanpy_rank(other, method, other.n_vars)
            result = top_de_genes(other, method=method, n_top=other.n_vars)
            assert {g: list(v) for g, v in expected.items()} == result


def test_unsorted_csr_indices() -> None:
    """CSR rows with unsorted column indices give the same lists; X is left as it was."""
    adata = make_adata(11, "csr", n_cells=600, n_genes=50)
    expected = {m: top_de_genes(adata, method=m, n_top=adata.n_vars) for m in METHODS}
    x = adata.X.copy()
    rng = np.random.default_rng(1)
    for r in range(x.shape[0]):
        s, e = x.indptr[r], x.indptr[r + 1]
        perm = rng.permutation(e - s)
        x.indices[s:e] = x.indices[s:e][perm]
        x.data[s:e] = x.data[s:e][perm]
    x.has_sorted_indices = False
    indices = x.indices.copy()
    other = ad.AnnData(x, obs=adata.obs, var=adata.var)
    for method in METHODS:
        assert top_de_genes(other, method=method, n_top=other.n_vars) == expected[method]
    np.testing.assert_array_equal(other.X.indices, indices)
