"""Jobs, the embedding-file schedule, the dataset sensor and the automation sensor."""

import dagster as dg

from perturb_assets.core.datasets import BUILTIN_DATASETS
from perturb_assets.defs.analyses.assets import sweep_levels
from perturb_assets.defs.features.assets import embedding_files, go_annotation_file
from perturb_assets.defs.foundation.assets import scgpt_checkpoint
from perturb_assets.defs.models.user import user_prediction_files
from perturb_assets.defs.partitions import DATASETS, dataset_names, dataset_partitions

FOUNDATION = dg.AssetSelection.groups("foundation")
# The assets that gather every dataset (unpartitioned), and the sweep (its own partitions).
REPORT = dg.AssetSelection.assets(
    "benchmark_summary", "diversity_overview", "diversity_sweep_summary", "benchmark_report"
)
CROSS_DATASET = REPORT | dg.AssetSelection.assets("scgpt_gene_embeddings", "diversity_sweep")

# The main job: every per-dataset asset (and its checks) for one dataset partition, except the
# GPU-tagged foundation models, which have their own job.
MAIN_SELECTION = dg.AssetSelection.all(include_sources=False) - CROSS_DATASET - FOUNDATION
main_job = dg.define_asset_job(
    "main_job",
    selection=MAIN_SELECTION,
    partitions_def=dataset_partitions,
    description="Materialise every per-dataset asset but the foundation models for one "
    "dataset partition (metrics then include whatever foundation predictions are stored).",
)

# The metrics and every per-dataset table computed from them (calibration, robustness, ...).
# (genetic_interactions reads the predictions themselves, so it is named too.)
RESCORE = (
    dg.AssetSelection.assets(
        "metrics", "metrics_per_condition", "genetic_interactions"
    ).downstream()
    - CROSS_DATASET
)

# The main job's assets that do not score predictions: what `perturb-assets main` runs before
# the foundation job on `synthetic`, whose RESCORE then scores every model once, not twice.
MAIN_BEFORE_RESCORE = MAIN_SELECTION - RESCORE

# The foundation models (GPU-tagged, `gpu` pool) and the metrics that score them.
foundation_job = dg.define_asset_job(
    "foundation_job",
    selection=(FOUNDATION - dg.AssetSelection.assets("scgpt_checkpoint")) | RESCORE,
    partitions_def=dataset_partitions,
    description="Train scGPT, GEARS and GEARS + scFoundation embeddings on one dataset "
    "partition (on a GPU when present) and rescore it (metrics and genetic interactions).",
)

# The cross-dataset tables and the report, over whichever partitions are materialised.
summary_job = dg.define_asset_job(
    "benchmark_summary_job",
    selection=REPORT,
    description="Collect every materialised dataset's metrics and analyses into "
    "benchmark_summary and the benchmark report.",
)

# The diversity sweep: one simulated dataset per diversity level (run it per partition).
sweep_job = dg.define_asset_job(
    "diversity_sweep_job",
    selection=dg.AssetSelection.assets("diversity_sweep"),
    partitions_def=sweep_levels,
    description="Simulate and score one diversity level of the sweep.",
)

# Observing the user's input files (gene embeddings, GO file, scGPT checkpoint, prediction
# files) records their sha256 as a data version; when a file changes, the eager automation
# condition of what reads it (and everything downstream) fires through the automation sensor.
observe_input_files_job = dg.define_asset_job(
    "observe_input_files",
    selection=dg.AssetSelection.assets(
        *(f.key for f in embedding_files),
        go_annotation_file.key,
        scgpt_checkpoint.key,
        user_prediction_files.key,
    ),
    description="Hash the user's gene-embedding files, GO annotation file, the scGPT "
    "checkpoint and the user's prediction files.",
)
input_files_refresh_schedule = dg.ScheduleDefinition(
    name="input_files_refresh_schedule",
    job=observe_input_files_job,
    cron_schedule="0 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Hourly: detect changed embedding files, checkpoints and prediction files, so "
    "what depends on them refreshes.",
)

# Dagster's built-in automation sensor starts STOPPED; ours starts RUNNING so the eager
# conditions act without a click.
automation_sensor = dg.AutomationConditionSensorDefinition(
    "automation_sensor",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
)


@dg.sensor(
    name="dataset_sensor",
    job=main_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Register new datasets as partitions (built-ins once, user datasets when "
    "dropped into <data root>/datasets/) and run the main job for each new user dataset.",
)
def dataset_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    known = set(context.instance.get_dynamic_partitions(DATASETS))
    new = [name for name in dataset_names() if name not in known]
    if not new:
        return dg.SensorResult(skip_reason="no new dataset")
    # Built-in datasets download gigabytes: they get a partition, not a run.
    user = [name for name in new if name not in BUILTIN_DATASETS]
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=n, run_key=n) for n in user],
        dynamic_partitions_requests=[dataset_partitions.build_add_request(new)],
    )
