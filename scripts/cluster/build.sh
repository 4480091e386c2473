#!/usr/bin/env bash
# Build the control plane from Go modules, one binary at a time, into the cache
# (~/.cache/flotilla/cluster/bin). A binary is rebuilt only when its pin changes.
#   scripts/cluster/build.sh          the control plane, kwok, helm (4), helm3, kind and the CI tools
#   scripts/cluster/build.sh --node   also the real node's: kubelet, kube-proxy, crictl, CoreDNS,
#                                     Traefik and the local-path provisioner
set -euo pipefail
with_node=0
[ "${1:-}" = --node ] && with_node=1
source "$(dirname "$0")/lib.sh"

export GOFLAGS="${GOFLAGS:-} -mod=mod"
export CGO_ENABLED=0
mkdir -p "$BIN_DIR" "$CACHE_DIR/src"
command -v go >/dev/null || die "Go is needed to build the control plane (https://go.dev/dl or apt golang)"

# The pin of a binary: the versions it is built from plus its wrapper module's files, so that
# bumping one tool rebuilds that tool only.
pin_of() {  # pin_of "VERSIONS" [WRAPPER_DIR]
  { echo "$1"; if [ -n "${2:-}" ]; then cat "$2"/go.mod "$2"/*.go; fi; } | sha256sum | cut -c1-16
}

fresh() {  # fresh NAME PIN: the cached binary was built from this pin
  [ -x "$BIN_DIR/$1" ] && [ "$(cat "$BIN_DIR/.$1.pin" 2>/dev/null)" = "$2" ]
}

built() { echo "$2" > "$BIN_DIR/.$1.pin"; }

# Prepare a wrapper module outside the repository and resolve its dependencies once.
prepare_module() {
  local name=$1 pin=$2 dir="$CACHE_DIR/src/$1"
  if [ "$(cat "$dir/.pin" 2>/dev/null)" != "$pin" ]; then
    rm -rf "$dir" && mkdir -p "$dir"
    cp "$CLUSTER_SCRIPTS/$name/go.mod" "$CLUSTER_SCRIPTS/$name"/*.go "$dir/"
    step "resolving the $name modules (downloads from the Go module proxy on first use)" >&2
    if ! (cd "$dir" && with_progress "resolving $name modules" logged "$dir/tidy.log" go mod tidy) >&2; then
      tail -n 20 "$dir/tidy.log" >&2
      die "could not resolve the $name modules"
    fi
    echo "$pin" > "$dir/.pin"
  fi
  echo "$dir"
}

build() {  # build NAME PIN DIR PACKAGE LDFLAGS
  local name=$1 pin=$2 dir=$3 package=$4 ldflags=$5 started=$SECONDS
  if fresh "$name" "$pin"; then
    note "$name is up to date"
    return
  fi
  step "building $name"
  (cd "$dir" && with_progress "building $name" go build -trimpath -ldflags "$ldflags" -o "$BIN_DIR/$name.new" "$package")
  mv "$BIN_DIR/$name.new" "$BIN_DIR/$name"
  built "$name" "$pin"
  note "$name built in $(elapsed $((SECONDS - started)))"
}

install_tool() {  # install_tool NAME PIN PACKAGE@VERSION LDFLAGS
  local name=$1 pin=$2 package=$3 ldflags=$4 started=$SECONDS
  if fresh "$name" "$pin"; then
    note "$name is up to date"
    return
  fi
  step "building $name"
  GOBIN="$BIN_DIR" GOFLAGS="" with_progress "building $name" go install -trimpath -ldflags "$ldflags" "$package"
  built "$name" "$pin"
  note "$name built in $(elapsed $((SECONDS - started)))"
}

total_started=$SECONDS

# Kubernetes: version ldflags as hack/lib/version.sh sets them.
KUBE_COMMANDS="kube-apiserver kube-controller-manager kube-scheduler kubectl"
[ "$with_node" = 1 ] && KUBE_COMMANDS+=" kubelet kube-proxy"
kube_pin=$(pin_of "$KUBERNETES_VERSION" "$CLUSTER_SCRIPTS/kube")
grep -q "require k8s.io/kubernetes $KUBERNETES_VERSION\$" "$CLUSTER_SCRIPTS/kube/go.mod" \
  || die "kube/go.mod does not pin $KUBERNETES_VERSION: run scripts/cluster/pin.sh"
kube_needed=0
for name in $KUBE_COMMANDS; do
  fresh "$name" "$kube_pin" || kube_needed=1
done
if [ "$kube_needed" = 1 ]; then
  kube_dir=$(prepare_module kube "$kube_pin")
  major=${KUBERNETES_VERSION#v}; minor=${major#*.}; major=${major%%.*}; minor=${minor%%.*}
  build_date=$(cd "$kube_dir" && go list -m -f '{{.Time}}' k8s.io/kubernetes | cut -c1-19)Z
  kube_ldflags="-s -w"
  for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    kube_ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    kube_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=${build_date/ /T}"
  done
  for name in $KUBE_COMMANDS; do
    build "$name" "$kube_pin" "$kube_dir" "k8s.io/kubernetes/cmd/$name" "$kube_ldflags"
  done
else
  note "Kubernetes $KUBERNETES_VERSION binaries are up to date"
fi

# etcd, with the same version stamp its own build script sets.
etcd_pin=$(pin_of "$ETCD_VERSION" "$CLUSTER_SCRIPTS/etcd")
if ! fresh etcd "$etcd_pin"; then
  etcd_dir=$(prepare_module etcd "$etcd_pin")
  build etcd "$etcd_pin" "$etcd_dir" go.etcd.io/etcd/server/v3 \
    "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$ETCD_VERSION"
else
  note "etcd is up to date"
fi

skaffold_pin=$(pin_of "$SKAFFOLD_VERSION" "$CLUSTER_SCRIPTS/skaffold")
if ! fresh skaffold "$skaffold_pin"; then
  skaffold_dir=$(prepare_module skaffold "$skaffold_pin")
  build skaffold "$skaffold_pin" "$skaffold_dir" github.com/GoogleContainerTools/skaffold/v2/cmd/skaffold \
    "-s -w -X github.com/GoogleContainerTools/skaffold/v2/pkg/skaffold/version.version=$SKAFFOLD_VERSION"
else
  note "skaffold is up to date"
fi

install_tool kwok "$(pin_of "$KWOK_VERSION $KUBERNETES_VERSION")" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" \
  "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=$KUBERNETES_VERSION"

# Helm 4, as its Makefile stamps a tagged build (its Kubernetes version comes from the build info).
install_tool helm "$(pin_of "$HELM_VERSION")" "helm.sh/helm/v4/cmd/helm@$HELM_VERSION" \
  "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION -X helm.sh/helm/v4/internal/version.metadata=
   -X helm.sh/helm/v4/internal/version.gitTreeState=clean"

# Helm 3 as helm3: its default Kubernetes version follows the client-go it is built with (as its
# Makefile does). `go install` names the binary helm, so it is built into a directory of its own.
helm3_dir=$(go mod download -json "helm.sh/helm/v3@$HELM3_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
client_go=$(sed -n 's/^\tk8s.io\/client-go v0\.\([0-9]*\)\..*/\1/p' "$helm3_dir/go.mod")
helm3_pin=$(pin_of "$HELM3_VERSION")
if ! fresh helm3 "$helm3_pin"; then
  mkdir -p "$CACHE_DIR/helm3"
  BIN_DIR="$CACHE_DIR/helm3" install_tool helm "$helm3_pin" "helm.sh/helm/v3/cmd/helm@$HELM3_VERSION" \
    "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM3_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean
     -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$client_go
     -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$client_go"
  cp "$CACHE_DIR/helm3/helm" "$BIN_DIR/helm3.new" && mv "$BIN_DIR/helm3.new" "$BIN_DIR/helm3"
  built helm3 "$helm3_pin"
else
  note "helm3 is up to date"
fi

install_tool kind "$(pin_of "$KIND_VERSION")" "sigs.k8s.io/kind@$KIND_VERSION" "-s -w"

install_tool actionlint "$(pin_of "$ACTIONLINT_VERSION")" "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION" \
  "-s -w -X github.com/rhysd/actionlint.version=$ACTIONLINT_VERSION"

if [ "$with_node" = 1 ]; then
  install_tool crictl "$(pin_of "$CRI_TOOLS_VERSION")" "sigs.k8s.io/cri-tools/cmd/crictl@$CRI_TOOLS_VERSION" \
    "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRI_TOOLS_VERSION"

  coredns_pin=$(pin_of "$COREDNS_VERSION" "$CLUSTER_SCRIPTS/coredns")
  if ! fresh coredns "$coredns_pin"; then
    coredns_dir=$(prepare_module coredns "$coredns_pin")
    build coredns "$coredns_pin" "$coredns_dir" . \
      "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION"
  else
    note "coredns is up to date"
  fi

  # Traefik's module replaces one of its packages by a directory of its own: build it in place,
  # from a copy of the module (its go.sum checks every dependency).
  traefik_pin=$(pin_of "$TRAEFIK_VERSION")
  if ! fresh traefik "$traefik_pin"; then
    traefik_dir="$CACHE_DIR/src/traefik"
    if [ "$(cat "$traefik_dir/.pin" 2>/dev/null)" != "$traefik_pin" ]; then
      step "fetching the Traefik $TRAEFIK_VERSION module"
      module_dir=$(go mod download -json "github.com/traefik/traefik/v3@$TRAEFIK_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
      rm -rf "$traefik_dir" && cp -r "$module_dir" "$traefik_dir" && chmod -R u+w "$traefik_dir"
      echo "$traefik_pin" > "$traefik_dir/.pin"
    fi
    GOFLAGS="" build traefik "$traefik_pin" "$traefik_dir" ./cmd/traefik \
      "-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=$TRAEFIK_VERSION"
  else
    note "traefik is up to date"
  fi

  install_tool local-path-provisioner "$(pin_of "$LOCAL_PATH_PROVISIONER_VERSION")" \
    "github.com/rancher/local-path-provisioner@$LOCAL_PATH_PROVISIONER_VERSION" \
    "-s -w -X main.VERSION=$LOCAL_PATH_PROVISIONER_VERSION"
fi

note "binaries ready in $BIN_DIR ($(elapsed $((SECONDS - total_started))))"
