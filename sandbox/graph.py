"""Microsoft Graph v1.0 EMULATOR: the users endpoints mailunblock calls, with Graph's checks and errors.

EMULATOR CODE — not Microsoft. Built from the Graph v1.0 reference ("Get user", "List users",
"Update user", "user: revokeSignInSessions", "List transitiveMemberOf", "List messageRules", "Microsoft
Graph error responses and resource types", "Microsoft Graph throttling guidance", "Combine multiple HTTP
requests using JSON batching"). App-only access is
enforced twice, as Entra does: the application permission must be in the token's ``roles`` claim, and
changing a password also needs a directory role held by the service principal. Passwords are checked
against Entra's complexity rules and never stored or logged.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from flask import Flask, Response, g, request
from flask.testing import FlaskClient
from mailunblock.sandbox.core import BATCHED_ENVIRON, SandboxContext, instrument
from mailunblock.sandbox.identity import TokenRejected, verify_access_token
from mailunblock.sandbox.scenario import (
    DIRECTORY_ROLE_TEMPLATES,
    LiveUser,
    MicrosoftState,
    TenantState,
)

READ_USERS = frozenset(
    {"User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}
)
RESET_PASSWORD = frozenset(
    {"User-PasswordProfile.ReadWrite.All", "User.ReadWrite.All", "Directory.ReadWrite.All"}
)
ENABLE_ACCOUNT = frozenset(
    {"User.EnableDisableAccount.All", "User.ReadWrite.All", "Directory.ReadWrite.All"}
)
REVOKE_SESSIONS = frozenset(
    {"User.RevokeSessions.All", "User.ReadWrite.All", "Directory.ReadWrite.All"}
)
READ_ROLES = frozenset(
    {"Directory.Read.All", "Directory.ReadWrite.All", "RoleManagement.Read.Directory",
     "RoleManagement.Read.All"}
)
READ_SERVICE_PRINCIPALS = READ_ROLES | {"Application.Read.All", "Application.ReadWrite.All"}
# "List a user's memberships (direct and transitive)", application permissions.
READ_MEMBERSHIPS = READ_USERS | {"GroupMember.Read.All", "Group.Read.All"}
READ_MAIL_RULES = frozenset({"MailboxSettings.Read", "MailboxSettings.ReadWrite"})
# Directory roles allowed to reset the password of a user without admin roles, and of an admin.
RESET_NON_ADMIN_ROLES = frozenset(
    {"User Administrator", "Helpdesk Administrator", "Password Administrator",
     "Authentication Administrator", "Privileged Authentication Administrator",
     "Global Administrator"}
)
RESET_ADMIN_ROLES = frozenset({"Privileged Authentication Administrator", "Global Administrator"})

INSUFFICIENT_PRIVILEGES = "Insufficient privileges to complete the operation."
COMPLEXITY_MESSAGE = (
    "The specified password does not comply with password complexity requirements. "
    "Please provide a different password."
)
SYNCED_MESSAGE = (
    "Unable to update the specified properties for on-premises mastered Directory Sync objects or "
    "objects currently undergoing migration."
)
DEFAULT_USER_PROPERTIES = (
    "businessPhones", "displayName", "givenName", "jobTitle", "mail", "mobilePhone",
    "officeLocation", "preferredLanguage", "surname", "userPrincipalName", "id",
)
DEFAULT_PAGE = 100
MAX_PAGE = 999
MAX_BATCH = 20  # "JSON batch requests are currently limited to 20 individual requests"
BATCH_METHODS = frozenset({"GET", "POST", "PATCH", "PUT", "DELETE"})
# Headers of a sub-response worth passing on (the batch's own carry the rest).
BATCH_ANSWER_HEADERS = ("Content-Type", "Retry-After", "Location", "OData-Version")

_EQ = re.compile(r"^(mail|userPrincipalName|id)\s+eq\s+'((?:[^']|'')*)'$", re.IGNORECASE)
_ANY = re.compile(
    r"^proxyAddresses/any\((\w+)\s*:\s*\1\s+eq\s+'((?:[^']|'')*)'\)$", re.IGNORECASE
)
_OR = re.compile(r"\s+or\s+", re.IGNORECASE)


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def graph_error(ctx: SandboxContext, status: int, code: str, message: str) -> Response:
    """A response in Graph's documented error shape, with request-id headers."""
    request_id = str(uuid.uuid4())
    client_request_id = request.headers.get("client-request-id", request_id)
    body = {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": ctx.clock.now().strftime("%Y-%m-%dT%H:%M:%S"),
                "request-id": request_id,
                "client-request-id": client_request_id,
            },
        }
    }
    response = Response(json.dumps(body), status=status, mimetype="application/json")
    response.headers["request-id"] = request_id
    response.headers["client-request-id"] = client_request_id
    return response


