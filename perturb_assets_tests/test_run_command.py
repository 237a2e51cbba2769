"""``perturb-assets run`` uses the configured executor: model steps side by side, within cores."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

import perturb_assets.defs
from perturb_assets.defs.partitions import instance_with_datasets
from perturb_assets.defs.resources import build_resources

REPO = Path(__file__).resolve().parents[1]
SMALL = {"n_cells": 2500, "n_genes": 200, "n_perturbations": 40}
UPSTREAM = [
    "raw_dataset",
    "expression",
    "pseudobulk",
    "perturbation_split",
    "go_annotations",
    "go_pca_features",
]
MODELS = ["train_mean_predictions", "knn_go_predictions", "linear_pca_go_predictions"]


def _cli(args: list[str], root: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {
        **os.environ,
        "DAGSTER_HOME": str(root / "home"),
        "PERTURB_ASSETS_DATA_ROOT": str(root / "data"),
        **env,
    }
    command = [sys.executable, "-m", "perturb_assets.cli", *args]
    return subprocess.run(command, env=environment, capture_output=True, text=True, cwd=REPO)


def _times(events, kind: str) -> dict[str, float]:
    return {r.step_key: r.timestamp for r in events if r.dagster_event.event_type_value == kind}


@pytest.fixture
def home(tmp_path):
    (tmp_path / "home").mkdir()
    shutil.copy(REPO / "deploy" / "local" / "dagster.yaml", tmp_path / "home" / "dagster.yaml")
    return tmp_path


@pytest.fixture
def instance_root(home):
    tmp_path = home
    dg.materialize(
        list(dg.load_defs(perturb_assets.defs).assets),
        selection=UPSTREAM,
        partition_key="synthetic",
        instance=instance_with_datasets(),
        resources=build_resources(tmp_path / "data"),
        run_config={"ops": {"raw_dataset": {"config": SMALL}}},
    )
    return tmp_path


def test_multiprocess_runs_model_steps_side_by_side_with_one_job_each(instance_root):
    done = _cli(
        ["run", "main_job", "--partition", "synthetic", "--select", ",".join(MODELS)],
        instance_root,
        PERTURB_ASSETS_EXECUTOR="multiprocess",
        PERTURB_ASSETS_CORES="2",
        PERTURB_ASSETS_MAX_CONCURRENT="2",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    os.environ["DAGSTER_HOME"] = str(instance_root / "home")
    try:
        with dg.DagsterInstance.get() as instance:
            run = instance.get_runs(limit=1)[0]
            events = [r for r in instance.all_logs(run.run_id) if r.dagster_event is not None]
    finally:
        del os.environ["DAGSTER_HOME"]
    assert run.tags["dagster/partition"] == "synthetic"
    starts = _times(events, "STEP_START")
    ends = _times(events, "STEP_SUCCESS")
    assert set(starts) == set(ends) == set(MODELS)
    # two steps ran at the same time: a step started before another had finished
    assert any(starts[a] < starts[b] < ends[a] for a in MODELS for b in MODELS if a != b)
    materialized = [
        r for r in events if r.dagster_event.event_type_value == "ASSET_MATERIALIZATION"
    ]
    for record in materialized:
        metadata = record.dagster_event.materialization.metadata
        assert metadata["n_jobs"].value == 1  # 2 cores shared by 2 steps


def test_run_refuses_an_oversubscribed_budget_before_starting(home):
    done = _cli(
        ["run", "main_job", "--partition", "synthetic", "--select", MODELS[0]],
        home,
        PERTURB_ASSETS_EXECUTOR="multiprocess",
        PERTURB_ASSETS_CORES="2",
        PERTURB_ASSETS_MAX_CONCURRENT="3",
    )
    assert done.returncode != 0
    assert "PERTURB_ASSETS_MAX_CONCURRENT=3 exceeds PERTURB_ASSETS_CORES=2" in done.stderr


@pytest.mark.parametrize("dataset", ["synthetic", "norman"])
def test_main_runs_main_shs_jobs_in_order_in_one_process(monkeypatch, dataset):
    from perturb_assets import cli

    calls = []
    monkeypatch.setattr(cli, "_run_job", lambda job, **options: calls.append((job, options)) or 0)
    monkeypatch.setattr(cli, "_summary", lambda args: calls.append(("summary", args.dataset)) or 0)
    assert cli.main(["main", dataset]) == 0
    jobs = [job for job, _ in calls]
    expected = ["observe_input_files", "main_job", "foundation_job", "diversity_sweep_job",
                "benchmark_summary_job", "summary"]  # fmt: skip
    if dataset != "synthetic":  # the foundation models need a GPU on a real dataset
        expected.remove("foundation_job")
    assert jobs == expected
    options = dict(calls)
    assert options["diversity_sweep_job"] == {"all_partitions": True, "missing_only": True}
    if dataset != "synthetic":
        assert options["main_job"] == {"partition": dataset}
        return
    config = Path(options["foundation_job"]["config_path"])
    assert config.name == "foundation_tiny.yaml" and config.exists()
    # The main job leaves the scoring to the foundation job: together they materialise every
    # asset of both jobs, and the metrics (and what reads them) once.
    from perturb_assets.definitions import defs

    selected = set(options["main_job"].pop("select"))
    assert options["main_job"] == {"partition": "synthetic"}
    main_keys = {k.to_user_string() for k in defs.resolve_job_def("main_job").asset_layer
                 .selected_asset_keys}  # fmt: skip
    foundation = {k.to_user_string() for k in defs.resolve_job_def("foundation_job")
                  .asset_layer.selected_asset_keys}  # fmt: skip
    assert "metrics" in main_keys and "metrics" in foundation and "metrics" not in selected
    assert selected | foundation >= main_keys and selected <= main_keys
    assert not selected & foundation


def test_main_stops_at_the_first_failing_job(monkeypatch):
    from perturb_assets import cli

    calls = []
    monkeypatch.setattr(cli, "_run_job", lambda job, **o: calls.append(job) or (job == "main_job"))
    assert cli.main(["main"]) == 1
    assert calls == ["observe_input_files", "main_job"]
