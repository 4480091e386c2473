"""HTTP endpoints of the users service."""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import unquote_plus

from flask import Response, current_app, request
from flask.views import MethodView
from werkzeug.exceptions import BadRequest, UnsupportedMediaType

from flotilla_kit.api import FORM, NUL, Blueprint
from flotilla_kit.auth import current_principal, unauthorized
from flotilla_kit.client_address import client_address
from flotilla_kit.problems import Problem, http_exception_problem, problem_response
from flotilla_users import accounts, clients, revocations, throttling
from flotilla_users.db import database
from flotilla_users.keys import SigningKeys
from flotilla_users.metadata import server_metadata
from flotilla_users.metrics import LOGINS, REGISTRATIONS, TOKENS_ISSUED
from flotilla_users.models import User
from flotilla_users.schemas import (
    ClientCredentialsSchema,
    JwksSchema,
    LoginSchema,
    ProfileUpdateSchema,
    RegistrationSchema,
    RevocationListSchema,
    ServerMetadataSchema,
    TokenSchema,
    UserSchema,
)
from flotilla_users.settings import UsersSettings
from flotilla_users.tokens import LOGIN_CLIENT_ID, TokenIssuer

users = Blueprint("users", __name__, url_prefix="/users", description="Accounts and profiles")
auth = Blueprint("auth", __name__, url_prefix="/auth", description="User login")
oauth = Blueprint("oauth", __name__, url_prefix="/oauth", description="OAuth 2.0 token endpoint")
internal = Blueprint(
    "internal",
    __name__,
    url_prefix="/internal",
    description="For the platform's own services; the ingress does not route it",
)
jwks = Blueprint(
    "jwks", __name__, url_prefix="/.well-known", description="Token verification keys and server metadata"
)

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _settings() -> UsersSettings:
    settings: UsersSettings = current_app.extensions["flotilla_settings"]
    return settings


def _issuer() -> TokenIssuer:
    issuer: TokenIssuer = current_app.extensions["flotilla_token_issuer"]
    return issuer


def _current_user() -> User:
    user = database.session.get(User, current_principal().subject)
    if user is None:
        raise unauthorized("The account of this token no longer exists.", error="invalid_token")
    return user


@users.route("/register")
class Registration(MethodView):
    """Open an account."""

    @users.arguments(RegistrationSchema)
    @users.response(201, UserSchema)
    @users.alt_response(409, description="The email is taken")
    def post(self, body: dict[str, Any]) -> User:
        """Register a customer account."""
        try:
            user = accounts.register(database.session, **body)
        except Problem:
            REGISTRATIONS.labels("duplicate").inc()
            raise
        REGISTRATIONS.labels("created").inc()
        return user


@users.route("/me")
class Me(MethodView):
    """The caller's own account."""

    @users.requires()
    @users.response(200, UserSchema)
    def get(self) -> User:
        """Read my profile."""
        return _current_user()

    @users.requires()
    @users.arguments(ProfileUpdateSchema)
    @users.response(200, UserSchema)
    def patch(self, body: dict[str, Any]) -> User:
        """Change my name or password."""
        return accounts.update_profile(
            database.session,
            _current_user(),
            name=body.get("name"),
            password=body.get("password"),
            current_password=body.get("current_password"),
        )

    @users.requires()
    @users.response(204)
    def delete(self) -> None:
        """Delete my account."""
        accounts.delete_account(
            database.session, _current_user(), token_ttl_seconds=_settings().access_token_ttl_seconds
        )


