"""Every request the operator's kubernetes client sends, counted by verb and resource.

client-go counts its requests (``rest_client_requests_total``); the Python client does not.
The count is taken where every call of the generated and the dynamic client passes, the REST
client's ``request``. kopf's own requests (its watches) go through aiohttp and are not counted.
"""

from __future__ import annotations

import re
from typing import Any

from kubernetes import client

from flotilla_operator.metrics import API_REQUESTS

_PATH = re.compile(
    r"^(?:https?://[^/]+)?/(?:api/v1|apis/[^/]+/[^/]+)(?:/namespaces/[^/]+(?=/))?"
    r"/(?P<resource>[^/?]+)(?:/(?P<name>[^/?]+))?(?:/(?P<subresource>[^/?]+))?"
)
_VERBS = {"POST": "create", "PUT": "update", "DELETE": "delete"}


def describe(method: str, url: str, headers: dict[str, str]) -> tuple[str, str]:
    """The Kubernetes verb and resource (with its subresource) of one request."""
    found = _PATH.match(url)
    if found is None:
        return method.lower(), "other"  # discovery, /version
    resource = found["resource"] + (f"/{found['subresource']}" if found["subresource"] else "")
    if method == "GET":
        return ("get" if found["name"] else "list"), resource
    if method == "PATCH":
        content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
        return ("apply" if "apply-patch" in content_type else "patch"), resource
    return _VERBS.get(method, method.lower()), resource


def count_requests(api_client: client.ApiClient) -> client.ApiClient:
    """``api_client``, its every request counted in ``API_REQUESTS``."""
    send: Any = api_client.rest_client.request

    def counted(method: str, url: str, headers: dict[str, str] | None = None, **kwargs: Any) -> Any:
        API_REQUESTS.labels(*describe(method, url, headers or {})).inc()
        return send(method, url, headers=headers, **kwargs)

    api_client.rest_client.request = counted  # type: ignore[method-assign, assignment]
    return api_client
