#!/usr/bin/env bash
# Set up (if needed) and run the linter and the test suite. Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "$0")/bootstrap.sh"
bash "$(dirname "$0")/system_deps.sh"
ruff check perturb_assets perturb_assets_tests
exec python -m pytest "$@"
