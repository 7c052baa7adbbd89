"""In-memory Jira: users, groups, a project with roles, a workflow, issues, comments and properties.

EMULATOR CODE. ``JiraState`` is thread-safe: every public method takes the state's lock, and the Flask
app renders under :meth:`JiraState.locked`. Errors that Jira would answer with an HTTP error are raised
as :class:`JiraApiError` carrying Jira's status code and body.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import re
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

from mailunblock.sandbox.core import SandboxClock
from mailunblock.sandbox.jira import jql
from mailunblock.sandbox.jira.seed import demo_scenario

# statusCategory key -> (id, name, colorName), as Jira defines them.
STATUS_CATEGORIES: MappingProxyType[str, tuple[int, str, str]] = MappingProxyType({
    "undefined": (1, "No Category", "medium-gray"),
    "new": (2, "To Do", "blue-gray"),
    "done": (3, "Done", "green"),
    "indeterminate": (4, "In Progress", "yellow"),
})
AFFECTED_ACCOUNT_FIELD = "customfield_10050"
ISSUE_NOT_FOUND = "Issue does not exist or you do not have permission to see it."
SD_PUBLIC_COMMENT = "sd.public.comment"
_RELATIVE = re.compile(r"^([+-]?)(\d+)([wdhm])$")
_DATE_FORMATS = ("%Y/%m/%d %H:%M", "%Y-%m-%d %H:%M", "%Y/%m/%d", "%Y-%m-%d")


class JiraApiError(Exception):
    """An error Jira answers with ``status`` and a JSON ``body``."""

    def __init__(self, status: int, messages: Iterable[str] = (), errors: dict[str, str] | None = None):
        self.status = status
        self.body: dict[str, Any] = {"errorMessages": list(messages), "errors": errors or {}}
        super().__init__(f"{status}: {self.body}")


def not_found(message: str = ISSUE_NOT_FOUND) -> JiraApiError:
    """A 404 with Jira's body."""
    return JiraApiError(404, [message])


@dataclass
class User:
    """A Jira account (Cloud: accountId; Data Center: name/key)."""

    account_id: str
    name: str
    key: str
    display_name: str
    email: str
    locale: str = "en_US"
    time_zone: str = "UTC"
    groups: set[str] = field(default_factory=set)
    active: bool = True
    account_type: str = "atlassian"
    email_visible: bool = True

    @property
    def zone(self) -> ZoneInfo:
        """The user's profile time zone."""
        return ZoneInfo(self.time_zone)


@dataclass(frozen=True)
class Group:
    """A user group."""

    name: str
    group_id: str


@dataclass
class Role:
    """A project role and its actors."""

    id: int
    name: str
    description: str = ""
    users: set[str] = field(default_factory=set)  # account ids
    groups: set[str] = field(default_factory=set)


@dataclass
class Project:
    """A project; ``service_desk`` marks a Jira Service Management project."""

    id: str
    key: str
    name: str
    service_desk: bool
    issue_type: str
    roles: dict[int, Role] = field(default_factory=dict)
    next_number: int = 1


@dataclass(frozen=True)
class Status:
    """A workflow status and its category key (new / indeterminate / done)."""

    id: str
    name: str
    category: str


@dataclass(frozen=True)
class Transition:
    """A named workflow transition; no ``sources`` means global (from any status)."""

    id: str
    name: str
    to: str
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class LinkType:
    """An issue link type."""

    id: str
    name: str
    inward: str
    outward: str


@dataclass
class Comment:
    """A comment; ``internal`` is JSM's "internal note" (jsdPublic false)."""

    id: str
    author: str  # account id
    body: str
    created: datetime
    updated: datetime
    update_author: str
    visibility: dict[str, str] | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    internal: bool = False


@dataclass(frozen=True)
class AutoAnswer:
    """A person who answers at once every comment whose ``property_key`` property matches ``marker``.

    Emulates an agent approving each plan as soon as it appears: ``marker`` is searched in the
    property value's ``"marker"`` entry (or in the value itself when it is a string).
    """

    author: str
    marker: re.Pattern[str]
    property_key: str
    body: str
    internal: bool = True

    def answers(self, comment: Comment) -> bool:
        """Whether ``comment`` calls for this person's answer."""
        value = comment.properties.get(self.property_key)
        text = value.get("marker") if isinstance(value, dict) else value
        return isinstance(text, str) and self.marker.search(text) is not None


@dataclass
class History:
    """One changelog entry."""

    id: str
    author: str | None
    created: datetime
    items: list[dict[str, str | None]]


@dataclass(frozen=True)
class Link:
    """An issue link between two issue ids."""

    id: str
    type: LinkType
    inward_id: str
    outward_id: str


@dataclass
class Approver:
    """One approver of a JSM approval and their answer ("pending", "approved" or "declined")."""

    account: str  # account id
    decision: str = "pending"


@dataclass
class Approval:
    """A JSM native approval on a request: approvers, how many must approve, the final decision."""

    id: str
    name: str
    approvers: list[Approver]
    created: datetime
    required: int = 1
    final_decision: str = "pending"
    completed: datetime | None = None


