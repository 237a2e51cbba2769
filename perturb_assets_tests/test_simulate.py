"""Tests of the simulated GEARS-layout Perturb-seq dataset (``perturb_assets.core.simulation``)."""

from __future__ import annotations

import importlib.util
import re
import sys
import types
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp

from perturb_assets.cli import main as cli_main
from perturb_assets.core.gears import CONTROL, parse_condition
from perturb_assets.core.gears import FILENAME as H5AD_NAME
from perturb_assets.core.gears import UNS_DE_KEYS as GEARS_UNS_KEYS
from perturb_assets.core.io import read_gmt
from perturb_assets.core.models import embedding_sets
from perturb_assets.core.pp import median_pairwise_delta_correlation, pseudobulk_deltas
from perturb_assets.core.simulation import (
    GMT_NAME,
    PROGRAMS_GMT_NAME,
    STAND_IN_NOISE,
    SimulatedDataset,
    simulate_perturbseq,
    simulated_embeddings,
    write_gears_dataset,
)

SMALL = {"n_cells": 1500, "n_genes": 200, "n_perturbations": 30, "n_terms": 80}


@pytest.fixture(scope="module")
def combo_sim() -> SimulatedDataset:
    """Small Norman-like dataset (singles and combinations) with the GEARS DE fields."""
    return simulate_perturbseq(**SMALL, combo_fraction=0.4, seed=3)


@pytest.fixture(scope="module")
def single_sim() -> SimulatedDataset:
    """Small Adamson/Replogle-like (single-only) CRISPRi dataset without DE fields."""
    return simulate_perturbseq(
        n_cells=3000, n_genes=400, n_perturbations=40, seed=5, compute_de=False
    )


def _single_targets(conditions) -> dict[str, str]:
    """Map each single-perturbation condition to its target gene."""
    out = {}
    for c in conditions:
        genes = parse_condition(c)
        if len(genes) == 1:
            out[c] = genes[0]
    return out


# --- determinism and validation ---------------------------------------------------------------
def test_deterministic_for_a_seed():
    kw = {"n_cells": 800, "n_genes": 150, "n_perturbations": 20, "compute_de": False}
    a = simulate_perturbseq(**kw, combo_fraction=0.3, seed=1)
    b = simulate_perturbseq(**kw, combo_fraction=0.3, seed=1)
    c = simulate_perturbseq(**kw, combo_fraction=0.3, seed=2)
    assert (a.adata.X != b.adata.X).nnz == 0
    assert (a.adata.layers["counts"] != b.adata.layers["counts"]).nnz == 0
    pd.testing.assert_frame_equal(a.adata.obs, b.adata.obs)
    pd.testing.assert_frame_equal(a.adata.var, b.adata.var)
    pd.testing.assert_frame_equal(a.annotations, b.annotations)
    assert a.adata.shape == c.adata.shape
    assert not a.adata.obs.index.equals(c.adata.obs.index)
    assert set(a.adata.obs["condition"]) != set(c.adata.obs["condition"])
    assert (a.adata.layers["counts"] != c.adata.layers["counts"]).nnz > 0


def test_biology_and_annotations_do_not_depend_on_cell_number():
    kw = {"n_genes": 150, "n_perturbations": 20, "compute_de": False, "seed": 7}
    a = simulate_perturbseq(n_cells=800, **kw)
    b = simulate_perturbseq(n_cells=1600, **kw)
    pd.testing.assert_frame_equal(a.annotations, b.annotations)
    pd.testing.assert_frame_equal(a.effects, b.effects)
    pd.testing.assert_frame_equal(a.adata.var, b.adata.var)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"diversity": 1.5}, "diversity"),
        ({"diversity": -0.1}, "diversity"),
        ({"n_perturbations": 300, "n_genes": 200}, "n_perturbations"),
        ({"n_cells": 100}, "too few"),
        ({"combo_fraction": 1.0}, "combo_fraction"),
        ({"combo_fraction": 0.97}, "combo_fraction"),
        ({"modality": "knockout"}, "modality"),
        ({"n_cells": 0}, "n_cells"),
        ({"cell_type": "K_562"}, "cell_type"),
    ],
)
def test_invalid_parameters_raise(kwargs, match):
    params = {**SMALL, "compute_de": False, **kwargs}
    with pytest.raises(ValueError, match=match):
        simulate_perturbseq(**params)


