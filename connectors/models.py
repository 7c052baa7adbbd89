"""Frozen domain objects returned by the connectors.

Connectors turn wire formats (Jira JSON, Graph JSON, Exchange cmdlet rows) into these objects; nothing
above the connector layer sees raw JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class JiraUser:
    """A Jira user: Cloud identifies users by ``account_id``, Data Center by ``name``/``key``."""

    display_name: str
    account_id: str | None = None
    name: str | None = None
    key: str | None = None
    email: str | None = None
    locale: str | None = None
    time_zone: str | None = None

    @property
    def ref(self) -> str:
        """Stable identifier for this user on either deployment."""
        return self.account_id or self.key or self.name or self.display_name


@dataclass(frozen=True)
class JiraComment:
    """One comment on a ticket, with whether it is hidden from the reporter."""

    id: str
    author: JiraUser
    body: str
    created: datetime
    internal: bool = False


@dataclass(frozen=True)
class JiraStatusChange:
    """One status change from the ticket's changelog (who moved it, from where to where)."""

    author: JiraUser
    from_status: str
    to_status: str
    at: datetime


@dataclass(frozen=True)
class JiraIssue:
    """The parts of a ticket mailunblock reads."""

    key: str
    id: str
    summary: str
    description: str
    status: str
    status_category: str  # "new" | "indeterminate" | "done"
    labels: tuple[str, ...]
    reporter: JiraUser | None
    created: datetime
    updated: datetime
    comments: tuple[JiraComment, ...] = ()
    affected_account: str | None = None  # value of the configured custom field, if any
    status_changes: tuple[JiraStatusChange, ...] = ()  # filled when the changelog was requested

    @property
    def is_done(self) -> bool:
        """True when the ticket sits in a status of the Done category."""
        return self.status_category == "done"


@dataclass(frozen=True)
class JiraTransition:
    """A workflow transition available on a ticket right now."""

    id: str
    name: str
    to_status: str
    to_category: str = ""  # the target status's category key: new, indeterminate or done


@dataclass(frozen=True)
class JiraApprover:
    """One approver of a JSM approval and their own decision ("approved", "declined", "pending")."""

    user: JiraUser
    decision: str


@dataclass(frozen=True)
class JiraApproval:
    """A Jira Service Management native approval on a request."""

    id: str
    name: str
    final_decision: str  # "approved" | "declined" | "pending"
    approvers: tuple[JiraApprover, ...]
    created: datetime
    completed: datetime | None = None
    can_answer: bool = False  # whether the caller (our bot) could answer it

    def deciders(self) -> tuple[JiraUser, ...]:
        """The approvers whose own decision made the final one (none while it is pending)."""
        if self.final_decision not in ("approved", "declined"):
            return ()
        return tuple(a.user for a in self.approvers if a.decision == self.final_decision)


@dataclass(frozen=True)
class DirectoryUser:
    """An Entra ID (Azure AD) user as Graph describes it."""

    id: str
    user_principal_name: str
    mail: str | None
    proxy_addresses: tuple[str, ...]
    account_enabled: bool
    user_type: str  # "Member" | "Guest"
    on_premises_sync_enabled: bool
    last_password_change: datetime | None
    display_name: str = ""
    preferred_language: str | None = None
    # Graph's signInSessionsValidFromDateTime: tokens issued before it are void; revoking moves it to now.
    sign_in_sessions_valid_from: datetime | None = None

    @property
    def smtp_addresses(self) -> tuple[str, ...]:
        """Every SMTP address of the account, primary first, lower-cased and de-duplicated."""
        primary = [p[5:] for p in self.proxy_addresses if p.startswith("SMTP:")]
        secondary = [p[5:] for p in self.proxy_addresses if p.lower().startswith("smtp:")]
        ordered = [*primary, *([self.mail] if self.mail else []), *secondary]
        seen: dict[str, None] = {}
        for address in ordered:
            seen.setdefault(address.lower(), None)
        return tuple(seen)


@dataclass(frozen=True)
class DirectoryRole:
    """An activated Entra directory role the user holds (directly or through a group)."""

    id: str
    display_name: str
    role_template_id: str


@dataclass(frozen=True)
class InboxRule:
    """An Outlook inbox rule, reduced to the actions that matter after a compromise."""

    id: str
    display_name: str
    enabled: bool
    forward_to: tuple[str, ...] = ()
    forward_as_attachment_to: tuple[str, ...] = ()
    redirect_to: tuple[str, ...] = ()
    delete: bool = False
    permanent_delete: bool = False
    move_to_folder: str | None = None

    @property
    def is_suspicious(self) -> bool:
        """True when the rule sends mail elsewhere or makes it disappear."""
        return bool(
            self.forward_to
            or self.forward_as_attachment_to
            or self.redirect_to
            or self.delete
            or self.permanent_delete
        )


@dataclass(frozen=True)
class BlockedSender:
    """One row of the Restricted users list (``Get-BlockedSenderAddress``)."""

    sender_address: str
    reason: str
    created: datetime | None
    changed: datetime | None
    temporary_block: bool = False


@dataclass(frozen=True)
class AppToken:
    """What an access token says about our app, for the doctor (never the token itself)."""

    tenant_id: str
    audience: str
    roles: frozenset[str] = field(default_factory=frozenset)
    service_principal_id: str | None = None
    expires_on: datetime | None = None
    # The ``wids`` claim: template ids of the directory roles the app holds (None when absent).
    role_template_ids: frozenset[str] | None = None