@dataclass
class Issue:
    """An issue and everything hanging off it."""

    id: str
    key: str
    project: str
    summary: str
    description: str
    reporter: str
    status: str
    created: datetime
    updated: datetime
    labels: list[str] = field(default_factory=list)
    assignee: str | None = None
    resolution_date: datetime | None = None
    custom: dict[str, Any] = field(default_factory=dict)
    comments: list[Comment] = field(default_factory=list)
    properties: dict[str, Any] = field(default_factory=dict)
    changelog: list[History] = field(default_factory=list)
    approvals: list[Approval] = field(default_factory=list)

    def touch(self, at: datetime) -> None:
        """Record a change at ``at``: in Jira every change moves ``updated``, each to its own instant.

        A frozen emulator clock gives several changes one time; each still moves ``updated`` (by a
        millisecond), as in Jira, where clients rely on an unchanged ``updated`` meaning no change.
        """
        self.updated = max(at, self.updated + timedelta(milliseconds=1))


@dataclass(frozen=True)
class Notification:
    """An email Jira would send the reporter about a public comment."""

    to: str
    issue_key: str
    comment_id: str
    subject: str
    body: str
    locale: str
    at: datetime


class JiraState:
    """Thread-safe in-memory Jira Cloud / Data Center.

    ``from_scenario`` reads the scenario TOML's ``[jira]`` table (see :func:`demo_scenario` in
    ``mailunblock.sandbox.jira.seed`` for a complete example, which is also the demo data)::

        [jira]
        deployment = "cloud"             # or "datacenter" (PAT auth, /rest/api/2/search, name/key users)
        site = "contoso-help"            # shown in serverInfo; Cloud base is <site>.atlassian.net
        bot = "mailunblock"              # user (name, email or accountId) the bot token logs in as
        search_lag_seconds = 0           # >0: search sees writes only after this delay (eventual
                                         # consistency) unless the issue id is in reconcileIssues

        [[jira.groups]]                  # name, optional group_id
        name = "helpdesk-agents"

        [[jira.users]]                   # name (DC username, also a handle for control methods),
        name = "alice"                   # display_name, email, locale ("fr_FR", "en_US"), time_zone
        display_name = "Alice Martin"    # (IANA), groups, active, account_type ("atlassian",
        email = "alice@msp-helpdesk.example"  # "customer" for JSM portal customers, "app"),
        locale = "en_US"                 # email_visible (false hides emailAddress as Cloud privacy
        time_zone = "Europe/London"      # settings do), optional account_id (else derived from email)
        groups = ["helpdesk-agents"]

        [[jira.projects]]                # key, id, name, service_desk, issue_type
        key = "HELP"
        service_desk = true
        [[jira.projects.roles]]          # id, name, description, users (handles), groups
        id = 10100
        name = "Service Desk Team"
        groups = ["helpdesk-agents"]

        [jira.workflow]                  # initial status; statuses {id, name, category:
        initial = "Waiting for support"  # new|indeterminate|done}; transitions {id, name, to,
        [[jira.workflow.statuses]]       # from = [...] (empty: global)}
        [[jira.workflow.transitions]]

        [[jira.link_types]]              # id, name, inward, outward

        [[jira.issues]]                  # project, summary, description, reporter (handle), labels,
        summary = "Cannot send mail"     # status, created_minutes_ago (offset before the clock's
        reporter = "adele.vance@contoso.com"  # start), assignee, affected_account
                                         # (customfield_10050), properties {key = value}

    API tokens are never in the scenario: the server calls :meth:`set_bot_token` (and tests may call
    :meth:`set_api_token` for other users). Cloud authenticates ``email:token`` with HTTP basic;
    Data Center authenticates ``Bearer <token>`` as a personal access token.
    """

    def __init__(self, clock: SandboxClock, *, deployment: str = "cloud", site: str = "sandbox") -> None:
        if deployment not in ("cloud", "datacenter"):
            raise ValueError(f"jira.deployment must be 'cloud' or 'datacenter', not {deployment!r}")
        self._lock = threading.RLock()
        self.clock = clock
        self.deployment = deployment
        self.site = site
        self.bot_account: str | None = None
        self.auto_answer: AutoAnswer | None = None
        self.search_lag = timedelta()
        self.users: dict[str, User] = {}
        self.groups: dict[str, Group] = {}
        self.projects: dict[str, Project] = {}
        self.statuses: dict[str, Status] = {}
        self.transitions: list[Transition] = []
        self.initial_status = ""
        self.link_types: dict[str, LinkType] = {}
        self.issues: dict[str, Issue] = {}  # by id
        self.links: list[Link] = []
        self._tokens: dict[str, str] = {}  # sha256(token) -> account id
        self._notifications: list[Notification] = []
        self._search_view: dict[str, tuple[Issue | None, datetime]] = {}
        self._next_issue_id = 10000
        self._next_comment_id = 10000
        self._next_history_id = 10000
        self._next_link_id = 10000
        self._next_approval_id = 1

    # ----------------------------------------------------------------- construction

    @classmethod
    def from_scenario(cls, section: dict[str, Any], clock: SandboxClock) -> JiraState:
        """Build the state from a scenario's ``[jira]`` table (an empty table gives the demo data)."""
        section = section or demo_scenario()
        state = cls(
            clock,
            deployment=str(section.get("deployment", "cloud")),
            site=str(section.get("site", "sandbox")),
        )
        state.search_lag = timedelta(seconds=float(section.get("search_lag_seconds", 0)))
        for group in section.get("groups", []):
            state.add_group(group["name"], group.get("group_id"))
        for spec in section.get("users", []):
            state.add_user(**spec)
        workflow = section.get("workflow", {})
        for status in workflow.get("statuses", []):
            state.statuses[status["name"]] = Status(
                str(status["id"]), status["name"], status["category"]
            )
        for tr in workflow.get("transitions", []):
            state.transitions.append(
                Transition(str(tr["id"]), tr["name"], tr["to"], tuple(tr.get("from", ())))
            )
        state.initial_status = workflow.get("initial") or next(iter(state.statuses), "")
        for lt in section.get("link_types", []):
            state.link_types[lt["name"]] = LinkType(
                str(lt["id"]), lt["name"], lt["inward"], lt["outward"]
            )
        for spec in section.get("projects", []):
            state._add_project(spec)
        if "bot" in section:
            state.bot_account = state.user(section["bot"]).account_id
        for spec in section.get("issues", []):
            created = clock.now() - timedelta(minutes=float(spec.get("created_minutes_ago", 0)))
            key = state.create_issue(
                spec["summary"],
                spec["reporter"],
                project=spec.get("project", next(iter(state.projects))),
                description=spec.get("description", ""),
                labels=spec.get("labels", ()),
                status=spec.get("status"),
                assignee=spec.get("assignee"),
                affected_account=spec.get("affected_account"),
                created=created,
            )
            for prop_key, value in spec.get("properties", {}).items():
                state.set_property(key, prop_key, value)
        return state

    def add_group(self, name: str, group_id: str | None = None) -> None:
        """Create a group."""
        with self._lock:
            gid = group_id or str(uuid.uuid5(uuid.NAMESPACE_URL, f"group:{name}"))
            self.groups[name] = Group(name, gid)

    def add_user(
        self,
        name: str,
        display_name: str,
        email: str,
        *,
        account_id: str | None = None,
        locale: str = "en_US",
        time_zone: str = "UTC",
        groups: Iterable[str] = (),
        active: bool = True,
        account_type: str = "atlassian",
        email_visible: bool = True,
    ) -> User:
        """Create a user; the account id is derived from the email unless given."""
        with self._lock:
            digest = hashlib.sha256(email.lower().encode()).hexdigest()
            if account_id is None:
                account_id = (
                    f"qm:{uuid.UUID(digest[:32])}" if account_type == "customer" else digest[:24]
                )
            user = User(
                account_id=account_id,
                name=name,
                key=f"JIRAUSER{10000 + len(self.users)}",
                display_name=display_name,
                email=email,
                locale=locale,
                time_zone=time_zone,
                groups=set(groups),
                active=active,
                account_type=account_type,
                email_visible=email_visible,
            )
            for group in user.groups:
                if group not in self.groups:
                    self.add_group(group)
            self.users[account_id] = user
            return user

    def _add_project(self, spec: dict[str, Any]) -> None:
        project = Project(
            id=str(spec.get("id", 10000 + len(self.projects))),
            key=spec["key"],
            name=spec.get("name", spec["key"]),
            service_desk=bool(spec.get("service_desk", False)),
            issue_type=spec.get("issue_type", "Task"),
        )
        for role in spec.get("roles", []):
            project.roles[int(role["id"])] = Role(
                id=int(role["id"]),
                name=role["name"],
                description=role.get("description", ""),
                users={self.user(ref).account_id for ref in role.get("users", [])},
                groups=set(role.get("groups", [])),
            )
        self.projects[project.key] = project

    # ----------------------------------------------------------------- locking and auth

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the state's lock (for rendering a consistent response)."""
        with self._lock:
            yield

    def set_bot_token(self, token: str) -> None:
        """Accept ``token`` as the bot's API token (Cloud) or personal access token (DC)."""
        if self.bot_account is None:
            raise ValueError("the [jira] scenario names no bot user")
        self.set_api_token(self.bot_account, token)

    def set_api_token(self, user_ref: str, token: str) -> None:
        """Accept ``token`` for the given user (name, email or accountId)."""
        with self._lock:
            self._tokens[_digest(token)] = self.user(user_ref).account_id

    def authenticate_basic(self, email: str, token: str) -> User | None:
        """The active user whose email and API token match, else None (Cloud)."""
        with self._lock:
            account = self._tokens.get(_digest(token))
            user = self.users.get(account or "")
            if user and user.active and hmac.compare_digest(user.email.lower(), email.lower()):
                return user
            return None

    def authenticate_bearer(self, token: str) -> User | None:
        """The active user owning this personal access token, else None (Data Center)."""
        with self._lock:
            user = self.users.get(self._tokens.get(_digest(token), ""))
            return user if user and user.active else None

    # ----------------------------------------------------------------- lookups

    def answer_automatically(self, author: str, marker: str, *, property_key: str, body: str) -> AutoAnswer:
        """From now on ``author`` answers ``body`` to every comment whose marker property matches ``marker``.

        KeyError for an unknown author, ``re.error`` for a bad pattern.
        """
        answer = AutoAnswer(self.user(author).name, re.compile(marker), property_key, body)
        with self._lock:
            self.auto_answer = answer
        return answer

    def user(self, ref: str) -> User:
        """A user by accountId, name, key or email (case-insensitive); KeyError if unknown."""
        with self._lock:
            if ref in self.users:
                return self.users[ref]
            lowered = ref.lower()
            for user in self.users.values():
                if lowered in (user.name.lower(), user.key.lower(), user.email.lower()):
                    return user
            raise KeyError(f"no Jira user {ref!r}")

    def find_issue(self, id_or_key: str) -> Issue:
        """An issue by id or key, else the Jira 404."""
        with self._lock:
            if id_or_key in self.issues:
                return self.issues[id_or_key]
            for issue in self.issues.values():
                if issue.key.lower() == id_or_key.lower():
                    return issue
            raise not_found()

    def status_of(self, issue: Issue) -> Status:
        """The issue's status object."""
        return self.statuses[issue.status]

    def roles_of(self, user: User, project: Project) -> list[Role]:
        """Project roles the user plays, directly or through a group."""
        return [
            role
            for role in project.roles.values()
            if user.account_id in role.users or role.groups & user.groups
        ]

    def can_browse(self, user: User, issue: Issue) -> bool:
        """Agents (any project role) see every issue; others only the issues they reported."""
        project = self.projects[issue.project]
        return bool(self.roles_of(user, project)) or issue.reporter == user.account_id

    def comment_visible(self, user: User, issue: Issue, comment: Comment) -> bool:
        """Whether ``user`` may read ``comment`` (visibility restriction, JSM internal notes)."""
        project = self.projects[issue.project]
        agent = bool(self.roles_of(user, project))
        if comment.internal and not agent:
            return False
        vis = comment.visibility
        if vis is None:
            return True
        if vis["type"] == "group":
            return vis["value"] in user.groups
        return any(role.name == vis["value"] for role in self.roles_of(user, project))

    def available_transitions(self, issue: Issue) -> list[Transition]:
        """Transitions available from the issue's current status."""
        return [
            tr
            for tr in self.transitions
            if (not tr.sources or issue.status in tr.sources) and tr.to != issue.status
        ]

    # ----------------------------------------------------------------- control methods

    def create_issue(
        self,
        summary: str,
        reporter: str,
        *,
        project: str = "HELP",
        description: str = "",
        labels: Iterable[str] = (),
        status: str | None = None,
        assignee: str | None = None,
        affected_account: str | None = None,
        created: datetime | None = None,
    ) -> str:
        """Create an issue; return its key."""
        with self._lock:
            proj = self.projects[project]
            labels = list(labels)
            _validate_labels(labels)
            when = created or self.clock.now()
            issue = Issue(
                id=str(self._next_issue_id),
                key=f"{proj.key}-{proj.next_number}",
                project=proj.key,
                summary=summary,
                description=description,
                reporter=self.user(reporter).account_id,
                status=status or self.initial_status,
                created=when,
                updated=when,
                labels=labels,
                assignee=self.user(assignee).account_id if assignee else None,
            )
            if issue.status not in self.statuses:
                raise KeyError(f"unknown status {issue.status!r}")
            if self.statuses[issue.status].category == "done":
                issue.resolution_date = when
            if affected_account is not None:
                issue.custom[AFFECTED_ACCOUNT_FIELD] = affected_account
            self._next_issue_id += 1
            proj.next_number += 1
            self._search_view[issue.id] = (None, self.clock.now() + self.search_lag)
            self.issues[issue.id] = issue
            return issue.key

    def add_comment(
        self,
        key: str,
        author: str,
        body: str,
        *,
        internal: bool = False,
        visibility: dict[str, str] | None = None,
        properties: dict[str, Any] | None = None,
    ) -> str:
        """Add a comment as ``author`` (handle); return the comment id. Public ones email the reporter."""
        with self._lock:
            issue = self.find_issue(key)
            props = dict(properties or {})
            if internal:
                props[SD_PUBLIC_COMMENT] = {"internal": True}
            internal = _internal_flag(props)
            account = self.user(author).account_id
            self._before_write(issue)
            now = self.clock.now()
            comment = Comment(
                id=str(self._next_comment_id),
                author=account,
                body=body,
                created=now,
                updated=now,
                update_author=account,
                visibility=visibility,
                properties=props,
                internal=internal,
            )
            self._next_comment_id += 1
            issue.comments.append(comment)
            issue.touch(now)
            self._notify(issue, comment)
            answer = self.auto_answer
            if answer is not None and answer.answers(comment) and comment.author != self.user(answer.author).account_id:
                self.add_comment(issue.key, answer.author, answer.body, internal=answer.internal)
            return comment.id

    def update_comment(self, key: str, comment_id: str, author: str, body: str,
                       visibility: dict[str, str] | None) -> Comment:
        """Replace a comment's body (and visibility); return it."""
        with self._lock:
            issue = self.find_issue(key)
            comment = self.find_comment(issue, comment_id)
            self._before_write(issue)
            comment.body = body
            comment.visibility = visibility
            comment.update_author = self.user(author).account_id
            comment.updated = self.clock.now()
            issue.touch(comment.updated)
            return comment

    def find_comment(self, issue: Issue, comment_id: str) -> Comment:
        """A comment of ``issue`` by id, else Jira's 404."""
        for comment in issue.comments:
            if comment.id == comment_id:
                return comment
        raise not_found(f"Can not find a comment for the id: {comment_id}.")

    def comment_by_id(self, comment_id: str) -> tuple[Issue, Comment]:
        """A comment anywhere, with its issue; 404 if unknown."""
        with self._lock:
            for issue in self.issues.values():
                for comment in issue.comments:
                    if comment.id == comment_id:
                        return issue, comment
            raise not_found(f"Can not find a comment for the id: {comment_id}.")

    def set_comment_property(self, comment_id: str, prop_key: str, value: Any) -> bool:
        """Set a comment property (True if created); ``sd.public.comment`` flips internal/public."""
        with self._lock:
            _, comment = self.comment_by_id(comment_id)
            created = prop_key not in comment.properties
            comment.properties[prop_key] = value
            comment.internal = _internal_flag(comment.properties)
            return created

    def set_labels(self, key: str, labels: Iterable[str], actor: str | None = None) -> None:
        """Replace the labels (records a changelog entry and bumps ``updated``)."""
        with self._lock:
            issue = self.find_issue(key)
            new = list(dict.fromkeys(labels))
            _validate_labels(new)
            if new == issue.labels:
                return
            self._before_write(issue)
            item: dict[str, str | None] = {
                "field": "labels",
                "fieldtype": "jira",
                "fieldId": "labels",
                "from": None,
                "fromString": " ".join(issue.labels),
                "to": None,
                "toString": " ".join(new),
            }
            issue.labels = new
            self._record(issue, actor, [item])

    def update_fields(self, key: str, values: dict[str, Any], actor: str) -> None:
        """Set plain fields (summary, description, customfield_10050) with changelog entries."""
        with self._lock:
            issue = self.find_issue(key)
            self._before_write(issue)
            items: list[dict[str, str | None]] = []
            for name, value in values.items():
                custom = name == AFFECTED_ACCOUNT_FIELD
                old = issue.custom.get(name) if custom else getattr(issue, name)
                if custom:
                    issue.custom[name] = value
                else:
                    setattr(issue, name, value)
                items.append({
                    "field": "Affected account" if custom else name,
                    "fieldtype": "custom" if custom else "jira",
                    "fieldId": name,
                    "from": None,
                    "fromString": old,
                    "to": None,
                    "toString": value,
                })
            self._record(issue, actor, items)

    def delete_comment(self, key: str, comment_id: str) -> None:
        """Delete a comment (bumps ``updated``)."""
        with self._lock:
            issue = self.find_issue(key)
            comment = self.find_comment(issue, comment_id)
            self._before_write(issue)
            issue.comments.remove(comment)
            issue.touch(self.clock.now())

    def set_status(self, key: str, status: str, actor: str | None = None) -> None:
        """Force a status (no workflow check); changelog entry authored by ``actor`` if given."""
        with self._lock:
            issue = self.find_issue(key)
            if status not in self.statuses:
                raise KeyError(f"unknown status {status!r}")
            self._move(issue, self.statuses[status], actor)

    def transition(self, key: str, name_or_id: str, actor: str) -> None:
        """Perform an available transition by name or id as ``actor``; Jira's 400 if unavailable."""
        with self._lock:
            issue = self.find_issue(key)
            for tr in self.available_transitions(issue):
                if name_or_id in (tr.id, tr.name) or name_or_id.lower() == tr.name.lower():
                    self._move(issue, self.statuses[tr.to], actor)
                    return
            raise JiraApiError(400, [f"Transition id '{name_or_id}' is not valid for this issue."])

    def link(self, type_name: str, inward: str, outward: str) -> str:
        """Link two issues; return the link id."""
        with self._lock:
            link_type = self.link_types.get(type_name)
            if link_type is None:
                for candidate in self.link_types.values():
                    if candidate.id == type_name:
                        link_type = candidate
            if link_type is None:
                raise not_found(f"No issue link type with name '{type_name}' found.")
            first, second = self.find_issue(inward), self.find_issue(outward)
            for issue in (first, second):
                self._before_write(issue)
                issue.touch(self.clock.now())
            link = Link(str(self._next_link_id), link_type, first.id, second.id)
            self._next_link_id += 1
            self.links.append(link)
            return link.id

    def set_property(self, key: str, prop_key: str, value: Any) -> bool:
        """Set an issue property; return True if it was created. Does not change ``updated``."""
        with self._lock:
            issue = self.find_issue(key)
            self._before_write(issue)
            created = prop_key not in issue.properties
            issue.properties[prop_key] = copy.deepcopy(value)
            return created

    def delete_property(self, key: str, prop_key: str) -> None:
        """Delete an issue property; 404 if absent."""
        with self._lock:
            issue = self.find_issue(key)
            if prop_key not in issue.properties:
                raise not_found(f"The property with key '{prop_key}' does not exist.")
            self._before_write(issue)
            del issue.properties[prop_key]

    def open_approval(
        self, key: str, name: str, approvers: Iterable[str], *, required: int = 1
    ) -> str:
        """Open a pending JSM approval on a service-desk request; return its id.

        ``approvers`` are user handles; ``required`` approvals make it "approved" (JSM's "number of
        approvers" condition), and one decline declines it.
        """
        with self._lock:
            issue = self.find_issue(key)
            if not self.projects[issue.project].service_desk:
                raise ValueError(f"{issue.key} is not a service desk request")
            people = [Approver(self.user(ref).account_id) for ref in approvers]
            if not people or not 1 <= required <= len(people):
                raise ValueError("an approval needs approvers and 1 <= required <= len(approvers)")
            approval = Approval(str(self._next_approval_id), name, people, self.clock.now(),
                                required)
            self._next_approval_id += 1
            issue.approvals.append(approval)
            return approval.id

    def find_approval(self, issue: Issue, approval_id: str) -> Approval:
        """An approval of ``issue`` by id, else a 404."""
        for approval in issue.approvals:
            if approval.id == approval_id:
                return approval
        raise not_found(f"Approval {approval_id} does not exist.")

    def can_answer(self, user: User, approval: Approval) -> bool:
        """True when ``user`` is a pending approver of a still pending approval."""
        return approval.final_decision == "pending" and any(
            a.account == user.account_id and a.decision == "pending" for a in approval.approvers
        )

    def answer_approval(self, key: str, approval_id: str, user: str, decision: str) -> Approval:
        """Record ``user``'s "approve" or "decline"; settle the final decision when it is reached."""
        if decision not in ("approve", "decline"):
            raise JiraApiError(400, [f"Invalid decision '{decision}': use approve or decline."])
        with self._lock:
            issue = self.find_issue(key)
            approval = self.find_approval(issue, approval_id)
            account = self.user(user).account_id
            if not self.can_answer(self.users[account], approval):
                raise JiraApiError(403, ["You cannot answer this approval."])
            self._before_write(issue)
            now = self.clock.now()
            answer = next(a for a in approval.approvers if a.account == account)
            answer.decision = "approved" if decision == "approve" else "declined"
            approved = sum(a.decision == "approved" for a in approval.approvers)
            if answer.decision == "declined":
                approval.final_decision = "declined"
            elif approved >= approval.required:
                approval.final_decision = "approved"
            if approval.final_decision != "pending":
                approval.completed = now
            issue.touch(now)
            return copy.deepcopy(approval)

    def approvals(self, key: str) -> list[Approval]:
        """Copies of the issue's JSM approvals, oldest first."""
        with self._lock:
            return copy.deepcopy(self.find_issue(key).approvals)

    def issue(self, key: str) -> Issue:
        """A copy of the issue (labels, status, comments, changelog, properties…)."""
        with self._lock:
            return copy.deepcopy(self.find_issue(key))

    def comments(self, key: str) -> list[Comment]:
        """Copies of the issue's comments, with visibility, ``internal`` and properties."""
        with self._lock:
            return copy.deepcopy(self.find_issue(key).comments)

    def notifications(self, key: str) -> list[Notification]:
        """Emails sent to the reporter for public comments on this issue."""
        with self._lock:
            issue = self.find_issue(key)
            return [n for n in self._notifications if n.issue_key == issue.key]

    def properties(self, key: str) -> dict[str, Any]:
        """A copy of the issue's properties."""
        with self._lock:
            return copy.deepcopy(self.find_issue(key).properties)

    def links_of(self, issue: Issue) -> list[Link]:
        """Links touching an issue."""
        return [link for link in self.links if issue.id in (link.inward_id, link.outward_id)]

    # ----------------------------------------------------------------- search

    def search(self, query: str, user: User, reconcile: Iterable[int | str] = ()) -> list[Issue]:
        """Issues matching ``query`` that ``user`` may browse, ordered; JqlError -> Jira's 400."""
        with self._lock:
            try:
                parsed = jql.parse(query)
                if parsed.where is not None:
                    self._validate(parsed.where)
                keys = [self._sort_field(k) for k in parsed.order_by]
            except jql.JqlError as exc:
                raise JiraApiError(400, [exc.message]) from exc
            if self.deployment == "cloud" and not parsed.bounded:
                raise JiraApiError(
                    400,
                    ["Unbounded JQL queries are not allowed here. "
                     "Please add a search restriction to your query."],
                )
            wanted = {str(r) for r in reconcile}
            candidates = [self._indexed(issue, wanted) for issue in self.issues.values()]
            found = [
                issue
                for issue in candidates
                if issue is not None
                and self.can_browse(user, issue)
                and (parsed.where is None or self._matches(parsed.where, issue, user))
            ]
            found.sort(key=lambda issue: int(issue.id), reverse=True)  # default: key DESC
            for sort_field, descending in reversed(keys):
                found.sort(key=partial(_sort_value, self, name=sort_field), reverse=descending)
            return found

    def _indexed(self, issue: Issue, reconcile: set[str]) -> Issue | None:
        """What the (eventually consistent) search index holds for an issue."""
        snapshot, visible_at = self._search_view.get(issue.id, (issue, self.clock.now()))
        if issue.id in reconcile or self.clock.now() >= visible_at:
            return issue
        return snapshot

    def _before_write(self, issue: Issue) -> None:
        if not self.search_lag:
            return
        now = self.clock.now()
        _, visible_at = self._search_view.get(issue.id, (None, now))
        if now >= visible_at:  # the index had caught up: it keeps the pre-write copy for a while
            self._search_view[issue.id] = (copy.deepcopy(issue), now + self.search_lag)

    def _validate(self, node: jql.Node) -> None:
        if isinstance(node, jql.And | jql.Or):
            for child in node.children:
                self._validate(child)
        elif isinstance(node, jql.Not):
            self._validate(node.child)
        else:
            _check_operator(node)
            for value in _operand_values(node.operand):
                if isinstance(value, jql.Function):
                    if value.name.lower() not in _FUNCTIONS:
                        raise jql.JqlError(f"Unable to find JQL function '{value.name}()'.")
                else:
                    self._check_value(node.field, value.text)

    def _check_value(self, field_name: str, value: str) -> None:
        name = _canonical(field_name)
        known: bool
        if name == "status":
            known = any(value.lower() in (s.name.lower(), s.id) for s in self.statuses.values())
        elif name == "statuscategory":
            known = any(
                value.lower() in (key, label.lower(), str(cid))
                for key, (cid, label, _) in STATUS_CATEGORIES.items()
            )
        elif name == "project":
            known = any(
                value.lower() in (p.key.lower(), p.id, p.name.lower()) for p in self.projects.values()
            )
        elif name in ("reporter", "assignee"):
            known = self._jql_user(value) is not None
        elif name == "key":
            if value.isdigit() or any(i.key.lower() == value.lower() for i in self.issues.values()):
                return
            raise jql.JqlError(f"An issue with key '{value}' does not exist for field '{field_name}'.")
        elif name in ("created", "updated"):
            if _parse_date(value, ZoneInfo("UTC"), self.clock.now()) is None:
                raise jql.JqlError(
                    f"Date value '{value}' for field '{field_name}' is invalid. Valid formats "
                    "include: 'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd', "
                    "or a period format e.g. '-5d', '4w 2d'."
                )
            return
        else:
            return
        if not known:
            raise jql.JqlError(f"The value '{value}' does not exist for the field '{field_name}'.")

    def _jql_user(self, ref: str) -> User | None:
        for user in self.users.values():
            ids = (user.name, user.key) if self.deployment == "datacenter" else (user.account_id,)
            if ref in ids or ref.lower() == user.email.lower():
                return user
        return None

    def _sort_field(self, key: jql.SortKey) -> tuple[str, bool]:
        name = _canonical(key.field)
        if name not in _SORTABLE:
            if name in _FIELD_OPERATORS:
                raise jql.JqlError(f"Field '{key.field}' does not support sorting.")
            raise jql.JqlError(
                f"Field '{key.field}' does not exist or you do not have permission to view it."
            )
        return name, key.descending

    def _matches(self, node: jql.Node, issue: Issue, user: User) -> bool:
        if isinstance(node, jql.And):
            return all(self._matches(child, issue, user) for child in node.children)
        if isinstance(node, jql.Or):
            return any(self._matches(child, issue, user) for child in node.children)
        if isinstance(node, jql.Not):
            return not self._matches(node.child, issue, user)
        return self._clause(node, issue, user)

    def _clause(self, clause: jql.Clause, issue: Issue, user: User) -> bool:
        name = _canonical(clause.field)
        op = clause.operator
        if name in ("created", "updated"):
            stamp: datetime = issue.created if name == "created" else issue.updated
            if op in ("is", "is not"):
                return op == "is not"
            bounds = [self._date_value(v, user) for v in _operand_values(clause.operand)]
            return _compare_dates(op, stamp, bounds)
        if name in ("summary", "description", "text", "comment"):
            haystack = _text_of(issue, name).lower()
            if op in ("is", "is not"):
                return (haystack == "") == (op == "is")
            needle = _operand_values(clause.operand)[0]
            found = isinstance(needle, jql.Value) and needle.text.lower().strip("*") in haystack
            return found if op == "~" else not found
        values = self._field_values(name, issue)
        if op in ("is", "is not"):
            return (not values) == (op == "is")
        wanted: set[str] = set()
        for operand in _operand_values(clause.operand):
            wanted |= self._resolve(name, operand, user)
        hit = bool(values & wanted)
        if op in ("=", "in"):
            return hit
        # Jira: '!=' and 'not in' never match an issue whose field is empty.
        return bool(values) and not hit

    def _field_values(self, name: str, issue: Issue) -> set[str]:
        if name == "labels":
            return {label.lower() for label in issue.labels}
        if name == "status":
            return {issue.status.lower()}
        if name == "statuscategory":
            return {self.statuses[issue.status].category}
        if name == "project":
            return {issue.project.lower()}
        if name == "key":
            return {issue.key.lower(), issue.id}
        if name == "reporter":
            return {issue.reporter}
        if name == "assignee":
            return {issue.assignee} if issue.assignee else set()
        return set()

    def _resolve(self, name: str, operand: jql.Value | jql.Function, user: User) -> set[str]:
        if isinstance(operand, jql.Function):
            fname = operand.name.lower()
            if fname == "currentuser":
                return {user.account_id}
            if fname == "membersof" and operand.args:
                group = operand.args[0]
                return {u.account_id for u in self.users.values() if group in u.groups}
            return set()
        value = operand.text.lower()
        if name == "status":
            return {s.name.lower() for s in self.statuses.values() if value in (s.name.lower(), s.id)}
        if name == "statuscategory":
            return {
                key
                for key, (cid, label, _) in STATUS_CATEGORIES.items()
                if value in (key, label.lower(), str(cid))
            }
        if name == "project":
            return {
                p.key.lower() for p in self.projects.values()
                if value in (p.key.lower(), p.id, p.name.lower())
            }
        if name in ("reporter", "assignee"):
            found = self._jql_user(operand.text)
            return {found.account_id} if found else set()
        return {value}

    def _date_value(self, operand: jql.Value | jql.Function, user: User) -> datetime:
        now = self.clock.now()
        if isinstance(operand, jql.Function):
            local = now.astimezone(user.zone)
            if operand.name.lower() == "startofday":
                return local.replace(hour=0, minute=0, second=0, microsecond=0)
            if operand.name.lower() == "endofday":
                return local.replace(hour=23, minute=59, second=59, microsecond=999999)
            return now
        parsed = _parse_date(operand.text, user.zone, now)
        if parsed is None:  # validated before; keeps mypy honest
            raise JiraApiError(400, [f"Date value '{operand.text}' is invalid."])
        return parsed

    # ----------------------------------------------------------------- internals

    def _move(self, issue: Issue, target: Status, actor: str | None) -> None:
        self._before_write(issue)
        before = self.statuses[issue.status]
        items: list[dict[str, str | None]] = [{
            "field": "status",
            "fieldtype": "jira",
            "fieldId": "status",
            "from": before.id,
            "fromString": before.name,
            "to": target.id,
            "toString": target.name,
        }]
        was_done, now_done = before.category == "done", target.category == "done"
        if was_done != now_done:
            items.append({
                "field": "resolution",
                "fieldtype": "jira",
                "fieldId": "resolution",
                "from": "10000" if was_done else None,
                "fromString": "Done" if was_done else None,
                "to": "10000" if now_done else None,
                "toString": "Done" if now_done else None,
            })
        issue.status = target.name
        issue.resolution_date = self.clock.now() if now_done else None
        self._record(issue, actor, items)

    def _record(self, issue: Issue, actor: str | None, items: list[dict[str, str | None]]) -> None:
        now = self.clock.now()
        author = self.user(actor).account_id if actor else None
        issue.changelog.append(History(str(self._next_history_id), author, now, items))
        self._next_history_id += 1
        issue.touch(now)

    def _notify(self, issue: Issue, comment: Comment) -> None:
        reporter = self.users[issue.reporter]
        if (
            comment.internal
            or comment.visibility is not None
            or comment.author == reporter.account_id
            or not reporter.active
        ):
            return
        author = self.users[comment.author]
        self._notifications.append(
            Notification(
                to=reporter.email,
                issue_key=issue.key,
                comment_id=comment.id,
                subject=f"[JIRA] ({issue.key}) {issue.summary}",
                body=f"{author.display_name} commented:\n\n{comment.body}",
                locale=reporter.locale,
                at=comment.created,
            )
        )