@auth.route("/login")
class Login(MethodView):
    """Exchange credentials for an access token."""

    @auth.arguments(LoginSchema)
    @auth.response(200, TokenSchema)
    @auth.alt_response(401, description="Wrong email or password")
    @auth.alt_response(429, description="Too many failed logins")
    def post(self, body: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:
        """Log in."""
        settings = _settings()
        try:
            user = accounts.authenticate_from(
                database.session,
                client_address(),
                settings.login_address_limit,
                email=body["email"],
                password=body["password"],
                max_failures=settings.login_max_failures,
                lockout_seconds=settings.login_lockout_seconds,
            )
        except accounts.LoginThrottled:
            LOGINS.labels("throttled").inc()
            raise
        except Problem:
            LOGINS.labels("failure").inc()
            raise
        LOGINS.labels("success").inc()
        token = _issuer().issue(user.id, client_id=LOGIN_CLIENT_ID, roles=user.roles)
        return _token_body(token.access_token, token.expires_in), 200, NO_STORE


def _token_body(access_token: str, expires_in: int, scope: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"access_token": access_token, "token_type": "Bearer", "expires_in": expires_in}
    if scope is not None:
        body["scope"] = scope
    return body


def _client_credentials(form: dict[str, Any]) -> tuple[str, str]:
    """Client credentials from HTTP Basic (preferred) or the form body."""
    header = request.headers.get("Authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() == "basic":
        try:
            client_id, sep, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise clients.invalid_client() from None
        client_id, secret = unquote_plus(client_id), unquote_plus(secret)
        # The form's credentials are checked by the kit's parser; these come from a header.
        if not sep or NUL in client_id or NUL in secret:
            raise clients.invalid_client()
        return client_id, secret
    if form.get("client_id") and form.get("client_secret"):
        return form["client_id"], form["client_secret"]
    raise clients.invalid_client()


@oauth.route("/token")
class Token(MethodView):
    """RFC 6749 token endpoint; only the client-credentials grant is offered."""

    @oauth.accepts(FORM)
    @oauth.arguments(ClientCredentialsSchema, location="form", content_type=FORM, error_status_code=400)
    @oauth.response(200, TokenSchema)
    @oauth.alt_response(400, description="invalid_request, unsupported_grant_type or invalid_scope")
    @oauth.alt_response(401, description="invalid_client")
    @oauth.alt_response(429, description="Too many token requests from this address")
    def post(self, form: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:
        """Get a token for a service client."""
        attempt = throttling.hit(database.session, _settings().token_address_limit, client_address())
        if not attempt.admitted:
            raise throttling.RateLimited(
                attempt.retry_after(), "Too many token requests from this address; try again later."
            )
        if form["grant_type"] != "client_credentials":
            raise Problem(
                400,
                "unsupported-grant-type",
                "Only the client_credentials grant is supported.",
                error="unsupported_grant_type",
                error_description="Only client_credentials is supported.",
            )
        client_id, secret = _client_credentials(form)
        client = clients.authenticate_client(database.session, client_id, secret)
        scopes = clients.granted_scopes(client, form.get("scope"))
        token = _issuer().issue(client.client_id, scopes=scopes, client_id=client.client_id)
        TOKENS_ISSUED.labels(client.client_id).inc()
        return _token_body(token.access_token, token.expires_in, token.scope), 200, NO_STORE


@oauth.before_request
def _no_repeated_parameter() -> None:
    """RFC 6749 section 3.2: a parameter sent twice makes the request malformed (unknown ones are ignored)."""
    known = ClientCredentialsSchema().fields
    repeated = sorted(name for name, values in request.form.lists() if len(values) > 1 and name in known)
    if repeated:
        raise BadRequest(f"Parameter(s) sent more than once: {', '.join(repeated)}.")


@oauth.errorhandler(BadRequest)
@oauth.errorhandler(UnsupportedMediaType)
def _invalid_request(error: BadRequest | UnsupportedMediaType) -> Response:
    """RFC 6749 section 5.2: a malformed token request (a JSON body too) is 400 ``invalid_request``."""
    if isinstance(error, UnsupportedMediaType):
        error = BadRequest(error.description)
    status, body, headers = http_exception_problem(error)
    body.update(error="invalid_request", error_description=body["detail"])
    return problem_response(status, body, headers)


@jwks.route("/jwks.json")
class Jwks(MethodView):
    """Public keys that verify Flotilla tokens."""

    @jwks.response(200, JwksSchema)
    def get(self) -> tuple[dict[str, Any], int, dict[str, str]]:
        """The JSON Web Key Set."""
        keys: SigningKeys = current_app.extensions["flotilla_signing_keys"]
        return keys.jwks(), 200, {"Cache-Control": "public, max-age=300"}


@jwks.route("/oauth-authorization-server")
class ServerMetadata(MethodView):
    """RFC 8414 authorization server metadata."""

    @jwks.response(200, ServerMetadataSchema)
    @jwks.alt_response(404, description="JWT_ISSUER is not a URL: there is no metadata to publish")
    def get(self) -> tuple[dict[str, Any], int, dict[str, str]]:
        """Where the token endpoint and keys are, and what they support."""
        return server_metadata(_settings()), 200, {"Cache-Control": "public, max-age=300"}


@internal.route("/revocations")
class Revocations(MethodView):
    """Subjects whose tokens are revoked: what every verifying service fetches and caches."""

    @internal.response(200, RevocationListSchema)
    def get(self) -> tuple[dict[str, Any], int, dict[str, str]]:
        """Revocations younger than the access token lifetime."""
        document = revocations.revocation_list(database.session, _settings().access_token_ttl_seconds)
        return document, 200, {"Cache-Control": "no-cache"}
