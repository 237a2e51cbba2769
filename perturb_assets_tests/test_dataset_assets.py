"""End-to-end: the dataset-layer assets and their blocking checks on a small synthetic run."""

from __future__ import annotations

import anndata as ad
import dagster as dg
import numpy as np
import pandas as pd
import pytest

from perturb_assets.core.gears import (
    condition_problems,
    parse_condition,
    schema_problems,
    simulation_split,
    split_coverage_problems,
    split_overlap_problems,
    value_problems,
)
from perturb_assets.core.io import VersionedStore
from perturb_assets.core.pp import pseudobulk, pseudobulk_problems, top_de_genes
from perturb_assets.defs.datasets import assets as dataset_assets
from perturb_assets.defs.datasets import checks as dataset_checks
from perturb_assets.defs.partitions import instance_with_datasets
from perturb_assets.defs.resources import build_resources

SMALL = {"n_cells": 1500, "n_genes": 200, "n_perturbations": 30, "combo_fraction": 0.3, "seed": 3}
ASSETS = [
    dataset_assets.raw_dataset,
    dataset_assets.expression,
    dataset_assets.perturbation_split,
    dataset_assets.pseudobulk,
    dataset_assets.de_genes,
]
CHECKS = [
    dataset_checks.expression_schema,
    dataset_checks.expression_values,
    dataset_checks.split_disjoint,
    dataset_checks.split_covers_data,
    dataset_checks.pseudobulk_valid,
    dataset_checks.de_genes_valid,
]