# --- GEARS layout --------------------------------------------------------------------------------
def test_gears_layout(combo_sim):
    adata = combo_sim.adata
    assert adata.shape == (SMALL["n_cells"], SMALL["n_genes"])
    assert sp.isspmatrix_csr(adata.X) and adata.X.dtype == np.float32
    counts = adata.layers["counts"]
    assert sp.isspmatrix_csr(counts) and counts.dtype == np.float32
    assert np.array_equal(counts.data, np.round(counts.data)) and counts.data.min() > 0
    zero_fraction = 1 - counts.nnz / np.prod(counts.shape)
    assert 0.75 <= zero_fraction <= 0.92

    obs = adata.obs
    assert list(obs.columns) == ["condition", "cell_type", "dose_val", "control", "condition_name"]
    assert all(isinstance(obs[c].dtype, pd.CategoricalDtype) for c in obs.columns)
    assert obs.index.is_unique
    assert all(re.fullmatch(r"[ACGT]{16}-1", b) for b in obs.index)
    assert list(obs["cell_type"].unique()) == ["K562"]
    # cell-gears get_DE_genes, literally: every two-part condition (singles included) is
    # dose '1+1' and control 0.
    cond = obs["condition"].astype(str)
    two_part = cond.str.split("+").str.len() == 2
    assert (obs["dose_val"].astype(str) == np.where(two_part, "1+1", "1")).all()
    assert (obs["control"].astype(int) == np.where(two_part, 0, 1)).all()
    expected_name = "K562_" + cond + "_" + obs["dose_val"].astype(str)
    assert (obs["condition_name"].astype(str) == expected_name).all()

    var = adata.var
    assert list(var.columns) == ["gene_name"]
    assert var.index.is_unique and var["gene_name"].is_unique
    assert all(re.fullmatch(r"ENSG\d{11}", g) for g in var.index)

    assert set(GEARS_UNS_KEYS) <= set(adata.uns)
    names = set(obs["condition_name"].astype(str)) - {"K562_ctrl_1"}
    for key in GEARS_UNS_KEYS:
        assert set(adata.uns[key]) == names
    some = next(iter(names))
    assert sorted(adata.uns["rank_genes_groups_cov_all"][some]) == sorted(var.index)
    assert len(adata.uns["top_non_dropout_de_20"][some]) == 20


def test_x_is_log1p_normalised_counts(combo_sim):
    adata = combo_sim.adata
    ref = ad.AnnData(adata.layers["counts"].copy())
    sc.pp.normalize_total(ref, target_sum=1e4)
    sc.pp.log1p(ref)
    np.testing.assert_allclose(adata.X.toarray(), ref.X.toarray(), rtol=1e-5, atol=1e-6)


def test_condition_syntax_and_cell_numbers(combo_sim):
    obs = combo_sim.adata.obs
    conditions = list(obs["condition"].cat.categories)
    parsed = {c: parse_condition(c) for c in conditions}  # raises on bad syntax
    assert CONTROL in conditions
    combos = [c for c, g in parsed.items() if len(g) == 2]
    singles = [c for c, g in parsed.items() if len(g) == 1]
    assert len(combos) + len(singles) == SMALL["n_perturbations"]
    assert len(combos) == round(0.4 * SMALL["n_perturbations"])
    assert not any(CONTROL in c.split("+") for c in combos)
    assert len({frozenset(parsed[c]) for c in combos}) == len(combos)  # no A+B and B+A
    # Both single spellings occur, each gene spelled one way only.
    assert any(c.startswith("ctrl+") for c in singles)
    assert any(c.endswith("+ctrl") for c in singles)
    genes = [parsed[c][0] for c in singles]
    assert len(genes) == len(set(genes))
    # Combinations are built mostly from genes that are also perturbed alone.
    combo_genes = [g for c in combos for g in parsed[c]]
    assert np.mean([g in set(genes) for g in combo_genes]) >= 0.8
    n = obs["condition"].value_counts()
    assert n.min() >= 5
    assert 0.10 <= n[CONTROL] / len(obs) <= 0.15 + 1e-9
    assert n[CONTROL] == n.max()


