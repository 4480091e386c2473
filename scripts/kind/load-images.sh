#!/usr/bin/env bash
# For `make deploy` on the kind cluster (context kind-flotilla): build with Docker every image the
# umbrella chart renders by default from this repository - each service of the list from
# services/Dockerfile (--build-arg SERVICE=<name>, context services/) and the operator from
# operator/Dockerfile - tagged as the chart names them (flotilla/<name>:<appVersion>), and load
# them into the kind nodes: no registry is involved. Needs docker, kind and helm (the chart's
# dependencies built, as `make deploy` does first).
set -euo pipefail
source "$(dirname "$0")/../cluster/lib.sh"

CLUSTER=$(sed -n 's/^name: *//p' "$ROOT/k8s/kind-config.yaml")
if ! command -v docker >/dev/null || ! docker info >/dev/null 2>&1; then
  die "building the images for kind needs a running Docker engine ('docker info' fails)"
fi
command -v kind >/dev/null || die "kind is not installed (make kind-up says how)"
kind get clusters 2>/dev/null | grep -qx "$CLUSTER" || die "no kind cluster $CLUSTER: run 'make kind-up' first"

# The chart's own images, as it renders them (a service's, the operator's, the test hook's); the
# others (PostgreSQL) are pulled by the nodes.
images=$(helm template flotilla "$ROOT/charts/flotilla" \
  | sed -n 's/^ *image: *"\{0,1\}\(flotilla\/[^":]*:[^"]*\)"\{0,1\} *$/\1/p' | sort -u)
[ -n "$images" ] || die "helm template of charts/flotilla renders no flotilla/ image"
services=" $(service_names | xargs) "
for image in $images; do
  name=${image#flotilla/}
  name=${name%%:*}
  step "building $image"
  if [ "$name" = operator ]; then
    docker build -t "$image" -f "$ROOT/operator/Dockerfile" "$ROOT/operator"
  elif [[ $services == *" $name "* ]]; then
    docker build -t "$image" --build-arg "SERVICE=$name" -f "$ROOT/services/Dockerfile" "$ROOT/services"
  else
    die "the chart renders $image, which is neither the operator nor a service of the list"
  fi
done
step "loading the images into the kind cluster $CLUSTER"
# shellcheck disable=SC2086 # one reference per word
kind load docker-image --name "$CLUSTER" $images
