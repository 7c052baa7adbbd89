"""Ticket updates after a final stage: notes, links, labels, transitions — each done once."""

from __future__ import annotations

from collections.abc import Callable

from mailunblock.workflows import notify
from mailunblock.workflows.context import StepContext

SLA_PROPERTY = "mailunblock.sla"

NOTES: dict[str, Callable[[StepContext], None]] = {
    "refused": notify.refusal,
    "rejected": notify.rejection,
    "summary": notify.summary,
    "not-listed": notify.not_listed,
    "resolved": notify.resolved,
    "escalated": notify.escalation,
    "cancelled": notify.cancellation,
}


def perform(ctx: StepContext, action: str) -> None:
    """Do one closing action (``kind:argument``); every kind is safe to repeat after a crash."""
    state, tickets = ctx.state, ctx.tickets
    kind, _, argument = action.partition(":")
    if kind == "note":
        NOTES[argument](ctx)
    elif kind == "link":
        tickets.link_issues(state.issue_key, argument)
        state.linked = (*state.linked, argument)
    elif kind == "add-label":
        tickets.update_labels(state.issue_key, add=[argument])
    elif kind == "remove-label":
        tickets.update_labels(state.issue_key, remove=[argument])
    elif kind == "sla-property":
        if ctx.policy.sla_summary:
            tickets.set_property(state.issue_key, SLA_PROPERTY, ctx.policy.sla_summary(state))
    elif kind == "transition":
        retried = action in state.closing_started
        if not retried:
            state.closing_started = (*state.closing_started, action)
            ctx.save()
        # After a crash the transition may already be applied, so it is no longer offered.
        if not tickets.transition(state.issue_key, argument) and not retried:
            notify.transition_missing(ctx, argument)
    else:
        raise ValueError(f"unknown closing action {action!r}")


def run(ctx: StepContext) -> None:
    """Perform the pending closing actions in order, saving after each."""
    state = ctx.state
    while state.closing:
        perform(ctx, state.closing[0])
        state.closing = state.closing[1:]
        ctx.save()
