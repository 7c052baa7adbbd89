"""The comments mailunblock writes, each built from the ticket's state and posted exactly once."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from mailunblock.workflows import failures, messages
from mailunblock.workflows.context import StepContext
from mailunblock.workflows.markup import WikiMarkup
from mailunblock.workflows.state import Stage, require
from mailunblock.workflows.vocabulary import Activity, DecisionSource, FailureKind, IgnoredReason, Verdict

if TYPE_CHECKING:
    from mailunblock.workflows.approval import Attempt


def _internal_time(ctx: StepContext, moment: datetime) -> str:
    policy = ctx.policy
    when = messages.window(moment, moment, ctx.now(), policy.locale, policy.time_zone)
    day = when["day"] or messages.day(moment, policy.locale, policy.time_zone)
    return f"{day} {when['start']} ({when['time_zone']})"


def _hours(value: float) -> str:
    return f"{value:g}"


def _account(ctx: StepContext) -> dict[str, Any]:
    state = ctx.state
    return {
        "account_upn": state.account_upn or "",
        "account_name": state.account_name,
        "addresses": list(state.account_addresses),
        "tenant": state.tenant or "",
        "reporter_name": state.reporter_name,
        "reporter_email": state.reporter_email or "",
        "not_reporter": not state.reporter_is_account,
    }


def done_summary(ctx: StepContext) -> dict[str, Any]:
    """What was and was not done so far, for the internal notes."""
    state = ctx.state
    expires = state.password_expires_at
    return {
        **_account(ctx),
        "password_reset": state.password_reset_at is not None,
        "password_uncertain": state.password_intent_at is not None and state.password_reset_at is None,
        # The hint is ours (a command, or the one-time link we serve) and must stay usable: not escaped.
        "password_hint": WikiMarkup(ctx.vault.retrieval_hint(state.issue_key)),
        "password_expires": _internal_time(ctx, expires) if expires else "",
        "sessions_revoked": state.sessions_revoked_at is not None,
        "inbox_rules_checked": state.inbox_rules_checked,
        "inbox_rules_error": state.inbox_rules_error or "",
        "suspicious_rules": list(state.suspicious_rules),
        "list_checked": state.entered_at(Stage.LIST_CHECKED) is not None,
        "listed_addresses": list(state.listed_addresses),
        "unblocked_addresses": list(state.unblocked_addresses),
        "unblock_uncertain": [a for a in state.unblock_intents if a not in state.unblocked_addresses],
    }


ACK, SUMMARY, ETA = "ack", "summary", "eta"  # names of comments (their markers), for ``StepContext.also_post``


def acknowledge(ctx: StepContext) -> None:
    """Tell the reporter the request was picked up (and by whom it will be reviewed)."""
    state = ctx.state
    ctx.post(
        ACK,
        "ack",
        public=True,
        reporter_name=state.reporter_name,
        account_upn=state.account_upn or "",
        own_account=state.reporter_is_account or state.account_upn is None,
        auto_approve=ctx.policy.auto_approve and state.account_upn is not None,
    )


def _generation(ctx: StepContext, name: str) -> str:
    """A plan's comment name: a lapsed plan's successor is a new comment, not the same one again."""
    generation = ctx.state.plan_generation
    return name if generation == 0 else f"{name}-{generation}"


def choose_account_name(ctx: StepContext) -> str:
    """The name of ``choose_account``'s comment."""
    return _generation(ctx, "choose-account")


def choose_account(ctx: StepContext) -> str:
    """Internal note: the ticket names several accounts; an approver picks one. Returns its comment id."""
    state = ctx.state
    return ctx.post(
        choose_account_name(ctx),
        "choose_account",
        public=False,
        candidates=list(state.candidates),
        reporter_name=state.reporter_name,
        reporter_email=state.reporter_email or "",
        timeout=_hours(ctx.policy.approval_timeout.total_seconds() / 3600),
    )


def plan_name(ctx: StepContext) -> str:
    """The name of ``plan``'s comment."""
    return _generation(ctx, "plan")


def plan(ctx: StepContext) -> str:
    """The internal note with the exact plan and how to approve it; returns its comment id."""
    policy, state = ctx.policy, ctx.state
    return ctx.post(
        plan_name(ctx),
        "plan",
        public=False,
        **_account(ctx),
        listed=list(state.listed_at_triage),
        has_mailbox=state.has_mailbox,
        candidates=list(state.candidates),
        chosen_by=state.chosen_by or "",
        lapsed_because=state.lapsed_because or "",
        timeout=_hours(policy.approval_timeout.total_seconds() / 3600),
        check_inbox_rules=policy.check_inbox_rules,
        approve_status=policy.approve_status or "",
        jsm_native_approval=policy.jsm_native_approval,
        auto_approve=policy.auto_approve,
        eta_min=_hours(policy.eta_min.total_seconds() / 3600),
        eta_max=_hours(policy.eta_max.total_seconds() / 3600),
        escalate_after=_hours(policy.escalate_after.total_seconds() / 3600),
    )


