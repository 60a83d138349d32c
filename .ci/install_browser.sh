#!/usr/bin/env bash
# The browser the gallery tests drive: Debian's chromium (never Playwright's
# own download) and Playwright's Python API. Needs root for apt-get.
set -euo pipefail
if ! command -v chromium >/dev/null; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
fi
pip install playwright
