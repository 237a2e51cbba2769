"""Pseudobulk means equal pandas' groupby mean, without densifying sparse ``X``."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from perturbseq_data import make_adata  # shared test data
from scipy import sparse

from perturb_assets.core.pp import group_codes, group_indicator, group_sizes, group_sums, pseudobulk

FORMATS = ("csr", "csc", "dense")


def reference_means(adata: ad.AnnData, groupby: str = "condition") -> pd.DataFrame:
    return adata.to_df().groupby(adata.obs[groupby], observed=True).mean()


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pseudobulk_equals_pandas_groupby_mean(fmt: str, seed: int) -> None:
    adata = make_adata(seed, fmt)
    result = pseudobulk(adata)
    expected = reference_means(adata)
    assert result.dtypes.eq(np.float64).all()
    assert list(result.index) == [str(i) for i in expected.index]
    assert list(result.columns) == list(adata.var_names)
    np.testing.assert_allclose(result.to_numpy(), expected.to_numpy(), rtol=1e-6, atol=1e-7)
    # two-cell group and never-expressed genes are handled
    assert "ZZ+ctrl" in result.index
    assert (result.iloc[:, -5:].to_numpy() == 0).all()


@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_pseudobulk_does_not_densify_or_modify_sparse_x(
    fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    adata = make_adata(3, fmt)
    x = adata.X
    before = (x.data.copy(), x.indices.copy(), x.indptr.copy())
    expected = reference_means(adata)

    def refuse(*args, **kwargs):
        raise AssertionError("X was densified")

    for cls in (sparse.csr_matrix, sparse.csc_matrix):
        monkeypatch.setattr(cls, "toarray", refuse)
        monkeypatch.setattr(cls, "todense", refuse)
        monkeypatch.setattr(cls, "__array__", refuse, raising=False)
    monkeypatch.setattr(ad.AnnData, "to_df", refuse)
    result = pseudobulk(adata)
    monkeypatch.undo()

    assert adata.X is x and sparse.issparse(adata.X) and adata.X.format == fmt
    for got, want in zip((x.data, x.indices, x.indptr), before, strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(result.to_numpy(), expected.to_numpy(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("fmt", FORMATS)
def test_group_sums_equal_indicator_product(fmt: str) -> None:
    adata = make_adata(4, fmt)
    codes, labels = group_codes(adata)
    sums, squares = group_sums(adata.X, codes, len(labels), squares=True)
    g = group_indicator(codes, len(labels))
    x64 = sparse.csr_matrix(adata.X, dtype=np.float64)
    np.testing.assert_allclose(sums, (g @ x64).toarray(), rtol=1e-12, atol=0)
    # squares are taken the way scanpy takes them: float32 for CSR/dense, float64 for CSC
    x32 = sparse.csr_matrix(adata.X)
    sq = x64.multiply(x64) if fmt == "csc" else x32.multiply(x32).astype(np.float64)
    np.testing.assert_allclose(squares, (g @ sq).toarray(), rtol=1e-12, atol=0)
    assert group_sums(adata.X, codes, len(labels))[1] is None


def test_unsorted_csr_indices_and_coo() -> None:
    adata = make_adata(5, "csr")
    expected = reference_means(adata).to_numpy()
    x = adata.X.copy()
    rng = np.random.default_rng(0)
    for r in range(x.shape[0]):  # shuffle the column order inside every row
        s, e = x.indptr[r], x.indptr[r + 1]
        perm = rng.permutation(e - s)
        x.indices[s:e] = x.indices[s:e][perm]
        x.data[s:e] = x.data[s:e][perm]
    x.has_sorted_indices = False
    for mat in (x, sparse.csr_array(x)):
        other = ad.AnnData(mat, obs=adata.obs, var=adata.var)
        np.testing.assert_allclose(pseudobulk(other).to_numpy(), expected, rtol=1e-6, atol=1e-7)
    codes, labels = group_codes(adata)
    sums, _ = group_sums(x.tocoo(), codes, len(labels))  # other sparse formats: via CSR
    counts = np.bincount(codes, minlength=len(labels))[:, None]
    np.testing.assert_allclose(sums / counts, expected, rtol=1e-6, atol=1e-7)


def test_group_order_category_order_unused_and_missing() -> None:
    adata = make_adata(6, "csr")
    cats = ["ctrl", *sorted(set(adata.obs["condition"]) - {"ctrl"}, reverse=True), "UNUSED"]
    adata.obs["condition"] = adata.obs["condition"].cat.set_categories(cats)
    result = pseudobulk(adata)
    assert list(result.index) == cats[:-1]  # category order, unused category dropped
    np.testing.assert_allclose(
        result.to_numpy(), reference_means(adata).to_numpy(), rtol=1e-6, atol=1e-7
    )

    # plain strings: sorted labels; missing labels are ignored like pandas' groupby
    labels = adata.obs["condition"].astype(str).to_numpy().astype(object)
    labels[:7] = np.nan
    adata.obs["plain"] = labels
    result = pseudobulk(adata, groupby="plain")
    expected = reference_means(adata, "plain")
    assert list(result.index) == sorted(expected.index)
    np.testing.assert_allclose(result.to_numpy(), expected.to_numpy(), rtol=1e-6, atol=1e-7)


def test_group_sizes() -> None:
    adata = make_adata(7, "csc")
    sizes = group_sizes(adata)
    expected = adata.obs["condition"].value_counts()
    assert sizes.dtype == np.int64
    assert list(sizes.index) == list(pseudobulk(adata).index)
    assert sizes.to_dict() == {str(k): int(v) for k, v in expected.items()}
    assert sizes["ZZ+ctrl"] == 2


def test_missing_groupby_column_is_a_clear_error() -> None:
    adata = make_adata(8, "csr")
    with pytest.raises(ValueError, match=r"no column 'perturbation'.*'condition'"):
        pseudobulk(adata, groupby="perturbation")
    with pytest.raises(ValueError, match="no column 'perturbation'"):
        group_sizes(adata, groupby="perturbation")


@pytest.mark.parametrize("fmt", ["csr", "dense"])
def test_pseudobulk_equals_scanpy_and_decoupler(fmt: str) -> None:
    """The two pseudo-bulk functions a scverse user would pick give our means."""
    import decoupler as dc
    import scanpy as sc

    adata = make_adata(3, fmt)
    ours = pseudobulk(adata)
    aggregated = sc.get.aggregate(adata, by="condition", func="mean")
    scanpy_means = pd.DataFrame(
        aggregated.layers["mean"], index=aggregated.obs_names.astype(str), columns=adata.var_names
    )
    decoupled = dc.pp.pseudobulk(
        adata, sample_col="condition", groups_col=None, mode="mean", skip_checks=True
    )
    decoupler_means = pd.DataFrame(
        np.asarray(decoupled.X), index=decoupled.obs_names.astype(str), columns=adata.var_names
    )
    for other in (scanpy_means, decoupler_means):
        assert set(other.index) == set(ours.index)
        np.testing.assert_allclose(
            ours.to_numpy(), other.loc[ours.index].to_numpy(), rtol=1e-5, atol=1e-6
        )
