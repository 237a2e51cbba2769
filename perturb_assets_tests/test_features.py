"""Tests of perturb_assets.core.features (GO / embedding features of perturbations)."""

from __future__ import annotations

import gzip
import importlib.util
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from perturb_assets.core.errors import ConditionSyntaxError, DatasetError
from perturb_assets.core.features import (
    embedding_pca,
    gene_aliases,
    go_annotation_matrix,
    load_gene_aliases,
    match_genes,
    pca_features,
    perturbation_features,
)
from perturb_assets.core.io import (
    AnnotationDownloadError,
    go_annotations_from_decoupler,
    long_to_binary,
    read_embedding,
    read_gaf,
    read_gmt,
    sha256_file,
)

# --------------------------------------------------------------------------- GO annotations


def _fake_msigdb() -> pd.DataFrame:
    """A small long table shaped like decoupler.op.resource('MSigDB')."""
    rows = [
        ("AARS1", "go_biological_process", "GOBP_TRANSLATION"),
        ("KARS1", "go_biological_process", "GOBP_TRANSLATION"),
        ("KARS1", "go_biological_process", "GOBP_TRANSLATION"),  # repeated pair
        ("TP53", "go_biological_process", "GOBP_APOPTOSIS"),
        ("BAX", "go_biological_process", "GOBP_APOPTOSIS"),
        ("TP53", "go_molecular_function", "GOMF_DNA_BINDING"),
        ("MYC", "hallmark", "HALLMARK_MYC_TARGETS_V1"),
        ("EGFR", "go_cellular_component", "GOCC_PLASMA_MEMBRANE"),
        (None, "go_biological_process", "GOBP_TRANSLATION"),
    ]
    return pd.DataFrame(rows, columns=["genesymbol", "collection", "geneset"])


def test_decoupler_path_keeps_go_bp_only():
    go = go_annotations_from_decoupler(resource=_fake_msigdb())
    assert list(go.index) == ["AARS1", "BAX", "KARS1", "TP53"]
    assert list(go.columns) == ["GOBP_APOPTOSIS", "GOBP_TRANSLATION"]
    assert go.dtypes.eq(np.int8).all()
    assert go.index.name == "gene_name" and go.columns.name == "term_id"
    assert go.loc["TP53"].tolist() == [1, 0]
    assert go.loc["KARS1"].tolist() == [0, 1]
    assert "MYC" not in go.index and "EGFR" not in go.index


def test_decoupler_path_other_collection_and_errors():
    mf = go_annotations_from_decoupler("go_molecular_function", resource=_fake_msigdb())
    assert mf.shape == (1, 1)
    with pytest.raises(DatasetError, match="collection") as err:
        go_annotations_from_decoupler("go_nothing", resource=_fake_msigdb())
    assert "hallmark" in str(err.value)
    with pytest.raises(DatasetError, match="geneset"):
        go_annotations_from_decoupler(resource=_fake_msigdb().drop(columns="geneset"))


def test_decoupler_download_failure_says_use_a_file(monkeypatch):
    # a stand-in for decoupler: importing the real package takes ~10 s (numba)
    def boom(*args, **kwargs):
        raise ConnectionError("no network")

    fake = types.ModuleType("decoupler")
    fake.op = types.SimpleNamespace(resource=boom)
    monkeypatch.setitem(sys.modules, "decoupler", fake)
    with pytest.raises(AnnotationDownloadError, match="GMT") as err:
        go_annotations_from_decoupler()
    assert "read_gaf" in str(err.value) and "no network" in str(err.value)


def test_a_dataset_without_a_go_file_offline_is_told_where_the_file_goes(monkeypatch, tmp_path):
    def boom(*args, **kwargs):
        raise ConnectionError("no network")

    fake = types.ModuleType("decoupler")
    fake.op = types.SimpleNamespace(resource=boom)
    monkeypatch.setitem(sys.modules, "decoupler", fake)
    with pytest.raises(AnnotationDownloadError) as err:
        go_annotation_matrix("auto", tmp_path)
    assert f"put it at {tmp_path / 'annotations' / 'go.gmt'}" in str(err.value)
    assert "no network" in str(err.value)


