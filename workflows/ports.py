"""The interfaces a workflow step talks through.

Steps never see HTTP, SQL or the scheduler: they call these protocols, which the plugin satisfies with
the real connectors (or tests with fakes). Every method raises only ``connectors.errors`` types.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from mailunblock.connectors.models import (
    AccountFacts,
    Approval,
    BlockedSender,
    DirectoryRole,
    DirectoryUser,
    InboxRule,
    Person,
    Ticket,
    TicketHead,
)

if TYPE_CHECKING:
    from mailunblock.workflows.state import TicketState


class Clock(Protocol):
    """Source of the current time (timezone-aware, UTC)."""

    def now(self) -> datetime:
        """Return the current time."""
        ...


class Tickets(Protocol):
    """The ticketing system, as the workflow needs it (Jira is one backend; see ``TicketingBackend``)."""

    def get_issue(self, issue_key: str) -> Ticket:
        """Re-read one ticket (status, labels, comments)."""
        ...

    def post_comment(self, issue_key: str, body: str, *, internal: bool, marker: str) -> str:
        """Post a comment carrying ``marker`` (invisible to readers); return its id. Never retried."""
        ...

    def find_comment(self, issue_key: str, marker: str) -> str | None:
        """Return the id of the comment carrying ``marker``, if one exists (crash reconciliation)."""
        ...

    def update_labels(
        self, issue_key: str, *, add: Sequence[str] = (), remove: Sequence[str] = ()
    ) -> None:
        """Add and remove labels in one idempotent update."""
        ...

    def transition(self, issue_key: str, transition_name: str) -> bool:
        """Apply the transition with this name; False when the ticket offers no such transition."""
        ...

    def link_issues(self, issue_key: str, other_key: str) -> None:
        """Link two tickets ("relates to"), idempotently."""
        ...

    def set_property(self, issue_key: str, key: str, value: Mapping[str, Any]) -> None:
        """Store a JSON value on the ticket under ``key`` (replacing it: safe to repeat)."""
        ...

    def myself(self) -> Person:
        """The account mailunblock writes as (it never counts as an approver)."""
        ...

    def user_locale(self, user: Person) -> tuple[str | None, str | None]:
        """The user's Jira profile locale (e.g. "fr_FR") and time zone, when the profile shows them."""
        ...

    def approvals(self, issue_key: str) -> list[Approval]:
        """The ticket's native approvals; NotFoundError when the ticket cannot carry any."""
        ...


class Membership(Protocol):
    """Who belongs to which group or role on the ticketing system; the workflow decides who approves."""

    def groups_of(self, person: Person) -> set[str]:
        """Names (lower-cased) of the groups the person belongs to."""
        ...

    def in_any_role(self, person: Person, project: str, roles: Collection[str], groups: Collection[str]) -> bool:
        """Whether the person holds one of ``roles`` in ``project``, directly or through one of ``groups``."""
        ...


class TicketingBackend(Tickets, Membership, Protocol):
    """Everything a ticketing system provides (see the README's "Adding a ticketing backend")."""

    def selected(self) -> Iterable[TicketHead]:
        """The tickets that need work now: the configured selection, every page, each as its head."""
        ...

    def read_whole(self, heads: Sequence[TicketHead]) -> list[Ticket]:
        """These tickets in full, as they are now (in as few requests as the system allows)."""
        ...


class Directory(Protocol):
    """One tenant's directory (Microsoft Graph)."""

    def get_user(self, user_id_or_upn: str) -> DirectoryUser:
        """Look a user up by object id, UPN or mail address; NotFoundError if absent."""
        ...

    def find_users_by_address(self, address: str) -> list[DirectoryUser]:
        """Every user whose UPN, mail or proxy address equals ``address`` (case-insensitive)."""
        ...

    def account_facts(
        self, address: str, *, account_id: str | None = None, mailbox: bool = True
    ) -> AccountFacts:
        """The users carrying ``address``, and what the directory could read with them in the same call.

        That is the roles (and the mailbox answer) of the one account the address names — ``account_id``
        when an approved plan names it; ``AccountFacts.roles_of`` / ``mailbox_of`` say None otherwise.
        """
        ...

    def directory_roles(self, user_id: str) -> list[DirectoryRole]:
        """Directory roles the user holds, directly or through groups."""
        ...

    def reset_password(self, user_id: str, password: str) -> None:
        """Set a new password and force a change at next sign-in. Not idempotent: never retried."""
        ...

    def revoke_sessions(self, user_id: str) -> None:
        """Invalidate refresh tokens and session cookies of the user."""
        ...

    def revoke_sessions_then_inbox_rules(self, user_id: str) -> list[InboxRule] | None:
        """Revoke the sessions, then read the inbox rules if the same call can; None when they were not read."""
        ...

    def inbox_rules(self, user_id: str) -> list[InboxRule]:
        """The user's inbox rules."""
        ...


class RestrictedSenders(Protocol):
    """One tenant's Restricted users list (Exchange Online)."""

    def blocked_entries(self, addresses: Sequence[str]) -> list[BlockedSender]:
        """Entries of the list matching any of ``addresses`` (case-insensitive)."""
        ...

    def list_blocked(self) -> list[BlockedSender]:
        """The whole list (read once per cycle; see ``StepContext.listed_entries``)."""
        ...

    def unblock(self, address: str, reason: str) -> tuple[str, ...]:
        """Remove one address from the list; return Exchange's warnings (the removal is then unconfirmed).

        Raises NotBlockedError / UnblockLimitReachedError.
        """
        ...


class AccountBusy(Exception):
    """Another ticket is deciding about this account right now: try this ticket again next cycle.

    Raised by ``StateRepository.hold_account``; nothing has been done to the account, nothing is saved.
    """


class ClaimLost(Exception):
    """The ticket's claim is no longer this process's (its lease ran out): another replica continues.

    Raised by ``StateRepository.save`` instead of writing, so no side effect follows the lost claim.
    """


class StateRepository(Protocol):
    """Durable home of every ticket's remediation state (the plugin's store)."""

    def save(self, state: TicketState) -> None:
        """Persist the state now (called before every side effect: record intent, then act)."""
        ...

    def hold_account(self, tenant: str, account_id: str, issue_key: str) -> str | None:
        """Make ``issue_key`` the one ticket remediating this account; return the other holder's key, if any.

        Atomic across threads and replicas: of two tickets for one account, one holds it and the other
        is told who does (a duplicate). Raises ``AccountBusy`` while the holder has not decided yet.
        The hold ends when the ticket's state ends or names another account.
        """
        ...

    def last_unblock_of_account(
        self, tenant: str, account_id: str, exclude_key: str
    ) -> tuple[str, datetime] | None:
        """The most recent other ticket that unblocked this account, and when."""
        ...


class PasswordVault(Protocol):
    """Encrypted, one-time storage of a new password (never in a comment, log or email)."""

    def store(self, issue_key: str, password: str, expires_at: datetime) -> None:
        """Keep the password encrypted until revealed once or expired."""
        ...

    def retrieval_hint(self, issue_key: str) -> str:
        """Text for the internal note telling the agent how to retrieve it (a command or a link)."""
        ...

    def recall(self, issue_key: str) -> str | None:
        """The stored, unrevealed, unexpired password (to retry an interrupted reset); not a reveal."""
        ...
