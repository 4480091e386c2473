#!/usr/bin/env bash
# The real node of `make up`, on top of the control plane of `make cluster-up`: containerd (CRI)
# with runc and a CNI bridge network, the kubelet, kube-proxy and kube-router's network policy
# controller (NetworkPolicies: iptables and ipsets), then the cluster add-ons
# (CoreDNS, the Traefik ingress controller, the local-path volume provisioner), every image built
# here and pulled from the node's registry (scripts/cluster/registry.sh), and Prometheus scraping
# every pod the operator runs. State lives in .cluster/node; `make down` removes it. A live node is
# reused.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

started_at=$SECONDS
[ "$(id -u)" -eq 0 ] || die "the node runs containers, mounts and iptables rules: run 'make up' as root"
apt_install containerd runc containernetworking-plugins iptables ipset conntrack buildah debootstrap docker-registry prometheus
"$CLUSTER_SCRIPTS/up.sh"
"$CLUSTER_SCRIPTS/build.sh" --node
"$CLUSTER_SCRIPTS/registry.sh" up
export PATH="$BIN_DIR:$PATH" KUBECONFIG="$KUBECONFIG_FILE"

NODE_DIR="$STATE_DIR/node"
CONTAINERD_SOCKET="$NODE_DIR/run/containerd.sock"
export CONTAINER_RUNTIME_ENDPOINT="unix://$CONTAINERD_SOCKET"

if alive containerd && alive kubelet && alive kube-proxy \
  && kubectl get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -qx True; then
  step "reusing the live node $NODE_NAME"
