"""The same inputs give the same bytes in any data root: every stored value and model file.

(``bash deploy/compare_roots.sh`` does this for the whole main job and the foundation models.)
"""

import dagster as dg

import perturb_assets.defs
from perturb_assets.core.io import VersionedStore, compare_content_hashes, content_hashes
from perturb_assets.defs.partitions import instance_with_datasets
from perturb_assets.defs.resources import build_resources

ASSETS = list(dg.load_defs(perturb_assets.defs).assets)
SMALL = {"n_cells": 900, "n_genes": 80, "n_perturbations": 24, "combo_fraction": 0.2, "seed": 5}
SELECTION = [
    "raw_dataset", "expression", "perturbation_split", "pseudobulk", "de_genes",
    "go_annotations", "go_pca_features", "train_mean_predictions",
    "random_forest_go_predictions", "knn_go_predictions", "additive_predictions",
    "noise_ceiling", "dataset_diversity",
]  # fmt: skip


def _materialise(root) -> dict[str, str]:
    result = dg.materialize(
        ASSETS,
        selection=SELECTION,
        partition_key="synthetic",
        instance=instance_with_datasets(),
        resources=build_resources(root),
        run_config={"ops": {"raw_dataset": {"config": SMALL}}},
    )
    assert result.success
    return content_hashes(VersionedStore(root), "assets", "models")


def test_two_data_roots_store_identical_bytes(tmp_path):
    first = _materialise(tmp_path / "a")
    second = _materialise(tmp_path / "another" / "root")
    assert {"models/random_forest_go_predictions/synthetic", "assets/raw_dataset/synthetic"} <= set(
        first
    )
    assert compare_content_hashes(first, second) == {
        "differ": [],
        "only_before": [],
        "only_after": [],
    }
