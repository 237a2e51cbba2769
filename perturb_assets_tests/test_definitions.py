"""The code location: what a user sees in the UI and on the command line."""

import anndata
import dagster as dg
import numpy as np
import pytest
import scipy.sparse as sp
from anndata import AnnData

from perturb_assets import cli
from perturb_assets.core.datasets import BUILTIN_DATASETS, load_gears_dataset
from perturb_assets.core.io import read_gmt
from perturb_assets.definitions import defs
from perturb_assets.defs.partitions import dataset_names, instance_with_datasets


def test_partitions_jobs_sensor_and_schedule():
    main = defs.resolve_job_def("main_job")
    assert main.partitions_def == dg.DynamicPartitionsDefinition(name="datasets")
    instance = instance_with_datasets()
    keys = main.partitions_def.get_partition_keys(dynamic_partitions_store=instance)
    assert set(BUILTIN_DATASETS) <= set(keys) and "synthetic" in keys
    for name in ("automation_sensor", "dataset_sensor"):
        assert defs.resolve_sensor_def(name).default_status == dg.DefaultSensorStatus.RUNNING
    schedule = defs.resolve_schedule_def("input_files_refresh_schedule")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING


def test_every_asset_has_a_code_version_and_lineage():
    graph = defs.resolve_asset_graph()
    materialisable = [k for k in graph.materializable_asset_keys]
    assert len(materialisable) >= 30
    for key in materialisable:
        assert graph.get(key).code_version, key
    metrics_parents = {k.to_user_string() for k in graph.get(dg.AssetKey("metrics")).parent_keys}
    assert {"pseudobulk", "de_genes", "perturbation_split", "random_forest_go_predictions",
            "train_mean_predictions"} <= metrics_parents  # fmt: skip


def _write_raw_counts(path, n_cells=60):
    rng = np.random.default_rng(0)
    counts = sp.csr_matrix(rng.poisson(2.0, size=(n_cells, 8)).astype(np.float32))
    adata = AnnData(counts)
    adata.obs_names = [f"c{i}" for i in range(n_cells)]
    adata.var_names = [f"ENSG{i:011d}" for i in range(8)]
    adata.var["gene_name"] = [f"G{i}" for i in range(8)]
    # enough perturbations to split into train, validation and test (add-dataset checks it)
    conditions = ["ctrl", "G1+ctrl", "G2+ctrl", "G3+ctrl", "G4+ctrl", "G5+ctrl", "G1+G2"]
    adata.obs["condition"] = np.resize(conditions, n_cells)
    adata.write_h5ad(path)


def test_add_dataset_command_makes_a_partition(tmp_path, capsys):
    source = tmp_path / "screen.h5ad"
    _write_raw_counts(source)
    assert "my_screen" not in dataset_names()
    assert cli.main(["add-dataset", str(source), "--name", "my_screen"]) == 0
    assert "my_screen" in dataset_names()
    assert cli.main(["list-datasets"]) == 0
    assert "my_screen" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["../evil", "a/b", "Norman", "synthetic"])
def test_add_dataset_rejects_bad_or_builtin_names(tmp_path, capsys, name):
    source = tmp_path / "screen.h5ad"
    _write_raw_counts(source)
    assert cli.main(["add-dataset", str(source), "--name", name]) == 2
    assert "error:" in capsys.readouterr().err
    assert not (tmp_path / "evil").exists()


def test_add_dataset_reports_the_bad_file_and_field(tmp_path, capsys):
    source = tmp_path / "bad.h5ad"
    _write_raw_counts(source)
    broken = anndata.read_h5ad(source)
    del broken.obs["condition"]
    broken.write_h5ad(source)
    assert cli.main(["add-dataset", str(source), "--name", "broken"]) == 2
    err = capsys.readouterr().err
    assert "bad.h5ad" in err and "condition" in err
    assert "broken" not in dataset_names()


def test_simulate_command_writes_a_gears_folder(tmp_path):
    out = tmp_path / "sim"
    args = ["simulate", str(out), "--cells", "600", "--genes", "80", "--perturbations", "12"]
    assert cli.main(args) == 0
    adata = load_gears_dataset(out)  # validates the GEARS layout
    assert adata.n_obs == 600 and adata.n_vars == 80
    assert adata.obs["condition"].nunique() == 13  # 12 perturbations + ctrl
    assert read_gmt(out / "gene_annotations.gmt").shape[0] >= 80
