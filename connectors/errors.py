"""Typed errors raised by every connector.

Errors are classified once, at the connector edge; business code catches these, never HTTP status
codes. Messages never carry secrets (tokens, passwords, client secrets).
"""

from __future__ import annotations


class ConnectorError(Exception):
    """Base class: something went wrong talking to an outside service."""

    def __init__(self, message: str, *, service: str = "", code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.service = service
        self.code = code

    def __str__(self) -> str:
        prefix = f"{self.service}: " if self.service else ""
        suffix = f" [{self.code}]" if self.code else ""
        return f"{prefix}{self.message}{suffix}"


class AuthenticationError(ConnectorError):
    """Credentials were rejected (bad secret/certificate/token, expired token)."""


class PermissionDeniedError(ConnectorError):
    """Authenticated, but the app or user lacks a permission or role for this call."""


class NotFoundError(ConnectorError):
    """The addressed object (user, ticket, transition ...) does not exist."""


class ThrottledError(ConnectorError):
    """The service asked us to slow down; ``retry_after`` is in seconds."""

    def __init__(self, message: str, *, retry_after: float, service: str = "",
                 code: str | None = None) -> None:
        super().__init__(message, service=service, code=code)
        self.retry_after = retry_after


class TransientError(ConnectorError):
    """A failure that may succeed if tried again later (5xx, timeout, connection reset)."""


class PermanentError(ConnectorError):
    """A failure that will not go away by retrying (bad request, policy refusal ...)."""


class UnblockLimitReachedError(PermanentError):
    """Exchange refuses to unblock: the per-account unblock limit is reached (Microsoft Support only)."""


class NotBlockedError(PermanentError):
    """Exchange says the address is not on the Restricted users list."""
