"""Kubernetes service discovery for the node's Prometheus, as a file of targets.

Debian's ``prometheus`` is built without ``kubernetes_sd_configs``. This host process (started
by scripts/cluster/node-up.sh, standard library only) reads the cluster's EndpointSlices,
Services and pods every two seconds as the read-only user ``flotilla:prometheus``, and writes
for ``file_sd_configs`` one target per endpoint address and port with the ``__meta_kubernetes_*``
labels that Prometheus' own discovery gives with role ``endpointslice`` (the ones
prometheus-operator's relabelings read, and their neighbours). The scrape configuration
(prometheus.yml beside this file) relabels them exactly as a ServiceMonitor's would.

    discovery.py --server URL --ca FILE --cert FILE --key FILE --out FILE
"""

from __future__ import annotations

import argparse
import json
import os
import re
import ssl
import sys
import time
import urllib.request
from typing import Any

META = "__meta_kubernetes_"
INTERVAL_SECONDS = 2.0
Object = dict[str, Any]


def sanitize(name: str) -> str:
    """A Kubernetes label or annotation name as a Prometheus label name (its strutil.SanitizeLabelName)."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def metadata_labels(prefix: str, metadata: Object) -> dict[str, str]:
    """``<prefix>_label_<name>`` and ``_labelpresent_<name>``, the same for annotations."""
    found = {}
    for kind, mapping in (("label", metadata.get("labels")), ("annotation", metadata.get("annotations"))):
        for name, value in (mapping or {}).items():
            found[f"{prefix}_{kind}_{sanitize(name)}"] = value
            found[f"{prefix}_{kind}present_{sanitize(name)}"] = "true"
    return found


def boolean(value: object) -> str:
    """A condition as Prometheus writes it."""
    return "true" if value else "false"


def pod_labels(pod: Object) -> dict[str, str]:
    """The ``__meta_kubernetes_pod_*`` labels of a pod behind an endpoint."""
    status, spec = pod.get("status") or {}, pod.get("spec") or {}
    ready = next(
        (c["status"].lower() for c in status.get("conditions") or [] if c.get("type") == "Ready"), "unknown"
    )
    labels = {
        f"{META}pod_name": pod["metadata"]["name"],
        f"{META}pod_ip": status.get("podIP", ""),
        f"{META}pod_ready": ready,
        f"{META}pod_phase": status.get("phase", ""),
        f"{META}pod_node_name": spec.get("nodeName", ""),
        f"{META}pod_host_ip": status.get("hostIP", ""),
        f"{META}pod_uid": pod["metadata"].get("uid", ""),
        **metadata_labels(f"{META}pod", pod["metadata"]),
    }
    controller = next((o for o in pod["metadata"].get("ownerReferences") or [] if o.get("controller")), None)
    if controller:
        labels[f"{META}pod_controller_kind"] = controller["kind"]
        labels[f"{META}pod_controller_name"] = controller["name"]
    return labels


def container_labels(pod: Object, port: Object) -> dict[str, str]:
    """The container of the pod that declares the endpoint's port, and that port."""
    for container in (pod.get("spec") or {}).get("containers") or []:
        for declared in container.get("ports") or []:
            if declared["containerPort"] == port.get("port") and declared.get("protocol", "TCP") == port.get(
                "protocol", "TCP"
            ):
                return {
                    f"{META}pod_container_name": container["name"],
                    f"{META}pod_container_image": container.get("image", ""),
                    f"{META}pod_container_port_name": declared.get("name", ""),
                    f"{META}pod_container_port_number": str(declared["containerPort"]),
                    f"{META}pod_container_port_protocol": declared.get("protocol", "TCP"),
                    f"{META}pod_container_init": "false",
                }
    return {}