def _fault_body(status: int) -> dict[str, Any]:
    code, message = {
        429: ("TooManyRequests", "Too many requests. Please retry after the time in Retry-After."),
        503: ("serviceNotAvailable", "Service unavailable. Please try again later."),
        504: ("UnknownError", "Gateway timeout."),
    }.get(status, ("generalException", "An unexpected error occurred."))
    return {"error": {"code": code, "message": message,
                      "innerError": {"request-id": str(uuid.uuid4()), "date": ""}}}


def _json(ctx: SandboxContext, body: Mapping[str, Any], status: int = 200) -> Response:
    response = Response(json.dumps(body), status=status, mimetype="application/json")
    response.headers["request-id"] = str(uuid.uuid4())
    response.headers["client-request-id"] = request.headers.get(
        "client-request-id", response.headers["request-id"]
    )
    response.headers["OData-Version"] = "4.0"
    return response


def _user_json(state: MicrosoftState, user: LiveUser) -> dict[str, Any]:
    spec = user.spec
    first, _, last = spec.display_name.partition(" ")
    return {
        "id": spec.id,
        "businessPhones": [],
        "displayName": spec.display_name,
        "givenName": first if spec.user_type == "Member" else None,
        "surname": last or None if spec.user_type == "Member" else None,
        "jobTitle": None,
        "mail": spec.mail,
        "mobilePhone": None,
        "officeLocation": None,
        "preferredLanguage": spec.preferred_language,
        "userPrincipalName": spec.user_principal_name,
        "proxyAddresses": list(spec.proxy_addresses),
        "accountEnabled": user.account_enabled,
        "userType": spec.user_type,
        "onPremisesSyncEnabled": spec.on_premises_sync_enabled,
        "lastPasswordChangeDateTime": _stamp(user.last_password_change),
        "signInSessionsValidFromDateTime": _stamp(user.sessions_valid_from),
        "mailNickname": spec.user_principal_name.split("@")[0],
        "usageLocation": None,
        "createdDateTime": None,
    }


def _role_json(tenant: TenantState, name: str, *, readable: bool = True) -> dict[str, Any]:
    template = DIRECTORY_ROLE_TEMPLATES[name]
    role_id = str(uuid.uuid5(uuid.UUID(template), tenant.spec.tenant_id))
    if not readable:
        # "Limited information returned for inaccessible member objects": without a permission to
        # read directory roles, only the type and id are returned, every other property is null.
        return {"@odata.type": "#microsoft.graph.directoryRole", "id": role_id,
                "deletedDateTime": None, "description": None, "displayName": None,
                "roleTemplateId": None}
    return {
        "@odata.type": "#microsoft.graph.directoryRole",
        "id": role_id,
        "deletedDateTime": None,
        "description": f"{name} (sandbox role)",
        "displayName": name,
        "roleTemplateId": template,
    }


def _password_complex(password: str) -> bool:
    """Entra ID rule: 8-256 ASCII characters from at least three of the four classes."""
    if not 8 <= len(password) <= 256 or not password.isascii():
        return False
    classes = (
        any(c.islower() for c in password),
        any(c.isupper() for c in password),
        any(c.isdigit() for c in password),
        any(not c.isalnum() for c in password),
    )
    return sum(classes) >= 3


