"""The Restricted users list: check every address of the account, unblock each listed one once."""

from __future__ import annotations

from mailunblock.connectors.errors import NotBlockedError, UnblockLimitReachedError
from mailunblock.workflows import closing, notify
from mailunblock.workflows.context import StepContext
from mailunblock.workflows.moves import Finish, Move, Next
from mailunblock.workflows.state import Stage, require
from mailunblock.workflows.vocabulary import Activity, EscalationReason, FailureKind


def check(ctx: StepContext) -> Move:
    """MAILBOX_CHECKED: record which addresses of the account are on the list."""
    state = ctx.state
    entries = ctx.listed_entries(ctx.tenant, state.account_addresses)  # this cycle's read
    state.listed_addresses = tuple(dict.fromkeys(e.sender_address.lower() for e in entries))
    return Next()


def _send_unblock(ctx: StepContext, address: str) -> bool | Finish:
    """Call Remove-BlockedSenderAddress; False when unconfirmed (a warning), Finish at Microsoft's limit."""
    state = ctx.state
    try:
        warnings = ctx.tenant.restricted.unblock(address, reason=f"{state.issue_key}: approved remediation")
    except NotBlockedError:
        return True  # already gone from the list: the goal is reached
    except UnblockLimitReachedError as error:
        state.refusal, state.refusal_detail = EscalationReason.UNBLOCK_LIMIT, f"{address}: {error}"
        return Finish(Stage.ESCALATED, closing.escalated(ctx.policy))
    if not warnings or not _listed(ctx, address):
        return True  # a warning the list contradicts is not a failure
    # Exchange answered with a warning and the account is still listed: not a success. Like an unblock a
    # crash hid, it is settled after the grace period (re-read; sent once more only if still listed).
    state.retry_at = ctx.now() + ctx.policy.unblock_grace
    ctx.save()
    quoted = "; ".join(f'"{w}"' for w in warnings)
    notify.failure(ctx, f"warning-unblock-{address}", Activity.UNBLOCK, f"{address}: {quoted}", FailureKind.WARNING,
                   state.retry_at)
    return False


def _listed(ctx: StepContext, address: str) -> bool:
    return any(e.sender_address.lower() == address for e in ctx.tenant.restricted.blocked_entries([address]))


def _reconcile(ctx: StepContext, address: str) -> bool | Finish:
    """Settle an unblock whose outcome a crash hid; True when settled, False to wait a little longer.

    Never fired blindly: a sent unblock needs time to show, so wait ``unblock_grace`` after the intent,
    then read the list. Off the list: it went through. Still listed: it cannot have been sent (or did
    not take), so send it once more — and never a third time.
    """
    state = ctx.state
    settle_at = require(state.unblocked_at, "the unblock intent time") + ctx.policy.unblock_grace
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


def unblock(ctx: StepContext) -> Move:
    """LIST_CHECKED: unblock each listed address at most once, then tell agent and user."""
    state, policy = ctx.state, ctx.policy
    if not state.listed_addresses:
        return Finish(Stage.NOT_LISTED, closing.not_listed_after_check(policy))
    for address in state.listed_addresses:
        if address in state.unblocked_addresses:
            continue
        if address in state.unblock_intents:
            # Recorded before a crash: the call may or may not have reached Exchange.
            done = _reconcile(ctx, address)  # False: wait for the grace period, then look again
        else:
            state.unblock_intents = (*state.unblock_intents, address)
            state.unblocked_at = state.unblocked_at or ctx.now()
            ctx.save()
            done = _send_unblock(ctx, address)
        if isinstance(done, Finish):
            return done
        if not done:
            return None
        state.unblocked_addresses = (*state.unblocked_addresses, address)
        ctx.save_later()  # a confirmation: the next address's intent or the summary's carries it
    unblocked_at = require(state.unblocked_at, "the unblock time (set with the first intent)")
    state.eta_start = unblocked_at + policy.eta_min
    state.eta_end = unblocked_at + policy.eta_max
    state.next_check_at = state.eta_start
    ctx.save_later()  # no side effect waits for it: the summary's intent to post carries it
    ctx.also_post(notify.SUMMARY, notify.ETA)  # one intent for both comments
    notify.summary(ctx)
    notify.eta(ctx)
    return Next()
