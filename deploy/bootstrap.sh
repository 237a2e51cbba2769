# Sourced by deploy/main.sh and deploy/test.sh: one idempotent set-up of a fresh machine.
# Creates .venv, installs the pinned project (+ test extras), and points DAGSTER_HOME at a
# git-ignored SQLite instance inside the repo. Re-installs only when pyproject.toml changes.
# The calling scripts set -euo pipefail; this file leaves shell options alone.
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  echo "[bootstrap] creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
STAMP=".venv/.perturb_assets-installed"
WANT="$(sha256sum pyproject.toml | cut -c1-64)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  echo "[bootstrap] installing pinned dependencies (about a minute the first time)"
  NODEPS="$(.venv/bin/python -c 'import tomllib; print(" ".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["nodeps"]))')"
  # torch is pinned to 2.13.0 in pyproject.toml; that pin selects the CPU build here.
  if .venv/bin/python -m pip install --quiet uv 2>/dev/null; then
    # uv ignores pip's configuration: hand it the same indexes, wheels and constraints.
    eval "$(.venv/bin/python deploy/uv_env.py .venv/bin/python)"
    # --compile-bytecode: the first run then does not pay for compiling every module it imports.
    .venv/bin/uv pip install --quiet --compile-bytecode --python .venv/bin/python -e ".[test]"
    # Packages with stale pins, installed without their dependencies (pyproject: [nodeps]).
    .venv/bin/uv pip install --quiet --compile-bytecode --python .venv/bin/python --no-deps $NODEPS
  else
    echo "[bootstrap] uv is not installable here; falling back to pip (a few minutes)"
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e ".[test]"
    .venv/bin/python -m pip install --quiet --no-deps $NODEPS
  fi
  # Compile the numba kernels into their on-disk cache now, not inside the first run's steps
  # (about 20 s; perturb_assets/warmup.py). Only a speed-up: if it fails, say so and go on.
  .venv/bin/python -m perturb_assets.warmup \
    || echo "[bootstrap] warning: the numba warm-up failed; the first run compiles the kernels"
  echo "$WANT" > "$STAMP"
fi
export PATH="$REPO/.venv/bin:$PATH"
export DAGSTER_HOME="${DAGSTER_HOME:-$REPO/.dagster_home}"
mkdir -p "$DAGSTER_HOME"
[ -f "$DAGSTER_HOME/dagster.yaml" ] || cp deploy/local/dagster.yaml "$DAGSTER_HOME/dagster.yaml"
export PERTURB_ASSETS_DATA_ROOT="${PERTURB_ASSETS_DATA_ROOT:-$REPO/data}"
