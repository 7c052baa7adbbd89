"""Verification: re-check the list within and after the announced window; resolve or escalate."""

from __future__ import annotations

from datetime import datetime

from mailunblock.connectors.models import BlockedSender
from mailunblock.workflows.context import StepContext
from mailunblock.workflows.restricted import escalation_actions
from mailunblock.workflows.state import Stage


def blocked_again(entries: list[BlockedSender], unblocked_at: datetime) -> list[BlockedSender]:
    """Entries created after our unblock: a new block (Exchange does not re-block the same day)."""
    return [e for e in entries if e.created is not None and e.created > unblocked_at]


def run(ctx: StepContext) -> None:
    """WAITING_FOR_SEND: when a check is due, resolve, wait, or escalate."""
    state, policy = ctx.state, ctx.policy
    now = ctx.now()
    if state.next_check_at is not None and now < state.next_check_at:
        return
    assert state.unblocked_at and state.eta_end  # set by the unblock step
    entries = ctx.tenant.restricted.blocked_entries(state.account_addresses)
    deadline = state.unblocked_at + policy.escalate_after
    again = blocked_again(entries, state.unblocked_at)
    if again:
        state.refusal = "blocked_again"
        state.refusal_detail = ", ".join(f"{e.sender_address} ({e.created:%Y-%m-%d %H:%M} UTC)"
                                         for e in again if e.created)
        ctx.finish(Stage.ESCALATED, escalation_actions(ctx))
        return
    if entries and now >= deadline:
        state.refusal = "still_listed"
        state.refusal_detail = ", ".join(e.sender_address for e in entries)
        ctx.finish(Stage.ESCALATED, escalation_actions(ctx))
        return
    if not entries and now >= state.eta_end:
        actions = [
            "note:resolved",
            f"remove-label:{policy.trigger_label}",
            f"add-label:{policy.resolved_label}",
        ]
        if policy.resolve_transition:
            actions.append(f"transition:{policy.resolve_transition}")
        ctx.finish(Stage.RESOLVED, actions)
        return
    upcoming = [now + policy.verify_every]
    if now < state.eta_end:
        upcoming.append(state.eta_end)
    if entries:
        upcoming.append(deadline)
    state.next_check_at = min(upcoming)
    ctx.save()
