"""The Restricted users list: check every address of the account, unblock each listed one once."""

from __future__ import annotations

from mailunblock.connectors.errors import NotBlockedError, UnblockLimitReachedError
from mailunblock.workflows import notify
from mailunblock.workflows.context import StepContext
from mailunblock.workflows.state import Stage


def check(ctx: StepContext) -> None:
    """MAILBOX_CHECKED: record which addresses of the account are on the list."""
    state = ctx.state
    entries = ctx.tenant.restricted.blocked_entries(state.account_addresses)
    state.listed_addresses = tuple(dict.fromkeys(e.sender_address.lower() for e in entries))
    ctx.enter(Stage.LIST_CHECKED)


def escalation_actions(ctx: StepContext) -> list[str]:
    """Ticket updates when a person must take over."""
    policy = ctx.policy
    actions = [
        "note:escalated",
        f"add-label:{policy.escalated_label}",
        f"remove-label:{policy.trigger_label}",
    ]
    if policy.escalate_transition:
        actions.append(f"transition:{policy.escalate_transition}")
    return actions


def _send_unblock(ctx: StepContext, address: str) -> bool:
    """Call Remove-BlockedSenderAddress; False when not done (limit: escalated; a warning: unconfirmed)."""
    state = ctx.state
    try:
        warnings = ctx.tenant.restricted.unblock(address, reason=f"{state.issue_key}: approved remediation")
    except NotBlockedError:
        return True  # already gone from the list: the goal is reached
    except UnblockLimitReachedError as error:
        state.refusal, state.refusal_detail = "unblock_limit", f"{address}: {error}"
        ctx.finish(Stage.ESCALATED, escalation_actions(ctx))
        return False
    if not warnings or not _listed(ctx, address):
        return True  # a warning the list contradicts is not a failure
    # Exchange answered with a warning and the account is still listed: not a success. Like an unblock a
    # crash hid, it is settled after the grace period (re-read; sent once more only if still listed).
    state.retry_at = ctx.now() + ctx.policy.unblock_grace
    ctx.save()
    quoted = "; ".join(f'"{w}"' for w in warnings)
    notify.failure(ctx, f"warning-unblock-{address}", "unblock", f"{address}: {quoted}", "warning", state.retry_at)
    return False


def _listed(ctx: StepContext, address: str) -> bool:
    return any(e.sender_address.lower() == address for e in ctx.tenant.restricted.blocked_entries([address]))


def _reconcile(ctx: StepContext, address: str) -> bool:
    """Settle an unblock whose outcome a crash hid; True when settled, False to wait a little longer.

    Never fired blindly: a sent unblock needs time to show, so wait ``unblock_grace`` after the intent,
    then read the list. Off the list: it went through. Still listed: it cannot have been sent (or did
    not take), so send it once more — and never a third time.
    """
    state = ctx.state
    assert state.unblocked_at  # the intent time
    settle_at = state.unblocked_at + ctx.policy.unblock_grace
    if ctx.now() < settle_at:
        state.retry_at = settle_at
        ctx.save()
        return False
    if address in state.unblock_resent:
        return True  # verification decides from here
    if not _listed(ctx, address):
        return True
    state.unblock_resent = (*state.unblock_resent, address)
    state.unblocked_at = ctx.now()  # the ETA counts from the unblock that was actually sent
    ctx.save()
    return _send_unblock(ctx, address)


def unblock(ctx: StepContext) -> None:
    """LIST_CHECKED: unblock each listed address at most once, then tell agent and user."""
    state, policy = ctx.state, ctx.policy
    if not state.listed_addresses:
        ctx.finish(
            Stage.NOT_LISTED,
            ["note:summary", "note:not-listed", f"remove-label:{policy.trigger_label}"],
        )
        return
    for address in state.listed_addresses:
        if address in state.unblocked_addresses:
            continue
        if address in state.unblock_intents:
            # Recorded before a crash: the call may or may not have reached Exchange.
            if not _reconcile(ctx, address):
                return  # wait for the grace period, then look again
        else:
            state.unblock_intents = (*state.unblock_intents, address)
            state.unblocked_at = state.unblocked_at or ctx.now()
            ctx.save()
            if not _send_unblock(ctx, address):
                return
        state.unblocked_addresses = (*state.unblocked_addresses, address)
        ctx.save()
    assert state.unblocked_at  # set with the first intent
    state.eta_start = state.unblocked_at + policy.eta_min
    state.eta_end = state.unblocked_at + policy.eta_max
    state.next_check_at = state.eta_start
    ctx.save()
    notify.summary(ctx)
    notify.eta(ctx)
    ctx.enter(Stage.WAITING_FOR_SEND)
