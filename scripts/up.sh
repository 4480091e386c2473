#!/usr/bin/env bash
# `make up`: the whole platform on a real single-node Kubernetes of this machine. The control
# plane and the node (scripts/cluster/node-up.sh), the images (scripts/images.sh), then the
# umbrella chart with those images; waits for every pod, seeds the demo products and runs the
# example flow through the ingress. `make down` removes it all.
set -euo pipefail
source "$(dirname "$0")/cluster/lib.sh"

started_at=$SECONDS
NAMESPACE="${FLOTILLA_NAMESPACE:-flotilla}"
RELEASE=flotilla
"$CLUSTER_SCRIPTS/node-up.sh"
export PATH="$BIN_DIR:$PATH" KUBECONFIG="$KUBECONFIG_FILE"

step "building the platform's images (buildah, the project's Dockerfiles)"
images=$("$ROOT/scripts/images.sh" platform)
image() { echo "$images" | sed -n "s/^$1=//p"; }
repository() { local ref; ref=$(image "$1"); echo "${ref%:*}"; }
tag() { local ref; ref=$(image "$1"); echo "${ref##*:}"; }

step "installing the umbrella chart (release $RELEASE, namespace $NAMESPACE)"
helm dependency build "$ROOT/charts/flotilla" >/dev/null
helm_args=(--namespace "$NAMESPACE" --create-namespace
  --set "postgresql.image=$(image postgresql)"
  --set "networkPolicy.ingressControllerNamespace=$INGRESS_NAMESPACE")
for service in users catalog orders; do
  helm_args+=(--set "$service.image.repository=$(repository "$service")" --set "$service.image.tag=$(tag "$service")"
    --set "$service.image.pullPolicy=Never")
done
installed_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
helm upgrade --install "$RELEASE" "$ROOT/charts/flotilla" "${helm_args[@]}" "$@" >/dev/null

step "waiting for every pod of the platform to be Ready"
# A pod of this install that cannot start (a crash loop, a missing image, a bad config) ends the
# wait at once, with its logs, instead of at the rollout's deadline.
failing_pod() {
  kubectl -n "$NAMESPACE" get pods -o jsonpath='{range .items[*]}{.metadata.name}{" "}{.metadata.creationTimestamp}{" "}{.status.initContainerStatuses[*].state.waiting.reason}{" "}{.status.containerStatuses[*].state.waiting.reason}{"\n"}{end}' \
    | awk -v since="$installed_at" '$2 >= since && /CrashLoopBackOff|ErrImageNeverPull|CreateContainerConfigError|InvalidImageName/ {print $1; exit}'
}
waited=$SECONDS next=20
for workload in $(kubectl -n "$NAMESPACE" get deployments,statefulsets -o name); do
  until kubectl -n "$NAMESPACE" rollout status "$workload" --timeout=2s >/dev/null 2>&1; do
    pod=$(failing_pod)
    if [ -n "$pod" ]; then
      kubectl -n "$NAMESPACE" get pods -o wide >&2
      kubectl -n "$NAMESPACE" logs "$pod" --all-containers --previous --tail=30 >&2 2>/dev/null \
        || kubectl -n "$NAMESPACE" describe pod "$pod" | tail -n 15 >&2
      die "pod $pod cannot start (above: its pods, and its logs or events)"
    fi
    (( SECONDS - waited < 900 )) || die "$workload was not ready after 15 minutes"
    if (( SECONDS - waited >= next )); then note "still waiting for $workload ($(elapsed $((SECONDS - waited))))"; next=$((next + 20)); fi
  done
  note "$workload is ready ($(elapsed $((SECONDS - waited))))"
done

step "seeding the demo products"
kubectl -n "$NAMESPACE" exec deploy/catalog -- flotilla-catalog seed-demo

INGRESS="http://127.0.0.1:$INGRESS_PORT"
USERS_URL=$INGRESS CATALOG_URL=$INGRESS ORDERS_URL=$INGRESS "$ROOT/scripts/demo-flow.sh"

cat <<EOT

Flotilla is up on node $NODE_NAME in $(elapsed $((SECONDS - started_at))) (Kubernetes $KUBERNETES_VERSION).
  Every route through the ingress (Traefik): $INGRESS  (/users /auth /oauth /.well-known /products /orders)
  export KUBECONFIG=$KUBECONFIG_FILE PATH=$BIN_DIR:\$PATH
  kubectl get pods -A -o wide
  The admin's password: kubectl -n $NAMESPACE get secret $RELEASE-flotilla -o jsonpath='{.data.admin-password}' | base64 -d
The example flow above runs against $INGRESS (scripts/demo-flow.sh with USERS_URL, CATALOG_URL
and ORDERS_URL set to it). 'make down' stops everything and removes its state.
EOT
