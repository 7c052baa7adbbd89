"""Agent decisions: who may approve, reject or pick the account, and which decision wins.

Decisions are read as instants (Jira's timestamps, compared as aware datetimes), never by list position.
Every valid decision after the plan and before the first side effect counts, and a valid rejection wins
over any approval. An approval is bound to its plan: if the ticket or the account changed since, it lapses.
Approver membership is checked at the cycle that reads the decision.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from mailunblock.connectors.errors import NotFoundError
from mailunblock.connectors.models import Approval, Decision, Person
from mailunblock.workflows import addresses, closing, notify, triage
from mailunblock.workflows.addresses import Address
from mailunblock.workflows.context import StepContext
from mailunblock.workflows.moves import Advance, Finish, Move
from mailunblock.workflows.state import Stage
from mailunblock.workflows.vocabulary import (
    ApprovalKind,
    CancellationReason,
    DecisionSource,
    IgnoredReason,
    Verdict,
)

APPROVE, REJECT, RESET, ACCOUNT = Verdict.APPROVE, Verdict.REJECT, Verdict.RESET, Verdict.ACCOUNT
AUTO_APPROVER = "auto-approval policy"
_LATEST = datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Attempt:
    """A decision: a command comment, a status change or a JSM approval."""

    source_id: str  # comment id, "status-<epoch>" for a status change, "jsm-<id>" for a JSM approval
    author: Person
    verdict: Verdict
    reason: str  # a rejection's reason, or /account's address
    kind: DecisionSource
    at: datetime
    sequence: int = 0  # Jira's comment id: orders two decisions made in the same millisecond
    co_signers: tuple[Person, ...] = ()  # other approvers whose answers made a JSM decision
    name: str = ""  # the JSM approval's name

    @property
    def signers(self) -> tuple[Person, ...]:
        """Everyone who must pass the approver rules for this attempt to count."""
        return (self.author, *self.co_signers)

    @property
    def instant(self) -> tuple[datetime, int]:
        """When the decision was made (ties broken by Jira's increasing comment ids)."""
        return self.at, self.sequence


def parse_command(body: str) -> tuple[Verdict, str] | None:
    """``(command, argument)`` when the comment starts with one of the verdicts, else None."""
    words = body.strip().split(maxsplit=1)
    if words and words[0].lower() in set(Verdict):
        return Verdict(words[0].lower()), words[1].strip() if len(words) > 1 else ""
    return None


def _sequence(comment_id: str) -> int:
    return int(comment_id) if comment_id.isdigit() else 0


def plan_instant(ctx: StepContext) -> tuple[datetime, int] | None:
    """When the current plan (or question) was first posted; None while it is not visible on the ticket.

    If a crash ever made us post it twice, the first copy counts: approvals given to it are valid.
    """
    comments = ctx.issue.comments
    plan = next((c for c in comments if c.id == ctx.state.plan_comment_id), None)
    if plan is None:
        # Posted in this very pass, after the ticket was read: everything on the ticket came before it.
        return (_LATEST, 0) if ctx.state.plan_comment_id in ctx.posted_now else None
    copies = [c for c in comments if c.body == plan.body and c.author.same_account(plan.author)]
    first = min(copies, key=lambda c: (c.created, _sequence(c.id)))
    return first.created, _sequence(first.id)


def attempts(ctx: StepContext) -> Iterator[Attempt]:
    """Every decision on the ticket: command comments, approving status changes, decided JSM approvals."""
    issue = ctx.issue
    ours = set(ctx.state.posted.values())
    for comment in issue.comments:
        command = parse_command(comment.body)
        if command and comment.id not in ours:
            verdict, argument = command
            yield Attempt(comment.id, comment.author, verdict, argument, DecisionSource.COMMENT, comment.created,
                          _sequence(comment.id))
    wanted = (ctx.policy.approve_status or "").lower()
    for change in issue.status_changes:
        if wanted and change.to_status.lower() == wanted:
            yield Attempt(f"status-{int(change.at.timestamp())}", change.author, APPROVE, "", DecisionSource.TRANSITION,
                          change.at)
    if ctx.policy.jsm_native_approval:
        yield from _native_attempts(ctx)


def _native_approvals(ctx: StepContext) -> list[Approval]:
    try:
        return ctx.tickets.approvals(ctx.issue.key)
    except NotFoundError:  # not a service-desk request: only comments and status changes can approve
        return []


def _native_attempts(ctx: StepContext) -> Iterator[Attempt]:
    """Decided JSM approvals: "approved" approves, "declined" rejects with the approval's name."""
    for approval in _native_approvals(ctx):
        deciders = approval.deciders()
        if not deciders or approval.completed is None:
            continue
        verdict = APPROVE if approval.final_decision == Decision.APPROVED else REJECT
        reason = approval.name if verdict is REJECT else ""
        yield Attempt(f"jsm-{approval.id}", deciders[0], verdict, reason, DecisionSource.NATIVE, approval.completed,
                      co_signers=deciders[1:], name=approval.name)


def _same_user(user: Person, ref: str | None, email: str | None) -> bool:
    return (ref is not None and user.ref == ref) or (
        email is not None and (user.email or "").strip().lower() == email
    )


def why_not(ctx: StepContext, author: Person, affected: tuple[str, ...]) -> IgnoredReason | None:
    """The reason code why ``author`` may not decide, or None when they may.

    ``affected`` holds the addresses of the account(s) the decision is about: their owner never decides.
    """
    state, current = ctx.state, ctx.issue.reporter
    if author.same_account(ctx.bot):
        return IgnoredReason.BOT  # whoever wrote it, whatever the bot's groups: automation never approves itself
    # The reporter at triage, and whoever the reporter field names now (it can be edited).
    if _same_user(author, state.reporter_ref, state.reporter_email) or (
        current is not None and _same_user(author, current.ref, (current.email or "").strip().lower() or None)
    ):
        return IgnoredReason.REPORTER
    email = addresses.canonical(author.email or "")
    if isinstance(email, Address) and email.value in affected:
        return IgnoredReason.AFFECTED_ACCOUNT
    if not isinstance(email, Address) and not state.reporter_is_account:
        # Jira Cloud can hide emails; the affected user is someone other than the reporter, so with no
        # email there is no way to tell the approver is not that user. Refuse rather than guess.
        return IgnoredReason.EMAIL_HIDDEN
    if not ctx.is_approver(author):
        return IgnoredReason.NOT_APPROVER
    return None


def _why_ignored(
    ctx: StepContext, attempt: Attempt, affected: tuple[str, ...]
) -> tuple[Person, IgnoredReason] | None:
    """Who may not decide and why; every signer of a JSM decision must pass the rules."""
    for signer in attempt.signers:
        reason = why_not(ctx, signer, affected)
        if reason is not None:
            return signer, reason
    return None


def _ignore(ctx: StepContext, attempt: Attempt, signer: Person, reason: IgnoredReason) -> None:
    ctx.state.ignored[attempt.source_id] = reason
    ctx.save()
    notify.ignored(ctx, replace(attempt, author=signer), reason)


def valid_decisions(
    ctx: StepContext, verdicts: tuple[Verdict, ...], affected: tuple[str, ...]
) -> list[Attempt] | None:
    """The valid decisions after the current plan, oldest first; every ignored one is noted once.

    None while the plan is not visible on the ticket yet (nothing can be judged against it).
    """
    anchor = plan_instant(ctx)
    if anchor is None:
        return None
    valid: list[Attempt] = []
    for attempt in sorted(attempts(ctx), key=lambda a: a.instant):
        if attempt.verdict not in verdicts or attempt.source_id in ctx.state.ignored:
            continue
        if attempt.instant <= anchor:
            if ctx.state.plan_generation == 0 or attempt.kind is not DecisionSource.COMMENT:
                _ignore(ctx, attempt, attempt.author, IgnoredReason.BEFORE_PLAN)
            else:  # decisions on an earlier plan: the new plan's note already says they lapsed
                ctx.state.ignored[attempt.source_id] = IgnoredReason.BEFORE_PLAN
            continue
        refused = _why_ignored(ctx, attempt, affected)
        if refused is not None:
            _ignore(ctx, attempt, *refused)
            continue
        valid.append(attempt)
    return valid


def decision(ctx: StepContext) -> Attempt | None:
    """The decision that stands now: the first valid rejection, else the first valid approval."""
    state = ctx.state
    found = valid_decisions(ctx, (APPROVE, RESET, REJECT), state.account_addresses)
    if not found:
        return None
    rejections = [a for a in found if a.verdict is REJECT]
    if rejections:
        for lost in (a for a in found if a.verdict is not REJECT):
            _ignore(ctx, lost, lost.author, IgnoredReason.OVERRULED)
        return rejections[0]
    return found[0]


def _expired(ctx: StepContext) -> bool:
    posted = ctx.state.plan_posted_at
    return posted is not None and ctx.now() - posted >= ctx.policy.approval_timeout


def _not_listed_done(ctx: StepContext) -> Finish:
    """A not-listed plan ends without any change: the user already has the answer."""
    return Finish(Stage.NOT_LISTED, closing.answered(ctx.policy))


def _timed_out(ctx: StepContext) -> Finish:
    ctx.state.refusal = CancellationReason.APPROVAL_TIMEOUT
    return Finish(Stage.CANCELLED, closing.cancelled(ctx.policy))


def _rejected(ctx: StepContext) -> Finish:
    return Finish(Stage.REJECTED, closing.rejected(ctx.policy))


def _approval_kind(chosen: Attempt) -> ApprovalKind:
    return ApprovalKind.RESET if chosen.verdict is RESET else ApprovalKind(chosen.kind.value)


def run(ctx: StepContext) -> Move:
    """AWAITING_APPROVAL: apply the decision that stands, if the plan it approves still holds."""
    state = ctx.state
    offers_steps = bool(state.listed_at_triage)
    if ctx.policy.auto_approve:
        state.approval_kind, state.approved_by, state.approved_at = ApprovalKind.AUTO, AUTO_APPROVER, ctx.now()
        ctx.plan_checked = True
        return Advance(Stage.APPROVED) if offers_steps else _not_listed_done(ctx)
    chosen = decision(ctx)
    if chosen is None:
        if not _expired(ctx):
            wait(ctx)
            return None
        return _timed_out(ctx) if offers_steps else _not_listed_done(ctx)
    state.approval_kind = _approval_kind(chosen)
    state.approved_by = ", ".join(signer.display_name for signer in chosen.signers)
    state.approved_at = ctx.now()
    stop = _stopped(ctx, chosen)
    if stop is not None:
        return stop
    state.explicit_reset = chosen.verdict is RESET and not offers_steps
    return Advance(Stage.APPROVED) if offers_steps or state.explicit_reset else _not_listed_done(ctx)


def confirm_before_first_effect(ctx: StepContext) -> Advance | Finish | None:
    """None when an approval read in an earlier pass still stands, just before its first side effect.

    A crash between recording the approval and the reset leaves a window in which a rejection may have
    come, or the ticket may have changed: then the move that stops it (rejected, or back to triage).
    """
    state = ctx.state
    if ctx.plan_checked or state.approval_kind is ApprovalKind.AUTO:
        return None
    return _stopped(ctx, decision(ctx))


def _stopped(ctx: StepContext, chosen: Attempt | None) -> Advance | Finish | None:
    """The move that stops an approval — a rejection that stands, or a plan that no longer holds — else None.

    None also records that this pass checked the plan against the ticket and the account.
    """
    state = ctx.state
    if chosen is not None and chosen.verdict is REJECT:
        state.approved_by = ", ".join(signer.display_name for signer in chosen.signers)
        state.rejection_reason = chosen.reason
        return _rejected(ctx)
    lapsed = triage.plan_still_holds(ctx)
    if lapsed is not None:
        return triage.lapse(ctx, lapsed)
    ctx.plan_checked = True
    return None


def choose(ctx: StepContext) -> Move:
    """AWAITING_ACCOUNT: take the first valid /account naming one of the candidates (or a rejection)."""
    state = ctx.state
    found = valid_decisions(ctx, (ACCOUNT, REJECT), state.candidates)
    for attempt in found or ():
        if attempt.verdict is REJECT:
            state.approved_by = attempt.author.display_name
            state.rejection_reason = attempt.reason
            return _rejected(ctx)
        picked = addresses.canonical(attempt.reason)
        if not isinstance(picked, Address) or picked.value not in state.candidates:
            _ignore(ctx, attempt, attempt.author, IgnoredReason.NOT_A_CANDIDATE)
            continue
        state.chosen_address, state.chosen_by = picked.value, attempt.author.display_name
        state.plan_generation += 1
        return Advance(Stage.NEW)
    if _expired(ctx):
        return _timed_out(ctx)
    wait(ctx)
    return None


def wait(ctx: StepContext) -> None:
    """No decision yet: the ticket needs no look until it changes, its plan expires or the periodic look.

    Records the ticket's ``updated`` as this pass read it (a comment posted since moves it again, and the
    next cycle looks once more) and when to look anyway (``TicketState.quiet_at_updated``).
    """
    state = ctx.state
    look = ctx.now() + ctx.policy.waiting_recheck
    if state.plan_posted_at is not None:
        look = min(look, state.plan_posted_at + ctx.policy.approval_timeout)
    state.quiet_at_updated, state.next_check_at = ctx.issue.updated, look
    ctx.save_later()

