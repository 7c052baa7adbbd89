"""Microsoft Graph: the tenant's directory (users, roles, password reset, sessions, inbox rules)."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import quote, urlencode

import requests
from mailunblock.connectors.errors import (
    AuthenticationError,
    ConnectorError,
    NotFoundError,
    PermanentError,
    PermissionDeniedError,
    ThrottledError,
    TransientError,
)
from mailunblock.connectors.http import (
    HttpPolicy,
    error_for_status,
    json_body,
    parse_instant,
    retry_after_seconds,
    send,
    throttled_within,
)
from mailunblock.connectors.identity import TokenProvider
from mailunblock.connectors.models import AccountFacts, DirectoryRole, DirectoryUser, InboxRule
from requests.structures import CaseInsensitiveDict

log = logging.getLogger(__name__)

SERVICE = "graph"
GRAPH_RESOURCE = "https://graph.microsoft.com"  # the resource tokens are asked for
USER_FIELDS = (
    "id,userPrincipalName,mail,proxyAddresses,accountEnabled,userType,"
    "onPremisesSyncEnabled,lastPasswordChangeDateTime,displayName,preferredLanguage,"
    "signInSessionsValidFromDateTime"
)
ROLE_FIELDS = "id,displayName,roleTemplateId"

VERSION = "/v1.0"
BATCH = "/v1.0/$batch"
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
# How a service without JSON batching answers POST /$batch (Graph itself: "Resource not found for the
# segment" is a 400). The batch as a whole was refused, so none of its requests ran: single calls are safe.
_BATCH_UNSUPPORTED = frozenset({400, 404, 405, 501})
_QUERY_SAFE = "$,'():/@"


@dataclass(frozen=True)
class _BatchRequest:
    """One request of a JSON batch ("Combine multiple HTTP requests using JSON batching")."""

    method: str
    path: str  # with the version prefix, as the single call would use it
    params: Mapping[str, str] | None = None
    headers: Mapping[str, str] | None = None
    depends_on: str | None = None  # id of the request that must succeed first (else Graph answers 424)

    def wire(self, request_id: str) -> dict[str, Any]:
        """The request as the batch body carries it: its URL relative to the version."""
        url = self.path.removeprefix(VERSION)
        if self.params:
            url += "?" + urlencode(dict(self.params), safe=_QUERY_SAFE, quote_via=quote)
        item: dict[str, Any] = {"id": request_id, "method": self.method, "url": url}
        if self.headers:
            item["headers"] = dict(self.headers)
        if self.depends_on:
            item["dependsOn"] = [self.depends_on]
        return item


@dataclass(frozen=True)
class _BatchAnswer:
    """One sub-response: its own status, headers and body."""

    status: int
    headers: CaseInsensitiveDict[str]
    body: Any

    @property
    def ok(self) -> bool:
        """A 2xx status."""
        return 200 <= self.status < 300

    @property
    def complete(self) -> bool:
        """A successful answer holding every row (no further page to follow)."""
        return self.ok and isinstance(self.body, dict) and not self.body.get("@odata.nextLink")

    def rows(self) -> list[dict[str, Any]]:
        """The ``value`` rows of a collection answer."""
        value = self.body.get("value", []) if isinstance(self.body, dict) else []
        return [row for row in value if isinstance(row, dict)]


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
        self._batching = True  # until this Graph answers that it serves no $batch

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
        return _carrying(address, self._pages(USERS, _address_query(address)))

    def account_facts(
        self, address: str, *, account_id: str | None = None, mailbox: bool = True
    ) -> AccountFacts:
        """The users carrying ``address`` and, in the same round trip, the roles (and mailbox) of the one it names.

        One JSON batch asks for the users, and for the roles and inbox rules of ``account_id`` (the account an
        approved plan names) or else of the user whose UPN is ``address``. Those answers are kept only when
        exactly one user carries the address and it is that object (same id, or that UPN); otherwise — an
        alias, several accounts, no batching — they are left unread and ``roles_of`` / ``mailbox_of`` say None.
        """
        subject = _segment(account_id or address)
        requests_ = [
            _BatchRequest("GET", USERS, _address_query(address)),
            _BatchRequest("GET", USER_ROLES.format(user=subject), ROLE_QUERY, ADVANCED_QUERY_HEADERS),
        ]
        if mailbox:
            requests_.append(_BatchRequest("GET", INBOX_RULES.format(user=subject)))
        answers = self._batch(requests_, safe=True)
        if answers is None:
            return AccountFacts(users=tuple(self.find_users_by_address(address)))
        users = tuple(_carrying(address, self._rows_of(answers[0])))
        named = users[0] if len(users) == 1 else None
        if named is None or not (
            named.id == account_id if account_id else named.user_principal_name.lower() == address.lower()
        ):
            return AccountFacts(users=users)
        return AccountFacts(
            users=users,
            subject_id=named.id,
            roles=_batched_roles(answers[1]),
            mailbox=_batched_mailbox(answers[2]) if mailbox else None,
        )

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

    def revoke_sessions_then_inbox_rules(self, user_id: str) -> list[InboxRule] | None:
        """Revoke the sessions, then read the inbox rules in the same round trip; None: rules not read.

        The read depends on the revocation (``dependsOn``), so it runs after it. The batch holds a side
        effect: it is never retried. A revocation that failed raises as ``revoke_sessions`` would; a read
        that failed (or has further pages) is left to ``inbox_rules`` — a throttled one has closed the gate.
        """
        segment = _segment(user_id)
        answers = self._batch(
            [_BatchRequest("POST", REVOKE_SESSIONS.format(user=segment)),
             _BatchRequest("GET", INBOX_RULES.format(user=segment), depends_on="1")],
            safe=False,
        )
        if answers is None:
            self.revoke_sessions(user_id)
            return None
        revoked, rules = answers
        if not revoked.ok:
            raise _answer_error(revoked)
        return [_rule(raw) for raw in rules.rows()] if rules.complete else None

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
        return self._follow(self._get(path, params, headers), headers)

    def _rows_of(self, answer: _BatchAnswer) -> Iterator[dict[str, Any]]:
        """The rows of a batched collection read, later pages read singly; its error when it failed."""
        if not answer.ok:
            raise _answer_error(answer)
        return self._follow(answer.body if isinstance(answer.body, dict) else {}, None)

    def _follow(self, page: Any, headers: dict[str, str] | None) -> Iterator[dict[str, Any]]:
        while True:
            yield from page.get("value", [])
            next_link = page.get("@odata.nextLink")
            if not next_link:
                return
            call = partial(self._request, "GET", next_link, extra_headers=headers)
            page = self._policy.call(call, safe=True)

    def _batch(self, requests_: Sequence[_BatchRequest], *, safe: bool) -> list[_BatchAnswer] | None:
        """Send ``requests_`` as one JSON batch; their answers in order, or None when Graph serves no $batch.

        A throttling sub-response closes Graph's gate exactly as a throttled single call does. ``safe``
        (reads only): it raises that ThrottledError (or a sub-response's 5xx its TransientError), and the
        whole batch is retried like any read. Otherwise (a side effect inside) the batch is sent once and
        the caller reads each answer.
        """
        if not self._batching:
            return None
        url = self._url(BATCH)
        body = {"requests": [r.wire(str(i)) for i, r in enumerate(requests_, 1)]}

        def attempt(token: str) -> list[_BatchAnswer] | None:
            headers = {"Authorization": f"Bearer {token}"}
            response = send(self._session, "POST", url, service=SERVICE, headers=headers, json=body)
            if response.status_code in _BATCH_UNSUPPORTED:
                log.warning("Graph at %s serves no JSON batching (HTTP %d): single calls from now on",
                         self._base, response.status_code)
                self._batching = False
                return None
            if not response.ok:
                raise _graph_error(response)
            answers = self._answers(url, json_body(response), len(requests_))
            throttled = [a.error for a in answers if isinstance(a, _Throttled)]
            if safe and throttled:
                raise max(throttled, key=lambda e: e.retry_after)
            plain = [a.answer if isinstance(a, _Throttled) else a for a in answers]
            failing = next((a for a in plain if a.status >= 500), None)
            if safe and failing is not None:
                raise _answer_error(failing)  # transient: the reads are retried together, as one read would be
            return plain

        call = partial(self._tokens.authorized, self._resource, attempt)
        return self._policy.call(call, safe=True) if safe else call()

    def _answers(self, url: str, document: Any, count: int) -> list[_BatchAnswer | _Throttled]:
        """The sub-responses in request order (Graph may answer in any order; ids correlate them)."""
        by_id: dict[str, _BatchAnswer | _Throttled] = {}
        rows = document.get("responses") if isinstance(document, dict) else None
        for row in rows if isinstance(rows, list) else ():
            if not isinstance(row, dict):
                continue
            headers = CaseInsensitiveDict({str(k): str(v) for k, v in (row.get("headers") or {}).items()})
            answer = _BatchAnswer(int(row.get("status") or 0), headers, row.get("body"))
            error = throttled_within(self._session, url, answer.status, headers)
            by_id[str(row.get("id"))] = answer if error is None else _Throttled(answer, error)
        missing = [str(i) for i in range(1, count + 1) if str(i) not in by_id]
        if missing:
            raise TransientError(f"the batch answer lacks requests {', '.join(missing)}", service=SERVICE)
        return [by_id[str(i)] for i in range(1, count + 1)]

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


@dataclass(frozen=True)
class _Throttled:
    """A sub-response that asked us to wait (the gate is closed), with the error the transport would raise."""

    answer: _BatchAnswer
    error: ThrottledError


def _address_query(address: str) -> dict[str, str]:
    quoted = address.replace("'", "''")
    return {
        "$filter": (
            f"mail eq '{quoted}' or userPrincipalName eq '{quoted}' "
            f"or proxyAddresses/any(p:p eq 'smtp:{quoted}')"
        ),
        "$select": USER_FIELDS,
    }


def _carrying(address: str, rows: Iterator[dict[str, Any]]) -> list[DirectoryUser]:
    wanted = address.lower()
    users = [_user(raw) for raw in rows]
    return [u for u in users if wanted == u.user_principal_name.lower() or wanted in u.smtp_addresses]


def _batched_roles(answer: _BatchAnswer) -> tuple[DirectoryRole, ...] | None:
    """Roles from a batched read; None (read them singly, when they matter) unless complete and named."""
    if not answer.complete:
        return None
    try:
        return tuple(_roles(iter(answer.rows())))
    except PermissionDeniedError:
        return None  # raised by the single read, at the point where triage needs the roles


def _batched_mailbox(answer: _BatchAnswer) -> bool | None:
    """True: the inbox rules were read; False: Graph says there is no mailbox; None: ask again singly."""
    if answer.ok:
        return True
    return False if isinstance(_answer_error(answer), NotFoundError) else None


def _answer_error(answer: _BatchAnswer | _Throttled) -> ConnectorError:
    if isinstance(answer, _Throttled):
        return answer.error
    return _error(answer.status, answer.headers, answer.body, "")


def _graph_error(response: requests.Response) -> ConnectorError:
    return _error(response.status_code, response.headers, json_body(response), response.reason)


def _error(status: int, headers: Mapping[str, str], body: Any, reason: str | None) -> ConnectorError:
    error = body.get("error", {}) if isinstance(body, dict) else {}
    if not isinstance(error, dict):
        error = {}
    code = str(error.get("code") or f"HTTP{status}")
    message = str(error.get("message") or reason or "request failed")
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
        status, message, service=SERVICE, code=code, retry_after=retry_after_seconds(headers)
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
