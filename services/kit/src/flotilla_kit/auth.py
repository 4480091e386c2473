"""Bearer-token verification (RS256 JWTs, keys chosen by ``kid``) and role/scope guards."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import jwt
from cachetools import TLRUCache
from flask import Flask, current_app, g, request

from flotilla_kit.problems import Problem
from flotilla_kit.revocation import RevocationList

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("flotilla.auth")
EXTENSION = "flotilla_auth"
ALGORITHMS = ["RS256"]
# RFC 9068 section 2.2: the claims every JWT access token carries.
REQUIRED_CLAIMS = ["iss", "exp", "aud", "sub", "client_id", "iat", "jti"]
# RFC 9068 section 4: the `typ` a resource server accepts, compared case-insensitively.
ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})
# What a refused token's problem says: fixed texts, never an exception's (which may echo input).
REFUSALS: list[tuple[type[jwt.PyJWTError], str]] = [
    (jwt.ExpiredSignatureError, "The token has expired."),
    (jwt.ImmatureSignatureError, "The token is not valid yet."),
    (jwt.InvalidIssuerError, "The token's issuer is not trusted."),
    (jwt.InvalidAudienceError, "The token is not meant for this audience."),
    (jwt.MissingRequiredClaimError, "The token lacks a required claim."),
    (jwt.InvalidAlgorithmError, "The token's algorithm is not allowed."),
    (jwt.InvalidKeyError, "The token's signing key is not known."),
    (jwt.InvalidSignatureError, "The token's signature does not verify."),
]


REVOKED = "The token has been revoked."


class NotAnAccessToken(jwt.InvalidTokenError):
    """The token's ``typ`` is not ``at+jwt``: an ID token or another JWT of the same key."""


def refusal(exc: jwt.PyJWTError) -> str:
    """The fixed detail for a refused token."""
    if isinstance(exc, NotAnAccessToken):
        return "The token is not an access token (typ at+jwt)."
    return next((text for kind, text in REFUSALS if isinstance(exc, kind)), "The token is malformed.")


class KeyResolver(Protocol):
    """Finds the public key that verifies a token, by the token's ``kid``."""

    def key_for(self, token: str) -> Any:
        """Return the verification key or raise ``jwt.PyJWTError``."""


class JwksKeyResolver:
    """Keys from the issuer's JWKS, fetched with the kit client and cached.

    Refreshed after ``lifespan`` seconds, or early when a token names an unknown ``kid``
    (at most once per ``cooldown``); when the issuer cannot be reached the last good set
    stays in use, so an outage of the issuer does not log everyone out.
    """

    def __init__(self, fetch: Callable[[], Any], *, lifespan: float = 300, cooldown: float = 5) -> None:
        self.fetch = fetch
        self.lifespan = lifespan
        self.cooldown = cooldown
        self._lock = threading.Lock()
        self._keys: dict[str, Any] = {}
        self._fetched_at = -float("inf")

    def key_for(self, token: str) -> Any:
        kid = jwt.get_unverified_header(token).get("kid")
        if not isinstance(kid, str):
            raise jwt.InvalidKeyError("the token names no key id")
        key = self._current().get(kid)
        if key is None:
            key = self._current(refresh=True).get(kid)
        if key is None:
            raise jwt.InvalidKeyError(f"unknown key id {kid!r}")
        return key

    def ensure_loaded(self) -> None:
        """Raise unless a key set has been loaded (a readiness check)."""
        if not self._current():
            raise RuntimeError("no token verification keys loaded")

    def _current(self, *, refresh: bool = False) -> dict[str, Any]:
        with self._lock:
            age = time.monotonic() - self._fetched_at
            if age < self.lifespan and not (refresh and age >= self.cooldown):
                return self._keys
            try:
                keys = jwt.PyJWKSet.from_dict(self.fetch()).keys
            except (Problem, jwt.PyJWTError, ValueError, KeyError, TypeError) as exc:
                if not self._keys:
                    raise Problem(
                        503, "keys-unavailable", "The token signing keys cannot be fetched right now."
                    ) from exc
                log.warning("keeping the cached signing keys", extra={"error": str(exc)})
                self._fetched_at = time.monotonic() - self.lifespan + self.cooldown
                return self._keys
            self._keys = {key.key_id: key.key for key in keys if key.key_id}
            self._fetched_at = time.monotonic()
            return self._keys


class StaticKeyResolver:
    """Keys held in memory (the issuer verifying its own tokens)."""

    def __init__(self, public_keys: Callable[[], Mapping[str, Any]]) -> None:
        self.public_keys = public_keys

    def key_for(self, token: str) -> Any:
        kid = jwt.get_unverified_header(token).get("kid")
        key = self.public_keys().get(kid) if isinstance(kid, str) else None
        if key is None:
            raise jwt.InvalidKeyError(f"unknown key id {kid!r}")
        return key


