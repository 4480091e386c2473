#!/usr/bin/env bash
# Build the images of the local node with buildah, from a Debian base made by debootstrap, and
# push them to the node's registry ($REGISTRY, scripts/cluster/registry.sh), from which the
# node's containerd pulls them.
#   scripts/images.sh base        the Debian base with Python (debootstrap)
#   scripts/images.sh node        the base, pause, CoreDNS, Traefik and local-path images, and
#                                 Jaeger's (the umbrella chart's tracing.jaeger.image)
#   scripts/images.sh platform    PostgreSQL, every service of the list (scripts/services.py,
#                                 each from services/Dockerfile) and the operator; prints
#                                 NAME=IMAGE lines for helm on stdout
#   scripts/images.sh artifact NAME REFERENCE
#                                 one service of the list (or operator) pushed as REFERENCE: the
#                                 custom builder of `skaffold dev` (skaffold.yaml)
# A platform image's tag is the hash of its inputs: it is rebuilt, and pushed, only when they change.
set -euo pipefail
source "$(dirname "$0")/cluster/lib.sh"

what=${1:?usage: scripts/images.sh base|node|platform|artifact NAME REFERENCE}
STORAGE="$IMAGE_CACHE/storage"
mkdir -p "$STORAGE"

# Progress goes to stderr: stdout carries the image references for the caller.
log_step() { step "$@" >&2; }
log_note() { note "$@" >&2; }

bh() { buildah --root "$STORAGE/root" --runroot "$STORAGE/run" --storage-driver overlay "$@"; }

# The local registry holds REFERENCE as this very image: its manifest names the local image's
# config (buildah's image ID is its config's digest).
in_registry() {  # in_registry REFERENCE
  registry_manifest "$1" 2>/dev/null | grep -q "\"$(bh images --quiet --no-trunc "$1" | head -n1)\""
}

# Push an image to the registry unless it holds it already (plain HTTP: the registry is loopback's).
publish() {  # publish REFERENCE [DESTINATION]
  local reference=$1 destination=${2:-$1}
  [ "${destination%%/*}" = "$REGISTRY" ] && in_registry "$destination" && return 0
  log_note "pushing $destination"
  # Plain HTTP to this machine's registry only; any other registry is spoken to over TLS.
  local tls=true
  [ "${destination%%/*}" = "$REGISTRY" ] && tls=false
  bh push --quiet --tls-verify="$tls" --retry 2 "$reference" "docker://$destination" >/dev/null \
    || die "pushing $destination failed (is the registry up? scripts/cluster/registry.sh up)"
}

built() { bh images --quiet "$1" >/dev/null 2>&1; }

# Remove the other tags of an image's repository (in buildah's storage) and the layers only they used.
remove_stale() {  # remove_stale REFERENCE
  local repository=${1%:*} old
  for old in $(bh images --format '{{.Name}}:{{.Tag}}' | grep "^$repository:" | grep -vx "$1" || true); do
    bh rmi "$old" >/dev/null 2>&1 || true
  done
  bh rmi --prune >/dev/null 2>&1 || true
}

