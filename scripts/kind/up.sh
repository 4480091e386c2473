#!/usr/bin/env bash
# `make kind-up`, for users with Docker: the kind cluster of k8s/kind-config.yaml (reused when it
# exists), the flotilla namespace (restricted Pod Security, k8s/namespace.yaml) and Traefik as
# the default IngressClass on the host's ports 80 and 443 (scripts/kind/traefik.sh: the local
# node's own manifest). With KIND_MONITORING=1 (or --monitoring), kube-prometheus-stack too:
# release "prometheus" in namespace monitoring (scripts/kind/monitoring-values.yaml).
# Then `make deploy` (the images built with Docker and loaded into kind) or `make dev`.
set -euo pipefail
source "$(dirname "$0")/../cluster/lib.sh"

usage="usage: scripts/kind/up.sh [--monitoring]   (or KIND_MONITORING=1)"
monitoring=${KIND_MONITORING:-0}
for argument in "$@"; do
  case $argument in
    --monitoring) monitoring=1 ;;
    *) die "$usage" ;;
  esac
done
# kube-prometheus-stack's chart, from its OCI registry (a released version; override to move),
# installed as the release and into the namespace scripts/kind/values.yaml names for Flotilla.
MONITORING_CHART=oci://ghcr.io/prometheus-community/charts/kube-prometheus-stack
MONITORING_CHART_VERSION=${KIND_MONITORING_CHART_VERSION:-88.5.3}
MONITORING_RELEASE=prometheus
MONITORING_NAMESPACE=monitoring

CONFIG="$ROOT/k8s/kind-config.yaml"
CLUSTER=$(sed -n 's/^name: *//p' "$CONFIG")
CONTEXT="kind-$CLUSTER"
: "${KIND_VERSION:?scripts/cluster/versions.env pins KIND_VERSION}"

command -v docker >/dev/null || die "kind runs its nodes as Docker containers: install Docker (https://docs.docker.com/engine/install/). Without Docker, 'make cluster-up' runs a local control plane and 'make up' a real node"
docker info >/dev/null 2>&1 || die "kind needs a running Docker engine ('docker info' fails: start it, or join the docker group). Without Docker, 'make cluster-up' runs a local control plane and 'make up' a real node"
command -v kind >/dev/null || die "kind is not installed: $KIND_VERSION from https://kind.sigs.k8s.io/docs/user/quick-start/#installation (or: go install sigs.k8s.io/kind@$KIND_VERSION)"
command -v kubectl >/dev/null || die "kubectl is not installed: https://kubernetes.io/docs/tasks/tools/"
kind_version=$(kind version | awk '{print $2}')
[ "$kind_version" = "$KIND_VERSION" ] || note "kind $kind_version here; Flotilla is checked with kind $KIND_VERSION"

if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  step "reusing the kind cluster $CLUSTER (kind delete cluster --name $CLUSTER removes it)"
else
  step "creating the kind cluster $CLUSTER (k8s/kind-config.yaml)"
  kind create cluster --config "$CONFIG" --wait 3m
fi
k() { kubectl --context "$CONTEXT" "$@"; }

step "the flotilla namespace (restricted Pod Security)"
k apply --server-side --field-manager flotilla-kind -f "$ROOT/k8s/namespace.yaml" >/dev/null

step "Traefik $TRAEFIK_VERSION, the default IngressClass, on the host's ports 80 and 443"
k apply --server-side --force-conflicts --field-manager flotilla-kind \
  -f "https://raw.githubusercontent.com/traefik/traefik/$TRAEFIK_VERSION/$TRAEFIK_CRDS" >/dev/null
"$ROOT/scripts/kind/traefik.sh" | k apply --server-side --force-conflicts --field-manager flotilla-kind -f - >/dev/null
k -n traefik rollout status deployment/traefik --timeout=5m

if [ "$monitoring" = 1 ]; then
  command -v helm >/dev/null || die "helm is needed for kube-prometheus-stack: Helm 4 (or 3.x), https://helm.sh/docs/intro/install/"
  step "kube-prometheus-stack $MONITORING_CHART_VERSION (release $MONITORING_RELEASE, namespace $MONITORING_NAMESPACE)"
  helm upgrade --install "$MONITORING_RELEASE" "$MONITORING_CHART" --version "$MONITORING_CHART_VERSION" \
    --kube-context "$CONTEXT" --namespace "$MONITORING_NAMESPACE" --create-namespace \
    -f "$ROOT/scripts/kind/monitoring-values.yaml" --wait --timeout 10m >/dev/null
  note "Grafana: kubectl --context $CONTEXT -n $MONITORING_NAMESPACE port-forward svc/$MONITORING_RELEASE-grafana 3000:80"
fi

step "the kind cluster is ready (context $CONTEXT)"
note "make deploy   builds the images with Docker, loads them into kind and installs the umbrella chart"
note "make dev      skaffold dev on this cluster (with Helm 4: see README, 'kind with Docker')"
note "every Ingress answers on http://localhost/ (and https://localhost/ with Traefik's default certificate)"
