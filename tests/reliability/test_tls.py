"""TLS between services: HTTPS end to end, verified against the configured CA and nothing else.

A test CA (trustme) issues the certificate every service of a second platform instance serves;
a rogue CA issues an impostor's certificate and stands for "the wrong CA" on the client side.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import trustme

from flotilla_kit.http_client import OUTBOUND_REQUESTS, ClientPolicy, ServiceClient, UpstreamUnavailable
from flotilla_kit.token_source import ClientCredentialsToken
from tests.support.cases import Case
from tests.support.platform import Platform, start_platform
from tests.support.processes import ServiceProcess, run_cli

SERVICES = ["users", "catalog", "orders"]
FAST = ClientPolicy(connect_timeout=2, read_timeout=5, retries=2, backoff_initial=0.01, backoff_max=0.05)


@dataclass(frozen=True)
class Pki:
    """PEM files: the platform's CA and certificate, and a rogue CA with its own certificate."""

    ca: str
    cert: str
    key: str
    rogue_ca: str
    rogue_cert: str
    rogue_key: str


def _write(directory: Path, name: str, authority: trustme.CA) -> tuple[str, str, str]:
    issued = authority.issue_cert("127.0.0.1", "localhost")
    paths = [directory / f"{name}-ca.pem", directory / f"{name}-cert.pem", directory / f"{name}-key.pem"]
    authority.cert_pem.write_to_path(str(paths[0]))
    paths[1].write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    issued.private_key_pem.write_to_path(str(paths[2]))
    return str(paths[0]), str(paths[1]), str(paths[2])


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca, cert, key = _write(directory, "test", trustme.CA())
    rogue_ca, rogue_cert, rogue_key = _write(directory, "rogue", trustme.CA())
    return Pki(ca, cert, key, rogue_ca, rogue_cert, rogue_key)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[Platform]:
    """users, catalog and orders serving HTTPS only, each trusting the test CA alone."""
    running = start_platform(
        tmp_path_factory.mktemp("tls-logs"),
        tmp_path_factory.mktemp("tls-keys"),
        workers=1,
        instance="tls",
        env={"TLS_CERT_FILE": pki.cert, "TLS_KEY_FILE": pki.key, "TLS_CA_FILE": pki.ca},
    )
    yield running
    running.stop()


def _service(platform: Platform, name: str) -> ServiceProcess:
    return {"users": platform.users, "catalog": platform.catalog, "orders": platform.orders}[name]


def _outbound(metrics: str, target: str) -> dict[str, float]:
    """orders' ``http_client_requests_total`` towards ``target``, by outcome."""
    counts: dict[str, float] = {}
    for line in metrics.splitlines():
        if line.startswith("http_client_requests_total{") and f'target="{target}"' in line:
            outcome = line.split('outcome="', 1)[1].split('"', 1)[0]
            counts[outcome] = counts.get(outcome, 0) + float(line.rsplit(" ", 1)[1])
    return counts


def _described(counts: dict[str, float]) -> str:
    return " ".join(f"{int(count)}x{outcome}" for outcome, count in sorted(counts.items()))


def _wait_for_log(service: ServiceProcess, text: str, timeout: float = 10) -> None:
    """Until a line of the service's log contains ``text`` (gunicorn logs after the client left)."""
    deadline = time.monotonic() + timeout
    while not any(text in line for line in service.log_lines()):
        assert time.monotonic() < deadline, f"no {text!r} in the log of {service.name}: {service.log_tail()}"
        time.sleep(0.1)


def test_an_order_flows_end_to_end_over_https(tls: Platform, pki: Pki, case: Case) -> None:
    assert all(service.url.startswith("https://") for service in tls.services())
    assert tls.orders.env["USERS_URL"].startswith("https://")
    assert tls.orders.env["CATALOG_URL"].startswith("https://")
    product = tls.create_product(stock=5)
    token = tls.customer_token()
    response = tls.order(token, [{"product_id": product["id"], "quantity": 2}])
    case.tried()
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "confirmed"
    assert tls.stock_of(product["id"]) == 3
    metrics = requests.get(f"{tls.orders.url}/metrics", timeout=10, verify=pki.ca).text
    to_users, to_catalog = _outbound(metrics, "users"), _outbound(metrics, "catalog")
    # The client-credentials token from users, then the reservation (committed at once) in catalog.
    assert to_users.get("200", 0) >= 1, to_users
    assert sum(count for outcome, count in to_catalog.items() if outcome.startswith("2")) >= 1, to_catalog
    assert "tls_error" not in to_users and "tls_error" not in to_catalog
    case.saw(
        f"order 201 confirmed, stock 5 -> 3; orders' https calls: users {_described(to_users)}, "
        f"catalog {_described(to_catalog)}"
    )


