#!/usr/bin/env bash
# Materialise `synthetic` (the main job and the tiny foundation models) in two fresh data roots
# and compare the content sha256 of every stored value: assets and model files alike must be
# byte-identical, whatever the root's path. Exit 1 when any differs (the keys are printed).
# Usage: bash deploy/compare_roots.sh
set -euo pipefail
source "$(dirname "$0")/bootstrap.sh"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/perturb_roots.XXXXXX")"
run_in() {  # NAME
  local root="$WORK/$1"
  mkdir -p "$root/home" && cp "$REPO/deploy/local/dagster.yaml" "$root/home/dagster.yaml"
  (
    export PERTURB_ASSETS_DATA_ROOT="$root/data" DAGSTER_HOME="$root/home"
    perturb-assets run main_job --partition synthetic
    perturb-assets run foundation_job --partition synthetic --config deploy/configs/foundation_tiny.yaml
  ) > "$root.log" 2>&1 || { echo "the run in $root failed; see $root.log" >&2; exit 2; }
  perturb-assets hashes --storage "$root/data" --out "$root.json"
}
run_in first
run_in "second-root-with-a-longer-path"
echo "hashes and logs: $WORK"
perturb-assets hashes --storage "$WORK/second-root-with-a-longer-path/data" --compare "$WORK/first.json"
