#!/usr/bin/env bash
# Build the pinned Go binaries from their modules into the cache (~/.cache/flotilla/cluster/bin).
# A binary is rebuilt only when its pin changes.
#   scripts/cluster/build.sh          the control plane, kwok, helm (4), helm3, kind and the CI tools
#   scripts/cluster/build.sh --node   also the real node's: kubelet, kube-proxy, crictl, CoreDNS,
#                                     Traefik, the local-path provisioner, kube-router and Jaeger
#   scripts/cluster/build.sh NAME...  only these binaries (of either list)
#   --plan       print the binaries of the selection that are not up to date, one a line
#   --download   only fetch the modules they are built from (network, no compiling): make test
#                (scripts/pipeline.py) downloads them while another build compiles
set -euo pipefail
mode=build with_node=0 names=()
for argument in "$@"; do
  case $argument in
    --node) with_node=1 ;;
    --plan | --download) mode=${argument#--} ;;
    -*) echo "usage: $0 [--node] [--plan|--download] [NAME...]" >&2; exit 2 ;;
    *) names+=("$argument") ;;
  esac
done
source "$(dirname "$0")/lib.sh"

KUBE_COMMANDS=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy)
CONTROL_PLANE=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd skaffold kwok helm helm3 kind actionlint)
NODE=(kubelet kube-proxy crictl coredns traefik local-path-provisioner kube-router jaeger)

