#!/usr/bin/env bash
# `make cluster-up`: a real Kubernetes control plane on loopback (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler) with kwok's fake nodes, built from Go modules.
# A live cluster is reused. Writes .cluster/kubeconfig.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

started_at=$SECONDS
"$CLUSTER_SCRIPTS/build.sh"
export PATH="$BIN_DIR:$PATH"
SERVER="https://$NODE_IP:$APISERVER_PORT"
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

api_ready() {
  curl -fsS --max-time 2 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "$SERVER/readyz" >/dev/null 2>&1
}

all_alive() {
  for component in "${COMPONENTS[@]}"; do alive "$component" || return 1; done
}

usage() {
  cat <<EOT

The cluster is up (Kubernetes $KUBERNETES_VERSION, $(kubectl --kubeconfig "$KUBECONFIG_FILE" get nodes -l type=kwok --no-headers 2>/dev/null | wc -l) fake nodes):
  export KUBECONFIG=$KUBECONFIG_FILE
  export PATH=$BIN_DIR:\$PATH     # kubectl and helm of the pinned versions
  kubectl get nodes
Logs: ${LOGS#"$ROOT"/}/. Stop it and remove its state with 'make cluster-down'.
EOT
}

if all_alive && api_ready; then
  step "reusing the live cluster in ${STATE_DIR#"$ROOT"/}"
  usage
  exit 0
fi
if [ -d "$PIDS" ]; then
  note "a previous cluster is partly down; restarting it from scratch"
  "$CLUSTER_SCRIPTS/down.sh"
fi

# The API server listens on the node address, held by an interface of this machine with no ports
# (a bridge: kernels without the dummy module have it), routed nowhere: pods of the real node
# reach the API server there, and nothing outside the machine does.
if ! ip -4 addr show dev "$NODE_INTERFACE" 2>/dev/null | grep -q "inet $NODE_IP/"; then
  step "adding the network interface $NODE_INTERFACE with $NODE_IP"
  ip link show "$NODE_INTERFACE" >/dev/null 2>&1 || as_root ip link add "$NODE_INTERFACE" type bridge
  as_root ip addr add "$NODE_IP/32" dev "$NODE_INTERFACE"
  as_root ip link set "$NODE_INTERFACE" up
fi
if (exec 3<>"/dev/tcp/$NODE_IP/$APISERVER_PORT") 2>/dev/null; then
  die "port $APISERVER_PORT on $NODE_IP is taken: is another cluster running (another checkout's 'make cluster-up')? \
stop it, or set FLOTILLA_NODE_IP / FLOTILLA_APISERVER_PORT"
fi
for port in "$ETCD_CLIENT_PORT" "$ETCD_PEER_PORT" 10257 10259 10247; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "port $port is taken: is another cluster running (another checkout's 'make cluster-up')? \
stop it, or set FLOTILLA_APISERVER_PORT / FLOTILLA_ETCD_PORT"
  fi
done
mkdir -p "$LOGS" "$PIDS"
step "generating certificates and kubeconfigs"
"$CLUSTER_SCRIPTS/pki.sh" "$PKI" "$NODE_NAME" "$NODE_IP"

for user in controller-manager scheduler kwok; do write_kubeconfig "$STATE_DIR/$user.kubeconfig" "$user"; done
write_kubeconfig "$STATE_DIR/kubeconfig.new" admin

step "starting etcd $ETCD_VERSION"
start etcd etcd --name flotilla --data-dir "$STATE_DIR/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "flotilla=http://127.0.0.1:$ETCD_PEER_PORT" --listen-metrics-urls "" \
  --quota-backend-bytes 2147483648 --unsafe-no-fsync
wait_until "waiting for etcd" 60 etcd curl -fsS --max-time 2 "http://127.0.0.1:$ETCD_CLIENT_PORT/health"

step "starting kube-apiserver $KUBERNETES_VERSION on $SERVER"
start kube-apiserver kube-apiserver \
  --etcd-servers "http://127.0.0.1:$ETCD_CLIENT_PORT" \
  --bind-address "$NODE_IP" --advertise-address "$NODE_IP" --secure-port "$APISERVER_PORT" \
  --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
  --client-ca-file "$PKI/ca.crt" \
  --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
  --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
  --kubelet-certificate-authority "$PKI/ca.crt" --kubelet-preferred-address-types InternalIP \
  --authorization-mode Node,RBAC --allow-privileged=true \
  --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-cluster-ip-range "$SERVICE_CIDR" --service-node-port-range 30000-32767 \
  --enable-admission-plugins NodeRestriction,PodNodeSelector,PodTolerationRestriction \
  --profiling=false --v=1
wait_until "waiting for the API server's /readyz" 120 kube-apiserver api_ready
mv "$STATE_DIR/kubeconfig.new" "$KUBECONFIG_FILE"
export KUBECONFIG="$KUBECONFIG_FILE"

step "starting kube-controller-manager and kube-scheduler"
start kube-controller-manager kube-controller-manager \
  --kubeconfig "$STATE_DIR/controller-manager.kubeconfig" \
  --authentication-kubeconfig "$STATE_DIR/controller-manager.kubeconfig" \
  --authorization-kubeconfig "$STATE_DIR/controller-manager.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port 10257 --leader-elect=false \
  --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
  --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
  --use-service-account-credentials --controllers '*' --service-cluster-ip-range "$SERVICE_CIDR" \
  --profiling=false --v=1
start kube-scheduler kube-scheduler \
  --kubeconfig "$STATE_DIR/scheduler.kubeconfig" \
  --authentication-kubeconfig "$STATE_DIR/scheduler.kubeconfig" \
  --authorization-kubeconfig "$STATE_DIR/scheduler.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port 10259 --leader-elect=false --profiling=false --v=1

# kwok's node and pod lifecycles ("stages") come from its own module, at the pinned version; the
# nodes renew Leases (as kubelets do), or the node lifecycle controller would mark them NotReady.
kwok_dir=$(module_dir "sigs.k8s.io/kwok@$KWOK_VERSION")
stages="$STATE_DIR/kwok-stages.yaml"
: > "$stages"
for file in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
  pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
  { cat "$kwok_dir/kustomize/stage/$file"; echo "---"; } >> "$stages"
done
step "starting kwok $KWOK_VERSION with $KWOK_NODES fake nodes"
start kwok kwok --kubeconfig "$STATE_DIR/kwok.kubeconfig" --config "$stages" \
  --manage-all-nodes=false --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
  --cidr 10.244.0.0/16 --node-ip 127.0.0.1 --server-address 127.0.0.1:10247 \
  --node-lease-duration-seconds 40
for index in $(seq 1 "$KWOK_NODES"); do
  kubectl apply --server-side --field-manager flotilla-cluster -f - >/dev/null <<EOT
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$index
  annotations: {kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0"}
  labels:
    kubernetes.io/hostname: kwok-node-$index
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    node-role.kubernetes.io/agent: ""
    type: kwok
    topology.kubernetes.io/zone: zone-$index
spec:
  taints: [{key: $KWOK_TAINT_KEY, value: fake, effect: NoSchedule}]
status:
  allocatable: {cpu: "32", memory: 256Gi, pods: "110"}
  capacity: {cpu: "32", memory: 256Gi, pods: "110"}
EOT
done
wait_until "waiting for the fake nodes to be Ready" 60 kwok \
  kubectl wait --for=condition=Ready node --all --timeout=2s

step "installing the ServiceMonitor and PrometheusRule CRDs (prometheus-operator $PROMETHEUS_OPERATOR_VERSION)"
operator_dir=$(module_dir "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION")
for crd in servicemonitors prometheusrules; do
  kubectl apply --server-side --field-manager flotilla-cluster \
    -f "$operator_dir/example/prometheus-operator-crd/monitoring.coreos.com_$crd.yaml" >/dev/null
done
kubectl wait --for=condition=Established --timeout=60s \
  crd/servicemonitors.monitoring.coreos.com crd/prometheusrules.monitoring.coreos.com >/dev/null
wait_until "waiting for the default service account" 60 kube-controller-manager \
  kubectl get serviceaccount default -n default -o name

note "control plane up in $((SECONDS - started_at))s"
usage
