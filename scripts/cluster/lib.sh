# Shared settings of the local cluster scripts (sourced).
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/lib.sh"

CLUSTER_SCRIPTS="$ROOT/scripts/cluster"
source "$CLUSTER_SCRIPTS/versions.env"
CACHE_DIR="${FLOTILLA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flotilla}/cluster"
BIN_DIR="$CACHE_DIR/bin"
STATE_DIR="${FLOTILLA_CLUSTER_DIR:-$ROOT/.cluster}"
KUBECONFIG_FILE="$STATE_DIR/kubeconfig"
PKI="$STATE_DIR/pki"
LOGS="$STATE_DIR/logs"
PIDS="$STATE_DIR/pids"
APISERVER_PORT="${FLOTILLA_APISERVER_PORT:-6443}"
ETCD_CLIENT_PORT="${FLOTILLA_ETCD_PORT:-23790}"
ETCD_PEER_PORT=$((ETCD_CLIENT_PORT + 1))
KWOK_NODES="${FLOTILLA_KWOK_NODES:-2}"
# The real node (make up): its name, and the address the API server advertises and the kubelet
# serves on, held by an interface of its own so that pods reach the API server through 10.96.0.1.
NODE_NAME="${FLOTILLA_NODE_NAME:-flotilla-node}"
NODE_IP="${FLOTILLA_NODE_IP:-10.250.0.1}"
NODE_INTERFACE=flotilla0
SERVICE_CIDR=10.96.0.0/16
POD_CIDR="${FLOTILLA_POD_CIDR:-10.88.0.0/16}"
CLUSTER_DNS_IP=10.96.0.10
# kwok's fake nodes are tainted: only namespaces annotated for them (tests/support/kube.py)
# schedule there, so the real node's workloads never land on a node that runs nothing.
KWOK_TAINT_KEY=kwok.x-k8s.io/node
NODE_BRIDGE=flotilla-cni0
# Traefik's CRDs (its CRD provider reads the operator's ServersTransports), in its module and repository.
TRAEFIK_CRDS=docs/content/reference/dynamic-configuration/kubernetes-crd-definition-v1.yml
NODE_POD_SUBNET="${FLOTILLA_NODE_POD_SUBNET:-10.88.0.0/24}"
# The bridge's own address on the pods' network, their gateway: the subnet's first address.
NODE_POD_GATEWAY="${NODE_POD_SUBNET%.*}.1"
# Traefik listens on the host's loopback (make up prints the address).
INGRESS_PORT="${FLOTILLA_INGRESS_PORT:-8080}"
INGRESS_NAMESPACE=traefik
# The node's Prometheus (node-up.sh; scripts/cluster/prometheus/), a host process listening on
# the pods' gateway, which pods reach, on this port; its URL is written to PROMETHEUS_URL_FILE.
PROMETHEUS_PORT="${FLOTILLA_PROMETHEUS_PORT:-9090}"
PROMETHEUS_ADDRESS="$NODE_POD_GATEWAY:$PROMETHEUS_PORT"
PROMETHEUS_URL_FILE="$STATE_DIR/prometheus-url"

# The node's registry (scripts/cluster/registry.sh): every image is built on this machine
# (scripts/images.sh), pushed there, and pulled from there by the node's containerd.
REGISTRY_PORT="${FLOTILLA_REGISTRY_PORT:-5000}"
REGISTRY="localhost:$REGISTRY_PORT"
IMAGE_CACHE="${FLOTILLA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flotilla}/images"
REGISTRY_STORAGE="$IMAGE_CACHE/registry"
DEBIAN_SUITE=bookworm
BASE_IMAGE="$REGISTRY/flotilla/python:3.11-$DEBIAN_SUITE"
PAUSE_VERSION=3.10.2
PAUSE_IMAGE="$REGISTRY/flotilla/pause:$PAUSE_VERSION"
COREDNS_IMAGE="$REGISTRY/flotilla/coredns:$COREDNS_VERSION"
TRAEFIK_IMAGE="$REGISTRY/flotilla/traefik:$TRAEFIK_VERSION"
PROVISIONER_IMAGE="$REGISTRY/flotilla/local-path-provisioner:$LOCAL_PATH_PROVISIONER_VERSION"
# Not the node's own: the umbrella chart's Jaeger (tracing.jaeger.image), built like them.
JAEGER_IMAGE="$REGISTRY/flotilla/jaeger:$JAEGER_VERSION"

