#!/usr/bin/env bash
# Set up (if needed), then run the main job for one dataset partition (default: synthetic) on
# the embedded SQLite instance: the dataset, features, baselines, metrics and analyses. For
# `synthetic` the foundation models run too, in their tiny configuration (on the real datasets
# they need a GPU: bash deploy/foundation.sh DATASET). Then the diversity sweep (levels not yet
# computed), the cross-dataset tables and the report, and the headline table. Audit a number with
# perturb-assets lineage metrics --partition DATASET.
# Usage: bash deploy/main.sh [DATASET]
set -euo pipefail
source "$(dirname "$0")/bootstrap.sh"
DATASET="${1:-synthetic}"
# Hash the user's files first (embeddings, GO file, checkpoint, predictions), as the hourly
# schedule does, so the lineage audit shows which file versions the run read.
perturb-assets run observe_input_files
perturb-assets run main_job --partition "$DATASET"
if [ "$DATASET" = synthetic ]; then
  perturb-assets run foundation_job --partition synthetic --config deploy/configs/foundation_tiny.yaml
fi
perturb-assets run diversity_sweep_job --all-partitions --missing-only
perturb-assets run benchmark_summary_job
perturb-assets summary --dataset "$DATASET"
