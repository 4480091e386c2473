#!/usr/bin/env bash
# Certificates and keys of the local control plane, made once per cluster with openssl:
# a CA, the API server's serving certificate, client certificates, the service-account keys.
# Run again, it makes only what is missing (a certificate added since the cluster was made).
#   scripts/cluster/pki.sh DIR NODE_NAME NODE_IP
set -euo pipefail
dir=$1 node_name=$2 node_ip=$3
mkdir -p "$dir" && cd "$dir"

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null; }

if [ ! -f ca.crt ]; then
  key ca
  openssl req -x509 -new -key ca.key -subj "/CN=flotilla-local-ca" -days 3650 -out ca.crt 2>/dev/null
fi

# sign NAME SUBJECT [SAN] [EXTENDED_KEY_USAGE]
sign() {
  local name=$1 subject=$2 san=${3:-} usage=${4:-clientAuth}
  [ -f "$name.crt" ] && return 0
  key "$name"
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$usage"
    [ -n "$san" ] && echo "subjectAltName=$san"
  } > "$name.ext"
  openssl req -new -key "$name.key" -subj "$subject" -out "$name.csr" 2>/dev/null
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
    -extfile "$name.ext" -out "$name.crt" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}

sign apiserver "/CN=kube-apiserver" \
  "IP:127.0.0.1,IP:$node_ip,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local" \
  serverAuth
sign admin "/O=system:masters/CN=flotilla-admin"
sign controller-manager "/CN=system:kube-controller-manager"
sign scheduler "/CN=system:kube-scheduler"
sign kwok "/O=system:masters/CN=kwok-controller"
# The API server's client certificate towards kubelets (logs, exec) on real nodes.
sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
# The real node (make up): the kubelet's client and serving certificates, and kube-proxy's.
sign kubelet "/O=system:nodes/CN=system:node:$node_name"
sign kubelet-serving "/CN=$node_name" "IP:$node_ip,DNS:$node_name" serverAuth
sign kube-proxy "/CN=system:kube-proxy"
# The node's NetworkPolicy engine (kube-router's policy controller; addons/kube-router.yaml).
sign kube-router "/CN=flotilla:kube-router"
# The node's Prometheus: its discovery of the pods, which reads only (addons/prometheus.yaml).
sign prometheus "/CN=flotilla:prometheus"
if [ ! -f sa.key ]; then
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key 2>/dev/null
  openssl pkey -in sa.key -pubout -out sa.pub 2>/dev/null
fi
chmod 600 ./*.key
