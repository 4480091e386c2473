#!/usr/bin/env bash
# wrk, the load generator of `make bench` (Debian's package), when missing.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

command -v wrk >/dev/null || apt_install wrk
note "wrk: $(wrk -v 2>&1 | head -n 1)"
