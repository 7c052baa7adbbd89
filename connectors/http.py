"""The one HTTP policy every connector shares: TLS trust, timeouts, retries, throttle gates, error classes.

``requests`` lets ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` override a ``Session.verify`` set in code;
the session built here passes the configured bundle on every request so the configuration wins.
Only calls marked safe (reads, read-only POSTs) are retried: a retried comment, password reset or unblock
could happen twice.

Throttling is enforced at the transport, where no caller can forget it: once a service answers 429 (or 503
with ``Retry-After``), its gate stays closed until the deadline and any request meant for it — a retry, the
next ticket's call, a note about the failure — raises :class:`ThrottledError` without being sent.
"""

from __future__ import annotations

import logging
import os
import random
import ssl
import threading
import time
from collections.abc import Callable, Mapping, MutableMapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
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
from requests.adapters import DEFAULT_CA_BUNDLE_PATH, HTTPAdapter
from requests.cookies import RequestsCookieJar
from requests.structures import CaseInsensitiveDict
from requests.utils import get_environ_proxies
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt
from urllib3.util.ssl_ import create_urllib3_context

if TYPE_CHECKING:
    from requests.sessions import _Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_RETRY_AFTER = 30.0
_BACKOFF_BASE = 1.0
_JITTER = 1.0


class Clock(Protocol):
    """Where the HTTP layer reads the time (the workflow's clock satisfies it)."""

    def now(self) -> datetime:
        """Current time, timezone-aware."""
        ...


class UtcClock:
    """Wall-clock time in UTC."""

    def now(self) -> datetime:
        """Current time (aware, UTC)."""
        return datetime.now(UTC)


# Told about every request the transport handles: (service, outcome), the outcome being the HTTP status,
# "error" when no answer came (connection, TLS, timeout) or "not_sent" when a throttle gate held it back.
HttpObserver = Callable[[str, str], None]


class ThrottleGates:
    """Per service, the moment before which no request may be sent to it (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._until: dict[str, datetime] = {}

    def close(self, key: str, until: datetime) -> None:
        """Keep ``key``'s gate closed until ``until`` (a later deadline already set wins)."""
        with self._lock:
            current = self._until.get(key)
            if current is None or until > current:
                self._until[key] = until

    def closed_until(self, key: str, now: datetime) -> datetime | None:
        """The deadline of ``key``'s gate when it is still closed at ``now``, else None."""
        with self._lock:
            until = self._until.get(key)
        return until if until is not None and now < until else None


POOL_SIZE = 64  # kept-alive connections per host: enough for every worker, so none is thrown away


class InFlightLimits:
    """Per service, how many requests may be in flight at once (thread-safe; a service not named: no limit)."""

    def __init__(self, limits: Mapping[str, int] | None = None) -> None:
        self._slots = {service: threading.BoundedSemaphore(n) for service, n in (limits or {}).items()}

    def slot(self, service: str) -> AbstractContextManager[object]:
        """Held while one request to ``service`` is in flight (waits for a free slot)."""
        return self._slots.get(service) or nullcontext()


@dataclass(frozen=True)
class HttpPolicy:
    """Timeout, retry limits, CA bundle and throttle gates shared by the connectors of one site or tenant."""

    timeout: float = 30
    max_retries: int = 4
    max_retry_wait: float = 120
    ca_bundle: str | None = None
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)
    clock: Clock = field(default_factory=UtcClock, repr=False, compare=False)
    gates: ThrottleGates = field(default_factory=ThrottleGates, repr=False, compare=False)
    in_flight: InFlightLimits = field(default_factory=InFlightLimits, repr=False, compare=False)
    observer: HttpObserver | None = field(default=None, repr=False, compare=False)

    @property
    def verify(self) -> str | bool:
        """Value for ``requests``' ``verify``: the configured bundle, else the default trust store."""
        return self.ca_bundle or True

    def guard(self, session: requests.Session, service: str | None = None) -> None:
        """Send every request of ``session`` through this policy's throttle gate for ``service``.

        Without a service name (a session shared by several services) each origin gets its own gate.
        """
        adapter = GatedAdapter(self, service)
        session.mount("https://", adapter)
        session.mount("http://", adapter)

    def call(self, fn: Callable[[], T], *, safe: bool) -> T:
        """Run ``fn``; when ``safe``, retry transient failures and short throttles with capped backoff.

        A throttle whose deadline lies beyond ``max_retry_wait`` is not waited for here: it is raised, and
        the caller schedules its next try after the deadline.
        """
        if not safe or self.max_retries <= 0:
            return fn()
        # Most calls succeed at once: tenacity's bookkeeping (a retry state, a future, its actions) is
        # paid only once an attempt failed, and that attempt counts as the loop's first.
        try:
            return fn()
        except Exception as error:  # noqa: BLE001 - the loop below decides, as for any attempt
            first = [error]

        def attempt() -> T:
            if first:
                raise first.pop()
            return fn()

        retrying = Retrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception(self._retryable),
            sleep=self.sleep,
            before_sleep=_log_retry,
            reraise=True,
        )
        return retrying(attempt)

    def _retryable(self, error: BaseException) -> bool:
        if isinstance(error, ThrottledError):
            return error.retry_after <= self.max_retry_wait
        return isinstance(error, TransientError)

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        jitter = random.uniform(0, _JITTER)  # noqa: S311 - jitter, not cryptography
        if isinstance(error, ThrottledError):
            return error.retry_after + jitter  # never before the deadline
        backoff = _BACKOFF_BASE * 2.0 ** (state.attempt_number - 1)
        return min(backoff, self.max_retry_wait) + jitter


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    log.warning("retrying after %s (attempt %d, waiting %.1fs)", error, state.attempt_number, wait)


