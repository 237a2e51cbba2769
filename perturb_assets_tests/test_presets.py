"""Simulator presets: shaped like the paper's datasets, selectable everywhere."""

import typing
from importlib import resources

import anndata as ad
import dagster as dg
import pandas as pd
import pytest

import perturb_assets.defs
from perturb_assets.cli import main as cli_main
from perturb_assets.core.datasets import BUILTIN_DATASETS
from perturb_assets.core.gears import FILENAME, simulation_split
from perturb_assets.core.simulation import PRESETS, preset_params, simulated_conditions
from perturb_assets.defs.datasets.assets import SyntheticConfig
from perturb_assets.defs.partitions import dataset_names, instance_with_datasets
from perturb_assets.defs.resources import build_resources

LIKE = [name for name, preset in PRESETS.items() if preset.paper_dataset is not None]


def _paper_datasets() -> pd.DataFrame:
    path = resources.files("perturb_assets") / "reference" / "paper_datasets.csv"
    return pd.read_csv(path).set_index("dataset")


def test_every_preset_is_a_simulated_partition_and_a_config_choice():
    assert LIKE == ["adamson_like", "norman_like", "k562_like", "rpe1_like"]
    for name in PRESETS:
        assert name in dataset_names()
        assert not BUILTIN_DATASETS[name].is_downloadable
    choices = typing.get_args(SyntheticConfig.model_fields["preset"].annotation)
    assert set(choices) == {"partition", *PRESETS}


@pytest.mark.parametrize("name", LIKE)
def test_presets_have_the_paper_datasets_shape_and_split(name):
    """Cells and split sizes as in reference/paper_datasets.csv; Norman's subgroups close."""
    preset = PRESETS[name]
    paper = _paper_datasets().loc[preset.paper_dataset]
    params = preset.params()
    assert params.n_cells == paper["cells"]
    split = simulation_split(pd.Series(simulated_conditions(params)))
    sizes = split["split"].value_counts()
    # the paper counts ctrl among the training conditions, and so does the split
    assert sizes["train"] == paper["train_conditions_incl_ctrl"]
    assert sizes["val"] == paper["val_conditions"]
    assert sizes["test"] == paper["test_conditions"]
    if name == "norman_like":
        test = split.loc[split["split"] == "test", "subgroup"].value_counts()
        for group in ("combo_seen0", "combo_seen1", "combo_seen2", "unseen_single"):
            assert abs(test[group] - paper[f"norman_test_{group}"]) <= 3, group


def test_overrides_keep_the_rest_of_the_preset_and_bad_values_name_the_field():
    params = preset_params("norman_like", n_cells=5000, n_genes=400, n_perturbations=60)
    assert (params.modality, params.combo_fraction) == ("crispra", 0.45)
    assert params.n_cells == 5000
    with pytest.raises(ValueError, match="unknown simulator preset 'k562'.*k562_like"):
        preset_params("k562")
    with pytest.raises(ValueError, match="diversity must lie in"):
        preset_params("rpe1_like", diversity=2.0)


def test_raw_dataset_config_selects_a_preset(tmp_path):
    """``preset`` picks the base values; the overrides shrink it to test size."""
    small = {"n_cells": 3000, "n_genes": 300, "n_perturbations": 40}
    result = dg.materialize(
        list(dg.load_defs(perturb_assets.defs).assets),
        selection="raw_dataset",
        partition_key="synthetic",
        instance=instance_with_datasets(),
        resources=build_resources(tmp_path),
        run_config={"ops": {"raw_dataset": {"config": {"preset": "norman_like", **small}}}},
    )
    manifest = result.output_for_node("raw_dataset")
    assert manifest["simulator_config"] | small == manifest["simulator_config"]
    assert manifest["simulator_config"]["modality"] == "crispra"
    assert manifest["simulator_config"]["combo_fraction"] == 0.45


def test_simulate_command_takes_a_preset(tmp_path, capsys):
    out = tmp_path / "rpe1_small"
    args = ["simulate", str(out), "--preset", "rpe1_like", "--cells", "3000", "--genes", "300"]
    assert cli_main([*args, "--perturbations", "40", "--no-de"]) == 0
    written = ad.read_h5ad(out / FILENAME, backed="r")
    assert written.shape == (3000, 300)
    assert written.obs["cell_type"].astype(str).unique().tolist() == ["RPE1"]
    with pytest.raises(SystemExit):
        cli_main(["simulate", str(out), "--preset", "k562"])
    assert "invalid choice" in capsys.readouterr().err