selected=("${CONTROL_PLANE[@]}")
[ "$with_node" = 1 ] && selected+=("${NODE[@]}")
if [ ${#names[@]} -gt 0 ]; then
  for name in "${names[@]}"; do
    [[ " ${CONTROL_PLANE[*]} ${NODE[*]} " == *" $name "* ]] \
      || die "$name is not a binary of the build (${CONTROL_PLANE[*]} ${NODE[*]})"
  done
  selected=("${names[@]}")
fi

# The Go files of a wrapper module, read in order (none when its go.mod names its tool).
go_files() {  # go_files DIR
  if compgen -G "$1/*.go" >/dev/null; then cat "$1"/*.go; fi
}

# The pin of a binary: the versions it is built from plus its wrapper module's files, so that
# bumping one tool rebuilds that tool only.
pin_of() {  # pin_of "VERSIONS" [WRAPPER_DIR]
  { echo "$1"; if [ -n "${2:-}" ]; then cat "$2"/go.mod; go_files "$2"; fi; } | sha256sum | cut -c1-16
}

pin_for() {  # pin_for NAME
  case $1 in
    # Before kube-*, which would match it.
    kube-router) pin_of "$KUBE_ROUTER_VERSION" "$CLUSTER_SCRIPTS/kube-router" ;;
    kube-* | kubectl | kubelet) pin_of "$KUBERNETES_VERSION" "$CLUSTER_SCRIPTS/kube" ;;
    etcd) pin_of "$ETCD_VERSION" "$CLUSTER_SCRIPTS/etcd" ;;
    skaffold) pin_of "$SKAFFOLD_VERSION" "$CLUSTER_SCRIPTS/skaffold" ;;
    coredns) pin_of "$COREDNS_VERSION" "$CLUSTER_SCRIPTS/coredns" ;;
    jaeger) pin_of "$JAEGER_VERSION" "$CLUSTER_SCRIPTS/jaeger" ;;
    kwok) pin_of "$KWOK_VERSION $KUBERNETES_VERSION" ;;
    helm) pin_of "$HELM_VERSION" ;;
    helm3) pin_of "$HELM3_VERSION" ;;
    kind) pin_of "$KIND_VERSION" ;;
    actionlint) pin_of "$ACTIONLINT_VERSION" ;;
    crictl) pin_of "$CRI_TOOLS_VERSION" ;;
    traefik) pin_of "$TRAEFIK_VERSION" ;;
    local-path-provisioner) pin_of "$LOCAL_PATH_PROVISIONER_VERSION" ;;
  esac
}

fresh() {  # fresh NAME: the cached binary was built from its current pin
  [ -x "$BIN_DIR/$1" ] && [ "$(cat "$BIN_DIR/.$1.pin" 2>/dev/null)" = "$(pin_for "$1")" ]
}

built() { pin_for "$1" > "$BIN_DIR/.$1.pin"; }

stale=()
for name in "${selected[@]}"; do
  fresh "$name" || stale+=("$name")
done
if [ "$mode" = plan ]; then
  [ ${#stale[@]} -eq 0 ] || printf '%s\n' "${stale[@]}"
  exit 0
fi
up_to_date=()
for name in "${selected[@]}"; do
  if fresh "$name"; then up_to_date+=("$name"); fi
done
[ ${#up_to_date[@]} -eq 0 ] || note "up to date: ${up_to_date[*]}"
[ ${#stale[@]} -eq 0 ] && exit 0
wanted() { [[ " ${stale[*]} " == *" $1 "* ]]; }

export GOFLAGS="${GOFLAGS:-} -mod=mod"
export CGO_ENABLED=0
# The compiler and the linker spend about a fifth of their time collecting garbage at Go's default
# GOGC=100. With 4 GiB a core to spare, they collect only as a process nears 3 GiB: kwok's cold
# build took 1m12s instead of 1m32s here (user CPU -30%), its largest compile 1 GB. Set GOGC to
# keep Go's default.
mem_kib=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo 2>/dev/null || echo 0)
if [ -z "${GOGC:-}" ] && (( mem_kib >= 4 * 1024 * 1024 * $(nproc) )); then
  export GOGC=off GOMEMLIMIT=3GiB
fi
mkdir -p "$BIN_DIR" "$CACHE_DIR/src"
command -v go >/dev/null || die "Go is needed to build the control plane (https://go.dev/dl or apt golang)"

# Prepare a wrapper module outside the repository and resolve its dependencies once.
prepare_module() {
  local name=$1 pin=$2 dir="$CACHE_DIR/src/$1"
  if [ "$(cat "$dir/.pin" 2>/dev/null)" != "$pin" ]; then
    rm -rf "$dir" && mkdir -p "$dir"
    cp "$CLUSTER_SCRIPTS/$name/go.mod" "$dir/"
    if compgen -G "$CLUSTER_SCRIPTS/$name/*.go" >/dev/null; then cp "$CLUSTER_SCRIPTS/$name"/*.go "$dir/"; fi
    step "resolving the $name modules (downloads from the Go module proxy on first use)" >&2
    if ! (cd "$dir" && with_progress "resolving $name modules" logged "$dir/tidy.log" go mod tidy) >&2; then
      tail -n 20 "$dir/tidy.log" >&2
      die "could not resolve the $name modules"
    fi
    echo "$pin" > "$dir/.pin"
  fi
  echo "$dir"
}

# Fetch the modules a `go install PACKAGE@VERSION` compiles (-n loads every package, runs nothing).
fetch_tool() {  # fetch_tool NAME PACKAGE@VERSION
  local log="$CACHE_DIR/src/$1.fetch.log"
  step "fetching the $1 modules"
  if ! GOFLAGS="" with_progress "fetching $1 modules" logged "$log" go install -n "$2"; then
    tail -n 20 "$log" >&2
    die "could not fetch the $1 modules"
  fi
}

# Build main packages of one module in one `go build`: their package graph is loaded once and each
# link (single-threaded) runs beside other work, less CPU than a `go build` each. Several packages
# go to a directory, each binary named after its package's last element.
build() {  # build DIR LDFLAGS NAME=PACKAGE...
  local dir=$1 ldflags=$2 started=$SECONDS names=() packages=() pair out target name; shift 2
  for pair in "$@"; do names+=("${pair%%=*}"); packages+=("${pair#*=}"); done
  step "building ${names[*]}"
  out=$(mktemp -d "$BIN_DIR/.new.XXXXXX")
  target="$out/"
  [ ${#names[@]} -gt 1 ] || target="$out/${names[0]}"
  (cd "$dir" && with_progress "building ${names[*]}" go build -trimpath -ldflags "$ldflags" -o "$target" "${packages[@]}") \
    || { rm -rf "$out"; die "building ${names[*]} failed"; }
  for name in "${names[@]}"; do
    mv "$out/$name" "$BIN_DIR/$name"
    built "$name"
  done
  rm -rf "$out"
  note "${names[*]} built in $(elapsed $((SECONDS - started)))"
}

install_tool() {  # install_tool NAME PACKAGE@VERSION LDFLAGS
  local name=$1 package=$2 ldflags=$3 started=$SECONDS
  step "building $name"
  GOBIN="$BIN_DIR" GOFLAGS="" with_progress "building $name" go install -trimpath -ldflags "$ldflags" "$package"
  built "$name"
  note "$name built in $(elapsed $((SECONDS - started)))"
}


total_started=$SECONDS

# Kubernetes: version ldflags as hack/lib/version.sh sets them.
kube_stale=()
for name in "${KUBE_COMMANDS[@]}"; do
  wanted "$name" && kube_stale+=("$name=k8s.io/kubernetes/cmd/$name")
done
if [ ${#kube_stale[@]} -gt 0 ]; then
  grep -q "require k8s.io/kubernetes $KUBERNETES_VERSION\$" "$CLUSTER_SCRIPTS/kube/go.mod" \
    || die "kube/go.mod does not pin $KUBERNETES_VERSION: run scripts/cluster/pin.sh"
  kube_dir=$(prepare_module kube "$(pin_for kube-apiserver)")
  if [ "$mode" = build ]; then
    major=${KUBERNETES_VERSION#v}; minor=${major#*.}; major=${major%%.*}; minor=${minor%%.*}
    build_date=$(cd "$kube_dir" && go list -m -f '{{.Time}}' k8s.io/kubernetes | cut -c1-19)Z
    kube_ldflags="-s -w"
    for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
      kube_ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
      kube_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=${build_date/ /T}"
    done
    build "$kube_dir" "$kube_ldflags" "${kube_stale[@]}"
  fi
fi

# etcd, with the same version stamp its own build script sets.
if wanted etcd; then
  etcd_dir=$(prepare_module etcd "$(pin_for etcd)")
  if [ "$mode" = build ]; then
    build "$etcd_dir" "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$ETCD_VERSION" etcd=go.etcd.io/etcd/server/v3
  fi
fi

if wanted skaffold; then
  skaffold_dir=$(prepare_module skaffold "$(pin_for skaffold)")
  if [ "$mode" = build ]; then
    build "$skaffold_dir" "-s -w -X github.com/GoogleContainerTools/skaffold/v2/pkg/skaffold/version.version=$SKAFFOLD_VERSION" \
      skaffold=github.com/GoogleContainerTools/skaffold/v2/cmd/skaffold
  fi
fi

if wanted coredns; then
  coredns_dir=$(prepare_module coredns "$(pin_for coredns)")
  if [ "$mode" = build ]; then
    build "$coredns_dir" "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION" coredns=.
  fi
fi

# kube-router, stamped as its Makefile does (the version and the module's date).
if wanted kube-router; then
  kube_router_dir=$(prepare_module kube-router "$(pin_for kube-router)")
  if [ "$mode" = build ]; then
    kr=github.com/cloudnativelabs/kube-router/v2
    kr_date=$(cd "$kube_router_dir" && go list -m -f '{{.Time}}' $kr | cut -c1-19)Z
    build "$kube_router_dir" "-s -w -X $kr/pkg/version.Version=$KUBE_ROUTER_VERSION -X $kr/pkg/version.BuildDate=${kr_date/ /T}" \
      kube-router=$kr/cmd/kube-router
  fi
fi

# Jaeger v2, the tool of its module's go.mod, stamped as its Makefile stamps a release (the
# version and the module's date; `jaeger version` prints them).
if wanted jaeger; then
  jaeger_dir=$(prepare_module jaeger "$(pin_for jaeger)")
  if [ "$mode" = build ]; then
    jaeger=github.com/jaegertracing/jaeger
    jaeger_date=$(cd "$jaeger_dir" && go list -m -f '{{.Time}}' $jaeger | cut -c1-19)Z
    build "$jaeger_dir" "-s -w -X $jaeger/internal/version.latestVersion=$JAEGER_VERSION -X $jaeger/internal/version.date=${jaeger_date/ /T}" \
      jaeger=$jaeger/cmd/jaeger
  fi
fi

# Traefik's module replaces one of its packages by a directory of its own: build it in place,
# from a copy of the module (its go.sum checks every dependency).
if wanted traefik; then
  traefik_dir="$CACHE_DIR/src/traefik"
  if [ "$(cat "$traefik_dir/.pin" 2>/dev/null)" != "$(pin_for traefik)" ]; then
    step "fetching the Traefik $TRAEFIK_VERSION module"
    module=$(module_dir "github.com/traefik/traefik/v3@$TRAEFIK_VERSION")
    rm -rf "$traefik_dir" && cp -r "$module" "$traefik_dir" && chmod -R u+w "$traefik_dir"
    # Its dependencies too (-n: load every package, compile nothing).
    (cd "$traefik_dir" && GOFLAGS="" with_progress "fetching traefik modules" \
      logged "$traefik_dir/fetch.log" go build -n ./cmd/traefik) \
      || { tail -n 20 "$traefik_dir/fetch.log" >&2; die "could not fetch the traefik modules"; }
    pin_for traefik > "$traefik_dir/.pin"
  fi
  if [ "$mode" = build ]; then
    GOFLAGS="" build "$traefik_dir" "-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=$TRAEFIK_VERSION" \
      traefik=./cmd/traefik
  fi
fi

# The tools built with `go install PACKAGE@VERSION`, and their version stamps.
declare -A PACKAGE=(
  [kwok]="sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  [helm]="helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
  [helm3]="helm.sh/helm/v3/cmd/helm@$HELM3_VERSION"
  [kind]="sigs.k8s.io/kind@$KIND_VERSION"
  [actionlint]="github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION"
  [crictl]="sigs.k8s.io/cri-tools/cmd/crictl@$CRI_TOOLS_VERSION"
  [local-path-provisioner]="github.com/rancher/local-path-provisioner@$LOCAL_PATH_PROVISIONER_VERSION"
)
tool_ldflags() {  # tool_ldflags NAME
  case $1 in
    kwok) echo "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=$KUBERNETES_VERSION" ;;
    # Helm 4, as its Makefile stamps a tagged build (its Kubernetes version comes from the build info).
    helm) echo "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION -X helm.sh/helm/v4/internal/version.metadata=
           -X helm.sh/helm/v4/internal/version.gitTreeState=clean" ;;
    # Helm 3: its default Kubernetes version follows the client-go it is built with (as its Makefile does).
    helm3)
      local client_go
      client_go=$(sed -n 's/^\tk8s.io\/client-go v0\.\([0-9]*\)\..*/\1/p' "$(module_dir "helm.sh/helm/v3@$HELM3_VERSION")/go.mod")
      echo "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM3_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean
            -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$client_go
            -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$client_go" ;;
    kind) echo "-s -w" ;;
    actionlint) echo "-s -w -X github.com/rhysd/actionlint.version=$ACTIONLINT_VERSION" ;;
    crictl) echo "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRI_TOOLS_VERSION" ;;
    local-path-provisioner) echo "-s -w -X main.VERSION=$LOCAL_PATH_PROVISIONER_VERSION" ;;
  esac
}

for name in kwok helm helm3 kind actionlint crictl local-path-provisioner; do
  wanted "$name" || continue
  if [ "$mode" = download ]; then
    fetch_tool "$name" "${PACKAGE[$name]}"
  elif [ "$name" = helm3 ]; then
    # `go install` names the binary helm: helm3 is built into a directory of its own.
    mkdir -p "$CACHE_DIR/helm3"
    BIN_DIR="$CACHE_DIR/helm3" install_tool helm3 "${PACKAGE[helm3]}" "$(tool_ldflags helm3)"
    cp "$CACHE_DIR/helm3/helm" "$BIN_DIR/helm3.new" && mv "$BIN_DIR/helm3.new" "$BIN_DIR/helm3"
    built helm3
  else
    install_tool "$name" "${PACKAGE[$name]}" "$(tool_ldflags "$name")"
  fi
done

if [ "$mode" = download ]; then
  note "modules of ${stale[*]} ready ($(elapsed $((SECONDS - total_started))))"
else
  note "binaries ready in $BIN_DIR ($(elapsed $((SECONDS - total_started))))"
fi
