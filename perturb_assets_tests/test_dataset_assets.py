"""End-to-end: the dataset-layer assets and their blocking checks on a small synthetic run."""

from __future__ import annotations

import anndata as ad
import dagster as dg
import numpy as np
import pandas as pd
import pytest

from perturb_assets.core import de, splits
from perturb_assets.core import pseudobulk as pb
from perturb_assets.core.metrics import reference_compat_de_lists
from perturb_assets.defs.datasets import assets as A
from perturb_assets.defs.datasets import checks as C
from perturb_assets.defs.io_managers import LocalAssetIOManager
from perturb_assets.defs.resources import DataSources

SMALL = {"n_cells": 1500, "n_genes": 200, "n_perturbations": 30, "combo_fraction": 0.3, "seed": 3}
ASSETS = [A.raw_dataset, A.expression, A.perturbation_split, A.pseudobulk, A.de_genes]
CHECKS = [
    C.expression_schema,
    C.expression_values,
    C.split_disjoint,
    C.split_covers_data,
    C.pseudobulk_valid,
    C.de_genes_valid,
]


def _materialize(root, selection=None, config=SMALL, raise_on_error=True):
    return dg.materialize(
        [*ASSETS, *CHECKS],
        selection=selection,
        partition_key="synthetic",
        resources={
            "io_manager": LocalAssetIOManager(base_dir=str(root / "assets")),
            "data_sources": DataSources(data_root=str(root)),
        },
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
    for stored in (
        "expression/synthetic.zarr",
        "pseudobulk/synthetic.parquet",
        "perturbation_split/synthetic.parquet",
        "de_genes/synthetic.parquet",
        "raw_dataset/synthetic.json",
    ):
        assert (root / "assets" / stored).exists()


def test_stored_assets_equal_core_results(run):
    root, _ = run
    adata = ad.read_zarr(root / "assets" / "expression" / "synthetic.zarr")
    table = pd.read_parquet(root / "assets" / "pseudobulk" / "synthetic.parquet")
    means = pb.pseudobulk(adata)
    pd.testing.assert_frame_equal(table.drop(columns="n_cells"), means, check_names=False)
    assert table.loc["ctrl", "n_cells"] == (adata.obs["condition"] == "ctrl").sum()

    split = pd.read_parquet(root / "assets" / "perturbation_split" / "synthetic.parquet")
    expected = splits.simulation_split(adata.obs["condition"].astype(str), seed=1)
    pd.testing.assert_frame_equal(split, expected)

    stored = pd.read_parquet(root / "assets" / "de_genes" / "synthetic.parquet")
    symbols = adata.var["gene_name"].astype(str)
    for method in ("t-test", "wilcoxon"):
        expected = {
            "included": de.top_de_genes(adata, method=method, n_top=20),
            "excluded": de.top_de_genes(adata, method=method, n_top=20, exclude_targets=True),
            "reference_compat": reference_compat_de_lists(
                de.top_de_genes(adata, method=method, n_top=22), symbols, "synthetic"
            ),
        }
        for targets, lists in expected.items():
            part = stored[(stored["method"] == method) & (stored["targets"] == targets)]
            got = part.sort_values("rank").groupby("condition")["gene_id"].apply(list)
            assert got.to_dict() == lists, (method, targets)


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
    zarr = tmp_path / "assets" / "expression" / "synthetic.zarr"
    before = ad.read_zarr(zarr).X.sum()
    h5ad = tmp_path / "gears" / "synthetic" / "perturb_processed.h5ad"
    # Someone corrupts the raw file after raw_dataset was recorded: expression must refuse.
    h5ad.write_bytes(h5ad.read_bytes()[:1000])
    result = _materialize(tmp_path, selection=[A.expression], raise_on_error=False)
    assert not result.success
    failure = [e for e in result.all_events if e.is_step_failure][0]
    assert "perturb_processed.h5ad" in failure.step_failure_data.error.message
    assert np.isclose(ad.read_zarr(zarr).X.sum(), before)


def test_check_functions_flag_bad_data():
    split = pd.DataFrame(
        {"split": ["train", "test", "train"], "subgroup": [None, "x", None]},
        index=pd.Index(["A+ctrl", "A+ctrl", "ctrl"], name="condition"),
    )
    problems = C.split_overlap_problems(split)
    assert any("twice" in p for p in problems) and any("both train and test" in p for p in problems)

    adata = ad.AnnData(np.array([[1.0, 30.0], [0.0, np.inf]], dtype=np.float32))
    problems = C.expression_value_problems(adata)
    assert any("non-finite" in p for p in problems) and any("log scale" in p for p in problems)

    adata.obs["condition"] = ["A+ctrl", "B+ctrl"]
    assert "no control cells" in C.expression_schema_problems(adata)
    covered = pd.DataFrame({"split": ["train"], "subgroup": [None]}, index=["ctrl"])
    assert len(C.split_coverage_problems(covered, adata)) == 2


def test_user_dataset_is_located_by_name(tmp_path):
    from perturb_assets.core.datasets import add_user_dataset
    from perturb_assets.core.simulate import simulate_perturbseq, write_gears_dataset

    folder = write_gears_dataset(
        simulate_perturbseq(n_cells=600, n_genes=60, n_perturbations=8, compute_de=False),
        tmp_path / "src",
    )
    add_user_dataset(folder, "my_screen", tmp_path)
    path, origin = A._locate_raw("my_screen", DataSources(data_root=str(tmp_path)), None)
    assert origin == "user" and path.name == "perturb_processed.h5ad" and path.exists()
    with pytest.raises(dg.Failure, match="neither built in"):
        A._locate_raw("unknown_screen", DataSources(data_root=str(tmp_path)), None)