# Supported JQL fields (canonical name -> operators). Aliases map onto these.
_FIELD_OPERATORS: MappingProxyType[str, frozenset[str]] = MappingProxyType({
    **{
        name: frozenset({"=", "!=", "in", "not in", "is", "is not"})
        for name in ("labels", "status", "statuscategory", "project", "key", "reporter", "assignee")
    },
    **{
        name: frozenset({"=", "!=", ">", ">=", "<", "<=", "is", "is not"})
        for name in ("created", "updated")
    },
    **{name: frozenset({"~", "!~", "is", "is not"}) for name in ("summary", "description")},
    **{name: frozenset({"~", "!~"}) for name in ("text", "comment")},
})
_ALIASES = MappingProxyType({"issuekey": "key", "id": "key", "createddate": "created", "updateddate": "updated",
            "label": "labels", "category": "statuscategory"})
_SORTABLE = frozenset({"created", "updated", "key", "status", "summary", "project", "reporter",
                       "assignee", "statuscategory"})
_FUNCTIONS = frozenset({"currentuser", "now", "startofday", "endofday", "membersof"})


def _canonical(field_name: str) -> str:
    lowered = field_name.lower()
    return _ALIASES.get(lowered, lowered)


def _check_operator(clause: jql.Clause) -> None:
    name = _canonical(clause.field)
    allowed = _FIELD_OPERATORS.get(name)
    if allowed is None:
        raise jql.JqlError(
            f"Field '{clause.field}' does not exist or you do not have permission to view it."
        )
    if clause.operator not in allowed:
        raise jql.JqlError(
            f"The operator '{clause.operator}' is not supported by the '{clause.field}' field."
        )


