"""Optional mailbox check: report inbox rules that forward, redirect or delete mail (never delete them)."""

from __future__ import annotations

from mailunblock.connectors.errors import NotFoundError, PermanentError, PermissionDeniedError
from mailunblock.connectors.models import InboxRule
from mailunblock.workflows.context import StepContext
from mailunblock.workflows.markup import plain_text
from mailunblock.workflows.moves import Move, Next
from mailunblock.workflows.state import require

# The rule name and the addresses are chosen by whoever holds the mailbox: each is made plain text and
# capped here, so one long part cannot push the real actions out of the (capped, escaped) note line.
NAME_CHARS = 80
ADDRESS_CHARS = 100


def describe(rule: InboxRule) -> str:
    """A one-line, language-neutral, plain-text description of a suspicious rule (Graph action names).

    Stored in the ticket state as plain text; the comment template escapes it when it is written.
    """
    def address(value: str) -> str:
        return plain_text(value, ADDRESS_CHARS)

    actions = [
        *(f"forwardTo {address(a)}" for a in rule.forward_to),
        *(f"forwardAsAttachmentTo {address(a)}" for a in rule.forward_as_attachment_to),
        *(f"redirectTo {address(a)}" for a in rule.redirect_to),
        *(["delete"] if rule.delete else []),
        *(["permanentDelete"] if rule.permanent_delete else []),
    ]
    state = "" if rule.enabled else ", disabled"
    return f"\"{plain_text(rule.display_name, NAME_CHARS)}\" ({'; '.join(actions)}{state})"


def run(ctx: StepContext) -> Move:
    """SESSIONS_REVOKED: list suspicious inbox rules when the policy asks for it."""
    state = ctx.state
    account_id = require(state.account_id, "the account (set by triage)")
    if ctx.policy.check_inbox_rules:
        try:
            rules = ctx.rules_read if ctx.rules_read is not None else ctx.tenant.directory.inbox_rules(account_id)
        except (PermissionDeniedError, NotFoundError, PermanentError) as error:
            # Optional step: report why it could not be done, and carry on with the unblock.
            state.inbox_rules_error = str(error)
        else:
            state.inbox_rules_checked = True
            state.suspicious_rules = tuple(describe(r) for r in rules if r.is_suspicious)
    return Next()
