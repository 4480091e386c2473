#!/usr/bin/env bash
# Prometheus and promtool from Debian's packages (the tests check alert rules with promtool).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

command -v promtool >/dev/null || apt_install prometheus
note "promtool: $(promtool --version 2>&1 | head -n 1)"
