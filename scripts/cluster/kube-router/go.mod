// Builds kube-router, whose network policy controller alone enforces NetworkPolicies on the real
// node (scripts/cluster/node-up.sh).
// netlink: kube-router v2.10.0 requires an untagged netlink commit that the Go module proxy
// refuses; its release v1.3.1 (kube-router v2.6 to v2.9's) has every API kube-router calls (the
// commit changed policy routing, which only the routing controller uses, off here).
// The others are newer than kube-router's own pins, for their security fixes: gobgp v4.5.0 has
// GHSA-gjrg-jjr3-56cm and GHSA-frrj-87jh-2772 (fixed in v4.7.0), grpc v1.81.1 GHSA-hrxh-6v49-42gf,
// GHSA-qc2q-p7wx-3px3, GHSA-vp52-pcj8-j9qc and GHSA-2v4p-qf9q-27wj (fixed in v1.83.2).
module flotilla.dev/cluster/kube-router

go 1.26.0

require (
	github.com/cloudnativelabs/kube-router/v2 v2.10.0
	github.com/osrg/gobgp/v4 v4.8.0
	golang.org/x/net v0.63.0
	golang.org/x/sys v0.50.0
	golang.org/x/text v0.44.0
	google.golang.org/grpc v1.85.0
)

replace github.com/vishvananda/netlink => github.com/vishvananda/netlink v1.3.1
