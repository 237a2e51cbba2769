"""Foundation models and the user's predictions as assets, scored by the same metrics asset."""

import dataclasses
import hashlib
import json
import pickle

import anndata as ad
import dagster as dg
import numpy as np
import pandas as pd
import pytest
from dagster_k8s.job import (
    DagsterK8sJobConfig,
    construct_dagster_k8s_job,
    get_user_defined_k8s_config,
)

import perturb_assets.defs
from perturb_assets.core.errors import DatasetError
from perturb_assets.core.io import VersionedStore
from perturb_assets.core.models import predictors, read_user_predictions
from perturb_assets.core.models.foundation import FoundationInputs, MissingModelFiles, run_scgpt
from perturb_assets.defs.foundation.assets import foundation_assets
from perturb_assets.defs.jobs import MAIN_BEFORE_RESCORE
from perturb_assets.defs.partitions import instance_with_datasets
from perturb_assets.defs.resources import build_resources

SIM = {"n_cells": 1500, "n_genes": 150, "n_perturbations": 30, "combo_fraction": 0.3, "seed": 1}
TINY = {
    "train_scgpt": {"config": {"epochs": 2, "batch_size": 16, "max_eval_cells": 10}},
    "train_gears": {"config": {"epochs": 1, "hidden_size": 16}},
    "train_gears_scfoundation_emb": {"config": {"epochs": 1, "hidden_size": 16}},
}