def test_installed_decoupler_has_the_api_used():
    """decoupler 2.x: op.resource(name) pivots OmniPath annotations to genesymbol + labels."""
    spec = importlib.util.find_spec("decoupler")
    assert spec is not None and spec.origin is not None
    source = (Path(spec.origin).parent / "op" / "_resource.py").read_text(encoding="utf-8")
    assert "def resource(" in source and '"genesymbol"' in source


def test_long_to_binary():
    long = pd.DataFrame({"g": ["B", "A", "A", " "], "t": ["t2", "t1", "t2", "t1"]})
    m = long_to_binary(long, "g", "t")
    assert m.to_dict() == {"t1": {"A": 1, "B": 0}, "t2": {"A": 1, "B": 1}}
    with pytest.raises(DatasetError, match="column 'x'"):
        long_to_binary(long, "x", "t")


def test_read_gmt(tmp_path):
    path = tmp_path / "sets.gmt"
    path.write_text("T2\tsecond\tB\tC\n\nT1\tfirst\tA\tB\t\n", encoding="utf-8")
    m = read_gmt(path)
    assert list(m.columns) == ["T2", "T1"]  # file order
    assert list(m.index) == ["A", "B", "C"]
    assert m.loc["B"].tolist() == [1, 1] and m.loc["A"].tolist() == [0, 1]
    gz = tmp_path / "sets.gmt.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    pd.testing.assert_frame_equal(read_gmt(gz), m)