class GatedAdapter(HTTPAdapter):
    """Transport that refuses requests while their service's gate is closed, and closes it on a throttle.

    It also reads a CA bundle file once into one TLS context, instead of once per connection as
    ``requests`` and ``urllib3`` do (a server that closes every connection pays it on every request), and
    looks the trust store up on disk once per location instead of three ``stat`` calls per request (each
    one lets another thread take the interpreter: about 5 % of a burst's context switches). Only a location
    found is remembered: a missing one fails every request, as with ``requests``.
    """

    def __init__(self, policy: HttpPolicy, service: str | None) -> None:
        super().__init__(pool_maxsize=POOL_SIZE)
        self._policy = policy
        self._service = service
        self._tls_contexts: dict[str, ssl.SSLContext] = {}  # CA bundle file -> a context trusting it
        self._trust_stores: dict[str, bool] = {}  # a location found on disk -> whether it is a folder
        self._pool_keys: dict[tuple[str, str, bool | str], tuple[Any, Any]] = {}  # (origin, verify) -> the pool's key
        self._tls_lock = threading.Lock()

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: bool | str, cert: Any = None
    ) -> tuple[Any, Any]:
        """The pool for a CA bundle file uses one context that already trusts it (read once).

        Without a client certificate the answer depends only on the origin and ``verify``: it is kept.
        """
        parts = urlsplit(request.url or "")
        key = (parts.scheme.lower(), parts.netloc, verify)
        with self._tls_lock:
            known: tuple[Any, Any] | None = self._pool_keys.get(key) if cert is None else None
        if known is None:
            host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
            bundle = pool_kwargs.pop("ca_certs", None)
            if bundle is not None:
                pool_kwargs["ssl_context"] = self._tls_context(bundle)
            known = host_params, pool_kwargs
            if cert is None:
                with self._tls_lock:
                    self._pool_keys[key] = known
        return dict(known[0]), dict(known[1])  # copies: the caller's changes stay its own

    def cert_verify(self, conn: Any, url: str, verify: bool | str, cert: Any) -> None:
        """As ``requests`` does, but a CA bundle file is not read again: the pool's context trusts it.

        The trust store's location is looked up on disk once (``requests`` does it on every request).
        """
        location = verify if isinstance(verify, str) else DEFAULT_CA_BUNDLE_PATH
        verified = bool(verify) and url.lower().startswith("https")
        with self._tls_lock:
            folder = self._trust_stores.get(location) if verified and cert is None else None
        if folder is None:
            super().cert_verify(conn, url, verify, cert)  # type: ignore[no-untyped-call]  # untyped in types-requests
            if verified:  # it found the location (or raised)
                with self._tls_lock:
                    self._trust_stores[location] = os.path.isdir(location)
        else:
            conn.cert_reqs = "CERT_REQUIRED"
            if folder:
                conn.ca_cert_dir = location
            else:
                conn.ca_certs = location
        if isinstance(verify, str) and getattr(conn, "ca_certs", None) == verify:
            conn.ca_certs = None  # certificates are still required (cert_reqs), against the context's CAs

    def _tls_context(self, bundle: str) -> ssl.SSLContext:
        with self._tls_lock:
            context = self._tls_contexts.get(bundle)
            if context is None:
                context = create_urllib3_context()  # urllib3's defaults: TLS 1.2+, certificates required
                context.load_verify_locations(cafile=bundle)
                self._tls_contexts[bundle] = context
            return context

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        """Send ``request`` unless its service is throttled; a throttling answer raises ThrottledError."""
        key = self._service or _origin(request.url or "")
        gates, clock = self._policy.gates, self._policy.clock
        with self._policy.in_flight.slot(key):
            # The gate is read once a slot is free: a 429 that arrived while this request waited holds it.
            until = gates.closed_until(key, clock.now())
            if until is not None:
                self._observe(key, "not_sent")
                remaining = (until - clock.now()).total_seconds()
                raise ThrottledError(
                    f"not sent: throttled until {until:%H:%M:%S} UTC ({remaining:.0f} s left)",
                    retry_after=remaining, service=key,
                )
            try:
                response = super().send(request, *args, **kwargs)
            except requests.RequestException:
                self._observe(key, "error")
                raise
            self._observe(key, str(response.status_code))
            # The gate closes before the slot is free for the next request.
            throttled = self._throttled(key, response.status_code, response.headers)
            if throttled is None:
                return response
        response.close()
        raise throttled

    def throttled(self, url: str, status: int, headers: Mapping[str, str]) -> ThrottledError | None:
        """Close the gate for a throttling answer carried inside another one, as if sent for ``url``.

        A JSON batch's sub-response is one: the same error as the transport's is returned, else None.
        """
        return self._throttled(self._service or _origin(url), status, headers)

    def _throttled(self, key: str, status: int, headers: Mapping[str, str]) -> ThrottledError | None:
        now = self._policy.clock.now()
        wait = throttle_wait(status, headers, now)
        if wait is None:
            return None
        self._policy.gates.close(key, now + timedelta(seconds=wait))
        return ThrottledError(f"HTTP {status}: asked to wait {wait:.0f} s", retry_after=wait, service=key,
                              code=headers.get("RateLimit-Reason"))

    def _observe(self, service: str, outcome: str) -> None:
        if self._policy.observer is not None:
            self._policy.observer(service, outcome)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class PolicySession(requests.Session):
    """A ``requests.Session`` applying the policy's timeout, CA bundle and throttle gate to every request.

    The environment is read once per origin, not on every request as ``requests`` does (it walks all of
    ``os.environ`` twice per call): the proxy variables (``HTTPS_PROXY``, ``NO_PROXY``...) and, when no CA
    bundle is configured, ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE``. ``~/.netrc`` is never consulted: a
    connector's credentials come from the configuration only.
    """

    def __init__(self, policy: HttpPolicy, service: str | None = None) -> None:
        super().__init__()
        self.policy = policy
        self.trust_env = False
        self.verify = policy.ca_bundle or os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") \
            or True
        self._proxies: dict[str, dict[str, str]] = {}  # origin -> the environment's proxies for it
        policy.guard(self, service)

    def request(
        self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any
    ) -> requests.Response:
        """Send a request with the policy's timeout, explicitly its CA bundle, and the environment's proxies."""
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.policy.timeout
        if kwargs.get("verify") is None:
            kwargs["verify"] = self.verify
        if kwargs.get("proxies") is None:
            kwargs["proxies"] = self._environment_proxies(url if isinstance(url, str) else url.decode())
        return super().request(method, url, *args, **kwargs)

    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        """As ``requests`` prepares it, without its generic merges when there is nothing to merge.

        With no cookie on either side, no hook and no session parameters, the request gets the session's
        headers overlaid with its own and its own auth, else the session's; a header or parameter set to
        ``None`` is left out — all as ``requests`` merges them. ``requests`` runs its generic merge on each
        setting and copies two cookie jars on every call: about 8 % of a call's CPU in the burst. A URL
        with plain parameters is prepared once (``_prepared_url``): most recur. Anything else goes through
        ``requests`` unchanged.
        """
        if (self.cookies or request.cookies or self.params or any(self.hooks.values())
                or any(request.hooks.values())):
            return super().prepare_request(request)
        headers = CaseInsensitiveDict(self.headers)
        headers.update(request.headers or {})
        for name in [name for name, value in headers.items() if value is None]:
            del headers[name]
        params = request.params
        if isinstance(params, Mapping):
            params = {name: value for name, value in params.items() if value is not None}
        # ``PreparedRequest.prepare``, step by step, in its order.
        prepared = requests.PreparedRequest()
        prepared.prepare_method(request.method)
        query = _query_key(params)
        if query is not None and isinstance(request.url, str):
            prepared.url = _prepared_url(request.url, query)
        else:
            prepared.prepare_url(request.url, params)
        prepared.prepare_headers(headers)
        prepared.prepare_cookies(RequestsCookieJar())
        prepared.prepare_body(request.data, request.files, request.json)
        prepared.prepare_auth(request.auth if request.auth is not None else self.auth, request.url)
        return prepared

    def merge_environment_settings(
        self, url: str | bytes | None, proxies: MutableMapping[str, str] | None, stream: bool | None,
        verify: bool | str | None, cert: Any,
    ) -> _Settings:
        """As ``requests`` merges them with ``trust_env`` off (``request`` read the environment already).

        When the session sets no proxy, certificate or streaming, the request's own settings are the result
        (a proxy set to ``None`` left out): ``requests``' generic merge is about 3 % of a call's CPU.
        """
        if self.trust_env or self.proxies or self.cert is not None or self.stream:
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        return {"proxies": {name: value for name, value in (proxies or {}).items() if value is not None},
                "stream": stream if stream is not None else self.stream,
                "verify": verify if verify is not None else self.verify, "cert": cert}

    def _environment_proxies(self, url: str) -> dict[str, str]:
        origin = _origin(url)
        proxies = self._proxies.get(origin)
        if proxies is None:
            proxies = self._proxies[origin] = get_environ_proxies(url)
        return dict(proxies)


