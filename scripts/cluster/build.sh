#!/usr/bin/env bash
# Build the control plane from Go modules, one binary at a time, into the cache
# (~/.cache/flotilla/cluster/bin). A binary is rebuilt only when its pin changes.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

export GOFLAGS="${GOFLAGS:-} -mod=mod"
export CGO_ENABLED=0
mkdir -p "$BIN_DIR" "$CACHE_DIR/src"
command -v go >/dev/null || die "Go is needed to build the control plane (https://go.dev/dl or apt golang)"

# The pin of a binary: the versions it is built from plus its wrapper module, so that bumping
# one tool rebuilds that tool only.
pin_of() {  # pin_of "VERSIONS" [WRAPPER_GO_MOD]
  { echo "$1"; [ -n "${2:-}" ] && cat "$2"; } | sha256sum | cut -c1-16
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
    cp "$CLUSTER_SCRIPTS/$name/go.mod" "$CLUSTER_SCRIPTS/$name/tools.go" "$dir/"
    step "resolving the $name modules (downloads from the Go module proxy on first use)" >&2
    if ! (cd "$dir" && with_progress "resolving $name modules" go mod tidy >"$dir/tidy.log" 2>&1) >&2; then
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
kube_pin=$(pin_of "$KUBERNETES_VERSION" "$CLUSTER_SCRIPTS/kube/go.mod")
grep -q "require k8s.io/kubernetes $KUBERNETES_VERSION\$" "$CLUSTER_SCRIPTS/kube/go.mod" \
  || die "kube/go.mod does not pin $KUBERNETES_VERSION: run scripts/cluster/pin.sh"
kube_needed=0
for name in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
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
  for name in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    build "$name" "$kube_pin" "$kube_dir" "k8s.io/kubernetes/cmd/$name" "$kube_ldflags"
  done
else
  note "Kubernetes $KUBERNETES_VERSION binaries are up to date"
fi

# etcd, with the same version stamp its own build script sets.
etcd_pin=$(pin_of "$ETCD_VERSION" "$CLUSTER_SCRIPTS/etcd/go.mod")
if ! fresh etcd "$etcd_pin"; then
  etcd_dir=$(prepare_module etcd "$etcd_pin")
  build etcd "$etcd_pin" "$etcd_dir" go.etcd.io/etcd/server/v3 \
    "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$ETCD_VERSION"
else
  note "etcd is up to date"
fi

skaffold_pin=$(pin_of "$SKAFFOLD_VERSION" "$CLUSTER_SCRIPTS/skaffold/go.mod")
if ! fresh skaffold "$skaffold_pin"; then
  skaffold_dir=$(prepare_module skaffold "$skaffold_pin")
  build skaffold "$skaffold_pin" "$skaffold_dir" github.com/GoogleContainerTools/skaffold/v2/cmd/skaffold \
    "-s -w -X github.com/GoogleContainerTools/skaffold/v2/pkg/skaffold/version.version=$SKAFFOLD_VERSION"
else
  note "skaffold is up to date"
fi

install_tool kwok "$(pin_of "$KWOK_VERSION $KUBERNETES_VERSION")" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" \
  "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=$KUBERNETES_VERSION"

# helm: its default Kubernetes version follows the client-go it is built with (as its Makefile does).
helm_dir=$(go mod download -json "helm.sh/helm/v3@$HELM_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
client_go=$(sed -n 's/^\tk8s.io\/client-go v0\.\([0-9]*\)\..*/\1/p' "$helm_dir/go.mod")
install_tool helm "$(pin_of "$HELM_VERSION")" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" \
  "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean
   -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$client_go
   -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$client_go"

install_tool actionlint "$(pin_of "$ACTIONLINT_VERSION")" "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION" \
  "-s -w -X github.com/rhysd/actionlint.version=$ACTIONLINT_VERSION"

note "control plane binaries ready in $BIN_DIR ($(elapsed $((SECONDS - total_started))))"
