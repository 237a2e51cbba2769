#!/usr/bin/env bash
# Set up (if needed), then run the main job for one dataset partition (default: synthetic)
# on the embedded SQLite instance, then collect benchmark_summary over every materialised
# dataset. For `synthetic` the foundation models run too, in their tiny configuration (on the
# real datasets they need a GPU: bash deploy/foundation.sh DATASET).
# Usage: bash deploy/main.sh [DATASET]
set -euo pipefail
source "$(dirname "$0")/bootstrap.sh"
DATASET="${1:-synthetic}"
dagster job execute -m perturb_assets.definitions -j main_job \
  --tags "{\"dagster/partition\": \"$DATASET\"}"
if [ "$DATASET" = synthetic ]; then
  bash "$(dirname "$0")/foundation.sh" synthetic deploy/configs/foundation_tiny.yaml
fi
dagster job execute -m perturb_assets.definitions -j benchmark_summary_job
echo "[main] done: tables under $PERTURB_ASSETS_DATA_ROOT/assets (metrics/$DATASET.parquet, benchmark_summary/__all__.parquet)"
