#!/usr/bin/env bash
# Materialise `synthetic` (the main job, the tiny foundation models, the sweep, the summary) with
# two versions of the code and compare the content sha256 of every stored value.
# Usage: bash deploy/compare_versions.sh BEFORE_REV [AFTER_REV]   (AFTER_REV: the working tree)
# Both runs use the same data root, so values that record a path compare like for like. Exit 1
# when any stored value differs; the differing keys are printed.
set -euo pipefail
source "$(dirname "$0")/bootstrap.sh"
BEFORE="${1:?usage: compare_versions.sh BEFORE_REV [AFTER_REV]}"
AFTER="${2:-}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/perturb_compare.XXXXXX")"
trap 'git -C "$REPO" worktree remove --force "$WORK/before" >/dev/null 2>&1 || true; [ -n "$AFTER" ] && git -C "$REPO" worktree remove --force "$WORK/after" >/dev/null 2>&1 || true' EXIT

materialise() {  # CODE_DIR OUT_JSON
  local code="$1" out="$2"
  rm -rf "$WORK/data" "$WORK/home" && mkdir -p "$WORK/home"
  cp "$REPO/deploy/local/dagster.yaml" "$WORK/home/dagster.yaml"
  (
    cd "$code"
    export PYTHONPATH="$code" PERTURB_ASSETS_DATA_ROOT="$WORK/data" DAGSTER_HOME="$WORK/home"
    # (named observe_embedding_files before the stage-package layout)
    perturb-assets run observe_input_files 2>/dev/null || perturb-assets run observe_embedding_files
    perturb-assets run main_job --partition synthetic
    perturb-assets run foundation_job --partition synthetic --config deploy/configs/foundation_tiny.yaml
    perturb-assets run diversity_sweep_job --all-partitions --missing-only
    perturb-assets run benchmark_summary_job
  ) > "$out.log" 2>&1 || { echo "materialising with $code failed; see $out.log" >&2; exit 2; }
  # This checkout's CLI lists the hashes (an old revision may not have `hashes`).
  PYTHONPATH="$REPO" perturb-assets hashes --storage "$WORK/data" --out "$out"
}

git -C "$REPO" worktree add --detach "$WORK/before" "$BEFORE" >/dev/null
materialise "$WORK/before" "$WORK/before.json"
if [ -n "$AFTER" ]; then
  git -C "$REPO" worktree add --detach "$WORK/after" "$AFTER" >/dev/null
  materialise "$WORK/after" "$WORK/after.json"
else
  materialise "$REPO" "$WORK/after.json"
fi
echo "hashes and logs: $WORK"
PYTHONPATH="$REPO" perturb-assets hashes --storage "$WORK/data" --compare "$WORK/before.json"