def _page_size() -> int:
    try:
        top = int(request.args.get("$top", DEFAULT_PAGE))
    except ValueError:
        top = DEFAULT_PAGE
    return max(1, min(top, MAX_PAGE))


def _advanced_query_missing(ctx: SandboxContext) -> Response | None:
    """400 unless the advanced query parameters (ConsistencyLevel: eventual, $count=true) are sent.

    "Advanced query capabilities on Microsoft Entra ID objects" lists "OData cast with transitive
    members list" among the queries supported only with them.
    """
    if (
        request.headers.get("ConsistencyLevel", "").lower() == "eventual"
        and request.args.get("$count", "").lower() == "true"
    ):
        return None
    return graph_error(
        ctx, 400, "Request_UnsupportedQuery",
        "OData cast on a membership list is only supported with advanced query parameters: "
        "the 'ConsistencyLevel: eventual' header and $count=true.",
    )


def _paged(
    ctx: SandboxContext, state: MicrosoftState, items: Sequence[Any], context: str
) -> Response:
    size = _page_size()
    try:
        start = int(base64.urlsafe_b64decode(request.args.get("$skiptoken", "") + "==") or 0)
    except ValueError:
        start = 0
    body: dict[str, Any] = {
        "@odata.context": f"{state.urls.graph}/v1.0/$metadata#{context}",
        "value": list(items[start : start + size]),
    }
    if start + size < len(items):
        query = {k: v for k, v in request.args.items() if k != "$skiptoken"}
        query["$skiptoken"] = base64.urlsafe_b64encode(str(start + size).encode()).decode()
        body["@odata.nextLink"] = f"{state.urls.graph}{request.path}?{urlencode(query)}"
    if request.args.get("$count", "").lower() == "true" and request.headers.get(
        "ConsistencyLevel", ""
    ).lower() == "eventual":
        body = {"@odata.context": body.pop("@odata.context"), "@odata.count": len(items), **body}
    return _json(ctx, body)


def _select(ctx: SandboxContext, full: Mapping[str, Any]) -> Mapping[str, Any] | Response:
    raw = request.args.get("$select")
    if not raw:
        return {k: full[k] for k in DEFAULT_USER_PROPERTIES}
    by_lower = {k.lower(): k for k in full}
    chosen: dict[str, Any] = {}
    for name in (n.strip() for n in raw.split(",") if n.strip()):
        key = by_lower.get(name.lower())
        if key is None:
            return graph_error(
                ctx, 400, "Request_BadRequest",
                f"Could not find a property named '{name}' on type 'microsoft.graph.user'.",
            )
        chosen[key] = full[key]
    return chosen


def _parse_filter(expression: str) -> list[tuple[str, str]] | None:
    clauses: list[tuple[str, str]] = []
    for clause in _OR.split(expression.strip()):
        clause = clause.strip()
        if match := _EQ.match(clause):
            clauses.append((match.group(1).lower(), match.group(2).replace("''", "'")))
        elif match := _ANY.match(clause):
            clauses.append(("proxyaddresses", match.group(2).replace("''", "'")))
        else:
            return None
    return clauses


def _matches(user: LiveUser, clauses: Iterable[tuple[str, str]]) -> bool:
    spec = user.spec
    for prop, value in clauses:
        value = value.lower()
        if prop == "proxyaddresses":
            if value in (p.lower() for p in spec.proxy_addresses):
                return True
        elif (
            (prop == "mail" and (spec.mail or "").lower() == value)
            or (prop == "userprincipalname" and spec.user_principal_name.lower() == value)
            or (prop == "id" and spec.id.lower() == value)
        ):
            return True
    return False


