"""Revoke the account's sign-in sessions, once, even across a crash."""

from __future__ import annotations

from mailunblock.workflows.context import StepContext, moved_since
from mailunblock.workflows.moves import Move, Next
from mailunblock.workflows.state import require


def _already_revoked(ctx: StepContext) -> bool:
    """Whether, after a crash, Microsoft moved the sessions' valid-from time since we read it."""
    state = ctx.state
    account_id = require(state.account_id, "the account (set by triage)")
    valid_from = ctx.tenant.directory.get_user(account_id).sign_in_sessions_valid_from
    return moved_since(state.sessions_valid_before, valid_from)


def run(ctx: StepContext) -> Move:
    """PASSWORD_RESET: sign the attacker (and the user) out everywhere."""
    state = ctx.state
    account_id = require(state.account_id, "the account (set by triage)")
    directory = ctx.tenant.directory
    if state.sessions_intent_at is None:
        if state.password_intent_at is None or state.sessions_valid_before is None:
            # No reset recorded the value with its own before-read (or Graph had none): read it now.
            state.sessions_valid_before = directory.get_user(account_id).sign_in_sessions_valid_from
        state.sessions_intent_at = ctx.now()
        ctx.save()
        if ctx.policy.check_inbox_rules:  # the mailbox step reports the rules read right after the revocation
            ctx.rules_read = directory.revoke_sessions_then_inbox_rules(account_id)
        else:
            directory.revoke_sessions(account_id)
    elif not _already_revoked(ctx):
        directory.revoke_sessions(account_id)
    state.sessions_revoked_at = ctx.now()
    return Next()
