"""Optional mailbox check: report inbox rules that forward, redirect or delete mail (never delete them)."""

from __future__ import annotations

from mailunblock.connectors.errors import NotFoundError, PermanentError, PermissionDeniedError
from mailunblock.connectors.models import InboxRule
from mailunblock.workflows.context import StepContext
from mailunblock.workflows.state import Stage


def describe(rule: InboxRule) -> str:
    """A one-line, language-neutral description of a suspicious rule (Graph action names)."""
    actions = [
        *(f"forwardTo {a}" for a in rule.forward_to),
        *(f"forwardAsAttachmentTo {a}" for a in rule.forward_as_attachment_to),
        *(f"redirectTo {a}" for a in rule.redirect_to),
        *(["delete"] if rule.delete else []),
        *(["permanentDelete"] if rule.permanent_delete else []),
    ]
    state = "" if rule.enabled else ", disabled"
    return f"\"{rule.display_name}\" ({'; '.join(actions)}{state})"


def run(ctx: StepContext) -> None:
    """SESSIONS_REVOKED: list suspicious inbox rules when the policy asks for it."""
    state = ctx.state
    assert state.account_id  # set by triage
    if ctx.policy.check_inbox_rules:
        try:
            rules = ctx.tenant.directory.inbox_rules(state.account_id)
        except (PermissionDeniedError, NotFoundError, PermanentError) as error:
            # Optional step: report why it could not be done, and carry on with the unblock.
            state.inbox_rules_error = str(error)
        else:
            state.inbox_rules_checked = True
            state.suspicious_rules = tuple(describe(r) for r in rules if r.is_suspicious)
    ctx.enter(Stage.MAILBOX_CHECKED)