def _batch_problem(items: Any) -> str | None:
    """Why a $batch body is refused as a whole (400), or None: Graph checks the payload before running any."""
    if not isinstance(items, list) or not items:
        return "Invalid batch payload format: 'requests' must be a non-empty array."
    if len(items) > MAX_BATCH:
        return f"Number of batch requests exceeds the maximum of {MAX_BATCH}."
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, dict) or not all(isinstance(item.get(k), str) for k in ("id", "method", "url")):
            return "Invalid batch payload format: every request needs an id, a method and a url."
        if item["id"] in seen:
            return f"Batch request ids must be unique: '{item['id']}' appears twice."
        if item["method"].upper() not in BATCH_METHODS:
            return f"Invalid method '{item['method']}' in batch request '{item['id']}'."
        depends = item.get("dependsOn", [])
        if not isinstance(depends, list) or any(d not in seen for d in depends):
            return f"Batch request '{item['id']}' depends on a request that does not come before it."
        headers = item.get("headers") or {}
        if "body" in item and not any(str(k).lower() == "content-type" for k in headers):
            return f"Batch request '{item['id']}' has a body but no Content-Type header."
        seen.add(item["id"])
    return None


def _batch_answer(
    client: FlaskClient, item: Mapping[str, Any], answered: Mapping[str, Mapping[str, Any]], authorization: str
) -> dict[str, Any]:
    """Run one request of a batch through the emulator itself (its checks, faults and call log)."""
    request_id = item["id"]
    if any(not 200 <= answered[d]["status"] < 300 for d in item.get("dependsOn", [])):
        return {"id": request_id, "status": 424, "headers": {"Content-Type": "application/json"},
                "body": {"error": {"code": "FailedDependency",
                                   "message": "A request this one depends on failed."}}}
    target = urlsplit(item["url"])
    if target.scheme or target.netloc or target.path.lstrip("/").startswith(("v1.0", "beta")):
        return {"id": request_id, "status": 400, "headers": {"Content-Type": "application/json"},
                "body": {"error": {"code": "BadRequest",
                                   "message": "The url of a batch request is relative to the version."}}}
    headers = {str(k): str(v) for k, v in (item.get("headers") or {}).items()}
    headers["Authorization"] = authorization
    answer = client.open(
        "/v1.0/" + target.path.lstrip("/"), method=item["method"].upper(), query_string=target.query,
        headers=headers, data=json.dumps(item["body"]) if "body" in item else None,
        environ_overrides={BATCHED_ENVIRON: True},
    )
    passed = {k: answer.headers[k] for k in BATCH_ANSWER_HEADERS if k in answer.headers}
    return {"id": request_id, "status": answer.status_code, "headers": passed,
            "body": answer.get_json(silent=True)}


