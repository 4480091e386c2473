#!/usr/bin/env bash
# The node's image and chart registry: a real distribution registry (Debian's docker-registry
# package) on loopback, plain HTTP. `scripts/images.sh` pushes every image there, the node's
# containerd pulls from it (hosts.toml, written by node-up.sh), and `make release-local` pushes
# the charts there (oci://$REGISTRY/charts). Its storage is a cache beside the image builds
# (~/.cache/flotilla/images/registry): `make down` stops it and keeps what it holds.
#   scripts/cluster/registry.sh up      start it (a live one is reused)
#   scripts/cluster/registry.sh down    stop it
set -euo pipefail
source "$(dirname "$0")/lib.sh"

registry_answers() { curl -fsS -o /dev/null --max-time 2 "http://$REGISTRY/v2/" 2>/dev/null; }

case ${1:-up} in
  up)
    if alive registry && registry_answers; then
      exit 0
    fi
    apt_install docker-registry
    if registry_answers; then
      die "something else answers on $REGISTRY: stop it, or pick another port with FLOTILLA_REGISTRY_PORT"
    fi
    mkdir -p "$REGISTRY_STORAGE" "$LOGS" "$PIDS"
    config="$STATE_DIR/registry.yml"
    cat > "$config" <<EOT
# The Flotilla node's registry (scripts/cluster/registry.sh): loopback only, no auth.
version: 0.1
log: {level: warn, formatter: text, fields: {service: registry}}
storage:
  filesystem: {rootdirectory: $REGISTRY_STORAGE}
  delete: {enabled: true}
  cache: {blobdescriptor: inmemory}
http:
  addr: 127.0.0.1:$REGISTRY_PORT
  headers: {X-Content-Type-Options: [nosniff]}
health:
  storagedriver: {enabled: true, interval: 10s, threshold: 3}
EOT
    step "starting the registry $(docker-registry --version | awk '{print $3}') on $REGISTRY (storage ${REGISTRY_STORAGE/#"$HOME"/\~})"
    start registry docker-registry serve "$config"
    wait_until "waiting for the registry" 30 registry registry_answers
    ;;
  down)
    if alive registry; then
      pid=$(cat "$PIDS/registry.pid")
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL -- "-$pid" 2>/dev/null || true
      note "stopped the registry"
    fi
    rm -f "$PIDS/registry.pid"
    ;;
  *) die "usage: scripts/cluster/registry.sh up|down" ;;
esac