def _defs(root):
    return dg.Definitions.merge(
        dg.load_defs(perturb_assets.defs), dg.Definitions(resources=build_resources(root))
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The main job, then the foundation job with the tiny configuration, on synthetic."""
    root = tmp_path_factory.mktemp("foundation")
    defs, instance = _defs(root), instance_with_datasets()
    run_config = {"ops": {"raw_dataset": {"config": SIM}}}
    # As `perturb-assets main` runs them: the main job leaves the scoring to the foundation job.
    main = defs.resolve_job_def("main_job")
    before_rescore = MAIN_BEFORE_RESCORE.resolve(defs.resolve_asset_graph())
    assert main.execute_in_process(
        partition_key="synthetic", instance=instance, run_config=run_config,
        asset_selection=list(before_rescore),
    ).success  # fmt: skip
    result = defs.resolve_job_def("foundation_job").execute_in_process(
        partition_key="synthetic", instance=instance, run_config={"ops": TINY}
    )
    assert result.success
    return root, defs, instance, result


def _metrics(root) -> pd.DataFrame:
    table = VersionedStore(root).read("assets", "metrics", "synthetic")
    return table[(table["subgroup"] == "all") & (table["metric"] == "pearson_delta")]


def test_foundation_models_add_rows_to_the_same_metrics_table(trained):
    root, *_ = trained
    rows = _metrics(root).set_index(["model", "features"])
    for predictor in predictors(foundation=True):
        row = rows.loc[(predictor.model.name, predictor.features_label)]
        assert row["n_conditions"] > 0 and np.isfinite(row["value"])
        assert np.isfinite(row["diff_vs_train_mean"])  # paired with Train Mean like any model
    # The paper's fine-tuned scGPT sits beside ours only on the real datasets.
    assert ("scgpt", "finetuned") in rows.index


def test_trained_weights_are_an_asset_with_checksum_and_training_config(trained):
    root, _, instance, _ = trained
    for predictor in predictors(foundation=True):
        key = dg.AssetKey(f"{predictor.model.name}_weights")
        manifest = VersionedStore(root).read("assets", key.path[0], "synthetic")
        event = instance.get_latest_materialization_event(key)
        metadata = event.asset_materialization.metadata
        digest = hashlib.sha256(open(metadata["model_file"].value, "rb").read()).hexdigest()
        assert manifest["sha256"] == metadata["sha256"].value == digest
        # The stored value names the file by its store key, never by the root's path.
        assert manifest["file"].startswith("models/") and str(root) not in manifest["file"]
        assert metadata["training_config"].value["epochs"] == TINY[
            f"train_{predictor.model.name}"]["config"]["epochs"]  # fmt: skip


def test_each_epoch_is_logged_to_dagster(trained):
    _, _, instance, result = trained
    messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert sum("epoch 1/2" in m or "epoch 2/2" in m for m in messages) == 2  # scGPT
    assert any(m.startswith("Epoch 1: Train Overall MSE") for m in messages)  # GEARS


def test_gpu_assets_request_a_gpu_pod_through_dagster_k8s(monkeypatch):
    monkeypatch.setenv("PERTURB_ASSETS_GPU_NODE_SELECTOR", '{"pool": "a100"}')
    from perturb_assets.defs.foundation.k8s import GPU_POOL, gpu_op_tags

    for asset in foundation_assets:
        assert asset.op.tags["device"] == "gpu" and asset.op.pool == GPU_POOL
    tags = {k: v if isinstance(v, str) else json.dumps(v) for k, v in gpu_op_tags().items()}
    job = construct_dagster_k8s_job(
        DagsterK8sJobConfig(job_image="perturb-assets:cuda", dagster_home="/opt/dagster",
                            image_pull_policy="IfNotPresent"),
        args=["dagster", "api", "execute_step"],
        job_name="train-scgpt",
        user_defined_k8s_config=get_user_defined_k8s_config(tags),
    )  # fmt: skip
    pod = job.spec.template.spec
    container = pod.containers[0]
    assert container.resources.limits["nvidia.com/gpu"] == "1"
    assert pod.node_selector == {"pool": "a100"}
    assert any(t.key == "nvidia.com/gpu" for t in pod.tolerations)


def test_scgpt_without_a_checkpoint_says_where_to_put_it(tmp_path):
    inputs = FoundationInputs(expression=ad.AnnData(np.zeros((1, 1))), split=pd.DataFrame(),
                              data_root=tmp_path)  # fmt: skip
    with pytest.raises(MissingModelFiles, match="checkpoints/scgpt_human"):
        run_scgpt(inputs, None, "cpu", print)


# --- bring your own predictions ---------------------------------------------------------------


def _truth(root):
    profiles = VersionedStore(root).read("assets", "pseudobulk", "synthetic")
    split = VersionedStore(root).read("assets", "perturbation_split", "synthetic")
    test = list(split.index[split["split"] == "test"])
    return profiles, profiles.to_df().loc[test]


@dataclasses.dataclass
class UserScoring:
    """One scoring of a folder of user prediction files: the metrics table and what the run
    said (the files are removed again afterwards)."""

    truth: pd.DataFrame
    metrics: pd.DataFrame
    metrics_metadata: dict
    check: dg.AssetCheckEvaluation


@pytest.fixture(scope="module")
def user_scoring(trained) -> UserScoring:
    """Good, bad and partial prediction files dropped together into
    ``predictions/synthetic/``, then ``user_predictions``, its check and ``metrics`` once:
    the tests below each read their files' rows (one scoring instead of three)."""
    root, defs, instance, _ = trained
    profiles, truth = _truth(root)
    folder = root / "predictions" / "synthetic"
    folder.mkdir(parents=True, exist_ok=True)
    before = set(folder.iterdir())
    truth.to_parquet(folder / "oracle.parquet")  # a perfect model, genes as ids
    truth.set_axis(profiles.var["gene_name"].to_numpy(), axis=1).to_csv(folder / "by_symbol.csv")
    (truth * 0 + profiles.to_df().loc["ctrl"].to_numpy()).to_parquet(folder / "no_change.parquet")
    cells = ad.AnnData(np.repeat(truth.to_numpy(), 3, axis=0), var=profiles.var)
    cells.obs["condition"] = np.repeat(truth.index.to_numpy(), 3)
    cells.write_h5ad(folder / "per_cell.h5ad")
    truth.to_parquet(folder / "good.parquet")
    bad = truth.copy()
    bad.iloc[0, 0] = np.nan
    bad.to_parquet(folder / "nan_model.parquet")
    (folder / "old_model.pkl").write_bytes(b"a pickle is never read")
    truth.iloc[3:].to_parquet(folder / "partial.parquet")
    selection = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection={
            dg.AssetKey(k) for k in ("user_predictions", "metrics", "metrics_per_condition")
        },
        asset_check_selection={
            dg.AssetCheckKey(dg.AssetKey("user_predictions"), "user_predictions_files_accepted")
        },
    )
    try:  # a bad file fails the check; the run goes on without it
        result = selection.execute_in_process(
            partition_key="synthetic", instance=instance, raise_on_error=False
        )
    finally:
        for path in set(folder.iterdir()) - before:
            path.unlink()
    check = next(
        e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    )
    return UserScoring(truth, _metrics(root), _latest_metadata(instance, "metrics"), check)