def create_graph_app(state: MicrosoftState, ctx: SandboxContext) -> Flask:
    """The Graph emulator as a Flask app."""
    app = Flask("mailunblock.sandbox.graph")
    instrument(app, "graph", ctx, _fault_body)

    @app.before_request
    def _authenticate() -> Response | None:
        try:
            g.tenant, g.claims = verify_access_token(
                request.headers.get("Authorization"), state, "graph", ctx.clock.now()
            )
        except TokenRejected as rejected:
            response = graph_error(ctx, 401, "InvalidAuthenticationToken", str(rejected))
            response.headers["WWW-Authenticate"] = (
                'Bearer realm="", authorization_uri="'
                f'{state.urls.identity}/common/oauth2/authorize", '
                'client_id="00000003-0000-0000-c000-000000000000"'
            )
            return response
        return None

    def granted(permissions: frozenset[str]) -> bool:
        return bool(permissions.intersection(g.claims.get("roles", ())))

    def denied() -> Response:
        return graph_error(ctx, 403, "Authorization_RequestDenied", INSUFFICIENT_PRIVILEGES)

    def not_found(ref: str) -> Response:
        return graph_error(
            ctx, 404, "Request_ResourceNotFound",
            f"Resource '{ref}' does not exist or one of its queried reference-property objects "
            "are not present.",
        )

    def find_user(ref: str) -> LiveUser | None:
        tenant: TenantState = g.tenant
        return tenant.user(ref)

    @app.get("/v1.0/users/<ref>")
    def get_user(ref: str) -> Response:
        if not granted(READ_USERS):
            return denied()
        with state.lock:
            user = find_user(ref)
            if user is None:
                return not_found(ref)
            selected = _select(ctx, _user_json(state, user))
        if isinstance(selected, Response):
            return selected
        select = request.args.get("$select")
        context = f"users({select})/$entity" if select else "users/$entity"
        return _json(
            ctx, {"@odata.context": f"{state.urls.graph}/v1.0/$metadata#{context}", **selected}
        )

    @app.get("/v1.0/users")
    def list_users() -> Response:
        if not granted(READ_USERS):
            return denied()
        expression = request.args.get("$filter")
        clauses = _parse_filter(expression) if expression else None
        if expression and clauses is None:
            return graph_error(
                ctx, 400, "Request_UnsupportedQuery",
                "Unsupported or invalid query filter clause specified for property of resource "
                "'User'.",
            )
        rows: list[Mapping[str, Any]] = []
        with state.lock:
            tenant: TenantState = g.tenant
            for user in tenant.users.values():
                if clauses is None or _matches(user, clauses):
                    selected = _select(ctx, _user_json(state, user))
                    if isinstance(selected, Response):
                        return selected
                    rows.append(selected)
        return _paged(ctx, state, rows, "users")

    @app.patch("/v1.0/users/<ref>")
    def update_user(ref: str) -> Response:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return graph_error(
                ctx, 400, "BadRequest", "Unable to read JSON request payload. Please ensure "
                "Content-Type header is set and payload is of valid JSON format."
            )
        with state.lock:
            user = find_user(ref)
            if user is None:
                return not_found(ref)
            unknown = set(body) - {"passwordProfile", "accountEnabled"}
            if unknown:
                return graph_error(
                    ctx, 400, "Request_BadRequest",
                    f"Property '{sorted(unknown)[0]}' is not supported by the sandbox for update.",
                )
            needed = (RESET_PASSWORD if "passwordProfile" in body else frozenset()) | (
                ENABLE_ACCOUNT if "accountEnabled" in body else frozenset()
            )
            if "passwordProfile" in body and not granted(RESET_PASSWORD):
                return denied()
            if "accountEnabled" in body and not granted(ENABLE_ACCOUNT):
                return denied()
            if needed and user.spec.on_premises_sync_enabled:
                return graph_error(ctx, 400, "Request_BadRequest", SYNCED_MESSAGE)
            tenant: TenantState = g.tenant
            allowed = RESET_ADMIN_ROLES if user.spec.directory_roles else RESET_NON_ADMIN_ROLES
            if not allowed.intersection(tenant.sp_roles):
                return denied()
            profile = body.get("passwordProfile")
            password = profile.get("password") if isinstance(profile, dict) else None
            if password is not None and not (
                isinstance(password, str) and _password_complex(password)
            ):
                return graph_error(ctx, 400, "Request_BadRequest", COMPLEXITY_MESSAGE)
            if password is not None:
                user.set_password(password, ctx.clock.now())
            if isinstance(body.get("accountEnabled"), bool):
                user.account_enabled = body["accountEnabled"]
        return Response(status=204)

    @app.post("/v1.0/users/<ref>/revokeSignInSessions")
    def revoke_sessions(ref: str) -> Response:
        if not granted(REVOKE_SESSIONS):
            return denied()
        with state.lock:
            user = find_user(ref)
            if user is None:
                return not_found(ref)
            user.session_revocations += 1
            user.sessions_valid_from = ctx.clock.now()
        return _json(
            ctx, {"@odata.context": f"{state.urls.graph}/v1.0/$metadata#Edm.Boolean", "value": True}
        )

    @app.get("/v1.0/users/<ref>/transitiveMemberOf/microsoft.graph.directoryRole")
    def user_roles(ref: str) -> Response:
        if not granted(READ_MEMBERSHIPS | READ_ROLES):
            return denied()
        if (missing := _advanced_query_missing(ctx)) is not None:
            return missing
        readable = granted(READ_ROLES)
        with state.lock:
            user = find_user(ref)
            if user is None:
                return not_found(ref)
            roles = [_role_json(g.tenant, name, readable=readable)
                     for name in user.spec.directory_roles]
        return _paged(ctx, state, roles, "directoryObjects")

    @app.get("/v1.0/users/<ref>/mailFolders/inbox/messageRules")
    def message_rules(ref: str) -> Response:
        if not granted(READ_MAIL_RULES):
            return denied()
        with state.lock:
            user = find_user(ref)
            if user is None:
                return not_found(ref)
            if not user.spec.has_mailbox:
                return graph_error(
                    ctx, 404, "MailboxNotEnabledForRESTAPI",
                    "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
                )
            rules = [dict(rule) for rule in user.spec.inbox_rules]
        return _json(
            ctx,
            {
                "@odata.context": f"{state.urls.graph}/v1.0/$metadata#users('{ref}')/mailFolders"
                "('inbox')/messageRules",
                "value": rules,
            },
        )

    def service_principal_roles(ref: str, by_app_id: bool) -> Response:
        if not granted(READ_SERVICE_PRINCIPALS):
            return denied()
        if (missing := _advanced_query_missing(ctx)) is not None:
            return missing
        readable = granted(READ_ROLES)
        tenant: TenantState = g.tenant
        app_spec = tenant.spec.app
        own = app_spec.client_id if by_app_id else app_spec.service_principal_id
        if ref.lower() != own.lower():
            return not_found(ref)
        with state.lock:
            roles = [_role_json(tenant, name, readable=readable)
                     for name in sorted(tenant.sp_roles)]
        return _paged(ctx, state, roles, "directoryObjects")

    @app.get("/v1.0/servicePrincipals/<ref>/transitiveMemberOf/microsoft.graph.directoryRole")
    def sp_roles(ref: str) -> Response:
        return service_principal_roles(ref, by_app_id=False)

    @app.get(
        "/v1.0/servicePrincipals(appId='<app_id>')/transitiveMemberOf/microsoft.graph.directoryRole"
    )
    def sp_roles_by_app_id(app_id: str) -> Response:
        return service_principal_roles(app_id, by_app_id=True)

    @app.post("/v1.0/$batch")
    def batch() -> Response:
        """JSON batching: up to 20 requests, each answered with its own status, headers and body.

        Requests run in order here (Graph may run independent ones in parallel, and answer in any order);
        one whose ``dependsOn`` request failed is answered 424. Each is an ordinary request of this
        emulator — permissions, injected faults (a throttled request gets its own 429 and Retry-After)
        and the call log (marked ``batched``) — but the latency is the batch's alone.
        """
        body = request.get_json(silent=True)
        items = body.get("requests") if isinstance(body, dict) else None
        problem = _batch_problem(items)
        if problem is not None:
            return graph_error(ctx, 400, "BadRequest", problem)
        client = app.test_client()
        authorization = request.headers.get("Authorization", "")
        answered: dict[str, dict[str, Any]] = {}
        for item in items or ():
            answered[item["id"]] = _batch_answer(client, item, answered, authorization)
        # Graph promises no order: answering last first keeps clients correlating by id.
        return _json(ctx, {"responses": list(reversed(answered.values()))})

    @app.errorhandler(404)
    def _no_route(_error: Exception) -> Response:
        return graph_error(
            ctx, 400, "BadRequest",
            f"Resource not found for the segment '{request.path.rsplit('/', 1)[-1]}'.",
        )

    @app.errorhandler(405)
    def _bad_method(_error: Exception) -> Response:
        return graph_error(
            ctx, 405, "Request_BadRequest",
            f"Specified HTTP method is not allowed for the request target: {request.method}.",
        )

    return app
