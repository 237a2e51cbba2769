#!/usr/bin/env bash
# Set up (if needed), then train the foundation models (scGPT, GEARS, GEARS + scFoundation
# embeddings) on one dataset partition and rescore it. Uses CUDA when present.
# Usage: bash deploy/foundation.sh DATASET [RUN_CONFIG.yaml]
#   e.g. bash deploy/foundation.sh norman                     # the references' defaults (scGPT's tutorial loop, cell-gears', the paper's GEARS + scFoundation settings), on a GPU
#        bash deploy/foundation.sh synthetic deploy/configs/foundation_tiny.yaml
set -euo pipefail
source "$(dirname "$0")/bootstrap.sh"
DATASET="${1:?usage: bash deploy/foundation.sh DATASET [RUN_CONFIG.yaml]}"
CONFIG=()
[ -n "${2:-}" ] && CONFIG=(--config "$2")
perturb-assets run foundation_job --partition "$DATASET" "${CONFIG[@]}"
perturb-assets run benchmark_summary_job
perturb-assets summary --dataset "$DATASET"
