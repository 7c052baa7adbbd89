"""Microsoft identity platform (v2 endpoints) EMULATOR: discovery, keys and client-credentials tokens.

EMULATOR CODE — not Microsoft. Built from the public documentation of the v2.0 token endpoint
("OAuth 2.0 client credentials flow", "Microsoft identity platform application authentication
certificate credentials", "AADSTS error codes"). Only the app-only flow mailunblock uses is served:
``grant_type=client_credentials`` with a client secret or a certificate-signed client assertion. Access
tokens are RS256 JWTs signed with a key published at the tenant's ``jwks_uri``; the Graph and Exchange
emulators verify them with :func:`verify_access_token`.
"""

from __future__ import annotations

import base64
import hmac
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask, Response, jsonify, request
from mailunblock.sandbox.core import SandboxContext, instrument
from mailunblock.sandbox.scenario import MicrosoftState, TenantState

TOKEN_LIFETIME = timedelta(hours=1)
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# Assertions are signed with the client's real clock, which the sandbox clock does not drive.
ASSERTION_LEEWAY = timedelta(minutes=5)
GRAPH_ALIASES = ("https://graph.microsoft.com", "00000003-0000-0000-c000-000000000000")
EXCHANGE_ALIASES = (
    "https://outlook.office365.com",
    "https://outlook.office.com",
    "00000002-0000-0ff1-ce00-000000000000",
)


class TokenRejected(Exception):
    """An access token failed verification; the message is safe to show (no token content)."""


def resource_aliases(resource: str) -> tuple[str, ...]:
    """Audience values that name a resource ("graph" or "exchange"): the real identifiers only.

    As in Entra, the URL an API is reached at (the sandbox's own address) is not a resource.
    """
    return GRAPH_ALIASES if resource == "graph" else EXCHANGE_ALIASES


def _resource_for(audience: str) -> str | None:
    audience = audience.rstrip("/").lower()
    for resource in ("graph", "exchange"):
        if audience in (a.lower() for a in resource_aliases(resource)):
            return resource
    return None


