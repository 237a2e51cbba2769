"""Every config class rejects an invalid value before any work starts, naming what is allowed."""

import re
import time

import dagster as dg
import pytest

import perturb_assets.defs
from perturb_assets.defs.datasets import assets as dataset_assets
from perturb_assets.defs.features import assets as feature_assets
from perturb_assets.defs.foundation import assets as foundation_assets
from perturb_assets.defs.metrics import assets as metrics_assets
from perturb_assets.defs.models import assets as model_assets
from perturb_assets.defs.partitions import instance_with_datasets
from perturb_assets.defs.resources import build_resources

ASSETS = list(dg.load_defs(perturb_assets.defs).assets)
# Every asset key to its definition (a multi-asset such as ``metrics`` is run whole).
BY_NAME = {
    key.to_user_string(): a for a in ASSETS if isinstance(a, dg.AssetsDefinition) for key in a.keys
}


def _materialize(tmp_path, asset: str, config: dict):
    return dg.materialize(
        ASSETS,
        selection=[BY_NAME[asset]],
        partition_key="synthetic",
        instance=instance_with_datasets(),
        resources=build_resources(tmp_path),
        run_config={"ops": {BY_NAME[asset].node_def.name: {"config": config}}},
        raise_on_error=False,
    )


# A choice outside its Literal: refused when the run is launched, with the allowed values.
CHOICES = [
    ("go_annotations", {"source": "fle"}, "'auto', 'simulator', 'file', 'decoupler'"),
    ("train_mean_predictions", {"protocol": "published"}, "'published_2025', 'preprint_2024'"),
    ("random_forest_go_predictions", {"missing_gene_policy": "ignore"}, "'zero', 'drop'"),
    ("random_forest_go_predictions", {"implementation": "sklearn"}, "'fast', 'reference'"),
    ("raw_dataset", {"preset": "k562"}, "'partition', 'synthetic', 'adamson_like'"),
    ("knn_scgpt_predictions", {"protocol": "2024"}, "'published_2025', 'preprint_2024'"),
    ("metrics", {"headline_de_method": "ttest"}, "'t-test', 'wilcoxon'"),
    ("raw_dataset", {"modality": "crispr"}, "'crispri', 'crispra'"),
]


@pytest.mark.parametrize(("asset", "config", "allowed"), CHOICES, ids=[c[0] for c in CHOICES])
def test_invalid_choice_is_refused_at_launch(tmp_path, asset, config, allowed):
    with pytest.raises(dg.DagsterInvalidConfigError) as info:
        _materialize(tmp_path, asset, config)
    assert allowed in str(info.value)
    assert not (tmp_path / "assets").exists()


# A value out of range: the step fails as it starts, once, before it simulates or downloads.
RANGES = [
    ({"n_cells": 0}, "n_cells must be a positive integer"),
    ({"diversity": 5.0}, "diversity must lie in [0, 1]"),
    ({"n_cells": 100, "n_perturbations": 120}, "n_cells (100) is too few"),
]


@pytest.mark.parametrize(("config", "message"), RANGES)
def test_out_of_range_simulation_fails_in_seconds_without_retries(tmp_path, config, message):
    start = time.perf_counter()
    result = _materialize(tmp_path, "raw_dataset", config)
    assert time.perf_counter() - start < 30
    assert not result.success
    events = [e.event_type_value for e in result.all_events]
    assert "STEP_UP_FOR_RETRY" not in events and events.count("STEP_FAILURE") == 1
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert message in failure.step_failure_data.error.to_string()
    assert not (tmp_path / "gears").exists()  # nothing was simulated


# Config classes of assets with inputs: Dagster loads the inputs first, then builds the
# config, so the class itself is what refuses the value.
@pytest.mark.parametrize(
    ("config_class", "values", "message"),
    [
        (dataset_assets.SplitConfig, {"train_gene_set_size": 1.5}, "train_gene_set_size must be"),
        (dataset_assets.SplitConfig, {"seed": -1}, "seed must be an int"),
        (feature_assets.AnnotationConfig, {"n_components": 0}, "greater than or equal to 1"),
        (
            model_assets.FeaturePredictionConfig,
            {"missing_gene_policy": "ignore"},
            "'zero' or 'drop'",
        ),
        (model_assets.PredictionConfig, {"protocol": "x"}, "'published_2025' or 'preprint_2024'"),
        (metrics_assets.MetricsConfig, {"headline_de_method": "z"}, "'t-test' or 'wilcoxon'"),
        (foundation_assets.ScGPTConfig, {"device": "gpu"}, "'auto', 'cuda' or 'cpu'"),
        (foundation_assets.ScGPTConfig, {"epochs": 0}, "greater than or equal to 1"),
        (foundation_assets.ScGPTConfig, {"loop": "turbo"}, "'fast' or 'reference'"),
        (foundation_assets.GearsConfig, {"hidden_size": 0}, "greater than or equal to 1"),
        (foundation_assets.GearsConfig, {"lr": -1.0}, "greater than 0"),
    ],
)
def test_config_class_refuses_invalid_values(config_class, values, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        config_class(**values)
    config_class()  # the defaults are valid
