#!/usr/bin/env bash
# `make dev`: `skaffold dev` on a cluster of this machine (skaffold.yaml). It builds the images,
# deploys the umbrella chart with them, follows the sources, and Ctrl-C removes the release.
#   - a kind cluster named flotilla (`make kind-up`): the kind profile (Docker, images loaded
#     into kind), with the skaffold and helm on PATH;
#   - otherwise the real local node, brought up first when it is not running (`make node-up`,
#     root): the node profile, images built with buildah and pushed to the node's registry, the
#     platform reached through the Traefik ingress on 127.0.0.1.
# FLOTILLA_NAMESPACE (default flotilla) and FLOTILLA_INGRESS_HOST (default: any host) place the
# release; extra arguments go to skaffold dev.
set -euo pipefail
source "$(dirname "$0")/../cluster/lib.sh"

export SKAFFOLD_UPDATE_CHECK=false SKAFFOLD_INTERACTIVE=false
# skaffold calls `helm`: the adapter of scripts/dev/bin first (Helm 4 for a skaffold that speaks
# Helm 3; it passes a Helm 3 through untouched).
ADAPTER="$ROOT/scripts/dev/bin"
cd "$ROOT"

if command -v kind >/dev/null && kind get clusters 2>/dev/null | grep -qx flotilla; then
  export PATH="$ADAPTER:$PATH:$BIN_DIR"
  step "skaffold dev on the kind cluster flotilla (profile kind: Docker builds, loaded into kind)"
  exec skaffold dev --kube-context kind-flotilla "$@"
fi

export PATH="$ADAPTER:$BIN_DIR:$PATH" KUBECONFIG="$KUBECONFIG_FILE"
namespace=${FLOTILLA_NAMESPACE:-flotilla}
host=${FLOTILLA_INGRESS_HOST:-}

node_ready() {
  [ -f "$KUBECONFIG_FILE" ] \
    && kubectl get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null \
      | grep -qx True \
    && curl -fsS -o /dev/null --max-time 2 "http://$REGISTRY/v2/"
}
if node_ready; then
  step "the local node $NODE_NAME is up (Kubernetes $KUBERNETES_VERSION, registry $REGISTRY)"
else
  step "no local cluster is running: bringing up the node first (make node-up)"
  "$CLUSTER_SCRIPTS/node-up.sh"
fi
"$ROOT/scripts/dev/bin/helm" version >/dev/null 2>&1 \
  || die "no Helm on PATH: scripts/cluster/build.sh builds the pinned one into $BIN_DIR"

# A release skaffold did not make (make up's) is not skaffold's to replace, nor to remove on Ctrl-C.
if helm status flotilla --namespace "$namespace" >/dev/null 2>&1 \
  && [ -z "$(kubectl -n "$namespace" get deployments -l skaffold.dev/run-id -o name 2>/dev/null)" ]; then
  die "namespace $namespace holds a release flotilla that skaffold did not make (make up's?): 'make dev'
       would replace it and remove it on Ctrl-C. Remove it (helm uninstall flotilla -n $namespace),
       or develop beside it: FLOTILLA_NAMESPACE=flotilla-dev FLOTILLA_INGRESS_HOST=dev.localhost make dev"
fi

# Once every route answers through the ingress, say where the platform is. A service answers
# with JSON (problem documents included); the ingress's own 404 is plain text.
INGRESS="http://127.0.0.1:$INGRESS_PORT"
announce() {
  local skaffold_pid=$1 routes="" path
  local header=()
  [ -n "$host" ] && header=(-H "Host: $host")
  until [ -n "$routes" ]; do
    kill -0 "$skaffold_pid" 2>/dev/null || return 0
    sleep 2
    routes=$(kubectl -n "$namespace" get microservices \
      -o jsonpath='{range .items[*]}{.spec.ingress.paths[*]} {.spec.ingress.path} {end}' 2>/dev/null | xargs || true)
  done
  for path in $routes; do
    until curl -s -o /dev/null -w '%{content_type}' --max-time 5 "${header[@]}" "$INGRESS$path" 2>/dev/null \
      | grep -q json; do
      kill -0 "$skaffold_pid" 2>/dev/null || return 0
      sleep 1
    done
  done
  local where=$INGRESS
  [ -n "$host" ] && where="$INGRESS with Host: $host"
  # shellcheck disable=SC2016  # the quotes are the example command's; $host expands
  cat <<EOT

$(step "the platform answers through the ingress (Traefik): $where")
    routes: $routes
    try:    curl -s ${host:+-H 'Host: $host' }$INGRESS/products
    admin:  admin@flotilla.local, password: kubectl -n $namespace get secret flotilla-flotilla -o jsonpath='{.data.admin-password}' | base64 -d
    edit services/<name>/src/flotilla_<name>/*.py: synced into the pods, gunicorn reloads;
    anything else (the kit, migrations, pyproject.toml): rebuilt and rolled out.
    Ctrl-C stops skaffold and removes the release.

EOT
}
announce $$ &

step "skaffold dev on node $NODE_NAME: release flotilla in namespace $namespace, images pushed to $REGISTRY"
note "the first run builds every image (buildah); later ones take what has not changed from the cache"
# exec: Ctrl-C reaches skaffold itself, which removes the release before it exits.
exec skaffold dev --kube-context flotilla --profile node --default-repo "$REGISTRY" "$@"
