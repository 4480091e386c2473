#!/usr/bin/env bash
# `make deploy`: the umbrella chart from this checkout into the current kube context, with images
# that context can run, or a clear refusal:
#   - kind (context kind-flotilla, `make kind-up`): the images built with Docker and loaded into
#     the kind nodes (scripts/kind/load-images.sh), the values of scripts/kind/values.yaml;
#   - this machine's node (.cluster/kubeconfig): that is `make up` (the release from its registry);
#   - any other cluster pulls its images from a registry: install a published release there,
#     helm install flotilla oci://ghcr.io/<owner>/charts/flotilla --version <version>.
# Extra arguments go to helm (--set, -f).
set -euo pipefail
source "$(dirname "$0")/cluster/lib.sh"

command -v helm >/dev/null || die "helm is not on PATH (Helm 4, or 3.x: see the README's prerequisites)"
context=$(kubectl config current-context 2>/dev/null || true)
if [ "${KUBECONFIG:-}" -ef "$KUBECONFIG_FILE" ] 2>/dev/null || [ "$context" = flotilla ]; then
  die "the current context is this machine's node: 'make up' installs the platform there, from its registry"
fi
[ "$context" = kind-flotilla ] || die "make deploy knows how to bring images to kind (context kind-flotilla, 'make kind-up'); the context is '${context:-none}'. On another cluster, install a published release: helm install flotilla oci://ghcr.io/<owner>/charts/flotilla --version <version> --namespace flotilla --create-namespace --wait"
step "building the chart's dependencies"
helm dependency build "$ROOT/charts/flotilla-operator" >/dev/null
helm dependency build "$ROOT/charts/flotilla" >/dev/null
"$ROOT/scripts/kind/load-images.sh"
step "installing the umbrella chart into kind (release flotilla, namespace flotilla)"
helm upgrade --install flotilla "$ROOT/charts/flotilla" --namespace flotilla --create-namespace \
  -f "$ROOT/scripts/kind/values.yaml" --wait --timeout 15m "$@"
note "the platform answers through Traefik on http://localhost (every Microservice's paths)"
