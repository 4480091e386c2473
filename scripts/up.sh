#!/usr/bin/env bash
# `make up`: the whole platform on a real single-node Kubernetes of this machine. The control
# plane and the node (scripts/cluster/node-up.sh), the images of every service of the list
# (scripts/images.sh), then the umbrella chart with those images; waits until the operator has
# made every service Ready, seeds the demo products and runs the example flow through the
# ingress. Extra arguments go to helm (--set, -f). `make down` removes it all.
set -euo pipefail
source "$(dirname "$0")/cluster/lib.sh"

started_at=$SECONDS
NAMESPACE="${FLOTILLA_NAMESPACE:-flotilla}"
RELEASE=flotilla
"$CLUSTER_SCRIPTS/node-up.sh"
export PATH="$BIN_DIR:$PATH" KUBECONFIG="$KUBECONFIG_FILE"

step "building the platform's images (buildah, services/Dockerfile for each service)"
services=$(service_names)
images=$("$ROOT/scripts/images.sh" platform)
image() { echo "$images" | sed -n "s/^$1=//p"; }

step "installing the umbrella chart (release $RELEASE, namespace $NAMESPACE)"
helm dependency build "$ROOT/charts/flotilla" >/dev/null
operator_image=$(image operator)
helm_args=(--namespace "$NAMESPACE" --create-namespace
  --set "postgresql.image=$(image postgresql)"
  --set "operator.ingressNamespace=$INGRESS_NAMESPACE"
  --set "operator.image.repository=${operator_image%:*}" --set "operator.image.tag=${operator_image##*:}")
for service in $services; do
  helm_args+=(--set "services.$service.image=$(image "$service")")
done
installed_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
helm upgrade --install "$RELEASE" "$ROOT/charts/flotilla" "${helm_args[@]}" "$@" >/dev/null

step "waiting for the operator, the databases and every service to be Ready"
# A pod of this install that cannot start (a crash loop, a missing image, a bad config) ends the
# wait at once, with its logs, instead of at the deadline.
failing_pod() {
  kubectl -n "$NAMESPACE" get pods -o jsonpath='{range .items[*]}{.metadata.name}{" "}{.metadata.creationTimestamp}{" "}{.status.initContainerStatuses[*].state.waiting.reason}{" "}{.status.containerStatuses[*].state.waiting.reason}{"\n"}{end}' \
    | awk -v since="$installed_at" '$2 >= since && /CrashLoopBackOff|ErrImageNeverPull|ErrImagePull|ImagePullBackOff|CreateContainerConfigError|InvalidImageName/ {print $1; exit}'
}
# A migration Job that failed holds its service's Deployment back: end the wait at once too.
failed_migration() {
  kubectl -n "$NAMESPACE" get microservices -o jsonpath='{range .items[*]}{.metadata.name}{" "}{.status.conditions[?(@.type=="Migrated")].reason}{"\n"}{end}' \
    | awk '$2 == "Failed" {print $1; exit}'
}
waited=$SECONDS
wait_ready() {  # wait_ready OBJECT CHECK...: until CHECK succeeds, or a pod fails, or 15 minutes
  local object=$1 next=20; shift
  until "$@" >/dev/null 2>&1; do
    pod=$(failing_pod)
    if [ -n "$pod" ]; then
      kubectl -n "$NAMESPACE" get pods -o wide >&2
      kubectl -n "$NAMESPACE" logs "$pod" --all-containers --previous --tail=30 >&2 2>/dev/null \
        || kubectl -n "$NAMESPACE" describe pod "$pod" | tail -n 15 >&2
      die "pod $pod cannot start (above: its pods, and its logs or events)"
    fi
    failed=$(failed_migration)
    if [ -n "$failed" ]; then
      kubectl -n "$NAMESPACE" logs "job/$(kubectl -n "$NAMESPACE" get jobs -l "app.kubernetes.io/instance=$failed-migrate" -o name | head -n1 | cut -d/ -f2)" --tail=30 >&2 || true
      die "the migration of $failed failed (above: its Job's logs; kubectl -n $NAMESPACE describe microservice $failed)"
    fi
    (( SECONDS - waited < 900 )) || die "$object was not ready after 15 minutes"
    if (( SECONDS - waited >= next )); then note "still waiting for $object ($(elapsed $((SECONDS - waited))))"; next=$((next + 20)); fi
  done
  note "$object is ready ($(elapsed $((SECONDS - waited))))"
}
# The chart's own workloads (the operator, the databases); the services' Deployments appear only
# once the operator has rendered their Microservices, whose Ready condition says they serve.
for workload in $(kubectl -n "$NAMESPACE" get deployments,statefulsets -o name); do
  wait_ready "$workload" kubectl -n "$NAMESPACE" rollout status "$workload" --timeout=2s
done
for microservice in $(kubectl -n "$NAMESPACE" get microservices -o name); do
  wait_ready "$microservice" kubectl -n "$NAMESPACE" wait --for=condition=Ready "$microservice" --timeout=2s
done

step "seeding the demo products"
kubectl -n "$NAMESPACE" exec deploy/catalog -- flotilla-catalog seed-demo

INGRESS="http://127.0.0.1:$INGRESS_PORT"
routes=$(kubectl -n "$NAMESPACE" get microservices -o jsonpath='{range .items[*]}{.spec.ingress.paths[*]} {.spec.ingress.path} {end}' | xargs)
USERS_URL=$INGRESS CATALOG_URL=$INGRESS ORDERS_URL=$INGRESS "$ROOT/scripts/demo-flow.sh"

cat <<EOT

Flotilla is up on node $NODE_NAME in $(elapsed $((SECONDS - started_at))) (Kubernetes $KUBERNETES_VERSION).
  Every route through the ingress (Traefik): $INGRESS  ($routes)
  export KUBECONFIG=$KUBECONFIG_FILE PATH=$BIN_DIR:\$PATH
  kubectl get pods -A -o wide
  The admin's password: kubectl -n $NAMESPACE get secret $RELEASE-flotilla -o jsonpath='{.data.admin-password}' | base64 -d
The example flow above runs against $INGRESS (scripts/demo-flow.sh with USERS_URL, CATALOG_URL
and ORDERS_URL set to it). 'make down' stops everything and removes its state.
EOT