@pytest.mark.parametrize("name", SERVICES)
def test_health_answers_over_https_and_plain_http_gets_no_answer(
    tls: Platform, pki: Pki, name: str, case: Case
) -> None:
    service = _service(tls, name)
    for path in ("/livez", "/readyz"):
        case.tried()
        assert requests.get(f"{service.url}{path}", timeout=10, verify=pki.ca).status_code == 200
    case.tried()
    with pytest.raises(requests.ConnectionError) as plain:
        requests.get(f"http://127.0.0.1:{service.port}/livez", timeout=10)
    assert not isinstance(plain.value, requests.Timeout), plain.value
    # The server's side: it read a plain HTTP request where a TLS handshake belonged.
    _wait_for_log(service, "HTTP_REQUEST")
    case.saw(
        f"/livez, /readyz 200 over https; plain http: {type(plain.value).__name__}, "
        "server logged SSL HTTP_REQUEST"
    )
    # Still serving after the bad client.
    assert requests.get(f"{service.url}/livez", timeout=10, verify=pki.ca).status_code == 200


@pytest.mark.parametrize("name", SERVICES)
def test_no_service_is_accepted_by_a_client_trusting_another_ca(
    tls: Platform, pki: Pki, name: str, case: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = _service(tls, name)
    case.tried()
    with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        requests.get(f"{service.url}/livez", timeout=10, verify=pki.rogue_ca)
    # The kit client: the rogue CA, and the default roots, both refuse it, at once and without
    # retries, even when the environment offers requests the right bundle.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", pki.ca)
    for label, bundle in (("rogue CA", pki.rogue_ca), ("default roots", None)):
        target = f"tls-{name}-{uuid.uuid4().hex[:6]}"
        client = ServiceClient(target, service.url, policy=FAST, ca_bundle=bundle)
        case.tried()
        with pytest.raises(UpstreamUnavailable) as refused:
            client.request("GET", "/livez")
        assert refused.value.status == 503
        assert refused.value.reason == "certificate verify failed"
        assert OUTBOUND_REQUESTS.labels(target, "GET", "tls_error")._value.get() == 1
        case.saw(f"kit client with {label}: 503 {refused.value.reason}, 1 attempt")
    case.tried()
    trusted = ServiceClient(f"tls-{name}-trusted", service.url, policy=FAST, ca_bundle=pki.ca)
    assert trusted.request("GET", "/livez").status_code == 200


def test_the_client_credentials_token_is_fetched_only_from_a_trusted_issuer(
    tls: Platform, pki: Pki, case: Case
) -> None:
    def token_from(bundle: str) -> str:
        issuer = ServiceClient(f"users-{uuid.uuid4().hex[:6]}", tls.users.url, policy=FAST, ca_bundle=bundle)
        return ClientCredentialsToken(issuer, "orders", tls.clients["orders"], "reservations:write")()

    case.tried()
    with pytest.raises(UpstreamUnavailable, match="certificate verify failed"):
        token_from(pki.rogue_ca)
    case.tried()
    assert token_from(pki.ca).count(".") == 2
    case.saw("token source: rogue CA refused (503), test CA gave a JWT")


@pytest.mark.parametrize("wrong", ["orders-trusts-another-ca", "catalog-shows-another-cas-certificate"])
def test_an_untrusted_peer_fails_the_order_with_a_503_problem(
    tls: Platform, pki: Pki, wrong: str, case: Case, tmp_path: Path
) -> None:
    """Another orders beside the platform's, either trusting the wrong CA or sent to an impostor."""
    orders_env = {**tls.orders.env}
    # An impostor catalog on the catalog's database, with a certificate of the rogue CA.
    impostor = ServiceProcess(
        "catalog",
        {**tls.catalog.env, "TLS_CERT_FILE": pki.rogue_cert, "TLS_KEY_FILE": pki.rogue_key},
        tmp_path,
        verify=pki.rogue_ca,
    )
    if wrong == "orders-trusts-another-ca":
        orders_env["TLS_CA_FILE"] = pki.rogue_ca
    else:
        orders_env["CATALOG_URL"] = impostor.url
    # Served with the test CA's certificate: only its outbound trust differs.
    orders = ServiceProcess("orders", orders_env, tmp_path, verify=pki.ca)
    try:
        if wrong == "orders-trusts-another-ca":
            # It cannot fetch the signing keys from users: alive, never ready.
            orders.start(until="/livez")
        else:
            impostor.start()
            orders.start()
        product = tls.create_product(stock=4)
        token = tls.customer_token()
        readyz = requests.get(f"{orders.url}/readyz", timeout=10, verify=pki.ca)
        case.tried()
        response = requests.post(
            f"{orders.url}/orders",
            json={"items": [{"product_id": product["id"], "quantity": 1}]},
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex},
            timeout=30,
            verify=pki.ca,
        )
        assert response.status_code == 503, response.text
        assert response.headers["Content-Type"] == "application/problem+json"
        problem = response.json()
        if wrong == "orders-trusts-another-ca":
            assert readyz.status_code == 503
            assert problem["type"].endswith("/keys-unavailable"), problem
        else:
            assert readyz.status_code == 200
            assert problem["type"].endswith("/upstream-unavailable"), problem
            assert "certificate verify failed" in problem["detail"]
            # The impostor saw orders abort the handshake, and never a request.
            _wait_for_log(impostor, "TLSV1_ALERT_UNKNOWN_CA")
            assert not any('"/reservations' in line for line in impostor.log_lines())
        assert tls.stock_of(product["id"]) == 4
        assert any("certificate verify failed" in line for line in orders.log_lines()), orders.log_tail()
        case.saw(f"readyz {readyz.status_code}; order {response.status_code}: {problem['detail']}")
    finally:
        orders.stop()
        impostor.stop()


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"TLS_CERT_FILE": "{cert}"}, "TLS_CERT_FILE and TLS_KEY_FILE: set both or neither"),
        ({"TLS_KEY_FILE": "{key}"}, "TLS_CERT_FILE and TLS_KEY_FILE: set both or neither"),
        ({"TLS_CERT_FILE": "{missing}", "TLS_KEY_FILE": "{key}"}, "TLS_CERT_FILE"),
        ({"TLS_CERT_FILE": "{cert}", "TLS_KEY_FILE": "{rogue_key}"}, "matching, unencrypted private key"),
        ({"TLS_CA_FILE": "{missing}"}, "TLS_CA_FILE"),
        ({"TLS_CA_FILE": ""}, "TLS_CA_FILE"),
        ({"TLS_CA_FILE": "false"}, "TLS_CA_FILE"),
    ],
    ids=[
        "cert-only",
        "key-only",
        "cert-missing",
        "key-of-another-cert",
        "ca-missing",
        "ca-empty",
        "ca-false",
    ],
)
def test_a_bad_tls_setting_is_named_and_the_service_does_not_start(
    pki: Pki, variables: dict[str, str], named: str, case: Case, tmp_path: Path
) -> None:
    files = {**pki.__dict__, "missing": str(tmp_path / "absent.pem")}
    env = {
        "USERS_URL": "https://127.0.0.1:1",
        "FLOTILLA_ENV": "development",
        "FLOTILLA_DATA_DIR": str(tmp_path),
        **{name: value.format(**files) for name, value in variables.items()},
    }
    for command in ("check-config", "serve"):
        case.tried()
        result = run_cli("catalog", command, env=env)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert named in result.stderr
        assert "Traceback" not in result.stderr
    message = result.stderr.strip().removeprefix("error: invalid configuration: ")
    case.saw(message.replace(str(tmp_path), "<tmp>")[:90])


def test_a_complete_tls_setting_passes_the_check(pki: Pki, case: Case, tmp_path: Path) -> None:
    env = {
        "USERS_URL": "https://127.0.0.1:1",
        "FLOTILLA_ENV": "development",
        "FLOTILLA_DATA_DIR": str(tmp_path),
        "TLS_CERT_FILE": pki.cert,
        "TLS_KEY_FILE": pki.key,
        "TLS_CA_FILE": pki.ca,
    }
    case.tried()
    result = run_cli("catalog", "check-config", env=env)
    assert result.returncode == 0, result.stderr
    case.saw("check-config: configuration ok")