def test_a_dropped_predictions_file_becomes_a_scored_model_without_a_reload(user_scoring):
    rows = user_scoring.metrics.set_index("model")
    assert rows.loc["oracle", "value"] == pytest.approx(1.0)
    assert rows.loc["per_cell", "value"] == pytest.approx(1.0)
    assert rows.loc["by_symbol", "value"] == pytest.approx(1.0)
    assert np.isnan(rows.loc["no_change", "value"])  # constant delta: undefined, as scipy
    assert rows.loc["oracle", "win_rate_vs_train_mean"] == 1.0
    assert (rows.loc[["oracle", "per_cell"], "features"] == "user").all()


def test_a_bad_predictions_file_blocks_only_itself(user_scoring):
    models = set(user_scoring.metrics["model"])
    assert "good" in models and "nan_model" not in models and "train_mean" in models
    named = user_scoring.metrics_metadata["rejected_prediction_files"]
    assert "nan_model.parquet" in named and "old_model.pkl" in named
    check = user_scoring.check
    assert not check.passed and "nan_model.parquet (values" in check.description


@pytest.mark.parametrize(
    ("case", "field"),
    [("unknown_condition", "conditions"), ("duplicate_condition", "conditions"),
     ("missing_gene", "genes"), ("not_log_scale", "values"), ("nan", "values")],
)  # fmt: skip
def test_bad_predictions_file_names_the_file_and_field(tmp_path, case, field):
    genes = [f"ENSG{i}" for i in range(4)]
    profiles = ad.AnnData(np.ones((3, 4)), var=pd.DataFrame(index=genes))
    profiles.obs_names = ["ctrl", "A+ctrl", "B+ctrl"]
    frame = pd.DataFrame(np.ones((2, 4)), index=["A+ctrl", "B+ctrl"], columns=genes)
    if case == "unknown_condition":
        frame.index = ["A+ctrl", "Z+ctrl"]
    elif case == "duplicate_condition":
        frame.index = ["A+ctrl", "A+ctrl"]
    elif case == "missing_gene":
        frame = frame.drop(columns="ENSG3")
    elif case == "not_log_scale":
        frame.iloc[0, 0] = 5000.0
    else:
        frame.iloc[1, 2] = np.nan
    path = tmp_path / "my_model.csv"
    frame.to_csv(path)
    with pytest.raises(DatasetError) as info:
        read_user_predictions(path, profiles)
    assert info.value.path == str(path) and info.value.field == field


def test_predictions_for_an_unknown_dataset_fail_the_observation_naming_it(tmp_path):
    (tmp_path / "predictions" / "normann").mkdir(parents=True)
    defs = _defs(tmp_path)
    job = dg.define_asset_job("observe", selection=["user_prediction_files"])
    observed = dg.Definitions.merge(defs, dg.Definitions(jobs=[job])).resolve_job_def("observe")
    result = observed.execute_in_process(raise_on_error=False)
    assert not result.success
    message = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error
    assert "normann" in message.to_string() and "no dataset named" in message.to_string()


# --- coverage: GEARS' conditions, partial prediction files ------------------------------------


def _materialise(defs, instance, keys, run_config=None) -> None:
    selection = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection={dg.AssetKey(k) for k in keys}
    )
    result = selection.execute_in_process(
        partition_key="synthetic", instance=instance, run_config=run_config
    )
    assert result.success