def _operand_values(operand: jql.Operand) -> list[jql.Value | jql.Function]:
    if isinstance(operand, jql.ValueList):
        return list(operand.items)
    if isinstance(operand, jql.Empty):
        return []
    return [operand]


def _parse_date(text: str, zone: ZoneInfo, now: datetime) -> datetime | None:
    """A JQL date: absolute in the searching user's time zone, or relative to now."""
    match = _RELATIVE.match(text.strip())
    if match:
        sign, amount, unit = match.groups()
        delta = {"w": timedelta(weeks=1), "d": timedelta(days=1), "h": timedelta(hours=1),
                 "m": timedelta(minutes=1)}[unit] * int(amount)
        return now - delta if sign == "-" else now + delta
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(text.strip(), fmt).replace(tzinfo=zone)
        except ValueError:
            continue
    return None


def _compare_dates(op: str, stamp: datetime, bounds: list[datetime]) -> bool:
    stamp = stamp.replace(second=0, microsecond=0)  # JQL dates have minute precision
    results = []
    for bound in bounds:
        bound = bound.replace(second=0, microsecond=0)
        results.append({
            "=": stamp == bound, "!=": stamp != bound, ">": stamp > bound,
            ">=": stamp >= bound, "<": stamp < bound, "<=": stamp <= bound,
        }[op])
    return any(results) if op != "!=" else all(results)