def test_read_gmt_malformed_names_file_and_line(tmp_path):
    path = tmp_path / "bad.gmt"
    path.write_text("T1\tdesc\tA\nno_tabs_here\n", encoding="utf-8")
    with pytest.raises(DatasetError) as err:
        read_gmt(path)
    assert str(path) in str(err.value) and "line 2" in str(err.value)
    dup = tmp_path / "dup.gmt"
    dup.write_text("T1\td\tA\nT1\td\tB\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="line 2.*already defined on line 1"):
        read_gmt(dup)


def _gaf_line(symbol, qualifier, go_id, aspect, n_cols=17):
    cols = ["UniProtKB", f"ID_{symbol}", symbol, qualifier, go_id, "PMID:1", "IDA", "", aspect]
    cols += ["name", "", "protein", "taxon:9606", "20240101", "UniProt", "", ""]
    return "\t".join(cols[:n_cols]) + "\n"


def test_read_gaf_skips_not_and_filters_aspect(tmp_path):
    path = tmp_path / "goa.gaf"
    path.write_text(
        "!gaf-version: 2.2\n!generated-by: test\n"
        + _gaf_line("TP53", "involved_in", "GO:0006915", "P")
        + _gaf_line("BAX", "involved_in", "GO:0006915", "P")
        + _gaf_line("BAX", "NOT|involved_in", "GO:0006412", "P")
        + _gaf_line("AARS1", "involved_in", "GO:0006412", "P", n_cols=15)
        + _gaf_line("TP53", "enables", "GO:0003677", "F")
        + _gaf_line("EGFR", "NOT|located_in", "GO:0005886", "C"),
        encoding="utf-8",
    )
    bp = read_gaf(path)
    assert list(bp.columns) == ["GO:0006412", "GO:0006915"]
    assert list(bp.index) == ["AARS1", "BAX", "TP53"]
    assert bp.loc["BAX"].tolist() == [0, 1]  # the NOT annotation is skipped
    assert bp.dtypes.eq(np.int8).all()
    mf = read_gaf(path, aspect="F")
    assert mf.index.tolist() == ["TP53"] and mf.columns.tolist() == ["GO:0003677"]
    everything = read_gaf(path, aspect=None)
    assert "EGFR" not in everything.index and everything.shape == (3, 3)
    with pytest.raises(ValueError, match="aspect"):
        read_gaf(path, aspect="X")


def test_read_gaf_malformed_names_file_line_and_column(tmp_path):
    short = tmp_path / "short.gaf"
    short.write_text("!gaf-version: 2.2\n" + "UniProtKB\tP1\tTP53\n", encoding="utf-8")
    with pytest.raises(DatasetError) as err:
        read_gaf(short)
    assert str(short) in str(err.value) and "line 2" in str(err.value)
    bad_id = tmp_path / "bad_id.gaf"
    bad_id.write_text(_gaf_line("TP53", "involved_in", "0006915", "P"), encoding="utf-8")
    with pytest.raises(DatasetError, match=r"line 1, column 5 \(GO ID\)"):
        read_gaf(bad_id)
    bad_aspect = tmp_path / "bad_aspect.gaf"
    bad_aspect.write_text(_gaf_line("TP53", "involved_in", "GO:0006915", "Q"), encoding="utf-8")
    with pytest.raises(DatasetError, match=r"column 9 \(Aspect\)"):
        read_gaf(bad_aspect)


# --------------------------------------------------------------------------- aliases


def test_alias_table_shipped_and_consistent():
    aliases = gene_aliases()
    assert len(aliases) >= 30
    for old, new in {
        "AARS": "AARS1",
        "H2AFZ": "H2AZ1",
        "H2AFX": "H2AX",
        "SEPT7": "SEPTIN7",
        "MARCH5": "MARCHF5",
        "TCEB1": "ELOC",
        "TCEB2": "ELOB",
        "SKIV2L2": "MTREX",
        "KIAA1804": "MAP3K21",
        "C19orf26": "CBARP",
    }.items():
        assert aliases[old] == new
    assert not set(aliases) & set(aliases.values())  # no chains


def test_load_gene_aliases_rejects_bad_tables(tmp_path):
    path = tmp_path / "aliases.csv"
    path.write_text("old_symbol,new_symbol\nA,B\nA,C\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="line 3.*repeats"):
        load_gene_aliases(path)
    path.write_text("old_symbol,new_symbol\nA,B\nB,C\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="both as new and as old"):
        load_gene_aliases(path)
    path.write_text("# comment\nold_symbol,new_symbol,note\nX,Y,why\n", encoding="utf-8")
    assert load_gene_aliases(path) == {"X": "Y"}


def test_match_genes_both_directions_and_report():
    aliases = {"AARS": "AARS1", "H2AFZ": "H2AZ1", "SEPT7": "SEPTIN7"}
    # old query, new table
    mapping, report = match_genes(["AARS", "TP53", "FOO"], ["AARS1", "TP53"], aliases)
    assert mapping == {"AARS": "AARS1", "TP53": "TP53"}
    assert report["n_query"] == 3
    assert (report["n_direct"], report["n_via_alias"], report["n_missing"]) == (1, 1, 1)
    assert report["missing"] == ["FOO"] and report["via_alias"] == {"AARS": "AARS1"}
    # new query, old table
    mapping, report = match_genes(["AARS1", "H2AZ1", "AARS1"], ["AARS", "H2AFZ"], aliases)
    assert mapping == {"AARS1": "AARS", "H2AZ1": "H2AFZ"}
    assert report["n_query"] == 2 and report["n_via_alias"] == 2 and report["n_missing"] == 0
    # a direct match wins over an alias
    mapping, _ = match_genes(["AARS"], ["AARS", "AARS1"], aliases)
    assert mapping == {"AARS": "AARS"}
    # default table
    mapping, _ = match_genes(["AARS"], ["AARS1"])
    assert mapping == {"AARS": "AARS1"}


# --------------------------------------------------------------------------- PCA


def _binary(n_genes=40, n_terms=30, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        (rng.random((n_genes, n_terms)) < 0.3).astype(np.int8),
        index=[f"G{i}" for i in range(n_genes)],
        columns=[f"T{j}" for j in range(n_terms)],
    )


def test_pca_deterministic_shape_and_names():
    m = _binary()
    a = pca_features(m, n_components=5)
    b = pca_features(m, n_components=5)
    pd.testing.assert_frame_equal(a, b)
    assert a.shape == (40, 5)
    assert list(a.columns) == ["PC1", "PC2", "PC3", "PC4", "PC5"]
    assert list(a.index) == list(m.index)
    ratio = a.attrs["explained_variance_ratio"]
    assert len(ratio) == 5 and all(x >= y for x, y in zip(ratio, ratio[1:], strict=False))
    assert a.attrs["svd_solver"] == "randomized" and a.attrs["random_state"] == 0
    # components are orthogonal scores with decreasing variance
    var = a.var(axis=0, ddof=1).to_numpy()
    np.testing.assert_allclose(var, a.attrs["explained_variance"], rtol=1e-6)


def test_pca_k_is_min_of_request_genes_terms():
    few_terms = pca_features(_binary(n_genes=40, n_terms=7))
    assert few_terms.shape == (40, 7) and few_terms.attrs["n_components"] == 7
    assert few_terms.attrs["n_components_requested"] == 256
    few_genes = pca_features(_binary(n_genes=6, n_terms=30))
    assert few_genes.shape == (6, 6)
    # at full rank the randomized solver is exact: matches LAPACK's SVD
    exact = pca_features(_binary(n_genes=40, n_terms=7), svd_solver="full")
    np.testing.assert_allclose(few_terms.to_numpy(), exact.to_numpy(), atol=1e-8)


def test_pca_rejects_bad_input():
    with pytest.raises(ValueError, match="n_components"):
        pca_features(_binary(), n_components=0)
    bad = _binary().astype(float)
    bad.iloc[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        pca_features(bad)


def test_embedding_pca_is_same_preprocessing():
    rng = np.random.default_rng(1)
    emb = pd.DataFrame(rng.normal(size=(30, 12)), index=[f"G{i}" for i in range(30)])
    pd.testing.assert_frame_equal(embedding_pca(emb, 4), pca_features(emb, 4))


# --------------------------------------------------------------------------- embeddings


def _emb() -> pd.DataFrame:
    return pd.DataFrame(
        [[0.1, 0.2, 0.3], [1.0, -1.0, 0.5], [2.0, 2.5, -3.0]],
        index=pd.Index(["AARS1", "TP53", "BAX"], name="gene_name"),
        columns=["d1", "d2", "d3"],
    )


def test_read_embedding_parquet_index_and_gene_column(tmp_path):
    emb = _emb()
    p1 = tmp_path / "by_index.parquet"
    emb.to_parquet(p1)
    pd.testing.assert_frame_equal(read_embedding(p1), emb)
    p2 = tmp_path / "by_column.parquet"
    emb.reset_index().rename(columns={"gene_name": "gene"}).to_parquet(p2, index=False)
    pd.testing.assert_frame_equal(read_embedding(p2), emb)
    p3 = tmp_path / "no_genes.parquet"
    emb.reset_index(drop=True).to_parquet(p3)
    with pytest.raises(DatasetError, match="gene column"):
        read_embedding(p3)


def test_read_embedding_csv(tmp_path):
    emb = _emb()
    path = tmp_path / "emb.csv"
    emb.to_csv(path)
    pd.testing.assert_frame_equal(read_embedding(path), emb)
    f32 = read_embedding(path, dtype=np.float32)
    assert f32.dtypes.eq(np.float32).all()


def test_read_embedding_pickle_dict_inside_trusted_root(tmp_path):
    vectors = {"AARS1": [0.1, 0.2, 0.3], "TP53": np.array([1.0, -1.0, 0.5])}
    path = tmp_path / "scelmo" / "emb.pickle"
    path.parent.mkdir()
    path.write_bytes(pickle.dumps(vectors))
    emb = read_embedding(path, trusted_root=tmp_path)
    assert list(emb.index) == ["AARS1", "TP53"] and list(emb.columns) == ["dim1", "dim2", "dim3"]
    np.testing.assert_allclose(emb.loc["TP53"], [1.0, -1.0, 0.5])


def test_read_embedding_pickle_outside_trusted_root_refused(tmp_path):
    path = tmp_path / "outside" / "emb.pkl"
    path.parent.mkdir()
    trusted = tmp_path / "trusted"
    trusted.mkdir()
    sentinel = tmp_path / "was_unpickled"

    class _Evil:
        def __reduce__(self):
            return (sentinel.write_text, ("x",))

    path.write_bytes(pickle.dumps({"G": _Evil()}))
    with pytest.raises(PermissionError, match="trusted"):
        read_embedding(path, trusted_root=trusted)
    with pytest.raises(PermissionError, match="trusted_root"):
        read_embedding(path)
    # a symlink inside the trusted folder that points outside is refused as well
    link = trusted / "link.pkl"
    link.symlink_to(path)
    with pytest.raises(PermissionError):
        read_embedding(link, trusted_root=trusted)
    assert not sentinel.exists()


@pytest.mark.parametrize(
    ("vectors", "field"),
    [
        ({"A": [1.0, 2.0], "B": [1.0, 2.0, 3.0]}, "vector of gene 'B'"),
        ({"A": [1.0, float("nan")]}, "gene 'A', column 'dim2'"),
        ({"A": ["x", "y"]}, "vector of gene 'A'"),
        ({}, "pickle"),
        ({"": [1.0]}, "gene names"),
    ],
)
def test_read_embedding_bad_vectors(tmp_path, vectors, field):
    path = tmp_path / "bad.pkl"
    path.write_bytes(pickle.dumps(vectors))
    with pytest.raises(DatasetError) as err:
        read_embedding(path, trusted_root=tmp_path)
    assert str(path) in str(err.value) and field in str(err.value)


def test_read_embedding_bad_tables(tmp_path):
    dup = tmp_path / "dup.csv"
    dup.write_text("gene,d1\nA,1\nA,2\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="repeat"):
        read_embedding(dup)
    text = tmp_path / "text.csv"
    text.write_text("gene,d1,d2\nA,1,x\nB,2,y\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="column 'd2'"):
        read_embedding(text)
    inf = tmp_path / "inf.csv"
    inf.write_text("gene,d1\nA,1\nB,inf\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="gene 'B'"):
        read_embedding(inf)
    with pytest.raises(DatasetError, match="suffix"):
        read_embedding(tmp_path / "emb.npy")


def test_sha256_file(tmp_path):
    import hashlib

    path = tmp_path / "f.bin"
    path.write_bytes(b"perturb")
    assert sha256_file(path) == hashlib.sha256(b"perturb").hexdigest()


# --------------------------------------------------------------------------- perturbation features


def _features() -> pd.DataFrame:
    return pd.DataFrame(
        [[1.0, 2.0], [10.0, 20.0], [100.0, 200.0]],
        index=pd.Index(["AARS1", "TP53", "BAX"], name="gene_name"),
        columns=["PC1", "PC2"],
    )


def test_single_is_row_and_combo_is_sum():
    feats = _features()
    X, report = perturbation_features(["AARS1+ctrl", "ctrl+TP53", "AARS1+TP53"], feats)
    assert list(X.index) == ["AARS1+ctrl", "ctrl+TP53", "AARS1+TP53"]
    assert list(X.columns) == ["PC1", "PC2"]
    assert X.loc["AARS1+ctrl"].tolist() == [1.0, 2.0]
    assert X.loc["ctrl+TP53"].tolist() == [10.0, 20.0]
    assert X.loc["AARS1+TP53"].tolist() == [11.0, 22.0]
    assert report["combo_dataset"] is True  # inferred
    assert (report["n_single"], report["n_combination"], report["n_ctrl"]) == (2, 1, 0)
    # single on a combination dataset = row + zero row = row; same on a singles dataset
    X_single, rep_single = perturbation_features(["AARS1+ctrl"], feats, combo_dataset=True)
    X_plain, rep_plain = perturbation_features(["AARS1+ctrl"], feats)
    pd.testing.assert_frame_equal(X_single, X_plain)
    assert rep_single["combo_dataset"] is True and rep_plain["combo_dataset"] is False


def test_authors_difference_rule():
    X, report = perturbation_features(
        ["AARS1+TP53", "TP53+ctrl"], _features(), combine="difference"
    )
    assert X.loc["AARS1+TP53"].tolist() == [-9.0, -18.0]
    assert X.loc["TP53+ctrl"].tolist() == [10.0, 20.0]
    assert report["combine"] == "difference"


def test_genes_found_through_aliases():
    X, report = perturbation_features(["AARS+ctrl", "AARS+TP53"], _features())
    assert X.loc["AARS+ctrl"].tolist() == [1.0, 2.0]
    assert X.loc["AARS+TP53"].tolist() == [11.0, 22.0]
    assert report["gene_matching"]["via_alias"] == {"AARS": "AARS1"}
    assert report["n_missing_genes"] == 0


def test_missing_gene_zero_policy():
    conds = ["FOO+ctrl", "FOO+TP53", "BAX+ctrl"]
    X, report = perturbation_features(conds, _features(), missing="zero")
    assert list(X.index) == conds
    assert X.loc["FOO+ctrl"].tolist() == [0.0, 0.0]
    assert X.loc["FOO+TP53"].tolist() == [10.0, 20.0]
    assert report["policy"] == "zero"
    assert report["n_missing_genes"] == 1 and report["missing_genes"] == ["FOO"]
    assert report["zero_filled_conditions"] == ["FOO+ctrl", "FOO+TP53"]
    assert report["dropped_conditions"] == []
    assert report["n_conditions"] == 3 and report["n_output"] == 3


def test_missing_gene_drop_and_error_policies():
    conds = ["FOO+ctrl", "FOO+TP53", "BAX+ctrl"]
    X, report = perturbation_features(conds, _features(), missing="drop")
    assert list(X.index) == ["BAX+ctrl"]
    assert report["dropped_conditions"] == ["FOO+ctrl", "FOO+TP53"]
    assert report["n_conditions"] == 3 and report["n_output"] == 1
    assert report["missing_genes"] == ["FOO"] and report["policy"] == "drop"
    with pytest.raises(KeyError, match="FOO"):
        perturbation_features(conds, _features(), missing="error")
    with pytest.raises(ValueError, match="missing"):
        perturbation_features(conds, _features(), missing="ignore")


def test_ctrl_gets_zero_vector():
    X, report = perturbation_features(["ctrl", "BAX+ctrl"], _features(), missing="drop")
    assert X.loc["ctrl"].tolist() == [0.0, 0.0]
    assert report["n_ctrl"] == 1 and report["dropped_conditions"] == []


def test_perturbation_features_input_checks():
    with pytest.raises(ValueError, match="combo_dataset=False"):
        perturbation_features(["AARS1+TP53"], _features(), combo_dataset=False)
    with pytest.raises(ValueError, match="repeat"):
        perturbation_features(["BAX+ctrl", "BAX+ctrl"], _features())
    with pytest.raises(ConditionSyntaxError):
        perturbation_features(["A+B+C"], _features())


def test_go_pipeline_end_to_end(tmp_path):
    """GMT → PCA → condition features, with an outdated symbol in the conditions."""
    path = tmp_path / "go.gmt"
    lines = [f"T{j}\td\t" + "\t".join(f"G{i}" for i in range(j, j + 5)) for j in range(12)]
    lines.append("T_extra\td\tAARS1\tG3")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    pcs = pca_features(read_gmt(path), n_components=4)
    X, report = perturbation_features(["AARS+ctrl", "G1+G2", "ctrl"], pcs)
    np.testing.assert_allclose(X.loc["AARS+ctrl"], pcs.loc["AARS1"])
    np.testing.assert_allclose(X.loc["G1+G2"], pcs.loc["G1"] + pcs.loc["G2"])
    assert X.shape == (3, 4) and report["n_missing_genes"] == 0
