#!/usr/bin/env bash
# Print the Traefik ingress controller of the kind cluster: the local node's own manifest
# (scripts/cluster/addons/traefik.yaml, one definition for both) with the upstream image
# docker.io/traefik:$TRAEFIK_VERSION (scripts/cluster/versions.env), then the kind overlay
# (scripts/kind/traefik/: the pod network and the node's ports 80 and 443 through hostPort).
# Needs kubectl (its built-in kustomize); `make kind-up` applies the output.
set -euo pipefail
source "$(dirname "$0")/../cluster/lib.sh"

# The web entry point's port in the pod (hostPort 80 forwards to it): the overlay's too.
KIND_WEB_PORT=8000
command -v kubectl >/dev/null || die "kubectl is needed to render Traefik for kind (kubectl kustomize)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sed -e "s#@TRAEFIK_IMAGE@#docker.io/traefik:$TRAEFIK_VERSION#g" -e "s#@INGRESS_PORT@#$KIND_WEB_PORT#g" \
  "$CLUSTER_SCRIPTS/addons/traefik.yaml" > "$work/traefik.yaml"
left=$(grep -o '@[A-Z_]*@' "$work/traefik.yaml" | sort -u | xargs) || true
[ -z "$left" ] || die "scripts/cluster/addons/traefik.yaml has placeholders kind does not fill: $left (scripts/kind/traefik.sh)"
cp "$ROOT"/scripts/kind/traefik/*.yaml "$work/"
kubectl kustomize "$work" \
  || die "scripts/kind/traefik/ no longer fits scripts/cluster/addons/traefik.yaml (above: the value that moved): update its patches"
