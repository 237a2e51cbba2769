"""``perturb-assets export-celleval``: the pair loads, cell-eval accepts it, and its
``pearson_delta`` is our metrics table's."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import anndata as ad
import dagster as dg
import numpy as np
import pandas as pd
import pytest

import perturb_assets.defs
from perturb_assets.core.evaluation import evaluate_models
from perturb_assets.core.io import VersionedStore
from perturb_assets.defs.partitions import instance_with_datasets
from perturb_assets.defs.resources import build_resources

REPO = Path(__file__).resolve().parents[1]
SMALL = {"n_cells": 1500, "n_genes": 120, "n_perturbations": 24}
ASSETS = [
    "raw_dataset",
    "expression",
    "pseudobulk",
    "perturbation_split",
    "go_annotations",
    "go_pca_features",
    "train_mean_predictions",
    "knn_go_predictions",
]


def _cli(args: list[str], root: Path) -> subprocess.CompletedProcess:
    environment = {
        **{k: v for k, v in os.environ.items() if k != "PERTURB_ASSETS_STORAGE_URL"},
        "DAGSTER_HOME": str(root / "home"),
        "PERTURB_ASSETS_DATA_ROOT": str(root / "data"),
    }
    command = [sys.executable, "-m", "perturb_assets.cli", *args]
    return subprocess.run(command, env=environment, capture_output=True, text=True, cwd=REPO)


@pytest.fixture(scope="module")
def instance_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("celleval")
    (root / "home").mkdir()
    shutil.copy(REPO / "deploy" / "local" / "dagster.yaml", root / "home" / "dagster.yaml")
    dg.materialize(
        list(dg.load_defs(perturb_assets.defs).assets),
        selection=ASSETS,
        partition_key="synthetic",
        instance=instance_with_datasets(),
        resources=build_resources(root / "data"),
        run_config={"ops": {"raw_dataset": {"config": SMALL}}},
    )
    return root


def _our_pearson_delta(root: Path) -> tuple[float, pd.Series]:
    """Our metrics table's whole-test-set pearson_delta of knn/go, and its per-condition values."""
    store = VersionedStore(str(root / "data"))
    read = lambda name: store.read("assets", name, "synthetic")  # noqa: E731
    pseudobulk = read("pseudobulk")
    no_de = pd.DataFrame(columns=["method", "targets", "condition", "rank", "gene_id"])
    tables = [read("train_mean_predictions"), read("knn_go_predictions")]
    summary, per_condition = evaluate_models(
        tables, pseudobulk.to_df(), read("perturbation_split"), no_de, "synthetic", n_boot=10
    )
    row = summary[(summary["model"] == "knn") & (summary["metric"] == "pearson_delta")
                  & (summary["subgroup"] == "all")]  # fmt: skip
    ours = per_condition[(per_condition["model"] == "knn")
                         & (per_condition["metric"] == "pearson_delta")]  # fmt: skip
    return float(row["value"].iloc[0]), ours.set_index("condition")["value"]


def test_export_is_accepted_by_cell_eval_with_our_pearson_delta(instance_root, tmp_path):
    from cell_eval import MetricsEvaluator
    from cell_eval._types import MetricType
    from cell_eval.metrics import metrics_registry

    done = _cli(["export-celleval", "synthetic", "knn", "--features", "go", "--out",
                 str(tmp_path / "export")], instance_root)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    pred_path, real_path = (
        tmp_path / "export" / "knn_go_pred.h5ad",
        tmp_path / "export" / "knn_go_real.h5ad",
    )
    assert f"pred: {pred_path}" in done.stdout and f"real: {real_path}" in done.stdout
    assert f"cell-eval run -ap {pred_path} -ar {real_path} --control-pert ctrl" in done.stdout
    pred, real = ad.read_h5ad(pred_path), ad.read_h5ad(real_path)
    assert list(pred.var_names) == list(real.var_names)
    # One predicted cell per real cell of each condition (cell-eval's mean-baseline layout).
    assert (pred.obs["condition"].value_counts().sort_index()
            == real.obs["condition"].value_counts().sort_index()).all()  # fmt: skip
    assert np.asarray(pred.X).min() >= 0

    evaluator = MetricsEvaluator(
        pred, real, control_pert="ctrl", pert_col="condition", num_threads=1,
        outdir=str(tmp_path / "cell_eval_out"), skip_de=True,
    )  # fmt: skip
    others = [m for m in metrics_registry.list_metrics(MetricType.ANNDATA_PAIR)
              if m != "pearson_delta"]  # fmt: skip
    results, _ = evaluator.compute(profile="anndata", skip_metrics=others, write_csv=False)
    theirs = results.to_pandas().set_index("perturbation")["pearson_delta"]
    value, per_condition = _our_pearson_delta(instance_root)
    assert set(theirs.index) == set(per_condition.index)
    assert theirs.reindex(per_condition.index).to_numpy() == pytest.approx(
        per_condition.to_numpy(), abs=1e-5
    )
    assert theirs.mean() == pytest.approx(value, abs=1e-5)


def test_export_needs_the_feature_set_of_a_feature_model(instance_root):
    done = _cli(["export-celleval", "synthetic", "knn"], instance_root)
    assert done.returncode == 2 and "--features" in done.stderr
