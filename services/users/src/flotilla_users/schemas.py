"""Request and response bodies of the users API."""

from __future__ import annotations

from typing import Any, ClassVar

import marshmallow as ma
from marshmallow import validate

from flotilla_kit.schemas import PartialUpdateSchema, Pattern

PASSWORD = validate.Length(min=8, max=256)
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
# An address as the documented pattern says, which is all the check there is (a part of RFC 5321,
# in ASCII): a dot-atom of at most 64 characters at a host name whose top-level domain has two
# letters or more; 254 characters in all, which also keeps the domain within 255. Not documented
# as `format: email`: validators of that format differ (on IDNA labels, for one), the pattern does not.
EMAIL_DESCRIPTION = "An email address; a domain with non-ASCII letters in its xn-- form"
EMAIL = [
    validate.Length(max=254),
    Pattern(
        rf"^{_ATEXT}({_ATEXT}|\.(?={_ATEXT})){{0,63}}"
        r"@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$",
        error="Not a valid email address.",
    ),
]
NAME = validate.Length(min=1, max=200)


class RegistrationSchema(ma.Schema):
    """A new account."""

    email = ma.fields.String(required=True, validate=EMAIL, metadata={"description": EMAIL_DESCRIPTION})
    password = ma.fields.String(required=True, validate=PASSWORD, load_only=True)
    name = ma.fields.String(required=True, validate=NAME)


class UserSchema(ma.Schema):
    """An account as others may see it (never the password hash)."""

    id = ma.fields.String(required=True)
    email = ma.fields.String(required=True, metadata={"description": EMAIL_DESCRIPTION})
    name = ma.fields.String(required=True)
    role = ma.fields.String(required=True)


class ProfileUpdateSchema(PartialUpdateSchema):
    """Changes to one's own profile; a new password needs the current one."""

    class Meta(PartialUpdateSchema.Meta):
        json_schema: ClassVar[dict[str, Any]] = {
            **PartialUpdateSchema.Meta.json_schema,
            # OpenAPI 3.0 for "password requires current_password".
            "anyOf": [{"not": {"required": ["password"]}}, {"required": ["current_password"]}],
        }

    name = ma.fields.String(validate=NAME)
    password = ma.fields.String(validate=PASSWORD, load_only=True)
    current_password = ma.fields.String(validate=validate.Length(max=256), load_only=True)

    @ma.validates_schema
    def _password_change_needs_current(self, data: dict[str, object], **_kwargs: object) -> None:
        if "password" in data and "current_password" not in data:
            raise ma.ValidationError("Required to change the password.", "current_password")


class LoginSchema(ma.Schema):
    """Credentials."""

    email = ma.fields.String(required=True, validate=EMAIL, metadata={"description": EMAIL_DESCRIPTION})
    password = ma.fields.String(required=True, validate=validate.Length(min=1, max=256), load_only=True)


class TokenSchema(ma.Schema):
    """An OAuth 2.0 bearer token response (RFC 6749 section 5.1)."""

    access_token = ma.fields.String(required=True)
    token_type = ma.fields.String(required=True)
    expires_in = ma.fields.Integer(required=True)
    scope = ma.fields.String()


class ClientCredentialsSchema(ma.Schema):
    """RFC 6749 section 4.4.2 token request (form-encoded); unknown parameters are ignored."""

    class Meta:
        unknown = ma.EXCLUDE

    # Any other grant is refused as RFC 6749's unsupported_grant_type by the view.
    grant_type = ma.fields.String(required=True, metadata={"enum": ["client_credentials"]})
    scope = ma.fields.String(validate=validate.Length(max=1000))
    client_id = ma.fields.String(validate=validate.Length(max=100))
    client_secret = ma.fields.String(validate=validate.Length(max=256), load_only=True)


class JwkSchema(ma.Schema):
    """One RSA public key."""

    class Meta:
        unknown = ma.INCLUDE

    kty = ma.fields.String(required=True)
    kid = ma.fields.String(required=True)
    use = ma.fields.String()
    alg = ma.fields.String()
    n = ma.fields.String(required=True)
    e = ma.fields.String(required=True)


class JwksSchema(ma.Schema):
    """A JSON Web Key Set."""

    keys = ma.fields.List(ma.fields.Nested(JwkSchema), required=True)


class ServerMetadataSchema(ma.Schema):
    """RFC 8414 authorization server metadata."""

    issuer = ma.fields.String(required=True)
    token_endpoint = ma.fields.String(required=True)
    jwks_uri = ma.fields.String(required=True)
    grant_types_supported = ma.fields.List(ma.fields.String(), required=True)
    token_endpoint_auth_methods_supported = ma.fields.List(ma.fields.String(), required=True)
    scopes_supported = ma.fields.List(ma.fields.String(), required=True)
    response_types_supported = ma.fields.List(ma.fields.String(), required=True)


class RevocationSchema(ma.Schema):
    """Tokens of ``sub`` issued at or before ``revoked_at`` are revoked."""

    sub = ma.fields.String(required=True)
    revoked_at = ma.fields.Float(required=True, metadata={"description": "seconds since the epoch"})


class RevocationListSchema(ma.Schema):
    """The revocations every verifying service checks tokens against."""

    revoked = ma.fields.List(ma.fields.Nested(RevocationSchema), required=True)
    generated_at = ma.fields.Float(required=True)