# The same URLs recur (a search, a JSON batch, a tenant's command endpoint): each is prepared once.
_PREPARED_URLS = 1024

Query = tuple[tuple[str, str | int | float], ...]


def _query_key(params: Any) -> Query | None:
    """Hashable query parameters (no parameter: empty), or None for a shape only ``requests`` prepares."""
    if not params:
        return ()
    if isinstance(params, Mapping) and all(
        isinstance(name, str) and isinstance(value, str | int | float) for name, value in params.items()
    ):
        return tuple(params.items())
    return None


@lru_cache(maxsize=_PREPARED_URLS)
def _prepared_url(url: str, query: Query) -> str:
    """``url`` with ``query`` as ``requests`` prepares it (an invalid URL raises, and is not kept)."""
    prepared = requests.PreparedRequest()
    prepared.prepare_url(url, dict(query) or None)
    return str(prepared.url)


def throttled_within(
    session: requests.Session, url: str, status: int, headers: Mapping[str, str]
) -> ThrottledError | None:
    """Treat a throttling answer carried inside a response like one the transport received for ``url``.

    For a JSON batch's sub-responses: the service's gate closes and the same error is returned, else None.
    """
    adapter = session.get_adapter(url)
    return adapter.throttled(url, status, headers) if isinstance(adapter, GatedAdapter) else None


