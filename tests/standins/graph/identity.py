"""The stand-in's identity platform: app registrations and the OAuth 2.0 client-credentials grant.

Follows the Microsoft identity platform's documented flow
(https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow):
`POST /{tenant}/oauth2/v2.0/token` with a form body carrying `grant_type=client_credentials`,
`client_id`, `scope=<resource>/.default` and either `client_secret` or a signed JWT
`client_assertion` (`client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`,
https://learn.microsoft.com/entra/identity-platform/certificate-credentials: header `x5t#S256` or
`x5t` = the certificate's thumbprint, claims `aud` = the token endpoint, `iss` = `sub` = the client
id, `jti`, `exp`; `nbf` is checked when present, MSAL leaves it out). Errors use the platform's shape: `error`, `error_description` starting
with an AADSTS code, `error_codes`, `timestamp`, `trace_id`, `correlation_id`.
"""

from __future__ import annotations

import base64
import datetime
import secrets
import uuid
from dataclasses import dataclass, field

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass(frozen=True)
class RegisteredApp:
    client_id: str
    secret: str | None = None
    certificate: x509.Certificate | None = None
    roles: frozenset[str] = frozenset({"Presence.ReadWrite.All"})
    """Application permissions granted with admin consent."""


@dataclass(frozen=True)
class IssuedToken:
    client_id: str
    roles: frozenset[str]
    expires_at: float


@dataclass(frozen=True)
class TokenError(Exception):
    status: int
    error: str
    code: int
    description: str
    violation: bool = False
    """A malformed request (a bug in the client), as opposed to wrong credentials."""

    def body(self) -> dict[str, object]:
        return {
            "error": self.error,
            "error_description": f"AADSTS{self.code}: {self.description}",
            "error_codes": [self.code],
            "timestamp": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ"),
            "trace_id": str(uuid.uuid4()),
            "correlation_id": str(uuid.uuid4()),
        }


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class IdentityPlatform:
    tenant_id: str
    resources: frozenset[str]
    """Accepted `<resource>/.default` resources (Graph's identifier URI and the stand-in's URL)."""
    apps: dict[str, RegisteredApp] = field(default_factory=dict)
    token_lifetime: int = 3599
    tokens: dict[str, IssuedToken] = field(default_factory=dict)
    issued: list[str] = field(default_factory=list)
    """Every token handed out, revoked ones included (tests check none is ever logged)."""
    requests: int = 0

    def issue(
        self, tenant: str, form: dict[str, str], token_endpoint: str, now: float
    ) -> dict[str, object]:
        self.requests += 1
        if tenant.lower() != self.tenant_id.lower():
            raise TokenError(400, "invalid_request", 90002, f"Tenant '{tenant}' not found.")
        if form.get("grant_type") != "client_credentials":
            raise TokenError(
                400,
                "unsupported_grant_type",
                70003,
                "The app requested an unsupported grant type.",
                True,
            )
        client_id = form.get("client_id", "")
        app = self.apps.get(client_id)
        if app is None:
            raise TokenError(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory.",
            )
        scope = form.get("scope", "")
        if (
            scope.split() != [scope]
            or not scope.endswith("/.default")
            or scope[: -len("/.default")] not in self.resources
        ):
            raise TokenError(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {scope!r} is not valid. Client credential flows "
                "must have a scope value with /.default suffixed to the resource identifier.",
                True,
            )
        secret = form.get("client_secret")
        assertion = form.get("client_assertion")
        if (secret is None) == (assertion is None):
            raise TokenError(
                400,
                "invalid_request",
                900144,
                "The request body must contain either 'client_secret' or 'client_assertion'.",
                True,
            )
        if secret is not None:
            if app.secret is None or not secrets.compare_digest(secret, app.secret):
                raise TokenError(401, "invalid_client", 7000215, "Invalid client secret provided.")
        else:
            assert assertion is not None
            if form.get("client_assertion_type") != ASSERTION_TYPE:
                raise TokenError(
                    400, "invalid_request", 50027, "Invalid client_assertion_type.", True
                )
            self._verify_assertion(app, assertion, token_endpoint)
        token = secrets.token_urlsafe(32)
        self.tokens[token] = IssuedToken(client_id, app.roles, now + self.token_lifetime)
        self.issued.append(token)
        return {
            "token_type": "Bearer",
            "expires_in": self.token_lifetime,
            "ext_expires_in": self.token_lifetime,
            "access_token": token,
        }

    def _verify_assertion(self, app: RegisteredApp, assertion: str, token_endpoint: str) -> None:
        def refuse(reason: str, violation: bool = False) -> TokenError:
            return TokenError(
                401, "invalid_client", 700027, f"Client assertion failed: {reason}", violation
            )

        if app.certificate is None:
            raise refuse("the application has no certificate credential")
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError as exc:
            raise refuse(f"not a JWT ({exc})", True) from None
        # RFC 7515 §4.1.7-8: base64url of the DER's digest; MSAL keeps the "=" padding (which
        # base64url omits) and Entra accepts it, so padding is ignored here too.
        if header.get("x5t#S256") is not None:
            if str(header["x5t#S256"]).rstrip("=") != _b64(
                app.certificate.fingerprint(hashes.SHA256())
            ):
                raise refuse("x5t#S256 does not match a registered certificate")
        elif header.get("x5t") is not None:
            if str(header["x5t"]).rstrip("=") != _b64(app.certificate.fingerprint(hashes.SHA1())):
                raise refuse("x5t does not match a registered certificate")
        else:
            raise refuse("the header names no certificate thumbprint (x5t#S256 or x5t)", True)
        algorithm = header.get("alg")
        if algorithm not in ("PS256", "RS256"):
            raise refuse(f"algorithm {algorithm!r} is not PS256 or RS256", True)
        try:
            claims = jwt.decode(
                assertion,
                app.certificate.public_key(),  # type: ignore[arg-type]
                algorithms=[algorithm],
                audience=token_endpoint,
                options={"require": ["exp", "aud", "iss", "sub", "jti"]},
            )
        except jwt.PyJWTError as exc:
            raise refuse(str(exc)) from None
        if claims.get("iss") != app.client_id or claims.get("sub") != app.client_id:
            raise refuse("iss and sub must be the client id", True)

    def check_token(self, token: str, now: float) -> IssuedToken | None:
        issued = self.tokens.get(token)
        if issued is None or issued.expires_at <= now:
            return None
        return issued

    def revoke_all(self) -> None:
        self.tokens.clear()