def _text_of(issue: Issue, name: str) -> str:
    if name == "summary":
        return issue.summary
    if name == "description":
        return issue.description
    comments = " ".join(c.body for c in issue.comments)
    if name == "comment":
        return comments
    return " ".join((issue.summary, issue.description, comments))


def _sort_value(state: JiraState, issue: Issue, *, name: str) -> Any:
    if name == "key":
        return (issue.project, int(issue.key.rsplit("-", 1)[1]))
    if name in ("created", "updated"):
        return getattr(issue, name)
    if name == "status":
        return issue.status.lower()
    if name == "statuscategory":
        return STATUS_CATEGORIES[state.statuses[issue.status].category][0]
    if name in ("reporter", "assignee"):
        account = getattr(issue, name)
        return state.users[account].display_name.lower() if account else ""
    return str(getattr(issue, name)).lower()


def _validate_labels(labels: list[str]) -> None:
    for label in labels:
        if any(ch.isspace() for ch in label):
            raise JiraApiError(
                400, errors={"labels": f"The label '{label}' contains spaces which is invalid."}
            )
        if len(label) > 255:
            raise JiraApiError(
                400,
                errors={"labels": f"The label '{label}' exceeds the maximum length for a single "
                                  "label of 255 characters."},
            )


def _internal_flag(properties: dict[str, Any]) -> bool:
    value = properties.get(SD_PUBLIC_COMMENT)
    return isinstance(value, dict) and value.get("internal") is True


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