# The base: Debian with Python 3.11 and pip, like python:3.11-slim-bookworm, made by debootstrap.
# It trusts the host's local CAs (/usr/local/share/ca-certificates), so builds behind a
# TLS-inspecting proxy work as they do on the host.
build_base() {
  local reference=$BASE_IMAGE started=$SECONDS
  built "$reference" && { publish "$reference"; return; }
  local mirror
  mirror=${FLOTILLA_DEBIAN_MIRROR:-$(sed -n 's/^URIs: *\(http[^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)}
  mirror=${mirror:-http://deb.debian.org/debian}
  local rootfs
  rootfs=$(mktemp -d "$IMAGE_CACHE/rootfs.XXXXXX")
  log_step "making the base image $reference with debootstrap ($DEBIAN_SUITE from $mirror)"
  with_progress "running debootstrap" logged "$IMAGE_CACHE/debootstrap.log" debootstrap --variant=minbase \
    --include=python3,python3-pip,python3-venv,python-is-python3,ca-certificates \
    "$DEBIAN_SUITE" "$rootfs" "$mirror" \
    || { tail -n 20 "$IMAGE_CACHE/debootstrap.log" >&2; rm -rf "$rootfs"; die "debootstrap failed"; }
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
    chroot "$rootfs" update-ca-certificates >/dev/null 2>&1
  fi
  # An image's Python is the image's own: pip may install into it (as the python images allow).
  rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
  chroot "$rootfs" apt-get clean
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/log/*.log
  local container
  container=$(bh from --quiet scratch)
  bh copy --quiet "$container" "$rootfs/" / >/dev/null
  bh config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 \
    --cmd python3 --label "org.opencontainers.image.description=Debian $DEBIAN_SUITE with Python 3 (debootstrap)" \
    "$container"
  bh commit --quiet --rm "$container" "$reference" >/dev/null
  rm -rf "$rootfs"
  log_note "base image built in $(elapsed $((SECONDS - started)))"
  publish "$reference"
}

# An image of one static binary of the build cache (pause, CoreDNS, Traefik, the provisioner, Jaeger).
build_binary_image() {  # build_binary_image REFERENCE BINARY USER [FROM]
  local reference=$1 binary=$2 user=$3 from=${4:-scratch}
  if ! built "$reference"; then
    log_step "building $reference"
    local container
    container=$(bh from --quiet --pull=never "$from")
    bh copy --quiet --chmod 0755 "$container" "$binary" "/usr/local/bin/$(basename "$binary")" >/dev/null
    bh config --entrypoint "[\"/usr/local/bin/$(basename "$binary")\"]" --cmd "[]" --user "$user" "$container"
    bh commit --quiet --rm "$container" "$reference" >/dev/null
  fi
  publish "$reference"
}

# The sandbox ("pause") image, from the pause.c of the pinned Kubernetes module.
build_pause() {
  local binary="$IMAGE_CACHE/pause-$PAUSE_VERSION"
  if [ ! -x "$binary" ]; then
    local kube_dir
    kube_dir=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
    log_step "compiling pause $PAUSE_VERSION"
    gcc -Os -Wall -Werror -static -DVERSION="v$PAUSE_VERSION-$KUBERNETES_VERSION" \
      -o "$binary" "$kube_dir/build/pause/linux/pause.c"
  fi
  build_binary_image "$PAUSE_IMAGE" "$binary" 65535:65535
}

# An image of one of the project's Dockerfiles, built on the local base. BUILD_ARGS (an array
# of KEY=VALUE) adds build arguments; they are part of the image's inputs.
BUILD_ARGS=()
build_dockerfile() {  # build_dockerfile NAME DOCKERFILE CONTEXT INPUT...
  local name=$1 dockerfile=$2 context=$3; shift 3
  local reference started=$SECONDS words=$name argument build_args=()
  for argument in "${BUILD_ARGS[@]}"; do build_args+=(--build-arg "$argument"); words+=" $argument"; done
  reference="$REGISTRY/flotilla/$name:$(inputs_hash "$words $(bh images --quiet --no-trunc "$BASE_IMAGE")" \
    -- "$@")"
  if ! built "$reference"; then
    log_step "building $reference from ${dockerfile#"$ROOT"/}${BUILD_ARGS[*]:+ (${BUILD_ARGS[*]})}"
    # The build stage installs from PyPI: it shares the host's network (and its DNS).
    with_progress "building $name" logged "$IMAGE_CACHE/build-$name.log" bh build --quiet --layers --pull=never \
      --network host --build-arg "PYTHON_IMAGE=$BASE_IMAGE" --build-arg "BASE_IMAGE=$BASE_IMAGE" \
      "${build_args[@]}" -f "$dockerfile" -t "$reference" "$context" \
      || { tail -n 30 "$IMAGE_CACHE/build-$name.log" >&2; die "building the $name image failed"; }
    log_note "$name built in $(elapsed $((SECONDS - started)))"
    remove_stale "$reference"
  fi
  publish "$reference"
  echo "$reference"
}

# One image of the platform by name: postgresql, operator, or a service of the list.
build_named() {  # build_named NAME: prints its reference
  case $1 in
    postgresql)
      build_dockerfile postgresql "$CLUSTER_SCRIPTS/images/postgresql/Dockerfile" \
        "$CLUSTER_SCRIPTS/images/postgresql" scripts/cluster/images/postgresql ;;
    operator)
      build_dockerfile operator "$ROOT/operator/Dockerfile" "$ROOT/operator" operator ;;
    *)
      local listed
      listed=$(service_names)
      grep -qx -- "$1" <<<"$listed" \
        || die "$1 is not a service of the list (scripts/services.py names), nor operator or postgresql"
      # In the caller's substitution subshell: the build argument stays with this one build.
      BUILD_ARGS=("SERVICE=$1")
      build_dockerfile "$1" "$ROOT/services/Dockerfile" "$ROOT/services" \
        services/Dockerfile services/.dockerignore services/kit "services/$1" ;;
  esac
}

"$CLUSTER_SCRIPTS/registry.sh" up >&2
case $what in
  base)
    build_base
    ;;
  node)
    build_base
    build_pause
    build_binary_image "$COREDNS_IMAGE" "$BIN_DIR/coredns" 0:0
    build_binary_image "$TRAEFIK_IMAGE" "$BIN_DIR/traefik" 65532:65532
    build_binary_image "$PROVISIONER_IMAGE" "$BIN_DIR/local-path-provisioner" 0:0 "$BASE_IMAGE"
    # Jaeger's user, as its own image's (the chart runs it as 10001).
    build_binary_image "$JAEGER_IMAGE" "$BIN_DIR/jaeger" 10001:10001
    ;;
  platform)
    build_base
    for name in postgresql $(service_names) operator; do
      echo "$name=$(build_named "$name")"
    done
    ;;
  artifact)
    name=${2:?usage: scripts/images.sh artifact NAME REFERENCE}
    destination=${3:?usage: scripts/images.sh artifact NAME REFERENCE}
    build_base
    reference=$(build_named "$name")
    bh tag "$reference" "$destination"
    # skaffold sets PUSH_IMAGE: false when its cluster loads images without a registry.
    if [ "${PUSH_IMAGE:-true}" = true ]; then
      publish "$reference" "$destination"
    fi
    ;;
  *) die "usage: scripts/images.sh base|node|platform|artifact NAME REFERENCE" ;;
esac
