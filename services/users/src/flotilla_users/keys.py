"""The token signing keys: loaded from a directory, published as a JWKS, used to sign."""

from __future__ import annotations

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
DEV_KID = "dev-1"
ALGORITHM = "RS256"


class SigningKeys:
    """Every ``<kid>.pem`` private RSA key of a directory; one of them signs new tokens."""

    def __init__(self, keys: dict[str, rsa.RSAPrivateKey], active_kid: str) -> None:
        if active_kid not in keys:
            raise ConfigError(f"invalid configuration: JWT_ACTIVE_KID: no key {active_kid!r}")
        self.keys = keys
        self.active_kid = active_kid
        self._public = {kid: key.public_key() for kid, key in keys.items()}

    @classmethod
    def from_directory(cls, directory: Path, active_kid: str | None = None) -> SigningKeys:
        """Load the keys; without ``active_kid`` the last one by name signs."""
        keys: dict[str, rsa.RSAPrivateKey] = {}
        for path in sorted(directory.glob("*.pem")):
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < 2048:
                raise ConfigError(
                    f"invalid configuration: JWT_KEYS_DIR: {path.name} is not an RSA key of 2048 bits or more"
                )
            keys[path.stem] = key
        if not keys:
            raise ConfigError(f"invalid configuration: JWT_KEYS_DIR: no *.pem key in {directory}")
        return cls(keys, active_kid or sorted(keys)[-1])

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
            claims, self.keys[self.active_kid], algorithm=ALGORITHM, headers={"kid": self.active_kid}
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
    if write_private_key(directory / f"{DEV_KID}.pem", generate_key()):
        log.warning("generated a development signing key", extra={"directory": str(directory)})


def new_kid() -> str:
    """A key id that sorts after every earlier one (and after the development key)."""
    return "key-" + time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
