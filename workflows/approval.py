"""Agent approval: who may approve the plan, and when."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

from mailunblock.connectors.errors import NotFoundError
from mailunblock.connectors.models import JiraApproval, JiraComment, JiraUser
from mailunblock.workflows import notify
from mailunblock.workflows.context import StepContext
from mailunblock.workflows.state import Stage

APPROVE = "/approve"
REJECT = "/reject"
AUTO_APPROVER = "auto-approval policy"


@dataclass(frozen=True)
class Attempt:
    """A request to approve or reject: a command comment, a status change or a JSM approval."""

    source_id: str  # comment id, "status-<epoch>" for a status change, "jsm-<id>" for a JSM approval
    author: JiraUser
    verdict: str  # APPROVE | REJECT
    reason: str
    kind: str  # "comment" | "transition" | "jsm"
    after_plan: bool
    co_signers: tuple[JiraUser, ...] = ()  # other approvers whose answers made a JSM decision
    name: str = ""  # the JSM approval's name

    @property
    def signers(self) -> tuple[JiraUser, ...]:
        """Everyone who must pass the approver rules for this attempt to count."""
        return (self.author, *self.co_signers)


def parse_command(body: str) -> tuple[str, str] | None:
    """``("/approve", "")`` or ``("/reject", reason)`` when the comment is a command, else None."""
    words = body.strip().split(maxsplit=1)
    if words and words[0].lower() in (APPROVE, REJECT):
        return words[0].lower(), words[1].strip() if len(words) > 1 else ""
    return None


def _after(comments: tuple[JiraComment, ...], plan_id: str) -> set[str]:
    """Ids of the comments posted after the plan, by position (numeric ids as a fallback)."""
    ids = [c.id for c in comments]
    if plan_id in ids:
        return set(ids[ids.index(plan_id) + 1 :])
    if plan_id.isdigit():
        return {i for i in ids if i.isdigit() and int(i) > int(plan_id)}
    return set()


def attempts(ctx: StepContext) -> Iterator[Attempt]:
    """Every approval or rejection attempt on the ticket, comments first, in order."""
    issue, state = ctx.issue, ctx.state
    plan_id = state.plan_comment_id or ""
    ours = set(state.posted.values())
    after = _after(issue.comments, plan_id)
    for comment in issue.comments:
        command = parse_command(comment.body)
        if command and comment.id not in ours:
            verdict, reason = command
            yield Attempt(comment.id, comment.author, verdict, reason, "comment", comment.id in after)
    wanted = (ctx.policy.approve_status or "").lower()
    plan = next((c for c in issue.comments if c.id == plan_id), None)
    for change in issue.status_changes:
        if wanted and change.to_status.lower() == wanted:
            source = f"status-{int(change.at.timestamp())}"
            after_plan = plan is not None and change.at > plan.created
            yield Attempt(source, change.author, APPROVE, "", "transition", after_plan)
    if ctx.policy.jsm_native_approval:
        yield from _native_attempts(ctx, plan)


def _native_approvals(ctx: StepContext) -> list[JiraApproval]:
    try:
        return ctx.tickets.approvals(ctx.issue.key)
    except NotFoundError:  # not a service-desk request: only comments and status changes can approve
        return []


def _native_attempts(ctx: StepContext, plan: JiraComment | None) -> Iterator[Attempt]:
    """Decided JSM approvals: "approved" approves, "declined" rejects with the approval's name."""
    for approval in _native_approvals(ctx):
        deciders = approval.deciders()
        if not deciders:
            continue
        verdict = APPROVE if approval.final_decision == "approved" else REJECT
        reason = approval.name if verdict == REJECT else ""
        after_plan = (
            plan is not None and approval.completed is not None and approval.completed > plan.created
        )
        yield Attempt(f"jsm-{approval.id}", deciders[0], verdict, reason, "jsm", after_plan,
                      co_signers=deciders[1:], name=approval.name)


def _same_user(user: JiraUser, ref: str | None, email: str | None) -> bool:
    return (ref is not None and user.ref == ref) or (
        email is not None and (user.email or "").lower() == email
    )


def why_ignored(ctx: StepContext, attempt: Attempt) -> tuple[JiraUser, str] | None:
    """Who may not approve and the reason code, or None when the attempt counts.

    Every signer of a JSM decision must pass the rules; the first one who does not is named.
    """
    if not attempt.after_plan:
        return attempt.author, "before_plan"
    for signer in attempt.signers:
        reason = _why_not(ctx, signer)
        if reason is not None:
            return signer, reason
    return None


def _why_not(ctx: StepContext, author: JiraUser) -> str | None:
    state, current = ctx.state, ctx.issue.reporter
    # The reporter at triage, and whoever the reporter field names now (it can be edited).
    if _same_user(author, state.reporter_ref, state.reporter_email) or (
        current is not None and _same_user(author, current.ref, (current.email or "").lower() or None)
    ):
        return "reporter"
    email = (author.email or "").lower()
    if email and (email in state.account_addresses or email == (state.account_upn or "").lower()):
        return "affected_account"
    if not email and not state.reporter_is_account:
        # Jira Cloud can hide emails; the affected user is someone other than the reporter, so with no
        # email there is no way to tell the approver is not that user. Refuse rather than guess.
        return "email_hidden"
    if not ctx.tickets.is_approver(author):
        return "not_approver"
    return None


def run(ctx: StepContext) -> None:
    """AWAITING_APPROVAL: take the first valid approval or rejection; note every ignored one once."""
    state = ctx.state
    if ctx.policy.auto_approve:
        state.approval_kind, state.approved_by, state.approved_at = "auto", AUTO_APPROVER, ctx.now()
        ctx.enter(Stage.APPROVED)
        return
    for attempt in attempts(ctx):
        if attempt.source_id in state.ignored:
            continue
        refused = why_ignored(ctx, attempt)
        if refused is not None:
            signer, reason = refused
            state.ignored[attempt.source_id] = reason
            ctx.save()
            notify.ignored(ctx, replace(attempt, author=signer), reason)
            continue
        state.approval_kind = attempt.kind
        state.approved_by = ", ".join(signer.display_name for signer in attempt.signers)
        state.approved_at = ctx.now()
        if attempt.verdict == REJECT:
            state.rejection_reason = attempt.reason
            ctx.finish(Stage.REJECTED, ["note:rejected", f"remove-label:{ctx.policy.trigger_label}"])
        else:
            ctx.enter(Stage.APPROVED)
        return
