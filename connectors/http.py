"""The one HTTP policy every connector shares: TLS trust, timeouts, retries and error classification.

``requests`` lets ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` override a ``Session.verify`` set in code;
the session built here passes the configured bundle on every request so the configuration wins.
Only calls marked safe (reads, read-only POSTs) are retried: a retried comment, password reset or unblock
could happen twice.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from mailunblock.connectors.errors import (
    AuthenticationError,
    ConnectorError,
    NotFoundError,
    PermanentError,
    PermissionDeniedError,
    ThrottledError,
    TransientError,
)
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_RETRY_AFTER = 30.0
_BACKOFF_BASE = 1.0
_JITTER = 1.0


@dataclass(frozen=True)
class HttpPolicy:
    """Timeout, retry limits and CA bundle shared by every connector."""

    timeout: float = 30
    max_retries: int = 4
    max_retry_wait: float = 120
    ca_bundle: str | None = None
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)

    @property
    def verify(self) -> str | bool:
        """Value for ``requests``' ``verify``: the configured bundle, else the default trust store."""
        return self.ca_bundle or True

    def call(self, fn: Callable[[], T], *, safe: bool) -> T:
        """Run ``fn``; when ``safe``, retry throttling and transient failures with capped backoff."""
        if not safe or self.max_retries <= 0:
            return fn()
        retrying = Retrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception_type((ThrottledError, TransientError)),
            sleep=self.sleep,
            before_sleep=_log_retry,
            reraise=True,
        )
        return retrying(fn)

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, ThrottledError):
            base = error.retry_after
        else:
            base = _BACKOFF_BASE * 2 ** (state.attempt_number - 1)
        jitter = random.uniform(0, _JITTER)  # noqa: S311 - jitter, not cryptography
        return min(base, self.max_retry_wait) + jitter


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    log.warning("retrying after %s (attempt %d, waiting %.1fs)", error, state.attempt_number, wait)


class PolicySession(requests.Session):
    """A ``requests.Session`` applying the policy's timeout and CA bundle to every request."""

    def __init__(self, policy: HttpPolicy) -> None:
        super().__init__()
        self.policy = policy
        self.verify = policy.verify

    def request(
        self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any
    ) -> requests.Response:
        """Send a request with the policy's timeout and, explicitly, its CA bundle."""
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.policy.timeout
        if kwargs.get("verify") is None:
            kwargs["verify"] = self.verify
        return super().request(method, url, *args, **kwargs)


def build_session(policy: HttpPolicy) -> requests.Session:
    """A session whose every request uses the policy's timeout and configured CA bundle."""
    return PolicySession(policy)


def retry_after_seconds(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds to wait according to ``Retry-After`` (delta-seconds or HTTP date), else None."""
    value = headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def error_for_exception(exc: requests.RequestException, *, service: str) -> ConnectorError:
    """Typed error for a transport failure naming the server (never the path, query or body)."""
    where = _origin(exc)
    if isinstance(exc, requests.exceptions.SSLError):
        return PermanentError(
            f"TLS verification failed{where} (check the configured ca_bundle)", service=service
        )
    if isinstance(exc, requests.Timeout):
        return TransientError(f"request timed out{where}", service=service)
    if isinstance(exc, requests.ConnectionError):
        return TransientError(f"connection failed{where}", service=service)
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        status = exc.response.status_code
        return error_for_status(
            status,
            f"HTTP {status}",
            service=service,
            retry_after=retry_after_seconds(exc.response.headers),
        )
    return TransientError(f"request failed ({type(exc).__name__})", service=service)


def _origin(exc: requests.RequestException) -> str:
    """The failed request's server as " to https://host:port", or "" when unknown."""
    url = getattr(exc.request, "url", None) if exc.request is not None else None
    if not isinstance(url, str):
        return ""
    parts = urlsplit(url)
    return f" to {parts.scheme}://{parts.netloc.rpartition('@')[2]}" if parts.netloc else ""


def error_for_status(
    status: int,
    message: str,
    *,
    service: str,
    code: str | None = None,
    retry_after: float | None = None,
) -> ConnectorError:
    """Typed error for an HTTP error status."""
    if status == 401:
        return AuthenticationError(message, service=service, code=code)
    if status == 403:
        return PermissionDeniedError(message, service=service, code=code)
    if status == 404:
        return NotFoundError(message, service=service, code=code)
    if status == 429:
        wait = DEFAULT_RETRY_AFTER if retry_after is None else retry_after
        return ThrottledError(message, retry_after=wait, service=service, code=code)
    if status >= 500:
        return TransientError(message, service=service, code=code)
    return PermanentError(message, service=service, code=code)


def send(
    session: requests.Session, method: str, url: str, *, service: str, **kwargs: Any
) -> requests.Response:
    """Send one request, turning transport failures into typed errors (status is left to the caller)."""
    try:
        return session.request(method, url, **kwargs)
    except requests.RequestException as exc:
        raise error_for_exception(exc, service=service) from None


def json_body(response: requests.Response) -> Any:
    """The response's JSON document, or None when the body is empty or not JSON."""
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None
