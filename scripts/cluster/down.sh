#!/usr/bin/env bash
# `make cluster-down`: stop every process `make cluster-up` started and remove the state.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

PIDS="$STATE_DIR/pids"
if [ -d "$PIDS" ]; then
  step "stopping the local cluster"
  pids=()
  for name in kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do
    file="$PIDS/$name.pid"
    [ -f "$file" ] || continue
    pid=$(cat "$file")
    kill -0 "$pid" 2>/dev/null || continue
    # Each component runs in its own session (setsid): signal its whole process group.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    pids+=("$pid")
  done
  for _ in $(seq 1 100); do
    running=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && running=1; done
    [ "$running" = 0 ] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
  note "stopped ${#pids[@]} process(es)"
fi
rm -rf "$STATE_DIR"
note "cluster state removed"
