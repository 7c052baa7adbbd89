"""Password reset: a strong random password, vaulted and intent recorded before Graph is called."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator

from mailunblock.connectors.errors import ConnectorError, TransientError
from mailunblock.connectors.models import DirectoryUser
from mailunblock.workflows import approval
from mailunblock.workflows.context import StepContext, moved_since
from mailunblock.workflows.moves import Move, Next
from mailunblock.workflows.state import require

log = logging.getLogger(__name__)

# Characters that survive being read out over the phone: no 0/O, 1/l/I, and only easy symbols.
_LOWER = "abcdefghijkmnopqrstuvwxyz"
_UPPER = "ABCDEFGHJKLMNPQRSTUVWXYZ"
_DIGITS = "23456789"
_SYMBOLS = "!#$%*+-=?@"
_CLASSES = (_LOWER, _UPPER, _DIGITS, _SYMBOLS)
MIN_LENGTH = 12


class Draws:
    """Uniform integers below a bound (at most 256), from few reads of the OS's randomness.

    ``secrets.choice`` reads ``os.urandom`` once per character: about 70 system calls per password, each
    one letting another worker take the interpreter. Here 64 bytes are read at a time and each draw takes
    one byte, rejected when it falls in the last, incomplete run of the bound (no modulo bias).
    """

    def __init__(self, source: Callable[[int], bytes] = os.urandom) -> None:
        self._source = source
        self._bytes: Iterator[int] = iter(())

    def below(self, bound: int) -> int:
        """A uniformly random integer in ``range(bound)``."""
        if not 0 < bound <= 256:
            raise ValueError(f"a bound of 1 to 256, not {bound}")
        limit = 256 - 256 % bound
        while True:
            for byte in self._bytes:
                if byte < limit:
                    return byte % bound
            self._bytes = iter(self._source(64))


def generate_password(length: int, draws: Draws | None = None) -> str:
    """A random password with every Entra character class (lower, upper, digit, symbol)."""
    if length < MIN_LENGTH:
        raise ValueError(f"password length must be at least {MIN_LENGTH}")
    draw = (draws or Draws()).below
    alphabet = "".join(_CLASSES)
    chars = [c[draw(len(c))] for c in _CLASSES]
    chars += [alphabet[draw(len(alphabet))] for _ in range(length - len(chars))]
    for i in range(len(chars) - 1, 0, -1):  # Fisher-Yates with a CSPRNG
        j = draw(i + 1)
        chars[i], chars[j] = chars[j], chars[i]
    return "".join(chars)


def _reset_already_happened(ctx: StepContext) -> bool:
    account_id = require(ctx.state.account_id, "the account (set by triage)")
    changed = ctx.tenant.directory.get_user(account_id).last_password_change
    state = ctx.state
    return moved_since(state.password_changed_before, changed)


def _account_before(ctx: StepContext, account_id: str) -> DirectoryUser:
    """The account as read just before the first side effect: the pre-reset re-check's read, else a new one."""
    read = ctx.account_read
    if read is not None and read.id == account_id:
        return read
    return ctx.tenant.directory.get_user(account_id)


def run(ctx: StepContext) -> Move:
    """APPROVED: reset the password exactly once per approval, even across crashes."""
    state = ctx.state
    if state.password_intent_at is None:
        stopped = approval.confirm_before_first_effect(ctx)
        if stopped is not None:
            return stopped  # rejected meanwhile, or the plan lapsed: nothing was done to any account
    account_id = require(state.account_id, "the account (set by triage)")
    directory = ctx.tenant.directory
    password: str | None = None
    if state.password_intent_at is not None:
        if _reset_already_happened(ctx):
            log.info("%s: interrupted password reset had gone through", state.issue_key)
            return _confirm(ctx)
        refused = state.password_refused_at is not None and state.password_refused_at >= state.password_intent_at
        settle_at = state.password_intent_at + ctx.policy.reset_grace
        if not refused and ctx.now() < settle_at:
            # The interrupted PATCH may still reach Graph (its process was killed, not its request): look
            # again once it cannot, and only then send the same vaulted password once more.
            state.retry_at = settle_at
            ctx.save()
            return None
        password = ctx.vault.recall(state.issue_key)
        if password is not None:
            state.password_intent_at = ctx.now()  # this send may be cut too: the next try waits for it
            ctx.save()
    if password is None:
        password = generate_password(ctx.policy.password_length)
        now = ctx.now()
        state.password_expires_at = now + ctx.policy.password_ttl
        # One read gives both before-values: the reset does not move the sessions' valid-from time
        # (only revokeSignInSessions does), so it still stands when the revocation's intent is recorded.
        before = _account_before(ctx, account_id)
        state.password_changed_before = before.last_password_change
        state.sessions_valid_before = before.sign_in_sessions_valid_from
        ctx.vault.store(state.issue_key, password, state.password_expires_at)
        state.password_intent_at = now
        ctx.save()
    try:
        directory.reset_password(account_id, password)
    except TransientError:
        raise  # a timeout or a 5xx may still have reached Graph: the next try waits out the reset grace
    except ConnectorError:
        # Answered with a refusal, or never sent (the PATCH is not retried, so this was its only answer).
        state.password_refused_at = ctx.now()
        ctx.save()
        raise
    return _confirm(ctx)


def _confirm(ctx: StepContext) -> Next:
    ctx.state.password_reset_at = ctx.now()
    return Next()
