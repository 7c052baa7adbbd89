"""A ticket's remediation state: an explicit stage plus everything needed to resume after a crash."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple


class Stage(StrEnum):
    """Where a ticket's remediation stands."""

    NEW = "new"
    AWAITING_ACCOUNT = "awaiting_account"  # the ticket names several accounts: an approver picks one
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    PASSWORD_RESET = "password_reset"  # noqa: S105 -- a stage name, not a password
    SESSIONS_REVOKED = "sessions_revoked"
    MAILBOX_CHECKED = "mailbox_checked"
    LIST_CHECKED = "list_checked"
    WAITING_FOR_SEND = "waiting_for_send"
    RESOLVED = "resolved"
    NOT_LISTED = "not_listed"
    REFUSED = "refused"
    REJECTED = "rejected"
    ESCALATED = "escalated"
    CANCELLED = "cancelled"


TERMINAL_STAGES = frozenset(
    {Stage.RESOLVED, Stage.NOT_LISTED, Stage.REFUSED, Stage.REJECTED, Stage.ESCALATED, Stage.CANCELLED}
)


class StageEvent(NamedTuple):
    """One entry of the SLA history: a stage and when it was entered."""

    stage: Stage
    at: datetime


_DATETIME_FIELDS = frozenset(
    {
        "approved_at",
        "password_intent_at",
        "password_changed_before",
        "password_reset_at",
        "password_expires_at",
        "sessions_revoked_at",
        "sessions_intent_at",
        "sessions_valid_before",
        "unblocked_at",
        "eta_start",
        "eta_end",
        "next_check_at",
        "retry_at",
        "plan_posted_at",
        "failing_since",
        "ticket_created_at",
    }
)


@dataclass
class TicketState:
    """Everything the engine knows about one ticket; saved before every side effect."""

    issue_key: str
    stage: Stage = Stage.NEW
    issue_id: str | None = None  # Jira's issue id: follows the ticket when it moves to another project
    ticket_created_at: datetime | None = None  # when the ticket was filed (the SLA clock starts there)
    tenant: str | None = None
    account_id: str | None = None
    account_upn: str | None = None
    account_name: str = ""
    account_addresses: tuple[str, ...] = ()
    reporter_ref: str | None = None
    reporter_name: str = ""
    reporter_email: str | None = None
    reporter_is_account: bool = False
    locale: str = "en"
    time_zone: str = "UTC"
    refusal: str | None = None  # reason code of a refusal, escalation or cancellation
    refusal_detail: str = ""
    related_key: str | None = None  # the ticket already remediating this account
    # What triage found, read-only, before any plan: candidates the ticket names, the account's facts.
    candidates: tuple[str, ...] = ()  # distinct addresses the ticket names (field, text, reporter)
    chosen_address: str | None = None  # picked by an approver with /account among ``candidates``
    chosen_by: str | None = None
    has_mailbox: bool | None = None  # None: could not be read (permission missing)
    listed_at_triage: tuple[str, ...] = ()
    # The plan an approval is bound to: a fingerprint of account, tenant, steps and facts. Any change
    # before the first side effect lapses the approval and a new plan (generation + 1) is posted.
    plan_generation: int = 0
    plan_fingerprint: str | None = None
    plan_posted_at: datetime | None = None
    lapsed_because: str | None = None  # why the previous plan's approval no longer holds
    plan_comment_id: str | None = None
    explicit_reset: bool = False  # an approver asked for a reset although the account is not listed
    approval_kind: str | None = None  # "comment" | "transition" | "jsm" | "auto"
    approved_by: str | None = None
    approved_at: datetime | None = None
    rejection_reason: str | None = None
    ignored: dict[str, str] = field(default_factory=dict)  # comment id or change id -> reason code
    password_intent_at: datetime | None = None
    # The account's lastPasswordChangeDateTime read just before our reset: comparing with Microsoft's own
    # earlier value (not with our clock) tells, after a crash, whether the reset went through.
    password_changed_before: datetime | None = None
    password_reset_at: datetime | None = None
    password_expires_at: datetime | None = None
    sessions_revoked_at: datetime | None = None
    # Revocation intent, and the account's signInSessionsValidFromDateTime read just before it: after a
    # crash, a newer value from Microsoft means the revocation went through.
    sessions_intent_at: datetime | None = None
    sessions_valid_before: datetime | None = None
    inbox_rules_checked: bool = False
    suspicious_rules: tuple[str, ...] = ()
    inbox_rules_error: str | None = None
    listed_addresses: tuple[str, ...] = ()
    unblock_intents: tuple[str, ...] = ()
    unblocked_addresses: tuple[str, ...] = ()
    unblock_resent: tuple[str, ...] = ()  # re-sent once after a crash left the first call uncertain
    unblocked_at: datetime | None = None
    eta_start: datetime | None = None
    eta_end: datetime | None = None
    next_check_at: datetime | None = None
    retry_at: datetime | None = None
    # Failures since the stage last made progress ("when activity kind: error", the latest few), when the
    # first of them happened, and how many failures the ticket met in all (the poller reports new ones).
    failures: tuple[str, ...] = ()
    failing_since: datetime | None = None
    failure_count: int = 0
    failed_step: str | None = None  # activity of the step that stopped the ticket (for its note)
    failed_service: str | None = None  # service of the latest failure ("jira", "graph" ...)
    posted: dict[str, str] = field(default_factory=dict)  # comment marker -> comment id
    pending: tuple[str, ...] = ()  # markers whose comment may or may not have been posted
    closing: tuple[str, ...] = ()  # actions still to do after entering a final stage
    closing_started: tuple[str, ...] = ()  # closing actions attempted at least once
    linked: tuple[str, ...] = ()  # keys this ticket was linked to (a note says "linked" only then)
    history: list[StageEvent] = field(default_factory=list)

    @classmethod
    def first_seen(cls, issue_key: str, at: datetime) -> TicketState:
        """The state of a ticket seen for the first time."""
        return cls(issue_key=issue_key, history=[StageEvent(Stage.NEW, at)])

    @property
    def is_terminal(self) -> bool:
        """True when remediation is over and nothing is left to do on the ticket."""
        return self.stage in TERMINAL_STAGES and not self.closing

    def enter(self, stage: Stage, at: datetime) -> None:
        """Move to ``stage`` and record when (the SLA history)."""
        self.stage = stage
        self.history.append(StageEvent(stage, at))

    def entered_at(self, stage: Stage) -> datetime | None:
        """When the ticket last entered ``stage``, if ever."""
        return next((e.at for e in reversed(self.history) if e.stage == stage), None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe representation (ISO datetimes, lists for tuples)."""
        data: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, dict):
                value = dict(value)
            data[f.name] = value
        data["stage"] = str(self.stage)
        data["history"] = [[str(e.stage), e.at.isoformat()] for e in self.history]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TicketState:
        """Rebuild a state from ``to_dict`` output (unknown keys are ignored)."""
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for name, value in data.items():
            if name not in known:
                continue
            if name in _DATETIME_FIELDS and value is not None:
                value = datetime.fromisoformat(value)
            elif isinstance(value, list):
                value = tuple(value)
            values[name] = value
        values["stage"] = Stage(data["stage"])
        values["history"] = [
            StageEvent(Stage(stage), datetime.fromisoformat(at)) for stage, at in data.get("history", [])
        ]
        return cls(**values)
