"""A changed embedding file makes only its own feature asset eligible for recomputation."""

import dagster as dg
import pandas as pd

from perturb_assets.core import registry
from perturb_assets.defs.datasets import assets as D
from perturb_assets.defs.features import assets as F
from perturb_assets.defs.foundation import assets as FA
from perturb_assets.defs.resources import build_resources

SMALL = {"n_cells": 800, "n_genes": 100, "n_perturbations": 12, "combo_fraction": 0.0}


def _requested(result) -> dict[str, set]:
    keys = [spec.asset_name for spec in registry.embedding_sets()]
    return {
        k: set(result.get_requested_partitions(dg.AssetKey(k)))
        for k in keys
        if result.get_num_requested(dg.AssetKey(k))
    }


def test_changed_embedding_file_triggers_only_its_features(tmp_path):
    resources = build_resources(tmp_path)
    assets = [D.raw_dataset, *F.embedding_pca_features, *F.embedding_files,
              FA.scgpt_gene_embeddings, FA.scgpt_checkpoint]  # fmt: skip
    defs = dg.Definitions(assets=assets, resources=resources)
    job = defs.resolve_implicit_global_asset_job_def()
    instance = dg.DagsterInstance.ephemeral()

    def observe(name: str) -> None:
        observation = dg.define_asset_job(
            f"observe_{name}", selection=[dg.AssetKey(f"{name}_embedding_file")]
        )
        observation_defs = dg.Definitions(assets=assets, resources=resources, jobs=[observation])
        run = observation_defs.resolve_job_def(f"observe_{name}").execute_in_process(
            instance=instance
        )
        assert run.success

    for spec in registry.embedding_sets():
        observe(spec.name)
    assert job.execute_in_process(
        instance=instance,
        partition_key="synthetic",
        run_config={"ops": {"raw_dataset": {"config": SMALL}}},
    ).success
    first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    assert _requested(first) == {}

    # The user drops a new scGPT embedding file; the hourly observation records its hash.
    (tmp_path / "embeddings").mkdir()
    pd.DataFrame({"d0": [1.0, 2.0]}, index=["A", "B"]).to_parquet(
        tmp_path / "embeddings" / "scgpt.parquet"
    )
    observe("scgpt")
    second = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
    assert _requested(second) == {"scgpt_pca_features": {"synthetic"}}
