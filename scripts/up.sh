#!/usr/bin/env bash
# `make up`: the whole platform on a real single-node Kubernetes of this machine, installed the
# way a user installs a release: the control plane and the node with its registry
# (scripts/cluster/node-up.sh), the release pushed to that registry (scripts/release-local.sh:
# the images and the packaged umbrella chart), then `helm install oci://...` of it with Helm 4's
# status-aware --wait, which waits until the operator has made every Microservice Ready. Then it
# seeds the demo products and runs the example flow through the ingress. Extra arguments go to
# helm (--set, -f). `make down` removes it all.
set -euo pipefail
source "$(dirname "$0")/cluster/lib.sh"

started_at=$SECONDS
NAMESPACE="${FLOTILLA_NAMESPACE:-flotilla}"
RELEASE=flotilla
"$CLUSTER_SCRIPTS/node-up.sh"
export PATH="$BIN_DIR:$PATH" KUBECONFIG="$KUBECONFIG_FILE"

step "releasing the platform to the node's registry $REGISTRY (scripts/release-local.sh)"
release=$("$ROOT/scripts/release-local.sh")
field() { echo "$release" | sed -n "s/^$1=//p"; }
version=$(field version) chart=$(field chart)

step "installing $chart --version $version (release $RELEASE, namespace $NAMESPACE)"
# Only what differs on this machine is set: the PostgreSQL image (the official one cannot be
# pulled here), and the node's Prometheus (node-up.sh), which the operator queries, outside the
# pod network: its NetworkPolicy lets it connect to that address. The ingress controller's
# namespace is the chart's default, Traefik's. Traces are on, every one recorded, in the release's
# Jaeger (its image built here, scripts/images.sh node).
PROMETHEUS_URL=$(cat "$PROMETHEUS_URL_FILE")
install=(helm upgrade --install "$RELEASE" "$chart" --version "$version" --plain-http
  --namespace "$NAMESPACE" --create-namespace --wait --timeout 15m
  --set "postgresql.image=$(field postgresql)"
  --set "operator.prometheus.url=$PROMETHEUS_URL" --set "operator.networkPolicy.prometheus.cidr=$NODE_POD_GATEWAY/32"
  --set tracing.enabled=true --set tracing.ingress.enabled=true --set tracing.sampleRatio=1 --set "tracing.jaeger.image=$JAEGER_IMAGE"
  "$@")
note "${install[*]}"
installed_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
"${install[@]}" > "$STATE_DIR/helm-install.log" 2>&1 &
helm_pid=$!

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
waited=$SECONDS next=20
# helm --wait watches every object of the release, the Microservices' Ready among them (kstatus).
while kill -0 "$helm_pid" 2>/dev/null; do
  pod=$(failing_pod)
  if [ -n "$pod" ]; then
    kill "$helm_pid" 2>/dev/null || true
    kubectl -n "$NAMESPACE" get pods -o wide >&2
    kubectl -n "$NAMESPACE" logs "$pod" --all-containers --previous --tail=30 >&2 2>/dev/null \
      || kubectl -n "$NAMESPACE" describe pod "$pod" | tail -n 15 >&2
    die "pod $pod cannot start (above: its pods, and its logs or events)"
  fi
  failed=$(failed_migration)
  if [ -n "$failed" ]; then
    kill "$helm_pid" 2>/dev/null || true
    kubectl -n "$NAMESPACE" logs "job/$(kubectl -n "$NAMESPACE" get jobs -l "app.kubernetes.io/instance=$failed-migrate" -o name | head -n1 | cut -d/ -f2)" --tail=30 >&2 || true
    die "the migration of $failed failed (above: its Job's logs; kubectl -n $NAMESPACE describe microservice $failed)"
  fi
  if (( SECONDS - waited >= next )); then
    waiting=$(kubectl -n "$NAMESPACE" get microservices -o jsonpath='{range .items[*]}{.metadata.name}{" "}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' 2>/dev/null \
      | awk '$2 != "True" {print $1}' | xargs)
    note "still waiting ($(elapsed $((SECONDS - waited))))${waiting:+: not Ready yet: $waiting}"
    next=$((next + 20))
  fi
  sleep 1
done
if ! wait "$helm_pid"; then
  sed 's/^/    /' "$STATE_DIR/helm-install.log" >&2
  kubectl -n "$NAMESPACE" get microservices,pods >&2 || true
  die "helm install failed (above: its output, the Microservices and the pods)"
fi
note "every object of the release is ready ($(elapsed $((SECONDS - waited))); helm install --wait)"
kubectl -n "$NAMESPACE" get microservices

step "seeding the demo products"
kubectl -n "$NAMESPACE" exec deploy/catalog -- flotilla-catalog seed-demo

INGRESS="http://127.0.0.1:$INGRESS_PORT"
routes=$(kubectl -n "$NAMESPACE" get microservices -o jsonpath='{range .items[*]}{.spec.ingress.paths[*]} {.spec.ingress.path} {end}' | xargs)
USERS_URL=$INGRESS CATALOG_URL=$INGRESS ORDERS_URL=$INGRESS "$ROOT/scripts/demo-flow.sh"

admin_email=$(helm get values "$RELEASE" -n "$NAMESPACE" --all -o json | "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["global"]["adminEmail"])')
admin_password=$(kubectl -n "$NAMESPACE" get secret "$RELEASE-flotilla" -o jsonpath='{.data.admin-password}' | base64 -d)
cat <<EOT

Flotilla $version is up on node $NODE_NAME in $(elapsed $((SECONDS - started_at))) (Kubernetes $KUBERNETES_VERSION, $(helm version --short)).
  The registry:     http://$REGISTRY  (curl -s http://$REGISTRY/v2/_catalog)
  The release:      helm install $RELEASE $chart --version $version --plain-http
  Every route through the ingress (Traefik): $INGRESS  ($routes)
  Prometheus:       $PROMETHEUS_URL  (every pod the operator runs, every 5s; curl -s $PROMETHEUS_URL/api/v1/targets)
  Jaeger (traces):  $INGRESS/jaeger  (every request's trace; curl -s $INGRESS/jaeger/api/services)
  The admin:        $admin_email / $admin_password
                    (kubectl -n $NAMESPACE get secret $RELEASE-flotilla -o jsonpath='{.data.admin-password}' | base64 -d)
  export KUBECONFIG=$KUBECONFIG_FILE PATH=$BIN_DIR:\$PATH
  kubectl -n $NAMESPACE get microservices,pods -o wide
The example flow above runs against $INGRESS (scripts/demo-flow.sh with USERS_URL, CATALOG_URL
and ORDERS_URL set to it). 'make down' stops everything and removes its state.
EOT
