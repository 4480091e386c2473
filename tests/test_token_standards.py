"""The token issuer against its standards, checked by independent libraries (Authlib, joserfc).

RFC 8414 metadata, RFC 6749 client credentials and errors, RFC 9068 JWT access tokens and
RFC 7638 key ids: none of these checks uses the kit's or the users service's own code.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import requests
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from joserfc.jwt import ClaimsOption, JWTClaimsRegistry

from flotilla_users.keys import SigningKeys, generate_key, write_private_key
from tests.support.platform import AUDIENCE, ISSUER, Platform

METADATA = "/.well-known/oauth-authorization-server"


def metadata(platform: Platform) -> dict[str, Any]:
    """The issuer's RFC 8414 document."""
    response = requests.get(f"{platform.users.url}{METADATA}", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/json"
    body: dict[str, Any] = response.json()
    return body


def local(platform: Platform, url: str) -> str:
    """A URL of the issuer's public origin, on the users process the tests run (the ingress's job)."""
    assert url.startswith(ISSUER), url
    return platform.users.url + url.removeprefix(ISSUER)


def verified_claims(platform: Platform, access_token: str) -> dict[str, Any]:
    """The claims of an RFC 9068 access token, verified with the keys the metadata points to."""
    keys = requests.get(local(platform, metadata(platform)["jwks_uri"]), timeout=10).json()
    token = jwt.decode(access_token, KeySet.import_key_set(keys), algorithms=["RS256"])
    assert token.header["typ"] == "at+jwt"
    essential: ClaimsOption = {"essential": True}
    JWTClaimsRegistry(
        iss={"essential": True, "value": ISSUER},
        aud={"essential": True, "value": AUDIENCE},
        sub=essential,
        client_id=essential,
        jti=essential,
        exp=essential,
        iat=essential,
    ).validate(token.claims)
    return token.claims


def test_the_server_metadata_is_valid_rfc_8414_for_the_https_issuer(platform: Platform) -> None:
    document = AuthorizationServerMetadata(metadata(platform))
    document.validate()  # raises on any member RFC 8414 forbids or lacks
    assert document["issuer"] == ISSUER
    assert document["token_endpoint"] == f"{ISSUER}/oauth/token"
    assert document["grant_types_supported"] == ["client_credentials"]
    assert set(document["scopes_supported"]) == {"reservations:write", "reports:read"}


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_a_standard_client_gets_an_at_jwt_from_the_metadata_alone(platform: Platform, method: str) -> None:
    document = metadata(platform)
    assert method in document["token_endpoint_auth_methods_supported"]
    client = OAuth2Session("orders", platform.clients["orders"], token_endpoint_auth_method=method)
    token = client.fetch_token(local(platform, document["token_endpoint"]), grant_type="client_credentials")
    assert token["token_type"] == "Bearer"
    assert token["scope"] == "reservations:write"
    claims = verified_claims(platform, token["access_token"])
    assert claims["client_id"] == "orders"
    assert claims["sub"] == "orders"
    assert claims["exp"] - claims["iat"] == token["expires_in"]


def test_a_login_token_is_an_at_jwt_of_the_login_client(platform: Platform) -> None:
    account = platform.register()
    claims = verified_claims(platform, platform.login(account["email"]))
    assert claims["sub"] == account["id"]
    assert claims["client_id"] == "flotilla-login"
    assert claims["roles"] == ["customer"]


def test_a_wrong_secret_is_invalid_client_to_a_standard_client(platform: Platform) -> None:
    client = OAuth2Session(
        "orders", "not-the-secret-at-all", token_endpoint_auth_method="client_secret_basic"
    )
    with pytest.raises(OAuthError) as refused:
        client.fetch_token(f"{platform.users.url}/oauth/token", grant_type="client_credentials")
    assert refused.value.error == "invalid_client"


MALFORMED: dict[str, dict[str, Any]] = {
    "a JSON body": {"json": {"grant_type": "client_credentials"}},
    "no grant_type": {"data": {"scope": "reservations:write"}},
    "grant_type twice": {
        "data": [("grant_type", "client_credentials"), ("grant_type", "client_credentials")]
    },
    "a text body": {"data": "grant_type=client_credentials", "headers": {"Content-Type": "text/plain"}},
    "no body": {},
}


@pytest.mark.parametrize("request_kind", list(MALFORMED))
def test_a_malformed_token_request_is_invalid_request(platform: Platform, request_kind: str) -> None:
    options = MALFORMED[request_kind]
    response = requests.post(
        f"{platform.users.url}/oauth/token",
        auth=("orders", platform.clients["orders"]),
        timeout=10,
        **options,
    )
    assert response.status_code == 400, f"{request_kind}: {response.status_code} {response.text}"
    body = response.json()
    assert body["error"] == "invalid_request", body
    assert isinstance(body["error_description"], str) and body["error_description"]
    assert "Traceback" not in response.text and "Error(" not in response.text


def test_every_kid_is_the_rfc_7638_thumbprint_of_its_key(platform: Platform) -> None:
    keys = requests.get(f"{platform.users.url}/.well-known/jwks.json", timeout=10).json()["keys"]
    assert keys
    for key in keys:
        assert key["kid"] == RSAKey.import_key(key).thumbprint()


def test_two_installs_never_share_a_kid_and_a_key_keeps_its_kid_anywhere(tmp_path: Path) -> None:
    first, second, renamed = tmp_path / "first", tmp_path / "second", tmp_path / "renamed"
    for directory in (first, second):
        write_private_key(directory / "dev-1.pem", generate_key())  # the same file name, other keys
    renamed.mkdir()
    (renamed / "key-20261202.pem").write_bytes((first / "dev-1.pem").read_bytes())
    kid_first = SigningKeys.from_directory(first).active_kid
    assert kid_first != SigningKeys.from_directory(second).active_kid
    assert SigningKeys.from_directory(renamed).active_kid == kid_first


def test_the_signing_key_is_chosen_by_kid_or_by_file_name(tmp_path: Path) -> None:
    for name in ("key-a", "key-b"):
        write_private_key(tmp_path / f"{name}.pem", generate_key())
    newest = SigningKeys.from_directory(tmp_path)
    by_name = SigningKeys.from_directory(tmp_path, "key-a")
    assert by_name.active_kid != newest.active_kid  # key-b, the last by name, signs by default
    assert SigningKeys.from_directory(tmp_path, by_name.active_kid).active_kid == by_name.active_kid
    signed = jwt.decode(
        by_name.sign({"iat": int(time.time())}),
        KeySet.import_key_set(by_name.jwks()),  # type: ignore[arg-type]
        algorithms=["RS256"],
    )
    assert signed.header["kid"] == by_name.active_kid


def test_an_unknown_parameter_is_ignored_even_repeated(platform: Platform) -> None:
    """RFC 6749 section 3.2: the server MUST ignore unrecognized parameters."""
    response = requests.post(
        f"{platform.users.url}/oauth/token",
        auth=("orders", platform.clients["orders"]),
        data=[("grant_type", "client_credentials"), ("x-extra", "1"), ("x-extra", "2")],
        timeout=10,
    )
    assert response.status_code == 200, response.text
