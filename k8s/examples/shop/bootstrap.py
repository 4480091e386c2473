"""Make the shop example's Secrets when they are absent, through the API server.

shop-secrets: a password per database and the PostgreSQL superuser's, each service's database
URL, the orders service's OAuth client secret and the admin's password. shop-jwt-keys: the RSA
key that signs the users service's tokens. An existing Secret is left as it is (a rerun, or one
made beforehand by hand), so passwords never change under a running database.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import ssl
import string
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
API = "https://{}:{}".format(
    os.environ.get("KUBERNETES_SERVICE_HOST", "kubernetes.default.svc"),
    os.environ.get("KUBERNETES_SERVICE_PORT", "443"),
)
DATABASE_HOST = "shop-postgresql"
SERVICES = ("users", "catalog", "orders")
LABELS = {"app.kubernetes.io/part-of": "flotilla-shop", "app.kubernetes.io/managed-by": "shop-bootstrap"}


def password(length: int) -> str:
    """Letters and digits only: safe in a URL and in SQL without quoting."""
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(length))


def shop_secrets() -> dict[str, str]:
    """The passwords, the database URLs built from them, the client secret."""
    data = {"postgres-password": password(32)}
    for service in SERVICES:
        data[f"{service}-db-password"] = password(32)
        data[f"{service}-database-url"] = (
            f"postgresql://{service}:{data[f'{service}-db-password']}@{DATABASE_HOST}:5432/{service}"
        )
    data["orders-client-secret"] = password(40)
    data["admin-password"] = password(20)
    return data


def jwt_keys() -> dict[str, str]:
    """One 2048-bit RSA key, PKCS#8 PEM, as the users service reads JWT_KEYS_DIR."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return {"key-0000-initial.pem": pem.decode()}


def request(method: str, path: str, body: Mapping[str, object] | None = None) -> tuple[int, str]:
    """One call with the pod's service-account token, verified against the cluster's CA.

    Returns the HTTP status and, on an error, the API server's message.
    """
    context = ssl.create_default_context(cafile=str(ACCOUNT / "ca.crt"))
    token = (ACCOUNT / "token").read_text().strip()
    call = urllib.request.Request(  # noqa: S310 - API is https, from the pod's environment
        API + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(call, context=context, timeout=10) as response:  # noqa: S310
            return int(response.status), ""
    except urllib.error.HTTPError as error:
        try:
            message = str(json.load(error).get("message", ""))
        except ValueError:
            message = ""
        return error.code, message


def ensure(namespace: str, name: str, make: Callable[[], dict[str, str]]) -> None:
    """Create Secret ``name`` with ``make()``'s data unless it exists."""
    path = f"/api/v1/namespaces/{namespace}/secrets"
    status, message = request("GET", f"{path}/{name}")
    if status == 200:
        print(f"secret {name}: present, left as it is")
        return
    if status != 404:
        sys.exit(f"error: reading secret {name}: HTTP {status} {message}")
    data = make()
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "labels": LABELS},
        "type": "Opaque",
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in data.items()},
    }
    status, message = request("POST", path, body)
    if status == 201:
        print(f"secret {name}: created")
    elif status == 409:
        print(f"secret {name}: created meanwhile by another run, left as it is")
    else:
        sys.exit(f"error: creating secret {name}: HTTP {status} {message}")


def main() -> None:
    """Both Secrets, in the pod's own namespace."""
    namespace = (ACCOUNT / "namespace").read_text().strip()
    ensure(namespace, "shop-secrets", shop_secrets)
    ensure(namespace, "shop-jwt-keys", jwt_keys)


if __name__ == "__main__":
    main()
