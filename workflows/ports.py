"""The interfaces a workflow step talks through.

Steps never see HTTP, SQL or the scheduler: they call these protocols, which the plugin satisfies with
the real connectors (or tests with fakes). Every method raises only ``connectors.errors`` types.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from mailunblock.connectors.models import (
    BlockedSender,
    DirectoryRole,
    DirectoryUser,
    InboxRule,
    JiraIssue,
    JiraUser,
)


class Clock(Protocol):
    """Source of the current time (timezone-aware, UTC)."""

    def now(self) -> datetime:
        """Return the current time."""
        ...


class Tickets(Protocol):
    """The ticketing system, as the workflow needs it."""

    def get_issue(self, issue_key: str) -> JiraIssue:
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

    def is_approver(self, user: JiraUser) -> bool:
        """True when the user belongs to a configured approver group or project role."""
        ...


class Directory(Protocol):
    """One tenant's directory (Microsoft Graph)."""

    def get_user(self, user_id_or_upn: str) -> DirectoryUser:
        """Look a user up by object id, UPN or mail address; NotFoundError if absent."""
        ...

    def find_users_by_address(self, address: str) -> list[DirectoryUser]:
        """Every user whose UPN, mail or proxy address equals ``address`` (case-insensitive)."""
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

    def inbox_rules(self, user_id: str) -> list[InboxRule]:
        """The user's inbox rules."""
        ...


class RestrictedSenders(Protocol):
    """One tenant's Restricted users list (Exchange Online)."""

    def blocked_entries(self, addresses: Sequence[str]) -> list[BlockedSender]:
        """Entries of the list matching any of ``addresses`` (case-insensitive)."""
        ...

    def unblock(self, address: str, reason: str) -> None:
        """Remove one address from the list. Raises NotBlockedError / UnblockLimitReachedError."""
        ...