def refusal(ctx: StepContext) -> None:
    """Why automation refused this ticket and what the agent should do."""
    state = ctx.state
    ctx.post(
        "refused",
        "refused",
        public=False,
        reason=state.refusal or "",
        detail=state.refusal_detail,
        related_key=state.related_key or "",
        linked=bool(state.related_key) and state.related_key in state.linked,
    )


def ignored(ctx: StepContext, attempt: Attempt, reason: IgnoredReason) -> None:
    """One note per ignored approval attempt."""
    ctx.post(
        f"ignored-{attempt.source_id}",
        "ignored",
        public=False,
        author=attempt.author.display_name,
        reject=attempt.verdict is Verdict.REJECT,
        choice=attempt.verdict is Verdict.ACCOUNT,
        via_status=attempt.kind is DecisionSource.TRANSITION,
        jsm_approval=attempt.name if attempt.kind is DecisionSource.NATIVE else "",
        reason=reason,
    )


def rejection(ctx: StepContext) -> None:
    """The agent rejected the plan: nothing was done."""
    state = ctx.state
    ctx.post(
        "rejected",
        "rejected",
        public=False,
        by=state.approved_by or "",
        reason=state.rejection_reason or "",
    )


def summary(ctx: StepContext) -> None:
    """Internal note after the remediation: what was done and how to hand the password over."""
    state = ctx.state
    when: dict[str, str] = {}
    if state.eta_start and state.eta_end:
        when = messages.window(
            state.eta_start, state.eta_end, ctx.now(), ctx.policy.locale, ctx.policy.time_zone
        )
    ctx.post(SUMMARY, "summary", public=False, **done_summary(ctx), window=when)


def eta(ctx: StepContext) -> None:
    """Public comment: what was done, how to get the password, when sending should resume."""
    state = ctx.state
    start = require(state.eta_start, "the announced window (set by the unblock step)")
    end = require(state.eta_end, "the announced window (set by the unblock step)")
    ctx.post(
        ETA,
        "eta",
        public=True,
        reporter_name=state.reporter_name,
        account_upn=state.account_upn or "",
        own_account=state.reporter_is_account,
        sessions_revoked=state.sessions_revoked_at is not None,
        window=messages.window(start, end, ctx.now(), state.locale, state.time_zone),
    )


def not_listed_name(ctx: StepContext) -> str:
    """The name of ``not_listed``'s comment (another one once the password was reset)."""
    return "not-listed-reset" if ctx.state.password_reset_at is not None else "not-listed"


def not_listed(ctx: StepContext) -> None:
    """Public comment: no restriction found, and the sending-limit case."""
    state = ctx.state
    reset = state.password_reset_at is not None
    ctx.post(
        not_listed_name(ctx),
        "not_listed",
        public=True,
        reporter_name=state.reporter_name,
        account_upn=state.account_upn or "",
        own_account=state.reporter_is_account,
        password_reset=reset,
    )


def resolved(ctx: StepContext) -> None:
    """Public comment: the account can send again."""
    state = ctx.state
    ctx.post("resolved", "resolved", public=True, reporter_name=state.reporter_name,
             own_account=state.reporter_is_account, account_upn=state.account_upn)


def escalation(ctx: StepContext) -> None:
    """Internal note: automation stops here, a person takes over."""
    state = ctx.state
    ctx.post(
        "escalated",
        "escalated",
        public=False,
        **done_summary(ctx),
        reason=state.refusal or "",
        detail=state.refusal_detail,
        escalate_after=_hours(ctx.policy.escalate_after.total_seconds() / 3600),
        **failures.escalation_help(state),
    )


def cancellation(ctx: StepContext) -> None:
    """Internal note: the ticket was closed or untagged mid-way; what was and was not done."""
    state = ctx.state
    ctx.post(
        "cancelled",
        "cancelled",
        public=False,
        **done_summary(ctx),
        reason=state.refusal or "",
        trigger_label=ctx.policy.trigger_label,
    )


def changed_after_start(ctx: StepContext) -> None:
    """Internal note, once: the ticket changed after the remediation of the approved account started."""
    state = ctx.state
    ctx.post(
        _generation(ctx, "changed-after-start"),
        "changed_after_start",
        public=False,
        account_upn=state.account_upn or "",
        reporter_name=ctx.issue.reporter.display_name if ctx.issue.reporter else "",
    )


def tagged_again(ctx: StepContext) -> None:
    """Internal note: a finished ticket was tagged again; mailunblock does not run twice on one ticket."""
    state = ctx.state
    ctx.post("tagged-again", "tagged_again", public=False, outcome=str(state.stage),
             trigger_label=ctx.policy.trigger_label)


def failure(ctx: StepContext, name: str, action: Activity, error: str, kind: FailureKind,
            retry_at: datetime | None) -> None:
    """Internal note naming what failed and what to do."""
    ctx.post(
        name,
        "failure",
        public=False,
        action=action,
        error=error,
        kind=kind,
        retry_at=_internal_time(ctx, retry_at) if retry_at else "",
    )


def transition_missing(ctx: StepContext, transition: str) -> None:
    """Internal note: a configured transition is not offered on this ticket."""
    ctx.post(
        "transition-" + "-".join(transition.lower().split()),
        "transition_missing",
        public=False,
        transition=transition,
        status=ctx.issue.status,
    )