else
  mkdir -p "$NODE_DIR"/{containerd,run,kubelet,pod-logs,cni/net.d,cni/ipam,volumes} "$LOGS" "$PIDS"

  step "configuring the kernel for pods (IP forwarding, bridged traffic through iptables)"
  # The values before, restored by `make down`.
  [ -f "$NODE_DIR/sysctl.saved" ] || sysctl -n net.ipv4.ip_forward > "$NODE_DIR/sysctl.saved"
  [ -e /proc/sys/net/bridge ] || modprobe br_netfilter 2>/dev/null || true
  sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1

  cat > "$NODE_DIR/cni/net.d/10-flotilla.conflist" <<EOT
{
  "cniVersion": "1.0.0",
  "name": "flotilla",
  "plugins": [
    {
      "type": "bridge", "bridge": "$NODE_BRIDGE", "isGateway": true, "ipMasq": true, "hairpinMode": true,
      "ipam": {"type": "host-local", "ranges": [[{"subnet": "$NODE_POD_SUBNET", "gateway": "$NODE_POD_GATEWAY"}]],
               "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$NODE_DIR/cni/ipam"}
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOT
  # Without CAP_SYS_RESOURCE (some sandboxes and VMs withhold it) nobody may lower an
  # oom_score_adj: containerd must then keep containers' scores at or above its own.
  restrict_oom=false
  (echo -1 > /proc/self/oom_score_adj) 2>/dev/null || restrict_oom=true
  cat > "$NODE_DIR/containerd.toml" <<EOT
# containerd of the Flotilla node (scripts/cluster/node-up.sh): its own root, state and socket.
version = 2
root = "$NODE_DIR/containerd"
state = "$NODE_DIR/run/containerd"
[grpc]
  address = "$CONTAINERD_SOCKET"
[ttrpc]
  address = "$CONTAINERD_SOCKET.ttrpc"
[debug]
  address = "$NODE_DIR/run/containerd-debug.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = $restrict_oom
  enable_cdi = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$NODE_DIR/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$NODE_DIR/certs.d"
EOT
  # Images come from the node's registry, over plain HTTP on loopback (containerd's hosts.toml).
  mkdir -p "$NODE_DIR/certs.d/$REGISTRY"
  cat > "$NODE_DIR/certs.d/$REGISTRY/hosts.toml" <<EOT
server = "http://$REGISTRY"

[host."http://$REGISTRY"]
  capabilities = ["pull", "resolve"]
EOT

  if ! alive containerd; then
    step "starting containerd $(containerd --version | awk '{print $3}')"
    start containerd containerd --config "$NODE_DIR/containerd.toml"
    wait_until "waiting for containerd's socket" 60 containerd crictl info
  fi

  # The images of the node itself (the sandbox, CoreDNS, Traefik, the provisioner) go to the
  # registry like every other: containerd pulls even the pause image from there.
  "$ROOT/scripts/images.sh" node

  cat > "$NODE_DIR/kubelet.yaml" <<EOT
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroup v1 hosts (this kind of machine) need this from Kubernetes 1.35 on.
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$CONTAINERD_SOCKET
address: $NODE_IP
readOnlyPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
clusterDomain: cluster.local
clusterDNS: [$CLUSTER_DNS_IP]
resolvConf: /etc/resolv.conf
podLogsDir: $NODE_DIR/pod-logs
failSwapOn: false
healthzBindAddress: 127.0.0.1
healthzPort: 10248
# Images are pulled from the node's registry: collect unused ones only when the disk is nearly
# full, and evict only when it is really full.
imageGCHighThresholdPercent: 95
imageGCLowThresholdPercent: 90
evictionHard: {memory.available: 100Mi, nodefs.available: 2%, imagefs.available: 2%}
serializeImagePulls: false
shutdownGracePeriod: 0s
EOT
  write_kubeconfig "$NODE_DIR/kubelet.kubeconfig" kubelet
  write_kubeconfig "$NODE_DIR/kube-proxy.kubeconfig" kube-proxy

  if ! alive kubelet; then
    step "starting the kubelet $KUBERNETES_VERSION as node $NODE_NAME ($NODE_IP)"
    start kubelet kubelet --config "$NODE_DIR/kubelet.yaml" --kubeconfig "$NODE_DIR/kubelet.kubeconfig" \
      --root-dir "$NODE_DIR/kubelet" --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" \
      --node-labels "type=real,ingress-ready=true,topology.kubernetes.io/zone=local" --v=1
  fi
  cat > "$NODE_DIR/kube-proxy.yaml" <<EOT
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $NODE_DIR/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $POD_CIDR
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: [$NODE_IP/32]
conntrack: {maxPerCore: 0}
EOT
  if ! alive kube-proxy; then
    step "starting kube-proxy $KUBERNETES_VERSION (iptables)"
    start kube-proxy kube-proxy --config "$NODE_DIR/kube-proxy.yaml" --v=1
  fi
  wait_until "waiting for node $NODE_NAME to be Ready" 120 kubelet \
    kubectl wait --for=condition=Ready "node/$NODE_NAME" --timeout=2s
fi

# NetworkPolicies: kube-router's network policy controller alone (its router and service proxy
# off), a host process beside the bridge CNI and kube-proxy, as k3s runs it. It needs the node
# registered (it reads its address) and bridged pod-to-pod traffic handed to iptables; started
# before the add-ons, so that every pod is covered from its start. A dead one is restarted on a
# live node.
[ "$(sysctl -n net.bridge.bridge-nf-call-iptables 2>/dev/null)" = 1 ] \
  || die "bridged pod traffic bypasses iptables (net.bridge.bridge-nf-call-iptables is not 1): NetworkPolicies would not be enforced"
if ! alive kube-router; then
  # Its certificate, also on a cluster made before it.
  "$CLUSTER_SCRIPTS/pki.sh" "$PKI" "$NODE_NAME" "$NODE_IP"
  write_kubeconfig "$NODE_DIR/kube-router.kubeconfig" kube-router
  kubectl apply --server-side --force-conflicts --field-manager flotilla-node \
    -f "$CLUSTER_SCRIPTS/addons/kube-router.yaml" >/dev/null
  step "starting kube-router $KUBE_ROUTER_VERSION (NetworkPolicies: its policy controller alone, iptables and ipset)"
  start kube-router kube-router --kubeconfig "$NODE_DIR/kube-router.kubeconfig" --hostname-override "$NODE_NAME" \
    --run-firewall=true --run-router=false --run-service-proxy=false --run-loadbalancer=false \
    --service-cluster-ip-range "$SERVICE_CIDR" --health-addr 127.0.0.1 --health-port 20244 --metrics-port 0 --v=1
  # Its first full sync has written every pod's chain (its /healthz answers before that).
  wait_until "waiting for kube-router's first sync of the policies" 60 kube-router \
    grep -q "sync iptables took" "$LOGS/kube-router.log"
fi

step "installing the cluster add-ons: CoreDNS $COREDNS_VERSION, Traefik $TRAEFIK_VERSION, local-path-provisioner $LOCAL_PATH_PROVISIONER_VERSION"
render_addon() {  # render_addon FILE: the manifest with this cluster's images and addresses
  sed -e "s#@COREDNS_IMAGE@#$COREDNS_IMAGE#g" -e "s#@TRAEFIK_IMAGE@#$TRAEFIK_IMAGE#g" \
    -e "s#@PROVISIONER_IMAGE@#$PROVISIONER_IMAGE#g" -e "s#@HELPER_IMAGE@#$BASE_IMAGE#g" \
    -e "s#@CLUSTER_DNS_IP@#$CLUSTER_DNS_IP#g" -e "s#@INGRESS_PORT@#$INGRESS_PORT#g" \
    -e "s#@VOLUMES_DIR@#$NODE_DIR/volumes#g" "$CLUSTER_SCRIPTS/addons/$1"
}
# Traefik's CRDs, from its pinned module.
kubectl apply --server-side --force-conflicts --field-manager flotilla-node \
  -f "$(module_dir "github.com/traefik/traefik/v3@$TRAEFIK_VERSION")/$TRAEFIK_CRDS" >/dev/null
for addon in coredns.yaml traefik.yaml local-path.yaml; do
  render_addon "$addon" | kubectl apply --server-side --force-conflicts --field-manager flotilla-node -f - >/dev/null
done
for deployment in kube-system/coredns "$INGRESS_NAMESPACE/traefik" local-path-storage/local-path-provisioner; do
  wait_until "waiting for $deployment" 180 "" \
    kubectl rollout status "deployment/${deployment#*/}" -n "${deployment%/*}" --timeout=2s
done

# Prometheus: a host process like the kubelet, scraping every pod the operator runs as its
# ServiceMonitors would (scripts/cluster/prometheus/prometheus.yml). Debian's build has no
# Kubernetes discovery: scripts/cluster/prometheus/discovery.py, a host process too, signed in as
# flotilla:prometheus (read only: addons/prometheus.yaml), writes the targets it would find. It
# listens on the pods' gateway, the bridge's address (there once the add-ons' pods run): pods
# reach it, nothing outside the machine does. Its URL goes to PROMETHEUS_URL_FILE for the scripts
# and tests. A live one re-reads a changed configuration.
PROMETHEUS_URL="http://$PROMETHEUS_ADDRESS"
PROMETHEUS_TARGETS="$NODE_DIR/prometheus-targets.json"
[ -f "$PKI/prometheus.crt" ] || "$CLUSTER_SCRIPTS/pki.sh" "$PKI" "$NODE_NAME" "$NODE_IP"
kubectl apply --server-side --force-conflicts --field-manager flotilla-node \
  -f "$CLUSTER_SCRIPTS/addons/prometheus.yaml" >/dev/null
if ! alive prometheus-discovery; then
  step "starting Prometheus' discovery of the pods (scripts/cluster/prometheus/discovery.py, as flotilla:prometheus)"
  start prometheus-discovery "$PYTHON_BIN" "$CLUSTER_SCRIPTS/prometheus/discovery.py" \
    --server "https://$NODE_IP:$APISERVER_PORT" --ca "$PKI/ca.crt" --cert "$PKI/prometheus.crt" \
    --key "$PKI/prometheus.key" --out "$PROMETHEUS_TARGETS"
  wait_until "waiting for the first targets" 30 prometheus-discovery test -s "$PROMETHEUS_TARGETS"
fi
# Only the Services of the operator are scraped: their managed-by label, from the operator's code.
managed_by=$(sed -n 's/^MANAGED_BY = "\(.*\)"$/\1/p' "$ROOT/operator/src/flotilla_operator/__init__.py")
[ -n "$managed_by" ] || die "no MANAGED_BY in operator/src/flotilla_operator/__init__.py"
sed -e "s#@TARGETS@#$PROMETHEUS_TARGETS#g" -e "s#@MANAGED_BY@#$managed_by#g" \
  "$CLUSTER_SCRIPTS/prometheus/prometheus.yml" > "$NODE_DIR/prometheus.yml.new"
promtool check config "$NODE_DIR/prometheus.yml.new" > "$LOGS/promtool.log" 2>&1 \
  || { cat "$LOGS/promtool.log" >&2; die "Prometheus' configuration is not valid (scripts/cluster/prometheus/prometheus.yml)"; }
if alive prometheus && cmp -s "$NODE_DIR/prometheus.yml.new" "$NODE_DIR/prometheus.yml"; then
  rm "$NODE_DIR/prometheus.yml.new"
  step "reusing the live Prometheus on $PROMETHEUS_URL"
elif alive prometheus; then
  mv "$NODE_DIR/prometheus.yml.new" "$NODE_DIR/prometheus.yml"
  step "reloading Prometheus' configuration (SIGHUP)"
  kill -HUP "$(cat "$PIDS/prometheus.pid")"
else
  mv "$NODE_DIR/prometheus.yml.new" "$NODE_DIR/prometheus.yml"
  ip -4 -o addr show dev "$NODE_BRIDGE" 2>/dev/null | grep -q " $NODE_POD_GATEWAY/" \
    || die "the bridge $NODE_BRIDGE does not hold the pods' gateway $NODE_POD_GATEWAY: Prometheus has no address to listen on"
  step "starting Prometheus $(prometheus --version 2>&1 | awk 'NR == 1 {print $3}') on $PROMETHEUS_URL (every pod the operator runs, every 5s; 2h kept)"
  mkdir -p "$NODE_DIR/prometheus"
  start prometheus prometheus --config.file="$NODE_DIR/prometheus.yml" --storage.tsdb.path="$NODE_DIR/prometheus" \
    --storage.tsdb.retention.time=2h --web.listen-address="$PROMETHEUS_ADDRESS" --enable-feature=exemplar-storage
  wait_until "waiting for Prometheus to be ready" 60 prometheus curl -fsS --max-time 2 "$PROMETHEUS_URL/-/ready"
fi
echo "$PROMETHEUS_URL" > "$PROMETHEUS_URL_FILE"
note "node up in $(elapsed $((SECONDS - started_at)))"
