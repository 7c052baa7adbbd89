"""The throttle gate in the shared HTTP layer: after 429/503 with a wait, nothing is sent before the deadline."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from mailunblock.connectors.errors import ThrottledError
from mailunblock.connectors.http import HttpPolicy, build_session, throttle_wait

START = datetime(2026, 3, 2, 13, 0, tzinfo=UTC)


class FakeClock:
    """Time that moves only when told to, or when the policy 'sleeps'."""

    def __init__(self) -> None:
        self.current = START
        self.slept: list[float] = []

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)


class Scripted:
    """A loopback HTTP server answering from a script of (status, headers); 200 once the script is used up."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, str]]] = []
        self.received: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.received.append(self.path)
                status, headers = outer.script.pop(0) if outer.script else (200, {})
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def server() -> Iterator[Scripted]:
    scripted = Scripted()
    yield scripted
    scripted.server.shutdown()
    scripted.server.server_close()


def make_policy(clock: FakeClock, **kwargs: float) -> HttpPolicy:
    return HttpPolicy(clock=clock, sleep=clock.sleep, timeout=5, **kwargs)  # type: ignore[arg-type]


def test_after_a_429_nothing_is_sent_to_that_service_before_the_deadline(server: Scripted) -> None:
    clock = FakeClock()
    policy = make_policy(clock)
    graph = build_session(policy, "graph")
    server.script = [(429, {"Retry-After": "60"})]

    with pytest.raises(ThrottledError) as first:
        graph.get(f"{server.url}/users")
    assert (first.value.service, first.value.retry_after) == ("graph", 60)
    clock.advance(59)
    with pytest.raises(ThrottledError) as refused:
        graph.get(f"{server.url}/other")
    assert refused.value.retry_after == pytest.approx(1)
    assert "not sent" in str(refused.value)
    assert server.received == ["/users"]

    clock.advance(1)
    assert graph.get(f"{server.url}/users").status_code == 200
    assert server.received == ["/users", "/users"]


def test_the_gate_is_per_service_and_per_tenant(server: Scripted) -> None:
    clock = FakeClock()
    contoso, fabrikam = make_policy(clock), make_policy(clock)
    server.script = [(429, {"Retry-After": "60"})]
    with pytest.raises(ThrottledError):
        build_session(contoso, "graph").get(f"{server.url}/a")
    assert build_session(contoso, "exchange").get(f"{server.url}/b").ok  # same tenant, other service
    assert build_session(fabrikam, "graph").get(f"{server.url}/c").ok  # other tenant, same service
    with pytest.raises(ThrottledError):
        build_session(contoso, "graph").get(f"{server.url}/d")  # a new session of the throttled service
    assert server.received == ["/a", "/b", "/c"]


def test_a_safe_call_waits_for_the_deadline_then_goes_through(server: Scripted) -> None:
    clock = FakeClock()
    policy = make_policy(clock)
    session = build_session(policy, "jira")
    server.script = [(503, {"Retry-After": "20"})]
    response = policy.call(lambda: session.get(f"{server.url}/search"), safe=True)
    assert response.status_code == 200
    assert len(clock.slept) == 1 and 20 <= clock.slept[0] <= 21
    assert server.received == ["/search", "/search"]


def test_while_the_gate_is_closed_no_call_is_sent_safe_or_not(server: Scripted) -> None:
    clock = FakeClock()
    policy = make_policy(clock)  # max_retry_wait 120: a 300 s throttle is not waited for in-process
    session = build_session(policy, "jira")
    server.script = [(429, {"Retry-After": "300"})]
    with pytest.raises(ThrottledError):
        policy.call(lambda: session.get(f"{server.url}/search"), safe=True)
    clock.advance(100)
    with pytest.raises(ThrottledError) as note:  # e.g. the note about the failure
        policy.call(lambda: session.get(f"{server.url}/comment"), safe=False)
    assert note.value.retry_after == pytest.approx(200)
    with pytest.raises(ThrottledError):
        policy.call(lambda: session.get(f"{server.url}/search"), safe=True)
    assert server.received == ["/search"] and clock.slept == []
    clock.advance(150)  # 50 s left: a safe call now waits for the deadline, then goes
    assert policy.call(lambda: session.get(f"{server.url}/search"), safe=True).ok
    assert server.received == ["/search", "/search"] and 50 <= clock.slept[0] <= 51


def test_jira_rate_limit_reset_and_a_503_without_wait(server: Scripted) -> None:
    clock = FakeClock()
    policy = make_policy(clock, max_retries=0)
    session = build_session(policy, "jira")
    reset = (START + timedelta(seconds=90)).isoformat().replace("+00:00", "Z")
    server.script = [(429, {"X-RateLimit-Reset": reset, "RateLimit-Reason": "jira-burst-based"}), (503, {})]
    with pytest.raises(ThrottledError) as caught:
        session.get(f"{server.url}/a")
    assert caught.value.retry_after == 90 and caught.value.code == "jira-burst-based"
    clock.advance(90)
    assert session.get(f"{server.url}/b").status_code == 503  # no wait given: the connector classifies it
    assert session.get(f"{server.url}/c").ok
    assert server.received == ["/a", "/b", "/c"]


def test_a_shared_session_without_a_service_gates_each_origin(server: Scripted) -> None:
    clock = FakeClock()
    session = build_session(make_policy(clock))
    server.script = [(429, {"Retry-After": "5"})]
    with pytest.raises(ThrottledError):
        session.get(f"{server.url}/a")
    with pytest.raises(ThrottledError):
        session.get(f"{server.url}/b")
    with pytest.raises(requests.ConnectionError):
        session.get("http://127.0.0.1:9/c", timeout=0.5)  # another origin is tried (and refused by the OS)
    assert server.received == ["/a"]


@pytest.mark.parametrize(
    ("status", "headers", "wait"),
    [
        (429, {"Retry-After": "12"}, 12),
        (429, {}, 30),
        (503, {"Retry-After": "Mon, 02 Mar 2026 13:01:00 GMT"}, 60),
        (503, {}, None),
        (500, {"Retry-After": "5"}, None),
        (200, {"Retry-After": "5"}, None),
    ],
)
def test_throttle_wait(status: int, headers: dict[str, str], wait: float | None) -> None:
    assert throttle_wait(status, headers, START) == wait
