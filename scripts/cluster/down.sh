#!/usr/bin/env bash
# `make down` and `make cluster-down`: stop the real node (Prometheus, pods, kubelet, kube-proxy,
# kube-router, containerd, its registry) and the control plane, and remove their state: no process,
# mount, network interface, iptables chain or ipset of theirs is left behind.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

NODE_DIR="$STATE_DIR/node"
CONTAINERD_SOCKET="$NODE_DIR/run/containerd.sock"
export PATH="$BIN_DIR:$PATH"

stop() {  # stop NAME...: TERM each component's process group, wait up to 10 s, then KILL
  local pids=() name pid
  for name in "$@"; do
    [ -f "$PIDS/$name.pid" ] || continue
    pid=$(cat "$PIDS/$name.pid")
    rm -f "$PIDS/$name.pid"
    kill -0 "$pid" 2>/dev/null || continue
    # Each component runs in its own session (setsid): signal its whole process group.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    pids+=("$pid")
  done
  [ ${#pids[@]} -eq 0 ] && return 0
  for _ in $(seq 1 100); do
    local running=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && running=1; done
    [ "$running" = 0 ] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
  note "stopped $*"
}

# The chains a CNI plugin (bridge masquerading, portmap) left in a table, and the rules to them.
remove_cni_chains() {  # remove_cni_chains TABLE
  local table=$1 chain
  iptables -t "$table" -S 2>/dev/null | awk '$1 == "-A" && $0 ~ / -j CNI-/ {$1 = "-D"; print}' \
    | while read -r rule; do eval "iptables -t $table $rule" 2>/dev/null || true; done
  for chain in $(iptables -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^CNI-/ {print $2}'); do
    iptables -t "$table" -F "$chain" 2>/dev/null || true
  done
  for chain in $(iptables -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^CNI-/ {print $2}'); do
    iptables -t "$table" -X "$chain" 2>/dev/null || true
  done
}

# The pods' network namespaces whose veth hangs on the node's bridge, and the bridge itself. Done
# even without the node's state: a node that died with its machine (or in another clone of the
# repository) leaves these behind, and they would stop the next node from starting.
remove_node_network() {
  local netns count=0
  ip link show "$NODE_BRIDGE" >/dev/null 2>&1 || return 0
  for netns in $(ip -o link show master "$NODE_BRIDGE" 2>/dev/null \
                   | grep -o 'link-netns [^ ]*' | awk '{print $2}' | sort -u); do
    ip netns delete "$netns" 2>/dev/null && count=$((count + 1)) || true
  done
  ip -o link show master "$NODE_BRIDGE" 2>/dev/null | awk -F': ' '{sub(/@.*/, "", $2); print $2}' \
    | while read -r veth; do ip link delete "$veth" 2>/dev/null || true; done
  ip link delete "$NODE_BRIDGE"
  note "removed the bridge $NODE_BRIDGE and $count pod network namespace(s)"
}

# kube-router's policy chains and ipsets, and only those (the names of its netpol controller).
# Not `kube-router --cleanup-config`: it also destroys every other ipset of the host and flushes IPVS.
KUBE_ROUTER_CHAINS='^KUBE-(ROUTER-(INPUT|FORWARD|OUTPUT)|NWPLCY-|POD-FW-)'
KUBE_ROUTER_SETS='^(inet6:)?(KUBE-SRC-|KUBE-DST-|kube-router-local-pods$|TMP-[A-Z2-7]{16}$)'
kube_router_sets() {
  if command -v ipset >/dev/null; then ipset list -n 2>/dev/null | grep -E "$KUBE_ROUTER_SETS" || true; fi
}
kube_router_chains() {  # kube_router_chains TOOL
  { "$1" -t filter -S 2>/dev/null || true; } | awk -v names="$KUBE_ROUTER_CHAINS" '$1 == "-N" && $2 ~ names {print $2}'
}
remove_kube_router_state() {
  local tool rule chain chains sets removed=0
  for tool in iptables ip6tables; do
    { "$tool" -t filter -S 2>/dev/null || true; } \
      | awk '$1 == "-A" && $2 ~ /^(INPUT|FORWARD|OUTPUT)$/ && / -j KUBE-ROUTER-(INPUT|FORWARD|OUTPUT)$/ {$1 = "-D"; print}' \
      | while read -r rule; do eval "$tool -t filter $rule" 2>/dev/null || true; done
    chains=$(kube_router_chains "$tool")
    for chain in $chains; do "$tool" -t filter -F "$chain" 2>/dev/null || true; done
    for chain in $chains; do
      if "$tool" -t filter -X "$chain" 2>/dev/null; then removed=$((removed + 1)); fi
    done
  done
  sets=$(kube_router_sets)
  for set in $sets; do ipset destroy "$set" 2>/dev/null || true; done
  if [ "$removed" -gt 0 ] || [ -n "$sets" ]; then
    note "removed kube-router's $removed chains and $(echo "$sets" | grep -c .) ipsets"
  fi
}

if [ -d "$NODE_DIR" ]; then
  step "stopping the node $NODE_NAME"
  stop prometheus prometheus-discovery
  stop kubelet
  if [ -S "$CONTAINERD_SOCKET" ] && kill -0 "$(cat "$PIDS/containerd.pid" 2>/dev/null || echo 0)" 2>/dev/null; then
    # Removing the pod sandboxes through the CRI tears their networks down (CNI DEL).
    export CONTAINER_RUNTIME_ENDPOINT="unix://$CONTAINERD_SOCKET"
    pods=$(crictl pods -q 2>/dev/null || true)
    if [ -n "$pods" ]; then
      crictl stopp $pods >/dev/null 2>&1 || true
      crictl rmp -f $pods >/dev/null 2>&1 || true
      note "removed $(echo "$pods" | wc -w) pod sandbox(es)"
    fi
  fi
  stop kube-proxy kube-router containerd
  # Container shims outlive containerd by design: end those of this node, then whatever still
  # runs in the pods' cgroups, and remove those cgroups.
  pkill -KILL -f "containerd-shim-runc-v2 .*-address $CONTAINERD_SOCKET" 2>/dev/null || true
  for hierarchy in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [ -d "$hierarchy" ] || continue
    find "$hierarchy" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
    find "$hierarchy" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  if command -v kube-proxy >/dev/null; then
    kube-proxy --cleanup >/dev/null 2>&1 || true
  fi
  remove_cni_chains nat
  remove_cni_chains filter
  # The kubelet's own chains (its canaries, the localnet firewall, the iptables-mode hint).
  for tool in iptables ip6tables; do
    for table in mangle nat filter; do
      "$tool" -t "$table" -S 2>/dev/null | awk '$1 == "-A" && / -j KUBE-FIREWALL/ {$1 = "-D"; print}' \
        | while read -r rule; do eval "$tool -t $table $rule" 2>/dev/null || true; done
      for chain in KUBE-FIREWALL KUBE-KUBELET-CANARY KUBE-IPTABLES-HINT; do
        "$tool" -t "$table" -F "$chain" 2>/dev/null && "$tool" -t "$table" -X "$chain" 2>/dev/null || true
      done
    done
  done
  # Mounts under the node's state (container root filesystems, pod volumes, network namespaces).
  mount | awk -v dir="$NODE_DIR" 'index($3, dir) == 1 {print $3}' | sort -r | while read -r target; do
    umount "$target" 2>/dev/null || umount -l "$target" 2>/dev/null || true
  done
  if [ -f "$NODE_DIR/sysctl.saved" ]; then
    sysctl -qw "net.ipv4.ip_forward=$(cat "$NODE_DIR/sysctl.saved")"
  fi
fi

remove_node_network
remove_kube_router_state

if [ -d "$PIDS" ]; then
  step "stopping the control plane"
  stop kwok kube-scheduler kube-controller-manager kube-apiserver etcd
fi
"$CLUSTER_SCRIPTS/registry.sh" down
rm -rf "$STATE_DIR"
if ip link show "$NODE_INTERFACE" >/dev/null 2>&1; then
  as_root ip link delete "$NODE_INTERFACE"
fi
note "cluster state removed"
# What is left of the cluster: nothing, or the command fails and says what.
left=$( { for exe in /proc/[0-9]*/exe; do
            case $(readlink "$exe" 2>/dev/null) in
              "$BIN_DIR"/kube-*|"$BIN_DIR"/kubelet|"$BIN_DIR"/etcd|"$BIN_DIR"/kwok) echo "process ${exe//[^0-9]/}";;
            esac
          done
          pgrep -a -f "containerd.*$STATE_DIR" || true
          pgrep -a -f "^prometheus --config.file=$STATE_DIR/" || true
          pgrep -a -f "prometheus/discovery.py .*$STATE_DIR/" || true
          pgrep -a -f "docker-registry serve $STATE_DIR" || true
          mount | awk -v dir="$STATE_DIR" 'index($3, dir) == 1 {print "mount " $3}'
          ip -o link show 2>/dev/null | awk -F': ' -v a="$NODE_INTERFACE" -v b="$NODE_BRIDGE" '$2 == a || $2 ~ "^" b {print "interface " $2}'
          kube_router_chains iptables | sed 's/^/iptables chain /'
          kube_router_sets | sed 's/^/ipset /'; } )
[ -z "$left" ] || die "left behind: $left"
note "nothing left behind (no process, mount, network interface, policy chain or ipset)"
