#!/usr/bin/env bash
# Set up (if needed) and run the linter and the test suite. Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "$0")/bootstrap.sh"
bash "$(dirname "$0")/system_deps.sh"
# PostgreSQL and an S3 server on 127.0.0.1 for the integration tests (exports their URLs).
source "$(dirname "$0")/services.sh"
ruff check perturb_assets perturb_assets_tests
exec python -m pytest "$@"
