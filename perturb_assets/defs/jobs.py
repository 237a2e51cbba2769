"""Jobs, the embedding-file schedule and the automation sensor."""

import dagster as dg

from perturb_assets.defs.features.assets import embedding_files
from perturb_assets.defs.partitions import dataset_partitions

# The main job: every per-dataset asset (and its checks) for one dataset partition.
main_job = dg.define_asset_job(
    "main_job",
    selection=dg.AssetSelection.all(include_sources=False)
    - dg.AssetSelection.assets("benchmark_summary"),
    partitions_def=dataset_partitions,
    description="Materialise every per-dataset asset for one dataset partition.",
)

# The cross-dataset table, over whichever dataset partitions are materialised.
summary_job = dg.define_asset_job(
    "benchmark_summary_job",
    selection=dg.AssetSelection.assets("benchmark_summary"),
    description="Collect every materialised dataset's metrics into benchmark_summary.",
)

# Observing the embedding files records their sha256 as a data version; when a file changes,
# the eager automation condition of its PCA-feature asset (and everything downstream of it)
# fires through the automation sensor below.
observe_embedding_files_job = dg.define_asset_job(
    "observe_embedding_files",
    selection=dg.AssetSelection.assets(*(f.key for f in embedding_files)),
    description="Hash the user's gene-embedding files.",
)
embedding_refresh_schedule = dg.ScheduleDefinition(
    name="embedding_refresh_schedule",
    job=observe_embedding_files_job,
    cron_schedule="0 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Hourly: detect changed embedding files so their features and models refresh.",
)

# Dagster's built-in automation sensor starts STOPPED; ours starts RUNNING so the eager
# conditions act without a click.
automation_sensor = dg.AutomationConditionSensorDefinition(
    "automation_sensor",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
)