def _b64url_int(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def jwks(state: MicrosoftState) -> dict[str, Any]:
    """The JSON Web Key Set publishing the token-signing key."""
    numbers = state.signing_key.public_key().public_numbers()
    return {
        "keys": [
            {
                "kty": "RSA",
                "use": "sig",
                "kid": state.signing_kid,
                "n": _b64url_int(numbers.n),
                "e": _b64url_int(numbers.e),
            }
        ]
    }


def verify_access_token(
    authorization: str | None, state: MicrosoftState, resource: str, now: datetime
) -> tuple[TenantState, Mapping[str, Any]]:
    """Check a ``Bearer`` header for ``resource``; return the tenant and the claims or raise."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenRejected("Access token is empty.")
    try:
        claims: dict[str, Any] = jwt.decode(
            token.strip(),
            key=state.signing_key.public_key(),
            algorithms=["RS256"],
            options={"verify_exp": False, "verify_nbf": False, "verify_iat": False,
                     "verify_aud": False},
        )
    except jwt.PyJWTError:
        raise TokenRejected("Access token validation failure.") from None
    audience = str(claims.get("aud", ""))
    if _resource_for(audience) != resource:
        raise TokenRejected("Access token validation failure. Invalid audience.")
    tenant = state.tenant(str(claims.get("tid", "")))
    if tenant is None:
        raise TokenRejected("Access token validation failure. Invalid issuer.")
    if not (int(claims.get("nbf", 0)) <= now.timestamp() < int(claims.get("exp", 0))):
        raise TokenRejected("Lifetime validation failed, the token is expired.")
    return tenant, claims


def _aad_error(
    ctx: SandboxContext, status: int, error: str, code: int, message: str
) -> tuple[Response, int]:
    now = ctx.clock.now()
    stamp = now.strftime("%Y-%m-%d %H:%M:%SZ")
    trace_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
    body = {
        "error": error,
        "error_description": (
            f"AADSTS{code}: {message} Trace ID: {trace_id} Correlation ID: {correlation_id} "
            f"Timestamp: {stamp}"
        ),
        "error_codes": [code],
        "timestamp": stamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": f"{request.host_url.rstrip('/')}/error?code={code}",
    }
    return jsonify(body), status


def _unknown_tenant(ctx: SandboxContext, tenant: str) -> tuple[Response, int]:
    return _aad_error(
        ctx, 400, "invalid_request", 90002,
        f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are "
        "signing into the correct cloud. Check with your subscription administrator, this may "
        "happen if there are no active subscriptions for the tenant.",
    )


class _ClientAuthFailed(Exception):
    def __init__(self, status: int, error: str, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.error, self.code, self.message = status, error, code, message


def _check_assertion(tenant: TenantState, tenant_ref: str, client_id: str, assertion: str) -> None:
    """Validate a private_key_jwt client assertion against the registered certificate."""
    app = tenant.spec.app
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.PyJWTError:
        raise _ClientAuthFailed(
            400, "invalid_request", 50027, "JWT token is invalid or malformed."
        ) from None
    thumbprint = str(header.get("x5t#S256") or header.get("x5t") or "")
    # Clients differ on padding and alphabet (MSAL pads); compare the base64url value unpadded.
    normalized = thumbprint.replace("+", "-").replace("/", "_").rstrip("=")
    cert = tenant.credentials.certificate
    if cert is None or normalized not in tenant.credentials.thumbprints:
        raise _ClientAuthFailed(
            401, "invalid_client", 700027,
            "The certificate with identifier used to sign the client assertion is not registered "
            f"on application. [Reason - The key was not found., Thumbprint of key used by client: "
            f"'{thumbprint}', Please visit the Azure Portal, Graph Explorer or directly use MS Graph "
            f"to see configured keys for app Id '{app.client_id}'.]",
        )
    public_key = cert.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise _ClientAuthFailed(401, "invalid_client", 700027, "Unsupported key type.")
    try:
        claims = jwt.decode(
            assertion, key=public_key, algorithms=["RS256", "PS256"],
            options={"verify_exp": False, "verify_nbf": False, "verify_aud": False,
                     "verify_iat": False},
        )
    except jwt.PyJWTError:
        raise _ClientAuthFailed(
            401, "invalid_client", 700027, "Client assertion contains an invalid signature."
        ) from None
    if claims.get("iss") != client_id or claims.get("sub") != client_id:
        raise _ClientAuthFailed(
            401, "invalid_client", 700021,
            "Client assertion application identifier doesn't match 'client_id' parameter.",
        )
    base = request.host_url.rstrip("/")
    audiences = claims.get("aud")
    audiences = audiences if isinstance(audiences, list) else [audiences]
    accepted = {
        f"{base}/{ref}/oauth2/v2.0/token"
        for ref in (tenant_ref, tenant.spec.tenant_id, *tenant.spec.domains)
    }
    if not accepted.intersection(str(a) for a in audiences):
        raise _ClientAuthFailed(
            401, "invalid_client", 700212,
            "No matching federated identity record found for presented assertion audience.",
        )
    now = datetime.now(UTC).timestamp()
    leeway = ASSERTION_LEEWAY.total_seconds()
    exp, nbf = claims.get("exp"), claims.get("nbf", 0)
    if not isinstance(exp, int | float) or now > exp + leeway or now + leeway < float(nbf):
        raise _ClientAuthFailed(
            401, "invalid_client", 700024, "Client assertion is not within its valid time range."
        )


def _authenticate_client(tenant: TenantState, tenant_ref: str, form: Mapping[str, str]) -> str:
    """Return the credential kind used ("secret" or "certificate") or raise _ClientAuthFailed."""
    app = tenant.spec.app
    client_id = form.get("client_id", "")
    if not client_id:
        raise _ClientAuthFailed(
            400, "invalid_request", 900144,
            "The request body must contain the following parameter: 'client_id'.",
        )
    if client_id != app.client_id:
        raise _ClientAuthFailed(
            400, "unauthorized_client", 700016,
            f"Application with identifier '{client_id}' was not found in the directory "
            f"'{tenant.spec.display_name}'. This can happen if the application has not been "
            "installed by the administrator of the tenant or consented to by any user in the "
            "tenant. You may have sent your authentication request to the wrong tenant.",
        )
    secret = form.get("client_secret")
    assertion = form.get("client_assertion")
    if assertion:
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise _ClientAuthFailed(
                400, "invalid_request", 7000219,
                "'client_assertion' or 'client_secret' is required when "
                f"'client_assertion_type' is not '{ASSERTION_TYPE}'.",
            )
        _check_assertion(tenant, tenant_ref, client_id, assertion)
        return "certificate"
    if secret:
        expected = tenant.credentials.client_secret
        if expected is None or not _constant_time_equal(secret, expected):
            raise _ClientAuthFailed(
                401, "invalid_client", 7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is "
                "the client secret value, not the client secret ID, for a secret added to app "
                f"'{app.client_id}'.",
            )
        return "secret"
    raise _ClientAuthFailed(
        401, "invalid_client", 7000218,
        "The request body must contain the following parameter: 'client_assertion' or "
        "'client_secret'.",
    )


def _constant_time_equal(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _fault_body(status: int) -> dict[str, Any]:
    if status == 429:
        return {"error": "temporarily_unavailable",
                "error_description": "AADSTS50196: The server terminated an operation because "
                                     "it encountered a client request loop.",
                "error_codes": [50196]}
    return {"error": "temporarily_unavailable",
            "error_description": "AADSTS90033: A transient error has occurred. Please try again.",
            "error_codes": [90033]}


def create_identity_app(state: MicrosoftState, ctx: SandboxContext) -> Flask:
    """The identity platform emulator as a Flask app."""
    app = Flask("mailunblock.sandbox.identity")
    instrument(app, "identity", ctx, _fault_body)

    @app.get("/<tenant_ref>/v2.0/.well-known/openid-configuration")
    def openid_configuration(tenant_ref: str) -> tuple[Response, int] | Response:
        tenant = state.tenant(tenant_ref)
        if tenant is None:
            return _unknown_tenant(ctx, tenant_ref)
        base, tid = request.host_url.rstrip("/"), tenant.spec.tenant_id
        return jsonify(
            {
                "token_endpoint": f"{base}/{tid}/oauth2/v2.0/token",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post", "private_key_jwt", "client_secret_basic"
                ],
                "jwks_uri": f"{base}/{tid}/discovery/v2.0/keys",
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "issuer": f"{base}/{tid}/v2.0",
                "request_uri_parameter_supported": False,
                "userinfo_endpoint": f"{state.urls.graph}/oidc/userinfo",
                "authorization_endpoint": f"{base}/{tid}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/{tid}/oauth2/v2.0/devicecode",
                "http_logout_supported": True,
                "frontchannel_logout_supported": True,
                "end_session_endpoint": f"{base}/{tid}/oauth2/v2.0/logout",
                "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "tid", "oid"],
                "tenant_region_scope": "EU",
                "cloud_instance_name": "sandbox.invalid",
                "cloud_graph_host_name": "graph.sandbox.invalid",
                "msgraph_host": state.urls.graph.removeprefix("https://"),
                "rbac_url": "https://pas.sandbox.invalid",
            }
        )

    @app.get("/<tenant_ref>/discovery/v2.0/keys")
    def keys(tenant_ref: str) -> tuple[Response, int] | Response:
        if state.tenant(tenant_ref) is None:
            return _unknown_tenant(ctx, tenant_ref)
        return jsonify(jwks(state))

    @app.post("/<tenant_ref>/oauth2/v2.0/token")
    def token(tenant_ref: str) -> tuple[Response, int] | Response:
        tenant = state.tenant(tenant_ref)
        if tenant is None:
            return _unknown_tenant(ctx, tenant_ref)
        form = request.form
        if form.get("grant_type") != "client_credentials":
            return _aad_error(
                ctx, 400, "unsupported_grant_type", 70003,
                "The app requested an unsupported grant type "
                f"'{form.get('grant_type', '')}'. The sandbox serves client_credentials only.",
            )
        try:
            credential = _authenticate_client(tenant, tenant_ref, form)
        except _ClientAuthFailed as failure:
            return _aad_error(ctx, failure.status, failure.error, failure.code, failure.message)
        scope = form.get("scope", "").strip()
        if not scope:
            return _aad_error(
                ctx, 400, "invalid_request", 900144,
                "The request body must contain the following parameter: 'scope'.",
            )
        scopes = scope.split()
        if len(scopes) != 1 or not scopes[0].endswith("/.default"):
            return _aad_error(
                ctx, 400, "invalid_scope", 1002012,
                f"The provided value for scope {scope} is not valid. Client credential flows must "
                "have a scope value with /.default suffixed to the resource identifier "
                "(application ID URI).",
            )
        audience = scopes[0].removesuffix("/.default")
        resource = _resource_for(audience)
        if resource is None:
            return _aad_error(
                ctx, 400, "invalid_resource", 500011,
                f"The resource principal named {audience} was not found in the tenant named "
                f"{tenant_ref}. This can happen if the application has not been installed by the "
                "administrator of the tenant or consented to by any user in the tenant. You might have "
                "sent your authentication request to the wrong tenant.",
            )
        now = ctx.clock.now()
        app_spec = tenant.spec.app
        with state.lock:
            roles = sorted(tenant.permissions[resource])
        claims: dict[str, Any] = {
            "aud": audience.rstrip("/"),
            "iss": f"{request.host_url.rstrip('/')}/{tenant.spec.tenant_id}/v2.0",
            "iat": int(now.timestamp()),
            "nbf": int(now.timestamp()),
            "exp": int((now + TOKEN_LIFETIME).timestamp()),
            "app_displayname": app_spec.display_name,
            "appid": app_spec.client_id,
            "appidacr": "2" if credential == "certificate" else "1",
            "idtyp": "app",
            "oid": app_spec.service_principal_id,
            "sub": app_spec.service_principal_id,
            "tid": tenant.spec.tenant_id,
            "uti": uuid.uuid4().hex[:22],
            "ver": "1.0",
            "xms_sandbox": "EMULATOR",
        }
        if roles:
            claims["roles"] = roles
        access_token = jwt.encode(
            claims, state.signing_key, algorithm="RS256", headers={"kid": state.signing_kid}
        )
        # expires_in is in the client's (real) seconds, so MSAL's cache ages the token in step
        # with the sandbox clock at the configured speed.
        lifetime = max(1, int(TOKEN_LIFETIME.total_seconds() / max(ctx.clock.speed, 1e-6)) - 1)
        return jsonify(
            {
                "token_type": "Bearer",
                "expires_in": lifetime,
                "ext_expires_in": lifetime,
                "access_token": access_token,
            }
        )

    return app
