#!/usr/bin/env bash
# Install, when missing, the Debian packages the test suite uses: chromium (the report and UI
# tests drive it through Playwright). Needs root for apt-get; without it the browser tests skip.
set -euo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "[deps] installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "[deps] missing ${missing[*]} (not root: the tests that need them are skipped)"
  fi
fi
