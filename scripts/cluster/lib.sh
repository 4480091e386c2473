# Shared settings of the local cluster scripts (sourced).
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/lib.sh"

CLUSTER_SCRIPTS="$ROOT/scripts/cluster"
source "$CLUSTER_SCRIPTS/versions.env"
CACHE_DIR="${FLOTILLA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flotilla}/cluster"
BIN_DIR="$CACHE_DIR/bin"
STATE_DIR="${FLOTILLA_CLUSTER_DIR:-$ROOT/.cluster}"
KUBECONFIG_FILE="$STATE_DIR/kubeconfig"
APISERVER_PORT="${FLOTILLA_APISERVER_PORT:-6443}"
ETCD_CLIENT_PORT="${FLOTILLA_ETCD_PORT:-23790}"
ETCD_PEER_PORT=$((ETCD_CLIENT_PORT + 1))
KWOK_NODES="${FLOTILLA_KWOK_NODES:-2}"

# Run a command in the background, printing how long it has been running every 20 s.
with_progress() {
  local label=$1; shift
  local started=$SECONDS next=20
  "$@" &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    if (( SECONDS - started >= next )); then
      note "still $label ($(elapsed $((SECONDS - started))))"
      next=$((next + 20))
    fi
  done
  wait "$pid"
}

elapsed() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }
