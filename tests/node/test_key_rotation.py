"""The signing key rotated on the real node under load, by the README's runbook: not one request fails.

The runbook's rollouts, each through the operator (a changed Secret or env rolls the users pods):
0. pin the current kid (JWT_ACTIVE_KID) and shorten the token lifetime to one minute (the test
   waits for it); 1. add the new key to the keys Secret: every replica publishes both, the old one
   signs; 2. sign with the new key; 3. a token lifetime later, remove the old key.
Meanwhile clients log in, read and order through the ingress, so that tokens of both keys are
verified by users, catalog (orders' service token) and orders.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import Counter

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from kubernetes import client
from kubernetes.client import ApiClient

from flotilla_users.keys import generate_key, thumbprint
from tests.support.cases import Case
from tests.support.kube import wait_for
from tests.support.node import RELEASE, Platform, helm

TOKEN_TTL_SECONDS = 60
LEEWAY_SECONDS = 5  # the verifiers'
NEW_KEY = "key-9999-rotated.pem"  # sorts after key-0000-initial.pem


def published_kids(platform: Platform) -> set[str]:
    """The kids the JWKS answers with through the ingress."""
    response = platform.get("/.well-known/jwks.json")
    assert response.status_code == 200, response.text
    return {key["kid"] for key in response.json()["keys"]}


def publishes(platform: Platform, kids: set[str]) -> None:
    """Until the JWKS through the ingress is ``kids``: a replaced pod may answer for a moment while
    it drains (its preStop delay), so the rollout's end is not yet every answer's."""
    wait_for(
        lambda: published_kids(platform) == kids, timeout=60, interval=0.5, what=f"the JWKS publishing {kids}"
    )


class Traffic:
    """Workers that log in afresh, read their profile and orders, and place orders, nonstop."""

    def __init__(self, platform: Platform, product_id: int, workers: int = 3) -> None:
        self.platform = platform
        self.product_id = product_id
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.kids: Counter[str] = Counter()
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self._work, args=(n,), daemon=True) for n in range(workers)]

    def __enter__(self) -> Traffic:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)

    def total(self) -> int:
        with self.lock:
            return sum(self.counts.values())

    def _call(
        self, what: str, expected: int, method: str, path: str, **options: object
    ) -> requests.Response | None:
        """One request through the ingress, counted; anything but ``expected`` is a failure."""
        try:
            response = self.platform.request(method, path, **options)
        except requests.RequestException as exc:
            outcome, response = repr(exc), None
        else:
            outcome = f"{response.status_code} {response.text[:160]}"
        with self.lock:
            self.counts[what] += 1
            if response is None or response.status_code != expected:
                self.failures.append(f"{time.strftime('%H:%M:%S')} {what}: {outcome}")
        return response

    def _work(self, worker: int) -> None:
        email = f"rotation-{worker}-{time.time_ns()}@example.com"
        credentials = {"email": email, "password": "correct horse battery"}
        registered = self.platform.request(
            "POST", "/users/register", json={**credentials, "name": "Rotation"}
        )
        assert registered.status_code == 201, registered.text
        sent = 0
        while not self.stop.is_set():
            sent += 1
            login = self._call("login", 200, "POST", "/auth/login", json=credentials)
            if login is None or login.status_code != 200:
                time.sleep(0.2)
                continue
            token = login.json()["access_token"]
            with self.lock:
                self.kids[jwt.get_unverified_header(token)["kid"]] += 1
            bearer = {"Authorization": f"Bearer {token}"}
            for _ in range(3):  # the same token a few times: the verifiers' caches in play
                self._call("users GET /users/me", 200, "GET", "/users/me", headers=bearer)
                self._call("orders GET /orders", 200, "GET", "/orders", headers=bearer)
            self._call(
                "orders POST /orders (catalog with orders' token)",
                201,
                "POST",
                "/orders",
                json={"items": [{"product_id": self.product_id, "quantity": 1}]},
                headers={**bearer, "Idempotency-Key": f"rotation-{worker}-{sent}-{time.time_ns()}"},
            )


def set_users_env(platform: Platform, env: list[dict[str, str]]) -> None:
    """``helm upgrade`` with users' own env entries replaced; the operator rolls its pods."""
    chart = str(platform.root / "charts" / "flotilla")
    helm("upgrade", RELEASE, chart, "--namespace", platform.namespace, "--reuse-values",
         "--set-json", f"services.users.env={json.dumps(env)}", "--wait", "--timeout", "300s")  # fmt: skip


def pod_template(kube: ApiClient, platform: Platform) -> str:
    """users' pod template as text: a changed Secret (its hash annotation) or env changes it."""
    deployment = client.AppsV1Api(kube).read_namespaced_deployment("users", platform.namespace)
    return json.dumps(kube.sanitize_for_serialization(deployment.spec.template), sort_keys=True)


def rolled_out(kube: ApiClient, platform: Platform, before: str) -> None:
    """Until the operator has given users a new pod template and every replica runs it."""
    wait_for(
        lambda: pod_template(kube, platform) != before,
        timeout=180,  # a Secret's change is seen at the operator's next resync at the latest
        interval=0.5,
        what="the operator rolling users",
    )
    platform.wait_available("users", timeout=300)


@pytest.mark.reliability
def test_the_signing_key_rotates_under_load_without_a_failed_request(
    kube: ApiClient, platform: Platform, case: Case
) -> None:
    core = client.CoreV1Api(kube)
    secret_name = f"{RELEASE}-jwt-keys"
    (old_kid,) = published_kids(platform)
    key = generate_key()
    new_kid = thumbprint(key.public_key())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    product_id = platform.create_product(stock=1_000_000)
    started = time.monotonic()
    timeline: list[str] = []

    def mark(event: str) -> None:
        timeline.append(f"{time.monotonic() - started:5.1f}s {event} ({traffic.total()} requests so far)")

    with Traffic(platform, product_id) as traffic:
        wait_for(lambda: traffic.total() >= 20, timeout=120, interval=0.5, what="traffic flowing")
        mark("load running")
        pinned = [
            {"name": "JWT_ACTIVE_KID", "value": old_kid},
            {"name": "ACCESS_TOKEN_TTL_SECONDS", "value": str(TOKEN_TTL_SECONDS)},
        ]
        before = pod_template(kube, platform)
        set_users_env(platform, pinned)
        rolled_out(kube, platform, before)
        mark(f"0. pinned the current kid {old_kid[:8]}..., token lifetime {TOKEN_TTL_SECONDS} s")

        before = pod_template(kube, platform)
        patch = {"data": {NEW_KEY: base64.b64encode(pem).decode()}}
        core.patch_namespaced_secret(secret_name, platform.namespace, patch)
        rolled_out(kube, platform, before)
        publishes(platform, {old_kid, new_kid})
        mark(f"1. added {NEW_KEY}: both kids published, the old one signs")

        before = pod_template(kube, platform)
        set_users_env(platform, [{**pinned[0], "value": new_kid}, pinned[1]])
        rolled_out(kube, platform, before)
        last_old_token = time.monotonic()
        mark(f"2. signing with the new kid {new_kid[:8]}...")

        time.sleep(max(0.0, last_old_token + TOKEN_TTL_SECONDS + LEEWAY_SECONDS - time.monotonic()))
        mark("every token of the old key expired")
        before = pod_template(kube, platform)
        secret = core.read_namespaced_secret(secret_name, platform.namespace)
        old_files = sorted(name for name in secret.data if name != NEW_KEY)
        core.patch_namespaced_secret(
            secret_name,
            platform.namespace,
            {"data": dict.fromkeys(old_files)},  # null removes a key
        )
        rolled_out(kube, platform, before)
        publishes(platform, {new_kid})
        mark(f"3. removed {', '.join(old_files)}: only the new kid published")
        time.sleep(10)  # traffic on the new key alone
        mark("load stopped")

    # Back to the chart's defaults (the newest file signs; lifetime 900 s) for the tests after.
    before = pod_template(kube, platform)
    set_users_env(platform, [])
    rolled_out(kube, platform, before)

    total = sum(traffic.counts.values())
    case.tried(total)
    case.saw(
        f"{total} requests ({dict(traffic.counts)}), tokens of the old kid {traffic.kids[old_kid]} and "
        f"of the new {traffic.kids[new_kid]}; {len(traffic.failures)} failed; timeline: "
        + " | ".join(timeline)
    )
    print("\n".join(["rotation timeline:", *timeline]))
    assert not traffic.failures, traffic.failures[:20]
    assert traffic.kids[old_kid] > 0 and traffic.kids[new_kid] > 0, traffic.kids