def build_session(policy: HttpPolicy, service: str | None = None) -> requests.Session:
    """A session for ``service`` whose every request uses the policy's timeout, CA bundle and gate."""
    return PolicySession(policy, service)


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


def parse_instant(value: Any) -> datetime | None:
    """An ISO 8601 timestamp as an aware datetime (UTC when it has no offset); None when absent or malformed."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def rate_limit_reset_seconds(headers: Mapping[str, str], now: datetime) -> float | None:
    """Seconds until Jira's ``X-RateLimit-Reset`` (an ISO 8601 timestamp), else None."""
    when = parse_instant(headers.get("X-RateLimit-Reset"))
    return None if when is None else max(0.0, (when - now).total_seconds())


def throttle_wait(status: int, headers: Mapping[str, str], now: datetime) -> float | None:
    """How long a response asks us to stay away: 429 (default wait without a header), 503 with a wait."""
    if status not in (429, 503):
        return None
    wait = retry_after_seconds(headers, now)
    if wait is None:
        wait = rate_limit_reset_seconds(headers, now)
    if wait is None and status == 429:
        wait = DEFAULT_RETRY_AFTER
    return wait


def error_for_exception(exc: requests.RequestException, *, service: str) -> ConnectorError:
    """Typed error for a transport failure naming the server (never the path, query or body)."""
    where = _failed_server(exc)
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


def _failed_server(exc: requests.RequestException) -> str:
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
    if status == 429 or (status == 503 and retry_after is not None):
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
