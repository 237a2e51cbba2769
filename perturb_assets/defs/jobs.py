"""Jobs and automation."""

from __future__ import annotations

import dagster as dg

from perturb_assets.defs.partitions import dataset_partitions

# The main job: every per-dataset asset (and its checks) for one dataset partition.
main_job = dg.define_asset_job(
    "main_job",
    selection=dg.AssetSelection.all(),
    partitions_def=dataset_partitions,
    description="Materialise every per-dataset asset for one dataset partition.",
)

# Dagster's built-in automation sensor starts STOPPED; ours starts RUNNING so assets with
# automation conditions (eager recomputation, scheduled refresh) act without a click.
automation_sensor = dg.AutomationConditionSensorDefinition(
    "automation_sensor",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
)
