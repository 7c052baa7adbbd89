"""Revoke the account's sign-in sessions (safe to repeat)."""

from __future__ import annotations

from mailunblock.workflows.context import StepContext
from mailunblock.workflows.state import Stage


def run(ctx: StepContext) -> None:
    """PASSWORD_RESET: sign the attacker (and the user) out everywhere."""
    state = ctx.state
    assert state.account_id  # set by triage
    ctx.tenant.directory.revoke_sessions(state.account_id)
    state.sessions_revoked_at = ctx.now()
    ctx.enter(Stage.SESSIONS_REVOKED)
