# Shared shell helpers for the project's scripts (sourced, not run).
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${FLOTILLA_VENV:-$ROOT/.venv}"
PYTHON_BIN="${PYTHON:-python3}"

step() { printf '\033[1m==> %s\033[0m\n' "$*"; }
note() { printf '    %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# The platform's services, one name a line, in the order of the umbrella chart's services map
# (scripts/services.py reads it).
service_names() {
  local python="$VENV/bin/python" listed
  # The list is read with PyYAML: the project's virtualenv has it (made here when missing, its
  # progress on stderr, since stdout carries the names).
  [ -x "$python" ] || "$ROOT/scripts/venv.sh" >&2
  listed=$("$python" "$ROOT/scripts/services.py" names) \
    || die "cannot read the list of services (scripts/services.py names; it needs PyYAML)"
  [ -n "$listed" ] || die "the services map of charts/flotilla/values.yaml has no enabled service"
  echo "$listed"
}

# Run a command as root: directly when we are root, else through sudo.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    die "this step needs root: run it as root, or install sudo ('$*')"
  fi
}

# The tests and `make run` use a PostgreSQL cluster of their own: before the package is installed,
# keep it from creating (and starting) its "main" cluster on port 5432.
no_main_postgres_cluster() {
  as_root mkdir -p /etc/postgresql-common/createcluster.d
  echo "create_main_cluster = false" | as_root tee /etc/postgresql-common/createcluster.d/flotilla.conf >/dev/null
}

# Install Debian packages that are missing (one apt-get update per run).
apt_install() {
  local missing=()
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  step "installing Debian packages: ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# Wait until a URL answers 200 while process $4 (if given) lives, showing the wait.
wait_for_url() {
  local url=$1 label=$2 timeout=${3:-60} pid=${4:-} started=$SECONDS
  while ! curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; do
    if (( SECONDS - started >= timeout )); then
      printf '\n'; return 1
    fi
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      printf '\n'; return 1
    fi
    printf '\r    waiting for %s (%ds)' "$label" $((SECONDS - started))
    sleep 0.5
  done
  printf '\r    %s ready after %ds          \n' "$label" $((SECONDS - started))
}