def test_single_only_by_default(single_sim):
    conditions = single_sim.adata.obs["condition"].astype(str).unique()
    assert all(len(parse_condition(c)) <= 1 for c in conditions)
    assert all(c == CONTROL or c.endswith("+ctrl") for c in conditions)


def test_some_targets_unmeasured_but_annotated(single_sim):
    adata = single_sim.adata
    targets = set(_single_targets(adata.obs["condition"].astype(str).unique()).values())
    measured = set(adata.var["gene_name"])
    unmeasured = targets - measured
    assert 1 <= len(unmeasured) <= 0.15 * len(targets)
    assert unmeasured == set(single_sim.metadata["unmeasured_targets"])
    ann = single_sim.annotations
    assert targets <= set(ann.index)
    assert measured <= set(ann.index)
    assert ann.dtypes.eq(np.int8).all()
    assert set(np.unique(ann.to_numpy())) <= {0, 1}
    assert ann.sum(axis=1).min() >= 3
    assert all(re.fullmatch(r"GO:SIM\d{7}", t) for t in ann.columns)


# --- biology -------------------------------------------------------------------------------------
def _target_log_ratios(sim: SimulatedDataset, min_ctrl: float) -> np.ndarray:
    """log(mean X in perturbed cells / mean X in control) of measured, expressed targets."""
    adata = sim.adata
    symbol_to_col = {g: i for i, g in enumerate(adata.var["gene_name"])}
    cond = adata.obs["condition"].astype(str).to_numpy()
    x = adata.X.tocsc()
    ctrl = cond == CONTROL
    ratios = []
    for c, gene in _single_targets(np.unique(cond)).items():
        if gene not in symbol_to_col:
            continue
        col = x[:, symbol_to_col[gene]].toarray().ravel()
        base = col[ctrl].mean()
        if base >= min_ctrl:
            ratios.append(np.log((col[cond == c].mean() + 1e-3) / base))
    return np.array(ratios)


def test_crispri_knocks_down_targets(single_sim):
    ratios = _target_log_ratios(single_sim, min_ctrl=0.3)
    assert len(ratios) >= 10
    assert np.mean(ratios < 0) >= 0.95
    assert np.median(ratios) < np.log(0.6)


def test_crispra_activates_targets():
    sim = simulate_perturbseq(
        n_cells=3000, n_genes=400, n_perturbations=40, modality="crispra", seed=5, compute_de=False
    )
    ratios = _target_log_ratios(sim, min_ctrl=0.05)
    assert len(ratios) >= 10
    assert np.mean(ratios > 0) >= 0.95
    assert np.median(ratios) > np.log(1.5)


def test_diversity_knob_is_monotone():
    kw = {"n_cells": 3000, "n_genes": 500, "n_perturbations": 50, "compute_de": False, "seed": 11}
    corr = [
        simulate_perturbseq(**kw, diversity=d).metadata["median_pairwise_delta_correlation"]
        for d in (0.1, 0.5, 0.9)
    ]
    assert corr[0] > corr[1] > corr[2]
    assert corr[0] - corr[2] > 0.35
    assert corr[0] > 0.6 and corr[2] < 0.35


def test_median_pairwise_delta_correlation_matches_definition(single_sim):
    adata = single_sim.adata
    cond = adata.obs["condition"].astype(str).to_numpy()
    x = adata.X.toarray().astype(np.float64)
    ctrl = x[cond == CONTROL].mean(axis=0)
    perts = sorted(set(cond) - {CONTROL})
    deltas = np.stack([x[cond == p].mean(axis=0) - ctrl for p in perts])
    pd.testing.assert_frame_equal(
        pseudobulk_deltas(adata),
        pd.DataFrame(deltas, index=pd.Index(perts, name="condition"), columns=adata.var_names),
        rtol=1e-9,
        atol=1e-9,
    )
    corr = np.corrcoef(deltas)
    expected = np.median(corr[np.triu_indices_from(corr, k=1)])
    assert median_pairwise_delta_correlation(adata) == pytest.approx(expected, abs=1e-12)


