"""How a failed step is treated: retried with capped exponential backoff, or stopped with the exact fix.

Errors that waiting does not heal — a missing permission or Entra role, an invalid request, credentials the
identity platform keeps refusing — stop the ticket with one note naming what is missing; everything else is
tried again later, and a stage failing for ``stuck_after`` is handed to a person with what was tried.
"""

from __future__ import annotations

import math
import re
import zlib
from datetime import timedelta
from typing import Any

from mailunblock.connectors.errors import (
    AuthenticationError,
    ConnectorError,
    PermissionDeniedError,
    ThrottledError,
    TransientError,
)
from mailunblock.connectors.permissions import (
    EXCHANGE_PERMISSION,
    EXCHANGE_ROLE,
    INBOX_RULES_PERMISSION,
    PASSWORD_RESET_ROLE,
    READ_ROLES,
    READ_USERS,
    RESET_PASSWORDS,
    REVOKE_SESSIONS,
    SIGN_IN_FIXES,
    EntraRole,
    Permission,
)
from mailunblock.workflows.policy import RemediationPolicy
from mailunblock.workflows.state import TicketState
from mailunblock.workflows.vocabulary import Activity, EscalationReason, FailureKind

MICROSOFT_SERVICES = frozenset({"identity", "graph", "exchange"})
KEPT_FAILURES = 6  # lines of "what was tried" kept for the escalation note
_THROTTLE_SPREAD = 0.1  # up to 10 % (at most a minute) after a Retry-After deadline, so tickets do not stampede
_BACKOFF_SPREAD = 0.2  # an exponential wait is cut by up to 20 %, so the cap is never exceeded
_AADSTS = re.compile(r"AADSTS\d+")

# What each step needs from Microsoft (the doctor checks the same table); the activities are the engine's.
NEEDS: dict[Activity, tuple[Permission | EntraRole, ...]] = {
    Activity.TRIAGE: (READ_USERS, READ_ROLES),
    Activity.PASSWORD: (RESET_PASSWORDS, PASSWORD_RESET_ROLE),
    Activity.SESSIONS: (REVOKE_SESSIONS, READ_USERS),
    Activity.MAILBOX: (INBOX_RULES_PERMISSION,),
    Activity.LIST: (EXCHANGE_PERMISSION, EXCHANGE_ROLE),
    Activity.UNBLOCK: (EXCHANGE_PERMISSION, EXCHANGE_ROLE),
    Activity.VERIFY: (EXCHANGE_PERMISSION, EXCHANGE_ROLE),
}
_KINDS: tuple[tuple[type[ConnectorError], FailureKind], ...] = (
    (ThrottledError, FailureKind.THROTTLED),
    (TransientError, FailureKind.TRANSIENT),
    (AuthenticationError, FailureKind.AUTHENTICATION),
    (PermissionDeniedError, FailureKind.PERMISSION),
)


def kind(error: ConnectorError) -> FailureKind:
    """How a connector error is described in failure notes."""
    return next((name for cls, name in _KINDS if isinstance(error, cls)), FailureKind.PERMANENT)


def sign_in_code(error: ConnectorError) -> str | None:
    """The AADSTS code of a sign-in failure that waiting does not heal, else None."""
    if not isinstance(error, AuthenticationError):
        return None
    code = error.code if error.code in SIGN_IN_FIXES else next(iter(_AADSTS.findall(str(error))), None)
    return code if code in SIGN_IN_FIXES else None


def is_permanent(error: ConnectorError) -> bool:
    """True when retrying cannot help: stop the ticket and say what to fix."""
    if isinstance(error, ThrottledError | TransientError):
        return False
    if isinstance(error, AuthenticationError):
        return sign_in_code(error) is not None  # other 401s may be a token refused early: retried
    return True


def refusal_for(error: ConnectorError) -> EscalationReason:
    """The escalation reason of a permanent error."""
    if sign_in_code(error):
        return EscalationReason.SIGN_IN
    if isinstance(error, PermissionDeniedError):
        return (EscalationReason.MISSING_PERMISSION if error.service in MICROSOFT_SERVICES
                else EscalationReason.TICKETING_PERMISSION)
    return EscalationReason.FAILED


def _spread(state: TicketState) -> float:
    """A fraction in [0, 1) that differs between tickets and attempts, and is the same on every replay."""
    return zlib.crc32(f"{state.issue_key}:{state.failure_count}".encode()) / 2**32


def retry_delay(policy: RemediationPolicy, error: ConnectorError, state: TicketState) -> timedelta:
    """How long to wait before the next try: the service's deadline, else backoff doubling up to the cap."""
    if isinstance(error, ThrottledError):
        extra = min(error.retry_after * _THROTTLE_SPREAD, 60.0) * _spread(state)
        return timedelta(seconds=math.ceil(error.retry_after + extra))  # never before the deadline
    attempt = max(len(state.failures), 1)
    wait = min(policy.retry_after * 2 ** (attempt - 1), policy.retry_max)
    return timedelta(seconds=round(wait.total_seconds() * (1 - _BACKOFF_SPREAD * _spread(state))))


def escalation_help(state: TicketState) -> dict[str, Any]:
    """Template values of the escalation note: what the stopped step needs, the sign-in fix, what was tried."""
    app = f"mailunblock's app (tenant {state.tenant})" if state.tenant else "mailunblock's app"
    needs = NEEDS.get(state.failed_step, ()) if state.failed_step else ()
    permissions = [f"{n.permission} ({n.api})" for n in needs if isinstance(n, Permission)]
    roles = [n.role for n in needs if not isinstance(n, Permission)]
    fixes = [n.fix(app) for n in needs]
    code = next(iter(_AADSTS.findall(state.refusal_detail)), "")
    fix = SIGN_IN_FIXES.get(code, "").format(app=app)
    return {"needed_permissions": permissions, "needed_roles": roles, "fixes": fixes, "sign_in_code": code,
            "sign_in_fix": fix, "tried": list(state.failures)}
