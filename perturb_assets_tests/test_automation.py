"""Automation, as the daemon runs it: refresh on content changes only, gated on blocking checks,
and datasets registered by a sensor.

One small user dataset goes through the main job once; then files change under it and the
automation ticks (``refresh_until_settled``: evaluate the conditions with Dagster's
``evaluate_automation_conditions``, run what they request, repeat).
"""

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from perturb_assets.benchmarks import incremental
from perturb_assets.core.io import ANNOTATIONS_SUBDIR, EMBEDDINGS_SUBDIR
from perturb_assets.defs.jobs import dataset_sensor
from perturb_assets.defs.partitions import DATASETS, instance_with_datasets

SMALL = {"n_cells": 900, "n_genes": 120, "n_perturbations": 16, "n_terms": 60}
SCGPT_CHAIN = {
    "scgpt_pca_features",
    *(f"{m}_scgpt_predictions" for m in ("random_forest", "elastic_net", "knn", "linear_pca")),
    "metrics",
    "metrics_per_condition",
    "genetic_interactions",
    "metric_calibration",
}


class Lab:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.name = incremental.lab_dataset(root, "synthetic", **SMALL)
        self.defs = incremental.code_location(root)
        self.instance = instance_with_datasets([self.name])
        incremental.observe_files(self.defs, self.instance)
        run = self.defs.resolve_job_def("main_job").execute_in_process(
            instance=self.instance, partition_key=self.name, run_config=incremental.QUIET
        )
        assert run.success
        self.cursor = None

    def refresh(self) -> incremental.Refresh:
        """Observe the files (the hourly schedule), then tick until nothing is requested."""
        incremental.observe_files(self.defs, self.instance)
        refresh, self.cursor = incremental.refresh_until_settled(
            self.defs, self.instance, self.cursor
        )
        return refresh


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Lab:
    lab = Lab(tmp_path_factory.mktemp("lab"))
    # The first ticks after a complete main-job run request nothing.
    assert lab.refresh().ticks == 0
    return lab


def test_re_observing_unchanged_files_requests_nothing(lab):
    # A file rewritten with the same bytes (new mtime) keeps its sha256 data version.
    path = lab.root / EMBEDDINGS_SUBDIR / "scgpt.parquet"
    path.write_bytes(path.read_bytes())
    assert lab.refresh().ticks == 0


def test_a_changed_embedding_recomputes_only_its_features_models_and_metrics(lab):
    incremental.replace_embedding(lab.root, "scgpt", seed=3)
    refresh = lab.refresh()
    assert refresh.assets == SCGPT_CHAIN
    assert {partition for _, partition in refresh.materialised} == {lab.name}
    assert refresh.failed_runs == 0


def test_a_failing_blocking_check_stops_the_refresh(lab):
    # The user's scELMo file keyed by Ensembl ids: PCA works, but no target has features.
    path = lab.root / EMBEDDINGS_SUBDIR / "scelmo.parquet"
    table = pd.read_parquet(path)
    table.index = [f"ENSG{i:011d}" for i in range(len(table))]
    table.to_parquet(path)
    refresh = lab.refresh()
    assert refresh.assets == {"scelmo_pca_features"}  # no scELMo model trains on it
    check = lab.instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [dg.AssetCheckKey(dg.AssetKey("scelmo_pca_features"), "scelmo_features_usable")]
    )
    evaluation = next(iter(check.values())).event.dagster_event.event_specific_data
    assert not evaluation.passed
    assert "no feature row" in evaluation.metadata["problems"].value


def test_a_changed_go_file_refreshes_the_go_chain(lab):
    gmt = lab.root / ANNOTATIONS_SUBDIR / "go.gmt"
    lines = gmt.read_text().splitlines()
    gmt.write_text("\n".join(lines[: len(lines) // 2]) + "\n")  # half the terms
    refresh = lab.refresh()
    assert {"go_annotations", "go_pca_features", "random_forest_go_predictions"} <= refresh.assets
    assert not any("scgpt" in key or "scelmo" in key for key in refresh.assets)


def test_the_dataset_sensor_registers_a_dropped_dataset_and_requests_its_run(tmp_path, monkeypatch):
    monkeypatch.setenv("PERTURB_ASSETS_DATA_ROOT", str(tmp_path))
    instance = dg.DagsterInstance.ephemeral()
    first = dataset_sensor(dg.build_sensor_context(instance=instance))
    (added,) = first.dynamic_partitions_requests
    assert "synthetic" in added.partition_keys and first.run_requests == []  # built-ins: no run
    instance.add_dynamic_partitions(DATASETS, list(added.partition_keys))

    # A user adds a dataset into <data root>/datasets/: no restart, no reload.
    name = incremental.lab_dataset(tmp_path, "synthetic", **SMALL)
    second = dataset_sensor(dg.build_sensor_context(instance=instance))
    assert [r.partition_keys for r in second.dynamic_partitions_requests] == [[name]]
    assert [(r.partition_key, r.run_key) for r in second.run_requests] == [(name, name)]
    instance.add_dynamic_partitions(DATASETS, [name])
    assert dataset_sensor(dg.build_sensor_context(instance=instance)).run_requests == []


def _latest(instance: dg.DagsterInstance, key: str, partition: str):
    event = instance.get_latest_materialization_event(dg.AssetKey(key))
    assert event.asset_materialization.partition == partition
    return event.asset_materialization


def test_re_running_an_unchanged_forest_changes_nothing_downstream(lab):
    """Random Forest (threads, n_jobs from the compute budget) writes the same bytes twice, so
    its data version stays and metrics is not requested."""
    key = "random_forest_go_predictions"
    before = _latest(lab.instance, key, lab.name)
    job = lab.defs.resolve_implicit_global_asset_job_def()
    run = job.execute_in_process(
        instance=lab.instance,
        partition_key=lab.name,
        asset_selection=[dg.AssetKey(key)],
        run_config=incremental.QUIET,
    )
    assert run.success
    after = _latest(lab.instance, key, lab.name)
    assert after.metadata["content_sha256"] == before.metadata["content_sha256"]
    assert after.tags["dagster/data_version"] == before.tags["dagster/data_version"]
    assert lab.refresh().ticks == 0
