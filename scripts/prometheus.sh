#!/usr/bin/env bash
# Prometheus and promtool from Debian's package: the tests check alert rules with promtool and
# run Prometheus servers of their own; the real node runs one (scripts/cluster/node-up.sh).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

{ command -v prometheus && command -v promtool; } >/dev/null || apt_install prometheus
note "promtool: $(promtool --version 2>&1 | head -n 1)"
