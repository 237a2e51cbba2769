#!/usr/bin/env bash
# Set up (if needed) and start the Dagster UI and daemon on the embedded SQLite instance.
# Usage: bash deploy/dev.sh [extra dagster dev arguments, e.g. -p 3001]
set -euo pipefail
source "$(dirname "$0")/bootstrap.sh"
exec dagster dev "$@"
