"""Microsoft Graph: the tenant's directory (users, roles, password reset, sessions, inbox rules)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from functools import partial
from typing import Any
from urllib.parse import quote

import requests
from mailunblock.connectors.errors import (
    AuthenticationError,
    ConnectorError,
    NotFoundError,
    PermanentError,
    PermissionDeniedError,
)
from mailunblock.connectors.http import (
    HttpPolicy,
    error_for_status,
    json_body,
    parse_instant,
    retry_after_seconds,
    send,
)
from mailunblock.connectors.identity import TokenProvider
from mailunblock.connectors.models import DirectoryRole, DirectoryUser, InboxRule

log = logging.getLogger(__name__)

SERVICE = "graph"
GRAPH_RESOURCE = "https://graph.microsoft.com"  # the resource tokens are asked for
USER_FIELDS = (
    "id,userPrincipalName,mail,proxyAddresses,accountEnabled,userType,"
    "onPremisesSyncEnabled,lastPasswordChangeDateTime,displayName,preferredLanguage,"
    "signInSessionsValidFromDateTime"
)
ROLE_FIELDS = "id,displayName,roleTemplateId"

USER = "/v1.0/users/{user}"
USERS = "/v1.0/users"
USER_ROLES = "/v1.0/users/{user}/transitiveMemberOf/microsoft.graph.directoryRole"
REVOKE_SESSIONS = "/v1.0/users/{user}/revokeSignInSessions"
INBOX_RULES = "/v1.0/users/{user}/mailFolders/inbox/messageRules"
SERVICE_PRINCIPAL_ROLES = (
    "/v1.0/servicePrincipals/{sp}/transitiveMemberOf/microsoft.graph.directoryRole"
)
# An OData cast on a transitive membership list is an advanced query: Graph documents it as needing the
# ConsistencyLevel header and $count=true ("Advanced query capabilities on Microsoft Entra ID objects").
ADVANCED_QUERY_HEADERS = {"ConsistencyLevel": "eventual"}
ROLE_QUERY = {"$select": ROLE_FIELDS, "$count": "true"}

_NOT_FOUND_CODES = frozenset(
    {"Request_ResourceNotFound", "ResourceNotFound", "ErrorItemNotFound", "MailboxNotEnabledForRESTAPI"}
)
_PERMISSION_CODES = frozenset(
    {"Authorization_RequestDenied", "ErrorAccessDenied", "AccessDenied", "Forbidden"}
)
_AUTH_CODES = frozenset({"InvalidAuthenticationToken", "CompactToken_ParsingFailed"})


class GraphClient:
    """One tenant's directory through Microsoft Graph (satisfies ``workflows.ports.Directory``)."""

    def __init__(
        self,
        base_url: str,
        tokens: TokenProvider,
        session: requests.Session,
        policy: HttpPolicy,
        resource: str = GRAPH_RESOURCE,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._resource = resource.rstrip("/")
        self._tokens = tokens
        self._session = session
        self._policy = policy

    def get_user(self, user_id_or_upn: str) -> DirectoryUser:
        """Look a user up by object id, UPN or mail address; NotFoundError if absent."""
        try:
            raw = self._get(USER.format(user=_segment(user_id_or_upn)), {"$select": USER_FIELDS})
        except NotFoundError:
            if "@" not in user_id_or_upn:
                raise
            matches = self.find_users_by_address(user_id_or_upn)
            if len(matches) == 1:
                return matches[0]
            if matches:
                raise PermanentError(
                    f"{len(matches)} directory users carry the address {user_id_or_upn}",
                    service=SERVICE,
                ) from None
            raise
        return _user(raw)

    def find_users_by_address(self, address: str) -> list[DirectoryUser]:
        """Every user whose UPN, mail or proxy address equals ``address`` (case-insensitive)."""
        quoted = address.replace("'", "''")
        query = {
            "$filter": (
                f"mail eq '{quoted}' or userPrincipalName eq '{quoted}' "
                f"or proxyAddresses/any(p:p eq 'smtp:{quoted}')"
            ),
            "$select": USER_FIELDS,
        }
        wanted = address.lower()
        users = [_user(raw) for raw in self._pages(USERS, query)]
        return [
            u for u in users
            if wanted == u.user_principal_name.lower() or wanted in u.smtp_addresses
        ]

    def directory_roles(self, user_id: str) -> list[DirectoryRole]:
        """Directory roles the user holds, directly or through groups."""
        path = USER_ROLES.format(user=_segment(user_id))
        return _roles(self._pages(path, ROLE_QUERY, ADVANCED_QUERY_HEADERS))

    def service_principal_roles(self, sp_object_id: str) -> list[DirectoryRole]:
        """Directory roles our own service principal holds (for the doctor)."""
        path = SERVICE_PRINCIPAL_ROLES.format(sp=_segment(sp_object_id))
        return _roles(self._pages(path, ROLE_QUERY, ADVANCED_QUERY_HEADERS))

    def reset_password(self, user_id: str, password: str) -> None:
        """Set a new password and force a change at next sign-in. Not idempotent: never retried."""
        body = {"passwordProfile": {"password": password, "forceChangePasswordNextSignIn": True}}
        self._request("PATCH", self._url(USER.format(user=_segment(user_id))), json=body)

    def revoke_sessions(self, user_id: str) -> None:
        """Invalidate refresh tokens and session cookies of the user."""
        self._request("POST", self._url(REVOKE_SESSIONS.format(user=_segment(user_id))))

    def inbox_rules(self, user_id: str) -> list[InboxRule]:
        """The user's inbox rules."""
        path = INBOX_RULES.format(user=_segment(user_id))
        return [_rule(raw) for raw in self._pages(path, None)]

    @property
    def resource(self) -> str:
        """The resource identifier this client's tokens are for."""
        return self._resource

    def _url(self, path: str) -> str:
        return f"{self._base}{path}"

    def _get(
        self, path: str, params: dict[str, str] | None, headers: dict[str, str] | None = None
    ) -> Any:
        url = self._url(path)
        call = partial(self._request, "GET", url, params=params, extra_headers=headers)
        return self._policy.call(call, safe=True)

    def _pages(
        self, path: str, params: dict[str, str] | None, headers: dict[str, str] | None = None
    ) -> Iterator[dict[str, Any]]:
        page = self._get(path, params, headers)
        while True:
            yield from page.get("value", [])
            next_link = page.get("@odata.nextLink")
            if not next_link:
                return
            call = partial(self._request, "GET", next_link, extra_headers=headers)
            page = self._policy.call(call, safe=True)

    def _request(
        self, method: str, url: str, *, extra_headers: dict[str, str] | None = None, **kwargs: Any
    ) -> Any:
        def attempt(token: str) -> Any:
            headers = {**(extra_headers or {}), "Authorization": f"Bearer {token}"}
            response = send(self._session, method, url, service=SERVICE, headers=headers, **kwargs)
            if response.ok:
                return json_body(response) or {}
            raise _graph_error(response)

        return self._tokens.authorized(self._resource, attempt)


def _segment(value: str) -> str:
    # A guest UPN contains '#'; quote everything but '@' so the id stays one path segment.
    return quote(value, safe="@")


def _graph_error(response: requests.Response) -> ConnectorError:
    body = json_body(response)
    error = body.get("error", {}) if isinstance(body, dict) else {}
    if not isinstance(error, dict):
        error = {}
    code = str(error.get("code") or f"HTTP{response.status_code}")
    message = str(error.get("message") or response.reason or "request failed")
    if "password complexity" in message.lower():
        return PermanentError(
            "the new password does not meet the tenant's password policy "
            "(raise policy.password_length or check the tenant's password rules)",
            service=SERVICE,
            code=code,
        )
    if code in _PERMISSION_CODES:
        return PermissionDeniedError(message, service=SERVICE, code=code)
    if code in _NOT_FOUND_CODES:
        return NotFoundError(message, service=SERVICE, code=code)
    if code in _AUTH_CODES:
        return AuthenticationError(message, service=SERVICE, code=code)
    return error_for_status(
        response.status_code,
        message,
        service=SERVICE,
        code=code,
        retry_after=retry_after_seconds(response.headers),
    )


def _user(raw: dict[str, Any]) -> DirectoryUser:
    return DirectoryUser(
        id=raw["id"],
        user_principal_name=raw.get("userPrincipalName") or "",
        mail=raw.get("mail"),
        proxy_addresses=tuple(raw.get("proxyAddresses") or ()),
        account_enabled=bool(raw.get("accountEnabled", True)),
        user_type=raw.get("userType") or "Member",
        on_premises_sync_enabled=bool(raw.get("onPremisesSyncEnabled")),
        last_password_change=parse_instant(raw.get("lastPasswordChangeDateTime")),
        display_name=raw.get("displayName") or "",
        preferred_language=raw.get("preferredLanguage"),
        sign_in_sessions_valid_from=parse_instant(raw.get("signInSessionsValidFromDateTime")),
    )


def _roles(rows: Iterator[dict[str, Any]]) -> list[DirectoryRole]:
    roles = [_role(raw) for raw in rows]
    if any(not (r.display_name or r.role_template_id) for r in roles):
        # Without a permission to read directory roles Graph still lists them, but with only
        # @odata.type and id ("limited information" for inaccessible member objects): a nameless
        # role must not pass for "no privileged role".
        raise PermissionDeniedError(
            "directory roles were listed without their names: the app needs "
            "RoleManagement.Read.Directory or Directory.Read.All",
            service=SERVICE,
        )
    return roles


def _role(raw: dict[str, Any]) -> DirectoryRole:
    return DirectoryRole(
        id=raw["id"],
        display_name=raw.get("displayName") or "",
        role_template_id=raw.get("roleTemplateId") or "",
    )


def _recipients(actions: dict[str, Any], key: str) -> tuple[str, ...]:
    return tuple(
        r["emailAddress"]["address"]
        for r in actions.get(key) or ()
        if isinstance(r, dict) and r.get("emailAddress", {}).get("address")
    )


def _rule(raw: dict[str, Any]) -> InboxRule:
    actions = raw.get("actions") or {}
    return InboxRule(
        id=raw["id"],
        display_name=raw.get("displayName") or "",
        enabled=bool(raw.get("isEnabled", True)),
        forward_to=_recipients(actions, "forwardTo"),
        forward_as_attachment_to=_recipients(actions, "forwardAsAttachmentTo"),
        redirect_to=_recipients(actions, "redirectTo"),
        delete=bool(actions.get("delete")),
        permanent_delete=bool(actions.get("permanentDelete")),
        move_to_folder=actions.get("moveToFolder"),
    )
