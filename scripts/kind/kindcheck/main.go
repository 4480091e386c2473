// Command kindcheck runs kind's own code on a cluster config without a container engine: the
// loader of `kind create cluster --config` (strict decoding, conversion, defaults), the
// validation it runs before creating any node, and the kubeadm configuration each node gets
// with the config's kubeadmConfigPatches applied (the config action, which otherwise runs only
// once the node containers exist). It prints one JSON object per node.
//
// kind keeps these in internal packages, so tests/cluster/test_kind.py builds this file inside
// a copy of the sigs.k8s.io/kind module at KIND_VERSION, as pkg/cluster/kindcheck.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"sigs.k8s.io/kind/pkg/cluster/internal/kubeadm"
	"sigs.k8s.io/kind/pkg/cluster/internal/providers/common"
	"sigs.k8s.io/kind/pkg/internal/apis/config"
	"sigs.k8s.io/kind/pkg/internal/apis/config/encoding"
	"sigs.k8s.io/kind/pkg/internal/patch"
)

type node struct {
	Name         string               `json:"name"`
	Role         string               `json:"role"`
	Image        string               `json:"image"`
	PortMappings []config.PortMapping `json:"extraPortMappings"`
	Labels       map[string]string    `json:"labels"`
	Kubeadm      string               `json:"kubeadm"`
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: kindcheck CONFIG")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "ERROR:", err)
		os.Exit(1)
	}
}

func run(path string) error {
	cfg, err := encoding.Load(path)
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	namer := common.MakeNodeNamer(cfg.Name)
	nodes := []node{}
	for i := range cfg.Nodes {
		n := &cfg.Nodes[i]
		// The Kubernetes version is the node image's tag (kind reads it from the node itself).
		tag := n.Image[strings.LastIndex(strings.Split(n.Image, "@")[0], ":")+1:]
		tag = strings.Split(tag, "@")[0]
		data := kubeadm.ConfigData{
			ClusterName:          cfg.Name,
			KubernetesVersion:    tag,
			ControlPlaneEndpoint: cfg.Name + "-control-plane:6443",
			APIBindPort:          common.APIServerInternalPort,
			APIServerAddress:     cfg.Networking.APIServerAddress,
			Token:                kubeadm.Token,
			PodSubnet:            cfg.Networking.PodSubnet,
			KubeProxyMode:        string(cfg.Networking.KubeProxyMode),
			ServiceSubnet:        cfg.Networking.ServiceSubnet,
			ControlPlane:         n.Role == config.ControlPlaneRole,
			IPFamily:             cfg.Networking.IPFamily,
			FeatureGates:         cfg.FeatureGates,
			RuntimeConfig:        cfg.RuntimeConfig,
			NodeProvider:         "docker",
			NodeName:             namer(string(n.Role)),
			// Any address: kind reads the node container's.
			NodeAddress: fmt.Sprintf("172.18.0.%d", i+2),
		}
		if len(n.Labels) > 0 {
			labels := []string{}
			for key, value := range n.Labels {
				labels = append(labels, key+"="+value)
			}
			data.NodeLabels = strings.Join(labels, ",")
		}
		rendered, err := kubeadm.Config(data)
		if err != nil {
			return err
		}
		// As kind's config action: the cluster's patches, then the node's own.
		rendered, err = patch.KubeYAML(rendered, cfg.KubeadmConfigPatches, cfg.KubeadmConfigPatchesJSON6902)
		if err != nil {
			return err
		}
		if len(n.KubeadmConfigPatches) > 0 || len(n.KubeadmConfigPatchesJSON6902) > 0 {
			rendered, err = patch.KubeYAML(rendered, n.KubeadmConfigPatches, n.KubeadmConfigPatchesJSON6902)
			if err != nil {
				return err
			}
		}
		nodes = append(nodes, node{
			Name: data.NodeName, Role: string(n.Role), Image: n.Image,
			PortMappings: n.ExtraPortMappings, Labels: n.Labels, Kubeadm: rendered,
		})
	}
	return json.NewEncoder(os.Stdout).Encode(nodes)
}
