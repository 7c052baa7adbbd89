"""App-only tokens for one tenant (MSAL client-credentials flow).

One ``ConfidentialClientApplication`` per tenant, built on first use and kept: since msal 1.23
``acquire_token_for_client`` serves tokens from its cache, so callers simply ask for a token per request.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit

import jwt
import msal
import requests
from mailunblock.connectors.errors import (
    AuthenticationError,
    ConnectorError,
    PermanentError,
    TransientError,
)
from mailunblock.connectors.http import HttpPolicy, error_for_exception
from mailunblock.connectors.models import AppToken
from msal.exceptions import MsalServiceError

T = TypeVar("T")

SERVICE = "identity"
# Hosts of Microsoft's public and national-cloud authorities; any other host is an emulator or a
# proxy, for which MSAL must skip its instance discovery against login.microsoftonline.com.
_MICROSOFT_AUTHORITY_SUFFIXES = (
    ".microsoftonline.com",
    ".microsoftonline.us",
    ".chinacloudapi.cn",
    ".microsoftonline.cn",
    ".microsoftonline.de",
)
_AADSTS = re.compile(r"AADSTS\d+")
_TOKEN_MARGIN = 300.0  # seconds before a token's expiry at which it is no longer handed out from memory
_TRANSIENT_ERRORS = frozenset({"temporarily_unavailable", "server_error"})


class TokenProvider:
    """Access tokens for one tenant's app registration; thread-safe."""

    def __init__(
        self,
        *,
        tenant_id: str,
        client_id: str,
        session: requests.Session,
        policy: HttpPolicy,
        authority_host: str = "https://login.microsoftonline.com",
        client_secret: str | None = None,
        certificate_path: str | None = None,
        certificate_passphrase: str | None = None,
    ) -> None:
        if bool(client_secret) == bool(certificate_path):
            raise ValueError("give exactly one credential: certificate_path or client_secret")
        self._tenant_id = tenant_id
        self._client_id = client_id
        self._session = session
        self._policy = policy
        self._authority = f"{authority_host.rstrip('/')}/{tenant_id}"
        self._credential: str | dict[str, str]
        if certificate_path:
            self._credential = {"private_key_pfx_path": certificate_path}
            if certificate_passphrase:
                self._credential["passphrase"] = certificate_passphrase
        else:
            self._credential = client_secret or ""
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[str, datetime]] = {}  # scope -> (token, when to ask MSAL again)
        self._app: msal.ConfidentialClientApplication | None = None
        self._resource_locks: dict[str, threading.Lock] = {}

    @property
    def tenant_id(self) -> str:
        """The tenant these tokens are for."""
        return self._tenant_id

    def token(self, resource: str) -> str:
        """A bearer token for ``{resource}/.default`` (served from MSAL's cache when valid).

        ``resource`` is the API's resource identifier (``https://graph.microsoft.com``), never the URL
        the API is reached at: a proxy, gateway or emulator in front of it does not change the audience.
        """
        scope = f"{resource.rstrip('/')}/.default"
        with self._lock:
            kept = self._tokens.get(scope)
        if kept is not None and self._policy.clock.now() < kept[1]:
            return kept[0]  # MSAL's cache lookup costs about a millisecond per request: not on every call
        return self._policy.call(lambda: self._acquire(resource), safe=True)

    def authorized(self, resource: str, call: Callable[[str], T]) -> T:
        """Run ``call`` with a bearer token; if the service rejects it (401), retry once with a fresh one.

        A token MSAL still considers valid can be refused early (continuous access evaluation, revoked
        consent, clock skew). A 401 is decided before the request is processed, so sending the same
        request again is safe even for writes.
        """
        token = self.token(resource)
        try:
            return call(token)
        except AuthenticationError:
            self.forget_tokens()
            return call(self.token(resource))

    def forget_tokens(self) -> None:
        """Drop every cached token of this app, so the next ``token`` call asks the identity platform."""
        with self._lock:
            self._tokens.clear()
            if self._app is not None:
                self._app.remove_tokens_for_client()

    def app_token(self, resource: str) -> AppToken:
        """What the token for ``resource`` says about our app (roles, ids, expiry) — for the doctor."""
        token = self.token(resource)
        try:
            claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise AuthenticationError(
                "the identity platform returned a token that is not a JWT", service=SERVICE
            ) from None
        expires = claims.get("exp")
        wids = claims.get("wids")
        return AppToken(
            tenant_id=str(claims.get("tid", "")),
            audience=str(claims.get("aud", "")),
            roles=frozenset(str(r) for r in claims.get("roles", ())),
            service_principal_id=claims.get("oid"),
            expires_on=datetime.fromtimestamp(expires, UTC) if expires else None,
            role_template_ids=frozenset(str(w) for w in wids) if isinstance(wids, list) else None,
        )

    def _resource_lock(self, scope: str) -> threading.Lock:
        with self._lock:
            return self._resource_locks.setdefault(scope, threading.Lock())

    def _acquire(self, resource: str) -> str:
        scope = f"{resource.rstrip('/')}/.default"
        app = self._application()
        try:
            # One caller at a time per resource: MSAL's cache answers the others once the first has the
            # token, so workers starting together make one token request, not one each.
            with self._resource_lock(scope):
                result = app.acquire_token_for_client(scopes=[scope])
        except requests.RequestException as exc:
            raise error_for_exception(exc, service=SERVICE) from None
        except MsalServiceError:  # MSAL raises it for 5xx token responses
            raise TransientError(
                "the identity platform is unavailable (server error)", service=SERVICE
            ) from None
        except ValueError as exc:  # MSAL: unreadable certificate, unusable authority metadata
            raise AuthenticationError(
                f"cannot use the app credential or authority ({type(exc).__name__})",
                service=SERVICE,
            ) from None
        if result and "access_token" in result:
            token = str(result["access_token"])
            lifetime = float(result.get("expires_in") or 0)
            if lifetime > 2 * _TOKEN_MARGIN:  # kept until well before it expires (MSAL refreshes it then)
                with self._lock:
                    self._tokens[scope] = (token, self._policy.clock.now()
                                           + timedelta(seconds=lifetime - _TOKEN_MARGIN))
            return token
        raise _token_error(result or {}, scope)

    def _application(self) -> msal.ConfidentialClientApplication:
        with self._lock:
            if self._app is None:
                try:
                    self._app = msal.ConfidentialClientApplication(
                        self._client_id,
                        client_credential=self._credential,
                        authority=self._authority,
                        http_client=self._session,
                        instance_discovery=_is_microsoft_authority(self._authority),
                        token_cache=msal.TokenCache(),
                    )
                except requests.RequestException as exc:
                    raise error_for_exception(exc, service=SERVICE) from None
                except ValueError as exc:
                    raise AuthenticationError(
                        f"cannot set up MSAL for authority {self._authority}: "
                        f"{_first_line(str(exc))}",
                        service=SERVICE,
                    ) from None
            return self._app


def _is_microsoft_authority(authority: str) -> bool:
    host = urlsplit(authority).hostname or ""
    return any(f".{host}".endswith(suffix) for suffix in _MICROSOFT_AUTHORITY_SUFFIXES)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def _token_error(result: dict[str, Any], scope: str) -> ConnectorError:
    error = str(result.get("error", "unknown_error"))
    description = str(result.get("error_description", ""))
    match = _AADSTS.search(description)
    code = match.group(0) if match else error
    # The first line of an AADSTS description names the problem ("Invalid client secret provided")
    # without echoing credentials; trace and correlation ids follow on later lines.
    summary = _first_line(description) or error
    message = f"token request for {scope} failed: {error}: {summary}"
    if error in _TRANSIENT_ERRORS:
        return TransientError(message, service=SERVICE, code=code)
    if error == "invalid_scope":
        return PermanentError(message, service=SERVICE, code=code)
    return AuthenticationError(message, service=SERVICE, code=code)
