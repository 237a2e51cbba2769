#!/usr/bin/env bash
# Install, when missing, the Debian packages the test suite uses: chromium (the report and UI
# tests drive it through Playwright) and PostgreSQL 15 (deploy/services.sh runs a private
# cluster of it for the integration tests). Needs root for apt-get; without it those tests skip.
set -euo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
# postgresql-15 is Debian 12's PostgreSQL (what the `postgresql` package depends on there).
[ -x /usr/lib/postgresql/15/bin/postgres ] || missing+=(postgresql-15)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "[deps] installing ${missing[*]}"
    apt-get update -qq
    # No init system in a CI container: keep the package scripts from starting Debian's default
    # cluster (deploy/services.sh starts its own).
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
      printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy"
      trap 'rm -f "$policy"' EXIT
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "[deps] missing ${missing[*]} (not root: the tests that need them are skipped)"
  fi
fi
