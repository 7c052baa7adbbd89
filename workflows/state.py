"""A ticket's remediation state: an explicit stage plus everything needed to resume after a crash."""

from __future__ import annotations

import re
from dataclasses import MISSING, dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple, TypeVar

from mailunblock.workflows.once import once
from mailunblock.workflows.vocabulary import (
    Activity,
    ApprovalKind,
    ClosingAction,
    IgnoredReason,
    LapseReason,
    StopReason,
)
from pydantic import TypeAdapter

T = TypeVar("T")

# Version 2: closing actions are objects (version 1 stored them as "kind:argument" strings).
SCHEMA_VERSION = 2
_LEGACY_ACTION = re.compile(r"(?P<kind>note|link|add-label|remove-label|transition):(?P<argument>.*)", re.S)
_LEGACY_FIELD = {"note": "note", "link": "key", "add-label": "label", "remove-label": "label",
                 "transition": "name"}


class BrokenInvariant(RuntimeError):
    """A state the workflow never produces (a bug or a hand-edited store): stop rather than guess."""


def require(value: T | None, what: str) -> T:
    """``value``, or BrokenInvariant naming what should have been set (checks survive ``python -O``)."""
    if value is None:
        raise BrokenInvariant(f"{what} is not set")
    return value


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
    refusal: StopReason | None = None  # reason code of a refusal, escalation or cancellation
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
    lapsed_because: LapseReason | None = None  # why the previous plan's approval no longer holds
    plan_comment_id: str | None = None
    explicit_reset: bool = False  # an approver asked for a reset although the account is not listed
    approval_kind: ApprovalKind | None = None
    approved_by: str | None = None
    approved_at: datetime | None = None
    rejection_reason: str | None = None
    ignored: dict[str, IgnoredReason] = field(default_factory=dict)  # comment id or change id -> reason
    password_intent_at: datetime | None = None  # the latest PATCH's send time (recorded before it is sent)
    # Graph answered that PATCH with a refusal (429, 4xx) or a closed throttle gate stopped it: it was not
    # applied and is not in flight, so the next try need not wait out the reset grace.
    password_refused_at: datetime | None = None
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
    # Waiting on people (an approval, an account choice): the ticket's ``updated`` as read by the last pass,
    # which found nothing to act on. Until the ticket shows another ``updated`` or ``next_check_at`` comes
    # (the plan's deadline, or the periodic look), the poller leaves it alone. None: not known to be quiet.
    quiet_at_updated: datetime | None = None
    retry_at: datetime | None = None
    # Failures since the stage last made progress ("when activity kind: error", the latest few), when the
    # first of them happened, and how many failures the ticket met in all (the poller reports new ones).
    failures: tuple[str, ...] = ()
    failing_since: datetime | None = None
    failure_count: int = 0
    failed_step: Activity | None = None  # activity of the step that stopped the ticket (for its note)
    failed_service: str | None = None  # service of the latest failure ("jira", "graph" ...)
    posted: dict[str, str] = field(default_factory=dict)  # comment marker -> comment id
    pending: tuple[str, ...] = ()  # markers whose comment may or may not have been posted
    closing: tuple[ClosingAction, ...] = ()  # actions still to do after entering a final stage
    closing_started: tuple[ClosingAction, ...] = ()  # closing actions attempted at least once
    linked: tuple[str, ...] = ()  # keys this ticket was linked to (a note says "linked" only then)
    history: list[StageEvent] = field(default_factory=list)

    @classmethod
    def first_seen(cls, issue_key: str, at: datetime) -> TicketState:
        """The state of a ticket seen for the first time."""
        return cls(issue_key=issue_key, history=[StageEvent(Stage.NEW, at)])

    @property
    def is_terminal(self) -> bool:
        """True when remediation is over and nothing is left to do on the ticket."""
        return _over(self.stage, self.closing)

    def summary(self) -> StateSummary:
        """What the poller decides on between cycles (``StateSummary``)."""
        return StateSummary(issue_key=self.issue_key, issue_id=self.issue_id, stage=self.stage, tenant=self.tenant,
                            closing=self.closing, retry_at=self.retry_at, next_check_at=self.next_check_at,
                            quiet_at_updated=self.quiet_at_updated)

    def enter(self, stage: Stage, at: datetime) -> None:
        """Move to ``stage`` and record when (the SLA history)."""
        self.stage = stage
        self.history.append(StageEvent(stage, at))

    def entered_at(self, stage: Stage) -> datetime | None:
        """When the ticket last entered ``stage``, if ever."""
        return next((e.at for e in reversed(self.history) if e.stage == stage), None)

    def copy(self) -> TicketState:
        """An independent copy: its lists and dicts are new, every other field is immutable."""
        twin = object.__new__(TicketState)
        values = dict(vars(self))
        for name in _MUTABLE_FIELDS:
            values[name] = values[name].copy()
        twin.__dict__ = values
        return twin

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe representation (ISO datetimes, lists for tuples), tagged with the schema version."""
        return {**_adapter().dump_python(self, mode="json"), "version": SCHEMA_VERSION}

    def to_json(self) -> str:
        """``to_dict`` as one JSON document (what the store keeps), serialised by the schema in one pass."""
        return f'{{"version":{SCHEMA_VERSION},{_adapter().dump_json(self).decode()[1:]}'

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TicketState:
        """Rebuild a state from ``to_dict`` output of this or an earlier version (unknown keys are ignored)."""
        return _adapter().validate_python(migrate(data))


# The fields holding a list or a dict (the others hold immutable values: a dataclass default cannot be mutable).
_MUTABLE_FIELDS = tuple(f.name for f in fields(TicketState) if f.default_factory is not MISSING)


@dataclass(frozen=True)
class StateSummary:
    """The few fields of a ticket's state that tell whether it needs work now, and where.

    The poller keeps one per selected or open ticket between cycles, not whole states, so that its memory
    stays small as the backlog grows; work on a ticket starts from its whole state, read afresh.
    """

    issue_key: str
    issue_id: str | None
    stage: Stage
    tenant: str | None
    closing: tuple[ClosingAction, ...]
    retry_at: datetime | None
    next_check_at: datetime | None
    quiet_at_updated: datetime | None = None

    @property
    def is_terminal(self) -> bool:
        """As ``TicketState.is_terminal``."""
        return _over(self.stage, self.closing)


def _over(stage: Stage, closing: tuple[ClosingAction, ...]) -> bool:
    """A final stage with no closing action left to do."""
    return stage in TERMINAL_STAGES and not closing


@once
def _adapter() -> TypeAdapter[TicketState]:
    return TypeAdapter(TicketState)


def _legacy_action(action: Any) -> Any:
    """A version-1 closing action ("kind:argument") as the object it stands for."""
    if not isinstance(action, str):
        return action
    if action == "sla-property":  # the one argument-less action of version 1
        return {"kind": action}
    match = _LEGACY_ACTION.fullmatch(action)
    if match is None:
        raise BrokenInvariant(f"unknown closing action {action!r} in a stored state")
    kind = match["kind"]
    return {"kind": kind, _LEGACY_FIELD[kind]: match["argument"]}


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """Stored state of any earlier schema version, in the current one."""
    version = int(data.get("version", 1))
    if version > SCHEMA_VERSION:
        raise BrokenInvariant(f"state of {data.get('issue_key')} was saved by a newer mailunblock (v{version})")
    if version < 2:
        data = {
            **data,
            "closing": [_legacy_action(a) for a in data.get("closing", ())],
            "closing_started": [_legacy_action(a) for a in data.get("closing_started", ())],
        }
    return data
