// Builds CoreDNS with the plugins the cluster's Corefile uses (scripts/cluster/node/coredns.yaml).
module flotilla.dev/cluster/coredns

go 1.26.0

require github.com/coredns/coredns v1.15.0
