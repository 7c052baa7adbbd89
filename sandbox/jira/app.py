"""Flask app serving Jira's REST API (v2 and v3) and the JSM comment/approval endpoints.

EMULATOR CODE, written from Atlassian's documentation and the Jira Cloud platform OpenAPI description;
it shares nothing with the client so that it can catch the client's mistakes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, g, request
from mailunblock.sandbox.core import SandboxContext, instrument
from mailunblock.sandbox.jira.adf import ADF_REQUIRED, adf_to_text, is_adf, render_html, text_to_adf
from mailunblock.sandbox.jira.state import (
    AFFECTED_ACCOUNT_FIELD,
    SD_PUBLIC_COMMENT,
    STATUS_CATEGORIES,
    Approval,
    Comment,
    Issue,
    JiraApiError,
    JiraState,
    Project,
    Status,
    User,
    not_found,
)
from werkzeug.exceptions import HTTPException

SERVER_HEADER = "mailunblock-jira-EMULATOR"
API = "/rest/api/<any('2','3','latest'):ver>"
SD_API = "/rest/servicedeskapi"
NOT_AUTHENTICATED = "Client must be authenticated to access this resource."
SEARCH_REMOVED = (
    "The requested API has been removed. Please migrate to the /rest/api/3/search/jql API. "
    "A full migration guideline is available at https://developer.atlassian.com/changelog/#CHANGE-2046"
)
ISSUE_EXPAND = "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations"
# (id, name, schema type, navigable, custom)
FIELDS: tuple[tuple[str, str, str, bool, bool], ...] = (
    ("summary", "Summary", "string", True, False),
    ("description", "Description", "string", True, False),
    ("status", "Status", "status", True, False),
    ("labels", "Labels", "array", True, False),
    ("reporter", "Reporter", "user", True, False),
    ("assignee", "Assignee", "user", True, False),
    ("created", "Created", "datetime", True, False),
    ("updated", "Updated", "datetime", True, False),
    ("project", "Project", "project", True, False),
    ("issuetype", "Issue Type", "issuetype", True, False),
    ("resolution", "Resolution", "resolution", True, False),
    ("resolutiondate", "Resolved", "datetime", True, False),
    ("issuelinks", "Linked Issues", "array", True, False),
    ("comment", "Comment", "comments-page", False, False),
    (AFFECTED_ACCOUNT_FIELD, "Affected account", "string", True, True),
)
ALL_FIELDS = tuple(f[0] for f in FIELDS)
NAVIGABLE_FIELDS = tuple(f[0] for f in FIELDS if f[3])


def jira_time(moment: datetime, viewer: User | None) -> str:
    """Jira's date-time format, in the viewer's profile time zone: 2026-11-27T11:53:21.000+0000."""
    local = moment.astimezone(viewer.zone) if viewer else moment.astimezone(UTC)
    return local.strftime("%Y-%m-%dT%H:%M:%S.") + f"{local.microsecond // 1000:03d}" + (
        local.strftime("%z")
    )


class _Renderer:
    """Builds response bodies for one request (API version, base URL, viewer)."""

    def __init__(self, state: JiraState, version: str, viewer: User | None) -> None:
        self.state = state
        self.v3 = version == "3"
        self.version = "3" if self.v3 else "2"
        self.viewer = viewer
        self.base = request.url_root.rstrip("/")
        self.api = f"{self.base}/rest/api/{self.version}"
        self.cloud = state.deployment == "cloud"

    def time(self, moment: datetime) -> str:
        return jira_time(moment, self.viewer)

    def text(self, value: str) -> Any:
        return text_to_adf(value) if self.v3 else value

    def user(self, user: User, *, full: bool = False) -> dict[str, Any]:
        avatar = f"{self.base}/secure/useravatar?ownerId={user.key}"
        avatars = {size: f"{avatar}&size={size}" for size in ("48x48", "24x24", "16x16", "32x32")}
        body: dict[str, Any]
        if self.cloud:
            body = {
                "self": f"{self.api}/user?accountId={user.account_id}",
                "accountId": user.account_id,
                "accountType": user.account_type,
            }
        else:
            body = {"self": f"{self.api}/user?username={user.name}", "name": user.name,
                    "key": user.key}
        if user.email_visible or not self.cloud:
            body["emailAddress"] = user.email
        body.update({"avatarUrls": avatars, "displayName": user.display_name,
                     "active": user.active, "timeZone": user.time_zone})
        if full:
            body["locale"] = user.locale
            groups = [self.group_name(name) for name in sorted(user.groups)]
            body["groups"] = {"size": len(groups), "items": groups}
            body["applicationRoles"] = {"size": 1, "items": []}
            body["expand"] = "groups,applicationRoles"
        return body

    def group_name(self, name: str) -> dict[str, Any]:
        group = self.state.groups[name]
        return {"name": group.name, "groupId": group.group_id,
                "self": f"{self.api}/group?groupId={group.group_id}"}

    def status(self, status: Status) -> dict[str, Any]:
        cid, cname, colour = STATUS_CATEGORIES[status.category]
        return {
            "self": f"{self.api}/status/{status.id}",
            "description": "",
            "iconUrl": f"{self.base}/images/icons/statuses/generic.png",
            "name": status.name,
            "id": status.id,
            "statusCategory": {
                "self": f"{self.api}/statuscategory/{cid}",
                "id": cid,
                "key": status.category,
                "colorName": colour,
                "name": cname,
            },
        }

    def project(self, project: Project) -> dict[str, Any]:
        return {
            "self": f"{self.api}/project/{project.id}",
            "id": project.id,
            "key": project.key,
            "name": project.name,
            "projectTypeKey": "service_desk" if project.service_desk else "software",
            "simplified": False,
        }

    def comment(self, issue: Issue, comment: Comment, expand: set[str]) -> dict[str, Any]:
        users = self.state.users
        body: dict[str, Any] = {
            "self": f"{self.api}/issue/{issue.id}/comment/{comment.id}",
            "id": comment.id,
            "author": self.user(users[comment.author]),
            "body": self.text(comment.body),
            "updateAuthor": self.user(users[comment.update_author]),
            "created": self.time(comment.created),
            "updated": self.time(comment.updated),
        }
        if comment.visibility is not None:
            body["visibility"] = dict(comment.visibility)
        if self.cloud:
            body["jsdPublic"] = not comment.internal
        if "renderedBody" in expand:
            body["renderedBody"] = render_html(comment.body)
        if "properties" in expand and not self.cloud:
            # Cloud's comment endpoints accept only expand=renderedBody (OpenAPI spec: Get
            # comments, Add comment); properties are read through /comment/{id}/properties.
            body["properties"] = [{"key": k, "value": v} for k, v in comment.properties.items()]
        return body

    def visible_comments(self, issue: Issue) -> list[Comment]:
        viewer = self.viewer
        return [c for c in issue.comments
                if viewer is None or self.state.comment_visible(viewer, issue, c)]

    def links(self, issue: Issue) -> list[dict[str, Any]]:
        out = []
        for link in self.state.links_of(issue):
            other_id = link.outward_id if link.inward_id == issue.id else link.inward_id
            other = self.state.issues[other_id]
            side = "outwardIssue" if link.inward_id == issue.id else "inwardIssue"
            out.append({
                "id": link.id,
                "self": f"{self.api}/issueLink/{link.id}",
                "type": self.link_type(link.type.name),
                side: {
                    "id": other.id,
                    "key": other.key,
                    "self": f"{self.api}/issue/{other.id}",
                    "fields": {"summary": other.summary,
                               "status": self.status(self.state.status_of(other))},
                },
            })
        return out

    def link_type(self, name: str) -> dict[str, Any]:
        lt = self.state.link_types[name]
        return {"id": lt.id, "name": lt.name, "inward": lt.inward, "outward": lt.outward,
                "self": f"{self.api}/issueLinkType/{lt.id}"}

    def field_value(self, issue: Issue, name: str) -> Any:
        state = self.state
        project = state.projects[issue.project]
        if name in ("summary", "labels"):
            return list(issue.labels) if name == "labels" else issue.summary
        if name == "description":
            return self.text(issue.description) if issue.description else None
        if name == "status":
            return self.status(state.status_of(issue))
        if name in ("reporter", "assignee"):
            account = getattr(issue, name)
            return self.user(state.users[account]) if account else None
        if name in ("created", "updated"):
            return self.time(getattr(issue, name))
        if name == "resolutiondate":
            return self.time(issue.resolution_date) if issue.resolution_date else None
        if name == "resolution":
            if issue.resolution_date is None:
                return None
            return {"self": f"{self.api}/resolution/10000", "id": "10000", "name": "Done",
                    "description": "Work has been completed on this issue."}
        if name == "project":
            return self.project(project)
        if name == "issuetype":
            return {"self": f"{self.api}/issuetype/10003", "id": "10003",
                    "name": project.issue_type, "subtask": False}
        if name == "issuelinks":
            return self.links(issue)
        if name == "comment":
            comments = [self.comment(issue, c, set()) for c in self.visible_comments(issue)]
            return {"comments": comments, "self": f"{self.api}/issue/{issue.id}/comment",
                    "maxResults": len(comments), "total": len(comments), "startAt": 0}
        return issue.custom.get(name)

    def issue(
        self,
        issue: Issue,
        fields: list[str],
        expand: set[str],
        properties: list[str],
        default: tuple[str, ...],
    ) -> dict[str, Any]:
        selected, wants_key = select_fields(fields, default)
        if not selected and not wants_key and not expand and not properties:
            return {"id": issue.id}
        body: dict[str, Any] = {
            "expand": ISSUE_EXPAND,
            "id": issue.id,
            "self": f"{self.api}/issue/{issue.id}",
            "key": issue.key,
        }
        if selected:
            body["fields"] = {name: self.field_value(issue, name) for name in selected}
        if "names" in expand:
            body["names"] = {f[0]: f[1] for f in FIELDS if f[0] in selected}
        if "renderedFields" in expand:
            body["renderedFields"] = {"description": render_html(issue.description)}
        if "changelog" in expand:
            histories = []
            for history in issue.changelog:
                entry: dict[str, Any] = {"id": history.id, "created": self.time(history.created),
                                         "items": [dict(item) for item in history.items]}
                if history.author:
                    entry["author"] = self.user(self.state.users[history.author])
                histories.append(entry)
            body["changelog"] = {"startAt": 0, "maxResults": len(histories),
                                 "total": len(histories), "histories": histories}
        if "transitions" in expand:
            body["transitions"] = [self.transition(issue, t.id) for t in
                                   self.state.available_transitions(issue)]
        if properties:
            body["properties"] = {k: issue.properties[k] for k in properties
                                  if k in issue.properties}
        return body

    def transition(self, issue: Issue, transition_id: str) -> dict[str, Any]:
        tr = next(t for t in self.state.transitions if t.id == transition_id)
        return {
            "id": tr.id,
            "name": tr.name,
            "to": self.status(self.state.statuses[tr.to]),
            "hasScreen": False,
            "isGlobal": not tr.sources,
            "isInitial": False,
            "isAvailable": True,
            "isConditional": False,
            "isLooped": False,
        }


def select_fields(fields: list[str], default: tuple[str, ...]) -> tuple[list[str], bool]:
    """Resolve a ``fields`` parameter: (selected field ids in order, whether ``key`` was asked)."""
    items = [t.strip() for raw in fields for t in raw.split(",") if t.strip()] or list(default)
    selected: list[str] = []
    excluded: set[str] = set()
    wants_key = False
    for item in items:
        if item == "*all":
            selected.extend(ALL_FIELDS)
        elif item == "*navigable":
            selected.extend(NAVIGABLE_FIELDS)
        elif item.startswith("-"):
            excluded.add(item[1:])
        elif item == "key":
            wants_key = True
        elif item in ALL_FIELDS:
            selected.append(item)  # unknown ids (and "id") are ignored, as Jira does
    ordered = [name for name in dict.fromkeys(selected) if name not in excluded]
    return ordered, wants_key


def _expand(raw: Any) -> set[str]:
    """An ``expand`` value: a comma-separated string, or a list of them (search request bodies)."""
    items = raw if isinstance(raw, list) else [raw]
    return {part.strip() for item in items for part in str(item or "").split(",") if part.strip()}


def _list_param(name: str) -> list[str]:
    return [v for raw in request.args.getlist(name) for v in raw.split(",") if v]


def _json_body(required: bool = True) -> Any:
    raw = request.get_data(cache=True)
    if not raw:
        if required:
            raise JiraApiError(400, ["No content to map to Object due to end of input"])
        return {}
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise JiraApiError(400, [f"Unexpected character in JSON body: {exc.msg}"]) from exc


def _int_param(value: Any, name: str, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise JiraApiError(400, [f"The '{name}' parameter must be an integer."]) from exc


def _page_token(offset: int, jql_text: str) -> str:
    digest = hashlib.sha256(jql_text.encode()).hexdigest()[:16]
    raw = json.dumps({"offset": offset, "jql": digest}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _token_offset(token: str, jql_text: str) -> int:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        digest = hashlib.sha256(jql_text.encode()).hexdigest()[:16]
        if data["jql"] != digest:
            raise ValueError("token belongs to another query")
        return int(data["offset"])
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise JiraApiError(400, ["The provided next page token is invalid or expired."]) from exc


# Resources Data Center does not have (404 there): all of v3, the enhanced search and friends, user/groups.
_CLOUD_ONLY = re.compile(
    r"^/rest/api/(?:3(?:/.*)?|(?:2|latest)/(?:search/jql|search/approximate-count|search/id|"
    r"expression/eval|user/groups))/?$"
)


def create_jira_app(state: JiraState, ctx: SandboxContext) -> Flask:
    """The Jira emulator as a Flask app (mount it under the sandbox's Jira host)."""
    app = Flask("mailunblock-jira-emulator")
    app.json.sort_keys = False  # type: ignore[attr-defined]
    instrument(app, "jira", ctx, fault_body={"errorMessages": ["Rate limit exceeded."],
                                             "errors": {}})
    cloud = state.deployment == "cloud"

    def renderer(ver: str) -> _Renderer:
        return _Renderer(state, ver, g.get("jira_user"))

    def viewer() -> User:
        user: User = g.jira_user
        return user

    def visible_issue(key: str) -> Issue:
        issue = state.find_issue(key)
        if not state.can_browse(viewer(), issue):
            raise not_found()
        return issue

    @app.before_request
    def _authenticate() -> Response | None:
        if not cloud and _CLOUD_ONLY.match(request.path):
            return Response("Not Found", status=404, mimetype="text/plain")
        header = request.headers.get("Authorization", "")
        user: User | None = None
        if cloud and header.startswith("Basic "):
            try:
                email, _, token = base64.b64decode(header[6:]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                email, token = "", ""
            user = state.authenticate_basic(email, token)
        elif not cloud and header.startswith("Bearer "):
            user = state.authenticate_bearer(header[7:].strip())
        g.jira_user = user
        if user is None and not request.path.endswith("/serverInfo"):
            if cloud:
                return Response(NOT_AUTHENTICATED, status=401, mimetype="text/plain",
                                headers={"WWW-Authenticate": 'Basic realm="protected-area"'})
            return _error_response(JiraApiError(401, [
                "You are not authenticated. Authentication required to perform this operation."
            ]))
        return None

    @app.after_request
    def _server_header(response: Response) -> Response:
        response.headers["Server"] = SERVER_HEADER
        response.headers["X-Emulator"] = "mailunblock sandbox: not a real Jira"
        return response

    @app.errorhandler(JiraApiError)
    def _jira_error(exc: JiraApiError) -> Response:
        return _error_response(exc)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        body = {"message": f"null for uri: {request.url}", "status-code": exc.code}
        return Response(json.dumps(body), status=exc.code or 500, mimetype="application/json")

    # ------------------------------------------------------------------ server and users

    @app.get(f"{API}/serverInfo")
    def server_info(ver: str) -> Any:
        now = ctx.clock.now()
        r = renderer(ver)
        version = [1001, 0, 0] if cloud else [9, 12, 15]
        return {
            "baseUrl": r.base,
            "displayUrl": r.base,
            "version": ".".join(map(str, version)) + ("-SNAPSHOT" if cloud else ""),
            "versionNumbers": version,
            "deploymentType": "Cloud" if cloud else "Server",
            "buildNumber": 100289,
            "buildDate": jira_time(datetime(2026, 11, 1, tzinfo=UTC), r.viewer),
            "serverTime": jira_time(now, r.viewer),
            "scmInfo": "mailunblock-emulator",
            "serverTitle": f"{state.site} (mailunblock Jira EMULATOR)",
        }

    @app.get(f"{API}/myself")
    def myself(ver: str) -> Any:
        with state.locked():
            return renderer(ver).user(viewer(), full=True)

    @app.get(f"{API}/user")
    def get_user(ver: str) -> Any:
        ref = request.args.get("accountId") if cloud else (
            request.args.get("username") or request.args.get("key")
        )
        if not ref:
            param = "accountId" if cloud else "username"
            raise JiraApiError(400, [f"The '{param}' query parameter needs to be provided."])
        with state.locked():
            user = next((u for u in state.users.values()
                         if ref in ((u.account_id,) if cloud else (u.name, u.key))), None)
            if user is None:
                raise JiraApiError(404, ["Specified user does not exist or you do not have "
                                         "required permissions"])
            return renderer(ver).user(user, full=True)

    @app.get(f"{API}/user/groups")
    def user_groups(ver: str) -> Any:
        ref = request.args.get("accountId") or request.args.get("username") or ""
        with state.locked():
            try:
                user = state.user(ref)
            except KeyError as exc:
                raise JiraApiError(404, ["Specified user does not exist or you do not have "
                                         "required permissions"]) from exc
            r = renderer(ver)
            return Response(json.dumps([r.group_name(n) for n in sorted(user.groups)]),
                            mimetype="application/json")

    @app.get(f"{API}/group/member")
    def group_member(ver: str) -> Any:
        name = request.args.get("groupname")
        group_id = request.args.get("groupId")
        if not name and not group_id:
            raise JiraApiError(400, ["You must specify a group name or group id."])
        start = _int_param(request.args.get("startAt"), "startAt", 0)
        limit = min(_int_param(request.args.get("maxResults"), "maxResults", 50), 50)
        inactive = request.args.get("includeInactiveUsers", "false").lower() == "true"
        with state.locked():
            group = next((gr for gr in state.groups.values()
                          if gr.name == name or gr.group_id == group_id), None)
            if group is None:
                raise JiraApiError(404, [f"Group not found: {name or group_id}"])
            members = sorted(
                (u for u in state.users.values()
                 if group.name in u.groups and (inactive or u.active)),
                key=lambda u: u.display_name.lower(),
            )
            r = renderer(ver)
            page = members[start:start + limit]
            is_last = start + limit >= len(members)
            query = f"groupname={group.name}&includeInactiveUsers={str(inactive).lower()}"
            body: dict[str, Any] = {
                "self": f"{r.api}/group/member?{query}&startAt={start}&maxResults={limit}",
                "maxResults": limit,
                "startAt": start,
                "total": len(members),
                "isLast": is_last,
                "values": [r.user(u) for u in page],
            }
            if not is_last:
                body["nextPage"] = (
                    f"{r.api}/group/member?{query}&startAt={start + limit}&maxResults={limit}"
                )
            return body

    @app.get(f"{API}/field")
    def fields(ver: str) -> Any:
        out = []
        for fid, name, kind, navigable, custom in FIELDS:
            schema: dict[str, Any] = {"type": kind}
            if custom:
                schema.update({
                    "custom": "com.atlassian.jira.plugin.system.customfieldtypes:textfield",
                    "customId": int(fid.split("_")[1]),
                })
            elif kind != "comments-page":
                schema["system"] = fid
            clause = [f"cf[{fid.split('_')[1]}]", name] if custom else [fid]
            out.append({"id": fid, "key": fid, "name": name, "custom": custom,
                        "orderable": True, "navigable": navigable, "searchable": True,
                        "clauseNames": clause, "schema": schema})
        return Response(json.dumps(out), mimetype="application/json")

    # ------------------------------------------------------------------ projects and roles

    def find_project(key: str) -> Project:
        for project in state.projects.values():
            if key in (project.key, project.id):
                return project
        raise JiraApiError(404, [f"No project could be found with key '{key}'."])

    @app.get(f"{API}/project/<key>")
    def project(ver: str, key: str) -> Any:
        with state.locked():
            return renderer(ver).project(find_project(key))

    @app.get(f"{API}/project/<key>/role")
    def project_roles(ver: str, key: str) -> Any:
        with state.locked():
            proj = find_project(key)
            r = renderer(ver)
            return {role.name: f"{r.api}/project/{proj.id}/role/{role.id}"
                    for role in proj.roles.values()}

    @app.get(f"{API}/project/<key>/role/<int:role_id>")
    def project_role(ver: str, key: str, role_id: int) -> Any:
        with state.locked():
            proj = find_project(key)
            role = proj.roles.get(role_id)
            if role is None:
                raise JiraApiError(404, ["Can not retrieve a role actor for a null project role."])
            r = renderer(ver)
            actors: list[dict[str, Any]] = []
            for account in sorted(role.users):
                user = state.users[account]
                actor_user = {"accountId": user.account_id} if cloud else {"name": user.name}
                actors.append({"id": len(actors) + 10200, "displayName": user.display_name,
                               "type": "atlassian-user-role-actor", "actorUser": actor_user})
            for group_name in sorted(role.groups):
                group = state.groups[group_name]
                actors.append({"id": len(actors) + 10200, "displayName": group.name,
                               "type": "atlassian-group-role-actor", "name": group.name,
                               "actorGroup": {"name": group.name, "displayName": group.name,
                                              "groupId": group.group_id}})
            return {"self": f"{r.api}/project/{proj.id}/role/{role.id}", "name": role.name,
                    "id": role.id, "description": role.description, "actors": actors}

    # ------------------------------------------------------------------ search

    @app.route(f"{API}/search", methods=["GET", "POST"])
    def legacy_search(ver: str) -> Any:
        if cloud:
            raise JiraApiError(410, [SEARCH_REMOVED])
        if request.method == "POST":
            body = _json_body()
            params = {k: body.get(k) for k in ("jql", "startAt", "maxResults", "expand")}
            field_list = list(body.get("fields") or [])
            props = list(body.get("properties") or [])
        else:
            params = {k: request.args.get(k) for k in ("jql", "startAt", "maxResults")}
            params["expand"] = request.args.getlist("expand")
            field_list, props = _list_param("fields"), _list_param("properties")
        start = _int_param(params["startAt"], "startAt", 0)
        limit = min(_int_param(params["maxResults"], "maxResults", 50), 1000)
        expand = _expand(params["expand"])
        with state.locked():
            found = state.search(str(params["jql"] or ""), viewer())
            r = renderer(ver)
            return {
                "expand": "schema,names",
                "startAt": start,
                "maxResults": limit,
                "total": len(found),
                "issues": [r.issue(i, field_list, expand, props, NAVIGABLE_FIELDS)
                           for i in found[start:start + limit]],
            }

    @app.route(f"{API}/search/jql", methods=["GET", "POST"])
    def search_jql(ver: str) -> Any:
        if not cloud:
            raise JiraApiError(404, ["null for uri"])
        if request.method == "POST":
            body = _json_body()
            if not isinstance(body, dict):
                raise JiraApiError(400, ["Invalid request payload."])
            unknown = set(body) - {"jql", "nextPageToken", "maxResults", "fields", "expand",
                                   "properties", "fieldsByKeys", "reconcileIssues", "failFast"}
            if unknown:
                name = sorted(unknown)[0]
                raise JiraApiError(400, [f'Unrecognized field "{name}" (class com.atlassian.jira.'
                                         'rest.v2.search.SearchAndReconcileRequestBean), not '
                                         'marked as ignorable'])
            jql_text = str(body.get("jql") or "")
            token = body.get("nextPageToken")
            limit_raw = body.get("maxResults")
            field_list = list(body.get("fields") or [])
            expand = _expand(body.get("expand"))
            props = list(body.get("properties") or [])
            reconcile = list(body.get("reconcileIssues") or [])
        else:
            jql_text = request.args.get("jql", "")
            token = request.args.get("nextPageToken")
            limit_raw = request.args.get("maxResults")
            field_list = _list_param("fields")
            expand = _expand(request.args.get("expand"))
            props = _list_param("properties")
            reconcile = _list_param("reconcileIssues")
        selected, _ = select_fields(field_list, ("id",))
        cap = 5000 if not selected else 100
        limit = max(0, min(_int_param(limit_raw, "maxResults", 50), cap))
        offset = _token_offset(str(token), jql_text) if token else 0
        with state.locked():
            found = state.search(jql_text, viewer(), reconcile)
            r = renderer(ver)
            page = found[offset:offset + limit]
            result: dict[str, Any] = {
                "issues": [r.issue(i, field_list, expand, props, ("id",)) for i in page],
            }
            if offset + limit < len(found):
                result["nextPageToken"] = _page_token(offset + limit, jql_text)
            result["isLast"] = offset + limit >= len(found)
            return result

    # ------------------------------------------------------------------ issues

    @app.get(f"{API}/issue/<key>")
    def get_issue(ver: str, key: str) -> Any:
        with state.locked():
            issue = visible_issue(key)
            return renderer(ver).issue(
                issue, _list_param("fields"), _expand(request.args.get("expand")),
                _list_param("properties"), ALL_FIELDS,
            )

    @app.put(f"{API}/issue/<key>")
    def edit_issue(ver: str, key: str) -> Any:
        body = _json_body()
        actor = viewer().account_id
        with state.locked():
            issue = visible_issue(key)
            fields_in = dict(body.get("fields") or {})
            update_in = dict(body.get("update") or {})
            errors = {
                name: f"Field '{name}' cannot be set. It is not on the appropriate screen, or "
                      "unknown."
                for name in list(fields_in) + list(update_in)
                if name not in ("labels", "summary", "description", AFFECTED_ACCOUNT_FIELD,
                                "comment")
                or (name == "comment" and name in fields_in)
            }
            if errors:
                raise JiraApiError(400, errors=errors)
            labels = list(issue.labels)
            if "labels" in fields_in:
                labels = list(fields_in.pop("labels") or [])
            for operation in update_in.pop("labels", []):
                if "set" in operation:
                    labels = list(operation["set"] or [])
                if "add" in operation and operation["add"] not in labels:
                    labels.append(operation["add"])
                if "remove" in operation and operation["remove"] in labels:
                    labels.remove(operation["remove"])
            plain: dict[str, Any] = {}
            for name in ("summary", "description", AFFECTED_ACCOUNT_FIELD):
                if name in fields_in:
                    plain[name] = _incoming_text(fields_in[name], ver == "3", name)
                for operation in update_in.get(name, []):
                    if "set" in operation:
                        plain[name] = _incoming_text(operation["set"], ver == "3", name)
            comments = [_incoming_text((op.get("add") or {}).get("body"), ver == "3", "comment")
                        for op in update_in.get("comment", [])]
            state.set_labels(issue.key, labels, actor)
            if plain:
                state.update_fields(issue.key, plain, actor)
            for text in comments:
                state.add_comment(issue.key, actor, text)
        return Response(status=204)

    # ------------------------------------------------------------------ comments

    @app.get(f"{API}/issue/<key>/comment")
    def list_comments(ver: str, key: str) -> Any:
        order = request.args.get("orderBy", "created")
        if order not in ("created", "-created", "+created"):
            raise JiraApiError(400, [f"Invalid orderBy value: {order}. Allowed: created, "
                                     "-created, +created"])
        start = _int_param(request.args.get("startAt"), "startAt", 0)
        limit = _int_param(request.args.get("maxResults"), "maxResults", 100)
        expand = _expand(request.args.get("expand"))
        with state.locked():
            issue = visible_issue(key)
            r = renderer(ver)
            comments = r.visible_comments(issue)
            if order == "-created":
                comments = list(reversed(comments))
            page = comments[start:start + limit]
            return {"startAt": start, "maxResults": limit, "total": len(comments),
                    "comments": [r.comment(issue, c, expand) for c in page]}

    @app.post(f"{API}/issue/<key>/comment")
    def add_comment(ver: str, key: str) -> Any:
        body = _json_body()
        expand = _expand(request.args.get("expand"))
        with state.locked():
            issue = visible_issue(key)
            text = _incoming_text(body.get("body"), ver == "3", "comment")
            if not text.strip():
                raise JiraApiError(400, errors={"comment": "Comment body can not be empty!"})
            visibility = _visibility(state, viewer(), issue, body.get("visibility"))
            props = _properties(body.get("properties"))
            comment_id = state.add_comment(issue.key, viewer().account_id, text,
                                           visibility=visibility, properties=props)
            comment = state.find_comment(issue, comment_id)
            response = renderer(ver).comment(issue, comment, expand)
        return response, 201

    @app.get(f"{API}/issue/<key>/comment/<comment_id>")
    def get_comment(ver: str, key: str, comment_id: str) -> Any:
        with state.locked():
            issue = visible_issue(key)
            comment = state.find_comment(issue, comment_id)
            if not state.comment_visible(viewer(), issue, comment):
                raise not_found(f"Can not find a comment for the id: {comment_id}.")
            return renderer(ver).comment(issue, comment,
                                         _expand(request.args.get("expand")))

    @app.put(f"{API}/issue/<key>/comment/<comment_id>")
    def edit_comment(ver: str, key: str, comment_id: str) -> Any:
        body = _json_body()
        with state.locked():
            issue = visible_issue(key)
            comment = state.find_comment(issue, comment_id)
            text = _incoming_text(body.get("body"), ver == "3", "comment")
            visibility = _visibility(state, viewer(), issue, body.get("visibility"))
            state.update_comment(issue.key, comment.id, viewer().account_id, text, visibility)
            for prop_key, value in (_properties(body.get("properties")) or {}).items():
                state.set_comment_property(comment.id, prop_key, value)
            return renderer(ver).comment(issue, comment, set())

    @app.delete(f"{API}/issue/<key>/comment/<comment_id>")
    def delete_comment(ver: str, key: str, comment_id: str) -> Any:
        with state.locked():
            issue = visible_issue(key)
            state.delete_comment(issue.key, comment_id)
        return Response(status=204)

    @app.get(f"{API}/comment/<comment_id>/properties")
    def comment_property_keys(ver: str, comment_id: str) -> Any:
        with state.locked():
            issue, comment = state.comment_by_id(comment_id)
            visible_issue(issue.key)
            api = renderer(ver).api
            return {"keys": [{"key": k, "self": f"{api}/comment/{comment_id}/properties/{k}"}
                             for k in comment.properties]}

    @app.route(f"{API}/comment/<comment_id>/properties/<prop_key>",
               methods=["GET", "PUT", "DELETE"])
    def comment_property(ver: str, comment_id: str, prop_key: str) -> Any:
        with state.locked():
            issue, comment = state.comment_by_id(comment_id)
            visible_issue(issue.key)
            if request.method == "PUT":
                created = state.set_comment_property(comment_id, prop_key, _json_body())
                return Response(status=201 if created else 200)
            if prop_key not in comment.properties:
                raise not_found(f"The property with key '{prop_key}' does not exist.")
            if request.method == "DELETE":
                del comment.properties[prop_key]
                comment.internal = False if prop_key == SD_PUBLIC_COMMENT else comment.internal
                return Response(status=204)
            return {"key": prop_key, "value": comment.properties[prop_key]}

    # ------------------------------------------------------------------ issue properties

    @app.get(f"{API}/issue/<key>/properties")
    def issue_property_keys(ver: str, key: str) -> Any:
        with state.locked():
            issue = visible_issue(key)
            api = renderer(ver).api
            return {"keys": [{"key": k, "self": f"{api}/issue/{issue.id}/properties/{k}"}
                             for k in issue.properties]}

    @app.route(f"{API}/issue/<key>/properties/<prop_key>", methods=["GET", "PUT", "DELETE"])
    def issue_property(ver: str, key: str, prop_key: str) -> Any:
        with state.locked():
            issue = visible_issue(key)
            if request.method == "PUT":
                if len(prop_key) > 255:
                    raise JiraApiError(400, ["The property key can not be longer than 255 "
                                             "characters."])
                created = state.set_property(issue.key, prop_key, _json_body())
                return Response(status=201 if created else 200)
            if request.method == "DELETE":
                state.delete_property(issue.key, prop_key)
                return Response(status=204)
            if prop_key not in issue.properties:
                raise not_found(f"The property with key '{prop_key}' does not exist.")
            return {"key": prop_key, "value": issue.properties[prop_key]}

    # ------------------------------------------------------------------ transitions and links

    @app.get(f"{API}/issue/<key>/transitions")
    def list_transitions(ver: str, key: str) -> Any:
        with state.locked():
            issue = visible_issue(key)
            r = renderer(ver)
            return {"expand": "transitions",
                    "transitions": [r.transition(issue, t.id)
                                    for t in state.available_transitions(issue)]}

    @app.post(f"{API}/issue/<key>/transitions")
    def do_transition(ver: str, key: str) -> Any:
        body = _json_body()
        transition = body.get("transition") if isinstance(body, dict) else None
        if not isinstance(transition, dict) or "id" not in transition:
            raise JiraApiError(400, ["Missing 'transition' identifier"])
        tid = str(transition["id"])
        if not tid.isdigit():
            raise JiraApiError(400, ["'transition' identifier must be an integer"])
        with state.locked():
            issue = visible_issue(key)
            available = {t.id for t in state.available_transitions(issue)}
            if tid not in available:
                raise JiraApiError(400, [f"Transition id '{tid}' is not valid for this issue."])
            comments = [_incoming_text((op.get("add") or {}).get("body"), ver == "3", "comment")
                        for op in (body.get("update") or {}).get("comment", [])]
            state.transition(issue.key, tid, viewer().account_id)
            for text in comments:
                state.add_comment(issue.key, viewer().account_id, text)
        return Response(status=204)

    @app.post(f"{API}/issueLink")
    def create_link(ver: str) -> Any:
        body = _json_body()
        try:
            type_ref = body["type"].get("name") or body["type"].get("id")
            inward = body["inwardIssue"].get("key") or body["inwardIssue"].get("id")
            outward = body["outwardIssue"].get("key") or body["outwardIssue"].get("id")
        except (KeyError, AttributeError, TypeError) as exc:
            raise JiraApiError(400, ["Issue link type, inward issue and outward issue are "
                                     "required."]) from exc
        with state.locked():
            visible_issue(str(inward))
            visible_issue(str(outward))
            link_id = state.link(str(type_ref), str(inward), str(outward))
            api = renderer(ver).api
        return Response(status=201, headers={"Location": f"{api}/issueLink/{link_id}"})

    @app.get(f"{API}/issueLinkType")
    def link_types(ver: str) -> Any:
        with state.locked():
            r = renderer(ver)
            return {"issueLinkTypes": [r.link_type(name) for name in state.link_types]}

    # ------------------------------------------------------------------ Jira Service Management

    def service_desk_issue(key: str) -> Issue:
        try:
            issue = visible_issue(key)
        except JiraApiError as exc:
            raise _sd_error(404, "Request does not exist or you do not have permission to see "
                                 "it.", "sd.request.error.not.found") from exc
        if not state.projects[issue.project].service_desk:
            raise _sd_error(404, "This issue is not a customer request.",
                            "sd.request.error.not.a.request")
        return issue

    @app.route(f"{SD_API}/request/<key>/comment", methods=["GET", "POST"])
    def sd_comment(key: str) -> Any:
        with state.locked():
            issue = service_desk_issue(key)
            if request.method == "GET":
                public_only = request.args.get("internal", "true").lower() == "false"
                comments = [c for c in issue.comments
                            if state.comment_visible(viewer(), issue, c)
                            and not (public_only and c.internal)]
                start = _int_param(request.args.get("start"), "start", 0)
                limit = _int_param(request.args.get("limit"), "limit", 50)
                page = comments[start:start + limit]
                return {"size": len(page), "start": start, "limit": limit,
                        "isLastPage": start + limit >= len(comments),
                        "values": [_sd_comment(state, issue, c, viewer()) for c in page],
                        "_links": {"base": request.url_root.rstrip("/"), "context": "",
                                   "self": request.base_url}}
            body = _json_body()
            text = body.get("body") if isinstance(body, dict) else None
            if not isinstance(text, str) or not text.strip():
                raise _sd_error(400, "The comment body must not be empty.",
                                "sd.comment.error.body.empty")
            public = body.get("public", True)
            if not isinstance(public, bool):
                raise _sd_error(400, "'public' must be a boolean.", "sd.comment.error.public")
            if not public and not state.roles_of(viewer(), state.projects[issue.project]):
                raise _sd_error(403, "You do not have permission to create internal comments.",
                                "sd.comment.error.internal.permission")
            comment_id = state.add_comment(issue.key, viewer().account_id, text,
                                           internal=not public)
            comment = state.find_comment(issue, comment_id)
            return _sd_comment(state, issue, comment, viewer()), 201

    @app.get(f"{SD_API}/request/<key>/approval")
    def sd_approvals(key: str) -> Any:
        start = _int_param(request.args.get("start"), "start", 0)
        limit = _int_param(request.args.get("limit"), "limit", 50)
        with state.locked():
            issue = service_desk_issue(key)
            page = issue.approvals[start:start + limit]
            return {"size": len(page), "start": start, "limit": limit,
                    "isLastPage": start + limit >= len(issue.approvals),
                    "values": [_sd_approval(state, issue, a, viewer()) for a in page],
                    "_links": {"base": request.url_root.rstrip("/"), "context": "",
                               "self": request.base_url}}

    @app.get(f"{SD_API}/request/<key>/approval/<approval_id>")
    def sd_approval(key: str, approval_id: str) -> Any:
        with state.locked():
            issue = service_desk_issue(key)
            approval = _sd_find_approval(state, issue, approval_id)
            return _sd_approval(state, issue, approval, viewer())

    @app.post(f"{SD_API}/request/<key>/approval/<approval_id>")
    def sd_answer_approval(key: str, approval_id: str) -> Any:
        body = _json_body()
        decision = body.get("decision") if isinstance(body, dict) else None
        if decision not in ("approve", "decline"):
            raise _sd_error(400, "The decision must be 'approve' or 'decline'.",
                            "sd.approval.error.invalid.decision")
        with state.locked():
            issue = service_desk_issue(key)
            approval = _sd_find_approval(state, issue, approval_id)
            if not state.can_answer(viewer(), approval):
                raise _sd_error(403, "You are not allowed to answer this approval.",
                                "sd.approval.error.cannot.answer")
            state.answer_approval(issue.key, approval.id, viewer().account_id, str(decision))
            return _sd_approval(state, issue, approval, viewer())

    return app


def _error_response(exc: JiraApiError) -> Response:
    return Response(json.dumps(exc.body), status=exc.status, mimetype="application/json")


def _sd_error(status: int, message: str, i18n_key: str) -> JiraApiError:
    error = JiraApiError(status)
    error.body = {"errorMessage": message,
                  "i18nErrorMessage": {"i18nKey": i18n_key, "parameters": []}}
    return error


def _sd_find_approval(state: JiraState, issue: Issue, approval_id: str) -> Approval:
    try:
        return state.find_approval(issue, approval_id)
    except JiraApiError as exc:
        raise _sd_error(404, f"The approval with id {approval_id} does not exist.",
                        "sd.approval.error.not.found") from exc


def _sd_date(moment: datetime, viewer: User) -> dict[str, Any]:
    local = moment.astimezone(viewer.zone)
    return {
        "iso8601": local.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "jira": jira_time(moment, viewer),
        "friendly": local.strftime("%d/%b/%y %I:%M %p"),
        "epochMillis": int(moment.timestamp() * 1000),
    }


def _sd_user(state: JiraState, user: User) -> dict[str, Any]:
    """JSM's UserDTO: accountId on Cloud, key and name on Data Center."""
    base = request.url_root.rstrip("/")
    if state.deployment == "cloud":
        ids: dict[str, Any] = {"accountId": user.account_id}
        link = f"{base}/rest/api/2/user?accountId={user.account_id}"
    else:
        ids = {"key": user.key, "name": user.name}
        link = f"{base}/rest/api/2/user?username={user.name}"
    return {**ids, "emailAddress": user.email, "displayName": user.display_name,
            "active": user.active, "timeZone": user.time_zone, "_links": {"self": link}}


def _sd_approval(state: JiraState, issue: Issue, approval: Approval, viewer: User) -> dict[str, Any]:
    base = request.url_root.rstrip("/")
    body: dict[str, Any] = {
        "id": approval.id,
        "name": approval.name,
        "finalDecision": approval.final_decision,
        "canAnswerApproval": state.can_answer(viewer, approval),
        "approvers": [{"approver": _sd_user(state, state.users[a.account]),
                       "approverDecision": a.decision} for a in approval.approvers],
        "createdDate": _sd_date(approval.created, viewer),
    }
    if approval.completed is not None:
        body["completedDate"] = _sd_date(approval.completed, viewer)
    body["_links"] = {
        "self": f"{base}/rest/servicedeskapi/request/{issue.id}/approval/{approval.id}"
    }
    return body


def _sd_comment(state: JiraState, issue: Issue, comment: Comment, viewer: User) -> dict[str, Any]:
    author = state.users[comment.author]
    base = request.url_root.rstrip("/")
    local = comment.created.astimezone(viewer.zone)
    return {
        "id": comment.id,
        "body": comment.body,
        "public": not comment.internal,
        "author": {
            "accountId": author.account_id,
            "emailAddress": author.email,
            "displayName": author.display_name,
            "active": author.active,
            "timeZone": author.time_zone,
            "_links": {"self": f"{base}/rest/api/2/user?accountId={author.account_id}"},
        },
        "created": {
            "iso8601": local.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "jira": jira_time(comment.created, viewer),
            "friendly": local.strftime("%d/%b/%y %I:%M %p"),
            "epochMillis": int(comment.created.timestamp() * 1000),
        },
        "_links": {"self": f"{base}/rest/servicedeskapi/request/{issue.id}/comment/{comment.id}"},
    }


def _incoming_text(value: Any, v3: bool, field_name: str) -> str:
    """A text body from a request: ADF on v3, a string on v2."""
    if v3:
        if field_name == AFFECTED_ACCOUNT_FIELD or field_name == "summary":
            if isinstance(value, str):
                return value
        elif is_adf(value):
            return adf_to_text(value)
        raise JiraApiError(400, errors={field_name: ADF_REQUIRED})
    if not isinstance(value, str):
        raise JiraApiError(400, ["Can not deserialize instance of java.lang.String out of "
                                 "START_OBJECT token"])
    return value


def _visibility(state: JiraState, user: User, issue: Issue, raw: Any) -> dict[str, str] | None:
    """Validate a comment ``visibility``: the group/role must exist and include the author."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or raw.get("type") not in ("group", "role"):
        raise JiraApiError(400, errors={"commentLevel": "Visibility type must be 'group' or "
                                                        "'role'."})
    wanted = str(raw.get("value") or raw.get("identifier") or "")
    if raw["type"] == "group":
        group = next((gr for gr in state.groups.values() if wanted in (gr.name, gr.group_id)),
                     None)
        if group is None:
            raise JiraApiError(400, errors={"commentLevel": f"Group: {wanted} does not exist."})
        if group.name not in user.groups:
            raise JiraApiError(400, errors={
                "commentLevel": f"You are currently not a member of the group: {group.name}."})
        return {"type": "group", "value": group.name, "identifier": group.group_id}
    project = state.projects[issue.project]
    role = next((ro for ro in project.roles.values() if wanted in (ro.name, str(ro.id))), None)
    if role is None:
        raise JiraApiError(400, errors={"commentLevel": f"Role: {wanted} does not exist."})
    if role not in state.roles_of(user, project):
        raise JiraApiError(400, errors={
            "commentLevel": f"You are currently not a member of the project role: {role.name}."})
    return {"type": "role", "value": role.name, "identifier": role.name}


def _properties(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(isinstance(p, dict) and "key" in p for p in raw):
        raise JiraApiError(400, ["Comment properties must be a list of {key, value} objects."])
    return {str(p["key"]): p.get("value") for p in raw}