def target_groups(slices: list[Object], services: list[Object], pods: list[Object]) -> list[Object]:
    """One file_sd target group per endpoint address and port of every EndpointSlice."""
    services_by_name = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in services}
    pods_by_name = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in pods}
    groups = []
    for endpoint_slice in slices:
        metadata = endpoint_slice["metadata"]
        namespace = metadata["namespace"]
        common = {
            f"{META}namespace": namespace,
            f"{META}endpointslice_name": metadata["name"],
            f"{META}endpointslice_address_type": endpoint_slice.get("addressType", ""),
            **metadata_labels(f"{META}endpointslice", metadata),
        }
        service = services_by_name.get(
            (namespace, (metadata.get("labels") or {}).get("kubernetes.io/service-name", ""))
        )
        if service:
            common[f"{META}service_name"] = service["metadata"]["name"]
            common |= metadata_labels(f"{META}service", service["metadata"])
        for endpoint in endpoint_slice.get("endpoints") or []:
            reference = endpoint.get("targetRef") or {}
            conditions = endpoint.get("conditions") or {}
            pod = (
                pods_by_name.get((namespace, reference.get("name", "")))
                if reference.get("kind") == "Pod"
                else None
            )
            for port in endpoint_slice.get("ports") or []:
                labels = {
                    **common,
                    f"{META}endpointslice_port": str(port.get("port", "")),
                    f"{META}endpointslice_port_name": port.get("name", ""),
                    f"{META}endpointslice_port_protocol": port.get("protocol", "TCP"),
                    f"{META}endpointslice_endpoint_conditions_ready": boolean(conditions.get("ready")),
                    f"{META}endpointslice_endpoint_conditions_serving": boolean(conditions.get("serving")),
                    f"{META}endpointslice_endpoint_conditions_terminating": boolean(
                        conditions.get("terminating")
                    ),
                }
                if port.get("appProtocol"):
                    labels[f"{META}endpointslice_port_app_protocol"] = port["appProtocol"]
                if reference:
                    labels[f"{META}endpointslice_address_target_kind"] = reference.get("kind", "")
                    labels[f"{META}endpointslice_address_target_name"] = reference.get("name", "")
                if endpoint.get("nodeName"):
                    labels[f"{META}endpointslice_endpoint_node_name"] = endpoint["nodeName"]
                if pod:
                    labels |= pod_labels(pod) | container_labels(pod, port)
                for address in endpoint.get("addresses") or []:
                    host = f"[{address}]" if ":" in address else address
                    groups.append({"targets": [f"{host}:{port.get('port')}"], "labels": labels})
    return groups


class Cluster:
    """The API server, reached with a client certificate."""

    def __init__(self, server: str, ca: str, cert: str, key: str) -> None:
        context = ssl.create_default_context(cafile=ca)
        context.load_cert_chain(cert, key)
        self.server = server.rstrip("/")
        self.opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))

    def items(self, path: str) -> list[Object]:
        with self.opener.open(f"{self.server}{path}", timeout=10) as response:
            return list(json.load(response)["items"])


def write_if_changed(path: str, groups: list[Object]) -> bool:
    """Replace the file at once (Prometheus watches it) when the targets changed."""
    text = json.dumps(sorted(groups, key=lambda g: (g["targets"], sorted(g["labels"].items()))), indent=1)
    try:
        with open(path) as current:
            if current.read() == text:
                return False
    except FileNotFoundError:
        pass
    with open(f"{path}.tmp", "w") as new:
        new.write(text)
    os.replace(f"{path}.tmp", path)
    return True


def main() -> None:
    """List the targets every INTERVAL_SECONDS until stopped."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for option in ("server", "ca", "cert", "key", "out"):
        parser.add_argument(f"--{option}", required=True)
    arguments = parser.parse_args()
    cluster = Cluster(arguments.server, arguments.ca, arguments.cert, arguments.key)
    failing = False
    while True:
        try:
            groups = target_groups(
                cluster.items("/apis/discovery.k8s.io/v1/endpointslices"),
                cluster.items("/api/v1/services"),
                cluster.items("/api/v1/pods"),
            )
        except (OSError, ValueError) as exc:  # the API server away: keep the last targets
            if not failing:
                print(f"cannot list the targets ({exc}); keeping the last ones", file=sys.stderr, flush=True)
            failing = True
        else:
            if failing:
                print("listing the targets again", file=sys.stderr, flush=True)
            failing = False
            if write_if_changed(arguments.out, groups):
                print(f"{len(groups)} targets", file=sys.stderr, flush=True)
        time.sleep(INTERVAL_SECONDS)


if __name__ == "__main__":
    main()
