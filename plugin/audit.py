"""The audit log's entries, read off what a save changed: decisions, calls made and their results.

The workflow saves its state before every side effect (the intent) and after it (the result), so comparing
a ticket's stored state with the one being saved tells exactly what was decided or called since. No secret
is ever in a state, so none can reach the audit log.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mailunblock.workflows.state import TicketState


@dataclass(frozen=True)
class AuditEntry:
    """One action: what was done (or decided), on what, by whom, with what result."""

    at: datetime
    issue_key: str
    tenant: str | None
    account: str | None
    action: str
    result: str
    target: str | None = None
    actor: str | None = None
    detail: str | None = None

    def row(self) -> dict[str, Any]:
        """The entry as an ``audit_log`` row."""
        return {"at": self.at, "issue_key": self.issue_key, "tenant": self.tenant, "account": self.account,
                "action": self.action, "result": self.result, "target": self.target, "actor": self.actor,
                "detail": self.detail}


def _new(before: tuple[Any, ...], after: tuple[Any, ...]) -> list[Any]:
    return [item for item in after if item not in before]


def audit_entries(before: TicketState | None, after: TicketState, now: datetime) -> list[AuditEntry]:
    """What changed from ``before`` (None: a ticket seen for the first time) to ``after``, as audit entries."""
    old = before or TicketState(issue_key=after.issue_key)
    latest = after.history[-1].at if after.history else now

    def entry(action: str, result: str, at: datetime | None = None, **more: str | None) -> AuditEntry:
        return AuditEntry(at or latest, after.issue_key, after.tenant, after.account_upn or after.account_id,
                          action, result, **more)

    return list(_entries(old, after, entry))


def _entries(old: TicketState, new: TicketState, entry: Any) -> Iterator[AuditEntry]:
    if new.chosen_by and new.chosen_by != old.chosen_by:
        yield entry("choose-account", "decided", target=new.chosen_address, actor=new.chosen_by)
    decided = new.approved_by != old.approved_by or new.approval_kind != old.approval_kind
    if decided and new.approval_kind is not None:
        yield entry("approve", "decided", new.approved_at, actor=new.approved_by,
                    detail=f"how: {new.approval_kind}; plan {new.plan_generation}")
    if new.rejection_reason and new.rejection_reason != old.rejection_reason:
        yield entry("reject", "decided", detail=new.rejection_reason)
    if new.password_intent_at and new.password_intent_at != old.password_intent_at:
        yield entry("reset-password", "called", new.password_intent_at, target=new.account_upn, detail="graph")
    if new.password_reset_at and new.password_reset_at != old.password_reset_at:
        yield entry("reset-password", "ok", new.password_reset_at, target=new.account_upn)
    if new.sessions_intent_at and new.sessions_intent_at != old.sessions_intent_at:
        yield entry("revoke-sessions", "called", new.sessions_intent_at, target=new.account_upn, detail="graph")
    if new.sessions_revoked_at and new.sessions_revoked_at != old.sessions_revoked_at:
        yield entry("revoke-sessions", "ok", new.sessions_revoked_at, target=new.account_upn)
    if new.inbox_rules_checked and not old.inbox_rules_checked:
        suspicious = f"suspicious rules: {', '.join(new.suspicious_rules)}" if new.suspicious_rules else None
        yield entry("check-inbox-rules", "error" if new.inbox_rules_error else "ok", target=new.account_upn,
                    detail=new.inbox_rules_error or suspicious)
    if new.listed_addresses != old.listed_addresses and new.listed_addresses:
        yield entry("check-restricted-list", "ok", target=", ".join(new.listed_addresses), detail="listed")
    for address in _new(old.unblock_intents, new.unblock_intents):
        yield entry("unblock", "called", target=address, detail="exchange Remove-BlockedSenderAddress")
    for address in _new(old.unblock_resent, new.unblock_resent):
        yield entry("unblock", "re-sent", target=address)
    for address in _new(old.unblocked_addresses, new.unblocked_addresses):
        yield entry("unblock", "ok", new.unblocked_at, target=address)
    for name in (n for n in new.posted if n not in old.posted):
        yield entry("post-comment", "ok", target=name, detail=f"comment {new.posted[name]}")
    for action in _new(old.closing_started, new.closing_started):
        yield entry(action.kind, "called", target=action.slug)
    for action in _new(new.closing, old.closing):  # no longer to do: done (a note is its post-comment)
        if action.kind != "note":
            yield entry(action.kind, "ok", target=action.slug)
    if new.failure_count > old.failure_count:
        yield entry("failure", "error", target=new.failed_service,
                    detail=new.failures[-1] if new.failures else new.refusal_detail)
    for event in new.history[len(old.history):]:
        reason = str(new.refusal) if new.refusal and event.stage == new.stage and new.is_terminal else None
        yield entry("enter-stage", "ok", event.at, target=str(event.stage), detail=reason)
