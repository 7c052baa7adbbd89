"""Frozen domain objects returned by the connectors.

Connectors turn wire formats (Jira JSON, Graph JSON, Exchange cmdlet rows) into these objects; nothing
above the connector layer sees raw JSON. The ticket types are neutral: a ticketing backend returns them
(subclassing ``Person`` with its own identifiers), and the workflow knows no other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Decision(StrEnum):
    """Where a native approval stands."""

    APPROVED = "approved"
    DECLINED = "declined"
    PENDING = "pending"


@dataclass(frozen=True)
class Person:
    """Someone on the ticketing system: a reporter, a commenter, an approver, or mailunblock itself.

    Backends subclass it with their own identifiers and say when two records are the same account.
    """

    display_name: str
    email: str | None = None
    locale: str | None = None
    time_zone: str | None = None

    @property
    def ref(self) -> str:
        """Stable identifier of this person on their ticketing system."""
        return self.display_name

    def same_account(self, other: Person | None) -> bool:
        """Whether ``other`` is the same account (not merely the same display name, unless nothing else is known)."""
        return other is not None and self.ref == other.ref


@dataclass(frozen=True)
class Comment:
    """One comment on a ticket, with whether it is hidden from the reporter."""

    id: str
    author: Person
    body: str
    created: datetime
    internal: bool = False


@dataclass(frozen=True)
class StatusChange:
    """One status change of a ticket (who moved it, from where to where)."""

    author: Person
    from_status: str
    to_status: str
    at: datetime


@dataclass(frozen=True)
class TicketHead:
    """What a light read of a ticket shows: whether it changed, whether it is closed, its labels.

    A selection gives heads, enough to decide which tickets have work to do; those are read whole
    (``Ticket``) just before they are worked on.
    """

    key: str
    id: str
    status: str
    status_category: str  # "new" | "indeterminate" | "done"
    labels: tuple[str, ...]
    updated: datetime

    @property
    def is_done(self) -> bool:
        """True when the ticket sits in a status of the Done category."""
        return self.status_category == "done"


@dataclass(frozen=True)
class Ticket(TicketHead):
    """The parts of a ticket mailunblock reads."""

    summary: str
    description: str
    reporter: Person | None
    created: datetime
    comments: tuple[Comment, ...] = ()
    affected_account: str | None = None  # value of the configured affected-account field, if any
    status_changes: tuple[StatusChange, ...] = ()


@dataclass(frozen=True)
class Approver:
    """One approver of a native approval and their own decision."""

    user: Person
    decision: Decision


@dataclass(frozen=True)
class Approval:
    """A native approval of the ticketing system on a request (JSM approvals on Jira)."""

    id: str
    name: str
    final_decision: Decision
    approvers: tuple[Approver, ...]
    created: datetime
    completed: datetime | None = None
    can_answer: bool = False  # whether the caller (our bot) could answer it

    def deciders(self) -> tuple[Person, ...]:
        """The approvers whose own decision made the final one (none while it is pending)."""
        if self.final_decision == Decision.PENDING:
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
class AccountFacts:
    """What the directory answered about the accounts carrying one address, in as few calls as it could.

    ``users`` are every account carrying the address. ``roles`` and ``mailbox`` were read together with
    them and are about the account ``subject_id`` only (None: not read that way — ask for them).
    ``mailbox``: True when its inbox rules could be read, False when Graph says it has no mailbox.
    """

    users: tuple[DirectoryUser, ...]
    subject_id: str | None = None
    roles: tuple[DirectoryRole, ...] | None = None
    mailbox: bool | None = None

    def roles_of(self, user: DirectoryUser) -> tuple[DirectoryRole, ...] | None:
        """The roles read with the facts when they are ``user``'s, else None."""
        return self.roles if self.subject_id == user.id else None

    def mailbox_of(self, user: DirectoryUser) -> bool | None:
        """The mailbox answer read with the facts when it is ``user``'s, else None."""
        return self.mailbox if self.subject_id == user.id else None


@dataclass(frozen=True)
class BlockedSender:
    """One row of the Restricted users list (``Get-BlockedSenderAddress``)."""

    sender_address: str
    reason: str
    created: datetime | None
    changed: datetime | None


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