def _pearson_delta_rf_vs_train_mean(sim: SimulatedDataset, split_seed: int) -> tuple[float, float]:
    """Mean Pearson delta on held-out singles: RF on GO-PCA features versus Train Mean."""
    from sklearn.decomposition import PCA
    from sklearn.ensemble import RandomForestRegressor

    deltas = pseudobulk_deltas(sim.adata)
    targets = _single_targets(deltas.index)
    conditions = list(targets)
    ann = sim.annotations
    n_components = min(64, *ann.shape)
    embedding = PCA(n_components=n_components, random_state=0).fit_transform(
        ann.to_numpy(dtype=np.float64)
    )
    row = {g: i for i, g in enumerate(ann.index)}
    features = embedding[[row[targets[c]] for c in conditions]]
    y = deltas.loc[conditions].to_numpy()
    order = np.random.default_rng(split_seed).permutation(len(conditions))
    n_test = len(conditions) // 4
    test, train = order[:n_test], order[n_test:]
    rf = RandomForestRegressor(n_estimators=100, random_state=42, n_jobs=2)
    predicted = rf.fit(features[train], y[train]).predict(features[test])
    train_mean = y[train].mean(axis=0)

    def pearson(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.corrcoef(a, b)[0, 1])

    rf_score = np.mean([pearson(p, t) for p, t in zip(predicted, y[test], strict=True)])
    mean_score = np.mean([pearson(train_mean, t) for t in y[test]])
    return float(rf_score), float(mean_score)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_annotations_carry_learnable_signal(seed):
    sim = simulate_perturbseq(seed=seed, compute_de=False)
    rf_score, mean_score = _pearson_delta_rf_vs_train_mean(sim, split_seed=seed)
    assert rf_score > mean_score + 0.02, (rf_score, mean_score)


# --- GEARS reference -----------------------------------------------------------------------------
def _load_gears_data_utils() -> types.ModuleType:
    """Load cell-gears' ``data_utils`` source without importing the ``gears`` package.

    ``import gears`` pulls in torch, torch-geometric and numba-compiled dcor (~20 s). The two
    functions compared here only use pandas, numpy and scanpy, so the module is executed under a
    private package name with a stub for its ``.utils`` import.
    """
    spec = importlib.util.find_spec("gears")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("cell-gears is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "data_utils.py"
    package = "_gears_reference"
    stub_utils = types.ModuleType(f"{package}.utils")
    for name in ("parse_single_pert", "parse_combo_pert", "parse_any_pert", "print_sys"):
        setattr(stub_utils, name, lambda *args, **kwargs: None)
    stub_package = types.ModuleType(package)
    stub_package.__path__ = []
    saved = {k: sys.modules.get(k) for k in (package, f"{package}.utils")}
    sys.modules[package] = stub_package
    sys.modules[f"{package}.utils"] = stub_utils
    try:
        module_spec = importlib.util.spec_from_file_location(f"{package}.data_utils", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return module


def test_uns_matches_cell_gears(combo_sim):
    gears_du = _load_gears_data_utils()
    mine = combo_sim.adata
    ref = ad.AnnData(
        X=mine.X.copy(),
        obs=pd.DataFrame(
            {
                "condition": mine.obs["condition"].astype(str).to_numpy(),
                "cell_type": mine.obs["cell_type"].astype(str).to_numpy(),
            },
            index=mine.obs_names,
        ),
        var=mine.var.copy(),
    )
    ref = gears_du.get_DE_genes(ref, skip_calc_de=False)
    ref = gears_du.get_dropout_non_zero_genes(ref)
    for col in ("condition", "cell_type", "dose_val", "control", "condition_name"):
        assert (ref.obs[col].astype(str) == mine.obs[col].astype(str)).all(), col
    for key in GEARS_UNS_KEYS:
        theirs, ours = ref.uns[key], mine.uns[key]
        assert set(theirs) == set(ours), key
        for name in theirs:
            np.testing.assert_array_equal(np.asarray(ours[name]), np.asarray(theirs[name]))


# --- files ---------------------------------------------------------------------------------------
def test_write_read_round_trip(combo_sim, tmp_path):
    folder = write_gears_dataset(combo_sim, tmp_path / "synthetic")
    assert folder == tmp_path / "synthetic"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [H5AD_NAME, GMT_NAME, PROGRAMS_GMT_NAME, "embeddings"]
    )  # the scGPT stand-in checkpoint is written by the foundation code on first use
    written = {p.stem: pd.read_parquet(p) for p in (folder / "embeddings").iterdir()}
    assert set(written) == set(STAND_IN_NOISE) == {"scgpt", "scfoundation", "scelmo"}

    back = ad.read_h5ad(folder / H5AD_NAME)
    mine = combo_sim.adata
    assert (back.X != mine.X).nnz == 0 and back.X.dtype == np.float32
    assert (back.layers["counts"] != mine.layers["counts"]).nnz == 0
    pd.testing.assert_frame_equal(back.obs, mine.obs)
    pd.testing.assert_frame_equal(back.var, mine.var)
    for key in GEARS_UNS_KEYS:
        assert set(back.uns[key]) == set(mine.uns[key])
        for name, value in mine.uns[key].items():
            np.testing.assert_array_equal(np.asarray(back.uns[key][name]), value)

    ann = read_gmt(folder / GMT_NAME)
    pd.testing.assert_frame_equal(
        ann.loc[combo_sim.annotations.index, combo_sim.annotations.columns],
        combo_sim.annotations,
    )
    first = (folder / GMT_NAME).read_text().splitlines()[0].split("\t")
    assert first[0] == combo_sim.annotations.columns[0] and first[1]

    # Rewriting replaces the files in place and leaves no temporary files behind.
    write_gears_dataset(combo_sim, folder)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [H5AD_NAME, GMT_NAME, PROGRAMS_GMT_NAME, "embeddings"]
    )  # the scGPT stand-in checkpoint is written by the foundation code on first use
    written = {p.stem: pd.read_parquet(p) for p in (folder / "embeddings").iterdir()}
    assert set(written) == set(STAND_IN_NOISE) == {"scgpt", "scfoundation", "scelmo"}


