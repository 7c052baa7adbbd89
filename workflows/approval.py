"""Agent approval: who may approve the plan, and when."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from mailunblock.connectors.models import JiraComment, JiraUser
from mailunblock.workflows import notify
from mailunblock.workflows.context import StepContext
from mailunblock.workflows.state import Stage

APPROVE = "/approve"
REJECT = "/reject"
AUTO_APPROVER = "auto-approval policy"


@dataclass(frozen=True)
class Attempt:
    """A request to approve or reject: a command comment or a status change."""

    source_id: str  # comment id, or "status-<epoch>" for a status change
    author: JiraUser
    verdict: str  # APPROVE | REJECT
    reason: str
    kind: str  # "comment" | "transition"
    after_plan: bool


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


def _same_user(user: JiraUser, ref: str | None, email: str | None) -> bool:
    return (ref is not None and user.ref == ref) or (
        email is not None and (user.email or "").lower() == email
    )


def why_ignored(ctx: StepContext, attempt: Attempt) -> str | None:
    """The reason code for ignoring this attempt, or None when it counts."""
    state, author = ctx.state, attempt.author
    if not attempt.after_plan:
        return "before_plan"
    if _same_user(author, state.reporter_ref, state.reporter_email):
        return "reporter"
    email = (author.email or "").lower()
    if email and (email in state.account_addresses or email == (state.account_upn or "").lower()):
        return "affected_account"
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
        reason = why_ignored(ctx, attempt)
        if reason is not None:
            state.ignored[attempt.source_id] = reason
            ctx.save()
            notify.ignored(ctx, attempt, reason)
            continue
        state.approval_kind = attempt.kind
        state.approved_by = attempt.author.display_name
        state.approved_at = ctx.now()
        if attempt.verdict == REJECT:
            state.rejection_reason = attempt.reason
            ctx.finish(Stage.REJECTED, ["note:rejected", f"remove-label:{ctx.policy.trigger_label}"])
        else:
            ctx.enter(Stage.APPROVED)
        return
