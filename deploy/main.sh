#!/usr/bin/env bash
# Set up (if needed) and run the main job for one dataset partition (default: synthetic)
# on the embedded SQLite instance. Usage: bash deploy/main.sh [DATASET]
source "$(dirname "$0")/bootstrap.sh"
DATASET="${1:-synthetic}"
exec dagster job execute -m perturb_assets.definitions -j main_job \
  --tags "{\"dagster/partition\": \"$DATASET\"}"
