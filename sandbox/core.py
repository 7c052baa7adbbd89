"""Shared machinery of the emulators: a controllable clock, a call log and fault injection.

EMULATOR CODE. Nothing here talks to Microsoft or Atlassian. The sandbox imports nothing from
``connectors`` or ``workflows``: it is built from the services' documentation so that it can catch the
client's mistakes instead of sharing them.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask, Response, g, request

SERVICES = ("jira", "identity", "graph", "exchange")
# WSGI environ key marking a request an emulator dispatches to itself from a JSON batch.
BATCHED_ENVIRON = "mailunblock.sandbox.batched"

# Keys whose values the call log never keeps (passwords, tokens, client secrets, assertions).
_SECRET_KEYS = re.compile(
    r"password|secret|token|assertion|authorization|passphrase|api_?key", re.IGNORECASE
)


class SandboxClock:
    """Sandbox time: starts at ``start``, runs ``speed`` times faster than real time, can jump ahead."""

    def __init__(self, start: datetime | None = None, speed: float = 1.0) -> None:
        self._lock = threading.Lock()
        self._start = start or datetime.now(UTC)
        self._real_start = time.monotonic()
        self._speed = speed
        self._offset = timedelta()

    def now(self) -> datetime:
        """Current sandbox time (UTC, aware)."""
        with self._lock:
            elapsed = (time.monotonic() - self._real_start) * self._speed
            return self._start + timedelta(seconds=elapsed) + self._offset

    def advance(self, delta: timedelta) -> datetime:
        """Jump ahead by ``delta``; return the new time."""
        with self._lock:
            self._offset += delta
        return self.now()

    def set_speed(self, speed: float) -> None:
        """Change how fast sandbox time runs, keeping the current time continuous."""
        current = self.now()
        with self._lock:
            self._start = current - self._offset
            self._real_start = time.monotonic()
            self._speed = speed

    @property
    def speed(self) -> float:
        """Current speed factor."""
        return self._speed


@dataclass(frozen=True)
class CallRecord:
    """One request an emulator received (secrets already redacted)."""

    service: str
    method: str
    path: str
    query: dict[str, str]
    status: int
    body: Any
    at: datetime
    headers: dict[str, str] = field(default_factory=dict)
    # A request that came inside a JSON batch (Graph's $batch), not over the wire of its own: the batch
    # is the call; its requests are logged too, so what each did can be checked like a single call.
    batched: bool = False

    @property
    def cmdlet(self) -> str | None:
        """For Exchange InvokeCommand calls: the cmdlet name."""
        return _cmdlet(self.body)


def redact(value: Any) -> Any:
    """Copy of a JSON-like value with secret-bearing keys replaced by '***'."""
    if isinstance(value, dict):
        return {
            k: ("***" if _SECRET_KEYS.search(str(k)) else redact(v)) for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


class CallLog:
    """Thread-safe record of every request the emulators served."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[CallRecord] = []

    def append(self, record: CallRecord) -> None:
        """Add one record."""
        with self._lock:
            self._records.append(record)

    def records(self, service: str | None = None) -> list[CallRecord]:
        """Records so far, optionally for one service."""
        with self._lock:
            return [r for r in self._records if service in (None, r.service)]

    def clear(self) -> None:
        """Forget every record."""
        with self._lock:
            self._records.clear()

    def __iter__(self) -> Iterator[CallRecord]:
        return iter(self.records())


@dataclass
class FaultRule:
    """Make the next ``count`` matching requests fail (or be slow), each with ``probability``.

    ``status`` None only delays the request, which is then served as usual: a delay longer than the
    client's timeout emulates a response lost on the way back (the side effect happened, the client
    does not know). ``cmdlet`` matches an Exchange InvokeCommand body's cmdlet name. ``label`` names
    the fault in ``Faults.injected`` (default: the status, or "delay").
    """

    service: str
    status: int | None = 503
    retry_after: float | None = None
    count: int = 1
    method: str | None = None
    path_contains: str | None = None
    delay_seconds: float = 0.0
    probability: float = 1.0
    cmdlet: str | None = None
    label: str | None = None

    def matches(self, service: str, method: str, path: str, cmdlet: str | None = None) -> bool:
        """Whether this rule applies to a request (before the roll of ``probability``)."""
        return (
            self.count > 0
            and self.service == service
            and (self.method is None or self.method == method)
            and (self.path_contains is None or self.path_contains in path)
            and (self.cmdlet is None or self.cmdlet == cmdlet)
        )

    @property
    def kind(self) -> str:
        """The name ``Faults.injected`` counts this rule's faults under."""
        return self.label or ("delay" if self.status is None else str(self.status))


