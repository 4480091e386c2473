#!/usr/bin/env bash
# Create or refresh .venv with the services (editable) and the development tools.
# Reinstalls only when a pyproject.toml or requirements file changed.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

"$PYTHON_BIN" -c "import venv, ensurepip" 2>/dev/null || apt_install python3-venv python3-pip
stamp="$VENV/.flotilla-inputs"
inputs=$(cat "$ROOT"/requirements-dev.txt "$ROOT"/services/*/pyproject.toml "$ROOT"/operator/pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$inputs" ]; then
  exit 0
fi
step "preparing the Python virtualenv in ${VENV#"$ROOT"/}"
[ -x "$VENV/bin/python" ] || "$PYTHON_BIN" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip==25.3
note "installing the kit, every service, the operator and the development tools"
# Every folder of services/ with a pyproject.toml: the kit and the services (a new service's
# console script, flotilla-N, is there as soon as its folder is).
packages=()
for project in "$ROOT"/services/*/pyproject.toml; do packages+=(-e "$(dirname "$project")"); done
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
  -r "$ROOT/requirements-dev.txt" "${packages[@]}" -e "$ROOT/operator"
echo "$inputs" > "$stamp"
note "virtualenv ready"