def _latest_metadata(instance, key: str) -> dict:
    event = instance.get_latest_materialization_event(dg.AssetKey(key))
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def test_every_model_is_also_scored_on_the_conditions_gears_covers(trained):
    root, *_ = trained
    table = VersionedStore(root).read("assets", "metrics", "synthetic")
    rows = table[(table["metric"] == "pearson_delta") & (table["de_method"] == "none")]
    covered = rows[rows["subgroup"] == "gears_covered"].set_index(["model", "features"])
    everyone = rows[rows["subgroup"] == "all"].set_index(["model", "features", "protocol"])
    assert ("train_mean", "none") in covered.index and ("gears", "go_graph") in covered.index
    assert len(covered) == len(everyone)  # every model, the noise ceiling too
    gears_n = everyone.xs("gears", level="model")["n_conditions"].iloc[0]
    ours = covered[covered.index.get_level_values("features") != "user"]  # user files: any NaN
    assert (ours["n_conditions"] == gears_n).all()


def test_a_go_file_without_some_test_targets_leaves_them_unpredicted_and_says_so(trained):
    """GEARS' own gene2go_all.pkl at data/annotations/ lacking two test targets: GEARS (the
    smallest config) neither predicts them nor is scored on them; every model has a
    ``gears_covered`` row without them."""
    from perturb_assets.core.models.foundation import gene2go_from_annotations

    root, defs, instance, _ = trained
    store = VersionedStore(root)
    split = store.read("assets", "perturbation_split", "synthetic")
    test = list(split.index[split["split"] == "test"])
    singles = [c for c in test if "ctrl" in c][:2]
    gone = {g for c in singles for g in c.split("+") if g != "ctrl"}
    gene2go = gene2go_from_annotations(store.read("assets", "go_annotations", "synthetic"))
    (root / "annotations").mkdir(exist_ok=True)
    path = root / "annotations" / "gene2go_all.pkl"
    path.write_bytes(pickle.dumps({g: t for g, t in gene2go.items() if g not in gone}))
    try:
        config = {"ops": {"train_gears": {"config": {"epochs": 1, "hidden_size": 4}}}}
        _materialise(defs, instance, ["gears_predictions", "gears_weights"], config)
    finally:
        path.unlink()
    _materialise(defs, instance, ["metrics", "metrics_per_condition"])
    predicted = set(store.read("assets", "gears_predictions", "synthetic").obs_names)
    dropped = {c for c in test if any(g in gone for g in c.split("+"))}
    assert set(singles) <= dropped and predicted == set(test) - dropped
    meta = _latest_metadata(instance, "gears_predictions")
    assert meta["n_test_conditions_without_go"] == len(dropped)
    assert set(singles) <= set(meta["conditions_without_go"].split(", "))
    assert meta["go_source"] == str(path)
    table = store.read("assets", "metrics", "synthetic")
    rows = table[(table["metric"] == "pearson_delta") & (table["de_method"] == "none")]
    n = rows.groupby(["model", "subgroup"])["n_conditions"].unique()  # one per protocol
    assert list(n[("gears", "all")]) == [len(test) - len(dropped)]
    assert list(n[("train_mean", "gears_covered")]) == [len(test) - len(dropped)]
    assert list(n[("train_mean", "all")]) == [len(test)]
    coverage = _latest_metadata(instance, "metrics")["prediction_coverage"]
    assert "gears" in coverage and str(len(dropped)) in coverage


def test_a_partial_predictions_file_is_scored_on_what_it_covers_and_the_gap_is_named(
    user_scoring,
):
    truth = user_scoring.truth
    rows = user_scoring.metrics.set_index("model")
    assert rows.loc["partial", "n_conditions"] == len(truth) - 3
    assert rows.loc["partial", "value"] == pytest.approx(1.0)
    meta = user_scoring.metrics_metadata
    table = [
        [c.strip() for c in r.split("|")[1:-1]] for r in meta["prediction_coverage"].splitlines()
    ]
    row = dict(zip(table[0], next(r for r in table if r[0] == "partial"), strict=True))
    assert (row["n_test"], row["n_scored"], row["n_missing"]) == (
        str(len(truth)),
        str(len(truth) - 3),
        "3",
    )
    assert set(row["missing"].split(", ")) == set(truth.index[:3])
    assert meta["n_models_with_missing_conditions"] >= 1