def _materialize(root, selection=None, config=SMALL, raise_on_error=True):
    return dg.materialize(
        [*ASSETS, *CHECKS],
        selection=selection,
        partition_key="synthetic",
        instance=instance_with_datasets(),
        resources=build_resources(root),
        run_config={"ops": {"raw_dataset": {"config": config}}} if selection is None else None,
        raise_on_error=raise_on_error,
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    return root, _materialize(root)


def test_every_asset_materialises_and_every_check_passes(run):
    root, result = run
    assert result.success
    keys = {
        m.asset_key.to_user_string()
        for m in result.get_asset_materialization_events()
        for m in [m.event_specific_data.materialization]
    }
    assert keys == {"raw_dataset", "expression", "perturbation_split", "pseudobulk", "de_genes"}
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == len(CHECKS)
    assert all(e.passed for e in evaluations)
    store = VersionedStore(root)
    for stored in ("expression", "pseudobulk", "perturbation_split", "de_genes", "raw_dataset"):
        assert store.exists(store.key("assets", stored, "synthetic"))


def test_stored_assets_equal_core_results(run):
    root, _ = run
    store = VersionedStore(root)
    adata = store.read("assets", "expression", "synthetic")
    table = store.read("assets", "pseudobulk", "synthetic")
    means = pseudobulk(adata)
    pd.testing.assert_frame_equal(table.to_df(), means, check_names=False)
    assert table.obs.loc["ctrl", "n_cells"] == (adata.obs["condition"] == "ctrl").sum()

    split = store.read("assets", "perturbation_split", "synthetic")
    expected = simulation_split(adata.obs["condition"].astype(str), seed=1)
    pd.testing.assert_frame_equal(split, expected)

    stored = store.read("assets", "de_genes", "synthetic")
    symbols = adata.var["gene_name"].astype(str)
    for method in ("t-test", "wilcoxon"):
        lists = {
            targets: part.sort_values("rank").groupby("condition")["gene_id"].apply(list).to_dict()
            for targets, part in stored[stored["method"] == method].groupby("targets")
        }
        # Plain lists are scanpy's top 20 (core.pp.de is checked against scanpy in test_de).
        assert lists["included"] == top_de_genes(adata, method=method, n_top=20)
        for condition, included in lists["included"].items():
            targets = set(parse_condition(condition))
            excluded = lists["excluded"][condition]
            # No target gene is left, and the rest keep their scanpy order.
            assert not targets & set(symbols[excluded])
            kept = [g for g in included if symbols[g] not in targets]
            assert excluded[: len(kept)] == kept and len(excluded) == 20
            # The paper's removal never removes more than the correct one does.
            assert len(set(lists["reference_compat"][condition]) & set(included)) >= len(kept)
        # On a dataset not named 'norman', the paper's rule removes combination targets too.
        assert lists["reference_compat"] == lists["excluded"]


def test_expression_metadata_records_target_coverage(run):
    _, result = run
    (mat,) = [
        e.event_specific_data.materialization
        for e in result.get_asset_materialization_events()
        if e.event_specific_data.materialization.asset_key.to_user_string() == "expression"
    ]
    meta = mat.metadata
    assert meta["n_targets_measured"].value <= meta["n_targets"].value
    assert meta["n_cells"].value == SMALL["n_cells"]


def test_bad_file_fails_with_its_name_and_keeps_previous_expression(tmp_path):
    assert _materialize(tmp_path).success
    store = VersionedStore(tmp_path)
    before = store.read("assets", "expression", "synthetic").X.sum()
    h5ad = tmp_path / "gears" / "synthetic" / "perturb_processed.h5ad"
    # Someone corrupts the raw file after raw_dataset was recorded: expression must refuse.
    h5ad.write_bytes(h5ad.read_bytes()[:1000])
    result = _materialize(tmp_path, selection=[dataset_assets.expression], raise_on_error=False)
    assert not result.success
    failure = [e for e in result.all_events if e.is_step_failure][0]
    assert "perturb_processed.h5ad" in failure.step_failure_data.error.message
    assert np.isclose(store.read("assets", "expression", "synthetic").X.sum(), before)


def test_check_rules_flag_bad_data():
    split = pd.DataFrame(
        {"split": ["train", "test", "train"], "subgroup": [None, "x", None]},
        index=pd.Index(["A+ctrl", "A+ctrl", "ctrl"], name="condition"),
    )
    problems = split_overlap_problems(split)
    assert any("twice" in p for p in problems) and any("both train and test" in p for p in problems)

    adata = ad.AnnData(np.array([[1.0, 30.0], [0.0, np.inf]], dtype=np.float32))
    problems = [str(p) for p in value_problems(adata.X, log_scale=True)]
    assert any("1 infinite" in p for p in problems) and any("not log scale" in p for p in problems)

    adata.obs["condition"] = ["A+ctrl", "B+ctrl"]
    assert any("no control cells" in str(p) for p in condition_problems(adata.obs))
    assert any("cell_type" in str(p) for p in schema_problems(adata))
    covered = pd.DataFrame({"split": ["train"], "subgroup": [None]}, index=["ctrl"])
    assert len(split_coverage_problems(covered, adata.obs["condition"])) == 2


@pytest.mark.parametrize("bad", ["nan", "no_ctrl", "empty_group"])
def test_pseudobulk_rule_flags_bad_profiles(bad):
    profiles = ad.AnnData(
        np.ones((2, 3)), obs=pd.DataFrame({"n_cells": [5, 4]}, index=["ctrl", "A+ctrl"])
    )
    if bad == "nan":
        profiles.X[1, 2] = np.nan
    elif bad == "no_ctrl":
        profiles.obs_names = ["B+ctrl", "A+ctrl"]
    else:
        profiles.obs["n_cells"] = [5, 0]
    assert len(pseudobulk_problems(profiles)) == 1


def test_user_dataset_is_located_by_name(tmp_path):
    from perturb_assets.core.datasets import UnknownDatasetError, add_user_dataset, obtain_dataset
    from perturb_assets.core.simulation import simulate_perturbseq, write_gears_dataset

    folder = write_gears_dataset(
        simulate_perturbseq(n_cells=600, n_genes=60, n_perturbations=8, compute_de=False),
        tmp_path / "src",
    )
    add_user_dataset(folder, "my_screen", tmp_path)
    raw = obtain_dataset("my_screen", tmp_path)
    assert raw.origin == "user" and raw.path.name == "perturb_processed.h5ad" and raw.path.exists()
    with pytest.raises(UnknownDatasetError, match="neither built in"):
        obtain_dataset("unknown_screen", tmp_path)