def test_stand_in_embeddings_cover_every_embedding_feature_set():
    assert list(STAND_IN_NOISE) == [spec.name for spec in embedding_sets()]


def test_read_gmt_rejects_malformed_lines(tmp_path):
    path = tmp_path / "bad.gmt"
    path.write_text("GO:1\tdesc\tA\tB\nonly_one_field\n")
    with pytest.raises(ValueError, match="line 2"):
        read_gmt(path)


def test_cli_writes_a_dataset(tmp_path, capsys):
    out = tmp_path / "cli"
    argv = [str(out), "--cells", "600", "--genes", "120", "--perturbations", "15"]
    argv += ["--combo-fraction", "0.2", "--diversity", "0.3", "--seed", "4"]
    assert cli_main(["simulate", *argv]) == 0
    printed = capsys.readouterr().out
    assert "median pairwise delta correlation" in printed and "wrote" in printed
    back = ad.read_h5ad(out / H5AD_NAME)
    assert back.shape == (600, 120)
    assert "rank_genes_groups_cov_all" in back.uns
    assert read_gmt(out / GMT_NAME).shape[1] == 300


def test_simulated_embeddings_carry_program_signal_with_different_noise(combo_sim):
    embeddings = simulated_embeddings(combo_sim)
    again = simulated_embeddings(combo_sim)
    membership = combo_sim.programs.to_numpy(dtype=float)
    # Genes sharing programs must be closer in every embedding than random gene pairs, and the
    # noisier stand-in (scfoundation) must carry less of that signal than the cleanest (scelmo).
    same = membership @ membership.T > 0
    np.fill_diagonal(same, False)
    gaps = {}
    for name, table in embeddings.items():
        pd.testing.assert_frame_equal(table, again[name])
        assert list(table.index) == list(combo_sim.programs.index)
        corr = np.corrcoef(table.to_numpy(dtype=float))
        off = ~np.eye(len(corr), dtype=bool)
        gaps[name] = corr[same].mean() - corr[off & ~same].mean()
        assert gaps[name] > 0.05, name
    assert gaps["scelmo"] > gaps["scfoundation"]
