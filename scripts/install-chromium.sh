#!/usr/bin/env bash
# Debian's chromium for the web page's browser tests (playwright's own browser download is not needed).
set -euo pipefail
if command -v chromium >/dev/null; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
    echo "chromium is missing and installing it needs root: sudo apt-get install -y chromium" >&2
    exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
command -v chromium
