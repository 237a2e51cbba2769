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
# One process for every job (observe the input files, main_job, the tiny foundation models for
# synthetic, the missing sweep levels, benchmark_summary_job) and the headline table: the same
# as running each with `perturb-assets run`, without a start-up per job.
perturb-assets main "$DATASET"