@dataclass(frozen=True)
class Principal:
    """Who made the request: a user or a service client, with what it may do."""

    subject: str
    roles: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    claims: Mapping[str, Any] = field(default_factory=dict)


class TokenVerifier:
    """Checks signature, algorithm, type (RFC 9068), issuer, audience and time claims of a bearer token.

    A token that verified is remembered (by its exact text) until it expires, for at most
    ``cache_seconds``: clients send the same token many times, and the signature check is
    the larger part of a request's cost. Only valid tokens are remembered; a changed byte is
    another token.
    """

    def __init__(
        self,
        resolver: KeyResolver,
        *,
        issuer: str,
        audience: str,
        leeway: float = 5,
        cache_seconds: float = 60,
        cache_size: int = 1024,
        revocations: RevocationList | None = None,
    ) -> None:
        self.resolver = resolver
        self.revocations = revocations
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self._verified: TLRUCache[str, Principal] = TLRUCache(
            maxsize=cache_size,
            ttu=lambda _token, principal, now: min(now + cache_seconds, float(principal.claims["exp"])),
            timer=time.time,
        )
        self._verified_lock = threading.Lock()

    def verify(self, token: str) -> Principal:
        """The principal a valid, unrevoked token names; raises a 401 ``Problem`` otherwise."""
        with self._verified_lock:
            principal = self._verified.get(token)
        if principal is None:
            principal = self._verify(token)
            with self._verified_lock:
                self._verified[token] = principal
        # Checked on remembered tokens too: a revocation must not wait for the cache to forget.
        if self.revocations is not None and self.revocations.is_revoked(principal.claims):
            raise unauthorized(REVOKED, error="invalid_token")
        return principal

    def _verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") not in ALGORITHMS:
                raise jwt.InvalidAlgorithmError("the token's algorithm is not allowed")
            if str(header.get("typ", "")).lower() not in ACCESS_TOKEN_TYPES:
                raise NotAnAccessToken("the token is not typed at+jwt")
            claims = jwt.decode(
                token,
                self.resolver.key_for(token),
                algorithms=ALGORITHMS,
                issuer=self.issuer,
                audience=self.audience,
                leeway=self.leeway,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.PyJWTError as exc:
            log.info("token refused", extra={"reason": type(exc).__name__})
            raise unauthorized(refusal(exc), error="invalid_token") from exc
        return Principal(
            subject=str(claims["sub"]),
            roles=frozenset(_as_list(claims.get("roles"))),
            scopes=frozenset(str(claims.get("scope", "")).split()),
            claims=claims,
        )


def _as_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [str(item) for item in value]
    return []


def unauthorized(detail: str, *, error: str | None = None) -> Problem:
    """A 401 problem carrying an RFC 6750 ``WWW-Authenticate`` challenge."""
    challenge = 'Bearer realm="flotilla"'
    if error:
        challenge += f', error="{error}"'
    return Problem(401, "unauthorized", detail, headers={"WWW-Authenticate": challenge})


def bearer_token() -> str:
    """The bearer token of the current request, or a 401 problem."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("A bearer token is required.")
    return token.strip()


def current_principal() -> Principal:
    """The principal authenticated for this request (set by ``require``)."""
    principal: Principal = g.principal
    return principal


def require(roles: Iterable[str] = (), scopes: Iterable[str] = ()) -> Callable[[F], F]:
    """Guard a view: a valid token, carrying every role in ``roles`` and scope in ``scopes``."""
    needed_roles, needed_scopes = frozenset(roles), frozenset(scopes)

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            verifier: TokenVerifier = current_app.extensions[EXTENSION]
            principal = verifier.verify(bearer_token())
            if not needed_roles <= principal.roles:
                missing = ", ".join(sorted(needed_roles - principal.roles))
                # RFC 6750: the token is valid but grants too little; a role is such a privilege.
                raise Problem(
                    403,
                    "forbidden",
                    f"This needs the role(s): {missing}.",
                    headers={"WWW-Authenticate": 'Bearer realm="flotilla", error="insufficient_scope"'},
                )
            if not needed_scopes <= principal.scopes:
                missing = ", ".join(sorted(needed_scopes - principal.scopes))
                scope = " ".join(sorted(needed_scopes))
                raise Problem(
                    403,
                    "insufficient-scope",
                    f"This needs the scope(s): {missing}.",
                    headers={
                        "WWW-Authenticate": (
                            f'Bearer realm="flotilla", error="insufficient_scope", scope="{scope}"'
                        )
                    },
                )
            g.principal = principal
            return view(*args, **kwargs)

        return guarded  # type: ignore[return-value]

    return decorator


def init_app(app: Flask, verifier: TokenVerifier) -> None:
    """Make ``verifier`` the one ``require`` uses in this app."""
    app.extensions[EXTENSION] = verifier
