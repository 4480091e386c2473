"""The token signing keys: loaded from a directory, published as a JWKS, used to sign."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from flotilla_kit.settings import ConfigError

log = logging.getLogger("flotilla.users.keys")
DEV_KEY_NAME = "dev-1"
ALGORITHM = "RS256"
# RFC 9068: a JWT access token is typed, so no other JWT signed by the same key passes for one.
ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 - a media type, not a secret


def thumbprint(public: rsa.RSAPublicKey) -> str:
    """The key's RFC 7638 JWK thumbprint (SHA-256, base64url): its ``kid``.

    Hand-written because PyJWT, which signs, has no thumbprint function; for RSA the input is
    fixed (the members ``e``, ``kty``, ``n`` in that order, no whitespace), and a test checks it
    against an independent JOSE library.
    """
    numbers = public.public_numbers()
    members = {"e": _b64_uint(numbers.e), "kty": "RSA", "n": _b64_uint(numbers.n)}
    digest = hashlib.sha256(json.dumps(members, separators=(",", ":")).encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _b64_uint(value: int) -> str:
    return (
        base64.urlsafe_b64encode(value.to_bytes((value.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()
    )


class SigningKeys:
    """Every ``*.pem`` private RSA key of a directory, by ``kid``; one of them signs new tokens."""

    def __init__(self, keys: dict[str, rsa.RSAPrivateKey], active_kid: str) -> None:
        if active_kid not in keys:
            raise ConfigError(f"invalid configuration: JWT_ACTIVE_KID: no key {active_kid!r}")
        self.keys = keys
        self.active_kid = active_kid
        self._public = {kid: key.public_key() for kid, key in keys.items()}

    @classmethod
    def from_directory(cls, directory: Path, active: str | None = None) -> SigningKeys:
        """Load the keys; ``active`` (a kid or a file name without .pem) signs, else the last file by name."""
        keys: dict[str, rsa.RSAPrivateKey] = {}
        kid_of_file: dict[str, str] = {}
        for path in sorted(directory.glob("*.pem")):
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < 2048:
                raise ConfigError(
                    f"invalid configuration: JWT_KEYS_DIR: {path.name} is not an RSA key of 2048 bits or more"
                )
            kid = thumbprint(key.public_key())
            keys[kid] = key
            kid_of_file[path.stem] = kid
        if not keys:
            raise ConfigError(f"invalid configuration: JWT_KEYS_DIR: no *.pem key in {directory}")
        active_kid = kid_of_file.get(active or "", active) if active else kid_of_file[sorted(kid_of_file)[-1]]
        return cls(keys, active_kid)

    def check_usable(self) -> None:
        """Raise unless the active key can sign (a readiness check)."""
        self.sign({"check": True})

    def public_keys(self) -> dict[str, Any]:
        """Public keys by kid, for verification."""
        return self._public

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        """The JSON Web Key Set of every public key."""
        keys = []
        for kid, public in self._public.items():
            jwk = jwt.algorithms.RSAAlgorithm.to_jwk(public, as_dict=True)
            keys.append({**jwk, "kid": kid, "use": "sig", "alg": ALGORITHM})
        return {"keys": keys}

    def sign(self, claims: dict[str, Any]) -> str:
        """A compact JWS of ``claims`` signed with the active key."""
        return jwt.encode(
            claims,
            self.keys[self.active_kid],
            algorithm=ALGORITHM,
            headers={"kid": self.active_kid, "typ": ACCESS_TOKEN_TYPE},
        )


def write_private_key(path: Path, key: rsa.RSAPrivateKey) -> bool:
    """Write ``key`` as ``path`` atomically; False when another process wrote it first."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".key-")
    try:
        os.fchmod(handle, 0o600)
        os.write(handle, pem)
        os.close(handle)
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
        return True
    finally:
        os.unlink(temporary)


def generate_key() -> rsa.RSAPrivateKey:
    """A new 2048-bit RSA key."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def ensure_development_key(directory: Path) -> None:
    """Generate a signing key for local development when the directory has none."""
    if any(directory.glob("*.pem")):
        return
    if write_private_key(directory / f"{DEV_KEY_NAME}.pem", generate_key()):
        log.warning("generated a development signing key", extra={"directory": str(directory)})


def new_key_name() -> str:
    """A key file name (without ``.pem``) that sorts after every earlier one and the development key."""
    return "key-" + time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