# The hash of files and words: a changed input changes the image's tag.
inputs_hash() {  # inputs_hash WORDS -- PATH...
  local words=$1; shift 2
  { echo "$words"
    (cd "$ROOT" && git ls-files -co --exclude-standard -- "$@" | LC_ALL=C sort | while read -r file; do
      [ -f "$file" ] && { echo "$file"; sha256sum < "$file"; }
    done)
  } | sha256sum | cut -c1-12
}

# The local registry's manifest of an image (curl's -I: its headers only, the digest among them).
registry_manifest() {  # registry_manifest REFERENCE [CURL OPTION...]
  local repository=${1#*/}; shift
  curl -fsS --max-time 10 "$@" \
    -H 'Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json' \
    "http://$REGISTRY/v2/${repository%:*}/manifests/${repository##*:}"
}

# Run a command in the background, printing (to stderr) how long it has been running every 20 s.
with_progress() {
  local label=$1; shift
  local started=$SECONDS next=20
  "$@" &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    if (( SECONDS - started >= next )); then
      note "still $label ($(elapsed $((SECONDS - started))))" >&2
      next=$((next + 20))
    fi
  done
  wait "$pid"
}

# Run a command with its output in a log file (for with_progress, whose progress stays visible).
logged() {  # logged FILE COMMAND...
  local log=$1; shift
  "$@" > "$log" 2>&1
}

# The directory of a module version in Go's module cache, downloaded when missing.
module_dir() { go mod download -json "$1" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p'; }

elapsed() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

# The cluster's processes: each in its own session, its pid in .cluster/pids, its log in .cluster/logs.
alive() { [ -f "$PIDS/$1.pid" ] && kill -0 "$(cat "$PIDS/$1.pid")" 2>/dev/null; }

start() {  # start NAME COMMAND...
  local name=$1; shift
  setsid "$@" >"$LOGS/$name.log" 2>&1 < /dev/null &
  echo $! > "$PIDS/$name.pid"
}

# Wait until CHECK succeeds, showing the wait; fail with COMPONENT's log if it exits or on timeout.
wait_until() {  # wait_until LABEL TIMEOUT COMPONENT|"" CHECK...
  local label=$1 timeout=$2 component=$3; shift 3
  local started=$SECONDS next=20
  until "$@" >/dev/null 2>&1; do
    if [ -n "$component" ] && ! alive "$component"; then
      tail -n 30 "$LOGS/$component.log" >&2
      die "$component exited while $label"
    fi
    if (( SECONDS - started >= timeout )); then
      [ -n "$component" ] && tail -n 30 "$LOGS/$component.log" >&2
      die "timed out $label (logs: ${LOGS#"$ROOT"/}/)"
    fi
    if (( SECONDS - started >= next )); then note "still $label ($(elapsed $((SECONDS - started))))"; next=$((next + 20)); fi
    sleep 0.5
  done
  note "$label: done in $((SECONDS - started))s"
}

# A kubeconfig for one of the cluster's client certificates.
write_kubeconfig() {  # write_kubeconfig FILE USER
  local file=$1 user=$2 server="https://$NODE_IP:$APISERVER_PORT"
  kubectl config set-cluster flotilla --server="$server" --certificate-authority="$PKI/ca.crt" \
    --embed-certs=true --kubeconfig="$file" >/dev/null
  kubectl config set-credentials "$user" --client-certificate="$PKI/$user.crt" \
    --client-key="$PKI/$user.key" --embed-certs=true --kubeconfig="$file" >/dev/null
  kubectl config set-context flotilla --cluster=flotilla --user="$user" --kubeconfig="$file" >/dev/null
  kubectl config use-context flotilla --kubeconfig="$file" >/dev/null
  chmod 600 "$file"
}
