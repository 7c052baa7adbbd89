"""Jira (Cloud or Data Center): the tickets mailunblock works on.

The client gets its session injected, like the Microsoft connectors: ``jira_session`` signs one in
(basic auth on Cloud, a personal access token or basic auth on Data Center) over the shared
:class:`HttpPolicy` session, whose throttle gate, timeout and CA bundle apply to every request. Requests
go to the v2 REST API (plain-text bodies on both deployments); only reads and idempotent updates are
retried. See the README's design notes for why the ``jira`` package is not used.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import quote

import requests
from mailunblock.connectors.errors import ConnectorError, NotFoundError
from mailunblock.connectors.http import (
    HttpPolicy,
    build_session,
    error_for_status,
    json_body,
    parse_instant,
    rate_limit_reset_seconds,
    retry_after_seconds,
    send,
)
from mailunblock.connectors.models import (
    Approval,
    Approver,
    Comment,
    Decision,
    Person,
    StatusChange,
    Ticket,
    TicketHead,
)

log = logging.getLogger(__name__)

SERVICE = "jira"
API = "/rest/api/2"
SEARCH_JQL = f"{API}/search/jql"  # Cloud: token paging, no total
SEARCH = f"{API}/search"  # Data Center: GET with startAt/total paging (410 Gone on Cloud)
ISSUE = f"{API}/issue/{{key}}"
COMMENTS = f"{API}/issue/{{key}}/comment"
COMMENT_PROPERTY = f"{API}/comment/{{id}}/properties/{{property}}"
TRANSITIONS = f"{API}/issue/{{key}}/transitions"
ISSUE_PROPERTY = f"{API}/issue/{{key}}/properties/{{property}}"  # Cloud and Data Center alike
ISSUE_LINK = f"{API}/issueLink"
MYSELF = f"{API}/myself"
USER = f"{API}/user"
USER_GROUPS = f"{API}/user/groups"
GROUP_MEMBERS = f"{API}/group/member"
PROJECT_ROLES = f"{API}/project/{{project}}/role"
PROJECT_ROLE = f"{API}/project/{{project}}/role/{{role_id}}"
SD_API = "/rest/servicedeskapi"
APPROVALS = f"{SD_API}/request/{{key}}/approval"  # JSM native approvals (Cloud and Data Center)

SERVER_INFO = f"{API}/serverInfo"
# JSM Data Center's approval resources are experimental: without this header they answer 412.
EXPERIMENTAL_HEADER = {"X-ExperimentalApi": "opt-in"}
# A transition "name" meaning: the transition into a Done status (JSM's "Resolve this issue", "Done").
INTO_DONE = "(into a Done status)"
_DONE_STATUSES = ("resolved", "done", "closed")

MARKER_PROPERTY = "mailunblock"
JSM_VISIBILITY_PROPERTY = "sd.public.comment"
LINK_TYPE = "Relates"
BASE_FIELDS = (
    "summary", "description", "status", "labels", "reporter", "created", "updated", "comment",
    "issuelinks",
)
LIGHT_FIELDS = ("updated", "status", "labels")  # enough to tell whether a selected ticket changed


@dataclass(frozen=True)
class JiraUser(Person):
    """A Jira user: Cloud identifies users by ``account_id``, Data Center by ``name``/``key``."""

    account_id: str | None = None
    name: str | None = None
    key: str | None = None

    @property
    def ref(self) -> str:
        """Stable identifier for this user on either deployment."""
        return self.account_id or self.key or self.name or self.display_name

    def same_account(self, other: Person | None) -> bool:
        """The same Jira account: accountId on Cloud, key or username (case-insensitive) on Data Center."""
        if not isinstance(other, JiraUser):
            return False
        return (
            (self.account_id is not None and self.account_id == other.account_id)
            or (self.key is not None and self.key == other.key)
            or (self.name is not None and other.name is not None and self.name.lower() == other.name.lower())
        )


@dataclass(frozen=True)
class JiraTransition:
    """A workflow transition available on a ticket right now."""

    id: str
    name: str
    to_status: str
    to_category: str = ""  # the target status's category key: new, indeterminate or done


class Deployment(StrEnum):
    """Jira flavour: Cloud identifies users by accountId, Data Center by name."""

    CLOUD = "cloud"
    DATACENTER = "datacenter"


class InternalNotes(StrEnum):
    """How a comment is kept from the reporter."""

    JSM = "jsm"
    GROUP = "group"
    ROLE = "role"


def jira_session(
    policy: HttpPolicy,
    *,
    deployment: str = Deployment.CLOUD,
    email: str | None = None,
    api_token: str | None = None,
    personal_access_token: str | None = None,
    username: str | None = None,
    password: str | None = None,
) -> requests.Session:
    """A session signed in to Jira: email and API token on Cloud; a PAT, or username and password, on DC."""
    session = build_session(policy, SERVICE)
    session.headers.update({"Accept": "application/json", "X-Atlassian-Token": "no-check"})
    if Deployment(deployment) is Deployment.CLOUD:
        if not (email and api_token):
            raise ValueError("Jira Cloud needs email and api_token")
        session.auth = (email, api_token)
    elif username and password:
        session.auth = (username, password)
    elif personal_access_token:
        session.headers["Authorization"] = f"Bearer {personal_access_token}"
    else:
        raise ValueError("Jira Data Center needs personal_access_token or username and password")
    return session


class JiraClient:
    """Tickets on one Jira site (satisfies ``workflows.ports.Tickets``)."""

    def __init__(
        self,
        url: str,
        session: requests.Session,
        *,
        policy: HttpPolicy,
        deployment: str = Deployment.CLOUD,
        internal_notes: str = InternalNotes.JSM,
        internal_visibility: str | None = None,
        affected_account_field: str | None = None,
        selection: str | None = None,
        page_size: int = 50,
    ) -> None:
        self._url = url.rstrip("/")
        self._policy = policy
        self._deployment = Deployment(deployment)
        self._internal_notes = InternalNotes(internal_notes)
        if self._internal_notes is not InternalNotes.JSM and not internal_visibility:
            raise ValueError(f"internal notes by {self._internal_notes} need internal_visibility")
        self._internal_visibility = internal_visibility
        self._selection = selection
        self._affected_field = affected_account_field
        self._page_size = page_size
        self._fields = [*BASE_FIELDS, *([affected_account_field] if affected_account_field else [])]
        self._session = session

    @classmethod
    def connect(
        cls,
        url: str,
        *,
        policy: HttpPolicy,
        deployment: str = Deployment.CLOUD,
        email: str | None = None,
        api_token: str | None = None,
        personal_access_token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        **options: Any,
    ) -> JiraClient:
        """A client over a new signed-in session (``jira_session``); ``options`` as for the constructor."""
        session = jira_session(policy, deployment=deployment, email=email, api_token=api_token,
                               personal_access_token=personal_access_token, username=username,
                               password=password)
        return cls(url, session, policy=policy, deployment=deployment, **options)

    # --- the Tickets protocol -------------------------------------------------------------------

    def search(self, jql: str) -> Iterator[Ticket]:
        """Every ticket matching ``jql``, with comments and status changes, page by page."""
        return (self._issue(raw) for raw in self._search_pages(jql, self._fields, expand=True))

    def _search_pages(self, jql: str, fields: Sequence[str], *, expand: bool) -> Iterator[dict[str, Any]]:
        """Raw issues matching ``jql`` with ``fields`` (and the changelog when ``expand``), every page."""
        changelog = {"expand": "changelog"} if expand else {}
        size = self._page_size
        if self._deployment is Deployment.CLOUD:
            token: str | None = None
            while True:
                body: dict[str, Any] = {
                    "jql": jql, "fields": list(fields), **changelog, "maxResults": size,
                }
                if token:
                    body["nextPageToken"] = token
                page = self._call("POST", SEARCH_JQL, json=body, safe=True)
                yield from page.get("issues", [])
                token = page.get("nextPageToken")
                if page.get("isLast", True) or not token:
                    return
        start = 0
        while True:
            params = {
                "jql": jql, "fields": ",".join(fields), **changelog,
                "startAt": str(start), "maxResults": str(size),
            }
            page = self._call("GET", SEARCH, params=params)
            issues = page.get("issues", [])
            yield from issues
            start += len(issues)
            if not issues or start >= int(page.get("total", 0)):
                return

    def get_issue(self, issue_key: str) -> Ticket:
        """Re-read one ticket (status, labels, comments, status changes)."""
        params = {"fields": ",".join(self._fields), "expand": "changelog"}
        return self._issue(self._call("GET", ISSUE.format(key=_seg(issue_key)), params=params))

    def post_comment(self, issue_key: str, body: str, *, internal: bool, marker: str) -> str:
        """Post a comment carrying ``marker`` as a hidden property; return its id. Never retried."""
        properties: list[dict[str, Any]] = [{"key": MARKER_PROPERTY, "value": {"marker": marker}}]
        payload: dict[str, Any] = {"body": body}
        if internal and self._internal_notes is InternalNotes.JSM:
            properties.append({"key": JSM_VISIBILITY_PROPERTY, "value": {"internal": True}})
        elif internal:
            payload["visibility"] = {
                "type": self._internal_notes.value, "value": self._internal_visibility,
            }
        payload["properties"] = properties
        created = self._call("POST", COMMENTS.format(key=_seg(issue_key)), json=payload, safe=False)
        return str(created["id"])

    def find_comment(self, issue_key: str, marker: str) -> str | None:
        """Return the id of the comment carrying ``marker``, if one exists (crash reconciliation).

        Comment properties are read one comment at a time: the comment list's ``expand`` accepts
        only ``renderedBody`` (Atlassian's OpenAPI spec), and the comment property resource exists
        on Cloud and Data Center alike.
        """
        for comment in self._all_comments(issue_key):
            if self._comment_marker(str(comment["id"])) == marker:
                return str(comment["id"])
        return None

    def _all_comments(self, issue_key: str) -> Iterator[dict[str, Any]]:
        path = COMMENTS.format(key=_seg(issue_key))
        start = 0
        while True:
            params = {"startAt": str(start), "maxResults": str(self._page_size)}
            page = self._call("GET", path, params=params)
            comments = page.get("comments", [])
            yield from comments
            start += len(comments)
            if not comments or start >= int(page.get("total", 0)):
                return

    def _comment_marker(self, comment_id: str) -> str | None:
        path = COMMENT_PROPERTY.format(id=_seg(comment_id), property=MARKER_PROPERTY)
        try:
            prop = self._call("GET", path)
        except NotFoundError:
            return None
        value = prop.get("value") if isinstance(prop, dict) else None
        return str(value.get("marker")) if isinstance(value, dict) else None

    def update_labels(
        self, issue_key: str, *, add: Sequence[str] = (), remove: Sequence[str] = ()
    ) -> None:
        """Add and remove labels in one update (idempotent, so it may be retried)."""
        operations = [{"add": label} for label in add] + [{"remove": label} for label in remove]
        if operations:
            body = {"update": {"labels": operations}}
            self._call("PUT", ISSUE.format(key=_seg(issue_key)), json=body)

    def transition(self, issue_key: str, transition_name: str) -> bool:
        """Apply the transition with this name (case-insensitive); False when none is offered.

        ``INTO_DONE`` picks the transition into the Done-category status named Resolved, Done or Closed
        (in that order of preference): never Canceled or Declined.
        """
        offered = self.transitions(issue_key)
        if transition_name == INTO_DONE:
            done = {t.to_status.casefold(): t for t in offered if t.to_category == "done"}
            match = next((done[s] for s in _DONE_STATUSES if s in done), None)
        else:
            wanted = transition_name.casefold()
            match = next((t for t in offered if t.name.casefold() == wanted), None)
        if match is None:
            return False
        body = {"transition": {"id": match.id}}
        self._call("POST", TRANSITIONS.format(key=_seg(issue_key)), json=body, safe=False)
        return True

    def link_issues(self, issue_key: str, other_key: str) -> None:
        """Link two tickets ("Relates"), unless they are linked already."""
        params = {"fields": "issuelinks"}
        raw = self._call("GET", ISSUE.format(key=_seg(issue_key)), params=params)
        for link in raw.get("fields", {}).get("issuelinks") or ():
            linked = link.get("inwardIssue") or link.get("outwardIssue") or {}
            if str(linked.get("key", "")).upper() == other_key.upper():
                return
        body = {
            "type": {"name": LINK_TYPE},
            "inwardIssue": {"key": issue_key},
            "outwardIssue": {"key": other_key},
        }
        self._call("POST", ISSUE_LINK, json=body, safe=False)

    def set_property(self, issue_key: str, key: str, value: Mapping[str, Any]) -> None:
        """Set an issue property (a JSON value Jira keeps on the ticket); a PUT, so safe to retry."""
        self._call("PUT", ISSUE_PROPERTY.format(key=_seg(issue_key), property=_seg(key)), json=dict(value))

    def approvals(self, issue_key: str) -> list[Approval]:
        """The request's JSM native approvals, every page (a read, so retried when throttled)."""
        path = APPROVALS.format(key=_seg(issue_key))
        found: list[Approval] = []
        start = 0
        while True:
            params = {"start": str(start), "limit": str(self._page_size)}
            page = self._call("GET", path, params=params, headers=self._approval_headers)
            values = page.get("values") or []
            found += [_approval(raw) for raw in values]
            start += len(values)
            if page.get("isLastPage", True) or not values:
                return found

    def selected(self) -> Iterable[TicketHead]:
        """The tickets that need work: the configured selection (JQL), each as it is now, every page.

        Steady cycles cost what changed, not what waits: the selection is searched for a few light fields
        (``updated``, status, labels), enough to tell whether a ticket is still to be worked on and whether
        it changed (any change — a comment, a status, a field — moves ``updated``). ``read_whole`` reads
        the tickets there is work to do on, with comments and changelog.
        """
        if not self._selection:
            raise ValueError("no selection (JQL) configured for this Jira client")
        return [_head(raw) for raw in self._search_pages(self._selection, LIGHT_FIELDS, expand=False) if raw.get("id")]

    def read_whole(self, heads: Sequence[TicketHead]) -> list[Ticket]:
        """These tickets in full (comments, changelog), as they are now: by issue id, a page at a time.

        The search of the selection answers ``id in (…)``; a ticket Jira no longer shows (deleted, or hidden
        from us) is not in the answer.
        """
        found: list[Ticket] = []
        for start in range(0, len(heads), self._page_size):
            ids = ", ".join(h.id for h in heads[start:start + self._page_size])
            found += self.search(f"id in ({ids})")
        return found

    # --- the Membership protocol: who belongs where (the workflow decides who approves) ---------

    def groups_of(self, person: Person) -> set[str]:
        """Names (lower-cased) of the groups the person belongs to.

        Cloud: ``user/groups?accountId=``. Data Center has no ``user/groups`` (404): its own resource
        is ``user?username=…&expand=groups`` (groups in ``groups.items``).
        """
        if not isinstance(person, JiraUser):
            return set()
        if self._deployment is Deployment.CLOUD:
            if not person.account_id:
                return set()
            raw = self._call("GET", USER_GROUPS, params={"accountId": person.account_id})
            groups = raw if isinstance(raw, list) else []
        else:
            if not (person.name or person.key):
                return set()
            who = {"username": person.name} if person.name else {"key": person.key or ""}
            raw = self._call("GET", USER, params={**who, "expand": "groups"})
            groups = ((raw.get("groups") or {}).get("items") or []) if isinstance(raw, dict) else []
        return {str(g.get("name", "")).lower() for g in groups if isinstance(g, dict)}

    def in_any_role(self, person: Person, project: str, roles: Collection[str], groups: Collection[str]) -> bool:
        """Whether the person holds one of ``roles`` in ``project``, directly or through one of ``groups``."""
        if not isinstance(person, JiraUser):
            return False
        wanted = {r.lower() for r in roles}
        for name, url in self._call("GET", PROJECT_ROLES.format(project=_seg(project))).items():
            if name.lower() not in wanted:
                continue
            role_id = str(url).rstrip("/").rsplit("/", 1)[-1]
            role = self._call("GET", PROJECT_ROLE.format(project=_seg(project), role_id=role_id))
            if any(_actor_is(actor, person, groups) for actor in role.get("actors", [])):
                return True
        return False

    @property
    def _approval_headers(self) -> dict[str, str] | None:
        return EXPERIMENTAL_HEADER if self._deployment is Deployment.DATACENTER else None

    # --- extras for the poller and the doctor --------------------------------------------------

    @property
    def deployment(self) -> str:
        """The configured flavour: "cloud" or "datacenter"."""
        return self._deployment.value

    def server_deployment(self) -> str:
        """The flavour the site reports in ``serverInfo.deploymentType`` ("cloud" or "datacenter").

        Data Center reports "Server" (there is no "DataCenter" value), like a Server licence.
        """
        raw = self._call("GET", SERVER_INFO)
        kind = str(raw.get("deploymentType", "")).casefold()
        return Deployment.CLOUD.value if kind == "cloud" else Deployment.DATACENTER.value

    def transitions(self, issue_key: str) -> list[JiraTransition]:
        """Transitions the ticket offers right now."""
        raw = self._call("GET", TRANSITIONS.format(key=_seg(issue_key)))
        return [
            JiraTransition(
                id=str(t["id"]), name=t.get("name", ""), to_status=t.get("to", {}).get("name", ""),
                to_category=((t.get("to") or {}).get("statusCategory") or {}).get("key", ""),
            )
            for t in raw.get("transitions", [])
        ]

    def myself(self) -> Person:
        """The user mailunblock authenticates as (a ``JiraUser``)."""
        return _user(self._call("GET", MYSELF))

    def check_jql(self, jql: str) -> None:
        """Raise PermanentError with Jira's message when ``jql`` is not a valid, bounded query."""
        if self._deployment is Deployment.CLOUD:
            body: dict[str, Any] = {"jql": jql, "fields": ["id"], "maxResults": 1}
            self._call("POST", SEARCH_JQL, json=body, safe=True)
        else:
            params = {"jql": jql, "fields": "id", "maxResults": "1", "validateQuery": "strict"}
            self._call("GET", SEARCH, params=params)

    def group_exists(self, name: str) -> bool:
        """True when a group with exactly this name (case-insensitive) exists."""
        try:
            self._call("GET", GROUP_MEMBERS, params={"groupname": name, "maxResults": "1"})
        except NotFoundError:
            return False
        return True

    def user_locale(self, user: Person) -> tuple[str | None, str | None]:
        """The user's Jira locale and time zone, when their profile shows them."""
        if not isinstance(user, JiraUser):
            return None, None
        if self._deployment is Deployment.CLOUD:
            params = {"accountId": user.account_id or ""}
        else:
            params = {"username": user.name or ""}
        raw = self._call("GET", USER, params=params)
        return raw.get("locale"), raw.get("timeZone")

    # --- plumbing -------------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json: Any = None,
        safe: bool | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """One request; ``safe`` defaults to True for GET/PUT (reads, idempotent updates)."""
        url = f"{self._url}{path}"
        retry = safe if safe is not None else method in ("GET", "PUT")

        def once() -> Any:
            response = send(self._session, method, url, service=SERVICE, params=params, json=json,
                            headers=headers)
            if not response.ok:
                raise _jira_error(response)
            document = json_body(response)
            return {} if document is None else document

        return self._policy.call(once, safe=retry)

    def _issue(self, raw: dict[str, Any]) -> Ticket:
        fields = raw.get("fields", {})
        status = fields.get("status") or {}
        reporter = fields.get("reporter")
        embedded = fields.get("comment") or {}
        comments = embedded.get("comments", [])
        if int(embedded.get("total") or 0) > len(comments):
            # Embedded comments are capped (search answers): read them all from the comment resource,
            # so no approval on a long ticket is missed.
            comments = list(self._all_comments(str(raw["key"])))
        return Ticket(
            key=raw["key"],
            id=str(raw.get("id", "")),
            summary=fields.get("summary") or "",
            description=_text(fields.get("description")),
            status=status.get("name", ""),
            status_category=(status.get("statusCategory") or {}).get("key", ""),
            labels=tuple(fields.get("labels") or ()),
            reporter=_user(reporter) if reporter else None,
            created=_instant(fields.get("created")),
            updated=_instant(fields.get("updated")),
            comments=tuple(_comment(c) for c in comments),
            affected_account=_field_value(fields.get(self._affected_field))
            if self._affected_field else None,
            status_changes=_status_changes(raw.get("changelog") or {}),
        )


def _head(raw: dict[str, Any]) -> TicketHead:
    """A light search result (``LIGHT_FIELDS``) as the ticket's head."""
    fields = raw.get("fields") or {}
    status = fields.get("status") or {}
    return TicketHead(
        key=str(raw.get("key", "")),
        id=str(raw["id"]),
        status=status.get("name", ""),
        status_category=(status.get("statusCategory") or {}).get("key", ""),
        labels=tuple(fields.get("labels") or ()),
        updated=_instant(fields.get("updated")),
    )


def _seg(value: str) -> str:
    return quote(value, safe="")


def _jira_error(response: requests.Response) -> ConnectorError:
    body = json_body(response)
    messages: list[str] = []
    if isinstance(body, dict):
        messages += [str(m) for m in body.get("errorMessages") or ()]
        errors = body.get("errors") or {}
        if isinstance(errors, dict):
            messages += [f"{k}: {v}" for k, v in errors.items()]
        if body.get("message"):
            messages.append(str(body["message"]))
    message = "; ".join(messages) or f"HTTP {response.status_code} {response.reason or ''}".strip()
    return error_for_status(
        response.status_code,
        message,
        service=SERVICE,
        retry_after=_retry_after(response),
    )


def _retry_after(response: requests.Response) -> float | None:
    now = datetime.now(UTC)
    seconds = retry_after_seconds(response.headers, now)
    return seconds if seconds is not None else rate_limit_reset_seconds(response.headers, now)


def _text(value: Any) -> str:
    """Plain text of a v2 string or a v3 Atlassian Document Format node."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        if value.get("type") == "text":
            return str(value.get("text", ""))
        if value.get("type") == "hardBreak":
            return "\n"
        parts = [_text(child) for child in value.get("content") or ()]
        joiner = "\n" if value.get("type") == "doc" else ""
        return joiner.join(parts)
    return str(value)


def _user(raw: dict[str, Any]) -> JiraUser:
    return JiraUser(
        display_name=raw.get("displayName") or raw.get("name") or "",
        account_id=raw.get("accountId"),
        name=raw.get("name"),
        key=raw.get("key"),
        email=raw.get("emailAddress"),
        locale=raw.get("locale"),
        time_zone=raw.get("timeZone"),
    )


def _comment(raw: dict[str, Any]) -> Comment:
    # Cloud says jsdPublic; Data Center only shows the sd.public.comment property (when expanded).
    properties = {p.get("key"): p.get("value") for p in raw.get("properties") or () if isinstance(p, dict)}
    jsm_internal = (properties.get("sd.public.comment") or {}).get("internal") is True
    internal = raw.get("jsdPublic") is False or bool(raw.get("visibility")) or jsm_internal
    return Comment(
        id=str(raw["id"]),
        author=_user(raw.get("author") or {}),
        body=_text(raw.get("body")),
        created=_instant(raw.get("created")),
        internal=internal,
    )


def _actor_is(actor: dict[str, Any], user: JiraUser, groups: Collection[str]) -> bool:
    """Whether a project role actor is the user, or one of the user's groups."""
    member = actor.get("actorUser") or {}
    group = actor.get("actorGroup") or {}
    if user.account_id and member.get("accountId") == user.account_id:
        return True
    if user.name and actor.get("type") == "atlassian-user-role-actor" and actor.get("name") == user.name:
        return True
    group_name = group.get("name") or (
        actor.get("name") if actor.get("type") == "atlassian-group-role-actor" else None
    )
    return bool(group_name) and str(group_name).lower() in groups


def _decision(value: Any) -> Decision:
    """JSM's decision string; anything else counts as still pending."""
    try:
        return Decision(str(value or "pending").lower())
    except ValueError:
        return Decision.PENDING


def _sd_datetime(value: Any) -> datetime | None:
    """A servicedeskapi date object ({iso8601, jira, friendly, epochMillis}): epochMillis is exact."""
    if not isinstance(value, dict):
        return None
    if isinstance(value.get("epochMillis"), int):
        return datetime.fromtimestamp(value["epochMillis"] / 1000, UTC)
    return parse_instant(value.get("iso8601"))


def _approval(raw: dict[str, Any]) -> Approval:
    approvers = tuple(
        Approver(_user(entry.get("approver") or {}), _decision(entry.get("approverDecision")))
        for entry in raw.get("approvers") or ()
    )
    return Approval(
        id=str(raw["id"]),
        name=str(raw.get("name") or ""),
        final_decision=_decision(raw.get("finalDecision")),
        approvers=approvers,
        created=_sd_datetime(raw.get("createdDate")) or datetime.fromtimestamp(0, UTC),
        completed=_sd_datetime(raw.get("completedDate")),
        can_answer=bool(raw.get("canAnswerApproval")),
    )


def _status_changes(changelog: dict[str, Any]) -> tuple[StatusChange, ...]:
    changes = [
        StatusChange(
            author=_user(history.get("author") or {}),
            from_status=item.get("fromString") or "",
            to_status=item.get("toString") or "",
            at=_instant(history.get("created")),
        )
        for history in changelog.get("histories", [])
        for item in history.get("items", [])
        if item.get("field") == "status"
    ]
    return tuple(sorted(changes, key=lambda c: c.at))


def _field_value(value: Any) -> str | None:
    """A custom field as text: a string, an option's value, a user's e-mail, or a list's first item."""
    if value is None or value == "":
        return None
    if isinstance(value, list):
        return _field_value(value[0]) if value else None
    if isinstance(value, dict):
        for key in ("emailAddress", "value", "name", "displayName"):
            if value.get(key):
                return str(value[key])
        return None
    return str(value).strip() or None


def _instant(value: str | None) -> datetime:
    """A Jira timestamp (the epoch when absent)."""
    return parse_instant(value) or datetime.fromtimestamp(0, UTC)