class Faults:
    """Per-service fault injection and latency knobs; ``seed`` makes the probability rolls repeatable."""

    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._random = random.Random(seed)  # noqa: S311 - fault rolls, not cryptography
        self.latency: dict[str, float] = {s: 0.0 for s in SERVICES}
        self.injected: Counter[tuple[str, str]] = Counter()  # (service, kind) -> faults served

    def add(self, rule: FaultRule) -> None:
        """Queue a fault rule."""
        with self._lock:
            self._rules.append(rule)

    def clear(self) -> None:
        """Drop every pending rule and latency."""
        with self._lock:
            self._rules.clear()
            self.latency = {s: 0.0 for s in SERVICES}

    def seed(self, seed: int) -> None:
        """Restart the probability rolls from ``seed``."""
        with self._lock:
            self._random.seed(seed)

    def take(self, service: str, method: str, path: str, cmdlet: str | None = None) -> FaultRule | None:
        """Consume one matching rule whose probability roll succeeds, if any; the first match wins."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(service, method, path, cmdlet) and (
                    rule.probability >= 1.0 or self._random.random() < rule.probability
                ):
                    rule.count -= 1
                    self.injected[service, rule.kind] += 1
                    return rule
        return None


@dataclass(frozen=True)
class InFlightRequest:
    """A request an emulator is serving right now (it may be sleeping in an injected delay)."""

    service: str
    method: str
    path: str
    cmdlet: str | None
    remote_port: int | None
    started: float  # time.monotonic()
    body: Any = None  # the JSON body, secrets redacted


class InFlight:
    """The requests being served now, so a test can act (kill the client) while one is pending."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[int, InFlightRequest] = {}
        self._next = 0

    def begin(self, entry: InFlightRequest) -> int:
        """Register a request; return its ticket for ``end``."""
        with self._lock:
            self._next += 1
            self._requests[self._next] = entry
            return self._next

    def end(self, ticket: int) -> None:
        """The request was answered (or its handler failed)."""
        with self._lock:
            self._requests.pop(ticket, None)

    def snapshot(self) -> list[InFlightRequest]:
        """The requests pending now, oldest first."""
        with self._lock:
            return list(self._requests.values())


@dataclass
class SandboxContext:
    """What every emulator app shares."""

    clock: SandboxClock
    calls: CallLog
    faults: Faults
    inflight: InFlight = field(default_factory=InFlight)


def _request_body() -> Any:
    raw = request.get_data(cache=True)
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return {"_form": {k: v for k, v in request.form.items()}} if request.form else "<non-json>"


def _cmdlet(body: Any) -> str | None:
    """The cmdlet name of an Exchange InvokeCommand body, else None."""
    if isinstance(body, dict) and isinstance(body.get("CmdletInput"), dict):
        name = body["CmdletInput"].get("CmdletName")
        return name if isinstance(name, str) else None
    return None


def instrument(
    app: Flask,
    service: str,
    ctx: SandboxContext,
    fault_body: Any | Callable[[int], Any] = None,
) -> None:
    """Attach latency, fault injection and call logging to an emulator app.

    ``fault_body`` is the JSON error body the service's documentation shows for 429/5xx responses, or
    a function of the status code returning it. Every response carries a ``Server`` header naming the
    emulator, so nobody mistakes it for the real service.
    """

    @app.before_request
    def _inject_fault() -> Response | None:
        payload = _request_body()
        cmdlet = _cmdlet(payload)
        port = request.environ.get("REMOTE_PORT")
        g.inflight = ctx.inflight.begin(InFlightRequest(
            service, request.method, request.path, cmdlet, int(port) if port else None, time.monotonic(),
            redact(payload)))
        latency = ctx.faults.latency.get(service, 0.0)
        if latency and not request.environ.get(BATCHED_ENVIRON):  # a batch's latency is the batch's
            time.sleep(latency)
        rule = ctx.faults.take(service, request.method, request.path, cmdlet)
        if rule is None:
            return None
        if rule.delay_seconds:
            time.sleep(rule.delay_seconds)
        if rule.status is None:
            return None
        body = fault_body(rule.status) if callable(fault_body) else fault_body
        response = Response(
            json.dumps(body if body is not None else {"error": "injected fault"}),
            status=rule.status,
            mimetype="application/json",
        )
        if rule.retry_after is not None:
            response.headers["Retry-After"] = str(int(rule.retry_after))
        g.injected_fault = True
        return response

    @app.teardown_request
    def _answered(_error: BaseException | None) -> None:
        ticket = g.get("inflight")
        if ticket is not None:
            ctx.inflight.end(ticket)

    @app.after_request
    def _log_call(response: Response) -> Response:
        response.headers["Server"] = f"mailunblock-sandbox/{service} (EMULATOR)"
        body = redact(_request_body())
        ctx.calls.append(
            CallRecord(
                service=service,
                method=request.method,
                path=request.path,
                query=dict(request.args.items()),
                status=response.status_code,
                body=body,
                at=ctx.clock.now(),
                headers={
                    k: ("***" if _SECRET_KEYS.search(k) else v)
                    for k, v in request.headers.items()
                },
                batched=bool(request.environ.get(BATCHED_ENVIRON)),
            )
        )
        return response
