"""Verification: re-check the list within and after the announced window; resolve or escalate."""

from __future__ import annotations

from datetime import datetime

from mailunblock.connectors.models import BlockedSender
from mailunblock.workflows import closing
from mailunblock.workflows.context import StepContext
from mailunblock.workflows.moves import Finish, Move
from mailunblock.workflows.state import Stage, require
from mailunblock.workflows.vocabulary import EscalationReason


def blocked_again(entries: list[BlockedSender], unblocked_at: datetime) -> list[BlockedSender]:
    """Entries created after our unblock: a new block (Exchange does not re-block the same day)."""
    return [e for e in entries if e.created is not None and e.created > unblocked_at]


def run(ctx: StepContext) -> Move:
    """WAITING_FOR_SEND: when a check is due, resolve, wait, or escalate."""
    state, policy = ctx.state, ctx.policy
    now = ctx.now()
    if state.next_check_at is not None and now < state.next_check_at:
        return None
    unblocked_at = require(state.unblocked_at, "the unblock time (set by the unblock step)")
    eta_end = require(state.eta_end, "the announced window (set by the unblock step)")
    entries = ctx.listed_entries(ctx.tenant, state.account_addresses)
    deadline = unblocked_at + policy.escalate_after
    again = blocked_again(entries, unblocked_at)
    if again:
        state.refusal = EscalationReason.BLOCKED_AGAIN
        state.refusal_detail = ", ".join(f"{e.sender_address} ({e.created:%Y-%m-%d %H:%M} UTC)"
                                         for e in again if e.created)
        return Finish(Stage.ESCALATED, closing.escalated(policy))
    if entries and now >= deadline:
        state.refusal = EscalationReason.STILL_LISTED
        state.refusal_detail = ", ".join(e.sender_address for e in entries)
        return Finish(Stage.ESCALATED, closing.escalated(policy))
    if not entries and now >= eta_end:
        return Finish(Stage.RESOLVED, closing.resolved(policy))
    upcoming = [now + policy.verify_every]
    if now < eta_end:
        upcoming.append(eta_end)
    if entries:
        upcoming.append(deadline)
    state.next_check_at = min(upcoming)
    ctx.save()
    return None
