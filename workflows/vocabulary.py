"""The workflow's vocabulary: every code a state stores or a template explains, and the closing actions.

Each code is a ``StrEnum`` so it is stored as its plain value (state saved before these enums existed
still loads) and every template branch can be checked against the full list of members.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field


class Activity(StrEnum):
    """What a stage is doing, for failure notes and the permissions a step needs."""

    TRIAGE = "triage"
    APPROVAL = "approval"
    PASSWORD = "password"  # noqa: S105 -- an activity name, not a password
    SESSIONS = "sessions"
    MAILBOX = "mailbox"
    LIST = "list"
    UNBLOCK = "unblock"
    VERIFY = "verify"
    CLOSING = "closing"  # updating the ticket after a final stage


class FailureKind(StrEnum):
    """How a failed step is described and treated."""

    THROTTLED = "throttled"
    TRANSIENT = "transient"
    AUTHENTICATION = "authentication"
    PERMISSION = "permission"
    PERMANENT = "permanent"
    WARNING = "warning"  # Exchange answered with a warning: not reported as done


class RefusalReason(StrEnum):
    """Why triage will not handle a ticket (nothing was changed on any account)."""

    UNKNOWN_DOMAIN = "unknown_domain"
    LOOKALIKE = "lookalike"
    NO_MAILBOX = "no_mailbox"
    NO_ACCOUNT = "no_account"
    SEVERAL_ACCOUNTS = "several_accounts"
    NOT_FOUND = "not_found"
    GUEST = "guest"
    DISABLED = "disabled"
    SYNCED = "synced"
    PRIVILEGED = "privileged"
    BLOCKED_AGAIN = "blocked_again"  # unblocked by an earlier ticket a short while ago
    DUPLICATE = "duplicate"


class EscalationReason(StrEnum):
    """Why a person must take over a remediation."""

    UNBLOCK_LIMIT = "unblock_limit"
    STILL_LISTED = "still_listed"
    BLOCKED_AGAIN = "blocked_again"  # blocked again after our unblock
    TENANT_UNKNOWN = "tenant_unknown"
    FAILED = "failed"
    MISSING_PERMISSION = "missing_permission"
    SIGN_IN = "sign_in"
    TICKETING_PERMISSION = "jira_permission"  # the stored value predates other ticketing backends
    STUCK = "stuck"


class CancellationReason(StrEnum):
    """Why a remediation stopped before it finished."""

    APPROVAL_TIMEOUT = "approval_timeout"
    CLOSED = "closed"
    UNTAGGED = "untagged"


StopReason = RefusalReason | EscalationReason | CancellationReason


class IgnoredReason(StrEnum):
    """Why a decision (approval, rejection, choice of account) does not count."""

    BEFORE_PLAN = "before_plan"
    REPORTER = "reporter"
    AFFECTED_ACCOUNT = "affected_account"
    EMAIL_HIDDEN = "email_hidden"
    NOT_APPROVER = "not_approver"
    BOT = "bot"
    OVERRULED = "overruled"
    NOT_A_CANDIDATE = "not_a_candidate"


class LapseReason(StrEnum):
    """Why an approval no longer holds for the plan it approved."""

    ACCOUNT_CHANGED = "account_changed"
    FACTS_CHANGED = "facts_changed"


class Verdict(StrEnum):
    """What a decision says (the comment commands)."""

    APPROVE = "/approve"
    REJECT = "/reject"
    RESET = "/reset"  # approve a reset and revocation although the account is not on the list
    ACCOUNT = "/account"  # pick the affected account among the ones the ticket names


class DecisionSource(StrEnum):
    """Where a decision was read."""

    COMMENT = "comment"
    TRANSITION = "transition"
    NATIVE = "jsm"  # the ticketing system's own approval (JSM native approvals on Jira)


class ApprovalKind(StrEnum):
    """How the remediation was approved."""

    COMMENT = "comment"
    TRANSITION = "transition"
    NATIVE = "jsm"
    AUTO = "auto"
    RESET = "reset"


class NoteName(StrEnum):
    """The notes a closing action posts."""

    REFUSED = "refused"
    REJECTED = "rejected"
    SUMMARY = "summary"
    NOT_LISTED = "not-listed"
    RESOLVED = "resolved"
    ESCALATED = "escalated"
    CANCELLED = "cancelled"


# --- closing actions: the ticket updates still to make after a final stage ---------------------------


class _Action:
    """A closing action's stable name (comment markers, the audit log): its kind, then its arguments."""

    if TYPE_CHECKING:
        kind: str

    @property
    def slug(self) -> str:
        """For example ``note-refused``, ``add-label-mail-unblocked``, ``sla-property``."""
        arguments = [str(getattr(self, f.name)) for f in fields(self) if f.name != "kind"]  # type: ignore[arg-type]
        return "-".join([self.kind, *arguments])


@dataclass(frozen=True)
class Note(_Action):
    """Post one of the final notes."""

    note: NoteName
    kind: Literal["note"] = "note"


@dataclass(frozen=True)
class Link(_Action):
    """Link the ticket to another one."""

    key: str
    kind: Literal["link"] = "link"


@dataclass(frozen=True)
class AddLabel(_Action):
    """Add a label to the ticket."""

    label: str
    kind: Literal["add-label"] = "add-label"


@dataclass(frozen=True)
class RemoveLabel(_Action):
    """Remove a label from the ticket."""

    label: str
    kind: Literal["remove-label"] = "remove-label"


@dataclass(frozen=True)
class Transition(_Action):
    """Apply the named workflow transition."""

    name: str
    kind: Literal["transition"] = "transition"


@dataclass(frozen=True)
class SlaProperty(_Action):
    """Write the ticket's SLA summary as a ticket property (Jira dashboards and JQL read it)."""

    kind: Literal["sla-property"] = "sla-property"


ClosingAction = Annotated[
    Note | Link | AddLabel | RemoveLabel | Transition | SlaProperty, Field(discriminator="kind")
]
