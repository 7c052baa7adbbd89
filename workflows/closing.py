"""Ticket updates after a final stage: notes, links, labels, transitions — each done once."""

from __future__ import annotations

from collections.abc import Callable

from mailunblock.workflows import notify
from mailunblock.workflows.context import StepContext
from mailunblock.workflows.policy import RemediationPolicy
from mailunblock.workflows.vocabulary import (
    AddLabel,
    ClosingAction,
    Link,
    Note,
    NoteName,
    RemoveLabel,
    SlaProperty,
    Transition,
)

SLA_PROPERTY = "mailunblock.sla"

NOTES: dict[NoteName, Callable[[StepContext], None]] = {
    NoteName.REFUSED: notify.refusal,
    NoteName.REJECTED: notify.rejection,
    NoteName.SUMMARY: notify.summary,
    NoteName.NOT_LISTED: notify.not_listed,
    NoteName.RESOLVED: notify.resolved,
    NoteName.ESCALATED: notify.escalation,
    NoteName.CANCELLED: notify.cancellation,
}


def _transition(name: str | None) -> tuple[ClosingAction, ...]:
    return (Transition(name),) if name else ()


def refused(policy: RemediationPolicy, related_key: str | None) -> tuple[ClosingAction, ...]:
    """After a refusal: the link to the related ticket, the note, a visible label, the watched status."""
    links: tuple[ClosingAction, ...] = (Link(related_key),) if related_key else ()
    return (*links, Note(NoteName.REFUSED), AddLabel(policy.refused_label), RemoveLabel(policy.trigger_label),
            *_transition(policy.refuse_transition))


def escalated(policy: RemediationPolicy) -> tuple[ClosingAction, ...]:
    """When a person must take over."""
    return (Note(NoteName.ESCALATED), AddLabel(policy.escalated_label), RemoveLabel(policy.trigger_label),
            *_transition(policy.escalate_transition))


def resolved(policy: RemediationPolicy) -> tuple[ClosingAction, ...]:
    """The account sends again."""
    return (Note(NoteName.RESOLVED), RemoveLabel(policy.trigger_label), AddLabel(policy.resolved_label),
            *_transition(policy.resolve_transition))


def rejected(policy: RemediationPolicy) -> tuple[ClosingAction, ...]:
    """An approver rejected the plan."""
    return Note(NoteName.REJECTED), RemoveLabel(policy.trigger_label)


def cancelled(policy: RemediationPolicy) -> tuple[ClosingAction, ...]:
    """Nobody decided in time."""
    return Note(NoteName.CANCELLED), RemoveLabel(policy.trigger_label)


def answered(policy: RemediationPolicy) -> tuple[ClosingAction, ...]:
    """A not-listed answer was given and nothing needs approving."""
    return (RemoveLabel(policy.trigger_label),)


def not_listed_after_check(policy: RemediationPolicy) -> tuple[ClosingAction, ...]:
    """The list was checked after the approved steps: nothing listed any more."""
    return Note(NoteName.SUMMARY), Note(NoteName.NOT_LISTED), RemoveLabel(policy.trigger_label)


def perform(ctx: StepContext, action: ClosingAction) -> None:
    """Do one closing action; every kind is safe to repeat after a crash."""
    state, tickets = ctx.state, ctx.tickets
    match action:
        case Note(note=note):
            NOTES[note](ctx)
        case Link(key=key):
            tickets.link_issues(state.issue_key, key)
            state.linked = (*state.linked, key)
        case AddLabel(label=label):
            tickets.update_labels(state.issue_key, add=[label])
        case RemoveLabel(label=label):
            tickets.update_labels(state.issue_key, remove=[label])
        case SlaProperty():
            if ctx.policy.sla_summary:
                tickets.set_property(state.issue_key, SLA_PROPERTY, ctx.policy.sla_summary(state))
        case Transition(name=name):
            retried = action in state.closing_started
            if not retried:
                state.closing_started = (*state.closing_started, action)
                ctx.save()
            # After a crash the transition may already be applied, so it is no longer offered.
            if not tickets.transition(state.issue_key, name) and not retried:
                notify.transition_missing(ctx, name)


def run(ctx: StepContext) -> None:
    """Perform the pending closing actions in order, saving after each."""
    state = ctx.state
    while state.closing:
        perform(ctx, state.closing[0])
        state.closing = state.closing[1:]
        ctx.save()
